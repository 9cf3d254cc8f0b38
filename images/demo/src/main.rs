//! berth's demo workload. See `demo --help` and the README next to Cargo.toml.

mod cli;
mod config;
mod expand;
mod http;
mod json;
mod server;
mod sha256;
mod signals;

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use cli::{Command, ExitArgs};
use signals::Signal;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let commands = match cli::parse_chain(&args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: {e}\nRun `demo --help` for usage.");
            return ExitCode::from(2);
        }
    };
    // `A --then B`: B runs only when A exited 0.
    for command in commands {
        let code = match run(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::FAILURE
            }
        };
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    ExitCode::SUCCESS
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
        Command::WriteOutputs { dir, outputs } => {
            let outputs = outputs
                .iter()
                .map(|(name, value)| Ok((name.clone(), expand::expand_here(value)?)))
                .collect::<Result<Vec<_>, String>>()
                .map_err(io::Error::other)?;
            let lines = server::write_outputs(&dir, &outputs).map_err(io::Error::other)?;
            print!("{lines}");
            io::stdout().flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Append { file, words } => {
            let words = words
                .iter()
                .map(expand::expand_here)
                .collect::<Result<Vec<_>, String>>()
                .map_err(io::Error::other)?;
            let line = expand::line(&words);
            append_line(&file, &line)?;
            let mut out = io::stdout().lock();
            write!(out, "append {}: {line}", file.display())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
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

/// One `write(2)` on an `O_APPEND` descriptor: the kernel places the whole
/// line at the end of the file at once, so lines of concurrent appenders
/// never interleave. A short write is reported, not completed by a second
/// write that another appender's line could precede.
fn append_line(file: &Path, line: &str) -> io::Result<()> {
    let shown = file.display();
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(file)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {shown}: {e}")))?;
    let written = f
        .write(line.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("appending to {shown}: {e}")))?;
    if written != line.len() {
        return Err(io::Error::other(format!(
            "appending to {shown}: only {written} of {} bytes written",
            line.len()
        )));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh path under the temp dir, removed again on drop.
    struct TempPath(std::path::PathBuf);

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn temp_path(tag: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("demo-{tag}-{}", std::process::id())))
    }

    #[test]
    fn append_creates_then_appends() {
        let p = temp_path("append");
        append_line(&p.0, "api-disable v1\n").expect("first append");
        append_line(&p.0, "db-migrate v1\n").expect("second append");
        let content = std::fs::read_to_string(&p.0).expect("read back");
        assert_eq!(content, "api-disable v1\ndb-migrate v1\n");
        let err = append_line(Path::new("/nonexistent-dir/x"), "x\n").expect_err("no dir");
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }

    #[test]
    fn concurrent_appenders_never_interleave() {
        let p = temp_path("concurrent");
        let (threads, lines) = (8, 200);
        thread::scope(|s| {
            for t in 0..threads {
                let path = &p.0;
                s.spawn(move || {
                    // Long enough that an unsynchronised writer would tear lines.
                    let body = format!("{t}").repeat(2000);
                    for i in 0..lines {
                        append_line(path, &format!("{t} {i} {body}\n")).expect("append");
                    }
                });
            }
        });
        let content = std::fs::read_to_string(&p.0).expect("read back");
        let mut seen = vec![0usize; threads];
        for line in content.lines() {
            let mut parts = line.split(' ');
            let t: usize = parts
                .next()
                .and_then(|x| x.parse().ok())
                .expect("thread id");
            let _i: usize = parts.next().and_then(|x| x.parse().ok()).expect("line no");
            assert_eq!(parts.next(), Some(format!("{t}").repeat(2000).as_str()));
            assert_eq!(parts.next(), None);
            seen[t] += 1;
        }
        assert_eq!(seen, vec![lines; threads]);
    }
}
