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
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::runtime::{ContainerState, ExecOutput};
use berth_core::spec::{Healthcheck, Hook, HookKind, HookPhase, HookPlace, OnTimeout, ServiceSpec};
use berth_fakes::runtime::Call;

mod common;
use common::*;

fn hook(kind: HookKind) -> Hook {
    Hook {
        kind,
        place: HookPlace::Container,
        timeout: None,
        on_timeout: OnTimeout::Abort,
    }
}

fn exec(cmd: &str) -> HookKind {
    HookKind::Exec(vec![cmd.to_string()])
}

const BP: HookKind = HookKind::Breakpoint {};

/// `web` on `image` with hooks in `phase`.
fn with(image: &str, phase: HookPhase, hooks: Vec<HookKind>) -> ServiceSpec {
    let mut s = spec("web", image);
    let hooks = hooks.into_iter().map(hook).collect();
    match phase {
        HookPhase::PreUpdate => s.hooks.pre_update = hooks,
        HookPhase::PostUpdate => s.hooks.post_update = hooks,
        HookPhase::PreDelete => s.hooks.pre_delete = hooks,
    }
    s
}

fn clear(phase: HookPhase) -> Verb {
    Verb::ClearHook { phase }
}

/// Waits for deployment `id` to be WAITING_HOOK in `phase`.
async fn waiting_in(node: &Node, id: &str, phase: HookPhase) -> Deployment {
    for _ in 0..400 {
        let d = node.handle.deployment(id).await.expect("record");
        if d.status == Status::WaitingHook && d.hook.as_ref().and_then(|h| h.phase) == Some(phase) {
            return d;
        }
        assert!(!d.status.is_terminal(), "{id} ended: {d:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never WAITING_HOOK in {phase}");
}

fn execs(node: &Node) -> Vec<(String, Vec<String>)> {
    execs_in(node.rt())
}

fn execs_in(rt: &berth_fakes::FakeRuntime) -> Vec<(String, Vec<String>)> {
    rt.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Exec(id, argv) => Some((id, argv)),
            _ => None,
        })
        .collect()
}

fn id_of(r: &berth_core::dto::ApplyResponse) -> String {
    r.results[0].deployment.as_ref().expect("record").id.clone()
}

