//! Upstream (Heat compatibility) against a real berthd, the real engine,
//! the demo image and an in-process test undercloud: the metadata pull,
//! signals by every transport, the durable outbox, reports.
//!
//! Each test has its own node (id, prefix, state dir) and undercloud; the
//! node removes its containers when dropped.

use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use berth_tests::undercloud::{Mode, Undercloud};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn web(name: &str) -> Value {
    json!({
        "name": name,
        "image": "berth-demo:latest",
        "command": ["serve", "--port", "8080"],
        "update": {"settle": "1s"},
    })
}

fn task(name: &str, command: &[&str]) -> Value {
    json!({
        "name": name,
        "image": "berth-demo:latest",
        "kind": "task",
        "command": command,
        "outputs": ["result"],
    })
}

fn input(name: &str, value: &str) -> Value {
    json!({"name": name, "type": "String", "value": value})
}

/// A `group: berth` document.
fn doc(id: &str, config: Value, inputs: Vec<Value>) -> Value {
    json!({
        "id": id,
        "name": format!("deployment-{id}"),
        "group": "berth",
        "config": config,
        "inputs": inputs,
        "outputs": [{"name": "result"}],
        "options": {},
        "creation_time": "2026-11-25T10:00:00Z",
    })
}

/// CFN_SIGNAL (inferred: a signal URL, POST).
fn cfn(u: &Undercloud, id: &str, config: Value) -> Value {
    doc(
        id,
        config,
        vec![
            input("deploy_action", "CREATE"),
            input(
                "deploy_signal_id",
                &u.url(&format!("/signal/{id}?Signature=s3cr3t")),
            ),
            input("greeting", "hello"),
        ],
    )
}

fn foreign(id: &str) -> Value {
    json!({
        "id": id, "name": "hosts", "group": "script", "config": "#!/bin/sh\necho hi\n",
        "inputs": [input("deploy_signal_id", "http://127.0.0.1:9/never")], "outputs": [],
        "options": {},
    })
}

/// The test undercloud listens on loopback, where signals may go only
/// when `[policy] allowed_signal_hosts` lists it.
const SIGNAL_POLICY: &str = "[policy]\nallowed_signal_hosts = [\"127.0.0.1\"]\n";

fn node_for(hint: &str, meta: &Undercloud, extra: &str) -> TestNode {
    demo_image();
    TestNode::new(hint).with_config(&format!(
        "{SIGNAL_POLICY}[upstream]\nmetadata_url = \"{}\"\npoll_interval = \"1s\"\n{extra}",
        meta.url("/metadata")
    ))
}

fn wait_for(what: &str, node: &TestNode, timeout: Duration, mut f: impl FnMut() -> bool) {
    node.wait_until(what, timeout, |_| f());
}

fn started_at(id: &str) -> String {
    let out = docker(&["inspect", "--format", "{{.State.StartedAt}}", id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The outbox entries on disk (`<state_dir>/outbox/<seq>.json`).
fn outbox_entries(node: &TestNode) -> Vec<Value> {
    let dir = node.state_dir().join("outbox");
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_entry = name
                .strip_suffix(".json")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_entry
                && let Ok(bytes) = std::fs::read(e.path())
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            {
                out.push(v);
            }
        }
    }
    out
}

fn signal_paths(u: &Undercloud) -> Vec<String> {
    u.delivered().iter().map(|r| r.path.clone()).collect()
}

/// A list of deployments that all belong to other agents (chef, salt,
/// puppet, script, ...), as heat-config reads them.
fn foreign_list(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the Heat deployments {}: {e}", path.display()));
    match serde_json::from_str(&text) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("{}: not a list: {other:?}", path.display()),
    }
}

/// heat-agents' own test deployments, from the shared corpus.
#[test]
fn pull_uses_304s_ignores_foreign_groups_and_signals_once() {
    berth_prereq::require!(DemoImage);
    let Some(corpus) = berth_prereq::corpus("heat") else {
        return;
    };
    pulls_once_and_ignores_foreign(
        "pull304",
        foreign_list(&corpus.join("heat-agents_heat-config_deployments.json")),
        10,
    );
}

