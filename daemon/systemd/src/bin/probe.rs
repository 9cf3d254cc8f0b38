//! `berth-systemd-probe`: drives [`berth_systemd::DbusHost`] from a shell and
//! prints one JSON object per line (`{"event": ...}`). A debugging aid, and
//! what the integration tests run inside a private user manager.
//!
//! ```text
//! berth-systemd-probe --user-bus watch a.service b.service --for 5s
//! berth-systemd-probe --user-bus run --name berth-hook-x.service --output /tmp/x.out --timeout 2s -- sh -c 'echo hi'
//! berth-systemd-probe --user-bus result berth-hook-x.service --output /tmp/x.out --wait 10s
//! berth-systemd-probe --user-bus cleanup berth-hook-x.service --output /tmp/x.out
//! ```
//! Exit status: 0 when the command did what it says, 1 on an error (printed
//! as `{"event":"error"}`), 2 on bad arguments.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use berth_core::host::{HostUnits, TransientPhase, TransientSpec};
use berth_core::units::parse_duration;
use berth_systemd::{Bus, DbusHost, HostError};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Talk to systemd the way berthd does; one JSON line per event")]
struct Cli {
    /// Use the user bus (DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus)
    /// instead of the system bus.
    #[arg(long, global = true)]
    user_bus: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the units' states, then every change, for a while.
    Watch {
        #[arg(required = true)]
        units: Vec<String>,
        /// How long to watch (`5s`, `500ms`).
        #[arg(long = "for", value_parser = parse_duration, default_value = "5s")]
        duration: Duration,
        /// When systemd becomes unreachable, print the error and watch
        /// again after 500ms, the way berthd does (on the same host value,
        /// which reconnects).
        #[arg(long)]
        rewatch: bool,
    },
    /// Print one unit's state.
    State { unit: String },
    /// Start a command as a transient unit (returns at once).
    Run {
        #[arg(long)]
        name: String,
        /// The file stdout and stderr go to (absolute).
        #[arg(long)]
        output: String,
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// `KEY=VALUE`, repeatable.
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        dir: Option<String>,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Print a transient unit's result (`null` while it runs).
    Result {
        name: String,
        #[arg(long)]
        output: String,
        /// Wait up to this long for it to finish (by watching it).
        #[arg(long, value_parser = parse_duration)]
        wait: Option<Duration>,
    },
    /// Stop and forget a transient unit, remove its output file.
    Cleanup {
        name: String,
        #[arg(long)]
        output: String,
    },
}

fn print(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn fail(e: &HostError) -> ExitCode {
    print(json!({"event": "error", "error": e.to_string(), "unreachable": e.is_unreachable()}));
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let bus = if cli.user_bus { Bus::User } else { Bus::System };
    let host = match DbusHost::connect(bus).await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    match cli.cmd {
        Cmd::Watch {
            units,
            duration,
            rewatch,
        } => {
            let deadline = tokio::time::sleep(duration);
            tokio::pin!(deadline);
            'watch: loop {
                let mut stream = host.watch_units(units.clone());
                loop {
                    tokio::select! {
                        _ = &mut deadline => break 'watch,
                        item = stream.next() => match item {
                            Some(Ok(s)) => print(json!({"event": "state", "state": s})),
                            Some(Err(e)) if rewatch && e.is_unreachable() => {
                                print(json!({
                                    "event": "error",
                                    "error": e.to_string(),
                                    "unreachable": true,
                                    "rewatch": true,
                                }));
                                tokio::select! {
                                    _ = &mut deadline => break 'watch,
                                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                                }
                                continue 'watch;
                            }
                            Some(Err(e)) => return fail(&e),
                            None => break 'watch,
                        },
                    }
                }
            }
            print(json!({"event": "done"}));
            ExitCode::SUCCESS
        }
        Cmd::State { unit } => match host.unit_state(&unit).await {
            Ok(s) => {
                print(json!({"event": "state", "state": s}));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Cmd::Run {
            name,
            output,
            timeout,
            env,
            dir,
            argv,
        } => {
            let mut vars = BTreeMap::new();
            for kv in env {
                let Some((k, v)) = kv.split_once('=') else {
                    eprintln!("--env wants KEY=VALUE, got `{kv}`");
                    return ExitCode::from(2);
                };
                vars.insert(k.to_string(), v.to_string());
            }
            let spec = TransientSpec {
                unit_name: name.clone(),
                argv,
                env: vars,
                working_dir: dir,
                output_path: output,
                timeout,
            };
            match host.run_transient(spec).await {
                Ok(()) => {
                    print(json!({"event": "started", "unit": name}));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Cmd::Result { name, output, wait } => {
            if let Some(wait) = wait {
                // Watch it (signals, no polling) until it is no longer running.
                let mut stream = host.watch_units(vec![name.clone()]);
                let finished = async {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(s) if TransientPhase::of(&s) == TransientPhase::Running => {}
                            Ok(_) => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                };
                match tokio::time::timeout(wait, finished).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return fail(&e),
                    Err(_) => {
                        print(json!({"event": "result", "result": null, "waited": true}));
                        return ExitCode::SUCCESS;
                    }
                }
            }
            match host.transient_result(&name, &output).await {
                Ok(r) => {
                    print(json!({"event": "result", "result": r}));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Cmd::Cleanup { name, output } => match host.cleanup_transient(&name, &output).await {
            Ok(()) => {
                print(json!({"event": "cleaned", "unit": name}));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}
