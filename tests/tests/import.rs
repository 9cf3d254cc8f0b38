//! A tripleo_container_manage step tree, imported by `berthctl import
//! tripleo --image-map` (the demo image standing in for TripleO's), applies
//! on the real engine as paunch would run it: step by step, and within a
//! step by start_order, each `detach: false` container (a task) finished
//! before the next group starts. Every container appends its name to one
//! host log when it starts, so the log is the order things ran in.

use std::path::Path;

use berth_tests::bins::demo_image;
use berth_tests::node::TestNode;
use serde_json::Value;

/// TripleO's image names, which no engine here can pull: `--image-map`
/// replaces each.
const IMAGE: &str = "quay.io/tripleomaster/openstack-demo:current-tripleo";

/// `step_N/<file>` and its container config; the log is mounted at /log.
fn tree(log: &Path) -> Vec<(&'static str, String)> {
    let volume = format!("{}:/log", log.display());
    let service = |name: &str, order: u32, env: &str| {
        format!(
            r#"{{"image": "{IMAGE}", "restart": "always", "start_order": {order},
                "command": ["append", "/log/log", "{name}", "--then", "serve"],
                "volumes": ["{volume}", ""], "environment": {{{env}}}}}"#
        )
    };
    let task = |name: &str, order: u32| {
        format!(
            r#"{{"image": "{IMAGE}", "detach": false, "start_order": {order}, "user": "0",
                "command": "append /log/log {name}",
                "volumes": ["{volume}"], "environment": {{"KOLLA_BOOTSTRAP": true}}}}"#
        )
    };
    vec![
        ("step_1/keepalived.json", service("keepalived", 0, "")),
        ("step_2/mysql_bootstrap.json", task("mysql_bootstrap", 0)),
        // tripleo_container_manage's hashed file wins over the plain one.
        ("step_2/mysql.json", service("stale", 1, "")),
        (
            "step_2/hashed-mysql.json",
            service("mysql", 1, r#""TRIPLEO_CONFIG_HASH": "4f2a""#),
        ),
        ("step_3/nova_api_db_sync.json", task("nova_api_db_sync", 0)),
        ("step_3/nova_api.json", service("nova_api", 1, "")),
        ("step_3/nova_api_cron.json", service("nova_api_cron", 1, "")),
        // paunch's `action: exec`: runs in nova_api's container, after it.
        (
            "step_3/nova_api_bootstrap.json",
            r#"{"action": "exec", "start_order": 2, "user": "0",
                "command": ["nova_api", "/demo", "append", "/log/log", "nova_api_bootstrap"]}"#
                .to_string(),
        ),
    ]
}

fn status(node: &TestNode, service: &str) -> Value {
    node.ctl_json(&["show", service])["current"]["status"].clone()
}

#[test]
fn an_imported_tripleo_tree_runs_step_by_step_tasks_first() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("import");
    node.start();
    let log = node.dir().join("log");
    let tree_dir = node.dir().join("container-startup-config");
    let out = node.dir().join("services.d");
    std::fs::create_dir_all(&log).expect("the log dir");
    for (path, text) in tree(&log) {
        let p = tree_dir.join(path);
        std::fs::create_dir_all(p.parent().expect("a step dir")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let (tree_s, out_s) = (tree_dir.display().to_string(), out.display().to_string());
    node.ctl_ok(&[
        "import",
        "tripleo",
        &tree_s,
        "-o",
        &out_s,
        "--image-map",
        &format!("{IMAGE}=berth-demo:latest"),
    ]);
    node.ctl_ok(&["apply", &out_s, "--timeout", "180s"]);

    let lines: Vec<String> = std::fs::read_to_string(log.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    // Two services of one group start in either order; the exec comes last.
    assert_eq!(
        lines.last().map(String::as_str),
        Some("nova_api_bootstrap"),
        "{lines:?}"
    );
    let lines_before_exec = &lines[..lines.len().saturating_sub(1)];
    let (first, last_group) = lines_before_exec.split_at(lines_before_exec.len().saturating_sub(2));
    assert_eq!(
        first,
        ["keepalived", "mysql_bootstrap", "mysql", "nova_api_db_sync"],
        "the order things ran in: {lines:?}\nberthd log:\n{}",
        node.logs()
    );
    let mut last_group = last_group.to_vec();
    last_group.sort();
    assert_eq!(last_group, ["nova_api", "nova_api_cron"], "{lines:?}");

    for s in [
        "keepalived",
        "mysql_bootstrap",
        "mysql",
        "nova_api_db_sync",
        "nova_api",
        "nova_api_cron",
    ] {
        assert_eq!(status(&node, s), "COMPLETE", "{s}");
    }
    assert_eq!(status(&node, "nova_api_bootstrap"), "COMPLETE");
    let exec = node.ctl_json(&["show", "nova_api_bootstrap"]);
    let nova_api = node.container("nova_api").expect("nova_api runs");
    assert_eq!(
        exec["current"]["exec_container"], nova_api.id,
        "it ran in nova_api's container: {exec}"
    );
    assert!(
        node.container("nova_api_bootstrap").is_none(),
        "an exec task has no container of its own"
    );
    for task in ["mysql_bootstrap", "nova_api_db_sync"] {
        let show = node.ctl_json(&["show", task]);
        assert_eq!(
            show["current"]["outputs"]["deploy_status_code"], 0,
            "{task}: {show}"
        );
    }
    // The config hash paunch needed is not berth's business; the Python
    // bool reached the task as paunch writes it.
    let mysql = node.ctl_json(&["show", "mysql"]);
    assert!(
        mysql["current"]["spec"]["env"]
            .get("TRIPLEO_CONFIG_HASH")
            .is_none(),
        "{mysql}"
    );
    let bootstrap = node.ctl_json(&["show", "mysql_bootstrap"]);
    assert_eq!(
        bootstrap["current"]["spec"]["env"]["KOLLA_BOOTSTRAP"], "True",
        "{bootstrap}"
    );
    for s in ["keepalived", "mysql", "nova_api", "nova_api_cron"] {
        let c = node.container(s);
        assert!(
            c.as_ref().is_some_and(|c| c.state == "running"),
            "{s} not running: {c:?}"
        );
    }

    // Applying the same files again runs nothing: no task appends again.
    node.ctl_ok(&["apply", &out_s, "--timeout", "60s"]);
    let again = std::fs::read_to_string(log.join("log")).unwrap_or_default();
    assert_eq!(again.lines().count(), lines.len(), "{again}");
}
