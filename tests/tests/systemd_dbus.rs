//! The host-units seam (`berth-systemd`) against a real `systemd --user`
//! manager (one per test, see `berth_tests::systemd`), driven through
//! `berth-systemd-probe` run inside the manager's namespaces (the manager
//! refuses D-Bus peers from another PID namespace). Each probe prints one
//! JSON object per line.
//!
//! Covers: unit watches (current state first, then changes; failed;
//! not-found, and found after a daemon-reload), host commands as transient
//! units (output and exit code; the timeout; re-attaching from another
//! process; cleanup), and that a watch never pins a unit: a stopped or
//! reset transient unit, a not-found or inactive one, a cleaned-up host
//! command are all unloaded by systemd, and the same name can be made again.

use std::io::{BufRead, BufReader};
use std::process::{Child, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_tests::systemd::{UserManager, serial};
use serde_json::Value;

/// A user manager with its bus up, or `None` when this machine cannot run
/// one (outside CI; see `berth_prereq`).
fn manager() -> Option<UserManager> {
    if berth_prereq::skip(&[berth_prereq::Need::Systemd]) {
        return None;
    }
    let m = UserManager::start();
    m.wait_for_user_bus();
    Some(m)
}

fn write_unit(m: &UserManager, name: &str, body: &str) {
    std::fs::write(m.unit_dir().join(name), body).expect("write unit");
}

/// The JSON lines of a probe that has finished.
fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Runs the probe, which must succeed, and returns its last JSON line.
fn probe_ok(m: &UserManager, args: &[&str]) -> Value {
    let out = m.probe(args);
    let all = lines(&out);
    assert!(
        out.status.success(),
        "probe {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    all.last().cloned().expect("the probe printed nothing")
}

/// A running `probe watch`, read line by line.
struct Watch {
    child: Child,
    rx: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Watch {
    fn start(m: &UserManager, units: &[&str]) -> Watch {
        Watch::start_with(m, units, &[])
    }

    fn start_with(m: &UserManager, units: &[&str], flags: &[&str]) -> Watch {
        let mut args = vec!["watch"];
        args.extend_from_slice(flags);
        args.extend_from_slice(units);
        args.extend_from_slice(&["--for", "120s"]);
        let mut child = m.spawn_probe(&args);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({"event": "garbage", "line": line}));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Watch {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// The next line, within 30 s.
    fn next(&mut self) -> Value {
        match self.rx.recv_timeout(Duration::from_secs(30)) {
            Ok(v) => {
                self.seen.push(v.clone());
                v
            }
            Err(_) => panic!("no event within 30s; seen so far:\n{}", self.history()),
        }
    }

    /// The next state line, which must be about `unit`.
    fn next_state(&mut self) -> Value {
        let v = self.next();
        assert_eq!(v["event"], "state", "{}", self.history());
        v["state"].clone()
    }

    /// Skips lines until one satisfies `pred`.
    fn until_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let v = self.next();
            if pred(&v) {
                return v;
            }
        }
        panic!("never saw {what}; seen:\n{}", self.history())
    }

    /// Skips lines until a state of `unit` satisfies `pred`.
    fn until(&mut self, unit: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let v = self.next();
            assert_ne!(v["event"], "error", "{}", self.history());
            if v["event"] == "state" && v["state"]["name"] == unit && pred(&v["state"]) {
                return v["state"].clone();
            }
        }
        panic!("{unit} never was {what}; seen:\n{}", self.history())
    }

    fn history(&self) -> String {
        self.seen
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is(s: &Value, load: &str, active: &str) -> bool {
    s["load_state"] == load && s["active_state"] == active
}

#[test]
fn a_watch_reports_the_current_state_first_then_every_change() {
    let _g = serial();
    let Some(m) = manager() else { return };
    write_unit(&m, "w1.service", "[Service]\nExecStart=/bin/sleep 300\n");
    write_unit(&m, "bad.service", "[Service]\nExecStart=/bin/false\n");
    m.daemon_reload();

    let mut w = Watch::start(&m, &["w1.service", "bad.service", "nope.service"]);
    // The current state of each, in order, before anything else.
    let s = w.next_state();
    assert_eq!(s["name"], "w1.service");
    assert!(is(&s, "loaded", "inactive"), "{s}");
    let s = w.next_state();
    assert_eq!(s["name"], "bad.service");
    assert!(is(&s, "loaded", "inactive"), "{s}");
    let s = w.next_state();
    assert_eq!(s["name"], "nope.service");
    assert!(is(&s, "not-found", "inactive"), "{s}");

    m.systemctl_ok(&["start", "w1.service"]);
    let s = w.until("w1.service", "active", |s| is(s, "loaded", "active"));
    assert_eq!(s["sub_state"], "running", "{s}");
    m.systemctl_ok(&["stop", "w1.service"]);
    let s = w.until("w1.service", "inactive", |s| is(s, "loaded", "inactive"));
    assert_eq!(s["sub_state"], "dead", "{s}");

    // A unit whose command fails is seen failed, with the reason.
    let _ = m.systemctl(&["start", "bad.service"]);
    let s = w.until("bad.service", "failed", |s| is(s, "loaded", "failed"));
    assert_eq!(s["result"], "exit-code", "{s}");

    // A unit file that appears is reported after the daemon-reload, with no
    // other trigger.
    write_unit(&m, "nope.service", "[Service]\nExecStart=/bin/sleep 300\n");
    m.daemon_reload();
    w.until("nope.service", "loaded", |s| is(s, "loaded", "inactive"));
    m.systemctl_ok(&["start", "nope.service"]);
    w.until("nope.service", "active", |s| is(s, "loaded", "active"));
    eprintln!("what the watch saw:\n{}", w.history());
    // The reload re-announces every unit; none of that is reported as a
    // change (bad.service stays failed throughout).
    let bad: Vec<&Value> = w
        .seen
        .iter()
        .map(|v| &v["state"])
        .filter(|s| s["name"] == "bad.service")
        .skip_while(|s| s["active_state"] != "failed")
        .collect();
    assert!(
        bad.iter().all(|s| s["active_state"] == "failed"),
        "{}",
        w.history()
    );
}

#[test]
fn a_unit_state_is_read_once() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let v = probe_ok(&m, &["state", "nope.service"]);
    assert!(is(&v["state"], "not-found", "inactive"), "{v}");
    let v = probe_ok(&m, &["state", "dbus.socket"]);
    assert!(is(&v["state"], "loaded", "active"), "{v}");
    assert!(v["state"].get("result").is_none(), "not a service: {v}");
    let out = m.probe(&["state", "no/such"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("invalid unit name"),
        "{out:?}"
    );
}

#[test]
fn a_host_command_runs_as_a_transient_unit_and_its_output_and_code_are_collected() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let unit = "berth-hook-web-pre_stop-1.service";
    let output = m.dir().join("hook-1.out");
    let output = output.to_str().expect("utf-8 path");
    probe_ok(
        &m,
        &[
            "run",
            "--name",
            unit,
            "--output",
            output,
            "--timeout",
            "30s",
            "--env",
            "GREETING=hello",
            "--dir",
            "/tmp",
            "--",
            "/bin/sh",
            "-c",
            "echo out $GREETING $(pwd); echo err >&2; exit 3",
        ],
    );
    let v = probe_ok(&m, &["result", unit, "--output", output, "--wait", "30s"]);
    let r = &v["result"];
    assert_eq!(r["result"], "exit-code", "{v}");
    assert_eq!(r["exit"]["kind"], "exited", "{v}");
    assert_eq!(r["exit"]["code"], 3, "{v}");
    assert_eq!(r["output"], "out hello /tmp\nerr\n", "{v}");

    // The same name twice is refused while systemd still has it.
    let out = m.probe(&["run", "--name", unit, "--output", output, "--", "/bin/true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already exists"),
        "{out:?}"
    );

    // Cleanup: systemd forgets it, the file goes, and again is fine.
    probe_ok(&m, &["cleanup", unit, "--output", output]);
    assert!(!std::path::Path::new(output).exists());
    assert_eq!(m.prop(unit, "LoadState"), "not-found");
    let out = m.probe(&["result", unit, "--output", output]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has no unit"),
        "{out:?}"
    );
    probe_ok(&m, &["cleanup", unit, "--output", output]);

    // A program that cannot be executed fails the unit visibly.
    let unit = "berth-hook-web-pre_stop-2.service";
    probe_ok(
        &m,
        &[
            "run",
            "--name",
            unit,
            "--output",
            output,
            "--",
            "/no/such/program",
        ],
    );
    let v = probe_ok(&m, &["result", unit, "--output", output, "--wait", "30s"]);
    assert_eq!(v["result"]["exit"]["code"], 203, "203/EXEC: {v}");
    probe_ok(&m, &["cleanup", unit, "--output", output]);
}

#[test]
fn a_host_command_that_overruns_its_timeout_is_killed() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let unit = "berth-hook-db-migrate-1.service";
    let output = m.dir().join("hook-t.out");
    let output = output.to_str().expect("utf-8 path");
    let started = Instant::now();
    probe_ok(
        &m,
        &[
            "run",
            "--name",
            unit,
            "--output",
            output,
            "--timeout",
            "1s",
            "--",
            "/bin/sh",
            "-c",
            "echo begun; exec sleep 30",
        ],
    );
    let v = probe_ok(&m, &["result", unit, "--output", output, "--wait", "30s"]);
    let r = &v["result"];
    assert_eq!(r["result"], "timeout", "{v}");
    assert_eq!(r["exit"]["kind"], "killed", "{v}");
    assert_eq!(r["exit"]["signal"], 15, "SIGTERM: {v}");
    assert_eq!(r["output"], "begun\n", "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed after the 1 s timeout, not after sleep 30"
    );
    let s = m.show(unit, &["ActiveState", "MainPID", "Result"]);
    assert_eq!(s["ActiveState"], "failed", "{s:?}");
    assert_eq!(s["MainPID"], "0", "nothing runs any more: {s:?}");
    probe_ok(&m, &["cleanup", unit, "--output", output]);
    assert_eq!(m.prop(unit, "LoadState"), "not-found");
}

#[test]
fn another_process_re_attaches_to_a_host_command_by_name() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let unit = "berth-hook-api-post_start-7.service";
    let output = m.dir().join("hook-r.out");
    let output = output.to_str().expect("utf-8 path");
    let gate = m.dir().join("gate");
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.1; done; echo finished",
        gate.display()
    );
    // Process 1 starts it and exits.
    probe_ok(
        &m,
        &[
            "run",
            "--name",
            unit,
            "--output",
            output,
            "--timeout",
            "60s",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    // Process 2: still running.
    let v = probe_ok(&m, &["result", unit, "--output", output]);
    assert!(v["result"].is_null(), "{v}");
    // Process 3 waits for it; it finishes once the gate opens.
    let waiter = m.spawn_probe(&["result", unit, "--output", output, "--wait", "60s"]);
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&gate, "").expect("open the gate");
    let out = waiter.wait_with_output().expect("the waiting probe ends");
    let v = lines(&out).pop().expect("a result line");
    let r = &v["result"];
    assert_eq!(r["result"], "success", "{v}");
    assert_eq!(r["exit"]["code"], 0, "{v}");
    assert_eq!(r["output"], "finished\n", "{v}");
    // RemainAfterExit: systemd keeps the result for a 4th process too.
    assert_eq!(m.prop(unit, "SubState"), "exited");
    let again = probe_ok(&m, &["result", unit, "--output", output]);
    assert_eq!(again["result"], v["result"]);
    probe_ok(&m, &["cleanup", unit, "--output", output]);
    assert_eq!(m.prop(unit, "LoadState"), "not-found");
}

