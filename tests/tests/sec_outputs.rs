//! Issue 29, items 1 and 2, against the real engine and a real berthd: a
//! task's declared outputs are files the task made, read by berthd as root
//! on the host. A symlink among them must not hand the task (and anyone with
//! a read token) a host file; a FIFO must not freeze berthd.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_tests::bins::bins;
use berth_tests::node::{Busybox, TestNode};
use serde_json::Value;

/// `berthctl ARGS` that must answer within `within`: a berthd whose workers
/// are all blocked fails the test instead of hanging it.
fn ctl_within(node: &TestNode, args: &[&str], within: Duration) -> Output {
    let child = Command::new(&bins().berthctl)
        .arg("--socket")
        .arg(node.socket())
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berthctl runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(within) {
        Ok(out) => out.expect("berthctl's output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!(
                "berthctl {args:?} got no answer within {within:?}: berthd is stuck\nberthd log:\n{}",
                node.logs()
            );
        }
    }
}

fn json(out: &Output, args: &[&str]) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "berthctl {args:?}: {e}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn task(name: &str, image: &str, argv: &[&str], outputs: &[&str]) -> String {
    let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "name: {name}\nimage: {image}\nkind: task\ncommand: [{}]\noutputs: [{}]\n",
        argv.join(", "),
        outputs.join(", ")
    )
}

/// The deployment of `service` in an apply's answer.
fn deployment<'a>(applied: &'a Value, service: &str) -> &'a Value {
    applied["deployments"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["service"] == service))
        .unwrap_or_else(|| panic!("no deployment of {service} in {applied:#}"))
}

/// A declared output's value, shown only when it is one of berth's notes
/// (were the fix to regress, it could be the host's /etc/shadow).
fn declared(d: &Value, name: &str) -> String {
    let v = d["outputs"]["declared"][name]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        v.starts_with(&format!("[berth: output {name} refused: ")),
        "output {name} is not a refusal note ({} bytes; not shown)",
        v.len()
    );
    v
}

#[test]
fn a_symlinked_output_is_refused_and_fifo_outputs_do_not_freeze_berthd() {
    berth_prereq::require!(Engine, Busybox);
    let within = Duration::from_secs(120);
    let id = berth_tests::node::unique("secout");
    let image = Busybox::build(&id);
    let mut node = TestNode::new("secout");
    node.start();

    // Item 1: `ln -s /etc/shadow /berth/outputs/shadow`, and a link to a
    // canary on the host whose content the test knows.
    let canary: PathBuf = node.dir().join("berthcanary");
    let secret = format!("the-canary-secret-{id}");
    std::fs::write(&canary, &secret).expect("write canary");
    let links = node.spec_file(
        "links.yaml",
        &task(
            "links",
            &image.tag,
            &[
                "/bin/busybox",
                "ln",
                "-s",
                "/etc/shadow",
                &canary.display().to_string(),
                "/berth/outputs/",
            ],
            &["shadow", "berthcanary"],
        ),
    );
    let args = ["--json", "apply", &links.display().to_string()];
    let out = ctl_within(&node, &args, within);
    let applied = json(&out, &args);
    let d = deployment(&applied, "links");
    assert_eq!(d["status"], "COMPLETE", "{}", d["status_reason"]);
    let shadow = declared(d, "shadow");
    assert!(shadow.contains("a symlink"), "{shadow}");
    assert!(!shadow.contains("root:"), "{shadow}");
    let note = declared(d, "berthcanary");
    assert!(!note.contains(&secret), "{note}");
    // Nor anywhere else in the stored record.
    let show = node.ctl_ok(&["--json", "history", "links"]);
    assert!(!show.contains(&secret), "the canary reached the record");
    assert!(
        !show.contains("root:"),
        "the host's /etc/shadow reached the record"
    );

    // Item 2: `mkfifo /berth/outputs/result`, in more tasks than berthd has
    // worker threads. They complete, with a note, and berthd answers while
    // the FIFOs are still there (no writer ever comes).
    let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(8)) + 1;
    let mut files = Vec::new();
    for i in 0..n {
        let name = format!("fifo{i}");
        files.push(node.spec_file(
            &format!("{name}.yaml"),
            &task(
                &name,
                &image.tag,
                &["/bin/busybox", "mkfifo", "/berth/outputs/result"],
                &["result"],
            ),
        ));
    }
    let mut args = vec!["--json".to_string(), "apply".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl_within(&node, &args, within);
    let applied = json(&out, &args);
    for i in 0..n {
        let name = format!("fifo{i}");
        let d = deployment(&applied, &name);
        assert_eq!(d["status"], "COMPLETE", "{name}: {}", d["status_reason"]);
        assert_eq!(
            declared(d, "result"),
            "[berth: output result refused: a FIFO]"
        );
        let fifo = outputs_dir(&node, &name).join("result");
        assert!(is_fifo(&fifo), "{} is not a FIFO", fifo.display());
    }
    let status = ctl_within(&node, &["--json", "status"], within);
    assert!(status.status.success(), "{status:?}");
    let status = json(&status, &["status"]);
    assert_eq!(status["node"]["engine"]["reachable"], true, "{status:#}");
    let (code, _) = node.api_get("/healthz");
    assert_eq!(code, 200);
}

