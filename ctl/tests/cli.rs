//! berthctl end to end: the binary against a fake berthd on a temp socket.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use berth_core::dto::{
    ApplyRequest, ApplyResponse, ApplyResult, Change, ContainerStatus, DeploymentSummary,
    EngineStatus, ErrorBody, EventsResponse, FieldChange, NodeInfo, ServiceDetail, ServiceStatus,
    Summary, VerbResponse,
};
use berth_core::event::{Event, EventKind};
use berth_core::hooks::HookWait;
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::runtime::{ContainerState, Health};
use berth_core::spec::HookPhase;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the fake daemon does.
#[derive(Default)]
struct State {
    /// The status a deployment reaches on its second poll.
    final_status: Option<Status>,
    polls: HashMap<String, usize>,
    /// `METHOD path?query` of every request.
    requests: Vec<String>,
    /// The last apply request body.
    applied: Option<ApplyRequest>,
    /// Polls 2 and 3 of a deployment answer WAITING_HOOK at this hook
    /// (`true`: a breakpoint, `false`: a running exec), then `final_status`.
    hook: Option<bool>,
    /// berthd pulls web's image while it resolves an apply: the apply
    /// answers after 500 ms, and the followed events tell the pull.
    pulling: bool,
}

struct FakeBerthd {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FakeBerthd {
    fn start(final_status: Status) -> Result<FakeBerthd, Box<dyn std::error::Error>> {
        Self::start_with(State {
            final_status: Some(final_status),
            ..State::default()
        })
    }

    /// Deployments wait at a pre_update hook (a breakpoint or a running
    /// exec) on their second and third poll, then complete.
    fn start_hooked(breakpoint: bool) -> Result<FakeBerthd, Box<dyn std::error::Error>> {
        Self::start_with(State {
            final_status: Some(Status::Complete),
            hook: Some(breakpoint),
            ..State::default()
        })
    }

