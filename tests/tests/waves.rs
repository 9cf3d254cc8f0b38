//! Ordered waves against the real engine: the controller upgrade of
//! `examples/upgrade/upgrade.yaml` (api-disable → db-migrate → api →
//! api-enable), applied as written but for its release and log directory,
//! through v1 → v2 → v3 with one berthd and berthctl.
//!
//! After each apply every task has appended `<task> <release>` to the shared
//! host log exactly once, in wave order; each deployment was released only
//! after its dependency's new deployment reached its condition (the events
//! say so, and each waiting one said what it waited for); the records hold
//! the inputs each received and the output db-migrate declared; the api
//! container has the schema version as env and as the read-only file
//! `/berth/inputs/schema_version`. Applying v1 again changes nothing and
//! runs no task. v3's api is never healthy: it is rolled back to v2's
//! container, which keeps v2's inputs and is not deployed again with v3's
//! newer output, and api-enable (`condition: ended`) still runs once for
//! v3.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use serde_json::{Value, json};

/// The example, verbatim: the test runs what the README tells people to run.
const EXAMPLE: &str = include_str!("../../examples/upgrade/upgrade.yaml");
const TASKS: [&str; 3] = ["api-disable", "db-migrate", "api-enable"];
const SERVICES: [&str; 4] = ["api-disable", "db-migrate", "api", "api-enable"];

/// `text` with every `from` replaced by `to`, which must occur `count` times
/// (so a change to the example fails here, not somewhere obscure).
fn replace_exactly(text: &str, from: &str, to: &str, count: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        count,
        "examples/upgrade/upgrade.yaml should hold {from:?} {count} times"
    );
    text.replace(from, to)
}

/// The example for `release`, logging to `log_dir`; with `unhealthy_api`
/// the api never passes its healthcheck and gets 5 s to (a quick rollback).
fn upgrade_spec(release: &str, log_dir: &Path, unhealthy_api: bool) -> String {
    let text = replace_exactly(
        EXAMPLE,
        "release: \"v1\"",
        &format!("release: \"{release}\""),
        4,
    );
    let text = replace_exactly(
        &text,
        "\"/tmp/berth-upgrade:/upgrade\"",
        &format!("\"{}:/upgrade\"", log_dir.display()),
        3,
    );
    if !unhealthy_api {
        return text;
    }
    replace_exactly(
        &text,
        "    update: {settle: 1s, health_timeout: 30s}\n",
        "    update: {settle: 1s, health_timeout: 5s}\n    env: {DEMO_UNHEALTHY: \"1\"}\n",
        1,
    )
}

/// The log lines one wave of `release` appends, in order.
fn wave_lines(release: &str) -> Vec<String> {
    TASKS.iter().map(|t| format!("{t} {release}")).collect()
}

