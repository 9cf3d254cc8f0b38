//! Health gating and rollback against the fake engine: an update keeps the
//! container it replaces aside (stopped, restart policy `no`) while it is
//! judged; a failed one is swapped back without a create; a rolled back
//! spec is not retried; `rollback --to` re-creates an older generation; a
//! berthd stopped in the middle of a swap back converges when it restarts.

use std::time::Duration;

use berth_agent::Verb;
use berth_core::record::{DeployAction, Status};
use berth_core::runtime::{ContainerState, RuntimeError};
use berth_core::spec::{Healthcheck, RestartPolicy, RollbackPolicy, ServiceSpec};
use berth_fakes::runtime::Call;

mod common;
use common::*;

/// `web` on `demo:2` with a healthcheck nobody will report healthy: the
/// fake engine keeps it `starting`, so it fails its gate after 1 s.
fn never_healthy() -> ServiceSpec {
    let mut s = spec("web", "demo:2");
    s.healthcheck = Some(Healthcheck {
        test: None,
        exec: vec!["/demo".into(), "check".into()],
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(100),
        retries: 1,
        start_period: None,
    });
    s.update.health_timeout = Duration::from_secs(1);
    s
}

fn creates(node: &Node) -> Vec<String> {
    node.rt()
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Create(name) => Some(name),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_update_is_rolled_back_to_the_aside_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(old.restart_policy, RestartPolicy::Always);
    node.rt().clear_calls();

    let r = apply(&node.handle, vec![never_healthy()]).await;
    let failed_id = r.results[0].deployment.as_ref().expect("record").id.clone();
    // While the new one is judged, the old one waits aside: stopped, and
    // with restart policy `no`, so a restarting engine leaves it alone.
    eventually("the old container set aside", || {
        node.rt()
            .container_by_name("t-web.prev-g2")
            .is_some_and(|c| c.state == ContainerState::Exited)
    })
    .await;
    let aside = node.rt().container_by_name("t-web.prev-g2").expect("aside");
    assert_eq!(aside.id, old.id);
    assert_eq!(aside.restart_policy, RestartPolicy::Never);
    node.rt().restart_engine();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let aside = node.rt().container_by_name("t-web.prev-g2").expect("aside");
    assert_eq!(
        aside.state,
        ContainerState::Exited,
        "a dockerd restart must not run the aside container"
    );

    let failed = wait_status(&node.handle, &failed_id).await;
    assert_eq!(failed.status, Status::RolledBack, "{failed:?}");
    assert!(
        failed
            .status_reason
            .contains("not healthy within update.health_timeout (1s)"),
        "{}",
        failed.status_reason
    );
    assert!(
        failed
            .status_reason
            .contains("rolled back to generation 1 (deployment web-3)"),
        "{}",
        failed.status_reason
    );
    let rollback = wait_status(&node.handle, "web-3").await;
    assert_eq!(rollback.status, Status::Complete, "{rollback:?}");
    assert_eq!(rollback.action, DeployAction::Rollback);
    assert_eq!(rollback.rollback_of, Some(1));
    assert_eq!(rollback.actor, "berthd");
    assert!(
        rollback.status_reason.contains("generation 2 failed"),
        "the rollback says what it undid: {}",
        rollback.status_reason
    );
    eventually("one container, the old one, running again", || {
        let cs = node.rt().containers();
        cs.len() == 1
            && cs[0].id == old.id
            && cs[0].name == "t-web"
            && cs[0].state == ContainerState::Running
            && cs[0].restart_policy == RestartPolicy::Always
    })
    .await;
    // Swapped back, not re-created: the only create was the failed one's.
    assert_eq!(creates(&node), vec!["t-web.next-g2".to_string()]);
    // Status shows the rollback and why.
    let snap = node.handle.snapshot();
    let current = snap.services["web"].current.as_ref().expect("current");
    assert_eq!(current.status, Status::Complete);
    assert_eq!(current.action, DeployAction::Rollback);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn with_rollback_none_a_failed_update_stays_failed() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    let mut bad = never_healthy();
    bad.update.rollback = RollbackPolicy::None;
    let d = deploy(&node.handle, vec![bad]).await;
    assert_eq!(d[0].status, Status::Failed, "{:?}", d[0]);
    // The aside container goes once the deployment ended; the failed one stays.
    eventually("the aside container removed", || {
        node.rt().containers().len() == 1
    })
    .await;
    let web = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(web.id, old.id);
    assert_eq!(web.req.spec.image, "sha256:two");
    let h = node.handle.history("web", 10).await.expect("history");
    assert!(h.iter().all(|d| d.action != DeployAction::Rollback));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_completed_update_removes_the_aside_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let d = deploy(&node.handle, vec![spec("web", "demo:2")]).await;
    assert_eq!(d[0].status, Status::Complete);
    eventually("only the new container left", || {
        node.rt().containers().len() == 1
    })
    .await;
    let web = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(web.req.spec.image, "sha256:two");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rolled_back_spec_is_not_retried_until_a_different_one_arrives() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let d = deploy(&node.handle, vec![never_healthy()]).await;
    assert_eq!(d[0].status, Status::RolledBack);
    wait_status(&node.handle, "web-3").await;
    eventually("swapped back", || node.rt().containers().len() == 1).await;
    node.rt().clear_calls();

    // The same spec again: answered FAILED, naming the record, nothing touched.
    let r = apply(&node.handle, vec![never_healthy()]).await;
    let refused = r.results[0].deployment.clone().expect("record");
    assert_eq!(refused.status, Status::Failed);
    assert!(
        refused
            .status_reason
            .contains("the same spec as deployment web-2, which was ROLLED_BACK"),
        "{}",
        refused.status_reason
    );
    // And again: still refused (a refusal does not count as another spec).
    let r = apply(&node.handle, vec![never_healthy()]).await;
    let again = r.results[0].deployment.clone().expect("record");
    assert_eq!(again.status, Status::Failed, "{again:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        node.rt().mutating_calls().is_empty(),
        "{:?}",
        node.rt().mutating_calls()
    );
    assert_eq!(
        node.rt()
            .container_by_name("t-web")
            .expect("web")
            .req
            .spec
            .image,
        "sha256:one"
    );

    // A different spec goes ahead; after it, the old one may come again.
    let mut other = spec("web", "demo:2");
    other
        .env
        .insert("A".into(), berth_core::spec::EnvValue::plain("1"));
    let d = deploy(&node.handle, vec![other]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    let r = apply(&node.handle, vec![never_healthy()]).await;
    let retried = r.results[0].deployment.clone().expect("record");
    assert_ne!(retried.status, Status::Failed, "{retried:?}");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rollback_to_an_older_generation_creates_its_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    deploy(&node.handle, vec![spec("web", "demo:2")]).await;
    let mut three = spec("web", "demo:2");
    three
        .env
        .insert("A".into(), berth_core::spec::EnvValue::plain("3"));
    deploy(&node.handle, vec![three]).await;
    eventually("one container", || node.rt().containers().len() == 1).await;
    node.rt().clear_calls();
    let v = node
        .handle
        .verb(
            "web",
            Verb::Rollback {
                generation: Some(1),
            },
            "test",
        )
        .await
        .expect("rollback");
    let d = wait_status(&node.handle, &v.deployment.expect("record").id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.rollback_of, Some(1));
    let web = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(web.req.spec.image, "sha256:one");
    assert!(web.req.spec.env.is_empty());
    assert_eq!(creates(&node), vec!["t-web.next-g4".to_string()]);
    eventually("one container", || node.rt().containers().len() == 1).await;
    // A generation the history does not hold is refused, naming it.
    let e = node
        .handle
        .verb(
            "web",
            Verb::Rollback {
                generation: Some(99),
            },
            "test",
        )
        .await
        .expect_err("no generation 99");
    assert!(e.to_string().contains("has no generation 99"), "{e}");
    node.stop().await;
}

/// berthd stops (as if killed) while the swap back is half done: the failed
/// container removed and the aside one's restart policy restored, but its
/// start never got through (the engine did not answer it). The next berthd
/// finishes it from what the engine and the records show.
#[tokio::test(start_paused = true)]
async fn a_berthd_stopped_while_a_rollback_swaps_converges_on_restart() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![never_healthy()]).await;
    let failed_id = r.results[0].deployment.as_ref().expect("record").id.clone();
    eventually("the new container running", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.id != old.id && c.state == ContainerState::Running)
    })
    .await;
    // Every start of the swap back goes unanswered until berthd is gone.
    for _ in 0..20 {
        node.rt().fail_next(
            "start",
            RuntimeError::Unreachable {
                endpoint: "fake".into(),
                reason: "injected".into(),
            },
        );
    }
    let failed = wait_status(&node.handle, &failed_id).await;
    assert_eq!(failed.status, Status::RolledBack);
    eventually("the failed container removed", || {
        node.rt().containers().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let env = node.stop().await;
    env.runtime.clear_failures();
    let left = env.runtime.containers();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, old.id);
    assert_eq!(left[0].name, "t-web.prev-g2", "{left:?}");
    assert_ne!(left[0].state, ContainerState::Running);

    let node = start_with(env);
    eventually(
        "one running container, the old one, named and restored",
        || {
            let cs = node.rt().containers();
            cs.len() == 1
                && cs[0].id == old.id
                && cs[0].name == "t-web"
                && cs[0].state == ContainerState::Running
                && cs[0].restart_policy == RestartPolicy::Always
        },
    )
    .await;
    let rollback = wait_status(&node.handle, "web-3").await;
    assert_eq!(rollback.status, Status::Complete, "{rollback:?}");
    assert_eq!(
        creates(&node),
        vec!["t-web.next-g2".to_string()],
        "swapped back, never re-created"
    );
    node.stop().await;
}