#[tokio::test(start_paused = true)]
async fn post_update_runs_in_the_new_container_after_the_aside_one_is_gone() {
    let node = start();
    let first = deploy(
        &node.handle,
        vec![with("demo:1", HookPhase::PostUpdate, vec![exec("/ready")])],
    )
    .await;
    assert_eq!(first[0].status, Status::Complete);
    assert_eq!(execs(&node), vec![], "no post_update on a first create");
    let old = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();

    let d = deploy(
        &node.handle,
        vec![with("demo:2", HookPhase::PostUpdate, vec![exec("/ready")])],
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
    assert_eq!(execs(&node).len(), 1);

    // A policy-only change replaces nothing: no hook.
    node.rt().clear_calls();
    let mut policy = with("demo:2", HookPhase::PostUpdate, vec![exec("/ready")]);
    policy.update.settle = Duration::from_millis(300);
    let d = deploy(&node.handle, vec![policy]).await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    assert_eq!(execs(&node), vec![]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_post_update_breakpoint_waits_after_judging_until_cleared() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let old = node.rt().container_by_name("t-web").expect("web");
    let r = apply(
        &node.handle,
        vec![with("demo:2", HookPhase::PostUpdate, vec![BP])],
    )
    .await;
    let id = id_of(&r);
    let d = waiting_in(&node, &id, HookPhase::PostUpdate).await;
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
        .verb("web", clear(HookPhase::PreUpdate), "test")
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
    node.handle
        .verb("web", clear(HookPhase::PostUpdate), "test")
        .await
        .expect("cleared");
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
    node.rt().push_exec_result(ExecOutput {
        exit_code: 2,
        stdout: "checking\n".into(),
        stderr: "not ready\n".into(),
    });
    let d = deploy(
        &node.handle,
        vec![with("demo:2", HookPhase::PostUpdate, vec![exec("/ready")])],
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
    let post = |image| with(image, HookPhase::PostUpdate, vec![exec("/ready")]);
    deploy(&node.handle, vec![post("demo:1")]).await;
    node.rt().clear_calls();
    let mut bad = post("demo:2");
    bad.healthcheck = Some(Healthcheck {
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
    assert_eq!(execs(&node), vec![], "neither hook ran");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pre_delete_breakpoint_holds_the_delete_until_cleared() {
    let node = start();
    deploy(
        &node.handle,
        vec![with(
            "demo:1",
            HookPhase::PreDelete,
            vec![BP, exec("/drain")],
        )],
    )
    .await;
    let c = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
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
    assert_eq!(
        shown.hook.as_ref().and_then(|h| h.phase),
        Some(HookPhase::PreDelete)
    );
    node.handle
        .verb("web", clear(HookPhase::PreDelete), "test")
        .await
        .expect("cleared");
    let done = wait_status(&node.handle, &record.id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert!(node.rt().container_by_name("t-web").is_none());
    assert_eq!(execs(&node), vec![(c.id.clone(), vec!["/drain".into()])]);
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
        vec![with("demo:1", HookPhase::PreDelete, vec![exec("/drain")])],
    )
    .await;
    let c = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    node.rt().push_exec_result(ExecOutput {
        exit_code: 1,
        stdout: String::new(),
        stderr: "3 sessions left\n".into(),
    });
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
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
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete again");
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
    let r = apply(
        &node.handle,
        vec![with("demo:2", HookPhase::PostUpdate, vec![BP])],
    )
    .await;
    let post = id_of(&r);
    waiting_in(&node, &post, HookPhase::PostUpdate).await;
    let d = deploy(
        &node.handle,
        vec![with("demo:1", HookPhase::PreDelete, vec![BP])],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    let old = node.handle.deployment(&post).await.expect("record");
    assert_eq!(
        (old.status, old.status_reason.as_str()),
        (
            Status::Failed,
            format!("superseded by generation {}", d[0].generation).as_str()
        )
    );
    assert_eq!(old.hook, None);

    // Waiting in pre_delete: an apply of the same spec keeps the service.
    let c = node.rt().container_by_name("t-web").expect("web");
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
    let delete = v.deployment.expect("record").id;
    waiting_in(&node, &delete, HookPhase::PreDelete).await;
    let d = deploy(
        &node.handle,
        vec![with("demo:1", HookPhase::PreDelete, vec![BP])],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    let old = node.handle.deployment(&delete).await.expect("record");
    assert_eq!(old.status, Status::Failed);
    assert!(
        old.status_reason.starts_with("superseded by generation"),
        "{}",
        old.status_reason
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(still.id, c.id, "the container was never removed");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_still_waits_at_a_breakpoint_in_every_phase() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let mut both = with("demo:2", HookPhase::PreUpdate, vec![BP]);
    both.hooks.post_update = vec![hook(BP)];
    both.hooks.pre_delete = vec![hook(BP)];
    let r = apply(&node.handle, vec![both]).await;
    let id = id_of(&r);
    let before = waiting_in(&node, &id, HookPhase::PreUpdate).await;
    let old = node.rt().container_by_name("t-web").expect("web");

    // pre_update: still waiting, since the same time, nothing created.
    let env = node.stop().await;
    env.runtime.clear_calls();
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = waiting_in(&node, &id, HookPhase::PreUpdate).await;
    assert_eq!(after.hook, before.hook);
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.handle
        .verb("web", clear(HookPhase::PreUpdate), "test")
        .await
        .expect("cleared");

    // post_update: still waiting, not judged again.
    let before = waiting_in(&node, &id, HookPhase::PostUpdate).await;
    let new = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id);
    let env = node.stop().await;
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = waiting_in(&node, &id, HookPhase::PostUpdate).await;
    assert_eq!(after.hook, before.hook);
    node.handle
        .verb("web", clear(HookPhase::PostUpdate), "test")
        .await
        .expect("cleared");
    assert_eq!(
        wait_status(&node.handle, &id).await.status,
        Status::Complete
    );

    // pre_delete: still waiting, nothing removed.
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
    let delete = v.deployment.expect("record").id;
    let env = node.stop().await;
    env.runtime.clear_calls();
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    waiting_in(&node, &delete, HookPhase::PreDelete).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.handle
        .verb("web", clear(HookPhase::PreDelete), "test")
        .await
        .expect("cleared");
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
        vec![with(
            "demo:2",
            HookPhase::PreUpdate,
            vec![BP, exec("/drain"), BP],
        )],
    )
    .await;
    let id = id_of(&r);
    waiting_in(&node, &id, HookPhase::PreUpdate).await;
    // With the engine away nothing is planned, so the exec after the
    // breakpoint cannot start before berthd stops: the record is exactly
    // what it is while that exec runs.
    node.rt().set_unreachable(true);
    eventually("engine shown unreachable", || {
        !node.handle.snapshot().node.engine.reachable
    })
    .await;
    node.handle
        .verb("web", clear(HookPhase::PreUpdate), "test")
        .await
        .expect("cleared");
    let saved = waiting_in(&node, &id, HookPhase::PreUpdate).await;
    let wait = saved.hook.expect("hook");
    assert_eq!(
        (wait.index, wait.hook.as_str(), wait.cleared),
        (1, "exec /drain", true)
    );
    let env = node.stop().await;
    assert_eq!(execs_in(&env.runtime), vec![], "not run before the stop");
    env.runtime.set_unreachable(false);
    let node = start_with(env);
    let done = wait_status(&node.handle, &id).await;
    assert_eq!(done.status, Status::Complete, "no clear needed: {done:?}");
    assert_eq!(
        execs(&node),
        vec![(old.id.clone(), vec!["/drain".to_string()])],
        "the exec ran once, in the old container, and the cleared breakpoint after it did not wait"
    );
    node.stop().await;
}
