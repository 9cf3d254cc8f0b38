//! Config watch against real files, inotify, the real engine and the demo
//! image (which re-reads its config dir on SIGHUP and shows what it loaded
//! at `GET /config`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn service(name: &str, source: &Path, on_change: &str) -> String {
    format!(
        "name: {name}\nimage: berth-demo:latest\ncommand: [\"serve\", \"--port\", \"8080\"]\n\
         update: {{settle: 1s}}\n\
         config:\n  - {{source: {}, target: /etc/demo, on_change: {on_change}}}\n",
        source.display()
    )
}

/// A started node and a config dir `<node dir>/cfg/web` holding app.conf.
fn setup(hint: &str, content: &str) -> (TestNode, PathBuf) {
    demo_image();
    let mut node = TestNode::new(hint);
    node.start();
    let src = node.dir().join("cfg").join("web");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("app.conf"), content).expect("write");
    (node, src)
}

fn apply(node: &TestNode, name: &str, text: &str) -> Value {
    let file = node.spec_file(&format!("{name}.yaml"), text);
    node.ctl_json(&["apply", &file.display().to_string()])
}

fn history(node: &TestNode, name: &str) -> Vec<Value> {
    node.ctl_json(&["history", name])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn generation(d: &Value) -> u64 {
    d["generation"].as_u64().unwrap_or(0)
}

/// Waits for a finished RECONFIGURE of `name` newer than `after`.
fn reconfigured(node: &TestNode, name: &str, after: u64) -> Value {
    let mut found = Value::Null;
    node.wait_until("a finished RECONFIGURE record", WAIT, |n| {
        let newest = history(n, name).into_iter().next().unwrap_or(Value::Null);
        let done = generation(&newest) > after
            && newest["action"] == "RECONFIGURE"
            && matches!(newest["status"].as_str(), Some("COMPLETE" | "FAILED"));
        if done {
            found = newest;
        }
        done
    });
    found
}

fn newest_generation(node: &TestNode, name: &str) -> u64 {
    history(node, name).first().map(generation).unwrap_or(0)
}

/// What the demo in `name`'s container has loaded.
fn demo_config(node: &TestNode, name: &str) -> Value {
    let c = node.container(name).expect("container exists");
    let out = docker(&["exec", &c.id, "/demo", "request", "/config"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("/config of {name}: {e}: {text:?} {out:?}"))
}

fn loaded_content(cfg: &Value, file: &str) -> String {
    cfg["files"]
        .as_array()
        .and_then(|fs| {
            fs.iter()
                .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(file)))
        })
        .and_then(|f| f["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn started_at(id: &str) -> String {
    let out = docker(&["inspect", "--format", "{{.State.StartedAt}}", id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `content` to `dir/name` the way editors and config tools do: a
/// temp file renamed into place.
fn rename_into_place(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).expect("write tmp");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

#[test]
fn rename_into_place_reloads_the_service_by_signal_without_a_restart() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-rename", "greeting=hello\n");
    apply(&node, "web", &service("web", &src, "{signal: SIGHUP}"));
    let before = node.container("web").expect("web runs");
    let before_started = started_at(&before.id);
    assert_eq!(demo_config(&node, "web")["loads"], 1);
    let gen0 = newest_generation(&node, "web");

    rename_into_place(&src, "app.conf", "greeting=bonjour\n");
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "COMPLETE", "{r:#}");
    assert_eq!(
        r["config_change"]["sources"][0]["files"],
        serde_json::json!(["app.conf"])
    );
    assert_eq!(r["config_change"]["reaction"], "signal SIGHUP");
    assert_ne!(
        r["config_change"]["old_hash"],
        r["config_change"]["new_hash"]
    );
    node.wait_until("the demo reloaded", WAIT, |n| {
        loaded_content(&demo_config(n, "web"), "app.conf") == "greeting=bonjour\n"
    });
    let after = node.container("web").expect("web runs");
    assert_eq!(after.id, before.id, "same container");
    assert_eq!(started_at(&after.id), before_started, "not restarted");

    let show = node.ctl_ok(&["show", "web"]);
    assert!(show.contains("config sources:"), "{show}");
    assert!(
        show.contains(&format!("{} -> /etc/demo", src.display())),
        "{show}"
    );
    assert!(show.contains("on_change: signal SIGHUP"), "{show}");
    assert!(show.contains("changed files:"), "{show}");
    let events = node.ctl_ok(&["events"]);
    assert!(
        events
            .lines()
            .any(|l| l.contains("web: config changed") && l.contains("app.conf")),
        "{events}"
    );
}

#[test]
fn a_configmap_style_symlink_swap_is_one_change() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("cfg-symlink");
    node.start();
    // dir/app.conf -> ..data/app.conf, ..data -> ..v1 (the Kubernetes layout).
    let src = node.dir().join("cfg").join("web");
    for (v, text) in [("..v1", "v=1\n"), ("..v2", "v=2\n")] {
        std::fs::create_dir_all(src.join(v)).expect("mkdir");
        std::fs::write(src.join(v).join("app.conf"), text).expect("write");
    }
    std::os::unix::fs::symlink("..v1", src.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/app.conf", src.join("app.conf")).expect("symlink");
    apply(&node, "web", &service("web", &src, "{signal: SIGHUP}"));
    assert_eq!(
        loaded_content(&demo_config(&node, "web"), "app.conf"),
        "v=1\n"
    );
    let gen0 = newest_generation(&node, "web");

    std::os::unix::fs::symlink("..v2", src.join("..data_tmp")).expect("symlink");
    std::fs::rename(src.join("..data_tmp"), src.join("..data")).expect("swap");
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "COMPLETE", "{r:#}");
    assert_eq!(
        r["config_change"]["sources"][0]["files"],
        serde_json::json!(["app.conf"])
    );
    node.wait_until("the demo sees v2", WAIT, |n| {
        loaded_content(&demo_config(n, "web"), "app.conf") == "v=2\n"
    });
}

#[test]
fn touch_and_an_identical_rewrite_change_nothing() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-touch", "same\n");
    apply(&node, "web", &service("web", &src, "restart"));
    let gen0 = newest_generation(&node, "web");
    let before = node.container("web").expect("web runs");
    let before_started = started_at(&before.id);
    std::fs::write(src.join("app.conf"), "same\n").expect("identical rewrite");
    rename_into_place(&src, "app.conf", "same\n");
    let f = std::fs::File::options()
        .write(true)
        .open(src.join("app.conf"))
        .expect("open");
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .expect("touch");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        newest_generation(&node, "web"),
        gen0,
        "{:#?}",
        history(&node, "web")
    );
    let after = node.container("web").expect("web runs");
    assert_eq!(started_at(&after.id), before_started, "not restarted");
}