/// The same over the project's own fixture of twelve foreign groups.
#[test]
fn pull_uses_304s_ignores_foreign_groups_and_signals_once_over_fixtures() {
    berth_prereq::require!(DemoImage);
    let fixture = berth_tests::bins::workspace_root()
        .join("daemon/core/tests/fixtures/heat/list_foreign_groups.json");
    pulls_once_and_ignores_foreign("pull304fx", foreign_list(&fixture), 12);
}

fn pulls_once_and_ignores_foreign(hint: &str, foreign_docs: Vec<Value>, count: usize) {
    let meta = Undercloud::start();
    let mut deployments = foreign_docs;
    let foreign_docs: Vec<(String, String)> = deployments
        .iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (text("group"), text("id"))
        })
        .collect();
    deployments.push(foreign("f-1"));
    deployments.push(cfn(&meta, "d-1", json!([web("web")])));
    meta.set_metadata(json!({"deployments": deployments, "os-collect-config": {"request": {}}}));
    let mut node = node_for(hint, &meta, "");
    node.start();
    wait_for("the signal of d-1", &node, WAIT, || {
        meta.delivered().len() == 1
    });
    assert!(node.container("web").is_some(), "web runs");
    // A few more polls: all 304, no body sent, nothing signalled again.
    let (full_before, _) = meta.metadata_counts();
    std::thread::sleep(Duration::from_millis(3500));
    let (full, not_modified) = meta.metadata_counts();
    assert_eq!(full, full_before, "an unchanged document is sent once");
    assert!(not_modified >= 2, "polls answered 304: {not_modified}");
    let signals = meta.signals();
    assert_eq!(signals.len(), 1, "{signals:?}");
    let s = &signals[0];
    assert_eq!(s.method, "POST");
    assert!(s.path.starts_with("/signal/d-1"), "{}", s.path);
    assert!(s.key().is_some_and(|k| k.starts_with("d-1:")), "{s:?}");
    let body = s.json();
    assert_eq!(body["deploy_status_code"], 0, "{body}");
    let logs = node.logs();
    assert_eq!(
        logs.matches("not ours: group script, id f-1").count(),
        1,
        "{logs}"
    );
    assert_eq!(foreign_docs.len(), count);
    for (group, id) in &foreign_docs {
        let line = format!("not ours: group {group}, id {id}\n");
        assert_eq!(logs.matches(&line).count(), 1, "{line}: {logs}");
    }
    assert!(!logs.contains("malformed"), "{logs}");
    assert!(
        !logs.contains("s3cr3t"),
        "the signature leaked into the log"
    );
}

#[test]
fn a_heat_update_with_a_new_id_and_the_same_spec_restarts_nothing() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    meta.set_metadata(json!({"deployments": [cfn(&meta, "u-1", json!([web("web")]))]}));
    let mut node = node_for("hupd", &meta, "");
    node.start();
    wait_for("the signal of u-1", &node, WAIT, || {
        meta.delivered().len() == 1
    });
    let before = node.container("web").expect("web runs");
    let started = started_at(&before.id);
    assert!(!started.is_empty());

    meta.set_metadata(json!({"deployments": [cfn(&meta, "u-2", json!([web("web")]))]}));
    wait_for("the signal of u-2", &node, WAIT, || {
        meta.delivered().len() == 2
    });
    let after = node.container("web").expect("web still runs");
    assert_eq!(after.id, before.id, "same container");
    assert_eq!(started_at(&after.id), started, "not restarted");
    let paths = signal_paths(&meta);
    assert!(paths[1].starts_with("/signal/u-2"), "{paths:?}");
    assert_eq!(meta.delivered()[1].json()["deploy_status_code"], 0);
    // Heat no longer lists u-1: its index entry goes, u-2's stays.
    let heat = node.state_dir().join("heat");
    wait_for("u-1 forgotten", &node, WAIT, || {
        !heat.join("doc-u-1.json").exists()
    });
    assert!(heat.join("doc-u-2.json").exists());
    assert!(
        node.logs()
            .contains("forgot pulled Heat documents the metadata no longer lists"),
        "{}",
        node.logs()
    );

    // deploy_action: DELETE removes it, and is signalled.
    let mut del = cfn(&meta, "u-3", json!([web("web")]));
    del["inputs"][0] = input("deploy_action", "DELETE");
    meta.set_metadata(json!({"deployments": [del]}));
    wait_for("web deleted", &node, WAIT, || {
        node.container("web").is_none()
    });
    wait_for("the signal of u-3", &node, WAIT, || {
        meta.delivered().len() == 3
    });
    assert_eq!(meta.delivered()[2].json()["deploy_status_code"], 0);

    // Back, then no document names it any more: the pull deletes it.
    meta.set_metadata(json!({"deployments": [cfn(&meta, "u-4", json!([web("web")]))]}));
    wait_for("web back", &node, WAIT, || node.container("web").is_some());
    meta.set_metadata(json!({"deployments": [foreign("f-9")]}));
    wait_for("web deleted", &node, WAIT, || {
        node.container("web").is_none()
    });
}