    fn start_with(state: State) -> Result<FakeBerthd, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("berth.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::UnixListener::from_std(listener) else {
                    return;
                };
                while let Ok((stream, _)) = listener.accept().await {
                    let state = shared.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, Infallible>(handle(req, &state).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Ok(FakeBerthd {
            _dir: dir,
            socket,
            state,
        })
    }

    fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    fn applied(&self) -> Option<ApplyRequest> {
        self.state.lock().ok().and_then(|s| s.applied.clone())
    }

    fn run(&self, args: &[&str]) -> Result<Run, Box<dyn std::error::Error>> {
        berthctl(&self.socket, args)
    }
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn error(status: StatusCode, kind: &str, error: &str, details: &[&str]) -> Response<Full<Bytes>> {
    json_response(
        status,
        &ErrorBody {
            kind: kind.into(),
            error: error.into(),
            details: details.iter().map(ToString::to_string).collect(),
        },
    )
}

fn deployment(service: &str, generation: u64, action: DeployAction, status: Status) -> Deployment {
    Deployment {
        id: Deployment::make_id(service, generation),
        service: service.into(),
        generation,
        action,
        status,
        actor: "uid:0".into(),
        spec_hash: "sha256:0123456789abcdef0123".into(),
        created_at_ms: 1_709_210_096_000,
        updated_at_ms: 1_709_210_096_000,
        ..Deployment::default()
    }
}

fn web_status() -> ServiceStatus {
    ServiceStatus {
        name: "web".into(),
        owner: "api".into(),
        image: "nginx:1".into(),
        current: Some(DeploymentSummary::from(&deployment(
            "web",
            3,
            DeployAction::Update,
            Status::Complete,
        ))),
        container: Some(ContainerStatus {
            id: "c0ffee".into(),
            name: "berth-web".into(),
            state: ContainerState::Running,
            health: Some(Health::Healthy),
            restart_count: 0,
            exit_code: None,
            started_at: None,
            spec_hash: None,
        }),
        converged: true,
        ..ServiceStatus::default()
    }
}

async fn handle(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if let Ok(mut s) = state.lock() {
        s.requests.push(format!("{method} {path}?{query}"));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "node"]) => json_response(
            StatusCode::OK,
            &NodeInfo {
                node_id: "node-7".into(),
                version: "0.1.0".into(),
                engine: EngineStatus {
                    reachable: true,
                    detail: "unix:///var/run/docker.sock".into(),
                },
                summary: Summary {
                    services: 2,
                    converged: 1,
                    failing: 1,
                    ..Summary::default()
                },
                event_seq: 12,
                warnings: Vec::new(),
                outbox: Default::default(),
            },
        ),
        (&Method::GET, ["v1", "services"]) => {
            let api = ServiceStatus {
                name: "api".into(),
                owner: "api".into(),
                image: "api:2".into(),
                held: true,
                crash_loop: true,
                ..ServiceStatus::default()
            };
            json_response(StatusCode::OK, &vec![web_status(), api])
        }
        (&Method::GET, ["v1", "services", "web"]) => json_response(
            StatusCode::OK,
            &ServiceDetail {
                status: web_status(),
                current: Some(deployment("web", 3, DeployAction::Update, Status::Complete)),
            },
        ),
        (&Method::GET, ["v1", "services", name]) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no service named {name}"),
            &[],
        ),
        (&Method::GET, ["v1", "services", "web", "deployments"]) => json_response(
            StatusCode::OK,
            &vec![
                deployment("web", 2, DeployAction::Update, Status::Failed),
                deployment("web", 1, DeployAction::Create, Status::Complete),
            ],
        ),
        (&Method::POST, ["v1", "apply"]) => {
            if state.lock().is_ok_and(|s| s.pulling) {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let Ok(request) = serde_json::from_slice::<ApplyRequest>(&body) else {
                return error(StatusCode::BAD_REQUEST, "bad_request", "not JSON", &[]);
            };
            if let Ok(mut s) = state.lock() {
                s.applied = Some(request.clone());
            }
            if request.services.iter().any(|s| s.name == "taken") && !request.force {
                return error(
                    StatusCode::CONFLICT,
                    "conflict",
                    "taken is owned by spec_dir file /etc/berth/services.d/taken.yaml",
                    &[],
                );
            }
            let dry_run = query.contains("dry_run=true");
            let results = request
                .services
                .iter()
                .map(|s| ApplyResult {
                    service: s.name.clone(),
                    change: Change::Updated,
                    diff: vec![FieldChange {
                        field: "env.GREETING".into(),
                        old: Some("hello".into()),
                        new: Some("hi".into()),
                    }],
                    deployment: (!dry_run)
                        .then(|| deployment(&s.name, 4, DeployAction::Update, Status::Pending)),
                })
                .collect();
            json_response(StatusCode::OK, &ApplyResponse { dry_run, results })
        }
        (&Method::GET, ["v1", "deployments", id]) => {
            let (n, final_status, hook) = match state.lock() {
                Ok(mut s) => {
                    let n = s.polls.entry((*id).to_string()).or_insert(0);
                    *n += 1;
                    (*n, s.final_status.unwrap_or(Status::Complete), s.hook)
                }
                Err(_) => (1, Status::Complete, None),
            };
            let (service, generation) = id.rsplit_once('-').unwrap_or((id, "1"));
            let generation = generation.parse().unwrap_or(1);
            let hook = hook.filter(|_| (2..=3).contains(&n));
            let status = if n == 1 {
                Status::InProgress
            } else if hook.is_some() {
                Status::WaitingHook
            } else {
                final_status
            };
            let mut d = deployment(service, generation, DeployAction::Update, status);
            if let Some(breakpoint) = hook {
                let wait = HookWait {
                    phase: Some(HookPhase::PreUpdate),
                    index: 0,
                    hook: if breakpoint {
                        "breakpoint".into()
                    } else {
                        "exec /demo drain".into()
                    },
                    since_ms: 1_709_210_096_000,
                    breakpoint,
                    ..Default::default()
                };
                d.status_reason = berth_core::hooks::waiting_reason(service, &wait);
                d.hook = Some(wait);
            }
            if status == Status::Failed {
                d.status_reason = "container exited with code 3".into();
            }
            if *id == "web-6" {
                // The DELETE record: with ?volumes=true it ends naming them.
                d.action = DeployAction::Delete;
                if status == Status::Complete {
                    d.status_reason =
                        "volumes removed: data; volumes kept: shared (mounted by api)".into();
                }
            }
            json_response(StatusCode::OK, &d)
        }
        (&Method::POST, ["v1", "services", "web", "rollback"]) => json_response(
            StatusCode::OK,
            &VerbResponse {
                service: "web".into(),
                deployment: Some(deployment(
                    "web",
                    5,
                    DeployAction::Rollback,
                    Status::Pending,
                )),
                message: "web: rolling back to generation 3".into(),
            },
        ),
        (&Method::DELETE, ["v1", "services", "web"]) => json_response(
            StatusCode::OK,
            &VerbResponse {
                service: "web".into(),
                deployment: Some(deployment("web", 6, DeployAction::Delete, Status::Pending)),
                message: if query == "volumes=true" {
                    "deleting web; once its container is gone, its named volumes data are \
                     removed if berth created them for this node and nothing uses them; \
                     kept: shared (mounted by api)"
                        .into()
                } else {
                    "deleting web".into()
                },
            },
        ),
        (&Method::POST, ["v1", "services", "web", "hooks", "pre_update", "clear"]) => {
            json_response(
                StatusCode::OK,
                &VerbResponse {
                    service: "web".into(),
                    deployment: None,
                    message: "web: pre_update breakpoints of deployment web-4 cleared".into(),
                },
            )
        }
        (&Method::POST, ["v1", "services", "web", "hold"]) => json_response(
            StatusCode::OK,
            &VerbResponse {
                service: "web".into(),
                deployment: None,
                message: "web: held".into(),
            },
        ),
        (&Method::GET, ["v1", "services", "web", "logs"]) => {
            text_response(StatusCode::OK, "line one\nline two\n")
        }
        (&Method::GET, ["v1", "events"])
            if query == "since=12&follow=true" && state.lock().is_ok_and(|s| s.pulling) =>
        {
            let pull = |seq: u64, bytes_done: u64, done: bool| {
                let e = Event {
                    seq,
                    at_ms: 1_709_210_096_000,
                    kind: EventKind::ImagePull {
                        service: "web".into(),
                        reference: "127.0.0.1:5000/web:2".into(),
                        layers_done: if done { 7 } else { 3 },
                        layers_total: 7,
                        bytes_done,
                        bytes_total: 80_100_000,
                        done,
                        failed: false,
                    },
                };
                format!(
                    "id: {seq}\ndata: {}\n\n",
                    serde_json::to_string(&e).unwrap_or_default()
                )
            };
            let body = [
                pull(13, 0, false),
                pull(14, 12_300_000, false),
                pull(15, 80_100_000, true),
            ]
            .concat();
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        }
        (&Method::GET, ["v1", "events"]) if query.contains("follow=true") => text_response(
            StatusCode::OK,
            // As berthd sends it: `id:` lines, and a reset with empty data.
            ": hello\n\nid: 5\ndata: {\"seq\":5,\"at_ms\":1709210096000,\"type\":\"service_deleted\",\"service\":\"web\"}\n\n\
             event: reset\ndata: {}\n\n\
             id: 9\ndata: {\"seq\":9,\"at_ms\":1709210097000,\"type\":\"daemon\",\"message\":\"berthd started\"}\n\n",
        ),
        (&Method::GET, ["v1", "events"]) => json_response(
            StatusCode::OK,
            &EventsResponse {
                reset: false,
                events: vec![Event {
                    seq: 5,
                    at_ms: 1_709_210_096_000,
                    kind: EventKind::ServiceHeld {
                        service: "web".into(),
                        held: true,
                    },
                }],
            },
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route", &[]),
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn berthctl(socket: &Path, args: &[&str]) -> Result<Run, Box<dyn std::error::Error>> {
    let out = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .args(args)
        .env("BERTH_SOCKET", socket)
        .env("COLUMNS", "100")
        .env_remove("NO_COLOR")
        .output()?;
    Ok(out.into())
}

/// A temp dir holding the given files.
fn files(entries: &[(&str, &str)]) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    for (name, text) in entries {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(dir)
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

const WEB_YAML: &str = "name: web\nimage: nginx:1\nenv:\n  GREETING: hi\n";

// ---- no daemon ----

#[test]
fn help_lists_exit_codes_and_verbs() -> TestResult {
    let run = berthctl(Path::new("/nonexistent"), &["--help"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    for want in [
        "Exit codes:",
        "status",
        "apply",
        "rollback",
        "--socket",
        "--json",
    ] {
        assert!(run.stdout.contains(want), "no {want:?} in {run:?}");
    }
    assert!(
        run.stdout
            .contains("3  a deployment waited for stopped at a breakpoint")
    );
    let run = berthctl(Path::new("/nonexistent"), &["apply", "--help"])?;
    assert!(run.stdout.contains("Examples:"), "{run:?}");
    assert!(run.stdout.contains("--no-wait"), "{run:?}");
    assert!(run.stdout.contains("--wait-hooks"), "{run:?}");
    assert!(
        run.stdout
            .contains("berthctl hook clear web pre_update # (workloads moved away)"),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn usage_errors_exit_2() -> TestResult {
    let run = berthctl(Path::new("/nonexistent"), &["frobnicate"])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    let run = berthctl(Path::new("/nonexistent"), &["show", "Not/A/Name"])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    Ok(())
}

#[test]
fn unreachable_daemon_exits_1_with_a_hint() -> TestResult {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("nope.sock");
    let run = berthctl(&socket, &["status"])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    let want = format!("error: cannot reach berthd at {}: ", socket.display());
    assert!(run.stderr.starts_with(&want), "{run:?}");
    assert!(
        run.stderr
            .contains("(is berthd running? set --socket or BERTH_SOCKET)"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
    Ok(())
}

#[test]
fn completions_print_a_script() -> TestResult {
    for shell in ["bash", "zsh", "fish"] {
        let run = berthctl(Path::new("/nonexistent"), &["completions", shell])?;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(run.stdout.contains("berthctl"), "{run:?}");
    }
    Ok(())
}

#[test]
fn check_missing_file_exits_2() -> TestResult {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.yaml");
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&missing)])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("{}: cannot read", missing.display())),
        "{run:?}"
    );
    Ok(())
}

// ---- check (needs berth-core's parser) ----

#[test]
fn check_good_files() -> TestResult {
    let dir = files(&[
        ("web.yaml", WEB_YAML),
        (
            "more.yml",
            "services:\n  - name: api\n    image: api:2\n  - name: db\n    image: postgres:16\n",
        ),
        ("notes.txt", "not a spec"),
    ])?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(dir.path())])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "ok: 3 services in 2 files\n", "{run:?}");
    Ok(())
}

#[test]
fn check_bad_file_names_file_line_and_field() -> TestResult {
    let dir = files(&[(
        "bad.yaml",
        "name: web\nimage: nginx:1\nrestart: sometimes\n",
    )])?;
    let bad = dir.path().join("bad.yaml");
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&bad)])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    let prefix = format!("{}:3:", bad.display());
    let line = run.stderr.lines().find(|l| l.starts_with(&prefix));
    assert!(
        line.is_some_and(|l| l.contains(": restart: ")),
        "want a `{prefix}COL: restart: ...` line in {run:?}"
    );
    assert!(run.stderr.contains("error: "), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    Ok(())
}

#[test]
fn check_refuses_an_in_place_reload_of_a_file_source_and_warns_on_a_missing_one() -> TestResult {
    let dir = files(&[("app.conf", "x=1\n")])?;
    let conf = dir.path().join("app.conf");
    let missing = dir.path().join("nope");
    let spec = format!(
        "name: web\nimage: demo\nconfig:\n  - {{source: {}, target: /etc/app.conf, on_change: {{signal: SIGHUP}}}}\n",
        conf.display()
    );
    let spec_path = dir.path().join("web.yaml");
    std::fs::write(&spec_path, spec)?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&spec_path)])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("web: config[0]"), "{run:?}");
    assert!(run.stderr.contains("Mount the directory"), "{run:?}");

    // The directory, or a restart, is fine; a missing source only warns.
    let spec = format!(
        "services:\n  - name: web\n    image: demo\n    config: [{{source: {}, target: /etc/demo, on_change: {{signal: SIGHUP}}}}]\n  - name: api\n    image: demo\n    config: [{{source: {}, target: /etc/api}}]\n",
        dir.path().display(),
        missing.display()
    );
    std::fs::write(&spec_path, spec)?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&spec_path)])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("warning: api: config[0].source"),
        "{run:?}"
    );
    assert!(run.stderr.contains("never creates it"), "{run:?}");
    Ok(())
}

