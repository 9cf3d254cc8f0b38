//! Pruning pulled images: only images berth pulled, never one a record of
//! the current and last `keep_previous` generations of any service names,
//! never one the engine refuses to remove unforced; every removal an event.

use std::time::Duration;

use berth_agent::Seams;
use berth_core::event::EventKind;
use berth_core::images::ImageOrigin;
use berth_core::record::Status;
use berth_core::runtime::{Runtime, RuntimeError};
use berth_core::store::Store;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeRuntime, MemStore};

mod common;
use common::*;

const REPO: &str = "reg.example:5000/ns/web";

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:x}").repeat(64))
}

/// A node with `keep_previous` = `keep`, `reg.example:5000/ns/web:N`
/// pullable as `sha256:pN` (N = 1..=3), and `reg.example:5000/ns/web:0`
/// already in the engine (berth never pulled it).
fn node(keep: usize) -> Node {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image(&format!("{REPO}:0"), "sha256:p0");
    for n in 1..=3u8 {
        runtime.add_registry_image(&format!("{REPO}:{n}"), &format!("sha256:p{n}"), &digest(n));
    }
    let mut c = cfg();
    c.keep_previous = keep;
    run_agent(
        Clocked::new(Seams {
            runtime,
            store: MemStore::new(),
        }),
        c,
    )
}

fn store(node: &Node) -> &MemStore {
    &node.env.store
}

async fn in_engine(node: &Node, id: &str) -> bool {
    node.rt()
        .inspect_image(id)
        .await
        .expect("fake inspect")
        .is_some()
}

fn pulled_ids(node: &Node) -> Vec<String> {
    store(node)
        .pulled_images()
        .expect("pulled list")
        .into_iter()
        .map(|p| p.id)
        .collect()
}

async fn deploy_web(node: &Node, n: u8) {
    let d = deploy(&node.handle, vec![spec("web", &format!("{REPO}:{n}"))]).await;
    assert_eq!(d[0].status, Status::Complete, "{d:?}");
}

/// The prune a deployment's end starts is a job: let it run.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn prune_events(node: &Node) -> Vec<(String, String, String)> {
    node.handle
        .events_since(0)
        .events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ContainerAction {
                service,
                action,
                container,
                reason,
            } if action == "pruned image" => Some((service, container, reason)),
            _ => None,
        })
        .collect()
}

/// The engine refuses the next removals (as it does an image a container
/// outside berth uses) until `clear_failures`.
fn refuse_removals(node: &Node, id: &str) {
    for _ in 0..4 {
        node.rt().fail_next(
            "remove_image",
            RuntimeError::Refused {
                op: "remove image",
                target: id.into(),
                message: format!(
                    "conflict: unable to delete {id} (must be forced) - image is being used by stopped container 0123"
                ),
            },
        );
    }
}