#[test]
fn a_burst_of_100_writes_is_one_reconfigure() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-burst", "n=0\n");
    apply(&node, "web", &service("web", &src, "{signal: SIGHUP}"));
    let gen0 = newest_generation(&node, "web");
    for i in 1..=100 {
        std::fs::write(src.join(format!("f{}.conf", i % 10)), format!("n={i}\n")).expect("write");
    }
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "COMPLETE", "{r:#}");
    std::thread::sleep(Duration::from_secs(3));
    let reconfigures = history(&node, "web")
        .iter()
        .filter(|d| generation(d) > gen0)
        .count();
    assert_eq!(reconfigures, 1, "{:#?}", history(&node, "web"));
    assert_eq!(
        loaded_content(&demo_config(&node, "web"), "f0.conf"),
        "n=100\n"
    );
}

#[test]
fn restart_and_recreate_policies_on_a_shared_source() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-policies", "v=1\n");
    apply(&node, "a", &service("a", &src, "restart"));
    apply(&node, "b", &service("b", &src, "recreate"));
    let (a0, b0) = (
        node.container("a").expect("a"),
        node.container("b").expect("b"),
    );
    let label0 = b0
        .label("io.berth.config-hash")
        .expect("recreate carries the label");
    let a_started = started_at(&a0.id);
    let (ga, gb) = (newest_generation(&node, "a"), newest_generation(&node, "b"));

    rename_into_place(&src, "app.conf", "v=2\n");
    let ra = reconfigured(&node, "a", ga);
    let rb = reconfigured(&node, "b", gb);
    assert_eq!(ra["status"], "COMPLETE", "{ra:#}");
    assert_eq!(rb["status"], "COMPLETE", "{rb:#}");
    let (a1, b1) = (
        node.container("a").expect("a"),
        node.container("b").expect("b"),
    );
    assert_eq!(a1.id, a0.id, "restart keeps the container");
    assert_ne!(started_at(&a1.id), a_started, "a was restarted");
    assert_ne!(b1.id, b0.id, "recreate makes a new container");
    assert_ne!(b1.label("io.berth.config-hash"), Some(label0));
    for s in ["a", "b"] {
        assert_eq!(loaded_content(&demo_config(&node, s), "app.conf"), "v=2\n");
    }
}

