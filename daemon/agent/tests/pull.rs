//! Images the engine does not have are pulled (`pull: missing`), before the
//! deployment touches any container, and the digest they resolved to is
//! recorded next to the image id.

use std::time::Duration;

use berth_core::dto::Change;
use berth_core::record::Status;
use berth_core::runtime::{ContainerState, PullCause, RuntimeError};
use berth_fakes::runtime::Call;

mod common;
use common::*;

const DIGEST: &str = "sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_pulled_before_the_old_container_is_touched() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt()
        .add_registry_image("reg.example:5000/ns/web:2", "sha256:pulled", DIGEST);
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![spec("web", "reg.example:5000/ns/web:2")]).await;
    let d = r.results[0].deployment.clone().expect("record");
    // Pulled while the apply resolved it: the record has it already.
    assert_eq!(d.image_id.as_deref(), Some("sha256:pulled"));
    let want = format!("reg.example:5000/ns/web@{DIGEST}");
    assert_eq!(d.image_digest.as_deref(), Some(want.as_str()));
    let d = wait_status(&node.handle, &d.id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.image_digest.as_deref(), Some(want.as_str()));
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(after.id, before.id);
    assert_eq!(after.req.spec.image, "sha256:pulled", "created from the id");
    let calls = node.rt().mutating_calls();
    assert_eq!(
        calls[0],
        Call::Pull("reg.example:5000/ns/web:2".into()),
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| matches!(c, Call::Pull(_))).count(),
        1,
        "{calls:?}"
    );
    // An unchanged re-apply neither pulls nor touches anything.
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![spec("web", "reg.example:5000/ns/web:2")]).await;
    assert_eq!(r.results[0].change, Change::Unchanged);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.stop().await;
}

/// Built and loaded images, and references the engine had already without
/// a digest for their repository, record none.
#[tokio::test(start_paused = true)]
async fn an_image_the_engine_had_is_not_pulled_and_has_no_digest() {
    let node = start();
    let d = deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    assert_eq!(d[0].status, Status::Complete);
    assert_eq!(d[0].image_id.as_deref(), Some("sha256:one"));
    assert_eq!(d[0].image_digest, None);
    assert!(
        !node.rt().calls().iter().any(|c| matches!(c, Call::Pull(_))),
        "{:?}",
        node.rt().calls()
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_registry_fails_the_deployment_and_keeps_the_old_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    node.rt().fail_next(
        "pull",
        RuntimeError::Pull {
            registry: "127.0.0.1:5999".into(),
            reference: "127.0.0.1:5999/web:2".into(),
            cause: PullCause::Unreachable,
            message: "dial tcp 127.0.0.1:5999: connect: connection refused".into(),
        },
    );
    let r = apply(&node.handle, vec![spec("web", "127.0.0.1:5999/web:2")]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Failed, "{d:?}");
    for part in [
        "127.0.0.1:5999/web:2",
        "from 127.0.0.1:5999",
        "unreachable",
        "connection refused",
    ] {
        assert!(
            d.status_reason.contains(part),
            "{part}: {}",
            d.status_reason
        );
    }
    assert_eq!(d.image_id, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(after.id, before.id);
    assert_eq!(after.state, ContainerState::Running);
    assert_eq!(
        node.rt().mutating_calls(),
        vec![Call::Pull("127.0.0.1:5999/web:2".into())]
    );
    node.stop().await;
}
