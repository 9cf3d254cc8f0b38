//! `demo serve`: the HTTP server, one thread per connection.

use std::fs;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::cli::{ServeArgs, check_output_name};
use crate::config::{self, Snapshot};
use crate::http::{self, ReadError, Request, Response};
use crate::json;
use crate::signals::{self, Signal};

pub const UNHEALTHY_FILE: &str = "/tmp/unhealthy";

pub struct State {
    pub config_dir: PathBuf,
    pub outputs_dir: PathBuf,
    pub unhealthy_file: PathBuf,
    /// `DEMO_UNHEALTHY=1` at start.
    pub unhealthy_env: bool,
    /// Set by `POST /unhealthy`, cleared by `POST /healthy`.
    pub unhealthy_flag: AtomicBool,
    pub greeting: String,
    pub hostname: String,
    pub config: Mutex<Snapshot>,
}

/// What a handled request leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Respond(Response),
    /// Answer, then exit the process with this code.
    RespondThenExit(Response, i32),
}

impl State {
    pub fn new(args: &ServeArgs) -> State {
        State {
            config_dir: args.config_dir.clone(),
            outputs_dir: args.outputs_dir.clone(),
            unhealthy_file: PathBuf::from(UNHEALTHY_FILE),
            unhealthy_env: std::env::var("DEMO_UNHEALTHY").is_ok_and(|v| v == "1"),
            unhealthy_flag: AtomicBool::new(false),
            greeting: std::env::var("GREETING").unwrap_or_else(|_| "hello".to_string()),
            hostname: hostname(),
            config: Mutex::new(Snapshot::default()),
        }
    }

    fn snapshot(&self) -> MutexGuard<'_, Snapshot> {
        // A panicking holder cannot leave the snapshot half-written (it is
        // replaced field by field under the lock), so poisoning is ignored.
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (Re)reads the config dir, logs it, and returns the new snapshot as JSON.
    pub fn reload(&self, initial: bool) -> String {
        let (files, errors) = config::load(&self.config_dir);
        let mut snap = self.snapshot();
        for e in &errors {
            println!("config: warning: {e}");
        }
        for f in &files {
            println!("{}", f.log_line());
        }
        let verb = if initial { "loaded" } else { "reloaded" };
        println!("{verb} config ({} files)", files.len());
        snap.files = files;
        snap.errors = errors;
        snap.loads += 1;
        snap.reloaded_at = json::now_rfc3339();
        snap.to_json(&self.config_dir)
    }

    /// `Some(reason)` when /health should fail.
    pub fn unhealthy_reason(&self) -> Option<String> {
        if self.unhealthy_flag.load(Ordering::SeqCst) {
            Some("set by POST /unhealthy".to_string())
        } else if self.unhealthy_env {
            Some("DEMO_UNHEALTHY=1".to_string())
        } else if self.unhealthy_file.exists() {
            Some(format!("{} exists", self.unhealthy_file.display()))
        } else {
            None
        }
    }

    pub fn handle(&self, req: &Request) -> Outcome {
        let method = req.line.method.as_str();
        let path = req.line.path.as_str();
        let resp = match (method, path) {
            ("GET" | "HEAD", "/health") => match self.unhealthy_reason() {
                None => Response::text(200, "ok"),
                Some(r) => Response::text(503, format!("unhealthy: {r}")),
            },
            ("POST", "/unhealthy") => {
                self.unhealthy_flag.store(true, Ordering::SeqCst);
                Response::text(200, "unhealthy from now on\n")
            }
            ("POST", "/healthy") => {
                self.unhealthy_flag.store(false, Ordering::SeqCst);
                match fs::remove_file(&self.unhealthy_file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Outcome::Respond(Response::text(
                            500,
                            format!("removing {}: {e}\n", self.unhealthy_file.display()),
                        ));
                    }
                }
                Response::text(200, "healthy again\n")
            }
            ("GET" | "HEAD", "/") => {
                Response::text(200, format!("{} from {}\n", self.greeting, self.hostname))
            }
            ("GET" | "HEAD", "/config") => {
                Response::json(200, self.snapshot().to_json(&self.config_dir))
            }
            ("POST", "/reload") => Response::json(200, self.reload(false)),
            ("GET" | "HEAD", "/env") => Response::json(200, env_json()),
            ("GET" | "HEAD", "/outputs") => match outputs_json(&self.outputs_dir) {
                Ok(j) => Response::json(200, j),
                Err(e) => Response::text(500, format!("{}: {e}\n", self.outputs_dir.display())),
            },
            ("POST", "/outputs") => match write_outputs(&self.outputs_dir, &req.line.query) {
                Ok(lines) => Response::text(200, lines),
                Err(e) => Response::text(400, format!("{e}\n")),
            },
            ("POST", "/exit") => {
                let code = match req.query("code") {
                    None => 0,
                    Some(c) => match crate::cli::parse_exit_code(c) {
                        Ok(c) => c,
                        Err(e) => return Outcome::Respond(Response::text(400, format!("{e}\n"))),
                    },
                };
                return Outcome::RespondThenExit(
                    Response::text(200, format!("exiting with code {code}\n")),
                    code,
                );
            }
            (
                _,
                "/health" | "/unhealthy" | "/healthy" | "/" | "/config" | "/reload" | "/env"
                | "/outputs" | "/exit",
            ) => Response::text(405, format!("{method} not allowed on {path}\n")),
            _ => Response::text(404, format!("no route for {path}\n")),
        };
        Outcome::Respond(resp)
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

fn env_json() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();
    json::object(vars.iter().map(|(k, v)| (k.as_str(), json::string(v))))
}

