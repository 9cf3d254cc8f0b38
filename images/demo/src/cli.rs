//! Command-line parsing (hand-rolled: the demo keeps std + libc only).
//!
//! Everything here is pure: the environment is passed in as a lookup function
//! so the precedence rules (flag > env > default) are unit-testable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::expand::Template;

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_CONFIG_DIR: &str = "/etc/demo";
pub const DEFAULT_OUTPUTS_DIR: &str = "/berth/outputs";

pub const HELP: &str = "\
demo: berth's demo workload (image berth-demo:latest, entrypoint /demo, default command `serve`)

USAGE:
    demo serve [--port N] [--bind IP] [--config-dir DIR] [--outputs-dir DIR]
    demo health [--port N]
    demo request [--port N] [--data BODY] [METHOD] PATH
    demo exit CODE [--stdout TEXT] [--stderr TEXT] [--sleep DURATION]
    demo write-outputs NAME=VALUE... [--dir DIR]
    demo append FILE WORD...
    demo sleep DURATION
    demo COMMAND ARGS... --then COMMAND ARGS...
    demo help | --help | -h
    demo version | --version | -V

With no command, `demo` runs `serve`. Flags accept `--flag value` and `--flag=value`;
`--` ends a command's flags.

SERVE
    HTTP/1.1 server (one thread per connection, every response `Connection: close`).
    --port N          listen port      [env DEMO_PORT,       default 8080]
    --bind IP         listen address   [env DEMO_BIND,       default 0.0.0.0] (an IP: no DNS)
    --config-dir DIR  config directory [env DEMO_CONFIG_DIR, default /etc/demo]
    --outputs-dir DIR outputs dir      [env DEMO_OUTPUTS_DIR, default /berth/outputs]

    GET  /health         200 `ok`; 503 `unhealthy: REASON` when /tmp/unhealthy exists,
                         env DEMO_UNHEALTHY=1, or after POST /unhealthy
    POST /unhealthy      make /health fail from now on
    POST /healthy        undo POST /unhealthy and delete /tmp/unhealthy
    GET  /               `$GREETING from $HOSTNAME` (GREETING defaults to `hello`)
    GET  /config         JSON: {dir, loads, reloaded_at, files: [{path, size, sha256, content}]}
                         as currently loaded (content is UTF-8 lossy)
    POST /reload         re-read the config dir (like SIGHUP); answers like GET /config
    GET  /env            JSON object of the process environment
    GET  /outputs        JSON object {NAME: content} of the files in the outputs dir
    POST /outputs?N=V..  write each V into file OUTPUTS_DIR/N
    POST /exit?code=N    answer, then exit with code N (default 0)

    Logs (stdout): `listening on ADDR`; on start and on every reload one line per
    config file, `config: PATH (N bytes) sha256=HEX`, then `loaded config (N files)`
    at start or `reloaded config (N files)` on reload. Requests other than /health
    are logged to stderr.
    Signals: SIGHUP re-reads the config dir. SIGTERM/SIGINT log a line and exit 0
    (with DEMO_IGNORE_SIGTERM=1, SIGTERM is logged and ignored: for stop-timeout tests).

