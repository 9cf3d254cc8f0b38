//! Hooks around updates and deletes against the real engine: a pre_update
//! breakpoint holds the update while the old container runs on (same id),
//! `berthctl apply` stops there with exit 3 naming the clear command (or
//! waits through it with `--wait-hooks`), and a clear lets the new container
//! replace the old one; an exec hook that exits non-zero fails the
//! deployment with its output and leaves the old container untouched;
//! berthd SIGKILLed while a breakpoint waits comes back with one running
//! container, still waiting; a pre_delete breakpoint and a failing
//! pre_delete exec hold and then abort a delete; an http hook answering 423
//! holds an update until its 200 (and a 500 aborts one), posted the
//! redacted deployment.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::bins::{bins, demo_image};
use berth_tests::node::{Ctr, TestNode, docker};
use serde_json::Value;

/// `web` on the demo image, saying `greeting`, with `hooks` (YAML lines
/// under `pre_update:`, indented by 4).
fn web(greeting: &str, pre_update: &str) -> String {
    format!(
        "name: web
image: berth-demo:latest
command: [\"serve\", \"--port\", \"8080\"]
env: {{GREETING: {greeting}}}
stop_timeout: 2s
update: {{settle: 1s}}
hooks:
  pre_update:
{pre_update}"
    )
}

const BREAKPOINT: &str = "    - breakpoint: {}\n";

fn inspect(id: &str, format: &str) -> String {
    let out = docker(&["inspect", "--format", format, id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn greeting_of(id: &str) -> String {
    let env = inspect(id, "{{json .Config.Env}}");
    let env: Vec<String> = serde_json::from_str(&env).unwrap_or_default();
    env.iter()
        .find_map(|kv| kv.strip_prefix("GREETING=").map(str::to_string))
        .unwrap_or_default()
}

fn record(node: &TestNode, generation: u64) -> Option<Value> {
    node.ctl_json(&["history", "web"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["generation"].as_u64() == Some(generation))
        .cloned()
}

fn status_of(node: &TestNode, generation: u64) -> String {
    record(node, generation)
        .and_then(|d| d["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Record `generation` is WAITING_HOOK at a pre_update breakpoint.
fn at_breakpoint(node: &TestNode, generation: u64) -> bool {
    record(node, generation).is_some_and(|d| {
        d["status"] == "WAITING_HOOK"
            && d["hook"]["phase"] == "pre_update"
            && d["hook"]["breakpoint"] == true
    })
}

fn running(node: &TestNode) -> Vec<Ctr> {
    node.containers()
        .into_iter()
        .filter(|c| c.state == "running")
        .collect()
}

/// The node's one container is `id`, canonically named and running.
fn only_this_one_runs(node: &TestNode, id: &str) -> bool {
    let cs = node.containers();
    cs.len() == 1
        && cs[0].id == id
        && cs[0].name == format!("{}web", node.prefix)
        && cs[0].state == "running"
}

fn apply_ok(node: &TestNode, name: &str, text: &str) {
    let f = node.spec_file(name, text);
    node.ctl_ok(&["apply", &f.display().to_string()]);
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `berthctl ARGS` against `node`, started in the background.
fn spawn_ctl(node: &TestNode, args: &[&str]) -> std::process::Child {
    Command::new(&bins().berthctl)
        .arg("--socket")
        .arg(node.socket())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berthctl starts")
}

/// Waits up to `timeout` for `child` to exit; kills it (and panics) if it
/// does not.
fn finish(mut child: std::process::Child, timeout: Duration, node: &TestNode) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("berthctl output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("berthctl output");
            panic!(
                "berthctl still ran after {timeout:?}:\n{}\nberthd log:\n{}",
                text(&out),
                node.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_breakpoint_holds_the_update_until_cleared() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("hk-bp");
    node.start();
    apply_ok(&node, "v1.yaml", &web("one", BREAKPOINT));
    let old = node.container("web").expect("web runs");
    assert_eq!(greeting_of(&old.id), "one");

    // apply stops at the breakpoint: exit 3, naming the command.
    let f = node.spec_file("v2.yaml", &web("two", BREAKPOINT));
    let started = Instant::now();
    let out = node.ctl(&["apply", &f.display().to_string(), "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "apply took {:?} to see the breakpoint",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting at a breakpoint: web (pre_update)")
            && stderr.contains("to go on: berthctl hook clear web pre_update"),
        "{}",
        text(&out)
    );
    assert!(at_breakpoint(&node, 2), "{:?}", record(&node, 2));

    // While it waits the old container runs on, the same one, alone.
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );
    let list = node.ctl_json(&["hook", "list"]);
    assert_eq!(list[0]["service"], "web", "{list}");
    assert_eq!(list[0]["deployment"], "web-2", "{list}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(at_breakpoint(&node, 2), "{:?}", record(&node, 2));
    assert!(
        only_this_one_runs(&node, &old.id),
        "held for 3s: {:?}",
        node.containers()
    );

    // Clearing it lets the update go on: a new container replaces the old.
    node.ctl_ok(&["hook", "clear", "web", "pre_update"]);
    node.wait_until("generation 2 completes", Duration::from_secs(60), |n| {
        status_of(n, 2) == "COMPLETE"
    });
    node.wait_until("the new container alone", Duration::from_secs(30), |n| {
        n.container("web")
            .is_some_and(|c| c.id != old.id && only_this_one_runs(n, &c.id))
    });
    let new = node.container("web").expect("web runs");
    assert_eq!(greeting_of(&new.id), "two");
    assert!(record(&node, 2).is_some_and(|d| d["hook"].is_null()));

    // --wait-hooks: apply waits through the breakpoint until the clear.
    let f = node.spec_file("v3.yaml", &web("three", BREAKPOINT));
    let mut child = spawn_ctl(
        &node,
        &[
            "apply",
            &f.display().to_string(),
            "--wait-hooks",
            "--timeout",
            "120s",
        ],
    );
    node.wait_until(
        "generation 3 at its breakpoint",
        Duration::from_secs(60),
        |n| at_breakpoint(n, 3),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "apply --wait-hooks returned at the breakpoint"
    );
    assert!(
        only_this_one_runs(&node, &new.id),
        "{:?}",
        node.containers()
    );
    node.ctl_ok(&["hook", "clear", "web", "pre_update"]);
    let out = finish(child, Duration::from_secs(90), &node);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("web: COMPLETE\n"),
        "{}",
        text(&out)
    );
    let third = node.container("web").expect("web runs");
    assert_eq!(greeting_of(&third.id), "three");
}

#[test]
fn an_exec_hook_that_fails_leaves_the_old_container_untouched() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("hk-exec");
    node.start();
    // The first hook leaves a mark in the container it runs in; the
    // second refuses the update.
    let hooks = "    - exec: [\"/demo\", \"write-outputs\", \"drained=yes\"]
    - exec: [\"/demo\", \"exit\", \"7\", \"--stdout\", \"drained 0 of 3\", \"--stderr\", \"refusing: 3 workloads still here\"]
      timeout: 30s
";
    apply_ok(&node, "v1.yaml", &web("one", hooks));
    let old = node.container("web").expect("web runs");
    let started_at = inspect(&old.id, "{{.State.StartedAt}}");

    let f = node.spec_file("v2.yaml", &web("two", hooks));
    let out = node.ctl(&["apply", &f.display().to_string(), "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not complete: web"),
        "{}",
        text(&out)
    );

    let d = record(&node, 2).expect("record 2");
    assert_eq!(d["status"], "FAILED", "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exited with code 7")
            && reason.contains("refusing: 3 workloads still here")
            && reason.contains("left as it is"),
        "{reason}"
    );
    assert_eq!(d["outputs"]["deploy_status_code"], 7, "{d}");
    assert!(
        d["outputs"]["deploy_stdout"]
            .as_str()
            .is_some_and(|s| s.contains("drained 0 of 3")),
        "{d}"
    );
    assert!(d["hook"].is_null(), "{d}");

    // The old container: the same one, never restarted, still saying one,
    // and the hooks ran in it (the first one's mark is there).
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );
    assert_eq!(inspect(&old.id, "{{.State.StartedAt}}"), started_at);
    assert_eq!(greeting_of(&old.id), "one");
    let outputs = docker(&["exec", &old.id, "/demo", "request", "/outputs"]);
    assert!(
        String::from_utf8_lossy(&outputs.stdout).contains("\"drained\":\"yes\""),
        "{}",
        text(&outputs)
    );
    let st = node.ctl_json(&["status"]);
    let web = st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "web")
        .cloned()
        .unwrap_or_default();
    assert!(web["current"]["hook"].is_null(), "{web}");
}

#[test]
fn berthd_killed_while_a_breakpoint_waits_comes_back_waiting() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("hk-kill");
    node.start();
    apply_ok(&node, "v1.yaml", &web("one", BREAKPOINT));
    let old = node.container("web").expect("web runs");
    let f = node.spec_file("v2.yaml", &web("two", BREAKPOINT));
    node.ctl_ok(&["apply", &f.display().to_string(), "--no-wait"]);
    node.wait_until(
        "generation 2 at its breakpoint",
        Duration::from_secs(60),
        |n| at_breakpoint(n, 2),
    );

    node.kill();
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );

    node.start();
    // Back: still waiting at the breakpoint, the old container alone.
    node.wait_until(
        "generation 2 at its breakpoint again",
        Duration::from_secs(60),
        |n| at_breakpoint(n, 2),
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(at_breakpoint(&node, 2), "{:?}", record(&node, 2));
    assert!(
        only_this_one_runs(&node, &old.id),
        "after the restart: {:?}",
        node.containers()
    );
    let list = node.ctl_json(&["hook", "list"]);
    assert_eq!(list[0]["deployment"], "web-2", "{list}");

    node.ctl_ok(&["hook", "clear", "web", "pre_update"]);
    node.wait_until("generation 2 completes", Duration::from_secs(60), |n| {
        status_of(n, 2) == "COMPLETE"
    });
    node.wait_until(
        "one running container, the new one",
        Duration::from_secs(30),
        |n| {
            n.container("web")
                .is_some_and(|c| c.id != old.id && only_this_one_runs(n, &c.id))
        },
    );
    assert_eq!(running(&node).len(), 1);
    let new = node.container("web").expect("web runs");
    assert_eq!(greeting_of(&new.id), "two");
}

/// `web` with `pre_delete:` hooks (YAML lines, indented by 4), or none.
fn web_pre_delete(pre_delete: &str) -> String {
    let hooks = if pre_delete.is_empty() {
        String::new()
    } else {
        format!("hooks:\n  pre_delete:\n{pre_delete}")
    };
    format!(
        "name: web
image: berth-demo:latest
command: [\"serve\", \"--port\", \"8080\"]
stop_timeout: 2s
{hooks}"
    )
}

/// The newest DELETE record of `web`.
fn delete_record(node: &TestNode) -> Option<Value> {
    node.ctl_json(&["history", "web"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["action"] == "DELETE")
        .cloned()
}

#[test]
fn a_pre_delete_hook_holds_and_then_aborts_a_delete() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("hk-del");
    node.start();
    let hooks = "    - breakpoint: {}
    - exec: [\"/demo\", \"exit\", \"9\", \"--stderr\", \"3 workloads still here\"]
      timeout: 30s
";
    apply_ok(&node, "v1.yaml", &web_pre_delete(hooks));
    let old = node.container("web").expect("web runs");

    // delete stops at the breakpoint: exit 3, naming the clear; nothing
    // removed meanwhile.
    let out = node.ctl(&["delete", "web", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("to go on: berthctl hook clear web pre_delete"),
        "{}",
        text(&out)
    );
    let d = delete_record(&node).expect("a DELETE record");
    assert_eq!(d["status"], "WAITING_HOOK", "{d}");
    assert_eq!(d["hook"]["phase"], "pre_delete", "{d}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );

    // Cleared, the exec hook refuses: the delete FAILED with its output,
    // the service runs on, the same container.
    node.ctl_ok(&["hook", "clear", "web", "pre_delete"]);
    node.wait_until("the delete fails", Duration::from_secs(60), |n| {
        delete_record(n).is_some_and(|d| d["status"] == "FAILED")
    });
    let d = delete_record(&node).expect("the DELETE record");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exited with code 9") && reason.contains("3 workloads still here"),
        "{reason}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );
    let st = node.ctl_json(&["status"]);
    assert!(
        st["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "web"),
        "{st}"
    );

    // Without the hooks the delete goes through.
    apply_ok(&node, "v2.yaml", &web_pre_delete(""));
    node.ctl_ok(&["delete", "web", "--timeout", "60s"]);
    node.wait_until("the container removed", Duration::from_secs(30), |n| {
        n.containers().is_empty()
    });
}

/// One POST the test endpoint got.
#[derive(Debug, Clone)]
struct Posted {
    /// `POST /drain?token=... HTTP/1.1`
    line: String,
    head: String,
    body: String,
}

/// A tiny HTTP endpoint for http hooks: answers each request with the next
/// of its scripted (status, body), the last one again once they run out,
/// and keeps what it got. Stops when dropped.
struct Endpoint {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Posted>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Endpoint {
    fn start(script: &[(u16, &str)]) -> Endpoint {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let script: Vec<(u16, String)> = script.iter().map(|(s, b)| (*s, b.to_string())).collect();
        let (got2, stop2) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break None,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                let line = head.lines().next().unwrap_or_default().to_string();
                if let Ok(mut g) = got2.lock() {
                    g.push(Posted { line, head, body });
                }
                let (status, text) = script
                    .get(n)
                    .or(script.last())
                    .cloned()
                    .unwrap_or((200, String::new()));
                n += 1;
                let reason = match status {
                    200 => "OK",
                    423 => "Locked",
                    _ => "Internal Server Error",
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Endpoint { port, got, stop }
    }

    fn got(&self) -> Vec<Posted> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `web` saying `greeting`, with a secret env and a pre_update http hook to
/// `port`, whose URL carries a secret of its own.
fn web_http(greeting: &str, port: u16) -> String {
    format!(
        "name: web
image: berth-demo:latest
command: [\"serve\", \"--port\", \"8080\"]
env: {{GREETING: {greeting}, API_KEY: {{value: hunter2, secret: true}}}}
stop_timeout: 2s
update: {{settle: 1s}}
hooks:
  pre_update:
    - http: \"http://127.0.0.1:{port}/drain?token=s3cret\"
      timeout: 60s
"
    )
}

#[test]
fn an_http_hook_answering_not_yet_then_ok_holds_then_lets_the_update_go() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let endpoint = Endpoint::start(&[
        (423, "not yet: 2 workloads left"),
        (423, "not yet: 1 workload left"),
        (423, "not yet: 1 workload left"),
        (200, "drained"),
        (500, "the drain service broke"),
    ]);
    let mut node = TestNode::new("hk-http");
    node.start();
    apply_ok(&node, "v1.yaml", &web_http("one", endpoint.port));
    assert!(
        endpoint.got().is_empty(),
        "a first create runs no pre_update"
    );
    let old = node.container("web").expect("web runs");

    // While the endpoint says "not yet" the deployment waits (an http hook
    // is no breakpoint: apply waits with it) and the old container runs on.
    let f = node.spec_file("v2.yaml", &web_http("two", endpoint.port));
    let mut child = spawn_ctl(
        &node,
        &["apply", &f.display().to_string(), "--timeout", "90s"],
    );
    node.wait_until("the first POST", Duration::from_secs(60), |_| {
        !endpoint.got().is_empty()
    });
    // Three "not yet" answers, 1 s then 2 s apart at least (the backoff):
    // this look comes well before the 200.
    let d = record(&node, 2).expect("record 2");
    assert_eq!(d["status"], "WAITING_HOOK", "{d}");
    let hook = d["hook"]["hook"].as_str().unwrap_or_default();
    assert!(hook.starts_with("http "), "{d}");
    assert!(!hook.contains("s3cret"), "{d}");
    assert!(d["hook"]["breakpoint"].is_null(), "{d}");
    assert!(matches!(child.try_wait(), Ok(None)), "apply returned early");
    assert!(
        only_this_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );
    let out = finish(child, Duration::from_secs(90), &node);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("web: COMPLETE\n"),
        "{}",
        text(&out)
    );

    let got = endpoint.got();
    assert_eq!(got.len(), 4, "423 three times, then 200: {got:?}");
    for p in &got {
        assert_eq!(p.line, "POST /drain?token=s3cret HTTP/1.1", "{p:?}");
        assert!(
            p.head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{p:?}"
        );
        let body: Value = serde_json::from_str(&p.body).expect("a JSON body");
        assert_eq!(body["service"], "web", "{body}");
        assert_eq!(body["generation"], 2, "{body}");
        assert!(
            !p.body.contains("hunter2") && !p.body.contains("s3cret"),
            "secrets posted: {}",
            p.body
        );
    }
    let new = node.container("web").expect("web runs");
    assert_ne!(new.id, old.id);
    assert_eq!(greeting_of(&new.id), "two");

    // Any other answer aborts at once: FAILED naming it, the running
    // container left as it is.
    node.wait_until("the replaced one removed", Duration::from_secs(30), |n| {
        only_this_one_runs(n, &new.id)
    });
    let f = node.spec_file("v3.yaml", &web_http("three", endpoint.port));
    let out = node.ctl(&["apply", &f.display().to_string(), "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let d = record(&node, 3).expect("record 3");
    assert_eq!(d["status"], "FAILED", "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("500") && reason.contains("the drain service broke"),
        "{reason}"
    );
    assert!(!reason.contains("s3cret"), "{reason}");
    assert_eq!(endpoint.got().len(), 5);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        only_this_one_runs(&node, &new.id),
        "{:?}",
        node.containers()
    );
    assert_eq!(greeting_of(&new.id), "two");
}