fn outputs_json(dir: &Path) -> io::Result<String> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_file() {
                    let content = fs::read(e.path())?;
                    out.push((
                        e.file_name().to_string_lossy().into_owned(),
                        String::from_utf8_lossy(&content).into_owned(),
                    ));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(json::object(
        out.iter().map(|(k, v)| (k.as_str(), json::string(v))),
    ))
}

/// Writes each `(name, value)` into `dir/name`; returns one line per output.
pub fn write_outputs(dir: &Path, outputs: &[(String, String)]) -> Result<String, String> {
    if outputs.is_empty() {
        return Err("no outputs given".to_string());
    }
    for (name, _) in outputs {
        check_output_name(name)?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut lines = String::new();
    for (name, value) in outputs {
        let path = dir.join(name);
        fs::write(&path, value).map_err(|e| format!("writing {}: {e}", path.display()))?;
        lines.push_str(&format!("output {name}={value}\n"));
    }
    Ok(lines)
}

fn serve_connection(state: &State, stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let outcome = match http::read_request(&mut reader) {
        Ok(None) => return Ok(()),
        Ok(Some(req)) => {
            let outcome = state.handle(&req);
            let status = match &outcome {
                Outcome::Respond(r) | Outcome::RespondThenExit(r, _) => r.status,
            };
            if req.line.path != "/health" {
                eprintln!(
                    "request: {peer} {} {} -> {status}",
                    req.line.method, req.line.path
                );
            }
            if req.line.method == "HEAD" {
                // Same headers, no body: simplest is to answer with an empty body.
                match outcome {
                    Outcome::Respond(r) => Outcome::Respond(Response {
                        body: Vec::new(),
                        ..r
                    }),
                    other => other,
                }
            } else {
                outcome
            }
        }
        Err(ReadError::Io(e)) => return Err(e),
        Err(ReadError::Http(e)) => {
            let status = match e {
                http::HttpError::Bad(_) => 400,
                http::HttpError::TooLarge("body") => 413,
                http::HttpError::TooLarge(_) => 431,
            };
            eprintln!("request: {peer} rejected: {e}");
            Outcome::Respond(Response::text(status, format!("{e}\n")))
        }
    };
    match outcome {
        Outcome::Respond(r) => {
            r.write_to(&mut writer)?;
            let _ = writer.shutdown(Shutdown::Write);
        }
        Outcome::RespondThenExit(r, code) => {
            let written = r.write_to(&mut writer);
            let _ = writer.shutdown(Shutdown::Both);
            println!("exit requested over HTTP, exiting with code {code}");
            let _ = io::stdout().flush();
            written?;
            std::process::exit(code);
        }
    }
    Ok(())
}

/// Runs the server; only returns on a setup error.
pub fn serve(args: &ServeArgs) -> io::Result<()> {
    signals::block()?;
    let state = Arc::new(State::new(args));
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(addr)?;
    println!(
        "demo {} listening on {} (pid {}, config dir {}, outputs dir {})",
        env!("CARGO_PKG_VERSION"),
        listener.local_addr()?,
        std::process::id(),
        state.config_dir.display(),
        state.outputs_dir.display()
    );
    state.reload(true);

    let ignore_term = std::env::var("DEMO_IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    let sig_state = Arc::clone(&state);
    signals::spawn(move |sig| match sig {
        Signal::Hup => {
            println!("received SIGHUP, reloading config");
            sig_state.reload(false);
        }
        Signal::Term if ignore_term => {
            println!("received SIGTERM, ignoring it (DEMO_IGNORE_SIGTERM=1)");
        }
        Signal::Term | Signal::Int => {
            println!("received {}, exiting", sig.name());
            let _ = io::stdout().flush();
            std::process::exit(0);
        }
    })?;

    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let st = Arc::clone(&state);
        let spawned = thread::Builder::new().spawn(move || {
            if let Err(e) = serve_connection(&st, stream) {
                eprintln!("connection: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("spawning connection thread: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request_line;

    fn state(tag: &str) -> State {
        let base = std::env::temp_dir().join(format!("demo-server-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("config")).expect("mkdir");
        State {
            config_dir: base.join("config"),
            outputs_dir: base.join("outputs"),
            unhealthy_file: base.join("unhealthy"),
            unhealthy_env: false,
            unhealthy_flag: AtomicBool::new(false),
            greeting: "hi".into(),
            hostname: "box".into(),
            config: Mutex::new(Snapshot::default()),
        }
    }

    fn req(line: &str) -> Request {
        Request {
            line: parse_request_line(line).expect("request line"),
            headers: vec![],
            body: vec![],
        }
    }

    fn respond(s: &State, line: &str) -> Response {
        match s.handle(&req(line)) {
            Outcome::Respond(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn body(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn health_flips() {
        let s = state("health");
        assert_eq!(
            respond(&s, "GET /health HTTP/1.1"),
            Response::text(200, "ok")
        );
        fs::write(&s.unhealthy_file, "").expect("touch");
        assert_eq!(respond(&s, "GET /health HTTP/1.1").status, 503);
        assert_eq!(respond(&s, "POST /healthy HTTP/1.1").status, 200);
        assert!(!s.unhealthy_file.exists());
        assert_eq!(respond(&s, "GET /health HTTP/1.1").status, 200);
        respond(&s, "POST /unhealthy HTTP/1.1");
        assert_eq!(respond(&s, "GET /health HTTP/1.1").status, 503);
        let _ = fs::remove_dir_all(s.config_dir.parent().expect("base"));
    }

    #[test]
    fn greeting_config_and_routes() {
        let s = state("routes");
        assert_eq!(body(&respond(&s, "GET / HTTP/1.1")), "hi from box\n");
        fs::write(s.config_dir.join("app.conf"), "x=1").expect("write");
        s.reload(true);
        let c = body(&respond(&s, "GET /config HTTP/1.1"));
        assert!(c.contains("\"loads\":1"), "{c}");
        assert!(c.contains("\"path\":\"app.conf\",\"size\":3"), "{c}");
        assert!(c.contains("\"content\":\"x=1\""), "{c}");
        let c = body(&respond(&s, "POST /reload HTTP/1.1"));
        assert!(c.contains("\"loads\":2"), "{c}");
        assert_eq!(respond(&s, "DELETE /config HTTP/1.1").status, 405);
        assert_eq!(respond(&s, "GET /nope HTTP/1.1").status, 404);
        assert!(body(&respond(&s, "GET /env HTTP/1.1")).starts_with('{'));
        let _ = fs::remove_dir_all(s.config_dir.parent().expect("base"));
    }

    #[test]
    fn outputs_over_http() {
        let s = state("outputs");
        assert_eq!(body(&respond(&s, "GET /outputs HTTP/1.1")), "{}");
        let r = respond(&s, "POST /outputs?a=1&b=two+words HTTP/1.1");
        assert_eq!(body(&r), "output a=1\noutput b=two words\n");
        assert_eq!(
            body(&respond(&s, "GET /outputs HTTP/1.1")),
            "{\"a\":\"1\",\"b\":\"two words\"}"
        );
        assert_eq!(respond(&s, "POST /outputs?..=1 HTTP/1.1").status, 400);
        let _ = fs::remove_dir_all(s.config_dir.parent().expect("base"));
    }

    #[test]
    fn exit_route() {
        let s = state("exit");
        assert!(matches!(
            s.handle(&req("POST /exit?code=7 HTTP/1.1")),
            Outcome::RespondThenExit(_, 7)
        ));
        assert!(matches!(
            s.handle(&req("POST /exit HTTP/1.1")),
            Outcome::RespondThenExit(_, 0)
        ));
        assert_eq!(respond(&s, "POST /exit?code=x HTTP/1.1").status, 400);
        assert_eq!(respond(&s, "GET /exit HTTP/1.1").status, 405);
        let _ = fs::remove_dir_all(s.config_dir.parent().expect("base"));
    }
}
