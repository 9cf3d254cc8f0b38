//! `berthctl adopt --from paunch --check` against the real engine:
//! containers started by hand the way paunch starts them (`docker run` with
//! its labels, `config_data` the container's paunch config as JSON) are
//! read back by berthd; the one started as its config says is reported
//! adoptable, the one changed by hand with its differing field; nothing is
//! touched (same ids, same start times). The real paunch CLI comes later.

use std::path::Path;

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker, unique};
use serde_json::{Value, json};

/// Removes the containers a test started, by name, even when it fails.
struct Started(Vec<String>);

impl Drop for Started {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
    }
}

/// `docker run` as paunch runs a container from `config` (a subset:
/// image, restart, environment, volumes, command), with `env` and
/// `extra_volumes` in place of the config's where given (a hand change).
fn paunch_run(
    name: &str,
    config_id: &str,
    config: &Value,
    env: &[(&str, &str)],
    extra_volumes: &[String],
) -> String {
    let mut args: Vec<String> = ["run", "-d", "--name", name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for label in [
        "managed_by=paunch".to_string(),
        format!("config_id={config_id}"),
        format!("container_name={name}"),
        format!("config_data={config}"),
    ] {
        args.push("--label".into());
        args.push(label);
    }
    if let Some(r) = config["restart"].as_str() {
        args.push(format!("--restart={r}"));
    }
    for (k, v) in env {
        args.push(format!("--env={k}={v}"));
    }
    let volumes = config["volumes"].as_array().cloned().unwrap_or_default();
    for v in volumes.iter().filter_map(Value::as_str) {
        args.push(format!("--volume={v}"));
    }
    for v in extra_volumes {
        args.push(format!("--volume={v}"));
    }
    args.push(config["image"].as_str().expect("an image").to_string());
    for c in config["command"].as_array().cloned().unwrap_or_default() {
        args.push(c.as_str().expect("a command word").to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker(&argv);
    assert!(
        out.status.success(),
        "docker {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// (full id, StartedAt) of a container.
fn identity(name: &str) -> (String, String) {
    let out = docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", name]);
    assert!(out.status.success(), "inspect {name}");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (id, started) = text.split_once(' ').expect("id and start time");
    (id.to_string(), started.to_string())
}

fn config(data: &Path) -> Value {
    json!({
        "image": "berth-demo:latest",
        "restart": "always",
        "command": ["serve"],
        "environment": {"GREETING": "hello", "TRIPLEO_CONFIG_HASH": "4f2a"},
        "volumes": [format!("{}:/data:ro", data.display())],
    })
}

#[test]
fn a_check_reports_the_matching_container_adoptable_and_the_changed_one_with_its_field() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("adopt");
    node.start();
    let data = node.dir().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let prefix = unique("adopt");
    let config_id = format!("{prefix}-step3");
    let (same, env_changed, volume_added) = (
        format!("{prefix}-keystone"),
        format!("{prefix}-nova_api"),
        format!("{prefix}-glance"),
    );
    let mut started = Started(Vec::new());
    let config = config(&data);
    let hash = [("TRIPLEO_CONFIG_HASH", "4f2a")];
    started.0.push(same.clone());
    paunch_run(
        &same,
        &config_id,
        &config,
        &[("GREETING", "hello"), hash[0]],
        &[],
    );
    started.0.push(env_changed.clone());
    paunch_run(
        &env_changed,
        &config_id,
        &config,
        &[("GREETING", "by hand")],
        &[],
    );
    started.0.push(volume_added.clone());
    let extra = format!("{}:/extra", data.display());
    paunch_run(
        &volume_added,
        &config_id,
        &config,
        &[("GREETING", "hello"), hash[0]],
        std::slice::from_ref(&extra),
    );
    let before: Vec<(String, String)> = started.0.iter().map(|n| identity(n)).collect();

    let report = node.ctl_json(&[
        "adopt",
        "--from",
        "paunch",
        "--config-id",
        &config_id,
        "--check",
    ]);
    let entries = report["containers"].as_array().expect("containers");
    let by_name = |name: &str| -> &Value {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
    };
    assert_eq!(entries.len(), 3, "{report:#}");
    assert_eq!(by_name(&same)["verdict"], "adopt", "{report:#}");
    assert_eq!(
        by_name(&same)["systemd_unit"],
        format!("tripleo_{same}.service")
    );
    let changed = by_name(&env_changed);
    assert_eq!(changed["verdict"], "differs", "{report:#}");
    let diffs: Vec<&str> = changed["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(diffs, ["env.GREETING"], "{report:#}");
    assert_eq!(changed["diffs"][0]["config_says"], "hello");
    assert_eq!(changed["diffs"][0]["container_has"], "by hand");
    let added = by_name(&volume_added);
    assert_eq!(added["verdict"], "differs", "{report:#}");
    assert_eq!(
        added["diffs"].as_array().map(Vec::len),
        Some(1),
        "{report:#}"
    );
    assert_eq!(added["diffs"][0]["field"], "volumes", "{report:#}");
    let has = added["diffs"][0]["container_has"].to_string();
    assert!(has.contains(":/extra"), "{has}");

    // The plain report says the same, and the systemd hint.
    let text = node.ctl_ok(&[
        "adopt",
        "--from",
        "paunch",
        "--config-id",
        &config_id,
        "--check",
    ]);
    assert!(text.contains("would adopt"), "{text}");
    assert!(
        text.contains("env.GREETING: config says \"hello\", container has \"by hand\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("if tripleo_{same}.service manages it")),
        "{text}"
    );
    // Without --check: refused, nothing done.
    let out = node.ctl(&["adopt", "--from", "paunch", "--config-id", &config_id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not implemented yet"));

    let after: Vec<(String, String)> = started.0.iter().map(|n| identity(n)).collect();
    assert_eq!(before, after, "nothing was restarted or replaced");
    assert!(
        node.containers().is_empty(),
        "berthd made nothing of its own"
    );
}
