//! berthd under a real systemd (a private user manager per test, see
//! `berth_tests::systemd`): readiness, the watchdog, socket activation, and
//! a bad config that must not be restarted.
//!
//! The tests run one at a time (`serial()`, across processes too): each has
//! its own manager, but the watchdog test's 3 s deadline should not compete
//! with the others for 2 cores.

use std::time::Duration;

use berth_tests::bins::demo_image;
use berth_tests::node::docker;
use berth_tests::systemd::{SystemdNode, serial, verify_units};

fn inspect(id: &str, format: &str) -> String {
    let out = docker(&["inspect", "--format", format, id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn socket_inode(node: &SystemdNode) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(node.socket())
        .map(|m| m.ino())
        .unwrap_or_else(|e| panic!("no socket: {e}\n{}", node.diagnostics()))
}

#[test]
fn shipped_units_verify() {
    let _g = serial();
    if let Err(e) = verify_units() {
        panic!("{e}");
    }
}

#[test]
fn the_unit_is_active_only_after_ready_with_a_status_line() {
    let _g = serial();
    let node = SystemdNode::new("sdready", "");
    // `start` of a Type=notify unit returns once READY=1 arrived.
    node.manager.systemctl_ok(&["start", "berthd.service"]);
    let s = node.service(&["ActiveState", "SubState", "StatusText", "Type", "MainPID"]);
    assert_eq!(s["ActiveState"], "active", "{s:?}\n{}", node.diagnostics());
    assert_eq!(s["SubState"], "running", "{s:?}");
    assert_eq!(s["Type"], "notify", "{s:?}");
    assert!(s["StatusText"].contains("services:"), "{s:?}");
    // READY came after the socket was bound: the API answers right away.
    let out = node.ctl_ok(&["status"]);
    assert!(!out.trim().is_empty());
    let log = node.logs();
    assert!(
        log.contains("feeding the systemd watchdog"),
        "the watchdog is on (WatchdogSec=10s):\n{log}"
    );
    assert!(
        !log.contains("using the socket passed by systemd"),
        "without the socket unit berthd binds itself:\n{log}"
    );

    // STOPPING=1, a clean stop, and berthd removes the socket it bound.
    node.manager.systemctl_ok(&["stop", "berthd.service"]);
    let s = node.service(&["ActiveState", "Result"]);
    assert_eq!(
        s["ActiveState"],
        "inactive",
        "{s:?}\n{}",
        node.diagnostics()
    );
    assert_eq!(s["Result"], "success", "{s:?}");
    assert!(!node.socket().exists());
}

#[test]
fn a_stuck_berthd_is_killed_by_the_watchdog_and_restarted_without_touching_containers() {
    let _g = serial();
    demo_image();
    // A short watchdog; a stopped process only dies of SIGABRT once
    // continued, so do not wait 90 s for the SIGKILL that follows.
    let node = SystemdNode::new(
        "sdwatchdog",
        "WatchdogSec=3s\nTimeoutAbortSec=2s\nRestartSec=1s",
    );
    node.manager.systemctl_ok(&["start", "berthd.service"]);
    let spec = node.spec_file(
        "w.yaml",
        "name: w\nimage: berth-demo:latest\ncommand: [\"serve\"]\nupdate: {settle: 1s}\n",
    );
    node.ctl_ok(&["apply", &spec.display().to_string()]);
    node.wait_until("w converged", Duration::from_secs(60), |n| {
        n.service(&["StatusText"])["StatusText"] == "1 services: 1 converged"
    });
    let before = node.container("w").expect("container w");
    let started_before = inspect(&before.id, "{{.State.StartedAt}}");

    let s = node.service(&["MainPID", "NRestarts"]);
    let pid = s["MainPID"].clone();
    assert_ne!(pid, "0", "{s:?}");
    let out = node.manager.ns_command("kill", &["-STOP", &pid]);
    assert!(out.status.success(), "kill -STOP {pid}: {out:?}");

    node.wait_until(
        "systemd restarted berthd after the watchdog fired",
        Duration::from_secs(30),
        |n| {
            let s = n.service(&["MainPID", "NRestarts", "ActiveState"]);
            s["ActiveState"] == "active"
                && s["MainPID"] != pid
                && s["MainPID"] != "0"
                && s["NRestarts"] != "0"
        },
    );
    let s = node.service(&["Result", "NRestarts", "StatusText"]);
    let log = node.logs();
    assert!(
        node.manager.log().contains("Watchdog timeout") || log.matches("berthd ready").count() >= 2,
        "{s:?}\n{}",
        node.diagnostics()
    );
    node.ctl_ok(&["status"]);
    node.wait_until(
        "w converged again after the restart",
        Duration::from_secs(30),
        |n| n.service(&["StatusText"])["StatusText"] == "1 services: 1 converged",
    );
    // Re-adopted: the same container, never restarted.
    let after = node.container("w").expect("container w after the restart");
    assert_eq!(before.id, after.id);
    assert_eq!(inspect(&after.id, "{{.State.StartedAt}}"), started_before);
    assert_eq!(inspect(&after.id, "{{.State.Running}}"), "true");
}

#[test]
fn the_socket_unit_starts_berthd_on_the_first_connection_and_hands_it_the_socket() {
    let _g = serial();
    let node = SystemdNode::new("sdsocket", "");
    node.manager
        .systemctl_ok(&["enable", "--now", "berthd.socket"]);
    assert_eq!(
        node.manager.prop("berthd.service", "ActiveState"),
        "inactive"
    );
    let inode = socket_inode(&node);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.socket())
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o660, "SocketMode=0660");
    }

    // berthctl connects; systemd starts berthd, which answers on the socket.
    let out = node.ctl_ok(&["status"]);
    assert!(!out.trim().is_empty());
    node.wait_until("berthd.service active", Duration::from_secs(20), |n| {
        n.manager.prop("berthd.service", "ActiveState") == "active"
    });
    let log = node.logs();
    assert!(
        log.contains("using the socket passed by systemd"),
        "berthd used LISTEN_FDS:\n{}",
        node.diagnostics()
    );
    assert_eq!(
        socket_inode(&node),
        inode,
        "berthd did not rebind the socket"
    );

    // Stopping berthd leaves systemd's socket in place, and the next
    // connection starts berthd again.
    node.manager.systemctl_ok(&["stop", "berthd.service"]);
    assert_eq!(
        socket_inode(&node),
        inode,
        "berthd left systemd's socket alone"
    );
    node.ctl_ok(&["status"]);
    assert_eq!(node.manager.prop("berthd.service", "ActiveState"), "active");
    assert_eq!(socket_inode(&node), inode);
}

#[test]
fn a_bad_config_fails_the_unit_and_is_not_restarted() {
    let _g = serial();
    let node = SystemdNode::new("sdbadcfg", "RestartSec=500ms");
    node.write_config("no_such_key = 1");
    let out = node.manager.systemctl(&["start", "berthd.service"]);
    assert!(!out.status.success(), "start must fail: {out:?}");
    // Longer than RestartSec: a restart would have happened by now.
    std::thread::sleep(Duration::from_secs(2));
    let s = node.service(&["ActiveState", "Result", "ExecMainStatus", "NRestarts"]);
    assert_eq!(s["ActiveState"], "failed", "{s:?}\n{}", node.diagnostics());
    assert_eq!(s["Result"], "exit-code", "{s:?}");
    assert_eq!(s["ExecMainStatus"], "78", "{s:?}");
    assert_eq!(s["NRestarts"], "0", "{s:?}");
    assert!(node.logs().contains("no_such_key"), "{}", node.logs());
}
