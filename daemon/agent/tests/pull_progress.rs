//! A pull is told as `image_pull` events: its start, its progress at most
//! once a second however often the engine reports it, and its end (`done`,
//! `failed` when it failed), before the deployment it was for moves on.

use std::time::Duration;

use berth_core::event::{Event, EventKind};
use berth_core::record::Status;

mod common;
use common::*;

const DIGEST: &str = "sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";
const WEB: &str = "reg.example:5000/ns/web:2";

/// (at_ms, layers_done, layers_total, bytes_done, bytes_total, done, failed)
/// of every image_pull event for `service`.
type Pull = (u64, u32, u32, u64, u64, bool, bool);

fn pulls(events: &[Event], service: &str) -> Vec<Pull> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ImagePull {
                service: s,
                reference,
                layers_done,
                layers_total,
                bytes_done,
                bytes_total,
                done,
                failed,
            } if s == service => {
                assert_eq!(reference, WEB);
                Some((
                    e.at_ms,
                    *layers_done,
                    *layers_total,
                    *bytes_done,
                    *bytes_total,
                    *done,
                    *failed,
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_slow_pull_reports_throttled_progress_and_its_end() {
    let node = start();
    node.rt().add_registry_image(WEB, "sha256:pulled", DIGEST);
    // 20 progress lines 250 ms apart: a 5 s pull.
    node.rt().set_pull_steps(20, Duration::from_millis(250));
    let d = deploy(&node.handle, vec![spec("web", WEB)]).await;
    assert_eq!(d[0].status, Status::Complete, "{d:?}");
    let events = node.handle.events_since(0).events;
    let seen = pulls(&events, "web");
    // The start, then at most one a second (not 20), then the end.
    assert!((5..=8).contains(&seen.len()), "{seen:?}");
    let first = seen.first().copied().expect("a start");
    assert_eq!(
        (first.1, first.2, first.3, first.4, first.5, first.6),
        (0, 0, 0, 0, false, false),
        "{seen:?}"
    );
    let (Some(last), running) = (seen.last().copied(), &seen[..seen.len() - 1]) else {
        panic!("no end: {seen:?}");
    };
    assert_eq!(
        (last.1, last.2, last.3, last.4, last.5, last.6),
        (2, 2, 2_000_000, 2_000_000, true, false),
        "{seen:?}"
    );
    assert!(running.iter().all(|p| !p.5), "{seen:?}");
    for pair in running.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 1000,
            "more than one a second: {seen:?}"
        );
        // Bytes only grow.
        assert!(pair[1].3 >= pair[0].3, "{seen:?}");
    }
    assert!(
        running.iter().any(|p| p.3 > 0 && p.3 < 2_000_000),
        "progress in between: {seen:?}"
    );
    // The end comes before the deployment it was for moved on.
    let end = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::ImagePull { done: true, .. }));
    let complete = events.iter().position(|e| {
        matches!(&e.kind, EventKind::DeploymentStatus { status: Status::Complete, service, .. } if service == "web")
    });
    assert!(end < complete && end.is_some(), "{events:?}");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_ends_with_a_failed_event_and_a_present_image_with_none() {
    let node = start();
    // Not in the registry (manifest unknown): the pull fails at once.
    let r = apply(&node.handle, vec![spec("web", WEB)]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Failed, "{d:?}");
    let seen = pulls(&node.handle.events_since(0).events, "web");
    let shape: Vec<(bool, bool)> = seen.iter().map(|p| (p.5, p.6)).collect();
    assert_eq!(shape, vec![(false, false), (true, true)], "{seen:?}");

    // An image the engine has is not pulled: no pull events.
    let d = deploy(&node.handle, vec![spec("api", "demo:1")]).await;
    assert_eq!(d[0].status, Status::Complete);
    assert_eq!(pulls(&node.handle.events_since(0).events, "api"), vec![]);
    node.stop().await;
}