#[test]
fn each_transport_uses_its_verb_and_body() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    let heat_inputs = vec![
        input("deploy_action", "CREATE"),
        input("deploy_signal_transport", "HEAT_SIGNAL"),
        input("deploy_auth_url", &meta.url("/v3")),
        input("deploy_user_id", "u-123"),
        input("deploy_password", "pa55word"),
        input("deploy_project_id", "proj-9"),
        input("deploy_stack_id", "overcloud/0f1e"),
        input("deploy_resource_name", "dep 1"),
    ];
    meta.set_metadata(json!({"deployments": [
        cfn(&meta, "t-cfn", json!([task("cfn", &["write-outputs", "result=42", "--dir", "/berth/outputs"])])),
        doc("t-temp", json!([task("temp", &["exit", "3", "--stderr", "boom"])]), vec![
            input("deploy_signal_transport", "TEMP_URL_SIGNAL"),
            input("deploy_signal_id", &meta.url("/signal/t-temp?temp_url_sig=abc&temp_url_expires=9")),
            input("deploy_signal_verb", "PUT"),
        ]),
        doc("t-heat", json!([task("heat", &["write-outputs", "result=7", "--dir", "/berth/outputs"])]), heat_inputs),
        doc("t-none", json!([task("none", &["write-outputs", "result=1", "--dir", "/berth/outputs"])]), vec![
            input("deploy_signal_transport", "NO_SIGNAL"),
        ]),
    ]}));
    let mut node = node_for("transp", &meta, "");
    node.start();
    wait_for("three signals", &node, WAIT, || meta.delivered().len() == 3);
    let by_doc = |prefix: &str| {
        meta.delivered()
            .into_iter()
            .find(|r| r.key().is_some_and(|k| k.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no signal for {prefix}: {:?}", meta.signals()))
    };
    let c = by_doc("t-cfn:");
    assert_eq!(
        (c.method.as_str(), c.path.starts_with("/signal/t-cfn")),
        ("POST", true)
    );
    let body = c.json();
    assert_eq!(body["deploy_status_code"], 0, "{body}");
    assert_eq!(body["result"], "42", "{body}");
    assert!(
        body["deploy_stdout"]
            .as_str()
            .is_some_and(|s| s.contains("[cfn] ")),
        "{body}"
    );

    let t = by_doc("t-temp:");
    assert_eq!(t.method, "PUT");
    let body = t.json();
    assert_eq!(body["deploy_status_code"], 3, "{body}");
    assert!(
        body["deploy_stderr"]
            .as_str()
            .is_some_and(|s| s.contains("[temp] boom")),
        "{body}"
    );

    let h = by_doc("t-heat:");
    assert_eq!(h.method, "POST");
    assert_eq!(
        h.path,
        "/v1/proj-9/stacks/overcloud/0f1e/resources/dep%201/signal"
    );
    assert!(
        h.header("x-auth-token")
            .is_some_and(|t| t.starts_with("tok-"))
    );
    assert_eq!(h.json()["result"], "7");
    let ks = meta.keystone_requests();
    assert!(!ks.is_empty());
    let auth = ks[0].json();
    assert_eq!(auth["auth"]["identity"]["password"]["user"]["id"], "u-123");
    assert_eq!(auth["auth"]["scope"]["project"]["id"], "proj-9");

    // NO_SIGNAL sends nothing, and nothing else was sent twice.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(meta.signals().len(), 3, "{:?}", meta.signals());
    let logs = node.logs();
    for secret in ["pa55word", "temp_url_sig=abc", "Signature=s3cr3t", "tok-1"] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}

#[test]
fn signals_survive_an_undercloud_outage_and_arrive_exactly_once() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    let heat = Undercloud::start();
    heat.set_mode(Mode::Status(500));
    let docs: Vec<Value> = (1..=3)
        .map(|i| {
            doc(
                &format!("o-{i}"),
                json!([task(
                    &format!("t{i}"),
                    &[
                        "write-outputs",
                        &format!("result={i}"),
                        "--dir",
                        "/berth/outputs"
                    ]
                )]),
                vec![input(
                    "deploy_signal_id",
                    &heat.url(&format!("/signal/o-{i}")),
                )],
            )
        })
        .collect();
    meta.set_metadata(json!({ "deployments": docs }));
    let mut node = node_for("outage", &meta, "");
    node.start();
    wait_for("refused attempts for all three", &node, WAIT, || {
        let keys: std::collections::BTreeSet<String> = heat
            .signals()
            .iter()
            .filter_map(|r| r.key().map(str::to_string))
            .collect();
        keys.len() == 3
    });
    // Requests that hang (the client gives up after its timeout), then
    // connections that are dropped, then back.
    heat.set_mode(Mode::Hang);
    std::thread::sleep(Duration::from_secs(3));
    heat.set_mode(Mode::Down);
    std::thread::sleep(Duration::from_secs(2));
    heat.set_mode(Mode::Healthy);
    wait_for(
        "all three delivered",
        &node,
        Duration::from_secs(120),
        || heat.delivered_by_key().len() == 3,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(heat.duplicates(), 0, "{:?}", heat.delivered_by_key());
    assert_eq!(heat.delivered().len(), 3);
    wait_for("the outbox empty", &node, WAIT, || {
        outbox_entries(&node).is_empty()
    });
}

#[test]
fn a_queued_signal_survives_sigkill() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    let heat = Undercloud::start();
    heat.set_mode(Mode::Down);
    meta.set_metadata(json!({"deployments": [doc(
        "k-1",
        json!([task("k1", &["write-outputs", "result=5", "--dir", "/berth/outputs"])]),
        vec![input("deploy_signal_id", &heat.url("/signal/k-1"))],
    )]}));
    let mut node = node_for("sigkill", &meta, "");
    node.start();
    wait_for("a queued signal", &node, WAIT, || {
        !outbox_entries(&node).is_empty()
    });
    node.kill();
    heat.set_mode(Mode::Healthy);
    node.start();
    wait_for("delivered after the restart", &node, WAIT, || {
        heat.delivered().len() == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(heat.delivered().len(), 1);
    assert_eq!(heat.delivered()[0].json()["result"], "5");
    wait_for("the outbox empty", &node, WAIT, || {
        outbox_entries(&node).is_empty()
    });
}

#[test]
fn a_404_signal_url_becomes_a_dead_letter() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    meta.set_metadata(json!({"deployments": [doc(
        "g-1",
        json!([task("g1", &["write-outputs", "result=1", "--dir", "/berth/outputs"])]),
        vec![input("deploy_signal_id", &meta.url("/gone/g-1?sig=zzz"))],
    )]}));
    let mut node = node_for("dead404", &meta, "");
    node.start();
    wait_for("a dead letter", &node, WAIT, || {
        outbox_entries(&node).iter().any(|e| e["state"] == "dead")
    });
    let entries = outbox_entries(&node);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let err = entries[0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("404"), "{err}");
    assert!(!err.contains("zzz"), "the signature leaked: {err}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(meta.signals().len(), 1, "a dead letter is not retried");
}

#[test]
fn a_malformed_document_applies_nothing_and_deletes_nothing() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    meta.set_metadata(json!({"deployments": [cfn(&meta, "m-1", json!([web("keep")]))]}));
    let mut node = node_for("malformed", &meta, "");
    node.start();
    wait_for("m-1 signalled", &node, WAIT, || meta.delivered().len() == 1);
    // m-1 is gone from the metadata, and m-2 is malformed: it may be the
    // one naming `keep`, so nothing is deleted, and m-2 applies nothing.
    let mut bad = web("new");
    bad["imagee"] = json!("x");
    meta.set_metadata(json!({"deployments": [cfn(&meta, "m-2", json!([web("other"), bad]))]}));
    let start = Instant::now();
    wait_for("the error logged", &node, WAIT, || {
        node.logs().contains("config[1].imagee")
    });
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(start.elapsed().min(Duration::from_secs(3))),
    );
    assert!(node.container("keep").is_some(), "keep was deleted");
    assert!(
        node.container("other").is_none(),
        "part of a malformed document was applied"
    );
    assert!(node.container("new").is_none());
    // A malformed envelope is an error too, never an empty set.
    meta.set_metadata(json!({"deployments": "none"}));
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.container("keep").is_some(), "keep was deleted");
    assert_eq!(
        meta.signals().len(),
        1,
        "nothing signalled for a malformed document"
    );
    let logs = node.logs();
    assert_eq!(
        logs.matches("config[1].imagee").count(),
        1,
        "logged once: {logs}"
    );
}

