//! berthd + berthctl against the real Docker engine.
//!
//! Each test has its own node (id, prefix, state dir, socket) and cleans up
//! after itself; most talk to the engine through an `EngineProxy`, which
//! counts mutating calls and can cut berthd off from the engine.

use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use berth_tests::proxy::EngineProxy;
use serde_json::Value;

fn web(name: &str, greeting: &str) -> String {
    format!(
        "name: {name}\nimage: berth-demo:latest\ncommand: [\"serve\", \"--port\", \"8080\"]\nenv: {{GREETING: {greeting}}}\nupdate: {{settle: 1s}}\n"
    )
}

fn node_with_proxy(hint: &str) -> (TestNode, EngineProxy) {
    demo_image();
    let proxy = EngineProxy::start(&berth_tests::proxy::engine_socket()).expect("proxy starts");
    let node = TestNode::new(hint).with_docker_host(proxy.docker_host());
    (node, proxy)
}

/// `berthctl apply FILE --json` and the final deployments.
fn apply(node: &TestNode, files: &[&std::path::Path]) -> Value {
    let mut args = vec!["apply"];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    node.ctl_json(&args)
}

/// (service, final status) of the deployments an apply created (unchanged
/// services are left out).
fn statuses(applied: &Value) -> Vec<(String, String)> {
    let changed: Vec<String> = applied["apply"]["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| r["change"] != "unchanged")
                .filter_map(|r| r["service"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    applied["deployments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| {
                    d["service"]
                        .as_str()
                        .is_some_and(|s| changed.iter().any(|c| c == s))
                })
                .map(|d| {
                    (
                        d["service"].as_str().unwrap_or_default().to_string(),
                        d["status"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn inspect(id: &str, format: &str) -> String {
    let out = docker(&["inspect", "--format", format, id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn apply_converges_and_an_unchanged_reapply_makes_no_mutating_call() {
    berth_prereq::require!(DemoImage);
    let (mut node, proxy) = node_with_proxy("noop");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    let b = node.spec_file("b.yaml", &web("b", "hi"));
    let out = apply(&node, &[&a, &b]);
    let mut st = statuses(&out);
    st.sort();
    assert_eq!(
        st,
        vec![
            ("a".into(), "COMPLETE".into()),
            ("b".into(), "COMPLETE".into())
        ],
        "{out:#}"
    );
    for svc in ["a", "b"] {
        let c = node.container(svc).expect("container exists");
        assert_eq!(c.state, "running");
        assert_eq!(c.label("io.berth.service").as_deref(), Some(svc));
        assert!(
            c.label("io.berth.spec-hash")
                .is_some_and(|h| h.starts_with("v1:"))
        );
        assert_eq!(c.label("io.berth.generation").as_deref(), Some("1"));
        assert_eq!(
            inspect(&c.id, "{{.HostConfig.RestartPolicy.Name}}"),
            "always"
        );
    }
    proxy.clear();
    let out = apply(&node, &[&a, &b]);
    let changes: Vec<&str> = out["apply"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["change"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(changes, vec!["unchanged", "unchanged"], "{out:#}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(proxy.mutating_calls(), Vec::<(String, String)>::new());

    let status = node.ctl_json(&["status"]);
    let services = status["services"].as_array().cloned().unwrap_or_default();
    assert_eq!(services.len(), 2, "{status:#}");
    assert!(
        services.iter().all(|s| s["converged"] == Value::Bool(true)),
        "{status:#}"
    );
}

#[test]
fn changing_one_service_replaces_only_that_one() {
    berth_prereq::require!(DemoImage);
    let (mut node, proxy) = node_with_proxy("swap");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    let b = node.spec_file("b.yaml", &web("b", "hi"));
    apply(&node, &[&a, &b]);
    let a_before = node.container("a").expect("a").id;
    let b_before = node.container("b").expect("b").id;
    proxy.clear();
    let a2 = node.spec_file("a.yaml", &web("a", "changed"));
    let out = apply(&node, &[&a2, &b]);
    assert_eq!(
        statuses(&out),
        vec![("a".into(), "COMPLETE".into())],
        "{out:#}"
    );
    let a_after = node.container("a").expect("a");
    assert_ne!(a_after.id, a_before);
    assert_eq!(a_after.state, "running");
    assert_eq!(node.container("b").expect("b").id, b_before, "b untouched");
    assert_eq!(node.containers().len(), 2, "the old a is gone");
    // Create-then-swap: the first mutating call creates the new container.
    let calls = proxy.mutating_calls();
    assert!(
        calls
            .first()
            .is_some_and(|(m, p)| m == "POST" && p.contains("/containers/create")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|(_, p)| p.contains(&b_before[..12])),
        "{calls:?}"
    );
    let env = inspect(&a_after.id, "{{json .Config.Env}}");
    assert!(env.contains("GREETING=changed"), "{env}");
}

#[test]
fn a_missing_image_fails_with_the_ways_to_provide_it_and_keeps_the_old_container() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("noimg");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    apply(&node, &[&a]);
    let before = node.container("a").expect("a");
    let bad = node.spec_file(
        "a.yaml",
        &web("a", "hello").replace("berth-demo:latest", "berth-does-not-exist:1"),
    );
    let started = Instant::now();
    let out = node.ctl(&["apply", &bad.display().to_string()]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "a FAILED deployment exits 1");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An unqualified name is pulled from docker.io, which these machines
    // cannot reach (or which has no such repository): either way it fails
    // within seconds, naming where it looked and how else to provide it.
    assert!(took < Duration::from_secs(20), "took {took:?}: {text}");
    assert!(text.contains("`berth-does-not-exist:1`"), "{text}");
    assert!(text.contains("pulling it from docker.io failed"), "{text}");
    assert!(
        text.contains("the registry is unreachable") || text.contains("not found"),
        "{text}"
    );
    assert!(text.contains("docker load"), "{text}");
    std::thread::sleep(Duration::from_secs(1));
    let after = node.container("a").expect("a still there");
    assert_eq!(after.id, before.id);
    assert_eq!(after.state, "running");
    let hist = node.ctl_json(&["history", "a"]);
    assert_eq!(hist[0]["status"], "FAILED", "{hist:#}");
    assert_eq!(hist[1]["status"], "COMPLETE", "{hist:#}");
}

#[test]
fn sigkill_and_restart_adopts_running_containers_without_restarting_them() {
    berth_prereq::require!(DemoImage);
    let (mut node, proxy) = node_with_proxy("adopt");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    let b = node.spec_file("b.yaml", &web("b", "hi"));
    apply(&node, &[&a, &b]);
    let before: Vec<(String, String)> = node
        .containers()
        .iter()
        .map(|c| (c.id.clone(), inspect(&c.id, "{{.State.StartedAt}}")))
        .collect();
    node.kill();
    proxy.clear();
    node.start();
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<(String, String)> = node
        .containers()
        .iter()
        .map(|c| (c.id.clone(), inspect(&c.id, "{{.State.StartedAt}}")))
        .collect();
    assert_eq!(before, after, "same containers, not restarted");
    assert_eq!(proxy.mutating_calls(), Vec::<(String, String)>::new());
    let status = node.ctl_json(&["status"]);
    assert!(
        status["services"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["converged"] == Value::Bool(true))),
        "{status:#}"
    );
    // And an apply after the restart is still a no-op.
    let out = apply(&node, &[&a, &b]);
    assert!(statuses(&out).is_empty(), "{out:#}");
}

#[test]
fn a_container_removed_behind_berths_back_is_brought_back() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("bringback");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    apply(&node, &[&a]);
    let before = node.container("a").expect("a").id;
    docker(&["rm", "-f", &before]);
    node.wait_until("a brought back", Duration::from_secs(20), |n| {
        n.container("a")
            .is_some_and(|c| c.state == "running" && c.id != before)
    });
    let hist = node.ctl_json(&["history", "a"]);
    assert_eq!(
        hist.as_array().map(Vec::len),
        Some(1),
        "a bring-back is not a record"
    );
    let events = node.ctl_ok(&["events"]);
    assert!(events.contains("a:"), "{events}");
}

#[test]
fn stop_start_hold_release() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("verbs");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    apply(&node, &[&a]);
    node.ctl_ok(&["stop", "a"]);
    node.wait_until("a stopped", Duration::from_secs(20), |n| {
        n.container("a").is_some_and(|c| c.state == "exited")
    });
    node.ctl_ok(&["hold", "a"]);
    node.ctl_ok(&["release", "a"]);
    // Stopped persists across a berthd restart.
    node.kill();
    node.start();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(node.container("a").expect("a").state, "exited");
    node.ctl_ok(&["start", "a"]);
    node.wait_until("a running", Duration::from_secs(20), |n| {
        n.container("a").is_some_and(|c| c.state == "running")
    });
    // Held: a container removed behind our back stays removed.
    node.ctl_ok(&["hold", "a"]);
    let id = node.container("a").expect("a").id;
    docker(&["rm", "-f", &id]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        node.container("a").is_none(),
        "held services are left alone"
    );
    node.ctl_ok(&["release", "a"]);
    node.wait_until("a back after release", Duration::from_secs(20), |n| {
        n.container("a").is_some_and(|c| c.state == "running")
    });
}

#[test]
fn a_torn_record_is_reported_and_never_overwritten() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("torn");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    let b = node.spec_file("b.yaml", &web("b", "hi"));
    apply(&node, &[&a, &b]);
    let a_id = node.container("a").expect("a").id;
    node.term();
    let record = node.state_dir().join("services/a/history/1.json");
    let bytes = std::fs::read(&record).expect("record exists");
    std::fs::write(&record, &bytes[..bytes.len() / 2]).expect("tear it");
    let torn = std::fs::read(&record).expect("read back");
    node.start();
    let status = node.ctl_json(&["status"]);
    let a_status = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "a"))
        .cloned()
        .expect("a listed");
    assert!(
        a_status["unreadable"]
            .as_str()
            .is_some_and(|u| u.contains("1.json")),
        "{status:#}"
    );
    // b is managed normally; a's container is left as it was; the file is untouched.
    let out = apply(&node, &[&b]);
    assert!(statuses(&out).is_empty());
    assert_eq!(node.container("a").expect("a left alone").id, a_id);
    assert_eq!(
        std::fs::read(&record).expect("read"),
        torn,
        "never overwritten"
    );
    let refused = node.ctl(&["apply", &a.display().to_string()]);
    assert_ne!(refused.status.code(), Some(0));
}

#[test]
fn sigterm_exits_cleanly_and_leaves_containers_running() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("term");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    apply(&node, &[&a]);
    let status = node.term();
    assert!(status.success(), "{status}");
    assert_eq!(node.container("a").expect("a").state, "running");
    assert!(!node.socket().exists(), "socket removed on exit");
}

#[test]
fn an_engine_cut_off_is_shown_and_berthd_resyncs_when_it_returns() {
    berth_prereq::require!(DemoImage);
    let (mut node, proxy) = node_with_proxy("cut");
    node.start();
    let a = node.spec_file("a.yaml", &web("a", "hello"));
    apply(&node, &[&a]);
    let before = node.container("a").expect("a").id;
    proxy.cut();
    node.wait_until("engine shown unreachable", Duration::from_secs(20), |n| {
        !node_reachable(n)
    });
    // Something changes while berthd cannot see: the container is removed.
    docker(&["rm", "-f", &before]);
    proxy.restore();
    node.wait_until(
        "engine reachable again",
        Duration::from_secs(30),
        node_reachable,
    );
    node.wait_until(
        "a brought back after the resync",
        Duration::from_secs(30),
        |n| {
            n.container("a")
                .is_some_and(|c| c.state == "running" && c.id != before)
        },
    );
}

fn node_reachable(n: &TestNode) -> bool {
    n.ctl_json(&["status"])["node"]["engine"]["reachable"] == Value::Bool(true)
}

#[test]
fn a_task_runs_once_and_records_its_output_and_outputs() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("task");
    node.start();
    let t = node.spec_file(
        "t.yaml",
        "name: migrate\nimage: berth-demo:latest\nkind: task\ncommand: [\"write-outputs\", \"result=42\", \"--dir\", \"/berth/outputs\"]\noutputs: [result]\n",
    );
    let out = apply(&node, &[&t]);
    assert_eq!(
        statuses(&out),
        vec![("migrate".into(), "COMPLETE".into())],
        "{out:#}"
    );
    let d = &out["deployments"][0];
    assert_eq!(d["outputs"]["deploy_status_code"], 0, "{d:#}");
    assert_eq!(d["outputs"]["declared"]["result"], "42", "{d:#}");
    assert!(
        d["outputs"]["deploy_stdout"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{d:#}"
    );
    // Removing its exited container does not re-run it.
    if let Some(c) = node.container("migrate") {
        docker(&["rm", "-f", &c.id]);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.container("migrate").is_none());

    let f = node.spec_file(
        "f.yaml",
        "name: fails\nimage: berth-demo:latest\nkind: task\ncommand: [\"exit\", \"3\", \"--stderr\", \"boom\"]\n",
    );
    let out = node.ctl(&["--json", "apply", &f.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let d = &v["deployments"][0];
    assert_eq!(d["status"], "FAILED", "{v:#}");
    assert_eq!(d["outputs"]["deploy_status_code"], 3);
    assert!(
        d["outputs"]["deploy_stderr"]
            .as_str()
            .is_some_and(|s| s.contains("boom")),
        "{d:#}"
    );
}

#[test]
fn a_bad_config_exits_78_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berthd.toml");
    std::fs::write(&config, "node_id = \"x\"\nstate_dri = \"/tmp/x\"\n").expect("write");
    let out = std::process::Command::new(&berth_tests::bins::bins().berthd)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("berthd runs");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("berthd.toml") && err.contains("state_dri"),
        "{err}"
    );
}

#[test]
fn build_and_load_images_without_a_registry() {
    berth_prereq::require!(DemoImage);
    let (mut node, proxy) = node_with_proxy("images");
    node.start();
    // A build context next to the spec file, referenced relatively.
    let ctx = node.dir().join("apply/app");
    std::fs::create_dir_all(&ctx).expect("ctx");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM berth-demo:latest\nCOPY motd /etc/demo/motd\nCOPY . /ctx/\n",
    )
    .expect("dockerfile");
    std::fs::write(ctx.join("motd"), "built by berth\n").expect("motd");
    // What .dockerignore names never reaches the engine.
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").expect("ignore");
    std::fs::write(ctx.join("secret.log"), "not for the image\n").expect("log");
    let svc = format!("{}built", node.prefix);
    let spec = node.spec_file(
        "built.yaml",
        &format!("name: {svc}\nimage: {{build: {{context: app}}}}\ncommand: [\"serve\"]\nupdate: {{settle: 1s}}\n"),
    );
    let out = apply(&node, &[&spec]);
    assert_eq!(
        statuses(&out),
        vec![(svc.clone(), "COMPLETE".into())],
        "{out:#}"
    );
    let image = inspect(
        &node.container(&svc).expect("container").id,
        "{{.Config.Image}}",
    );
    let tags = String::from_utf8_lossy(
        &docker(&["image", "inspect", "--format", "{{json .RepoTags}}", &image]).stdout,
    )
    .to_string();
    assert!(tags.contains(&format!("berth-build/{svc}:")), "{tags}");
    let export = node.dir().join("export.tar");
    let exported = docker(&[
        "export",
        "-o",
        &export.display().to_string(),
        &node.container(&svc).expect("container").id,
    ]);
    assert!(exported.status.success(), "{exported:?}");
    let listed = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&export)
        .output()
        .expect("tar");
    let files = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(files.contains("ctx/motd"), "{files}");
    assert!(
        !files.contains("secret.log"),
        "an ignored file was sent: {files}"
    );
    // Unchanged context, but for an ignored file: nothing rebuilt, nothing changed.
    std::fs::write(ctx.join("build.log"), "noise\n").expect("log");
    proxy.clear();
    let out = apply(&node, &[&spec]);
    assert!(statuses(&out).is_empty(), "{out:#}");
    assert!(
        !proxy.calls().iter().any(|(_, p)| p.starts_with("/build")),
        "{:?}",
        proxy.calls()
    );
    // A changed context is rebuilt and the service updated.
    std::fs::write(ctx.join("motd"), "rebuilt\n").expect("motd");
    let out = apply(&node, &[&spec]);
    assert_eq!(
        statuses(&out),
        vec![(svc.clone(), "COMPLETE".into())],
        "{out:#}"
    );

    // load: a `docker save` tarball.
    let tar = node.dir().join("apply/demo.tar");
    let saved = docker(&[
        "save",
        "-o",
        &tar.display().to_string(),
        "berth-demo:latest",
    ]);
    assert!(saved.status.success());
    let loaded = node.spec_file(
        "loaded.yaml",
        "name: loaded\nimage: {load: demo.tar}\ncommand: [\"serve\"]\nupdate: {settle: 1s}\n",
    );
    let out = apply(&node, &[&loaded]);
    assert_eq!(
        statuses(&out),
        vec![("loaded".into(), "COMPLETE".into())],
        "{out:#}"
    );
}

#[test]
fn sighup_rereads_the_spec_dir_and_only_changed_files_apply() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("hup");
    std::fs::write(node.spec_dir().join("a.yaml"), web("a", "hello")).expect("write");
    node.start();
    node.wait_until("a from the spec dir", Duration::from_secs(30), |n| {
        n.container("a").is_some_and(|c| c.state == "running")
    });
    std::fs::write(node.spec_dir().join("b.yaml"), web("b", "hi")).expect("write");
    node.hup();
    node.wait_until("b after SIGHUP", Duration::from_secs(30), |n| {
        n.container("b").is_some_and(|c| c.state == "running")
    });
    let a_hist = node.ctl_json(&["history", "a"]);
    assert_eq!(
        a_hist.as_array().map(Vec::len),
        Some(1),
        "a's unchanged file was not re-applied"
    );
    // A restart re-reads the dir but re-applies nothing.
    node.kill();
    node.start();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        node.ctl_json(&["history", "a"]).as_array().map(Vec::len),
        Some(1)
    );
    // The owner is the file: the API may not take it over without --force.
    let other = node.spec_file("a.yaml", &web("a", "other"));
    let out = node.ctl(&["apply", &other.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Removing the file deletes the service.
    std::fs::remove_file(node.spec_dir().join("b.yaml")).expect("rm");
    node.hup();
    node.wait_until("b deleted", Duration::from_secs(30), |n| {
        n.container("b").is_none()
    });
}

#[test]
fn secrets_never_reach_status_records_events_or_logs() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("secret");
    node.start();
    let s = node.spec_file(
        "s.yaml",
        "name: s\nimage: berth-demo:latest\ncommand: [\"serve\"]\nenv: {TOKEN: {value: hunter2-secret-value, secret: true}}\nupdate: {settle: 1s}\n",
    );
    apply(&node, &[&s]);
    let c = node.container("s").expect("s");
    assert!(
        inspect(&c.id, "{{json .Config.Env}}").contains("hunter2-secret-value"),
        "the container gets it"
    );
    for args in [
        vec!["--json", "status"],
        vec!["--json", "show", "s"],
        vec!["--json", "history", "s"],
        vec!["--json", "events"],
        vec!["show", "s"],
    ] {
        let out = node.ctl_ok(&args);
        assert!(!out.contains("hunter2"), "{args:?} leaks: {out}");
    }
    assert!(!node.logs().contains("hunter2"), "berthd's log leaks");
}

#[test]
fn a_crash_looping_service_shows_restarts_and_fails_its_deployment() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("crash");
    node.start();
    let s = node.spec_file(
        "c.yaml",
        "name: c\nimage: berth-demo:latest\ncommand: [\"exit\", \"1\", \"--sleep\", \"200ms\"]\nupdate: {settle: 3s}\n",
    );
    let out = node.ctl(&["--json", "apply", &s.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    node.wait_until("restarts shown", Duration::from_secs(30), |n| {
        let st = n.ctl_json(&["status"]);
        st["services"][0]["container"]["restart_count"]
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    let st = node.ctl_json(&["status"]);
    assert_eq!(st["services"][0]["current"]["status"], "FAILED", "{st:#}");
}

#[test]
fn sigkill_mid_apply_leaves_no_duplicates_and_the_records_resolve() {
    berth_prereq::require!(DemoImage);
    let (mut node, _proxy) = node_with_proxy("midkill");
    node.start();
    let mut text = String::from("services:\n");
    for i in 0..6 {
        text.push_str(&format!(
            "  - name: m{i}\n    image: berth-demo:latest\n    command: [\"serve\"]\n    update: {{settle: 1s}}\n"
        ));
    }
    let f = node.spec_file("many.yaml", &text);
    let seq_before = node.ctl_json(&["status"])["node"]["event_seq"]
        .as_u64()
        .unwrap_or(0);
    node.ctl_ok(&["apply", "--no-wait", &f.display().to_string()]);
    std::thread::sleep(Duration::from_millis(150));
    node.kill();
    node.start();
    node.wait_until("every deployment resolved", Duration::from_secs(60), |n| {
        let st = n.ctl_json(&["status"]);
        st["services"].as_array().is_some_and(|s| {
            s.len() == 6
                && s.iter()
                    .all(|s| s["current"]["status"] == "COMPLETE" && s["converged"] == true)
        })
    });
    let containers = node.containers();
    assert_eq!(
        containers.len(),
        6,
        "one container per service: {containers:?}"
    );
    assert!(containers.iter().all(|c| c.state == "running"));
    // Re-applying changes nothing.
    let out = apply(&node, &[&f]);
    assert!(statuses(&out).is_empty(), "{out:#}");
    // Event sequence numbers continue across the restart.
    let events = node.ctl_json(&["events"]);
    let seqs: Vec<u64> = events["events"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        seqs.first().is_some_and(|s| *s <= seq_before + 1),
        "{seqs:?}"
    );
}
