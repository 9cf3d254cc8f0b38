//! `delete --volumes` on the fake engine: a named volume berth created for
//! this node and that no other service mounts is removed once the container
//! is gone; one another service mounts, one without the node label and one
//! of another node are kept, with the reason in the answer, the record and
//! an event. A plain delete keeps every volume.

use std::collections::BTreeMap;

use berth_agent::Verb;
use berth_core::event::EventKind;
use berth_core::record::Status;
use berth_core::runtime::LABEL_NODE;
use berth_core::spec::{ServiceSpec, Volume};
use berth_fakes::runtime::Call;

mod common;
use common::*;

fn with_volumes(name: &str, volumes: &[&str]) -> ServiceSpec {
    let mut s = spec(name, "demo:1");
    s.volumes = volumes
        .iter()
        .map(|v| Volume::parse(v).expect("volume"))
        .collect();
    s
}

/// Every `ContainerAction` event about a volume: (action, volume, reason).
fn volume_events(node: &Node) -> Vec<(String, String, String)> {
    node.handle
        .events_since(0)
        .events
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ContainerAction {
                action,
                container,
                reason,
                ..
            } if action.ends_with("volume") => Some((action, container, reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn delete_with_volumes_removes_only_this_nodes_unused_volumes() {
    let node = start();
    // Made by hand (no label) and by another node: berth never removes these.
    node.rt().add_volume("handmade", BTreeMap::new());
    node.rt().add_volume(
        "theirs",
        BTreeMap::from([(LABEL_NODE.to_string(), "n2".to_string())]),
    );
    let web = with_volumes(
        "web",
        &[
            "data:/data",
            "shared:/shared",
            "handmade:/h",
            "theirs:/t",
            "/srv/web:/srv",
        ],
    );
    let api = with_volumes("api", &["shared:/shared:ro"]);
    for d in deploy(&node.handle, vec![web, api]).await {
        assert_eq!(d.status, Status::Complete, "{d:?}");
    }
    let volumes = node.rt().volume_names();
    for v in ["data", "shared", "handmade", "theirs"] {
        assert!(volumes.contains(&v.to_string()), "{v} in {volumes:?}");
    }

    let answer = node
        .handle
        .verb("web", Verb::DeleteWithVolumes, "test")
        .await
        .expect("delete");
    assert!(
        answer.message.contains("data") && answer.message.contains("shared (mounted by api)"),
        "the answer says what goes and what stays: {}",
        answer.message
    );
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    let reason = &done.status_reason;
    assert!(reason.contains("volumes removed: data"), "{reason}");
    assert!(reason.contains("shared (mounted by api)"), "{reason}");
    assert!(
        reason.contains("handmade (it has no io.berth.node label: berth did not create it)"),
        "{reason}"
    );
    assert!(
        reason.contains("theirs (it was created by node `n2`, not this one)"),
        "{reason}"
    );
    assert!(
        !reason.contains("/srv/web"),
        "host paths are not volumes: {reason}"
    );

    assert!(node.rt().container_by_name("t-web").is_none());
    assert_eq!(
        node.rt().volume_names(),
        ["handmade", "shared", "theirs"],
        "only data went"
    );
    // Only `data` was ever asked to be removed, after the container was.
    let calls = node.rt().calls();
    let removals: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::RemoveVolume(_)))
        .collect();
    assert_eq!(removals, [&Call::RemoveVolume("data".into())]);
    let container_gone = calls
        .iter()
        .position(|c| matches!(c, Call::Remove(_)))
        .expect("container removed");
    let volume_gone = calls
        .iter()
        .position(|c| matches!(c, Call::RemoveVolume(_)))
        .expect("volume removed");
    assert!(container_gone < volume_gone, "{calls:?}");

    let events = volume_events(&node);
    assert!(
        events.contains(&(
            "removed volume".into(),
            "data".into(),
            "created by berth for this node, no other service mounts it (delete --volumes)".into()
        )),
        "{events:?}"
    );
    for kept in ["shared", "handmade", "theirs"] {
        assert!(
            events
                .iter()
                .any(|(a, v, _)| a == "kept volume" && v == kept),
            "{kept}: {events:?}"
        );
    }

    // Once api is deleted too, nothing mounts `shared` any more.
    let answer = node
        .handle
        .verb("api", Verb::DeleteWithVolumes, "test")
        .await
        .expect("delete api");
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status_reason, "volumes removed: shared");
    assert_eq!(node.rt().volume_names(), ["handmade", "theirs"]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_plain_delete_keeps_every_volume() {
    let node = start();
    deploy(&node.handle, vec![with_volumes("web", &["data:/data"])]).await;
    let answer = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
    assert_eq!(answer.message, "deleting web");
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status, Status::Complete);
    assert_eq!(done.status_reason, "");
    assert_eq!(node.rt().volume_names(), ["data"]);
    assert!(
        !node
            .rt()
            .calls()
            .iter()
            .any(|c| matches!(c, Call::RemoveVolume(_))),
        "never asked"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_volume_a_container_still_uses_is_kept_with_the_engines_reason() {
    let node = start();
    deploy(&node.handle, vec![with_volumes("web", &["data:/data"])]).await;
    // A container of another tool mounts it: the engine refuses.
    node.rt().fail_next(
        "remove_volume",
        berth_core::runtime::RuntimeError::Refused {
            op: "remove volume",
            target: "data".into(),
            message: "volume is in use - [someone-else]".into(),
        },
    );
    let answer = node
        .handle
        .verb("web", Verb::DeleteWithVolumes, "test")
        .await
        .expect("delete");
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert!(
        done.status_reason.contains("volumes kept: data (")
            && done.status_reason.contains("in use"),
        "{}",
        done.status_reason
    );
    assert_eq!(node.rt().volume_names(), ["data"]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_with_no_named_volume_says_so() {
    let node = start();
    deploy(&node.handle, vec![with_volumes("web", &["/srv/web:/srv"])]).await;
    let answer = node
        .handle
        .verb("web", Verb::DeleteWithVolumes, "test")
        .await
        .expect("delete");
    assert_eq!(answer.message, "deleting web; it mounts no named volume");
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status_reason, "no named volume to remove");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_applied_during_the_delete_that_mounts_the_volume_keeps_it() {
    let node = start();
    deploy(&node.handle, vec![with_volumes("web", &["data:/data"])]).await;
    // The engine is away at the container's removal: the delete waits.
    node.rt().fail_next(
        "remove",
        berth_core::runtime::RuntimeError::Unreachable {
            endpoint: "fake".into(),
            reason: "a moment away".into(),
        },
    );
    let answer = node
        .handle
        .verb("web", Verb::DeleteWithVolumes, "test")
        .await
        .expect("delete");
    assert!(
        answer.message.contains("named volumes data"),
        "{}",
        answer.message
    );
    // Meanwhile another service comes to mount it.
    apply(&node.handle, vec![with_volumes("api", &["data:/data"])]).await;
    let done = wait_status(&node.handle, &answer.deployment.expect("record").id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert_eq!(
        done.status_reason, "volumes kept: data (mounted by api)",
        "asked again before removing"
    );
    assert_eq!(node.rt().volume_names(), ["data"]);
    node.stop().await;
}
