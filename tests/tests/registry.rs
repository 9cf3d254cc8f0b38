//! Pulls from a real registry (Debian's `docker-registry` on 127.0.0.1,
//! plain HTTP, which the engine allows for 127.0.0.0/8): an image only the
//! registry has is pulled before anything is created and its digest
//! recorded; an unknown tag fails the deployment at once, naming the
//! registry, the reference and the cause, and a registry that is down holds
//! it until it is back, both leaving the running container alone; a moved
//! tag is followed only with `pull: always`, and a rollback to a pruned
//! image pulls it by its digest.
//!
//! Each test pushes the demo image under a name of its own and untags it
//! locally, so berth must pull; what it tagged or pulled is untagged again
//! when the test ends, pass or fail (`PulledImages`), after its node's
//! containers are gone (declared before the node).

use std::process::Output;
use std::time::{Duration, Instant};

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use berth_tests::registry::{PulledImages, TestRegistry, build_variant};
use berth_tests::slow_proxy::SlowProxy;

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
    // The pull was told as events: its end for web, with every layer done
    // (none here: the engine has the demo image's layers, and names none).
    let events = node.ctl_json(&["events"]);
    let ended = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["type"] == "image_pull" && e["service"] == "web" && e["done"] == true);
    let ended = ended.unwrap_or_else(|| panic!("no image_pull end for web: {events:#}"));
    assert_eq!(ended["reference"], pushed.reference.as_str(), "{ended:#}");
    assert!(ended.get("failed").is_none(), "{ended:#}");
    assert_eq!(ended["layers_done"], ended["layers_total"], "{ended:#}");

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

/// The registry goes down under an apply: the deployment stays
/// IN_PROGRESS saying why, the old container runs on, and once the
/// registry is back the deployment converges with no other command.
#[test]
fn a_registry_down_mid_apply_holds_the_deployment_until_it_is_back() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let mut registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("down", "v0", &mut images);
    // An image of its own: the update makes a new container.
    let (variant, by_digest) =
        push_variant(&registry, &pushed.repository, "v1", "down", &mut images);
    let reference = format!("{}:v1", pushed.repository);
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
    let file = node.spec_file("web.yaml", &service("web", &reference));
    let out = node.ctl(&["apply", "--no-wait", &file.display().to_string()]);
    assert!(out.status.success(), "accepted: {}", both(&out));
    let shown = node.ctl_json(&["show", "web"]);
    let current = &shown["current"];
    assert_eq!(current["status"], "IN_PROGRESS", "{shown:#}");
    let reason = current["status_reason"].as_str().unwrap_or_default();
    for part in [
        format!("`{}`", reference),
        format!("from {}", registry.addr),
        "the registry is unreachable".to_string(),
        "trying again until pull_timeout".to_string(),
    ] {
        assert!(reason.contains(&part), "{part}: {reason}");
    }
    // A few tries later, still waiting; the old container never moved.
    std::thread::sleep(Duration::from_secs(5));
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(shown["current"]["status"], "IN_PROGRESS", "{shown:#}");
    let during = node.container("web").expect("web still there");
    assert_eq!(
        (during.id.as_str(), during.state.as_str()),
        (before.id.as_str(), "running")
    );

    registry.start_again();
    node.wait_until("the deployment converges", Duration::from_secs(90), |n| {
        n.ctl_json(&["show", "web"])["current"]["status"] == "COMPLETE"
    });
    let after = node.container("web").expect("web");
    assert_ne!(after.id, before.id);
    assert_eq!(after.state, "running");
    assert_eq!(container_image(&after.id), variant);
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(
        shown["current"]["image_digest"],
        by_digest.as_str(),
        "{shown:#}"
    );
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(2),
        "one record per apply: {history:#}"
    );
}

/// The demo image with a label of its own (another image id), pushed as
/// `REPOSITORY:TAG`: the tag moves to it.
fn push_variant(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    variant: &str,
    images: &mut PulledImages,
) -> (String, String) {
    push_variant_with(registry, repository, tag, variant, 0, images)
}

/// As [`push_variant`], with a layer of `blob` random bytes of its own
/// (none when 0) that a pull must download.
fn push_variant_with(
    registry: &TestRegistry,
    repository: &str,
    tag: &str,
    variant: &str,
    blob: usize,
    images: &mut PulledImages,
) -> (String, String) {
    let reference = format!("{repository}:{tag}");
    let id = build_variant(&reference, variant, blob, images);
    images.add(&id);
    let pushed = registry.push_tagged(repository, &reference, images);
    (id, format!("{repository}@{}", pushed.digest))
}

