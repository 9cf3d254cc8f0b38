//! berthd under a real systemd (a private user manager per test, see
//! `berth_tests::systemd`): readiness, the watchdog, socket activation, a
//! bad config that must not be restarted, and host units (requires_units,
//! after_units), a transient one among them that berthd must not pin.
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
    berth_prereq::require!(Systemd);
    let _g = serial();
    if let Err(e) = verify_units() {
        panic!("{e}");
    }
}

#[test]
fn the_unit_is_active_only_after_ready_with_a_status_line() {
    berth_prereq::require!(Systemd);
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
    berth_prereq::require!(Systemd, DemoImage);
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
    berth_prereq::require!(Systemd);
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
    berth_prereq::require!(Systemd);
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

// --- Host units: after_units / requires_units over the user bus. ----------

/// A node whose berthd follows host units on the manager's user bus, with a
/// short units_timeout, started (the caller has required systemd).
fn units_node(hint: &str) -> Option<SystemdNode> {
    demo_image();
    let node = SystemdNode::new(hint, "");
    node.use_user_bus("units_timeout = \"3s\"\n");
    node.write_unit(
        "fake-db.service",
        "[Unit]\nDescription=a host unit berth waits for\n\n[Service]\nExecStart=/bin/sleep infinity\n",
    );
    node.manager.systemctl_ok(&["start", "berthd.service"]);
    Some(node)
}

fn running(node: &SystemdNode, service: &str) -> bool {
    node.container(service)
        .is_some_and(|c| inspect(&c.id, "{{.State.Running}}") == "true")
}

#[test]
fn requires_units_waits_for_follows_and_recovers_with_a_host_unit() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    let Some(node) = units_node("sdunits") else {
        return;
    };
    let spec = node.spec_file(
        "db-user.yaml",
        "name: db-user\nimage: berth-demo:latest\ncommand: [\"serve\"]\n\
         requires_units: [fake-db]\nupdate: {settle: 1s}\n",
    );
    node.ctl_ok(&["apply", "--no-wait", &spec.display().to_string()]);
    node.wait_until(
        "db-user waits for fake-db.service",
        Duration::from_secs(30),
        |n| {
            let show = n.show("db-user");
            show.contains("IN_PROGRESS")
                && show.contains("waiting for host units")
                && show.contains("fake-db.service (inactive)")
        },
    );
    // Longer than units_timeout: a unit that exists is waited for.
    std::thread::sleep(Duration::from_secs(4));
    let show = node.show("db-user");
    assert!(
        show.contains("IN_PROGRESS"),
        "{show}\n{}",
        node.diagnostics()
    );
    assert!(node.container("db-user").is_none(), "nothing created yet");
    let history = node.ctl_ok(&["history", "db-user"]);
    assert!(
        history.contains("waiting for host units"),
        "history shows why: {history}"
    );

    // The unit starts: the container starts.
    node.manager.systemctl_ok(&["start", "fake-db.service"]);
    node.wait_until("db-user runs", Duration::from_secs(60), |n| {
        running(n, "db-user") && n.show("db-user").contains("COMPLETE")
    });
    let first = node.container("db-user").expect("container");

    // The unit stops: the container is stopped, and status says why.
    node.manager.systemctl_ok(&["stop", "fake-db.service"]);
    node.wait_until(
        "db-user stopped because fake-db stopped",
        Duration::from_secs(30),
        |n| {
            !running(n, "db-user") && {
                let show = n.show("db-user");
                show.contains("stopped: required host unit") && show.contains("fake-db.service")
            }
        },
    );
    let events = node.ctl_ok(&["events"]);
    assert!(
        events.contains("host unit fake-db.service is inactive"),
        "{events}"
    );

    // Back again: the same container runs again, and the note is gone.
    node.manager.systemctl_ok(&["start", "fake-db.service"]);
    node.wait_until("db-user runs again", Duration::from_secs(30), |n| {
        running(n, "db-user") && !n.show("db-user").contains("required host unit")
    });
    let again = node.container("db-user").expect("container");
    assert_eq!(first.id, again.id, "started again, not recreated");
}

/// `systemd-run --user --unit=UNIT ARGS` under the node's manager, which
/// must be accepted on this first try.
fn systemd_run_ok(node: &SystemdNode, unit: &str, argv: &[&str]) {
    let out = node.manager.systemd_run(unit, argv);
    assert!(
        out.status.success(),
        "systemd refused the transient unit {unit} ({}): {}{}\n--- list-units\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.manager
            .systemctl_ok(&["list-units", "--all", "--no-pager", unit]),
        node.diagnostics()
    );
}