#[test]
fn check_refuses_waves_the_checked_specs_cannot_satisfy() -> TestResult {
    // web (in web.yaml) waits for db healthy and takes two outputs; db (in
    // db.yaml) has no healthcheck, migrate declares no `schema`.
    let dir = files(&[
        (
            "web.yaml",
            "name: web\nimage: demo\ndepends_on:\n  - migrate\n  - {service: db, condition: healthy}\ninputs:\n  version: {from: migrate.outputs.version}\n  schema: {from: migrate.outputs.schema}\n",
        ),
        (
            "db.yaml",
            "services:\n  - {name: db, image: postgres:16}\n  - {name: migrate, image: demo, kind: task, outputs: [version]}\n",
        ),
    ])?;
    let web = dir.path().join("web.yaml");
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(dir.path())])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{}: service `web`: depends_on[1].condition: healthy, but db has no healthcheck; \
             give db a healthcheck or use condition: started",
            web.display()
        )),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "{}: service `web`: inputs.schema.from: migrate declares no output \"schema\" \
             (its outputs: version); add it to migrate's outputs or fix the name",
            web.display()
        )),
        "{run:?}"
    );
    assert!(!run.stderr.contains("inputs.version"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");

    // A `from` a service (not a task) is refused the same way.
    std::fs::write(
        dir.path().join("db.yaml"),
        "services:\n  - {name: db, image: postgres:16, healthcheck: {exec: [pg_isready]}}\n  - {name: migrate, image: demo}\n",
    )?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(dir.path())])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{}: service `web`: inputs.schema.from: migrate is a service; only a task (kind: task) has outputs to take",
            web.display()
        )),
        "{run:?}"
    );
    assert!(!run.stderr.contains("depends_on"), "{run:?}");

    // Satisfied: a healthcheck, a task declaring both outputs.
    std::fs::write(
        dir.path().join("db.yaml"),
        "services:\n  - {name: db, image: postgres:16, healthcheck: {exec: [pg_isready]}}\n  - {name: migrate, image: demo, kind: task, outputs: [version, schema]}\n",
    )?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(dir.path())])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "ok: 3 services in 2 files\n", "{run:?}");

    // Services not among the checked files are berthd's to judge.
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&web)])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    Ok(())
}