#[test]
fn a_failing_exec_fails_the_record_with_its_stderr() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-exec", "v=1\n");
    let policy = r#"{exec: ["/demo", "exit", "3", "--stderr", "config rejected: v=oops"]}"#;
    apply(&node, "web", &service("web", &src, policy));
    let gen0 = newest_generation(&node, "web");
    let before = node.container("web").expect("web runs");
    let before_started = started_at(&before.id);
    rename_into_place(&src, "app.conf", "v=oops\n");
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "FAILED", "{r:#}");
    let reason = r["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("exited with code 3"), "{reason}");
    assert!(reason.contains("config rejected: v=oops"), "{reason}");
    assert_eq!(r["outputs"]["deploy_status_code"], 3);
    let after = node.container("web").expect("web runs");
    assert_eq!(started_at(&after.id), before_started, "left running");
}

#[test]
fn a_change_made_while_berthd_is_stopped_is_handled_at_start() {
    berth_prereq::require!(DemoImage);
    let (mut node, src) = setup("cfg-down", "v=1\n");
    apply(&node, "web", &service("web", &src, "{signal: SIGHUP}"));
    let gen0 = newest_generation(&node, "web");
    node.kill();
    rename_into_place(&src, "app.conf", "v=2\n");
    node.start();
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "COMPLETE", "{r:#}");
    node.wait_until("the demo sees v=2", WAIT, |n| {
        loaded_content(&demo_config(n, "web"), "app.conf") == "v=2\n"
    });
}

#[test]
fn a_missing_source_fails_once_keeps_the_container_and_recovers() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-missing", "v=1\n");
    apply(&node, "web", &service("web", &src, "{signal: SIGHUP}"));
    let gen0 = newest_generation(&node, "web");
    let before = node.container("web").expect("web runs");
    let before_started = started_at(&before.id);
    std::fs::remove_dir_all(&src).expect("rm");
    let r = reconfigured(&node, "web", gen0);
    assert_eq!(r["status"], "FAILED", "{r:#}");
    let reason = r["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&*src.to_string_lossy()), "{reason}");
    assert!(reason.contains("No such file or directory"), "{reason}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(newest_generation(&node, "web"), generation(&r), "no loop");
    let still = node.container("web").expect("web still there");
    assert_eq!(still.id, before.id);
    assert_eq!(started_at(&still.id), before_started, "left as it was");

    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("app.conf"), "v=back\n").expect("write");
    let back = reconfigured(&node, "web", generation(&r));
    assert_eq!(back["status"], "COMPLETE", "{back:#}");
    assert_eq!(back["config_change"]["reaction"], "restart");
    node.wait_until("the demo sees the new dir", WAIT, |n| {
        loaded_content(&demo_config(n, "web"), "app.conf") == "v=back\n"
    });
}

#[test]
fn a_spec_with_a_missing_source_fails_and_no_directory_is_created() {
    berth_prereq::require!(DemoImage);
    let (node, _src) = setup("cfg-nosource", "v=1\n");
    let missing = node.dir().join("cfg").join("nope");
    let out = node.ctl(&[
        "--json",
        "apply",
        &node
            .spec_file("web.yaml", &service("web", &missing, "restart"))
            .display()
            .to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("never creates one"), "{text}");
    assert!(!missing.exists(), "berth must not create the source");
    assert!(node.container("web").is_none());
}

#[test]
fn reconfigure_forces_the_policy() {
    berth_prereq::require!(DemoImage);
    let (node, src) = setup("cfg-force", "v=1\n");
    apply(&node, "web", &service("web", &src, "restart"));
    let before = started_at(&node.container("web").expect("web runs").id);
    // berthctl waits for the RECONFIGURE deployment to end.
    let out = node.ctl_json(&["reconfigure", "web"]);
    assert_eq!(out["deployment"]["action"], "RECONFIGURE", "{out:#}");
    assert_eq!(out["deployment"]["status"], "COMPLETE", "{out:#}");
    assert_eq!(
        out["deployment"]["config_change"]["forced"], true,
        "{out:#}"
    );
    let after = node.container("web").expect("web runs");
    assert_ne!(started_at(&after.id), before, "restarted");
}