fn log_lines(log_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(log_dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn history(node: &TestNode, service: &str) -> Vec<Value> {
    node.ctl_json(&["history", service])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The service's newest deployment.
fn current(node: &TestNode, service: &str) -> Value {
    node.ctl_json(&["show", service])["current"].clone()
}

fn last_seq(node: &TestNode) -> u64 {
    node.ctl_json(&["events"])["events"]
        .as_array()
        .and_then(|e| e.last())
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0)
}

fn events_since(node: &TestNode, seq: u64) -> Vec<Value> {
    let resp = node.ctl_json(&["events", "--since", &seq.to_string()]);
    assert_eq!(resp["reset"], false, "events were dropped: {resp}");
    resp["events"].as_array().cloned().unwrap_or_default()
}

/// The seq of the first status event of `deployment` with `status`.
fn status_seq(events: &[Value], deployment: &str, status: &str) -> u64 {
    events
        .iter()
        .find(|e| {
            e["type"] == "deployment_status"
                && e["deployment"] == deployment
                && e["status"] == status
        })
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or_else(|| {
            panic!(
                "no event: {deployment} {status}; events:\n{}",
                shown(events)
            )
        })
}

fn shown(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `deployment` waited PENDING with a reason naming `dependency` and
/// `condition`, and was only released (IN_PROGRESS) after `after`.
fn waited_then_ran(
    events: &[Value],
    deployment: &str,
    dependency: &str,
    condition: &str,
    after: u64,
) {
    let want = format!("waiting for {dependency} to be {condition}");
    assert!(
        events.iter().any(|e| {
            e["deployment"] == deployment
                && e["status"] == "PENDING"
                && e["reason"].as_str().is_some_and(|r| r.contains(&want))
        }),
        "{deployment} never said {want:?}; events:\n{}",
        shown(events)
    );
    let released = status_seq(events, deployment, "IN_PROGRESS");
    assert!(
        released > after,
        "{deployment} ran (event {released}) before its dependency {dependency} was {condition} (event {after}); events:\n{}",
        shown(events)
    );
    // Meanwhile nothing of it reached the engine: its running container
    // (if any) was left alone.
    let service = deployment
        .rsplit_once('-')
        .map_or(deployment, |(service, _)| service);
    if let Some(early) = events
        .iter()
        .find(|e| e["type"] == "container_action" && e["service"] == service)
        .filter(|e| e["seq"].as_u64().is_some_and(|s| s < after))
    {
        panic!(
            "{service}'s container was touched ({early}) before {dependency} was {condition} (event {after}); events:\n{}",
            shown(events)
        );
    }
}

/// `docker exec` in `container`; (exit code, stdout).
fn exec(container: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut full = vec!["exec", container];
    full.extend_from_slice(args);
    let out = docker(&full);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The api container's env `BERTH_INPUT_*` and the files under
/// `/berth/inputs` it was given, read from inside.
fn api_inputs_seen(node: &TestNode) -> (Value, String) {
    let api = node.container("api").expect("the api container");
    let (code, env) = exec(&api.id, &["/demo", "request", "/env"]);
    assert_eq!(code, Some(0), "GET /env: {env}");
    let env: Value = serde_json::from_str(&env).expect("/env is JSON");
    let inputs: serde_json::Map<String, Value> = env
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("BERTH_INPUT_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // `@{PATH}` is the file's content minus one trailing newline.
    let (code, out) = exec(
        &api.id,
        &[
            "/demo",
            "append",
            "/dev/null",
            "@{/berth/inputs/release}",
            "@{/berth/inputs/schema_version}",
        ],
    );
    assert_eq!(code, Some(0), "reading /berth/inputs: {out}");
    let files = out
        .strip_prefix("append /dev/null: ")
        .map(|l| l.trim_end().to_string())
        .unwrap_or_else(|| panic!("unexpected output of demo append: {out:?}"));
    (Value::Object(inputs), files)
}

/// The api container can read its inputs but not change them.
fn inputs_are_read_only(node: &TestNode) {
    let api = node.container("api").expect("the api container");
    let (code, out) = exec(
        &api.id,
        &[
            "/demo",
            "append",
            "/berth/inputs/schema_version",
            "tampered",
        ],
    );
    assert_eq!(code, Some(1), "appending to an input succeeded: {out}");
}

/// Applies `spec` (waiting for the whole wave) and returns the exit code.
fn apply(node: &TestNode, name: &str, spec: &str) -> Option<i32> {
    let f = node.spec_file(name, spec);
    let out = node.ctl(&["apply", &f.display().to_string(), "--timeout", "120s"]);
    eprintln!(
        "berthctl apply {name}: exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code()
}

/// Each service's newest deployment after applying `release`, as
/// `SERVICES` orders them: its id, checked to carry `release` as input.
fn wave_ids(node: &TestNode, release: &str) -> Vec<String> {
    SERVICES
        .iter()
        .map(|s| {
            let d = history(node, s)
                .into_iter()
                .find(|d| d["spec"]["inputs"]["release"] == release && d["actor"] != "berthd")
                .unwrap_or_else(|| panic!("{s} has no deployment of {release}"));
            assert_eq!(
                d["inputs"]["release"], release,
                "{s}: the record's resolved inputs: {d}"
            );
            d["id"].as_str().expect("an id").to_string()
        })
        .collect()
}

/// The order one wave ran in, from its events: each dependent released
/// only after its dependency's new deployment met its condition; api's
/// deployment ended `api_end`.
fn wave_ran_in_order(events: &[Value], ids: &[String], api_end: &str) {
    let [disable, migrate, api, enable] = ids else {
        panic!("four deployments: {ids:?}");
    };
    let disabled = status_seq(events, disable, "COMPLETE");
    waited_then_ran(events, migrate, "api-disable", "completed", disabled);
    let migrated = status_seq(events, migrate, "COMPLETE");
    waited_then_ran(events, api, "db-migrate", "completed", migrated);
    let api_ended = status_seq(events, api, api_end);
    waited_then_ran(events, enable, "api", "ended", api_ended);
    let enabled = status_seq(events, enable, "COMPLETE");
    assert!(enabled > api_ended);
}

/// The records of one healthy wave: every task COMPLETE with `release`,
/// db-migrate's declared output, the api's resolved inputs, and what the
/// api container sees.
fn healthy_wave_recorded(node: &TestNode, release: &str) {
    let schema = format!("schema-{release}");
    for task in TASKS {
        let d = current(node, task);
        assert_eq!(d["status"], "COMPLETE", "{task}: {d}");
        assert_eq!(d["inputs"], json!({"release": release}), "{task}: {d}");
        assert_eq!(d["outputs"]["deploy_status_code"], 0, "{task}: {d}");
    }
    let migrate = current(node, "db-migrate");
    assert_eq!(
        migrate["outputs"]["declared"],
        json!({"version": schema}),
        "{migrate}"
    );
    let api = current(node, "api");
    assert_eq!(api["status"], "COMPLETE", "{api}");
    assert_eq!(
        api["inputs"],
        json!({"release": release, "schema_version": schema}),
        "{api}"
    );
    let (env, files) = api_inputs_seen(node);
    assert_eq!(
        env,
        json!({"BERTH_INPUT_RELEASE": release, "BERTH_INPUT_SCHEMA_VERSION": schema})
    );
    assert_eq!(files, format!("{release} {schema}"));
    inputs_are_read_only(node);
}

#[test]
fn an_upgrade_wave_runs_in_order_and_api_enable_runs_after_a_rollback() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("waves");
    node.start();
    let log_dir = node.dir().join("upgrade");
    std::fs::create_dir_all(&log_dir).expect("the log dir");
    let mut want: Vec<String> = Vec::new();

    // v1: the first wave creates everything, in order.
    let seq = last_seq(&node);
    assert_eq!(
        apply(&node, "v1.yaml", &upgrade_spec("v1", &log_dir, false)),
        Some(0)
    );
    want.extend(wave_lines("v1"));
    assert_eq!(log_lines(&log_dir), want);
    let ids = wave_ids(&node, "v1");
    wave_ran_in_order(&events_since(&node, seq), &ids, "COMPLETE");
    healthy_wave_recorded(&node, "v1");

    // v1 again: nothing changed, so nothing runs.
    let out = node.ctl_ok(&[
        "apply",
        &node
            .spec_file("v1-again.yaml", &upgrade_spec("v1", &log_dir, false))
            .display()
            .to_string(),
    ]);
    for s in SERVICES {
        assert!(out.contains(&format!("{s}: unchanged")), "{out}");
    }
    assert_eq!(
        wave_ids(&node, "v1"),
        ids,
        "a new deployment for an unchanged spec"
    );
    assert_eq!(
        log_lines(&log_dir),
        want,
        "a task ran again for an unchanged spec"
    );

    // v2: a new release runs the whole wave again, in order; the v1 api
    // is left alone until db-migrate v2 has completed.
    let v1_api = node.container("api").expect("the v1 api");
    let seq = last_seq(&node);
    assert_eq!(
        apply(&node, "v2.yaml", &upgrade_spec("v2", &log_dir, false)),
        Some(0)
    );
    want.extend(wave_lines("v2"));
    assert_eq!(log_lines(&log_dir), want);
    let ids = wave_ids(&node, "v2");
    let v2_deployment = ids[2].clone();
    let events = events_since(&node, seq);
    wave_ran_in_order(&events, &ids, "COMPLETE");
    healthy_wave_recorded(&node, "v2");
    let v2_api = node.container("api").expect("the v2 api");
    assert_ne!(v2_api.id, v1_api.id, "the api container was not replaced");

    // v3: the api never gets healthy and is rolled back to v2's container;
    // api-enable waits for it to end, not to succeed, and runs once.
    let seq = last_seq(&node);
    assert_eq!(
        apply(&node, "v3.yaml", &upgrade_spec("v3", &log_dir, true)),
        Some(1),
        "apply of a wave whose api is rolled back"
    );
    want.extend(wave_lines("v3"));
    assert_eq!(log_lines(&log_dir), want);
    let ids = wave_ids(&node, "v3");
    let events = events_since(&node, seq);
    wave_ran_in_order(&events, &ids, "ROLLED_BACK");
    for task in TASKS {
        let d = current(&node, task);
        assert_eq!(d["status"], "COMPLETE", "{task}: {d}");
        assert_eq!(d["inputs"], json!({"release": "v3"}), "{task}: {d}");
    }
    assert_eq!(
        current(&node, "db-migrate")["outputs"]["declared"],
        json!({"version": "schema-v3"})
    );
    // The failed api deployment received v3's inputs before it failed.
    let api_history = history(&node, "api");
    let failed = api_history
        .iter()
        .find(|d| d["id"] == ids[2].as_str())
        .expect("api's v3 deployment");
    assert_eq!(failed["status"], "ROLLED_BACK", "{failed}");
    assert_eq!(
        failed["inputs"],
        json!({"release": "v3", "schema_version": "schema-v3"}),
        "{failed}"
    );
    let v2_generation = api_history
        .iter()
        .find(|d| d["id"] == v2_deployment.as_str())
        .and_then(|d| d["generation"].as_u64())
        .expect("api's v2 deployment");

    // The api stays on the rollback: berthd's ROLLBACK record is its newest,
    // with v2's spec and the inputs v2 ran with (db-migrate's newer output
    // does not take it forward again), and the very container v2 made is
    // back, healthy, holding those inputs. apply returned only after
    // api-enable ran, which waited for the rollback to end, so a new api
    // deployment would be on record by now.
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let d = current(&node, "api");
        let healthy = node.container("api").is_some_and(|c| {
            let out = docker(&["inspect", "--format", "{{.State.Health.Status}}", &c.id]);
            c.state == "running" && String::from_utf8_lossy(&out.stdout).trim() == "healthy"
        });
        if d["status"] == "COMPLETE" && healthy {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "api did not settle after its rollback: {d}\nberthd log:\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(settled["action"], "ROLLBACK", "{settled}");
    assert_eq!(settled["actor"], "berthd", "{settled}");
    assert_eq!(settled["rollback_of"], v2_generation, "{settled}");
    assert_eq!(settled["spec"]["inputs"]["release"], "v2", "{settled}");
    assert_eq!(
        settled["inputs"],
        json!({"release": "v2", "schema_version": "schema-v2"}),
        "{settled}"
    );
    assert_eq!(
        node.container("api").map(|c| c.id),
        Some(v2_api.id.clone()),
        "the rollback did not bring back v2's container"
    );
    let (env, files) = api_inputs_seen(&node);
    assert_eq!(
        env,
        json!({"BERTH_INPUT_RELEASE": "v2", "BERTH_INPUT_SCHEMA_VERSION": "schema-v2"})
    );
    assert_eq!(files, "v2 schema-v2");
    let newest = history(&node, "api");
    assert_eq!(
        newest.first().map(|d| &d["id"]),
        Some(&settled["id"]),
        "api was deployed again after its rollback: {newest:?}"
    );
    // Still exactly one api-enable v3, and nothing after it.
    assert_eq!(log_lines(&log_dir), want);
    node.term();
}