#[test]
fn check_names_the_field_of_a_bad_depends_on_or_input() -> TestResult {
    let dir = files(&[(
        "web.yaml",
        "name: web\nimage: demo\ndepends_on: [{service: db, condition: ready}]\ninputs: {v: {from: db.version}}\n",
    )])?;
    let web = dir.path().join("web.yaml");
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(&web)])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    for (line, field) in [(3, "depends_on[0].condition"), (4, "inputs.v.from")] {
        let prefix = format!("{}:{line}:", web.display());
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(&format!(": {field}: "))),
            "want a `{prefix}COL: {field}: ...` line in {run:?}"
        );
    }
    Ok(())
}

#[test]
fn duplicate_services_across_files_name_both() -> TestResult {
    let dir = files(&[("a.yaml", WEB_YAML), ("b.yaml", WEB_YAML)])?;
    let run = berthctl(Path::new("/nonexistent"), &["check", &path_str(dir.path())])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("a.yaml"), "{run:?}");
    assert!(run.stderr.contains("b.yaml"), "{run:?}");
    assert!(run.stderr.contains("`web`"), "{run:?}");
    Ok(())
}

// ---- against the fake daemon ----

#[test]
fn status_prints_header_and_table() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["status"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("node node-7  berthd 0.1.0  engine reachable (unix:///var/run/docker.sock)"),
        "{run:?}"
    );
    assert_eq!(
        lines.get(1).copied(),
        Some("2 services: 1 converged, 1 failing")
    );
    let header = lines.iter().find(|l| l.starts_with("SERVICE"));
    let header: Vec<&str> = header
        .map(|h| h.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        header,
        [
            "SERVICE", "STATE", "HEALTH", "RESTARTS", "GEN", "STATUS", "UPDATED", "IMAGE", "NOTES"
        ]
    );
    let web = lines.iter().find(|l| l.starts_with("web "));
    let web: Vec<&str> = web
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        web.get(..6),
        Some(&["web", "running", "healthy", "0", "3", "COMPLETE"][..]),
        "{run:?}"
    );
    assert_eq!(web.get(7), Some(&"nginx:1"), "{run:?}");
    let api = lines.iter().find(|l| l.starts_with("api "));
    assert!(
        api.is_some_and(|l| l.contains("missing") && l.ends_with("held, crash-loop")),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn status_json_is_the_api_dtos() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["status", "--json"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(v["node"]["node_id"], "node-7");
    let services: Vec<ServiceStatus> = serde_json::from_value(v["services"].clone())?;
    assert_eq!(services.len(), 2);
    assert_eq!(services[0], web_status());
    Ok(())
}

#[test]
fn show_history_and_not_found() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["show", "web"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("deployment web-3\n"), "{run:?}");
    assert!(run.stdout.contains("  status      COMPLETE\n"), "{run:?}");
    assert!(run.stdout.contains("spec:\n"), "{run:?}");

    let run = berthd.run(&["--json", "show", "web"])?;
    let detail: ServiceDetail = serde_json::from_str(&run.stdout)?;
    assert_eq!(detail.current.map(|d| d.id), Some("web-3".to_string()));

    let run = berthd.run(&["history", "web", "--limit", "2"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .starts_with("GEN  ACTION  STATUS    REASON  ACTOR  CREATED "),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(
            "\n2    UPDATE  FAILED    -       uid:0  2024-02-29 12:34:56Z  0123456789ab  -      -\n"
        ),
        "{run:?}"
    );
    assert!(
        berthd
            .requests()
            .contains(&"GET /v1/services/web/deployments?limit=2".to_string())
    );

    let run = berthd.run(&["show", "nosuch"])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stderr, "error: no service named nosuch\n");
    Ok(())
}

