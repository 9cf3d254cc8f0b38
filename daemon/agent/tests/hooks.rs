//! `pre_update` hooks against the fake engine: a breakpoint holds an
//! update (WAITING_HOOK, the old container untouched) until cleared; an
//! exec hook runs in the old container and a non-zero exit fails the
//! deployment with its output while the old container runs on; a newer
//! apply supersedes a waiting one; no hook runs on a first create or a
//! policy-only change.

use std::time::Duration;

use berth_agent::AgentError;
use berth_core::record::Status;
use berth_core::runtime::ContainerState;
use berth_core::spec::{HookKind, HookPhase, ServiceSpec};
use berth_fakes::runtime::Call;

mod common;
use common::hooks::*;
use common::*;

fn with_hooks(image: &str, hooks: Vec<HookKind>) -> ServiceSpec {
    web_with(image, HookPhase::PreUpdate, hooks)
}

fn creates(node: &Node) -> usize {
    node.rt()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_breakpoint_holds_an_update_until_cleared() {
    let node = start();
    deploy(&node.handle, vec![with_hooks("demo:1", vec![BP])]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let mut events = node.handle.subscribe_events();

    let r = apply(&node.handle, vec![with_hooks("demo:2", vec![BP])]).await;
    let id = id_of(&r);
    let d = waiting_in(&node.handle, &id, HookPhase::PreUpdate).await;
    let hook = d.hook.expect("the record names its hook");
    assert_eq!(hook.phase, Some(HookPhase::PreUpdate));
    assert_eq!(
        (hook.index, hook.hook.as_str(), hook.breakpoint),
        (0, "breakpoint", true)
    );
    assert!(
        d.status_reason
            .contains("berthctl hook clear web pre_update"),
        "{}",
        d.status_reason
    );
    // Held: nothing touched the running container for as long as it waits.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(
        node.handle.deployment(&id).await.expect("record").status,
        Status::WaitingHook
    );
    assert_eq!(creates(&node), 0, "{:?}", node.rt().calls());
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (c.id.as_str(), c.state),
        (old.id.as_str(), ContainerState::Running)
    );
    // `status` shows the hook too.
    let snap = node.handle.snapshot();
    let current = snap.services["web"].current.as_ref().expect("current");
    assert_eq!(current.status, Status::WaitingHook);
    assert_eq!(
        current.hook.as_ref().map(|h| h.since_ms),
        Some(hook.since_ms)
    );
    // And the events said so.
    let mut saw = false;
    while let Ok(e) = events.try_recv() {
        saw |= matches!(
            e.kind,
            berth_core::event::EventKind::DeploymentStatus {
                status: Status::WaitingHook,
                ..
            }
        );
    }
    assert!(saw, "a WAITING_HOOK event");

    let cleared = clear_web(&node.handle, HookPhase::PreUpdate).await;
    assert!(cleared.message.contains(&id), "{}", cleared.message);
    let done = wait_status(&node.handle, &id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert_eq!(done.hook, None);
    assert_ne!(
        node.rt().container_by_name("t-web").expect("web").id,
        old.id
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_exec_hook_fails_the_update_and_leaves_the_old_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    next_exec_exits(node.rt(), 3, "draining\n", "still 4 connections\n");
    let r = apply(
        &node.handle,
        vec![with_hooks("demo:2", vec![exec(&["/demo", "drain"])])],
    )
    .await;
    let id = id_of(&r);
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Failed, "{d:?}");
    assert!(
        d.status_reason
            .contains("pre_update hook `exec /demo drain` exited with code 3: still 4 connections"),
        "{}",
        d.status_reason
    );
    assert_eq!(d.outputs.deploy_status_code, Some(3));
    assert_eq!(d.outputs.deploy_stdout.as_deref(), Some("draining\n"));
    // It ran in the old container; nothing else was done to it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let calls = node.rt().calls();
    assert!(
        calls.contains(&Call::Exec(
            old.id.clone(),
            vec!["/demo".into(), "drain".into()]
        )),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| matches!(c, Call::Exec(..)) || !c.is_mutating()),
        "only the exec: {calls:?}"
    );
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (c.id.as_str(), c.state),
        (old.id.as_str(), ContainerState::Running)
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn exec_hooks_that_exit_0_let_the_update_go_on() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    let hooks = vec![exec(&["/demo", "drain"]), exec(&["/demo", "flush"])];
    let d = deploy(&node.handle, vec![with_hooks("demo:2", hooks)]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    assert_eq!(
        exec_calls(node.rt()),
        vec![
            Call::Exec(old.id.clone(), vec!["/demo".into(), "drain".into()]),
            Call::Exec(old.id.clone(), vec!["/demo".into(), "flush".into()]),
        ]
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn no_hook_on_a_first_create_or_a_policy_only_change() {
    let node = start();
    let s = with_hooks("demo:1", vec![BP]);
    let d = deploy(&node.handle, vec![s.clone()]).await;
    assert_eq!(d[0].status, Status::Complete, "first create: {:?}", d[0]);
    let mut policy = s.clone();
    policy.update.settle = Duration::from_millis(300);
    let d = deploy(&node.handle, vec![policy]).await;
    assert_eq!(d[0].status, Status::Complete, "policy only: {:?}", d[0]);
    let err = node
        .handle
        .verb("web", clear(HookPhase::PreUpdate), "test")
        .await
        .expect_err("nothing waits");
    assert!(
        matches!(&err, AgentError::Refused { reason, .. } if reason.contains("no pre_update breakpoint waiting")),
        "{err}"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_newer_apply_supersedes_a_waiting_deployment() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let r = apply(&node.handle, vec![with_hooks("demo:2", vec![BP])]).await;
    let id = id_of(&r);
    waiting_in(&node.handle, &id, HookPhase::PreUpdate).await;
    let mut newer = spec("web", "demo:1");
    newer.command = Some(vec!["/demo".into(), "serve".into()]);
    let d = deploy(&node.handle, vec![newer]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    superseded(&node.handle, &id, d[0].generation).await;
    node.stop().await;
}
