//! Pruning pulled images, on a real engine and a real registry (Debian's
//! `docker-registry` on 127.0.0.1): with `[images] keep_previous = 1`, the
//! image of a generation older than the current and the previous one goes
//! once berth pulled it; the images the kept generations name stay; an
//! image berth did not pull (the demo image) stays whatever names it; an
//! image a container outside berth uses stays (never forced) until
//! `berthctl images prune` runs after that container is gone; `berthctl
//! images --json` says what is in use and what is prunable.
//!
//! Four distinct images (the demo image with a LABEL each, so their ids
//! differ) are pushed under tags of one repository and untagged locally,
//! so berth has to pull them; what the test tagged or pulled is untagged
//! when it ends, pass or fail (`PulledImages`, declared before the node).

use std::process::Output;
use std::time::Duration;

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker, unique};
use berth_tests::registry::{DEMO_IMAGE, PulledImages, TestRegistry, build_variant};
use serde_json::Value;

/// A service on `image` that runs the demo server.
fn service(name: &str, image: &str) -> String {
    format!(
        "name: {name}\nimage: {image}\ncommand: [\"serve\", \"--port\", \"8080\"]\nupdate: {{settle: 1s}}\n"
    )
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An image pushed to the registry and gone from the engine.
struct Variant {
    reference: String,
    /// The same image under another tag (`t<n>b`), when asked for.
    also: Option<String>,
    /// Its image id (`sha256:...`), as the engine built it.
    id: String,
}

/// Builds `FROM demo` with a label of its own (a distinct image id), pushes
/// it as `<repository>:t<n>`, and removes it from the engine.
fn push_variant(repository: &str, n: u32, images: &mut PulledImages) -> Variant {
    push_variant_tags(repository, n, false, images)
}

/// [`push_variant`], and with `also` the same image as `<repository>:t<n>b` too.
fn push_variant_tags(repository: &str, n: u32, also: bool, images: &mut PulledImages) -> Variant {
    let reference = format!("{repository}:t{n}");
    let also = also.then(|| format!("{repository}:t{n}b"));
    let id = build_variant(&reference, &reference, 0, images);
    let mut tags = vec![reference.clone()];
    if let Some(also) = &also {
        images.add(also);
        let out = docker(&["tag", &reference, also]);
        assert!(out.status.success(), "docker tag {also}: {}", both(&out));
        tags.push(also.clone());
    }
    for tag in &tags {
        let out = docker(&["push", tag]);
        assert!(out.status.success(), "docker push {tag}: {}", both(&out));
    }
    for tag in &tags {
        images.remove_now(tag);
    }
    assert!(
        inspect_image(&id, "{{.Id}}").is_none(),
        "{reference} ({id}) is still in the engine"
    );
    Variant {
        reference,
        also,
        id,
    }
}

/// `docker image inspect REF --format FORMAT`, trimmed; `None` when the
/// engine has no such image.
fn inspect_image(reference: &str, format: &str) -> Option<String> {
    let out = docker(&["image", "inspect", reference, "--format", format]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A container outside berth (no node label) made from an image: the
/// engine refuses to remove that image unforced. Removed when dropped.
struct Holder(String);

impl Holder {
    fn create(image: &str) -> Holder {
        let name = unique("pruneholder");
        let out = docker(&["create", "--name", &name, image]);
        assert!(out.status.success(), "docker create: {}", both(&out));
        Holder(name)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = docker(&["rm", &self.0]);
    }
}

fn apply(node: &TestNode, image: &str) {
    apply_service(node, "web", image);
}

fn apply_service(node: &TestNode, name: &str, image: &str) {
    let file = node.spec_file(&format!("{name}.yaml"), &service(name, image));
    let out = node.ctl(&["apply", &file.display().to_string()]);
    assert!(
        out.status.success(),
        "apply {image}: {}\nberthd log:\n{}",
        both(&out),
        node.logs()
    );
}

fn row<'a>(images: &'a Value, id: &str) -> Option<&'a Value> {
    images["images"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
}

fn pruned_events(node: &TestNode) -> Vec<Value> {
    let events = node.ctl_json(&["events"]);
    events["events"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["type"] == "container_action" && e["action"] == "pruned image")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pulled_images_beyond_the_kept_generations_are_pruned_and_no_other() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let repository = format!("{}/{}", registry.addr, unique("prune"));
    let v: Vec<Variant> = (1..=4)
        .map(|n| push_variant(&repository, n, &mut images))
        .collect();
    let demo_id = inspect_image(DEMO_IMAGE, "{{.Id}}").expect("the demo image");
    let mut node = TestNode::new("prune").with_config("[images]\nkeep_previous = 1\n");
    node.start();

    // Generation 1 runs the demo image: in the engine before, never pulled.
    apply(&node, DEMO_IMAGE);
    for variant in &v[..3] {
        apply(&node, &variant.reference);
    }
    // Generation 4 (t3) is current, 3 (t2) the one previous kept: t1
    // (generation 2) is pruned once generation 4 ended.
    node.wait_until("t1 pruned", Duration::from_secs(30), |_| {
        inspect_image(&v[0].id, "{{.Id}}").is_none()
    });
    for (what, id) in [("t2", &v[1].id), ("t3", &v[2].id), ("demo", &demo_id)] {
        assert!(
            inspect_image(id, "{{.Id}}").is_some(),
            "{what} ({id}) must stay\nberthd log:\n{}",
            node.logs()
        );
    }
    let events = pruned_events(&node);
    assert_eq!(events.len(), 1, "{events:#?}");
    let text = events[0].to_string();
    assert!(text.contains(&v[0].reference), "{text}");
    assert!(text.contains("pulled by berth"), "{text}");
    let log = node.logs();
    assert!(
        log.contains("pruned a pulled image") && log.contains(&v[0].id),
        "a log line names the image:\n{log}"
    );

    // A container outside berth uses t2: the engine keeps it when the next
    // generation makes it prunable, and nothing fails.
    let holder = Holder::create(&v[1].id);
    apply(&node, &v[3].reference);
    node.wait_until("t2 prunable", Duration::from_secs(30), |n| {
        let images = n.ctl_json(&["images"]);
        row(&images, &v[1].id).is_some_and(|r| r["prunable"] == true)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(inspect_image(&v[1].id, "{{.Id}}").is_some(), "never forced");
    let history = node.ctl_json(&["history", "web"]);
    assert_eq!(history[0]["status"], "COMPLETE", "{history:#}");

    let images = node.ctl_json(&["images"]);
    assert_eq!(images["keep_previous"], 1, "{images:#}");
    let t4 = row(&images, &v[3].id).expect("t4 listed");
    assert_eq!(t4["used_by"], serde_json::json!(["web"]), "{images:#}");
    assert_eq!(t4["prunable"], false, "{images:#}");
    assert_eq!(t4["origin"], "pulled", "{images:#}");
    assert!(
        t4["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with(&format!("{repository}@sha256:"))),
        "{images:#}"
    );
    let t3 = row(&images, &v[2].id).expect("t3 listed");
    assert_eq!(t3["used_by"], serde_json::json!([]), "{images:#}");
    assert_eq!(
        t3["records"],
        serde_json::json!([{"service": "web", "generation": 4}]),
        "{images:#}"
    );
    assert_eq!(t3["prunable"], false, "{images:#}");
    let t2 = row(&images, &v[1].id).expect("t2 listed");
    assert_eq!(t2["present"], true, "{images:#}");
    assert!(row(&images, &v[0].id).is_none(), "t1 is gone: {images:#}");
    if let Some(demo) = row(&images, &demo_id) {
        assert_eq!(demo["prunable"], false, "{images:#}");
    }
    let table = node.ctl_ok(&["images"]);
    assert!(table.contains("PRUNABLE"), "{table}");
    assert!(table.contains(&v[3].reference), "{table}");

    // A dry run names t2 and removes nothing.
    let dry = node.ctl_json(&["images", "prune", "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry:#}");
    let names: Vec<&str> = dry["removed"]
        .as_array()
        .map(|r| r.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, [v[1].id.as_str()], "{dry:#}");
    assert!(inspect_image(&v[1].id, "{{.Id}}").is_some());

    // Once the container is gone, `images prune` removes it.
    drop(holder);
    let out = node.ctl_ok(&["images", "prune"]);
    assert!(
        out.contains(&format!("pruned {}", v[1].reference)),
        "{out}\nberthd log:\n{}",
        node.logs()
    );
    assert!(inspect_image(&v[1].id, "{{.Id}}").is_none(), "t2 pruned");
    for (what, id) in [("t3", &v[2].id), ("t4", &v[3].id), ("demo", &demo_id)] {
        assert!(inspect_image(id, "{{.Id}}").is_some(), "{what} must stay");
    }
    assert_eq!(pruned_events(&node).len(), 2);
    let again = node.ctl_json(&["images", "prune"]);
    assert_eq!(again["removed"], serde_json::json!([]), "{again:#}");
}

/// berth pulled one image under two tags (two services, one each): the
/// engine refuses to remove it by id unforced while both tags name it, so
/// berth untags both (each a reference it pulled), which removes it.
#[test]
fn an_image_berth_pulled_under_two_tags_is_pruned() {
    berth_prereq::require!(DemoImage, Registry);
    demo_image();
    let registry = TestRegistry::start();
    let mut images = PulledImages::new();
    let repository = format!("{}/{}", registry.addr, unique("prune2"));
    let twice = push_variant_tags(&repository, 1, true, &mut images);
    let also = twice.also.clone().expect("a second tag");
    let next = push_variant(&repository, 2, &mut images);
    let mut node = TestNode::new("prune2").with_config("[images]\nkeep_previous = 0\n");
    node.start();

    apply_service(&node, "web", &twice.reference);
    apply_service(&node, "api", &also);
    let tags = inspect_image(&twice.id, "{{json .RepoTags}}").expect("pulled");
    assert!(
        tags.contains(&twice.reference) && tags.contains(&also),
        "one image, two tags: {tags}"
    );
    let listed = node.ctl_json(&["images"]);
    let row = row(&listed, &twice.id).expect("listed");
    assert_eq!(
        row["used_by"],
        serde_json::json!(["api", "web"]),
        "{listed:#}"
    );

    apply_service(&node, "web", &next.reference);
    apply_service(&node, "api", &next.reference);
    node.wait_until(
        "the twice-tagged image pruned",
        Duration::from_secs(30),
        |_| inspect_image(&twice.id, "{{.Id}}").is_none(),
    );
    assert!(inspect_image(&next.id, "{{.Id}}").is_some());
    let events = pruned_events(&node);
    assert_eq!(events.len(), 1, "{events:#?}");
}