#[test]
fn rollback_waits_until_complete() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["rollback", "web", "--to", "3"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: rolling back to generation 3 (deployment web-5)\nweb: COMPLETE\n"
    );
    let polls = berthd
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v1/deployments/web-5?wait="))
        .count();
    assert_eq!(polls, 2);
    Ok(())
}

#[test]
fn rollback_exits_1_when_the_deployment_fails() -> TestResult {
    let berthd = FakeBerthd::start(Status::Failed)?;
    let run = berthd.run(&["rollback", "web"])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .ends_with("web: FAILED: container exited with code 3\n"),
        "{run:?}"
    );
    assert!(run.stderr.contains("did not complete: web"), "{run:?}");

    let run = berthd.run(&["--json", "rollback", "web"])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    let resp: VerbResponse = serde_json::from_str(&run.stdout)?;
    assert_eq!(resp.deployment.map(|d| d.status), Some(Status::Failed));
    Ok(())
}

#[test]
fn waiting_gives_up_at_the_timeout() -> TestResult {
    // Deployments never leave IN_PROGRESS.
    let berthd = FakeBerthd::start(Status::InProgress)?;
    let run = berthd.run(&["rollback", "web", "--timeout", "1s"])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .ends_with("web: still IN_PROGRESS after 1s (deployment web-5)\n"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("still in progress after 1s: web"),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn verbs_without_waiting() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["rollback", "web", "--no-wait"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: rolling back to generation 3 (deployment web-5)\n"
    );
    assert!(
        !berthd
            .requests()
            .iter()
            .any(|r| r.contains("/v1/deployments/"))
    );

    let run = berthd.run(&["hold", "web"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "web: held\n");
    Ok(())
}

#[test]
fn hook_clear_posts_the_phase_and_prints_berthds_answer() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["hook", "clear", "web", "pre_update"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: pre_update breakpoints of deployment web-4 cleared\n"
    );
    assert!(
        berthd
            .requests()
            .contains(&"POST /v1/services/web/hooks/pre_update/clear?".to_string()),
        "{:?}",
        berthd.requests()
    );
    let run = berthd.run(&["hook", "clear", "web", "pre_upgrade"])?;
    assert_eq!(
        run.code,
        Some(2),
        "an unknown phase is a usage error: {run:?}"
    );
    assert!(run.stderr.contains("pre_update"), "{}", run.stderr);
    Ok(())
}

#[test]
fn delete_keeps_volumes_unless_asked_and_then_names_what_went_and_what_stayed() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["delete", "web"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout, "deleting web (deployment web-6)\nweb: COMPLETE\n",
        "a plain delete says nothing of volumes"
    );
    assert!(
        berthd
            .requests()
            .contains(&"DELETE /v1/services/web?".to_string()),
        "{:?}",
        berthd.requests()
    );

    let run = berthd.run(&["delete", "web", "--volumes"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        berthd
            .requests()
            .contains(&"DELETE /v1/services/web?volumes=true".to_string()),
        "{:?}",
        berthd.requests()
    );
    assert!(
        run.stdout
            .starts_with("deleting web; once its container is gone"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .ends_with("web: volumes removed: data; volumes kept: shared (mounted by api)\n"),
        "the final line names what was removed and kept: {run:?}"
    );

    let run = berthd.run(&["--json", "delete", "web", "--volumes"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let resp: VerbResponse = serde_json::from_str(&run.stdout)?;
    assert_eq!(
        resp.deployment.map(|d| d.status_reason),
        Some("volumes removed: data; volumes kept: shared (mounted by api)".into())
    );

    let run = berthd.run(&["delete", "--help"])?;
    assert!(run.stdout.contains("--volumes"), "{run:?}");
    Ok(())
}

#[test]
fn logs_stream_to_stdout() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["logs", "web", "--tail", "10"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "line one\nline two\n");
    assert!(
        berthd
            .requests()
            .contains(&"GET /v1/services/web/logs?follow=false&tail=10".to_string())
    );
    let run = berthd.run(&["logs", "web", "--json"])?;
    assert_eq!(run.stdout, "\"line one\"\n\"line two\"\n");
    Ok(())
}

#[test]
fn events_once_and_followed() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let run = berthd.run(&["events"])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "5  2024-02-29 12:34:56Z  web: held (berthd leaves it alone until released)\n"
    );

    let run = berthd.run(&["events", "-f", "--since", "4"])?;
    assert_eq!(
        run.stdout,
        "5  2024-02-29 12:34:56Z  web: deleted\n9  2024-02-29 12:34:57Z  berthd started\n",
        "{run:?}"
    );
    assert!(run.stderr.contains("warning: "), "{run:?}");
    assert!(run.stderr.contains("events were missed"), "{run:?}");
    // The stream ending is berthd going away.
    assert_eq!(run.code, Some(1), "{run:?}");

    let run = berthd.run(&["events", "-f", "--json"])?;
    let events: Vec<Event> = run
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 2);
    Ok(())
}