#[test]
fn a_watch_survives_a_dbus_restart_by_watching_again() {
    let _g = serial();
    let Some(m) = manager() else { return };
    write_unit(&m, "w2.service", "[Service]\nExecStart=/bin/sleep 300\n");
    m.daemon_reload();
    let mut w = Watch::start_with(&m, &["w2.service"], &["--rewatch"]);
    let s = w.next_state();
    assert!(is(&s, "loaded", "inactive"), "{s}");

    // The bus goes away under the watch: the stream ends with an
    // unreachable error, and the same DbusHost connects again.
    m.systemctl_ok(&["restart", "dbus.service"]);
    let e = w.until_line("an unreachable error", |v| v["event"] == "error");
    assert_eq!(e["unreachable"], true, "{}", w.history());
    w.until("w2.service", "reported again", |s| {
        is(s, "loaded", "inactive")
    });
    m.systemctl_ok(&["start", "w2.service"]);
    w.until("w2.service", "active", |s| is(s, "loaded", "active"));
    eprintln!("what the watch saw:\n{}", w.history());
}

/// `systemd-run --user --unit=UNIT ARGS`, which must be accepted at once.
fn systemd_run_ok(m: &UserManager, unit: &str, argv: &[&str], w: &Watch) {
    let out = m.systemd_run(unit, argv);
    assert!(
        out.status.success(),
        "systemd refused a transient {unit} on the first try ({}): {}{}\nthe watch saw:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        w.history()
    );
}

