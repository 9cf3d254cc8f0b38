//! Host hooks (`where: host`) under a real `systemd --user`: berthd, run
//! by a private user manager (`berth_tests::systemd::SystemdNode`) and
//! reaching it on its user bus, runs a `pre_update` hook as a transient
//! unit `berth-hook-*.service`. Exit 0 lets the update go on, a non-zero
//! exit fails it with the hook's output while the old container runs on,
//! and the unit and its output file are gone afterwards. A berthd SIGKILLed
//! while the hook runs re-attaches to the unit after its restart instead of
//! running the hook a second time.

use std::path::Path;
use std::time::Duration;

use berth_core::host::hook_unit_name;
use berth_tests::bins::demo_image;
use berth_tests::node::docker;
use berth_tests::systemd::{SystemdNode, serial};
use serde_json::Value;

/// A node on the user bus, berthd started (restarted 1 s after a crash).
fn node(hint: &str) -> SystemdNode {
    demo_image();
    let node = SystemdNode::new(hint, "RestartSec=1s");
    node.use_user_bus("");
    node.manager.systemctl_ok(&["start", "berthd.service"]);
    node
}

/// `hk` on the demo image, version `v`, with one host `pre_update` hook
/// running `script` under `sh -c` (none when empty).
fn hk(v: u32, script: &str) -> String {
    let hooks = if script.is_empty() {
        String::new()
    } else {
        format!(
            "hooks:\n  pre_update:\n    - exec: [\"/bin/sh\", \"-c\", {}]\n      where: host\n      timeout: 90s\n",
            serde_json::to_string(script).expect("a JSON string is YAML")
        )
    };
    format!(
        "name: hk\nimage: berth-demo:latest\ncommand: [\"serve\"]\nenv: {{V: \"{v}\"}}\n\
         stop_timeout: 2s\nupdate: {{settle: 1s}}\n{hooks}"
    )
}

fn apply(node: &SystemdNode, v: u32, script: &str, wait: bool) {
    let f = node.spec_file(&format!("hk-{v}.yaml"), &hk(v, script));
    let f = f.display().to_string();
    if wait {
        // It may fail (exit 1): the record says how.
        let _ = node.ctl(&["apply", &f]);
    } else {
        node.ctl_ok(&["apply", "--no-wait", &f]);
    }
}

fn record(node: &SystemdNode, generation: u64) -> Value {
    let out = node.ctl_ok(&["--json", "history", "hk"]);
    let all: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    all.as_array()
        .into_iter()
        .flatten()
        .find(|d| d["generation"].as_u64() == Some(generation))
        .cloned()
        .unwrap_or(Value::Null)
}

fn ended(node: &SystemdNode, generation: u64) -> Value {
    node.wait_until(
        &format!("generation {generation} ends"),
        Duration::from_secs(120),
        |n| {
            matches!(
                record(n, generation)["status"].as_str(),
                Some("COMPLETE" | "FAILED" | "ROLLED_BACK")
            )
        },
    );
    record(node, generation)
}