#[tokio::test(start_paused = true)]
async fn only_pulled_images_beyond_the_kept_generations_are_pruned() {
    let node = node(1);
    // Generation 1: an image the engine had (never pulled by berth).
    deploy_web(&node, 0).await;
    deploy_web(&node, 1).await;
    settle().await;
    assert_eq!(pulled_ids(&node), ["sha256:p1"]);
    deploy_web(&node, 2).await;
    settle().await;
    // Generations 3 and 2 are kept: p1 (generation 2) stays.
    assert!(in_engine(&node, "sha256:p1").await);
    assert_eq!(prune_events(&node), []);
    deploy_web(&node, 3).await;
    settle().await;
    // Generations 4 and 3 are kept: p1 goes, p2 and p3 stay, and p0,
    // which berth did not pull, stays although no kept record names it.
    assert!(!in_engine(&node, "sha256:p1").await, "p1 pruned");
    for kept in ["sha256:p2", "sha256:p3", "sha256:p0"] {
        assert!(in_engine(&node, kept).await, "{kept} kept");
    }
    assert!(
        node.rt()
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::RemoveImage(_)))
            .all(|c| *c == Call::RemoveImage("sha256:p1".into())),
        "removed by id, nothing else: {:?}",
        node.rt().calls()
    );
    assert_eq!(pulled_ids(&node), ["sha256:p2", "sha256:p3"]);
    let events = prune_events(&node);
    assert_eq!(events.len(), 1, "{events:?}");
    let (service, image, reason) = &events[0];
    assert_eq!(service, "web");
    assert_eq!(image, &format!("{REPO}:1 (p1)"));
    assert!(reason.contains("pulled by berth"), "{reason}");
    assert!(reason.contains("1 previous generation"), "{reason}");

    let images = node.handle.images().await.expect("images");
    assert_eq!(images.keep_previous, 1);
    assert!(images.problems.is_empty(), "{:?}", images.problems);
    let row = |id: &str| {
        images
            .images
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} listed: {images:?}"))
    };
    let p3 = row("sha256:p3");
    assert_eq!(p3.origin, ImageOrigin::Pulled);
    assert_eq!(p3.used_by, ["web"]);
    assert!(!p3.prunable);
    assert!(p3.references.contains(&format!("{REPO}:3")), "{p3:?}");
    let want = format!("{REPO}@{}", digest(3));
    assert_eq!(p3.digest.as_deref(), Some(want.as_str()));
    let p2 = row("sha256:p2");
    assert_eq!(p2.used_by, Vec::<String>::new());
    assert_eq!(p2.records.len(), 1);
    assert_eq!(
        (p2.records[0].service.as_str(), p2.records[0].generation),
        ("web", 3)
    );
    assert!(!p2.prunable);
    assert!(p2.why.contains("web-3"), "{}", p2.why);
    assert!(
        !images.images.iter().any(|r| r.id == "sha256:p1"),
        "a pruned image is not listed"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_image_another_services_record_names_is_kept() {
    let node = node(0);
    deploy_web(&node, 1).await;
    // api runs the same image (already in the engine: not pulled again).
    let d = deploy(&node.handle, vec![spec("api", &format!("{REPO}:1"))]).await;
    assert_eq!(d[0].status, Status::Complete);
    deploy_web(&node, 2).await;
    settle().await;
    assert!(in_engine(&node, "sha256:p1").await, "api still names it");
    let images = node.handle.images().await.expect("images");
    let p1 = images
        .images
        .iter()
        .find(|r| r.id == "sha256:p1")
        .expect("p1 listed");
    assert_eq!(p1.used_by, ["api"]);
    assert!(p1.why.contains("in use by api"), "{}", p1.why);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_image_the_engine_will_not_remove_unforced_stays_and_nothing_fails() {
    let node = node(0);
    deploy_web(&node, 1).await;
    refuse_removals(&node, "sha256:p1");
    deploy_web(&node, 2).await;
    settle().await;
    assert!(in_engine(&node, "sha256:p1").await, "refused: stays");
    assert!(
        node.rt()
            .calls()
            .contains(&Call::RemoveImage("sha256:p1".into())),
        "tried: {:?}",
        node.rt().calls()
    );
    node.rt().clear_failures();
    assert_eq!(prune_events(&node), []);
    assert_eq!(
        pulled_ids(&node),
        ["sha256:p1", "sha256:p2"],
        "still berth's"
    );
    // A dry run says what a prune would remove, and removes nothing.
    node.rt().clear_calls();
    let dry = node
        .handle
        .prune_images(true, "test")
        .await
        .expect("dry run");
    assert!(dry.dry_run);
    assert_eq!(dry.removed.len(), 1, "{dry:?}");
    assert_eq!(dry.removed[0].id, "sha256:p1");
    assert_eq!(dry.removed[0].reference, format!("{REPO}:1"));
    assert_eq!(node.rt().mutating_calls(), vec![]);
    // Asked again, the engine lets it go.
    let done = node
        .handle
        .prune_images(false, "test")
        .await
        .expect("prune");
    assert!(!done.dry_run);
    assert_eq!(done.removed.len(), 1, "{done:?}");
    assert!(done.kept.is_empty(), "{done:?}");
    assert!(!in_engine(&node, "sha256:p1").await);
    assert_eq!(pulled_ids(&node), ["sha256:p2"]);
    assert_eq!(prune_events(&node).len(), 1);
    // Nothing left to prune: an empty answer, no engine call.
    node.rt().clear_calls();
    let again = node
        .handle
        .prune_images(false, "test")
        .await
        .expect("prune");
    assert_eq!(again.removed, []);
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_image_removed_outside_berth_is_forgotten_without_an_event() {
    let node = node(0);
    deploy_web(&node, 1).await;
    refuse_removals(&node, "sha256:p1");
    deploy_web(&node, 2).await;
    settle().await;
    assert_eq!(pulled_ids(&node), ["sha256:p1", "sha256:p2"]);
    node.rt().clear_failures();
    node.rt()
        .remove_image("sha256:p1")
        .await
        .expect("removed by hand");
    let done = node
        .handle
        .prune_images(false, "test")
        .await
        .expect("prune");
    assert_eq!(done.removed, []);
    assert_eq!(pulled_ids(&node), ["sha256:p2"]);
    assert_eq!(prune_events(&node), []);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_torn_pulled_list_prunes_nothing_and_says_why() {
    let node = node(0);
    deploy_web(&node, 1).await;
    store(&node).tear_pulled("truncated JSON (a torn write?)");
    // The deployment is not failed by it.
    deploy_web(&node, 2).await;
    settle().await;
    assert!(in_engine(&node, "sha256:p1").await);
    let images = node.handle.images().await.expect("images");
    assert!(
        images.problems.iter().any(|p| p.contains("torn write")),
        "{:?}",
        images.problems
    );
    let done = node
        .handle
        .prune_images(false, "test")
        .await
        .expect("prune");
    assert_eq!(done.removed, []);
    assert!(!done.problems.is_empty(), "{done:?}");
    assert!(in_engine(&node, "sha256:p1").await);
    node.stop().await;
}

/// A deployment recorded while the engine was away resolves (and pulls)
/// its image later: that pull is noted too, so it can be pruned.
#[tokio::test(start_paused = true)]
async fn a_pull_after_the_engine_came_back_is_noted() {
    let node = node(0);
    node.rt().set_unreachable(true);
    let r = apply(&node.handle, vec![spec("web", &format!("{REPO}:1"))]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Pending, "{d:?}");
    assert_eq!(pulled_ids(&node), Vec::<String>::new());
    node.rt().set_unreachable(false);
    let d = wait_status(&node.handle, &d.id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    let pulled = store(&node).pulled_images().expect("pulled list");
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    assert_eq!(pulled[0].id, "sha256:p1");
    assert_eq!(pulled[0].references, [format!("{REPO}:1")]);
    assert_eq!(pulled[0].service, "web");
    deploy_web(&node, 2).await;
    settle().await;
    let images = node.handle.images().await.expect("images");
    assert!(!in_engine(&node, "sha256:p1").await, "pruned: {images:#?}");
    node.stop().await;
}

/// A rollback to a pruned image pulls it again by its digest: berth's
/// pull, noted, so the image is pruned again once nothing keeps it.
#[tokio::test(start_paused = true)]
async fn an_image_pulled_again_for_a_rollback_is_noted_and_pruned_later() {
    let node = node(0);
    let by_digest = format!("{REPO}@{}", digest(1));
    node.rt()
        .add_registry_image(&by_digest, "sha256:p1", &digest(1));
    deploy_web(&node, 1).await;
    deploy_web(&node, 2).await;
    settle().await;
    assert!(!in_engine(&node, "sha256:p1").await, "pruned");
    let resp = node
        .handle
        .verb(
            "web",
            berth_agent::Verb::Rollback {
                generation: Some(1),
            },
            "test",
        )
        .await
        .expect("rollback");
    let d = wait_status(&node.handle, &resp.deployment.expect("record").id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert!(in_engine(&node, "sha256:p1").await, "pulled again");
    let pulled = store(&node).pulled_images().expect("pulled list");
    let p1 = pulled
        .iter()
        .find(|p| p.id == "sha256:p1")
        .unwrap_or_else(|| panic!("p1 noted again: {pulled:?}"));
    assert_eq!(p1.references, [by_digest]);
    deploy_web(&node, 3).await;
    settle().await;
    assert!(!in_engine(&node, "sha256:p1").await, "pruned again");
    assert!(!in_engine(&node, "sha256:p2").await, "pruned");
    assert_eq!(pulled_ids(&node), ["sha256:p3"]);
    node.stop().await;
}

/// A kept generation's record that cannot be read might name any image:
/// nothing is pruned while it is so, and `images` says why.
#[tokio::test(start_paused = true)]
async fn a_torn_kept_record_prunes_nothing() {
    let node = node(1);
    deploy_web(&node, 1).await;
    deploy_web(&node, 2).await;
    store(&node).tear_record("web", 2);
    deploy_web(&node, 3).await;
    settle().await;
    // Generation 2 (p2) is kept but unreadable; p1 would be prunable.
    assert!(in_engine(&node, "sha256:p1").await, "nothing pruned");
    assert!(in_engine(&node, "sha256:p2").await);
    let images = node.handle.images().await.expect("images");
    assert!(
        images
            .problems
            .iter()
            .any(|p| p.contains("generation 2 of web") && p.contains("torn")),
        "{:?}",
        images.problems
    );
    assert!(
        images.images.iter().all(|r| !r.prunable),
        "{:#?}",
        images.images
    );
    node.stop().await;
}
