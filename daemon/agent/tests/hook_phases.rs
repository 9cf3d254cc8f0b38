//! `post_update` and `pre_delete` hooks against the fake engine, and a
//! deployment's hooks across a berthd restart: `post_update` runs in the
//! new container once the update is judged COMPLETE and the container set
//! aside is gone, and its failure rolls nothing back; `pre_delete` holds a
//! delete, and its failure leaves the service running; a newer deployment
//! supersedes one waiting in any phase; a restarted agent resumes where the
//! record says (a breakpoint still waits, a cleared one does not, a hook
//! that was running runs again).

use std::time::Duration;

use berth_agent::Verb;
use berth_core::record::{DeployAction, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::Healthcheck;
use berth_core::spec::HookPhase::{PostUpdate, PreDelete, PreUpdate};
use berth_fakes::runtime::Call;

mod common;
use common::hooks::*;
use common::*;

#[tokio::test(start_paused = true)]
async fn post_update_runs_in_the_new_container_after_the_aside_one_is_gone() {
    let node = start();
    let first = deploy(
        &node.handle,
        vec![web_with("demo:1", PostUpdate, [exec(&["/ready"])])],
    )
    .await;
    assert_eq!(first[0].status, Status::Complete);
    assert_eq!(
        exec_calls(node.rt()),
        vec![],
        "no post_update on a first create"
    );
    let old = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();

    let d = deploy(
        &node.handle,
        vec![web_with("demo:2", PostUpdate, [exec(&["/ready"])])],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    assert!(d[0].pre_update_passed && d[0].hook.is_none(), "{:?}", d[0]);
    let new = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id);
    let calls = node.rt().calls();
    let removed = calls
        .iter()
        .position(|c| *c == Call::Remove(old.id.clone()))
        .expect("the aside container removed");
    let ran = calls
        .iter()
        .position(|c| *c == Call::Exec(new.id.clone(), vec!["/ready".into()]))
        .unwrap_or_else(|| panic!("post_update in the new container: {calls:?}"));
    assert!(removed < ran, "the aside container goes first: {calls:?}");
    assert_eq!(exec_calls(node.rt()).len(), 1);

    // A policy-only change replaces nothing: no hook.
    node.rt().clear_calls();
    let mut policy = web_with("demo:2", PostUpdate, [exec(&["/ready"])]);
    policy.update.settle = Duration::from_millis(300);
    let d = deploy(&node.handle, vec![policy]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    assert_eq!(exec_calls(node.rt()), vec![]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_post_update_breakpoint_waits_after_judging_until_cleared() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    let r = apply(&node.handle, vec![web_with("demo:2", PostUpdate, [BP])]).await;
    let id = id_of(&r);
    let d = waiting_in(&node.handle, &id, PostUpdate).await;
    assert!(
        d.status_reason
            .contains("berthctl hook clear web post_update"),
        "{}",
        d.status_reason
    );
    // Judged: the new one runs, the old one is gone, and nothing is judged
    // any more while it waits (a crash now fails nothing).
    eventually("the aside container removed", || {
        node.rt().container_by_name("t-web.prev-g2").is_none()
    })
    .await;
    let new = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id);
    assert_eq!(new.state, ContainerState::Running);
    let refused = node
        .handle
        .verb("web", clear(PreUpdate), "test")
        .await
        .expect_err("another phase");
    assert!(
        refused.to_string().contains("runs post_update hook"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        node.handle.deployment(&id).await.expect("record").status,
        Status::WaitingHook
    );
    clear_web(&node.handle, PostUpdate).await;
    let done = wait_status(&node.handle, &id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert_eq!(done.hook, None);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_update_fails_the_update_and_rolls_nothing_back() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    next_exec_exits(node.rt(), 2, "checking\n", "not ready\n");
    let d = deploy(
        &node.handle,
        vec![web_with("demo:2", PostUpdate, [exec(&["/ready"])])],
    )
    .await;
    assert_eq!(d[0].status, Status::Failed, "{:?}", d[0]);
    let reason = &d[0].status_reason;
    assert!(
        reason.contains("post_update hook `exec /ready` exited with code 2: not ready")
            && reason.contains("nothing was rolled back"),
        "{reason}"
    );
    assert_eq!(d[0].outputs.deploy_stdout.as_deref(), Some("checking\n"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let new = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id, "the new container stays");
    assert_eq!(new.state, ContainerState::Running);
    assert_eq!(node.rt().containers().len(), 1, "the aside one is gone");
    let history = node.handle.history("web", 10).await.expect("history");
    assert_eq!(history[0].id, d[0].id, "no rollback record: {history:#?}");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_automatic_rollback_runs_no_post_update() {
    let node = start();
    let post = |image| web_with(image, PostUpdate, [exec(&["/ready"])]);
    deploy(&node.handle, vec![post("demo:1")]).await;
    node.rt().clear_calls();
    let mut bad = post("demo:2");
    bad.healthcheck = Some(Healthcheck {
        test: None,
        exec: vec!["/demo".into(), "check".into()],
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(100),
        retries: 1,
        start_period: None,
    });
    bad.update.health_timeout = Duration::from_secs(1);
    let d = deploy(&node.handle, vec![bad]).await;
    assert_eq!(d[0].status, Status::RolledBack, "{:?}", d[0]);
    let history = node.handle.history("web", 10).await.expect("history");
    let rollback = &history[0];
    assert_eq!(rollback.action, DeployAction::Rollback);
    let rollback = wait_status(&node.handle, &rollback.id).await;
    assert_eq!(rollback.status, Status::Complete, "{rollback:?}");
    assert_eq!(exec_calls(node.rt()), vec![], "neither hook ran");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pre_delete_breakpoint_holds_the_delete_until_cleared() {
    let node = start();
    deploy(
        &node.handle,
        vec![web_with("demo:1", PreDelete, [BP, exec(&["/drain"])])],
    )
    .await;
    let c = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let v = delete_web(&node.handle).await;
    let record = v.deployment.expect("delete record");
    assert_eq!(record.status, Status::WaitingHook, "{record:?}");
    assert!(
        v.message.contains("berthctl hook clear web pre_delete"),
        "{}",
        v.message
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(node.rt().mutating_calls(), vec![], "nothing removed");
    assert_eq!(
        node.handle
            .deployment(&record.id)
            .await
            .expect("record")
            .status,
        Status::WaitingHook
    );
    let snap = node.handle.snapshot();
    let shown = snap.services["web"].current.as_ref().expect("current");
    assert_eq!(shown.hook.as_ref().and_then(|h| h.phase), Some(PreDelete));
    clear_web(&node.handle, PreDelete).await;
    let done = wait_status(&node.handle, &record.id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert!(node.rt().container_by_name("t-web").is_none());
    assert_eq!(
        exec_calls(node.rt()),
        vec![Call::Exec(c.id.clone(), argv(&["/drain"]))]
    );
    let calls = node.rt().calls();
    let drained = calls.iter().position(|x| matches!(x, Call::Exec(..)));
    let removed = calls.iter().position(|x| *x == Call::Remove(c.id.clone()));
    assert!(drained < removed, "{calls:?}");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_pre_delete_leaves_the_service_running() {
    let node = start();
    deploy(
        &node.handle,
        vec![web_with("demo:1", PreDelete, [exec(&["/drain"])])],
    )
    .await;
    let c = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    next_exec_exits(node.rt(), 1, "", "3 sessions left\n");
    let v = delete_web(&node.handle).await;
    let failed = wait_status(&node.handle, &v.deployment.expect("record").id).await;
    assert_eq!(failed.status, Status::Failed, "{failed:?}");
    assert!(
        failed
            .status_reason
            .contains("pre_delete hook `exec /drain` exited with code 1: 3 sessions left")
            && failed.status_reason.contains("not deleted"),
        "{}",
        failed.status_reason
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        node.rt()
            .mutating_calls()
            .iter()
            .all(|x| matches!(x, Call::Exec(..))),
        "only the hook: {:?}",
        node.rt().mutating_calls()
    );
    let still = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (still.id.as_str(), still.state),
        (c.id.as_str(), ContainerState::Running)
    );
    assert!(node.handle.snapshot().services.contains_key("web"));
    // The service is managed as before: a restart is allowed, and a delete
    // whose hook now passes deletes it.
    node.handle
        .verb("web", Verb::Restart, "test")
        .await
        .expect("restart");
    let v = delete_web(&node.handle).await;
    let done = wait_status(&node.handle, &v.deployment.expect("record").id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert!(node.rt().container_by_name("t-web").is_none());
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_newer_deployment_supersedes_one_waiting_in_any_phase() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;

    // Waiting in post_update.
    let r = apply(&node.handle, vec![web_with("demo:2", PostUpdate, [BP])]).await;
    let post = id_of(&r);
    waiting_in(&node.handle, &post, PostUpdate).await;
    let d = deploy(&node.handle, vec![web_with("demo:1", PreDelete, [BP])]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    superseded(&node.handle, &post, d[0].generation).await;

    // Waiting in pre_delete: an apply of the same spec keeps the service.
    let c = node.rt().container_by_name("t-web").expect("web");
    let v = delete_web(&node.handle).await;
    let delete = v.deployment.expect("record").id;
    waiting_in(&node.handle, &delete, PreDelete).await;
    let d = deploy(&node.handle, vec![web_with("demo:1", PreDelete, [BP])]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    superseded(&node.handle, &delete, d[0].generation).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(still.id, c.id, "the container was never removed");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_still_waits_at_a_breakpoint_in_every_phase() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let mut both = web_with("demo:2", PreUpdate, [BP]);
    both.hooks.post_update = vec![hook(BP)];
    both.hooks.pre_delete = vec![hook(BP)];
    let r = apply(&node.handle, vec![both]).await;
    let id = id_of(&r);
    let before = waiting_in(&node.handle, &id, PreUpdate).await;
    let old = node.rt().container_by_name("t-web").expect("web");

    // pre_update: still waiting, since the same time, nothing created.
    let env = node.stop().await;
    env.runtime.clear_calls();
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = waiting_in(&node.handle, &id, PreUpdate).await;
    assert_eq!(after.hook, before.hook);
    assert_eq!(node.rt().mutating_calls(), vec![]);
    clear_web(&node.handle, PreUpdate).await;

    // post_update: still waiting, not judged again.
    let before = waiting_in(&node.handle, &id, PostUpdate).await;
    let new = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id);
    let env = node.stop().await;
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = waiting_in(&node.handle, &id, PostUpdate).await;
    assert_eq!(after.hook, before.hook);
    clear_web(&node.handle, PostUpdate).await;
    assert_eq!(
        wait_status(&node.handle, &id).await.status,
        Status::Complete
    );

    // pre_delete: still waiting, nothing removed.
    let v = delete_web(&node.handle).await;
    let delete = v.deployment.expect("record").id;
    let env = node.stop().await;
    env.runtime.clear_calls();
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    waiting_in(&node.handle, &delete, PreDelete).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    clear_web(&node.handle, PreDelete).await;
    assert_eq!(
        wait_status(&node.handle, &delete).await.status,
        Status::Complete
    );
    assert!(node.rt().container_by_name("t-web").is_none());
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_passes_cleared_breakpoints_and_runs_the_hook_again() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    let r = apply(
        &node.handle,
        vec![web_with("demo:2", PreUpdate, [BP, exec(&["/drain"]), BP])],
    )
    .await;
    let id = id_of(&r);
    waiting_in(&node.handle, &id, PreUpdate).await;
    // With the engine away nothing is planned, so the exec after the
    // breakpoint cannot start before berthd stops: the record is exactly
    // what it is while that exec runs.
    node.rt().set_unreachable(true);
    eventually("engine shown unreachable", || {
        !node.handle.snapshot().node.engine.reachable
    })
    .await;
    clear_web(&node.handle, PreUpdate).await;
    let saved = waiting_in(&node.handle, &id, PreUpdate).await;
    let wait = saved.hook.expect("hook");
    assert_eq!(
        (wait.index, wait.hook.as_str(), wait.cleared),
        (1, "exec /drain", true)
    );
    let env = node.stop().await;
    assert_eq!(exec_calls(&env.runtime), vec![], "not run before the stop");
    env.runtime.set_unreachable(false);
    let node = start_with(env);
    let done = wait_status(&node.handle, &id).await;
    assert_eq!(done.status, Status::Complete, "no clear needed: {done:?}");
    assert_eq!(
        exec_calls(node.rt()),
        vec![Call::Exec(old.id.clone(), argv(&["/drain"]))],
        "the exec ran once, in the old container, and the cleared breakpoint after it did not wait"
    );
    node.stop().await;
}
