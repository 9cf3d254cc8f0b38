//! The attacks of issue 29 (items 5, 6, 7 and the log part of 9) against a
//! real berthd, each now refused or harmless:
//!
//! - 300 idle connections to the TCP API from one peer, reopened as they
//!   are dropped, no longer keep a client with a token from its answer;
//! - a pushed Heat document's signal to loopback is a dead letter naming
//!   the rule and the host, and reaches nothing;
//! - a Heat input named `db_pass` (or marked `hidden`) shows on no surface:
//!   the POST answer, the API's views, `berthctl show`/`history`/`events`,
//!   the log; the container still gets it;
//! - berthd at `BERTH_LOG=debug` (and `trace`) writes no secret env value.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_tests::bins::{bins, demo_image};
use berth_tests::node::{TestNode, docker};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

const ADMIN: &str = "admin-token-for-the-sec-tests-0001";
const WAIT: Duration = Duration::from_secs(60);
/// Generous: an answer must arrive at all; this is not a speed test. (The
/// 1 s issue 29 asks is held in berth-api's `tcp_flood` test; here berthd,
/// the flood and the test share a loaded machine. An answer that took a
/// second here was a handshake dropped by a full accept queue and sent
/// again; `serve_tcp` now raises the listen backlog.)
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// A node with `[api]` on a free loopback port and the admin token.
fn tcp_node(hint: &str, extra: &str) -> (TestNode, SocketAddr) {
    berth_tests::api::tcp_node(hint, &format!("admin {ADMIN}\n"), extra)
}

/// One admin request on a new connection: (status, body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    berth_tests::api::send_plain(addr, method, path, Some(ADMIN), body.cloned())
        .await
        .map(|r| (r.status, r.body))
}

async fn ok_call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let (status, body) = call(addr, method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {body}"
    );
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_api_answers_a_client_with_a_token_under_an_idle_connection_flood() {
    berth_prereq::require!(Engine);
    let (mut node, addr) = tcp_node("flood", "");
    node.start();
    // The attacker: one peer (127.0.0.2), 300 connections that say
    // nothing, each reopened as soon as berthd drops it.
    let attacker: IpAddr = "127.0.0.2".parse().expect("ip");
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    for _ in 0..300 {
        let stop = stop.clone();
        let opened = opened.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let connected = async {
                    let s = TcpSocket::new_v4()?;
                    s.bind(SocketAddr::new(attacker, 0))?;
                    s.connect(addr).await
                };
                let Ok(mut s) = connected.await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        opened.load(Ordering::Relaxed) >= 300,
        "the flood is on: {} connections",
        opened.load(Ordering::Relaxed)
    );
    for i in 0..5 {
        let started = Instant::now();
        let answer = tokio::time::timeout(ANSWER_WITHIN, call(addr, "GET", "/v1/node", None))
            .await
            .unwrap_or_else(|_| panic!("request {i}: no answer within {ANSWER_WITHIN:?}"));
        let (status, body) = answer.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, 200, "request {i}: {body}");
        eprintln!("request {i} answered in {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "{} flood connections opened",
        opened.load(Ordering::Relaxed)
    );
    let logs = node.logs();
    assert!(
        logs.contains("to keep room for clients with a token"),
        "the refusals are logged: {logs}"
    );
}

/// A server on 127.0.0.1 that counts the connections it accepts: the
/// internal service a signal URL aims at.
fn internal_server() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