#[test]
fn a_transient_host_unit_in_requires_units_can_be_started_again_once_it_stopped() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    let Some(node) = units_node("sdtransient") else {
        return;
    };
    // What an operator does: a transient unit, not a unit file.
    systemd_run_ok(&node, "bar-host", &["/bin/sleep", "1000"]);
    let spec = node.spec_file(
        "bar-user.yaml",
        "name: bar-user\nimage: berth-demo:latest\ncommand: [\"serve\"]\n\
         requires_units: [bar-host.service]\nupdate: {settle: 1s}\n",
    );
    node.ctl_ok(&["apply", "--no-wait", &spec.display().to_string()]);
    node.wait_until("bar-user runs", Duration::from_secs(60), |n| {
        running(n, "bar-user") && n.show("bar-user").contains("COMPLETE")
    });
    let first = node.container("bar-user").expect("container");

    // The unit stops: the container is stopped.
    node.manager.systemctl_ok(&["stop", "bar-host.service"]);
    node.wait_until(
        "bar-user stopped because bar-host stopped",
        Duration::from_secs(30),
        |n| {
            !running(n, "bar-user") && {
                let show = n.show("bar-user");
                show.contains("stopped: required host unit") && show.contains("bar-host.service")
            }
        },
    );
    // berthd follows bar-host.service, and systemd has forgotten it all the
    // same: the same systemd-run is accepted at once, the first time.
    assert!(
        !node.manager.is_loaded("bar-host.service"),
        "berthd's watch keeps the stopped transient unit loaded:\n{}",
        node.manager
            .systemctl_ok(&["list-units", "--all", "--no-pager", "bar-host.service"])
    );
    systemd_run_ok(&node, "bar-host", &["/bin/sleep", "1000"]);
    node.wait_until("bar-user runs again", Duration::from_secs(30), |n| {
        running(n, "bar-user") && !n.show("bar-user").contains("required host unit")
    });
    let again = node.container("bar-user").expect("container");
    assert_eq!(first.id, again.id, "started again, not recreated");
    let events = node.ctl_ok(&["events"]);
    assert!(
        events.contains("host unit bar-host.service is inactive"),
        "{events}"
    );
}

#[test]
fn after_units_naming_a_missing_unit_fails_the_deployment_naming_it() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    let Some(node) = units_node("sdnounit") else {
        return;
    };
    let spec = node.spec_file(
        "late.yaml",
        "name: late\nimage: berth-demo:latest\ncommand: [\"serve\"]\n\
         after_units: [nope.service]\nupdate: {settle: 1s}\n",
    );
    // apply waits for the deployment: it fails after units_timeout (3 s).
    let started = std::time::Instant::now();
    let out = node.ctl(&["apply", "--timeout", "60s", &spec.display().to_string()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}\n{}", node.diagnostics());
    assert!(
        text.contains("FAILED") && text.contains("nope.service"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the timeout"
    );
    let show = node.show("late");
    assert!(
        show.contains("nope.service (not-found)") && show.contains("does not exist"),
        "{show}"
    );
    assert!(node.container("late").is_none(), "nothing was created");
}

#[test]
fn host_units_without_a_reachable_bus_fail_the_deployment_with_the_bus_error_and_a_hint() {
    berth_prereq::require!(Systemd, DemoImage);
    let _g = serial();
    demo_image();
    // No user_bus: berthd looks for systemd on the system bus, which its
    // unit points at a path where none is (so a machine with a real system
    // bus runs this test too). A node without host units never notices.
    let node = SystemdNode::new(
        "sdnobus",
        "Environment=DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/berth-test/system_bus_socket",
    );
    node.write_config("units_timeout = \"2s\"\n");
    node.manager.systemctl_ok(&["start", "berthd.service"]);
    let spec = node.spec_file(
        "db-user.yaml",
        "name: db-user\nimage: berth-demo:latest\ncommand: [\"serve\"]\n\
         requires_units: [fake-db.service]\nupdate: {settle: 1s}\n",
    );
    let out = node.ctl(&["apply", "--timeout", "60s", &spec.display().to_string()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}\n{}", node.diagnostics());
    let show = node.show("db-user");
    assert!(
        show.contains("fake-db.service")
            && show.contains("system bus")
            && show.contains("user_bus = true"),
        "{show}\n{}",
        node.diagnostics()
    );
    assert!(node.container("db-user").is_none(), "nothing was created");
}