/// The image id a container was made from.
fn container_image(id: &str) -> String {
    let out = docker(&["inspect", id, "--format", "{{.Image}}"]);
    assert!(out.status.success(), "docker inspect {id}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn with_pull(text: String, pull: &str) -> String {
    format!("{text}pull: {pull}\n")
}

/// A tag moved in the registry is not followed behind the operator's
/// back: not by an apply with the default `pull: missing`, not by a berthd
/// restart; an apply with `pull: always` follows it. Then, with the first
/// image pruned from the engine, a rollback gets it again by its digest,
/// never by the tag (which names the second image now).
#[test]
fn a_moved_tag_is_followed_only_with_pull_always_and_a_rollback_pulls_by_digest() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("moved", "v0", &mut images);
    let repository = pushed.repository.clone();
    let (first, first_digest) =
        push_variant(&registry, &repository, "stable", "first", &mut images);
    let reference = format!("{repository}:stable");
    let mut node = TestNode::new("moved");
    node.start();
    let (out, _) = apply_plain(&node, "web.yaml", &service("web", &reference));
    assert!(out.status.success(), "{}\n{}", both(&out), node.logs());
    let c1 = node.container("web").expect("web");
    assert_eq!(container_image(&c1.id), first);

    // The tag moves.
    let (second, second_digest) =
        push_variant(&registry, &repository, "stable", "second", &mut images);
    assert_ne!(first, second);
    // Building it here moved the engine's own tag too: as on a node that
    // pulled the tag before it moved, the engine's `stable` is the first.
    let out = docker(&["tag", &first, &reference]);
    assert!(
        out.status.success(),
        "docker tag: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, _) = apply_plain(&node, "web.yaml", &service("web", &reference));
    assert!(out.status.success(), "{}", both(&out));
    assert!(both(&out).contains("unchanged"), "{}", both(&out));
    node.kill();
    node.start();
    std::thread::sleep(Duration::from_secs(2));
    let c = node.container("web").expect("web");
    assert_eq!(c.id, c1.id, "a restart follows no tag");

    let (out, _) = apply_plain(
        &node,
        "web.yaml",
        &with_pull(service("web", &reference), "always"),
    );
    assert!(out.status.success(), "{}\n{}", both(&out), node.logs());
    let c2 = node.container("web").expect("web");
    assert_ne!(c2.id, c1.id);
    assert_eq!(container_image(&c2.id), second);
    let shown = node.ctl_json(&["show", "web"]);
    assert_eq!(
        shown["current"]["image_digest"],
        second_digest.as_str(),
        "{shown:#}"
    );
    assert_eq!(shown["current"]["image_id"], second.as_str(), "{shown:#}");

    // The first image is pruned; the rollback gets it by its digest (the
    // tag would have brought the second).
    let out = docker(&["rmi", &first]);
    assert!(
        out.status.success(),
        "rmi {first}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.ctl(&["rollback", "web", "--to", "1"]);
    assert!(out.status.success(), "{}\n{}", both(&out), node.logs());
    let c3 = node.container("web").expect("web");
    assert_eq!(container_image(&c3.id), first);
    assert_eq!(
        inspect_image(&first, "{{json .RepoDigests}}"),
        format!("[\"{first_digest}\"]")
    );
    let logs = node.logs();
    assert!(
        logs.contains("pulling it again by its digest") && logs.contains(&first_digest),
        "{logs}"
    );
    assert_eq!(
        inspect_image(&reference, "{{.Id}}"),
        second,
        "the tag stays"
    );
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

/// berthd SIGKILLed while the engine pulls an update's image (through a
/// proxy that makes the pull slow): nothing was recorded for the update
/// and the old container runs on; once berthd is back it reads its spec
/// dir again and the update converges, with one container and no other
/// command.
#[test]
fn berthd_killed_mid_pull_converges_after_its_restart() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let pushed = registry.push_demo("killpull", "v0", &mut images);
    // 2 MB of its own: a minute at the proxy's trickle.
    let (variant, _) = push_variant_with(
        &registry,
        &pushed.repository,
        "v1",
        "killed",
        2 << 20,
        &mut images,
    );
    let proxy = SlowProxy::start(&registry.addr);
    let repository = pushed.repository.replacen(&registry.addr, &proxy.addr, 1);
    let reference = format!("{repository}:v1");
    images.add(&reference);
    let mut node = TestNode::new("killpull");
    let spec = node.spec_dir().join("web.yaml");
    std::fs::create_dir_all(node.spec_dir()).expect("spec dir");
    std::fs::write(&spec, service("web", "berth-demo:latest")).expect("write spec");
    node.start();
    node.wait_until("web runs", Duration::from_secs(30), |n| {
        n.container("web").is_some_and(|c| c.state == "running")
    });
    let before = node.container("web").expect("web");

    std::fs::write(&spec, service("web", &reference)).expect("write spec");
    node.hup();
    node.wait_until("the pull is under way", Duration::from_secs(60), |n| {
        proxy.sent() > 64 * 1024 && n.logs().contains("pulling image")
    });
    node.kill();
    let during = node.container("web").expect("web");
    assert_eq!(
        (during.id.as_str(), during.state.as_str()),
        (before.id.as_str(), "running")
    );

    proxy.set_slow(false);
    node.start();
    node.wait_until("the update converges", Duration::from_secs(120), |n| {
        n.container("web")
            .is_some_and(|c| container_image(&c.id) == variant)
            && n.ctl_json(&["show", "web"])["current"]["status"] == "COMPLETE"
    });
    let web: Vec<_> = node
        .containers()
        .into_iter()
        .filter(|c| c.labels.contains("io.berth.service=web"))
        .collect();
    assert_eq!(web.len(), 1, "one container: {web:?}");
    assert_eq!(web[0].state, "running");
    let history = node.ctl_json(&["history", "web"]);
    let statuses: Vec<&str> = history
        .as_array()
        .map(|h| h.iter().filter_map(|d| d["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["COMPLETE", "COMPLETE"], "{history:#}");
}
