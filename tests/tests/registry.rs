//! Pulls from a real registry (Debian's `docker-registry` on 127.0.0.1,
//! plain HTTP, which the engine allows for 127.0.0.0/8): an image only the
//! registry has is pulled before anything is created and its digest
//! recorded; an unknown tag and a registry that is down fail the deployment
//! at once, naming the registry, the reference and the cause, and leave the
//! running container alone.
//!
//! Each test pushes the demo image under a name of its own and untags it
//! locally, so berth must pull; what it tagged or pulled is untagged again
//! when the test ends, pass or fail (`PulledImages`), after its node's
//! containers are gone (declared before the node).

use std::process::Output;
use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use berth_tests::registry::{PulledImages, TestRegistry};

/// A service on `image` that runs the demo server.
fn service(name: &str, image: &str) -> String {
    format!(
        "name: {name}\nimage: {image}\ncommand: [\"serve\", \"--port\", \"8080\"]\nupdate: {{settle: 1s}}\n"
    )
}

/// `berthctl apply FILE` (plain output), and how long it took.
fn apply_plain(node: &TestNode, name: &str, text: &str) -> (Output, Duration) {
    let file = node.spec_file(name, text);
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

/// `docker image inspect REF --format FORMAT`, trimmed.
fn inspect_image(reference: &str, format: &str) -> String {
    let out = docker(&["image", "inspect", reference, "--format", format]);
    assert!(
        out.status.success(),
        "docker image inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_image_only_the_registry_has_is_pulled_and_its_digest_recorded() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("pulled", "v1", &mut images);
    let mut node = TestNode::new("pull");
    node.start();

    let (out, _) = apply_plain(&node, "web.yaml", &service("web", &pushed.reference));
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

    // The engine has the reference again, pulled: its digest is the pushed one.
    let want = format!("{}@{}", pushed.repository, pushed.digest);
    let repo_digests: Vec<String> =
        serde_json::from_str(&inspect_image(&pushed.reference, "{{json .RepoDigests}}"))
            .expect("RepoDigests");
    assert!(
        repo_digests.contains(&want),
        "{repo_digests:?} lacks {want}"
    );
    let image_id = inspect_image(&pushed.reference, "{{.Id}}");

    let shown = node.ctl_json(&["show", "web"]);
    let current = &shown["current"];
    assert_eq!(current["status"], "COMPLETE", "{shown:#}");
    assert_eq!(current["image_digest"], want.as_str(), "{shown:#}");
    assert_eq!(current["image_id"], image_id.as_str(), "{shown:#}");
    let text = node.ctl_ok(&["show", "web"]);
    assert!(text.contains(&format!("image digest  {want}\n")), "{text}");
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(history[0]["image_digest"], want.as_str(), "{history:#}");

    // The container runs the pulled image, by id.
    let c = node.container("web").expect("web");
    let ran = docker(&["inspect", &c.id, "--format", "{{.Image}}"]);
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), image_id);
}

#[test]
fn an_unknown_tag_fails_at_once_naming_the_registry_the_reference_and_not_found() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    // The repository exists; the tag asked for does not.
    let pushed = registry.push_demo("tagless", "v1", &mut images);
    let missing = format!("{}:nope", pushed.repository);
    images.add(&missing);
    let mut node = TestNode::new("notag");
    node.start();

    let (out, took) = apply_plain(&node, "web.yaml", &service("web", &missing));
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "a FAILED deployment: {text}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {text}");
    for part in [
        format!("`{missing}`"),
        format!("from {}", registry.addr),
        "not found".to_string(),
        "manifest unknown".to_string(),
    ] {
        assert!(text.contains(&part), "{part}: {text}");
    }
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(history[0]["status"], "FAILED", "{history:#}");
    assert!(history[0].get("image_id").is_none(), "{history:#}");
    assert!(node.container("web").is_none(), "nothing was created");
    assert!(
        !docker(&["image", "inspect", &missing]).status.success(),
        "nothing was pulled"
    );
}

#[test]
fn a_registry_that_is_down_fails_within_seconds_and_the_old_container_keeps_running() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let mut registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("down", "v1", &mut images);
    let mut node = TestNode::new("regdown");
    node.start();
    let (out, _) = apply_plain(&node, "web.yaml", &service("web", "berth-demo:latest"));
    assert!(out.status.success(), "{}", both(&out));
    node.wait_until("web runs", Duration::from_secs(30), |n| {
        n.container("web").is_some_and(|c| c.state == "running")
    });
    let before = node.container("web").expect("web");

    registry.stop();
    assert!(!registry.answers(), "the registry is down");
    let (out, took) = apply_plain(&node, "web.yaml", &service("web", &pushed.reference));
    let text = both(&out);
    assert_eq!(out.status.code(), Some(1), "a FAILED deployment: {text}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {text}");
    for part in [
        format!("`{}`", pushed.reference),
        format!("from {}", registry.addr),
        "the registry is unreachable".to_string(),
        "connection refused".to_string(),
    ] {
        assert!(text.contains(&part), "{part}: {text}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = node.container("web").expect("web still there");
    assert_eq!(after.id, before.id);
    assert_eq!(after.state, "running");
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(history[0]["status"], "FAILED", "{history:#}");
    assert_eq!(history[1]["status"], "COMPLETE", "{history:#}");
}

#[test]
fn a_reference_by_digest_is_pulled_by_that_digest() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("bydigest", "v1", &mut images);
    let by_digest = format!("{}@{}", pushed.repository, pushed.digest);
    let mut node = TestNode::new("digest");
    node.start();

    let (out, _) = apply_plain(&node, "web.yaml", &service("web", &by_digest));
    assert!(
        out.status.success(),
        "{}\nberthd log:\n{}",
        both(&out),
        node.logs()
    );
    node.wait_until("web runs", Duration::from_secs(30), |n| {
        n.container("web").is_some_and(|c| c.state == "running")
    });
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(
        shown["current"]["image_digest"],
        by_digest.as_str(),
        "{shown:#}"
    );
    assert_eq!(
        shown["current"]["image_id"],
        inspect_image(&by_digest, "{{.Id}}").as_str(),
        "{shown:#}"
    );
    // Pulled by digest only: the tag was not brought back.
    assert!(
        !docker(&["image", "inspect", &pushed.reference])
            .status
            .success(),
        "{} is tagged again",
        pushed.reference
    );
}