#[test]
fn a_watched_transient_unit_is_unloaded_once_stopped_and_its_name_can_be_started_again() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let unit = "bar-host.service";
    let mut w = Watch::start(&m, &[unit]);
    // Nothing of that name yet: not-found, and watching it loads nothing
    // that stays.
    let s = w.next_state();
    assert!(is(&s, "not-found", "inactive"), "{s}");
    assert!(
        m.unloaded_within(unit, Duration::from_secs(10)),
        "the watch keeps a not-found {unit} loaded"
    );

    systemd_run_ok(&m, "bar-host", &["/bin/sleep", "1000"], &w);
    w.until(unit, "active", |s| is(s, "loaded", "active"));
    m.systemctl_ok(&["stop", unit]);
    let s = w.until(unit, "inactive", |s| s["active_state"] == "inactive");
    assert_eq!(s["sub_state"], "dead", "{s}");
    // systemd forgets the stopped transient unit although it is watched ...
    assert!(
        m.unloaded_within(unit, Duration::from_secs(10)),
        "{unit} is still loaded after its stop: the watch pins it\n{}",
        m.systemctl_ok(&["list-units", "--all", "--no-pager", unit])
    );
    assert_eq!(m.prop(unit, "LoadState"), "not-found");
    // ... so the operator can make it again at once, and the watch sees it,
    // from systemd's signals (the watch never polls).
    systemd_run_ok(&m, "bar-host", &["/bin/sleep", "1000"], &w);
    w.until(unit, "active again", |s| is(s, "loaded", "active"));

    // A failed one is kept by systemd until reset-failed (its result is
    // there to be read); after that it goes as well, and comes back.
    m.systemctl_ok(&["kill", "--signal=KILL", unit]);
    let s = w.until(unit, "failed", |s| s["active_state"] == "failed");
    assert_eq!(s["result"], "signal", "{s}");
    m.systemctl_ok(&["reset-failed", unit]);
    w.until(unit, "inactive after reset-failed", |s| {
        s["active_state"] == "inactive"
    });
    assert!(
        m.unloaded_within(unit, Duration::from_secs(10)),
        "{unit} is still loaded after reset-failed: the watch pins it"
    );
    systemd_run_ok(&m, "bar-host", &["/bin/sleep", "1000"], &w);
    w.until(unit, "active a third time", |s| is(s, "loaded", "active"));
    eprintln!("what the watch saw:\n{}", w.history());
}

