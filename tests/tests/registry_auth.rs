//! Pulls from a registry that wants credentials (Debian's `docker-registry`
//! on 127.0.0.1 with htpasswd auth): berthd's `[images] auth_file` (the
//! docker/podman `config.json` format) gives them; the right ones pull and
//! record the digest, wrong or missing ones fail at once naming the
//! registry, the reference, the 401 and the auth file; the file is read at
//! each pull (rotated in place, it counts without a restart); a credential
//! helper in it stops berthd from starting, or a SIGHUP from taking it. No
//! password ever reaches berthd's log, `status`, `show`, events or its
//! state dir.
//!
//! Pushes log in through a docker config dir of the registry's own (never
//! `~/.docker`). What a test tagged or pulled is untagged when it ends
//! (`PulledImages`, declared before the node).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::TestNode;
use berth_tests::registry::{PulledImages, TestRegistry};

const USER: &str = "berth-puller";

/// A password unique to the test, so a grep for it finds only leaks.
fn password(hint: &str) -> String {
    format!("pw-{}-Zq7", berth_tests::node::unique(hint))
}

/// A registry that lets only `USER` with `password` in.
fn auth_registry(password: &str) -> TestRegistry {
    // Cost 4: the lowest bcrypt allows (the registry checks every request).
    let hash = bcrypt::hash(password, 4).expect("bcrypt");
    TestRegistry::start_with_auth(&format!("{USER}:{hash}\n"), USER, password)
}

