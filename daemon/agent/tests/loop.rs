//! The loop against the fake engine and the in-memory store.

use std::time::Duration;

use berth_agent::{Agent, HostSeams, NoHost, Seams, Verb};
use berth_core::dto::Change;
use berth_core::record::{Source, Status};
use berth_core::runtime::{ContainerState, Runtime, RuntimeError};
use berth_core::spec::{ImageSource, Kind, ServiceSpec};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

mod common;
use common::*;

#[tokio::test(start_paused = true)]
async fn apply_creates_settles_and_reapply_is_a_noop() {
    let node = start();
    let r = apply(
        &node.handle,
        vec![spec("web", "demo:1"), spec("api", "demo:1")],
    )
    .await;
    assert!(r.results.iter().all(|r| r.change == Change::Created));
    for res in &r.results {
        let d = wait_status(&node.handle, &res.deployment.as_ref().expect("record").id).await;
        assert_eq!(d.status, Status::Complete, "{d:?}");
    }
    let c = node.rt().container_by_name("t-web").expect("web container");
    assert_eq!(c.state, ContainerState::Running);

    node.rt().clear_calls();
    let r = apply(
        &node.handle,
        vec![spec("web", "demo:1"), spec("api", "demo:1")],
    )
    .await;
    assert!(
        r.results.iter().all(|r| r.change == Change::Unchanged),
        "{r:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    // One inspect for the shared image, not one per service.
    let inspects = node
        .rt()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::InspectImage(_)))
        .count();
    assert_eq!(inspects, 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_changed_service_is_replaced_alone() {
    let node = start();
    deploy(
        &node.handle,
        vec![spec("web", "demo:1"), spec("api", "demo:1")],
    )
    .await;
    let api_before = node.rt().container_by_name("t-api").expect("api").id;
    let web_before = node.rt().container_by_name("t-web").expect("web").id;
    node.rt().clear_calls();
    let mut web = spec("web", "demo:1");
    web.env
        .insert("A".into(), berth_core::spec::EnvValue::plain("1"));
    let r = apply(&node.handle, vec![web, spec("api", "demo:1")]).await;
    assert_eq!(r.results[0].change, Change::Updated);
    assert_eq!(r.results[0].diff[0].field, "env.A");
    assert_eq!(r.results[1].change, Change::Unchanged);
    let d = wait_status(
        &node.handle,
        &r.results[0].deployment.as_ref().expect("rec").id,
    )
    .await;
    assert_eq!(d.status, Status::Complete);
    assert_eq!(
        node.rt().container_by_name("t-api").expect("api").id,
        api_before
    );
    let web_after = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(web_after.id, web_before);
    // The old container was set aside until the new one passed; it goes
    // in the step after COMPLETE.
    eventually("the aside container removed", || {
        node.rt().containers().len() == 2
    })
    .await;
    // Create came before anything touched the old container.
    let calls = node.rt().mutating_calls();
    assert!(
        matches!(&calls[0], Call::Create(n) if n.starts_with("t-web.next")),
        "{calls:?}"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_fails_and_leaves_the_old_container_running() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    let r = apply(&node.handle, vec![spec("web", "nope:9")]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Failed);
    // Pulled (an unqualified name: from docker.io), not found there; the
    // ways to provide it on the node follow.
    for part in ["`nope:9`", "from docker.io", "not found", "docker load"] {
        assert!(
            d.status_reason.contains(part),
            "{part}: {}",
            d.status_reason
        );
    }
    assert!(
        node.rt().calls().contains(&Call::Pull("nope:9".into())),
        "{:?}",
        node.rt().calls()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(after.id, before.id);
    assert_eq!(after.state, ContainerState::Running);
    node.stop().await;
}

/// Applies `web` on `demo:2` and waits for that deployment to end.
async fn update_web(node: &Node) -> berth_core::record::Deployment {
    let r = apply(&node.handle, vec![spec("web", "demo:2")]).await;
    wait_status(
        &node.handle,
        &r.results[0].deployment.as_ref().expect("rec").id,
    )
    .await
}

#[tokio::test(start_paused = true)]
async fn a_create_refused_by_the_engine_fails_and_keeps_the_old_one() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt().fail_next(
        "create",
        RuntimeError::Refused {
            op: "create",
            target: "t-web".into(),
            message: "invalid port".into(),
        },
    );
    let d = update_web(&node).await;
    assert_eq!(d.status, Status::Failed);
    assert!(d.status_reason.contains("invalid port"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(after.id, before.id, "old container kept, no retry loop");
    node.stop().await;
}

/// A leftover of this node's (a berthd killed mid-create; the engine
/// finished the create after the new berthd listed) holds the name the
/// update needs, and the loop has not seen it yet.
#[tokio::test(start_paused = true)]
async fn a_late_leftover_in_the_way_is_looked_at_again_and_replaced() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    let mut labels = std::collections::BTreeMap::new();
    for (k, v) in [
        (berth_core::runtime::LABEL_NODE, "n1"),
        (berth_core::runtime::LABEL_SERVICE, "web"),
        (berth_core::runtime::LABEL_SPEC_HASH, "v1:interrupted"),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    node.rt().add_foreign("t-web.next-g2", labels);
    let d = update_web(&node).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    let names: Vec<String> = node.rt().containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["t-web"], "the leftover and the old one are gone");
    assert_ne!(
        node.rt().container_by_name("t-web").expect("web").id,
        before.id
    );
    node.stop().await;
}

/// The old container vanished between the list and the swap (its removal
/// by a killed berthd finished late): another look, not a failed update.
#[tokio::test(start_paused = true)]
async fn a_container_gone_since_the_list_is_looked_at_again() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt().fail_next(
        "stop",
        RuntimeError::NoSuchContainer {
            id: before.id.clone(),
        },
    );
    let d = update_web(&node).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    let names: Vec<String> = node.rt().containers().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["t-web"]);
    node.stop().await;
}

/// A name still taken after a second look is not this node's: the
/// deployment fails, saying so, and the old container keeps running.
#[tokio::test(start_paused = true)]
async fn a_name_held_by_a_foreign_container_fails_the_update_after_a_second_look() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt()
        .add_foreign("t-web.next-g2", std::collections::BTreeMap::new());
    node.rt().clear_calls();
    let d = update_web(&node).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.status_reason
            .contains("t-web.next-g2 already exists, and it is not one of this node's containers"),
        "{}",
        d.status_reason
    );
    let creates = node
        .rt()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(_)))
        .count();
    assert_eq!(creates, 2, "one more look, not a retry loop");
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (after.id, after.state),
        (before.id, ContainerState::Running)
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn restart_of_berthd_adopts_without_touching() {
    let node = start();
    deploy(
        &node.handle,
        vec![spec("web", "demo:1"), spec("api", "demo:2")],
    )
    .await;
    let env = node.stop().await;
    env.runtime.clear_calls();
    let node = start_with(env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    let snap = node.handle.snapshot();
    assert_eq!(snap.node.summary.converged, 2, "{:?}", snap.node.summary);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_removed_behind_our_back_comes_back() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    node.rt().remove_behind_back("t-web");
    eventually("web brought back", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    // A bring-back is an event, not a record.
    let h = node.handle.history("web", 10).await.expect("history");
    assert_eq!(h.len(), 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_records_its_exit_and_output_and_never_reruns() {
    let node = start();
    let mut t = spec("migrate", "demo:1");
    t.kind = Kind::Task;
    let r = apply(&node.handle, vec![t.clone()]).await;
    let id = r.results[0].deployment.clone().expect("rec").id;
    eventually("task container started", || {
        node.rt()
            .container_by_name("t-migrate")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    node.rt()
        .exit("t-migrate", 0, "migrated 3 tables\n", "warn: x\n");
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete);
    assert_eq!(d.outputs.deploy_status_code, Some(0));
    assert_eq!(
        d.outputs.deploy_stdout.as_deref(),
        Some("migrated 3 tables\n")
    );
    assert_eq!(d.outputs.deploy_stderr.as_deref(), Some("warn: x\n"));
    // Pruned container: the task does not run again.
    node.rt().remove_behind_back("t-migrate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(node.rt().container_by_name("t-migrate").is_none());

    // A failing task.
    let mut f = spec("fails", "demo:1");
    f.kind = Kind::Task;
    let r = apply(&node.handle, vec![f]).await;
    let id = r.results[0].deployment.clone().expect("rec").id;
    eventually("task started", || {
        node.rt()
            .container_by_name("t-fails")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    node.rt().exit("t-fails", 3, "", "boom\n");
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Failed);
    assert_eq!(d.outputs.deploy_status_code, Some(3));
    assert!(d.status_reason.contains("code 3"));
    node.stop().await;
}

/// A task's outputs dir goes through the files seam: emptied before its
/// create (a failure to do so fails the deployment and creates nothing),
/// and what the task wrote there is read into its record once it exited.
#[tokio::test(start_paused = true)]
async fn a_task_gets_a_fresh_outputs_dir_and_its_declared_outputs_are_recorded() {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let files = FakeFiles::new();
    let env = Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: NoHost,
        watcher: NoWatcher,
        files: files.clone(),
    });
    let c = cfg();
    let dir = c.state_dir.join("outputs").join("migrate");
    let node = run_agent(env, c);
    let mut t = spec("migrate", "demo:1");
    t.kind = Kind::Task;
    t.outputs = vec!["result".into(), "absent".into()];
    // Left over from an earlier run: a prepared dir holds none of it.
    files.set_output(&dir, "result", "stale");
    let r = apply(&node.handle, vec![t.clone()]).await;
    let id = r.results[0].deployment.clone().expect("rec").id;
    eventually("task container started", || {
        node.env
            .runtime
            .container_by_name("t-migrate")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    assert_eq!(files.prepared(), vec![dir.clone()]);
    files.set_output(&dir, "result", "42\n");
    node.env.runtime.exit("t-migrate", 0, "done\n", "");
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    assert_eq!(
        d.outputs.declared.iter().collect::<Vec<_>>(),
        [(&"result".to_string(), &"42\n".to_string())]
    );

    // The dir cannot be prepared: the task fails and is never created.
    files.fail_next_prepare("Read-only file system (os error 30)");
    let mut again = t;
    again
        .env
        .insert("RUN".into(), berth_core::spec::EnvValue::plain("2"));
    let r = apply(&node.handle, vec![again]).await;
    let d = wait_status(
        &node.handle,
        &r.results[0].deployment.clone().expect("rec").id,
    )
    .await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.status_reason.contains("Read-only file system"),
        "{}",
        d.status_reason
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_during_settle_fails_the_deployment() {
    let node = start();
    let mut s = spec("web", "demo:1");
    s.update.settle = Duration::from_secs(2);
    s.restart = Some(berth_core::spec::RestartPolicy::Never);
    let r = apply(&node.handle, vec![s]).await;
    let id = r.results[0].deployment.clone().expect("rec").id;
    eventually("started", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    node.rt().exit("t-web", 137, "", "");
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Failed);
    assert!(d.status_reason.contains("137"), "{}", d.status_reason);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_start_hold_release_delete() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;

    let v = node
        .handle
        .verb("web", Verb::Stop, "test")
        .await
        .expect("stop");
    let d = wait_status(&node.handle, &v.deployment.expect("stop record").id).await;
    assert_eq!(d.status, Status::Complete);
    assert_eq!(
        node.rt().container_by_name("t-web").expect("kept").state,
        ContainerState::Exited
    );

    // Held: stopped stays stopped even though we start it behind berth's back... and
    // removal is not undone.
    node.handle
        .verb("web", Verb::Hold, "test")
        .await
        .expect("hold");
    node.rt().remove_behind_back("t-web");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        node.rt().container_by_name("t-web").is_none(),
        "held: no bring-back"
    );
    assert!(
        node.handle.verb("web", Verb::Start, "test").await.is_err(),
        "held refuses verbs"
    );
    node.handle
        .verb("web", Verb::Release, "test")
        .await
        .expect("release");
    eventually("recreated, not started", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.state == ContainerState::Created)
    })
    .await;

    let v = node
        .handle
        .verb("web", Verb::Start, "test")
        .await
        .expect("start");
    let d = wait_status(&node.handle, &v.deployment.expect("start record").id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(
        node.rt().container_by_name("t-web").expect("web").state,
        ContainerState::Running
    );

    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
    // While it is being deleted: no second DELETE record, no restart.
    for verb in [Verb::Delete, Verb::Restart] {
        let e = node.handle.verb("web", verb, "test").await;
        assert!(e.is_err(), "{verb:?} during a delete: {e:?}");
    }
    wait_status(&node.handle, &v.deployment.expect("delete record").id).await;
    let deletes = node
        .handle
        .history("web", 50)
        .await
        .expect("history")
        .iter()
        .filter(|d| d.action == berth_core::record::DeployAction::Delete)
        .count();
    assert_eq!(deletes, 1);
    assert!(node.rt().container_by_name("t-web").is_none());
    assert!(node.handle.snapshot().services.is_empty());
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rollback_goes_to_the_previous_complete_spec() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    deploy(&node.handle, vec![spec("web", "demo:2")]).await;
    assert_eq!(
        node.rt()
            .container_by_name("t-web")
            .expect("web")
            .req
            .spec
            .image,
        "sha256:two"
    );
    let v = node
        .handle
        .verb("web", Verb::Rollback { generation: None }, "test")
        .await
        .expect("rollback");
    let d = wait_status(&node.handle, &v.deployment.expect("rollback record").id).await;
    assert_eq!(d.status, Status::Complete);
    assert_eq!(d.rollback_of, Some(1));
    assert_eq!(
        node.rt()
            .container_by_name("t-web")
            .expect("web")
            .req
            .spec
            .image,
        "sha256:one"
    );
    let h = node.handle.history("web", 10).await.expect("history");
    assert_eq!(
        h.iter().map(|d| d.generation).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ownership_conflicts_are_refused_unless_forced() {
    let node = start();
    let file = Source::SpecDir {
        path: "/etc/berth/services.d/web.yaml".into(),
        content_hash: "x".into(),
    };
    apply_from(&node.handle, vec![spec("web", "demo:1")], file, false)
        .await
        .expect("spec_dir apply");
    let err = apply_from(
        &node.handle,
        vec![spec("web", "demo:2")],
        Source::Api,
        false,
    )
    .await
    .expect_err("conflict");
    assert!(err.to_string().contains("web.yaml"), "{err}");
    let ok = apply_from(&node.handle, vec![spec("web", "demo:2")], Source::Api, true)
        .await
        .expect("forced");
    assert_eq!(ok.results[0].change, Change::Updated);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_part_way_through_an_apply_says_what_was_applied() {
    let node = start();
    let specs = || {
        vec![
            spec("a", "demo:1"),
            spec("b", "demo:1"),
            spec("c", "demo:1"),
        ]
    };
    // a's record and meta are written; b's record is refused.
    node.env.store.fail_write_after(2);
    let err = apply_from(&node.handle, specs(), Source::Api, false)
        .await
        .expect_err("the apply fails");
    match &err {
        berth_agent::AgentError::PartlyApplied {
            failed,
            done,
            not_applied,
            cause,
        } => {
            assert_eq!(failed, "b");
            assert_eq!(done, &vec!["a (a-1)".to_string()]);
            assert_eq!(not_applied, &vec!["c".to_string()]);
            assert!(matches!(**cause, berth_agent::AgentError::Store(_)));
        }
        e => panic!("not PartlyApplied: {e:?}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("b: the state store failed: cannot write mem://services/b/")
            && text.contains("injected failure")
            && text.contains("applied before it: a (a-1); not applied: c."),
        "{text}"
    );
    // What was applied deploys; what was not left no trace.
    let a = wait_status(&node.handle, "a-1").await;
    assert_eq!(a.status, Status::Complete, "{a:?}");
    assert!(node.rt().container_by_name("t-b").is_none());
    assert!(matches!(
        node.handle.history("b", 10).await,
        Err(berth_agent::AgentError::NoSuchService { .. })
    ));
    // Applying again finishes the job and changes nothing twice.
    let r = apply(&node.handle, specs()).await;
    let changes: Vec<_> = r
        .results
        .iter()
        .map(|r| (r.service.as_str(), r.change))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("a", Change::Unchanged),
            ("b", Change::Created),
            ("c", Change::Created)
        ]
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_record_is_reported_and_its_container_left_alone() {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let store = MemStore::new();
    store.insert_unreadable("web", "truncated JSON at line 1 column 40");
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(
        berth_core::runtime::LABEL_NODE.to_string(),
        "n1".to_string(),
    );
    labels.insert(
        berth_core::runtime::LABEL_SERVICE.to_string(),
        "web".to_string(),
    );
    runtime.add_foreign("t-web", labels);
    let node = start_with(Clocked::new(Seams { runtime, store }));
    deploy(&node.handle, vec![spec("api", "demo:1")]).await;
    let snap = node.handle.snapshot();
    let web = &snap.services["web"];
    assert!(
        web.unreadable
            .as_deref()
            .is_some_and(|u| u.contains("truncated")),
        "{web:?}"
    );
    assert_eq!(snap.node.summary.unreadable, 1);
    assert!(node.rt().container_by_name("t-web").is_some(), "left alone");
    assert!(
        !node
            .rt()
            .mutating_calls()
            .iter()
            .any(|c| matches!(c, Call::Remove(_)))
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_is_shown_and_retried() {
    let node = start();
    node.rt().set_unreachable(true);
    let r = apply(&node.handle, vec![spec("web", "demo:1")]).await;
    // Nothing is lost: the deployment waits for the engine instead of failing.
    let d = r.results[0].deployment.clone().expect("rec");
    assert_eq!(d.status, Status::Pending);
    assert!(
        d.status_reason.contains("waiting for the container engine"),
        "{}",
        d.status_reason
    );
    eventually("engine shown unreachable", || {
        !node.handle.snapshot().node.engine.reachable
    })
    .await;
    node.rt().set_unreachable(false);
    eventually("engine back", || {
        node.handle.snapshot().node.engine.reachable
    })
    .await;
    let d = wait_status(&node.handle, &d.id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.image_id.as_deref(), Some("sha256:one"));
    node.stop().await;
}

fn spec_file(path: &str, content: &str, services: Vec<ServiceSpec>) -> berth_agent::SpecFile {
    berth_agent::SpecFile {
        path: path.into(),
        content_hash: berth_core::hash::sha256_hex(content.as_bytes()),
        services: Ok(services),
    }
}

#[tokio::test(start_paused = true)]
async fn spec_dir_files_apply_only_when_their_content_changes() {
    let node = start();
    let f = spec_file("/specs/web.yaml", "v1", vec![spec("web", "demo:1")]);
    let problems = node
        .handle
        .spec_dir(vec![f.clone()])
        .await
        .expect("spec dir");
    assert!(problems.is_empty(), "{problems:?}");
    eventually("web created", || {
        node.rt().container_by_name("t-web").is_some()
    })
    .await;
    let h = node.handle.history("web", 10).await.expect("history");
    assert_eq!(h.len(), 1);
    wait_status(&node.handle, &h[0].id).await;

    // The same file again (a restart, a SIGHUP): nothing happens.
    node.handle
        .spec_dir(vec![f.clone()])
        .await
        .expect("spec dir");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        node.handle.history("web", 10).await.expect("history").len(),
        1
    );

    // Another file may not take web over.
    let other = spec_file("/specs/other.yaml", "x", vec![spec("web", "demo:2")]);
    let problems = node
        .handle
        .spec_dir(vec![f.clone(), other])
        .await
        .expect("spec dir");
    assert!(
        problems.iter().any(|p| p.contains("owned by")),
        "{problems:?}"
    );

    // The file changes: web is updated.
    let f2 = spec_file("/specs/web.yaml", "v2", vec![spec("web", "demo:2")]);
    node.handle.spec_dir(vec![f2]).await.expect("spec dir");
    eventually("web updated", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.req.spec.image == "sha256:two")
    })
    .await;

    // An invalid file leaves its services alone.
    let bad = berth_agent::SpecFile {
        path: "/specs/web.yaml".into(),
        content_hash: "bad".into(),
        services: Err("/specs/web.yaml:1:1: name: missing".into()),
    };
    let problems = node.handle.spec_dir(vec![bad]).await.expect("spec dir");
    assert!(
        problems.iter().any(|p| p.contains("invalid")),
        "{problems:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(node.rt().container_by_name("t-web").is_some());

    // The file is removed: web is deleted.
    node.handle.spec_dir(vec![]).await.expect("spec dir");
    eventually("web removed", || {
        node.rt().container_by_name("t-web").is_none()
    })
    .await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_policy_only_change_makes_a_record_and_touches_no_container() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    node.rt().clear_calls();
    let mut s = spec("web", "demo:1");
    s.update.health_timeout = Duration::from_secs(30);
    let r = apply(&node.handle, vec![s]).await;
    assert_eq!(r.results[0].change, Change::PolicyOnly);
    assert_eq!(r.results[0].diff[0].field, "update.health_timeout");
    let d = wait_status(
        &node.handle,
        &r.results[0].deployment.as_ref().expect("rec").id,
    )
    .await;
    assert_eq!(d.status, Status::Complete);
    assert_eq!(d.generation, 2);
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn finished_task_containers_are_garbage_collected() {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Clocked::new(Seams {
        runtime,
        store: MemStore::new(),
    });
    let mut c = cfg();
    c.task_gc_after = Duration::from_millis(300);
    let (agent, handle) = Agent::new(env.clone(), c).expect("agent");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    let mut t = spec("job", "demo:1");
    t.kind = Kind::Task;
    let r = apply(&handle, vec![t]).await;
    let id = r.results[0].deployment.clone().expect("rec").id;
    eventually("task runs", || {
        env.runtime
            .container_by_name("t-job")
            .is_some_and(|c| c.state == ContainerState::Running)
    })
    .await;
    env.runtime.exit("t-job", 0, "done\n", "");
    let d = wait_status(&handle, &id).await;
    assert_eq!(d.status, Status::Complete);
    eventually("exited task container removed", || {
        env.runtime.container_by_name("t-job").is_none()
    })
    .await;
    let d = handle.deployment(&id).await.expect("record stays");
    assert_eq!(d.outputs.deploy_stdout.as_deref(), Some("done\n"));
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test(start_paused = true)]
async fn built_images_no_record_uses_are_removed() {
    let runtime = FakeRuntime::new("n1");
    let env = Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: NoHost,
        watcher: NoWatcher,
        files: FakeFiles::new(),
    });
    let mut c = cfg();
    c.history_limit = 2;
    let (agent, handle) = Agent::new(env.clone(), c).expect("agent");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    // A context whose content hashes differently at each version n.
    let ctx = "/berth-test/ctx";
    let built = |n: u32| {
        env.files
            .set_context_hash(ctx, &format!("{n:016x}{}", "a".repeat(48)));
        let mut s = spec("app", "unused");
        s.image = ImageSource::Build {
            build: berth_core::spec::BuildSpec {
                context: ctx.to_string(),
                dockerfile: None,
            },
        };
        s
    };
    let mut ids = Vec::new();
    for n in 1..=3 {
        let r = apply(&handle, vec![built(n)]).await;
        let d = wait_status(&handle, &r.results[0].deployment.clone().expect("rec").id).await;
        assert_eq!(d.status, Status::Complete);
        ids.push(d.image_id.expect("built image"));
    }
    let images = |rt: &FakeRuntime| {
        let rt = rt.clone();
        async move {
            rt.list_images("berth-build/app:")
                .await
                .expect("list")
                .into_iter()
                .map(|i| i.id)
                .collect::<Vec<_>>()
        }
    };
    // History keeps generations 2 and 3: the first build is unreferenced.
    for _ in 0..100 {
        if !images(&env.runtime).await.contains(&ids[0]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let left = images(&env.runtime).await;
    assert!(!left.contains(&ids[0]), "{left:?}");
    assert!(left.contains(&ids[1]) && left.contains(&ids[2]), "{left:?}");
    // The same context again is not rebuilt.
    env.runtime.clear_calls();
    let r = apply(&handle, vec![built(3)]).await;
    assert_eq!(r.results[0].change, Change::Unchanged);
    assert!(
        !env.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Build(_)))
    );
    let _ = stop.send(());
    let _ = task.await;
}

#[tokio::test(start_paused = true)]
async fn restart_is_an_event_not_a_record() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web").id;
    let v = node
        .handle
        .verb("web", Verb::Restart, "test")
        .await
        .expect("restart");
    assert!(v.deployment.is_none());
    assert_eq!(v.message, "restarting t-web");
    eventually("restart reported", || {
        node.handle
            .events_since(0)
            .events
            .iter()
            .any(|e| e.kind.summary().contains("restarted t-web"))
    })
    .await;
    assert!(node.rt().calls().contains(&Call::Restart(before.clone())));
    assert_eq!(
        node.rt().container_by_name("t-web").expect("web").id,
        before
    );
    assert_eq!(
        node.handle.history("web", 10).await.expect("history").len(),
        1
    );
    node.handle
        .verb("web", Verb::Hold, "test")
        .await
        .expect("hold");
    let err = node
        .handle
        .verb("web", Verb::Restart, "test")
        .await
        .expect_err("held");
    assert_eq!(err.to_string(), "web is held; `berthctl release` it first");
    node.stop().await;
}

/// Issue 29 item 9: `berthctl stop web` on a service whose record berthd
/// could not read said "no service named web". Every verb (and logs) now
/// names the record file and the problem, and says what to do.
#[tokio::test(start_paused = true)]
async fn a_verb_on_a_service_with_an_unreadable_record_names_the_file() {
    let store = MemStore::new();
    store.insert_unreadable("web", "it is a symlink (to /etc/shadow)");
    let node = start_with(Clocked::new(Seams {
        runtime: FakeRuntime::new("n1"),
        store,
    }));
    for verb in [
        Verb::Stop,
        Verb::Start,
        Verb::Restart,
        Verb::Hold,
        Verb::Release,
        Verb::Delete,
        Verb::Rollback { generation: None },
        Verb::Reconfigure,
    ] {
        let err = node
            .handle
            .verb("web", verb, "uid:0")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, berth_agent::AgentError::Refused { .. }),
            "{verb:?}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("web has an unreadable record mem://services/web/current.json")
                && text.contains("it is a symlink (to /etc/shadow)")
                && text.contains("restart berthd"),
            "{verb:?}: {text}"
        );
    }
    let err = node
        .handle
        .logs("web", Default::default())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unreadable record"), "{err}");
    // A service that does not exist is still "no service named".
    assert!(matches!(
        node.handle.verb("nope", Verb::Stop, "uid:0").await,
        Err(berth_agent::AgentError::NoSuchService { .. })
    ));
    node.stop().await;
}

/// `exit_codes`: a task that exits with one of them is COMPLETE (its reason
/// names the code), with another FAILED.
#[tokio::test(start_paused = true)]
async fn a_task_succeeds_with_any_of_its_exit_codes() {
    let node = start();
    let mut t = spec("setup", "demo:1");
    t.kind = Kind::Task;
    t.exit_codes = vec![0, 2];
    for (run, code, want) in [(1, 2, Status::Complete), (2, 3, Status::Failed)] {
        t.env.insert(
            "RUN".into(),
            berth_core::spec::EnvValue::plain(run.to_string()),
        );
        let r = apply(&node.handle, vec![t.clone()]).await;
        let id = r.results[0].deployment.clone().expect("record").id;
        eventually("the task runs", || {
            node.rt().container_by_name("t-setup").is_some_and(|c| {
                c.state == ContainerState::Running
                    && c.req.spec.env.get("RUN") == Some(&run.to_string())
            })
        })
        .await;
        node.rt().exit("t-setup", code, "", "");
        let d = wait_status(&node.handle, &id).await;
        assert_eq!(d.status, want, "exit {code}: {}", d.status_reason);
        assert!(
            d.status_reason.contains(&format!("code {code}")),
            "{}",
            d.status_reason
        );
        assert_eq!(d.outputs.deploy_status_code, Some(code));
    }
    node.stop().await;
}