// ---- apply and diff (need berth-core's parser) ----

#[test]
fn apply_waits_and_exits_0_on_complete() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("web.yaml"))])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: updated (deployment web-4)\n  env.GREETING: hello -> hi\nweb: COMPLETE\n"
    );
    let applied = berthd.applied().map(|r| (r.force, r.services.len()));
    assert_eq!(applied, Some((false, 1)));
    Ok(())
}

/// Not on a terminal (here: pipes), an apply while berthd pulls prints
/// what it printed before pulls were drawn, without a byte of terminal
/// control, and does not follow berthd's events at all.
#[test]
fn apply_off_a_terminal_stays_plain_lines() -> TestResult {
    let berthd = FakeBerthd::start_with(State {
        final_status: Some(Status::Complete),
        pulling: true,
        ..State::default()
    })?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("web.yaml"))])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: updated (deployment web-4)\n  env.GREETING: hello -> hi\nweb: COMPLETE\n"
    );
    assert_eq!(run.stderr, "", "{run:?}");
    let requests = berthd.requests();
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("GET /v1/events") || r.starts_with("GET /v1/node")),
        "{requests:?}"
    );
    Ok(())
}

/// On a terminal (a pseudo-terminal through util-linux's `script`), the
/// pull berthd tells while it resolves the apply is drawn as a bar, and its
/// end stays as a line; `--json` there stays plain JSON.
#[test]
fn apply_on_a_terminal_draws_the_pull_and_json_stays_plain() -> TestResult {
    let berthd = FakeBerthd::start_with(State {
        final_status: Some(Status::Complete),
        pulling: true,
        ..State::default()
    })?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let file = path_str(&dir.path().join("web.yaml"));
    let on_a_terminal = |args: &str| -> Result<Run, Box<dyn std::error::Error>> {
        let command = format!("'{}' {args} '{file}'", env!("CARGO_BIN_EXE_berthctl"));
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("BERTH_SOCKET", &berthd.socket)
            .env("COLUMNS", "100")
            .env("TERM", "xterm")
            .output()?;
        Ok(out.into())
    };
    let run = on_a_terminal("apply")?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("web: pulled 127.0.0.1:5000/web:2 \u{2014} 7/7 layers, 80.1 MB / 80.1 MB"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("web: updated (deployment web-4)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("web: COMPLETE"), "{run:?}");
    let requests = berthd.requests();
    assert!(
        requests.contains(&"GET /v1/events?since=12&follow=true".to_string()),
        "followed from the node's last event: {requests:?}"
    );

    let run = on_a_terminal("apply --json")?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains('\u{1b}'), "{run:?}");
    assert!(!run.stdout.contains("pulled"), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout.replace("\r\n", "\n"))?;
    assert_eq!(v["deployments"][0]["status"], "COMPLETE", "{run:?}");
    Ok(())
}

#[test]
fn apply_exits_1_on_failed() -> TestResult {
    let berthd = FakeBerthd::start(Status::Failed)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("web.yaml"))])?;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .ends_with("web: FAILED: container exited with code 3\n"),
        "{run:?}"
    );
    Ok(())
}