fn outputs_dir(node: &TestNode, service: &str) -> PathBuf {
    node.state_dir().join("outputs").join(service)
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Issue 29 item 9, as an operator meets it: records that are oversize or
/// symlinked in the state dir are not loaded (berthd starts and reports
/// them), and `berthctl stop` names the file and the problem instead of
/// saying "no service named".
#[test]
fn stop_on_a_service_with_an_oversize_or_symlinked_record_names_the_file() {
    berth_prereq::require!(Engine, Busybox);
    let id = berth_tests::node::unique("secrec");
    let image = Busybox::build(&id);
    let mut node = TestNode::new("secrec");
    node.start();
    let spec = |name: &str| task(name, &image.tag, &["/bin/busybox", "true"], &[]);
    let big = node.spec_file("big.yaml", &spec("big"));
    let linked = node.spec_file("linked.yaml", &spec("linked"));
    let args = [
        "--json",
        "apply",
        &big.display().to_string(),
        &linked.display().to_string(),
    ];
    let out = ctl_within(&node, &args, Duration::from_secs(120));
    let applied = json(&out, &args);
    for name in ["big", "linked"] {
        assert_eq!(
            deployment(&applied, name)["status"],
            "COMPLETE",
            "{applied:#}"
        );
    }
    node.term();

    // A record far past the cap (sparse: nothing is written), and one
    // replaced by a symlink to a file outside the state dir.
    let history = |name: &str| node.state_dir().join(format!("services/{name}/history"));
    let big_record = history("big").join("1.json");
    std::fs::File::options()
        .write(true)
        .open(&big_record)
        .expect("open")
        .set_len(100 << 20)
        .expect("grow");
    let linked_record = history("linked").join("1.json");
    let outside = node.dir().join("outside.json");
    std::fs::rename(&linked_record, &outside).expect("move");
    std::os::unix::fs::symlink(&outside, &linked_record).expect("symlink");

    node.start();
    for (name, path, problem) in [
        ("big", &big_record, "104857600 bytes, more than the 8 MiB"),
        ("linked", &linked_record, "is a symlink"),
    ] {
        let out = ctl_within(&node, &["stop", name], Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {out:?}");
        assert!(!stderr.contains("no service named"), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("unreadable record {}", path.display()))
                && stderr.contains(problem)
                && stderr.contains("restart berthd"),
            "{name}: {stderr}"
        );
    }
    // Left as they were.
    assert_eq!(
        std::fs::metadata(&big_record).expect("there").len(),
        100 << 20
    );
    assert!(
        std::fs::symlink_metadata(&linked_record)
            .expect("there")
            .file_type()
            .is_symlink()
    );
    let status = node.ctl_json(&["status"]);
    assert_eq!(status["node"]["summary"]["unreadable"], 2, "{status:#}");
}