#[test]
fn reports_follow_changes_and_carry_the_latest_state() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    meta.set_metadata(json!({"deployments": [cfn(&meta, "r-1", json!([web("web")]))]}));
    let extra = format!(
        "report_url = \"{}\"\nheartbeat = \"2s\"\n",
        meta.url("/report")
    );
    let mut node = node_for("report", &meta, &extra);
    node.start();
    wait_for("a report with web COMPLETE", &node, WAIT, || {
        meta.reports().iter().any(|r| {
            let v = r.json();
            v["services"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "web" && s["status"] == "COMPLETE")
            })
        })
    });
    let n = meta.reports().len();
    std::thread::sleep(Duration::from_secs(5));
    let reports = meta.reports();
    assert!(
        reports.len() > n,
        "heartbeat reports: {} then {}",
        n,
        reports.len()
    );
    let seqs: Vec<u64> = reports
        .iter()
        .filter_map(|r| r.json()["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let ats: Vec<u64> = reports
        .iter()
        .filter_map(|r| r.json()["sent_at_ms"].as_u64())
        .collect();
    assert!(
        ats.windows(2).all(|w| w[1] - w[0] >= 900),
        "at most one a second: {ats:?}"
    );
    let first = reports[0].json();
    assert_eq!(first["node_id"], node.id.as_str());
}

/// `berthctl push FILE` (POST /v1/deployments) with the document's JSON.
fn push(node: &TestNode, name: &str, doc: &Value) -> std::process::Output {
    let path = node.dir().join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).expect("write the document");
    node.ctl(&["--json", "push", &path.display().to_string()])
}