#[test]
fn apply_json_wraps_the_response_and_final_records() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let file = path_str(&dir.path().join("web.yaml"));
    let run = berthd.run(&["apply", "--json", &file])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let apply: ApplyResponse = serde_json::from_value(v["apply"].clone())?;
    let deployments: Vec<Deployment> = serde_json::from_value(v["deployments"].clone())?;
    assert_eq!(apply.results.len(), 1);
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].status, Status::Complete);

    let run = berthd.run(&["apply", "--json", "--no-wait", &file])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let apply: ApplyResponse = serde_json::from_str(&run.stdout)?;
    assert_eq!(
        apply.results[0].deployment.as_ref().map(|d| d.id.as_str()),
        Some("web-4")
    );
    Ok(())
}

#[test]
fn apply_at_a_breakpoint_exits_3_naming_the_clear_command() -> TestResult {
    let berthd = FakeBerthd::start_hooked(true)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let file = path_str(&dir.path().join("web.yaml"));
    let run = berthd.run(&["apply", &file])?;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stdout.ends_with(
            "web: WAITING_HOOK: waiting at pre_update hook 1 (breakpoint): \
             clear it with `berthctl hook clear web pre_update`\n"
        ),
        "{run:?}"
    );
    assert!(
        run.stderr
            .starts_with("error: waiting at a breakpoint: web (pre_update)\n"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains(
            "web: deployment web-4 waits at pre_update hook 1 (breakpoint); \
             to go on: berthctl hook clear web pre_update"
        ),
        "{run:?}"
    );
    // It stopped at the breakpoint: the second poll, not a later one.
    let polls = |b: &FakeBerthd| {
        b.requests()
            .iter()
            .filter(|r| r.starts_with("GET /v1/deployments/web-4?wait="))
            .count()
    };
    assert_eq!(polls(&berthd), 2);

    let berthd = FakeBerthd::start_hooked(true)?;
    let run = berthd.run(&["apply", "--json", &file])?;
    assert_eq!(run.code, Some(3), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(v["deployments"][0]["status"], "WAITING_HOOK", "{run:?}");
    let b = &v["breakpoints"];
    assert_eq!(b.as_array().map(Vec::len), Some(1), "{run:?}");
    assert_eq!(b[0]["service"], "web");
    assert_eq!(b[0]["deployment"], "web-4");
    assert_eq!(b[0]["phase"], "pre_update");
    assert_eq!(b[0]["index"], 0);
    assert_eq!(b[0]["clear"], "berthctl hook clear web pre_update");
    Ok(())
}

#[test]
fn apply_with_wait_hooks_waits_through_a_breakpoint() -> TestResult {
    let berthd = FakeBerthd::start_hooked(true)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let file = path_str(&dir.path().join("web.yaml"));
    let run = berthd.run(&["apply", "--wait-hooks", &file])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    // The breakpoint is shown once (someone has to clear it), then the end.
    assert!(
        run.stdout.ends_with(
            "web: WAITING_HOOK: waiting at pre_update hook 1 (breakpoint): \
             clear it with `berthctl hook clear web pre_update`\nweb: COMPLETE\n"
        ),
        "{run:?}"
    );

    let berthd = FakeBerthd::start_hooked(true)?;
    let run = berthd.run(&["apply", "--json", "--wait-hooks", &file])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(v["deployments"][0]["status"], "COMPLETE", "{run:?}");
    assert_eq!(v["breakpoints"], serde_json::json!([]), "{run:?}");
    Ok(())
}

#[test]
fn apply_waits_for_a_running_exec_hook() -> TestResult {
    let berthd = FakeBerthd::start_hooked(false)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("web.yaml"))])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.ends_with("web: COMPLETE\n"), "{run:?}");
    assert!(!run.stdout.contains("WAITING_HOOK"), "not live: {run:?}");
    Ok(())
}