HEALTH
    Exit 0 if GET http://127.0.0.1:PORT/health answers 200, else 1 (PORT from --port,
    env DEMO_PORT, default 8080). For container healthchecks: exec [\"/demo\", \"health\"].

REQUEST
    A tiny HTTP client for `docker exec` (the image has no shell): sends METHOD
    (default GET, or POST with --data) PATH to 127.0.0.1:PORT, prints the body,
    exits 0 on a 2xx answer, 1 otherwise.

EXIT (a task)
    Print TEXT (plus a newline) to stdout/stderr, sleep DURATION if given, exit CODE (0-255).

WRITE-OUTPUTS
    Write each VALUE (expanded, see below; no newline added) into file DIR/NAME,
    creating DIR [--dir, env DEMO_OUTPUTS_DIR, default /berth/outputs]; print
    `output NAME=VALUE` per output; exit 0. NAME must be a plain file name.

APPEND
    Append one line, the WORDs (expanded, see below) joined by single spaces plus a
    newline, to FILE in a single O_APPEND write (concurrent appenders never
    interleave), creating FILE (mode 0644) if missing; print `append FILE: LINE`.
    A WORD starting with `--` needs a `--` before it.

EXPANSION (in append's WORDs and write-outputs' VALUEs, not in POST /outputs)
    ${VAR}   the env var's value, empty if unset
    @{PATH}  the content of file PATH minus one trailing newline; exit 1 naming
             PATH if it cannot be read (or is not UTF-8)
    A `$` or `@` not followed by `{` is kept; an unclosed or empty reference is a
    usage error (exit 2). There is no escape.

--THEN
    `demo A... --then B... [--then C...]` runs the commands in order and stops at
    the first that does not exit 0, with its exit code (a scratch image has no shell
    for `&&`). Every command is parsed before the first runs, so a usage error runs
    nothing. `--then` always separates: it cannot be a flag value or a WORD.

SLEEP
    Sleep DURATION, then exit 0.

DURATION: a number of seconds (`1.5`) or a number with a unit: ms, s, m, h (`250ms`, `2m`).
While `exit --sleep` or `sleep` waits, SIGTERM/SIGINT end the process with 128+signal
(143/130), unless DEMO_IGNORE_SIGTERM=1.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve(ServeArgs),
    Health {
        port: u16,
    },
    Request(RequestArgs),
    Exit(ExitArgs),
    WriteOutputs {
        dir: PathBuf,
        outputs: Vec<(String, Template)>,
    },
    Append {
        file: PathBuf,
        words: Vec<Template>,
    },
    Sleep(Duration),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeArgs {
    pub bind: IpAddr,
    pub port: u16,
    pub config_dir: PathBuf,
    pub outputs_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestArgs {
    pub port: u16,
    pub method: String,
    pub path: String,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitArgs {
    pub code: i32,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub sleep: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

/// Splits a command's arguments into flags (with values) and positionals.
struct Parsed {
    flags: Vec<(String, String)>,
    positionals: Vec<String>,
}

impl Parsed {
    /// `valued` lists the flags this command knows (all take a value).
    fn new(args: &[String], valued: &[&str]) -> Result<Parsed, UsageError> {
        let mut flags = Vec::new();
        let mut positionals = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                positionals.extend(it.by_ref().cloned());
                break;
            }
            if let Some(rest) = arg.strip_prefix("--") {
                let (name, inline) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (rest, None),
                };
                if !valued.contains(&name) {
                    return Err(usage(format!("unknown flag --{name}")));
                }
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| usage(format!("--{name} needs a value")))?,
                };
                flags.push((name.to_string(), value));
            } else {
                positionals.push(arg.clone());
            }
        }
        Ok(Parsed { flags, positionals })
    }

    /// The last occurrence wins.
    fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn no_positionals(&self, cmd: &str) -> Result<(), UsageError> {
        match self.positionals.first() {
            Some(p) => Err(usage(format!("{cmd}: unexpected argument {p:?}"))),
            None => Ok(()),
        }
    }
}

pub fn parse_port(s: &str) -> Result<u16, UsageError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(usage(format!("invalid port {s:?}"))),
    }
}

/// `1.5` (seconds), `250ms`, `2s`, `3m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, UsageError> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let bad = || {
        usage(format!(
            "invalid duration {s:?} (try 1.5, 250ms, 2s, 3m, 1h)"
        ))
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Duration::try_from_secs_f64(n * scale).map_err(|_| bad())
}

pub fn parse_exit_code(s: &str) -> Result<i32, UsageError> {
    match s.trim().parse::<i32>() {
        Ok(c) if (0..=255).contains(&c) => Ok(c),
        _ => Err(usage(format!("invalid exit code {s:?} (0-255)"))),
    }
}

/// `NAME=VALUE` where NAME is a plain file name and VALUE a [`Template`].
pub fn parse_output(s: &str) -> Result<(String, Template), UsageError> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| usage(format!("expected NAME=VALUE, got {s:?}")))?;
    check_output_name(name).map_err(usage)?;
    Ok((name.to_string(), template(value)?))
}

fn template(s: &str) -> Result<Template, UsageError> {
    Template::parse(s).map_err(usage)
}

/// The separator of [`parse_chain`].
pub const THEN: &str = "--then";

/// Parses `A... --then B... --then C...` into the commands to run in order;
/// without `--then`, the one command [`parse`] reads.
pub fn parse_chain(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Command>, UsageError> {
    if !args.iter().any(|a| a == THEN) {
        return Ok(vec![parse(args, env)?]);
    }
    args.split(|a| a == THEN)
        .map(|part| {
            if part.is_empty() {
                Err(usage(format!("{THEN} needs a command on each side")))
            } else {
                parse(part, env)
            }
        })
        .collect()
}

/// An output name must be usable as one file name inside the outputs dir.
pub fn check_output_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("invalid output name {name:?}"));
    }
    Ok(())
}

