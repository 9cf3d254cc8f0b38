//! berth's demo workload. See `demo --help` and the README next to Cargo.toml.

mod cli;
mod config;
mod http;
mod json;
mod server;
mod sha256;
mod signals;

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use cli::{Command, ExitArgs};
use signals::Signal;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: {e}\nRun `demo --help` for usage.");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> io::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            server::serve(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health { port } => Ok(health(port)),
        Command::Request(r) => {
            let (status, body) = http::client_request(
                r.port,
                &r.method,
                &r.path,
                r.body.as_deref().map(str::as_bytes),
                Duration::from_secs(10),
            )?;
            let mut out = io::stdout().lock();
            out.write_all(&body)?;
            out.flush()?;
            if (200..300).contains(&status) {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("demo: HTTP {status}");
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Exit(args) => exit_task(args),
        Command::WriteOutputs { dir, outputs } => match server::write_outputs(&dir, &outputs) {
            Ok(lines) => {
                print!("{lines}");
                io::stdout().flush()?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(io::Error::other(e)),
        },
        Command::Sleep(d) => {
            exit_on_term()?;
            thread::sleep(d);
            Ok(ExitCode::SUCCESS)
        }
        Command::Help => {
            print!("{}", cli::HELP);
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            println!("demo {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn health(port: u16) -> ExitCode {
    match http::client_request(port, "GET", "/health", None, Duration::from_secs(5)) {
        Ok((200, _)) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            println!(
                "unhealthy: HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("unhealthy: 127.0.0.1:{port}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit_task(args: ExitArgs) -> io::Result<ExitCode> {
    if let Some(t) = &args.stdout {
        let mut out = io::stdout().lock();
        writeln!(out, "{t}")?;
        out.flush()?;
    }
    if let Some(t) = &args.stderr {
        writeln!(io::stderr(), "{t}")?;
    }
    if let Some(d) = args.sleep {
        exit_on_term()?;
        thread::sleep(d);
    }
    // The code was validated to 0..=255.
    Ok(ExitCode::from(u8::try_from(args.code).unwrap_or(u8::MAX)))
}

/// For `sleep` and `exit --sleep` (often PID 1, where SIGTERM's default action
/// does nothing): exit with 128+signal on SIGTERM/SIGINT, like a shell would
/// report it, unless DEMO_IGNORE_SIGTERM=1. SIGHUP is logged and ignored.
fn exit_on_term() -> io::Result<()> {
    let ignore_term = std::env::var("DEMO_IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    signals::block()?;
    signals::spawn(move |sig| match sig {
        Signal::Term if ignore_term => {
            println!("received SIGTERM, ignoring it (DEMO_IGNORE_SIGTERM=1)");
        }
        Signal::Term | Signal::Int => {
            println!(
                "received {}, exiting with {}",
                sig.name(),
                128 + sig.number()
            );
            let _ = io::stdout().flush();
            std::process::exit(128 + sig.number());
        }
        Signal::Hup => println!("received SIGHUP, ignoring it"),
    })
}