#[test]
fn a_pushed_document_is_deployed_signalled_and_idempotent_by_id() {
    berth_prereq::require!(DemoImage);
    let u = Undercloud::start();
    demo_image();
    let mut node = TestNode::new("push").with_config(SIGNAL_POLICY);
    node.start();
    let first = cfn(&u, "p-1", json!([web("pushed")]));
    let out = push(&node, "p1", &first);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["doc_id"], "p-1");
    assert_eq!(status["unchanged"], false);
    assert_eq!(status["deployments"][0]["service"], "pushed");
    wait_for("the signal", &node, WAIT, || {
        signal_paths(&u)
            .iter()
            .any(|p| p.starts_with("/signal/p-1"))
    });
    let sig = u
        .delivered()
        .into_iter()
        .find(|r| r.path.starts_with("/signal/p-1"));
    let body = sig.expect("delivered").json();
    assert_eq!(body["deploy_status_code"], 0, "{body}");
    // Events say who asked and that the signal went out (no signature).
    let events = node.ctl_ok(&["events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("document p-1") && l.contains("delivered")),
        "{events}"
    );
    assert!(events.contains("[uid:"), "the actor is named: {events}");
    assert!(!events.contains("s3cr3t"), "a signature leaked: {events}");
    // GET /v1/deployments/{id} takes the Heat document id too.
    let (code, body) = node.api_get("/v1/deployments/p-1?wait=10s");
    assert_eq!(code, 200, "{body}");
    let looked: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(looked["doc_id"], "p-1", "{looked}");
    assert_eq!(looked["done"], true, "{looked}");
    assert_eq!(looked["deployments"][0]["status"], "COMPLETE", "{looked}");
    let (code, _) = node.api_get("/v1/deployments/no-such-doc");
    assert_eq!(code, 404);
    // The service is API-owned, with a CREATE record.
    let looked = node.ctl_json(&["history", "pushed"]);
    assert_eq!(looked[0]["action"], "CREATE", "{looked}");

    // The same id and body: nothing applied, the same answer.
    let again = push(&node, "p1-again", &first);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let again: Value = serde_json::from_slice(&again.stdout).expect("JSON");
    assert_eq!(again["unchanged"], true, "{again}");
    // The same id with another body: a conflict (exit 2, the id named).
    let other = cfn(&u, "p-1", json!([web("pushed"), web("another")]));
    let out = push(&node, "p1-other", &other);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("p-1"),
        "{out:?}"
    );
    // Another agent's group: refused, named.
    let out = push(&node, "foreign", &foreign("f-1"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("script"),
        "{out:?}"
    );
    // A malformed document: 400 naming the field, nothing applied.
    let mut bad = cfn(&u, "p-2", json!([web("never")]));
    bad["inputs"] = json!([{"name": "deploy_action"}]);
    let out = push(&node, "bad", &bad);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("inputs[0]"),
        "{out:?}"
    );
    assert!(node.container("never").is_none());
    assert_eq!(u.duplicates(), 0);
}