fn port_from(p: &Parsed, env: &dyn Fn(&str) -> Option<String>) -> Result<u16, UsageError> {
    match p.flag("port") {
        Some(v) => parse_port(v),
        None => match env("DEMO_PORT") {
            Some(v) if !v.is_empty() => parse_port(&v),
            _ => Ok(DEFAULT_PORT),
        },
    }
}

fn path_from(
    p: &Parsed,
    flag: &str,
    env_name: &str,
    default: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> PathBuf {
    match p.flag(flag) {
        Some(v) => PathBuf::from(v),
        None => match env(env_name) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => PathBuf::from(default),
        },
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Command, UsageError> {
    let Some((cmd, rest)) = args.split_first() else {
        return parse(&["serve".to_string()], env);
    };
    match cmd.as_str() {
        "serve" => {
            let p = Parsed::new(rest, &["port", "bind", "config-dir", "outputs-dir"])?;
            p.no_positionals("serve")?;
            let bind = match p
                .flag("bind")
                .map(str::to_string)
                .or_else(|| env("DEMO_BIND"))
            {
                Some(v) if !v.is_empty() => v
                    .trim()
                    .parse::<IpAddr>()
                    .map_err(|_| usage(format!("invalid bind address {v:?} (an IP address)")))?,
                _ => DEFAULT_BIND,
            };
            Ok(Command::Serve(ServeArgs {
                bind,
                port: port_from(&p, env)?,
                config_dir: path_from(&p, "config-dir", "DEMO_CONFIG_DIR", DEFAULT_CONFIG_DIR, env),
                outputs_dir: path_from(
                    &p,
                    "outputs-dir",
                    "DEMO_OUTPUTS_DIR",
                    DEFAULT_OUTPUTS_DIR,
                    env,
                ),
            }))
        }
        "health" => {
            let p = Parsed::new(rest, &["port"])?;
            p.no_positionals("health")?;
            Ok(Command::Health {
                port: port_from(&p, env)?,
            })
        }
        "request" => {
            let p = Parsed::new(rest, &["port", "data"])?;
            let body = p.flag("data").map(str::to_string);
            let (method, path) = match p.positionals.as_slice() {
                [path] => {
                    let m = if body.is_some() { "POST" } else { "GET" };
                    (m.to_string(), path.clone())
                }
                [method, path] => (method.to_ascii_uppercase(), path.clone()),
                _ => return Err(usage("request: expected [METHOD] PATH")),
            };
            if !path.starts_with('/') {
                return Err(usage(format!(
                    "request: PATH must start with '/': {path:?}"
                )));
            }
            Ok(Command::Request(RequestArgs {
                port: port_from(&p, env)?,
                method,
                path,
                body,
            }))
        }
        "exit" => {
            let p = Parsed::new(rest, &["stdout", "stderr", "sleep"])?;
            let code = match p.positionals.as_slice() {
                [code] => parse_exit_code(code)?,
                [] => return Err(usage("exit: missing CODE")),
                [_, extra, ..] => {
                    return Err(usage(format!("exit: unexpected argument {extra:?}")));
                }
            };
            Ok(Command::Exit(ExitArgs {
                code,
                stdout: p.flag("stdout").map(str::to_string),
                stderr: p.flag("stderr").map(str::to_string),
                sleep: p.flag("sleep").map(parse_duration).transpose()?,
            }))
        }
        "write-outputs" => {
            let p = Parsed::new(rest, &["dir"])?;
            if p.positionals.is_empty() {
                return Err(usage("write-outputs: expected NAME=VALUE..."));
            }
            let outputs = p
                .positionals
                .iter()
                .map(|s| parse_output(s))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Command::WriteOutputs {
                dir: path_from(&p, "dir", "DEMO_OUTPUTS_DIR", DEFAULT_OUTPUTS_DIR, env),
                outputs,
            })
        }
        "append" => {
            let p = Parsed::new(rest, &[])?;
            let Some((file, words)) = p.positionals.split_first() else {
                return Err(usage("append: expected FILE WORD..."));
            };
            if words.is_empty() {
                return Err(usage("append: expected at least one WORD after FILE"));
            }
            if file.is_empty() {
                return Err(usage("append: FILE is empty"));
            }
            Ok(Command::Append {
                file: PathBuf::from(file),
                words: words
                    .iter()
                    .map(|w| template(w))
                    .collect::<Result<_, _>>()?,
            })
        }
        "sleep" => match rest {
            [d] => Ok(Command::Sleep(parse_duration(d)?)),
            _ => Err(usage("sleep: expected DURATION")),
        },
        "help" | "--help" | "-h" => Ok(Command::Help),
        "version" | "--version" | "-V" => Ok(Command::Version),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn p(s: &[&str]) -> Result<Command, UsageError> {
        parse(&args(s), &no_env)
    }

    #[test]
    fn no_command_is_serve_with_defaults() {
        assert_eq!(
            p(&[]),
            Ok(Command::Serve(ServeArgs {
                bind: DEFAULT_BIND,
                port: 8080,
                config_dir: PathBuf::from("/etc/demo"),
                outputs_dir: PathBuf::from("/berth/outputs"),
            }))
        );
        assert_eq!(p(&[]), p(&["serve"]));
    }

    #[test]
    fn serve_flags_both_forms() {
        let Ok(Command::Serve(s)) = p(&[
            "serve",
            "--port",
            "9000",
            "--config-dir=/cfg",
            "--outputs-dir",
            "/out",
            "--bind",
            "127.0.0.1",
        ]) else {
            panic!("expected serve");
        };
        assert_eq!(s.port, 9000);
        assert_eq!(s.config_dir, PathBuf::from("/cfg"));
        assert_eq!(s.outputs_dir, PathBuf::from("/out"));
        assert_eq!(s.bind, "127.0.0.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let env = |k: &str| match k {
            "DEMO_PORT" => Some("7000".to_string()),
            "DEMO_CONFIG_DIR" => Some("/from-env".to_string()),
            _ => None,
        };
        let Ok(Command::Serve(s)) = parse(&args(&["serve"]), &env) else {
            panic!("expected serve");
        };
        assert_eq!(s.port, 7000);
        assert_eq!(s.config_dir, PathBuf::from("/from-env"));
        let Ok(Command::Serve(s)) = parse(&args(&["serve", "--port=7001"]), &env) else {
            panic!("expected serve");
        };
        assert_eq!(s.port, 7001);
        assert_eq!(
            parse(&args(&["health"]), &env),
            Ok(Command::Health { port: 7000 })
        );
    }

    #[test]
    fn serve_rejects_junk() {
        assert!(p(&["serve", "--port", "0"]).is_err());
        assert!(p(&["serve", "--port", "70000"]).is_err());
        assert!(p(&["serve", "--port"]).is_err());
        assert!(p(&["serve", "--bind", "localhost"]).is_err());
        assert!(p(&["serve", "--nope", "1"]).is_err());
        assert!(p(&["serve", "extra"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
    }

    #[test]
    fn exit_command() {
        assert_eq!(
            p(&[
                "exit",
                "3",
                "--stdout",
                "hi",
                "--stderr=-oops",
                "--sleep",
                "250ms"
            ]),
            Ok(Command::Exit(ExitArgs {
                code: 3,
                stdout: Some("hi".into()),
                stderr: Some("-oops".into()),
                sleep: Some(Duration::from_millis(250)),
            }))
        );
        // Flags may come first; the value of --stdout may look like a flag.
        assert_eq!(
            p(&["exit", "--stdout", "--x", "0"]),
            Ok(Command::Exit(ExitArgs {
                code: 0,
                stdout: Some("--x".into()),
                stderr: None,
                sleep: None,
            }))
        );
        assert!(p(&["exit"]).is_err());
        assert!(p(&["exit", "256"]).is_err());
        assert!(p(&["exit", "-1"]).is_err());
        assert!(p(&["exit", "1", "2"]).is_err());
    }

    fn t(s: &str) -> Template {
        Template::parse(s).expect("a valid template")
    }

    #[test]
    fn write_outputs_command() {
        assert_eq!(
            p(&[
                "write-outputs",
                "a=1",
                "b=x=y",
                "empty=",
                "v=schema-${RELEASE}",
                "--dir",
                "/o"
            ]),
            Ok(Command::WriteOutputs {
                dir: PathBuf::from("/o"),
                outputs: vec![
                    ("a".into(), t("1")),
                    ("b".into(), t("x=y")),
                    ("empty".into(), t("")),
                    ("v".into(), t("schema-${RELEASE}")),
                ],
            })
        );
        // A malformed reference is a usage error, before anything is written.
        assert!(p(&["write-outputs", "a=1", "v=${RELEASE"]).is_err());
        let Ok(Command::WriteOutputs { dir, .. }) = p(&["write-outputs", "a=1"]) else {
            panic!("expected write-outputs");
        };
        assert_eq!(dir, PathBuf::from("/berth/outputs"));
        assert!(p(&["write-outputs"]).is_err());
        assert!(p(&["write-outputs", "noequals"]).is_err());
        assert!(p(&["write-outputs", "../x=1"]).is_err());
        assert!(p(&["write-outputs", "=1"]).is_err());
        assert!(p(&["write-outputs", "..=1"]).is_err());
    }

    #[test]
    fn append_command() {
        assert_eq!(
            p(&[
                "append",
                "/upgrade/log",
                "db-migrate",
                "${BERTH_INPUT_RELEASE}"
            ]),
            Ok(Command::Append {
                file: PathBuf::from("/upgrade/log"),
                words: vec![t("db-migrate"), t("${BERTH_INPUT_RELEASE}")],
            })
        );
        // An empty WORD counts; `--` lets a WORD start with `--`.
        assert_eq!(
            p(&["append", "f", "", "--", "--x"]),
            Ok(Command::Append {
                file: PathBuf::from("f"),
                words: vec![t(""), t("--x")],
            })
        );
        assert!(p(&["append"]).is_err());
        assert!(p(&["append", "f"]).is_err());
        assert!(p(&["append", "", "w"]).is_err());
        assert!(p(&["append", "f", "--x"]).is_err());
        assert!(p(&["append", "f", "@{"]).is_err());
    }

    #[test]
    fn then_chains_commands() {
        let chain = |s: &[&str]| parse_chain(&args(s), &no_env);
        assert_eq!(
            chain(&["sleep", "1"]),
            Ok(vec![p(&["sleep", "1"]).expect("sleep")])
        );
        assert_eq!(chain(&[]), Ok(vec![p(&[]).expect("serve")]));
        assert_eq!(
            chain(&[
                "append",
                "f",
                "x",
                "--then",
                "write-outputs",
                "v=1",
                "--then",
                "exit",
                "3"
            ]),
            Ok(vec![
                p(&["append", "f", "x"]).expect("append"),
                p(&["write-outputs", "v=1"]).expect("write-outputs"),
                p(&["exit", "3"]).expect("exit"),
            ])
        );
        // A usage error anywhere refuses the whole chain.
        assert!(chain(&["append", "f", "x", "--then", "exit", "300"]).is_err());
        for bad in [
            &["--then", "sleep", "1"][..],
            &["sleep", "1", "--then"],
            &["sleep", "1", "--then", "--then", "sleep", "1"],
        ] {
            assert!(chain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_command() {
        assert_eq!(
            p(&["request", "/config"]),
            Ok(Command::Request(RequestArgs {
                port: 8080,
                method: "GET".into(),
                path: "/config".into(),
                body: None
            }))
        );
        assert_eq!(
            p(&["request", "post", "/exit?code=2", "--port", "81"]),
            Ok(Command::Request(RequestArgs {
                port: 81,
                method: "POST".into(),
                path: "/exit?code=2".into(),
                body: None
            }))
        );
        let Ok(Command::Request(r)) = p(&["request", "--data", "x", "/reload"]) else {
            panic!("expected request");
        };
        assert_eq!(r.method, "POST");
        assert!(p(&["request"]).is_err());
        assert!(p(&["request", "config"]).is_err());
    }

    #[test]
    fn sleep_and_durations() {
        assert_eq!(
            p(&["sleep", "2"]),
            Ok(Command::Sleep(Duration::from_secs(2)))
        );
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "x", "-1", "1d", "inf", "NaN", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(p(&["sleep"]).is_err());
        assert!(p(&["sleep", "1", "2"]).is_err());
    }

    #[test]
    fn help_and_version() {
        for h in ["help", "--help", "-h"] {
            assert_eq!(p(&[h]), Ok(Command::Help));
        }
        for v in ["version", "--version", "-V"] {
            assert_eq!(p(&[v]), Ok(Command::Version));
        }
    }
}