fn unit(generation: u64) -> String {
    hook_unit_name("hk", "pre_update-0", &format!("hk-{generation}"))
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn running_id(node: &SystemdNode) -> String {
    let c = node.container("hk").expect("hk's container");
    let out = docker(&["inspect", "--format", "{{.State.Running}}", &c.id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
    c.id
}

/// berthd's hooks dir: 0700, and empty (no output file left behind).
fn hooks_dir_is_private_and_empty(node: &SystemdNode) {
    use std::os::unix::fs::PermissionsExt;
    let cfg = std::fs::read_to_string(node.config_path()).expect("config");
    let state = cfg
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .expect("state_dir")
        .trim_matches('"')
        .to_string();
    let dir = Path::new(&state).join("hooks");
    let mode = std::fs::metadata(&dir)
        .expect("hooks dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("read hooks dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_host_hook_runs_as_a_transient_unit_and_its_exit_code_decides() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    let node = node("hkhost");
    let ran = node.manager.dir().join("ran");
    apply(&node, 1, "", true);
    assert_eq!(ended(&node, 1)["status"], "COMPLETE");
    let first = running_id(&node);

    // Exit 0: the update goes on; the hook saw who it runs for.
    let script = format!(
        "echo \"$BERTH_SERVICE $BERTH_DEPLOYMENT $BERTH_HOOK_PHASE\" >> {}; echo drained",
        ran.display()
    );
    apply(&node, 2, &script, true);
    let d = ended(&node, 2);
    assert_eq!(d["status"], "COMPLETE", "{d}\n{}", node.diagnostics());
    assert_eq!(
        std::fs::read_to_string(&ran).expect("the hook ran"),
        "hk hk-2 pre_update\n"
    );
    let second = running_id(&node);
    assert_ne!(first, second, "replaced after the hook");
    assert!(
        !node.manager.is_loaded(&unit(2)),
        "the unit is cleaned up once read"
    );
    hooks_dir_is_private_and_empty(&node);

    // Exit 3: the update fails with the hook's output, the old container
    // runs on.
    apply(
        &node,
        3,
        "echo checking; echo '2 VMs still here' >&2; exit 3",
        true,
    );
    let d = ended(&node, 3);
    assert_eq!(d["status"], "FAILED", "{d}");
    let reason = d["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exec on the host")
            && reason.contains("exited with code 3")
            && reason.contains("2 VMs still here"),
        "{reason}"
    );
    assert_eq!(d["outputs"]["deploy_status_code"], 3, "{d}");
    assert_eq!(
        d["outputs"]["deploy_stdout"], "checking\n2 VMs still here\n",
        "{d}"
    );
    assert_eq!(running_id(&node), second, "the old container is untouched");
    assert!(!node.manager.is_loaded(&unit(3)));
    hooks_dir_is_private_and_empty(&node);
}

#[test]
fn a_berthd_killed_while_a_host_hook_runs_re_attaches_instead_of_running_it_twice() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    let node = node("hkagain");
    let ran = node.manager.dir().join("ran");
    let gate = node.manager.dir().join("gate");
    apply(&node, 1, "", true);
    assert_eq!(ended(&node, 1)["status"], "COMPLETE");
    let first = running_id(&node);

    let script = format!(
        "echo run >> {ran}; while [ ! -e {gate} ]; do sleep 0.1; done; echo through",
        ran = ran.display(),
        gate = gate.display()
    );
    apply(&node, 2, &script, false);
    node.wait_until("the hook runs", Duration::from_secs(60), |n| {
        lines(&ran) == 1 && record(n, 2)["status"] == "WAITING_HOOK"
    });
    assert_eq!(node.manager.prop(&unit(2), "ActiveState"), "active");

    // SIGKILL: systemd restarts berthd; the hook's unit runs on.
    let pid = node.service(&["MainPID"])["MainPID"].clone();
    node.manager
        .systemctl_ok(&["kill", "--signal=KILL", "berthd.service"]);
    node.wait_until("berthd restarted", Duration::from_secs(60), |n| {
        let s = n.service(&["MainPID", "ActiveState"]);
        s["ActiveState"] == "active" && s["MainPID"] != pid && s["MainPID"] != "0"
    });
    // The new berthd asks systemd for the hook's unit and finds it running.
    node.wait_until(
        "the restarted berthd re-attaches to the hook's unit",
        Duration::from_secs(60),
        |n| {
            n.logs().contains("host hook already runs: waiting for it")
                && record(n, 2)["status"] == "WAITING_HOOK"
        },
    );
    assert_eq!(lines(&ran), 1, "not started a second time");
    assert_eq!(running_id(&node), first, "the old container runs on");

    std::fs::write(&gate, "").expect("open the gate");
    let d = ended(&node, 2);
    assert_eq!(d["status"], "COMPLETE", "{d}\n{}", node.diagnostics());
    assert_eq!(lines(&ran), 1, "the hook ran once");
    assert_ne!(running_id(&node), first);
    assert!(!node.manager.is_loaded(&unit(2)));
    hooks_dir_is_private_and_empty(&node);
}