#[test]
fn a_watched_unit_that_is_not_loaded_is_not_reloaded_over_and_over() {
    let _g = serial();
    let Some(m) = manager() else { return };
    write_unit(&m, "idle.service", "[Service]\nExecStart=/bin/sleep 300\n");
    m.daemon_reload();
    let mut w = Watch::start(&m, &["idle.service", "nope.service"]);
    let s = w.next_state();
    assert!(is(&s, "loaded", "inactive"), "{s}");
    let s = w.next_state();
    assert!(is(&s, "not-found", "inactive"), "{s}");
    // Neither is held loaded by the watch ...
    for unit in ["idle.service", "nope.service"] {
        assert!(
            m.unloaded_within(unit, Duration::from_secs(10)),
            "the watch keeps {unit} loaded"
        );
    }
    // ... nor loaded again and again (load, new, collected, removed, load
    // ...). `busctl monitor` records systemd's manager signals for 3 s,
    // while another client loads both (`systemctl status`, which the watch
    // sees as `UnitNew`) and idle.service is started: a few `UnitNew` in
    // all, where a watch that loads on `UnitRemoved` makes hundreds.
    let monitor = m.ns_spawn(
        "timeout",
        &[
            "3",
            "busctl",
            "--user",
            "monitor",
            "--match",
            "type='signal',interface='org.freedesktop.systemd1.Manager'",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = m.systemctl(&["status", "idle.service", "nope.service"]);
    m.systemctl_ok(&["start", "idle.service"]);
    w.until("idle.service", "active", |s| is(s, "loaded", "active"));
    let out = monitor.wait_with_output().expect("busctl monitor ends");
    let text = String::from_utf8_lossy(&out.stdout);
    let news = text.matches("Member=UnitNew").count();
    assert!(
        (1..=10).contains(&news),
        "{news} UnitNew in 3 s (at least the started idle.service's, and no \
         load loop):\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The other client's load of nope.service changed nothing.
    let nope: Vec<&Value> = w
        .seen
        .iter()
        .map(|v| &v["state"])
        .filter(|s| s["name"] == "nope.service")
        .collect();
    assert_eq!(nope.len(), 1, "{}", w.history());
}

#[test]
fn a_watched_host_command_is_forgotten_after_cleanup_and_its_name_can_run_again() {
    let _g = serial();
    let Some(m) = manager() else { return };
    let unit = "berth-hook-web-post_start-3.service";
    let output = m.dir().join("hook-w.out");
    let output = output.to_str().expect("utf-8 path");
    let run = |m: &UserManager| {
        probe_ok(
            m,
            &[
                "run",
                "--name",
                unit,
                "--output",
                output,
                "--timeout",
                "30s",
                "--",
                "/bin/true",
            ],
        )
    };
    // A watch on the hook's unit stays open throughout.
    let mut w = Watch::start(&m, &[unit]);
    let s = w.next_state();
    assert!(is(&s, "not-found", "inactive"), "{s}");
    run(&m);
    let v = probe_ok(&m, &["result", unit, "--output", output, "--wait", "30s"]);
    assert_eq!(v["result"]["result"], "success", "{v}");
    w.until(unit, "active (exited)", |s| {
        is(s, "loaded", "active") && s["sub_state"] == "exited"
    });
    // RemainAfterExit keeps it until berth has read the result; cleanup lets
    // systemd forget it, watched or not.
    assert!(m.is_loaded(unit));
    probe_ok(&m, &["cleanup", unit, "--output", output]);
    w.until(unit, "inactive", |s| s["active_state"] == "inactive");
    assert!(
        m.unloaded_within(unit, Duration::from_secs(10)),
        "{unit} is still loaded after cleanup"
    );
    // The same name runs again on the first try, and the watch sees it.
    run(&m);
    w.until(unit, "active again", |s| is(s, "loaded", "active"));
    probe_ok(&m, &["cleanup", unit, "--output", output]);
    eprintln!("what the watch saw:\n{}", w.history());
}