#[test]
fn outbox_list_retry_and_drop_from_berthctl() {
    berth_prereq::require!(DemoImage);
    let u = Undercloud::start();
    demo_image();
    let mut node = TestNode::new("outboxctl").with_config(SIGNAL_POLICY);
    node.start();
    let d = doc(
        "o-1",
        json!([task(
            "o1",
            &["write-outputs", "result=1", "--dir", "/berth/outputs"]
        )]),
        vec![input("deploy_signal_id", &u.url("/gone/o-1?sig=hidden"))],
    );
    let out = push(&node, "o1", &d);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let dead = || -> Vec<Value> {
        node.ctl_json(&["outbox", "list"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for("a dead letter", &node, WAIT, || {
        dead().iter().any(|e| e["state"] == "dead")
    });
    let entries = dead();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let text = node.ctl_ok(&["outbox", "list"]);
    assert!(text.contains("DEAD") && !text.contains("hidden"), "{text}");
    let status = node.ctl_ok(&["status"]);
    assert!(status.contains("1 dead"), "{status}");
    let events = node.ctl_ok(&["events"]);
    assert!(events.contains("refused for good"), "{events}");
    assert!(!events.contains("hidden"), "a signature leaked: {events}");
    let seq = entries[0]["seq"].as_u64().expect("seq").to_string();

    let retried = node.ctl_json(&["outbox", "retry", &seq]);
    assert_eq!(retried["state"], "pending", "{retried}");
    wait_for("dead again after the retry", &node, WAIT, || {
        dead().iter().any(|e| e["state"] == "dead")
    });
    assert_eq!(u.signals().len(), 2, "one send, one retry");
    node.ctl_ok(&["outbox", "drop", &seq]);
    assert!(dead().is_empty());
    let out = node.ctl(&["outbox", "retry", &seq]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a dropped entry is gone: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{out:?}"
    );
}

#[test]
fn sighup_starts_and_stops_the_metadata_pull() {
    berth_prereq::require!(DemoImage);
    let meta = Undercloud::start();
    meta.set_metadata(json!({"deployments": [cfn(&meta, "h-1", json!([web("web")]))]}));
    demo_image();
    let mut node = TestNode::new("pullhup").with_config(SIGNAL_POLICY);
    node.start();
    let upstream = format!(
        "{SIGNAL_POLICY}[upstream]\nmetadata_url = \"{}\"\npoll_interval = \"1s\"\n",
        meta.url("/metadata")
    );
    node.set_config(&upstream);
    node.hup();
    wait_for("the signal of h-1", &node, WAIT, || {
        meta.delivered().len() == 1
    });
    assert!(node.container("web").is_some(), "web runs");
    let reloads = node.ctl_ok(&["events"]);
    assert!(
        reloads.contains("config reloaded: applied [upstream] metadata_url, poll_interval"),
        "{reloads}"
    );
    assert!(
        !reloads.contains("s3cr3t"),
        "a signed URL leaked: {reloads}"
    );

    // Unset: the polling stops and the pulled service stays.
    node.set_config(SIGNAL_POLICY);
    node.hup();
    wait_for("the pull stopped", &node, WAIT, || {
        node.logs()
            .contains("metadata_url is unset: no more polling")
    });
    let polls = meta.metadata_counts();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(meta.metadata_counts(), polls, "no poll after the reload");
    assert!(node.container("web").is_some(), "web stays");
}