fn base64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Writes (0600) an auth file as `docker login` does: `{"auths": {REGISTRY:
/// {"auth": base64(user:password)}}}`, plus `extra` top-level keys.
fn write_auth_file(path: &Path, registry: &str, password: &str, extra: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let text = format!(
        "{{\"auths\": {{\"{registry}\": {{\"auth\": \"{}\"}}}}{extra}}}\n",
        base64(&format!("{USER}:{password}"))
    );
    std::fs::write(path, text).expect("write auth file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn images_config(auth_file: &Path) -> String {
    format!("[images]\nauth_file = \"{}\"\n", auth_file.display())
}

/// A service on `image` that runs the demo server.
fn service(name: &str, image: &str) -> String {
    format!(
        "name: {name}\nimage: {image}\ncommand: [\"serve\", \"--port\", \"8080\"]\nupdate: {{settle: 1s}}\n"
    )
}

/// `berthctl apply` of `text` (plain output), and how long it took.
fn apply_plain(node: &TestNode, text: &str) -> (Output, Duration) {
    let file = node.spec_file("web.yaml", text);
    let start = Instant::now();
    let out = node.ctl(&["apply", &file.display().to_string()]);
    (out, start.elapsed())
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out
}

/// The password (and its base64 form) is nowhere berthd writes or shows:
/// its log, `status --json`, `show` (text and JSON), `history`, events,
/// and every file in its state dir.
fn assert_no_secret(node: &TestNode, secret: &str) {
    let encoded = base64(&format!("{USER}:{secret}"));
    let mut places = vec![
        ("berthd's log".to_string(), node.logs()),
        (
            "status --json".to_string(),
            node.ctl_json(&["status"]).to_string(),
        ),
        ("show".to_string(), node.ctl_ok(&["show", "web"])),
        (
            "show --json".to_string(),
            node.ctl_json(&["show", "web"]).to_string(),
        ),
        (
            "history --json".to_string(),
            node.ctl_json(&["history", "web"]).to_string(),
        ),
        ("events".to_string(), node.ctl_ok(&["events"])),
        (
            "events --json".to_string(),
            node.ctl_json(&["events"]).to_string(),
        ),
    ];
    let state = files_under(&node.state_dir());
    assert!(!state.is_empty(), "berthd wrote its state");
    for file in state {
        let bytes = std::fs::read(&file).unwrap_or_default();
        places.push((
            file.display().to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (place, text) in places {
        assert!(
            !text.contains(secret),
            "the password is in {place}:\n{text}"
        );
        assert!(
            !text.contains(&encoded),
            "the encoded credentials are in {place}:\n{text}"
        );
    }
}

/// The node's `daemon` events starting with `prefix`.
fn daemon_events(node: &TestNode, prefix: &str) -> Vec<String> {
    let events = node.ctl_json(&["events"]);
    events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "daemon")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// SIGHUP, and wait for the reload's event (the `n`th so far).
fn reload(node: &TestNode, n: usize) -> String {
    node.hup();
    node.wait_until("the config reloaded", Duration::from_secs(20), |n_| {
        daemon_events(n_, "config ").len() >= n
    });
    daemon_events(node, "config ")
        .pop()
        .expect("a reload event")
}

#[test]
fn the_auth_files_credentials_pull_and_never_show() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let secret = password("right");
    let registry = auth_registry(&secret);
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("authpull", "v1", &mut images);
    let dir = tempfile::tempdir().expect("temp dir");
    let auth_file = dir.path().join("auth.json");
    // As `docker login` writes it: a URL form of the registry's name.
    write_auth_file(
        &auth_file,
        &format!("http://{}/v2/", registry.addr),
        &secret,
        "",
    );
    let mut node = TestNode::new("authpull").with_config(&images_config(&auth_file));
    node.start();

    let (out, _) = apply_plain(&node, &service("web", &pushed.reference));
    assert!(
        out.status.success(),
        "{}\nberthd log:\n{}\nregistry log:\n{}",
        both(&out),
        node.logs(),
        registry.logs()
    );
    node.wait_until("web runs", Duration::from_secs(30), |n| {
        n.container("web").is_some_and(|c| c.state == "running")
    });
    let want = format!("{}@{}", pushed.repository, pushed.digest);
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(shown["current"]["status"], "COMPLETE", "{shown:#}");
    assert_eq!(shown["current"]["image_digest"], want.as_str(), "{shown:#}");
    // The registry saw the user (so the pull did authenticate).
    assert!(registry.logs().contains(USER), "{}", registry.logs());
    assert_no_secret(&node, &secret);
    assert!(!both(&out).contains(&secret), "{}", both(&out));
}

#[test]
fn missing_or_wrong_credentials_fail_at_once_and_a_rotated_file_counts_without_a_restart() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let secret = password("rotate");
    let wrong = password("wrong");
    let registry = auth_registry(&secret);
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("authwrong", "v1", &mut images);
    let dir = tempfile::tempdir().expect("temp dir");
    let auth_file = dir.path().join("auth.json");
    let shown_file = auth_file.display().to_string();
    let mut node = TestNode::new("authwrong");
    node.start();
    let spec = service("web", &pushed.reference);

    // No auth file: the 401 says none is set.
    let (out, took) = apply_plain(&node, &spec);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "a FAILED deployment: {text}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {text}");
    for part in [
        format!("`{}`", pushed.reference),
        format!("from {}", registry.addr),
        "authentication failed (401".to_string(),
        "no basic auth credentials".to_string(),
        "sets no [images] auth_file".to_string(),
    ] {
        assert!(text.contains(&part), "{part}: {text}");
    }

    // Wrong credentials, given by SIGHUP: refused at once, naming the file.
    write_auth_file(&auth_file, &registry.addr, &wrong, "");
    node.set_config(&images_config(&auth_file));
    let line = reload(&node, 1);
    assert!(line.contains("[images] auth_file"), "{line}");
    let (out, took) = apply_plain(&node, &spec);
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "a FAILED deployment: {text}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {text}");
    for part in [
        format!("`{}`", pushed.reference),
        format!("from {}", registry.addr),
        "authentication failed (401".to_string(),
        "unauthorized".to_string(),
        format!("from the [images] auth_file {shown_file}"),
        "refused them".to_string(),
    ] {
        assert!(text.contains(&part), "{part}: {text}");
    }
    assert!(!text.contains(&wrong), "{text}");
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(history[0]["status"], "FAILED", "{history:#}");
    assert!(node.container("web").is_none(), "nothing was created");

    // A credential helper in a new file, by SIGHUP: refused, the running
    // file stays.
    let helper_file = dir.path().join("helper.json");
    write_auth_file(
        &helper_file,
        &registry.addr,
        &secret,
        ", \"credsStore\": \"secretservice\"",
    );
    node.set_config(&images_config(&helper_file));
    let line = reload(&node, 2);
    for part in [
        "kept running as before",
        helper_file.display().to_string().as_str(),
        "berth cannot run credential helpers",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(
        node.logs().contains("berth cannot run credential helpers"),
        "{}",
        node.logs()
    );

    // The running file rotated in place: the next pull uses it, no restart.
    write_auth_file(&auth_file, &registry.addr, &secret, "");
    let (out, _) = apply_plain(&node, &spec);
    assert!(
        out.status.success(),
        "{}\nberthd log:\n{}\nregistry log:\n{}",
        both(&out),
        node.logs(),
        registry.logs()
    );
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(
        shown["current"]["image_digest"],
        format!("{}@{}", pushed.repository, pushed.digest).as_str(),
        "{shown:#}"
    );
    assert_no_secret(&node, &secret);
    assert_no_secret(&node, &wrong);
}

#[test]
fn a_credential_helper_in_the_auth_file_stops_berthd_from_starting() {
    berth_prereq::require!(Registry);
    let dir = tempfile::tempdir().expect("temp dir");
    let auth_file = dir.path().join("config.json");
    let secret = password("helper");
    write_auth_file(
        &auth_file,
        "127.0.0.1:5000",
        &secret,
        ", \"credHelpers\": {\"127.0.0.1:5000\": \"pass\"}",
    );
    let mut node = TestNode::new("authhelper").with_config(&images_config(&auth_file));
    let (status, out) = node.start_expecting_exit();
    assert_eq!(status.code(), Some(78), "{out}");
    for part in [
        node.config_path().display().to_string(),
        "images.auth_file".to_string(),
        auth_file.display().to_string(),
        "credHelpers".to_string(),
        "berth cannot run credential helpers".to_string(),
        "--password-stdin".to_string(),
    ] {
        assert!(out.contains(&part), "{part}: {out}");
    }
    assert!(!out.contains(&secret), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
}