fn heat_doc(id: &str, inputs: Value) -> Value {
    json!({
        "id": id,
        "name": format!("deployment-{id}"),
        "group": "berth",
        "config": [{
            "name": "web",
            "image": "berth-demo:latest",
            "command": ["serve", "--port", "8080"],
            "update": {"settle": "1s"},
        }],
        "inputs": inputs,
        "outputs": [],
        "options": {},
        "creation_time": "2026-12-02T10:00:00Z",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_heat_input_shows_on_no_surface_and_a_loopback_signal_is_refused() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let (internal_port, hits) = internal_server();
    let (mut node, addr) = tcp_node("secheat", "");
    node.start();

    const DB_PASS: &str = "db-pass-value-7f3e1d";
    const HIDDEN: &str = "hidden-value-91ac4b";
    let doc = heat_doc(
        "sec-1",
        json!([
            {"name": "deploy_signal_id",
             "value": format!("http://127.0.0.1:{internal_port}/internal?Signature=sig-value-5d2")},
            {"name": "db_pass", "type": "String", "value": DB_PASS},
            {"name": "motd", "type": "String", "value": HIDDEN, "hidden": true},
            {"name": "greeting", "type": "String", "value": "hello"},
        ]),
    );
    let posted = ok_call(addr, "POST", "/v1/deployments", Some(&doc)).await;
    let mut surfaces = vec![("POST answer", posted.to_string())];

    // The container gets both, as env.
    node.wait_until("web running", WAIT, |n| {
        n.container("web").is_some_and(|c| c.state == "running")
    });
    let ctr = node.container("web").expect("web");
    let out = docker(&["inspect", "--format", "{{json .Config.Env}}", &ctr.id]);
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        env.contains(&format!("BERTH_INPUT_DB_PASS={DB_PASS}")),
        "{env}"
    );
    assert!(env.contains(&format!("BERTH_INPUT_MOTD={HIDDEN}")), "{env}");

    // The signal: a dead letter naming the rule and the host; nothing
    // reached the internal server.
    let outbox = {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = ok_call(addr, "GET", "/v1/outbox", None).await;
            let dead = v
                .as_array()
                .or_else(|| v["entries"].as_array())
                .is_some_and(|a| a.iter().any(|e| e["state"] == "dead"));
            if dead {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "no dead letter: {v}\n{}",
                node.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let shown = outbox.to_string();
    assert!(shown.contains("allowed_signal_hosts"), "{shown}");
    assert!(
        shown.contains("127.0.0.1") && shown.contains("loopback"),
        "{shown}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the internal server was reached"
    );
    surfaces.push(("GET /v1/outbox", shown));

    for path in [
        "/v1/deployments/sec-1",
        "/v1/services",
        "/v1/services/web",
        "/v1/services/web/deployments",
        "/v1/events",
        "/v1/node",
    ] {
        let v = ok_call(addr, "GET", path, None).await;
        surfaces.push((path, v.to_string()));
    }
    let events = node.ctl_ok(&["events"]);
    assert!(
        events.contains("allowed_signal_hosts"),
        "an event says why the signal was refused: {events}"
    );
    surfaces.push(("berthctl events", events));
    for args in [
        vec!["show", "web"],
        vec!["--json", "show", "web"],
        vec!["history", "web"],
        vec!["--json", "history", "web"],
        vec!["status"],
        vec!["outbox", "list"],
    ] {
        surfaces.push(("berthctl", node.ctl_ok(&args)));
    }
    let logs = node.logs();
    assert!(
        logs.contains("allowed_signal_hosts") && logs.contains("dead letter"),
        "a log line says why: {logs}"
    );
    surfaces.push(("berthd log", logs));
    for (what, text) in &surfaces {
        for secret in [DB_PASS, HIDDEN, "sig-value-5d2"] {
            assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
        }
    }
    // The plain input is shown where inputs are.
    assert!(
        surfaces.iter().any(|(_, t)| t.contains("hello")),
        "the plain input is visible somewhere"
    );
}

/// berthd run by hand (not `TestNode::start`, which sets its own
/// `BERTH_LOG`), killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn berthd_with_log(node: &TestNode, level: &str, log: &Path) -> Daemon {
    let file = std::fs::File::create(log).expect("log file");
    let child = Command::new(&bins().berthd)
        .arg("--config")
        .arg(node.config_path())
        .env("BERTH_LOG", level)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log fd"))
        .stderr(file)
        .spawn()
        .expect("berthd starts");
    let daemon = Daemon(child);
    node.wait_until("berthd answers", Duration::from_secs(30), |n| {
        n.ctl(&["status"]).status.success()
    });
    daemon
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[test]
fn debug_and_trace_logs_print_no_secret_env_value() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("seclog");
    // Writes the config; then stopped and run again at the level under test.
    node.start();
    node.term();
    const SECRETS: [&str; 2] = ["env-secret-debug-4b7c9e", "env-secret-trace-8d1f2a"];
    for (level, secret) in [("debug", SECRETS[0]), ("trace", SECRETS[1])] {
        let log = node.dir().join(format!("berthd-{level}.log"));
        let daemon = berthd_with_log(&node, level, &log);
        let spec = node.spec_file(
            "web.yaml",
            &format!(
                "name: web\nimage: berth-demo:latest\ncommand: [serve, --port, \"8080\"]\n\
                 env: {{PLAIN: visible, DB_PASSWORD: {{value: {secret}, secret: true}}}}\n"
            ),
        );
        node.ctl_ok(&["apply", &spec.display().to_string()]);
        node.wait_until("web running", WAIT, |n| {
            n.container("web").is_some_and(|c| c.state == "running")
        });
        // The value reached the container (so it went through the engine
        // client, whose dumps would show it).
        let ctr = node.container("web").expect("web");
        let out = docker(&["inspect", "--format", "{{json .Config.Env}}", &ctr.id]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(secret),
            "the container has the value"
        );
        // Let the inspect cache, events and the like log what they will.
        node.ctl_ok(&["show", "web"]);
        std::thread::sleep(Duration::from_secs(2));
        drop(daemon);
        let text = read(&log);
        assert!(
            text.contains(&level.to_ascii_uppercase()),
            "berthd logged at {level} at all:\n{text}"
        );
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "BERTH_LOG={level} printed a secret env value:\n{}",
                text.lines()
                    .filter(|l| l.contains(secret))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        // Delete for the next round (a new value, a new create).
        let _ = docker(&["rm", "-f", &ctr.id]);
    }
}