#[test]
fn a_rollback_at_a_breakpoint_exits_3_too() -> TestResult {
    let berthd = FakeBerthd::start_hooked(true)?;
    let run = berthd.run(&["rollback", "web"])?;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr
            .contains("to go on: berthctl hook clear web pre_update"),
        "{run:?}"
    );
    let run = berthd.run(&["--json", "rollback", "web"])?;
    assert_eq!(run.code, Some(3), "{run:?}");
    let resp: VerbResponse = serde_json::from_str(&run.stdout)?;
    let hook = resp.deployment.and_then(|d| d.hook);
    assert_eq!(hook.map(|h| h.breakpoint), Some(true), "{run:?}");
    Ok(())
}

#[test]
fn apply_resolves_build_paths_against_the_spec_dir() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[
        (
            "specs/web.yaml",
            "name: web\nimage:\n  build:\n    context: ./app\n    dockerfile: docker/Dockerfile\n",
        ),
        ("specs/app/docker/Dockerfile", "FROM scratch\n"),
    ])?;
    let run = berthd.run(&["apply", "--no-wait", &path_str(&dir.path().join("specs"))])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let spec_dir = std::path::absolute(dir.path().join("specs"))?;
    let image = berthd
        .applied()
        .and_then(|r| r.services.into_iter().next())
        .map(|s| s.image);
    assert_eq!(
        image,
        Some(berth_core::spec::ImageSource::Build {
            build: berth_core::spec::BuildSpec {
                context: path_str(&spec_dir.join("app")),
                dockerfile: Some("docker/Dockerfile".into()),
            }
        })
    );
    Ok(())
}

#[test]
fn a_relative_path_naming_nothing_fails_check_and_apply_before_berthd() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[(
        "specs/web.yaml",
        "name: web\nimage:\n  build:\n    context: ./ap\n",
    )])?;
    let file = path_str(&dir.path().join("specs/web.yaml"));
    let missing = std::path::absolute(dir.path().join("specs/ap"))?;
    for verb in ["check", "apply"] {
        let run = berthd.run(&[verb, &file])?;
        assert_eq!(run.code, Some(2), "{verb}: {run:?}");
        assert!(
            run.stderr.contains(&format!(
                "{file}: service `web`: image.build.context: `./ap` ({}): No such file or directory",
                missing.display()
            )),
            "{verb}: {run:?}"
        );
    }
    assert!(berthd.requests().is_empty());
    Ok(())
}

#[test]
fn apply_conflict_exits_2_with_a_hint() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[("taken.yaml", "name: taken\nimage: nginx:1\n")])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("taken.yaml"))])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("is owned by spec_dir file"), "{run:?}");
    assert!(run.stderr.contains("--force"), "{run:?}");
    Ok(())
}

#[test]
fn apply_with_invalid_files_never_contacts_berthd() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[("bad.yaml", "name: web\nrestart: sometimes\n")])?;
    let run = berthd.run(&["apply", &path_str(&dir.path().join("bad.yaml"))])?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("nothing was applied"), "{run:?}");
    assert!(berthd.requests().is_empty());
    Ok(())
}

#[test]
fn diff_is_a_dry_run() -> TestResult {
    let berthd = FakeBerthd::start(Status::Complete)?;
    let dir = files(&[("web.yaml", WEB_YAML)])?;
    let run = berthd.run(&["diff", &path_str(&dir.path().join("web.yaml"))])?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "web: updated\n  env.GREETING: hello -> hi\n\
         dry run, nothing changed: 0 created, 1 updated, 0 policy-only, 0 unchanged\n"
    );
    assert_eq!(berthd.requests(), ["POST /v1/apply?dry_run=true"]);
    Ok(())
}
