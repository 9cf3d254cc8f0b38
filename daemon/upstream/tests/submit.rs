//! `Upstream` on the agent with the fake engine and the in-memory store:
//! idempotency by document id, refusals, DELETE documents, and the outbox
//! rules that need no server (unsupported transports, the signal host
//! policy).

use std::time::Duration;

use berth_core::heat::outbox::EntryState;
use berth_core::policy::NodePolicy;
use berth_upstream::{Origin, OutboxCounts, Upstream, UpstreamError};
use serde_json::{Value, json};

mod common;
use common::{start, wait_for};

fn push() -> Origin {
    Origin::Push {
        actor: "tester".into(),
        check_policy: true,
    }
}

fn doc(id: &str, services: Value, inputs: Value) -> Value {
    json!({"id": id, "group": "berth", "config": services, "inputs": inputs,
           "outputs": [], "options": {}})
}

fn svc(name: &str) -> Value {
    json!({"name": name, "image": "demo:1", "update": {"settle": "100ms"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_is_idempotent_and_another_body_conflicts() {
    let n = start(NodePolicy::default());
    let zaqar = json!([{"name": "deploy_queue_id", "value": "q1"}]);
    let d = doc("d1", json!([svc("a"), svc("b")]), zaqar.clone());
    let first = n.up.submit(d.clone(), push()).await.expect("accepted");
    assert!(!first.unchanged);
    assert_eq!(first.services, ["a", "b"]);
    assert_eq!(first.deployments.len(), 2);
    let again = n.up.submit(d.clone(), push()).await.expect("accepted");
    assert!(again.unchanged);
    assert_eq!(
        again.deployments.iter().map(|d| &d.id).collect::<Vec<_>>(),
        first.deployments.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
    let other = doc("d1", json!([svc("a")]), zaqar);
    assert!(matches!(
        n.up.submit(other, push()).await,
        Err(UpstreamError::Conflict { .. })
    ));
    // Done only once the signal is queued; ZAQAR is dead-lettered at once,
    // never dropped silently.
    wait_for("the signal queued and dead", || {
        n.up.outbox_view()
            .expect("view")
            .iter()
            .any(|e| e.state == EntryState::Dead)
    })
    .await;
    let view = n.up.outbox_view().expect("view");
    assert_eq!(view.len(), 1);
    assert!(
        view[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("ZAQAR_SIGNAL")),
        "{view:?}"
    );
    let looked = n.up.lookup("d1").await.expect("known");
    assert!(looked.done);
    assert!(n.up.lookup("nope").await.is_none());
    let stats = n.up.outbox_stats();
    assert_eq!((stats.depth, stats.dead), (0, 1));
    assert_eq!(n.up.outbox_counts(), n.counts_on_disk());
    // retry puts it back; it dies again; drop removes it.
    let seq = view[0].seq;
    n.up.retry(seq).expect("retry");
    wait_for("dead again", || n.up.outbox_stats().dead == 1).await;
    assert_eq!(n.up.outbox_counts(), n.counts_on_disk());
    assert!(n.up.drop(seq).expect("drop"));
    assert_eq!(n.up.outbox_counts(), OutboxCounts::default());
    assert_eq!(n.up.outbox_counts(), n.counts_on_disk());
    assert!(n.up.outbox_view().expect("view").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_reason_and_apply_nothing() {
    let n = start(NodePolicy::default());
    let foreign = json!({"id": "s1", "group": "script", "config": "echo", "inputs": []});
    match n.up.submit(foreign, push()).await {
        Err(UpstreamError::NotOurs { group }) => assert_eq!(group, "script"),
        other => panic!("{other:?}"),
    }
    let mut bad = svc("x");
    bad["imagee"] = json!("y");
    match n
        .up
        .submit(doc("b1", json!([svc("ok"), bad]), json!([])), push())
        .await
    {
        Err(UpstreamError::Invalid { path, .. }) => {
            assert!(path.starts_with("config[1]"), "{path}")
        }
        other => panic!("{other:?}"),
    }
    let mut privileged = svc("p");
    privileged["privileged"] = json!(true);
    match n
        .up
        .submit(doc("p1", json!([privileged]), json!([])), push())
        .await
    {
        Err(UpstreamError::Policy(v)) => assert_eq!(v[0].rule, "allow_privileged"),
        other => panic!("{other:?}"),
    }
    assert!(n.handle.snapshot().services.is_empty());
    assert!(n.up.lookup("b1").await.is_none());
}

/// Issue 29 items 3, 4 and 9 through a Heat document: the same rules as
/// the API's, host paths resolved with the filesystem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_documents_get_the_whole_node_policy() {
    let allowed = tempfile::tempdir().expect("tmp");
    let root = std::fs::canonicalize(allowed.path()).expect("canonical");
    std::os::unix::fs::symlink("/", root.join("rootlink")).expect("symlink");
    let n = start(NodePolicy {
        allowed_host_paths: vec![root.to_string_lossy().into_owned()],
        container_prefix: "t-".into(),
        ..NodePolicy::default()
    });
    let with = |key: &str, value: Value| {
        let mut s = svc("x");
        s[key] = value;
        s
    };
    for (i, (spec, rule, field)) in [
        (
            with(
                "volumes",
                json!([format!("{}/rootlink:/host", root.display())]),
            ),
            "allowed_host_paths",
            "config[0].volumes[0]",
        ),
        (
            with("cap_add", json!(["SYS_PTRACE"])),
            "allow_privileged",
            "config[0].cap_add[0]",
        ),
        (
            with("security_opt", json!(["label=disable"])),
            "allow_privileged",
            "config[0].security_opt[0]",
        ),
        (
            with("pid", json!("container:dockerd")),
            "allow_privileged",
            "config[0].pid",
        ),
        (
            with("volumes", json!(["pgdata:/data"])),
            "allowed_volumes",
            "config[0].volumes[0]",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        match n
            .up
            .submit(doc(&format!("d{i}"), json!([spec]), json!([])), push())
            .await
        {
            Err(UpstreamError::Policy(v)) => {
                assert_eq!((v[0].rule, v[0].field.as_str()), (rule, field), "{v:?}")
            }
            other => panic!("{rule} {field}: {other:?}"),
        }
    }
    assert!(n.handle.snapshot().services.is_empty());
    // A join of a service in the same document that the policy allows.
    let ok = json!([svc("db"), with("pid", json!("container:t-db"))]);
    n.up.submit(doc("ok", ok, json!([])), push())
        .await
        .expect("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_to_a_host_the_policy_does_not_allow_is_a_dead_letter() {
    let n = start(NodePolicy {
        allowed_signal_hosts: vec!["heat.example.org".into()],
        ..Default::default()
    });
    let inputs = json!([{"name": "deploy_signal_id",
                         "value": "http://127.0.0.1:9/signal?Signature=secret"}]);
    n.up.submit(doc("h1", json!([svc("a")]), inputs), push())
        .await
        .expect("accepted");
    wait_for("a dead letter", || n.up.outbox_stats().dead == 1).await;
    let view = n.up.outbox_view().expect("view");
    let err = view[0].last_error.clone().unwrap_or_default();
    assert!(err.contains("allowed_signal_hosts"), "{err}");
    assert!(
        !err.contains("secret") && !view[0].target.contains("secret"),
        "{view:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_document_deletes_its_services() {
    let n = start(NodePolicy::default());
    let none = json!([{"name": "deploy_signal_transport", "value": "NO_SIGNAL"}]);
    n.up.submit(doc("c1", json!([svc("a")]), none.clone()), push())
        .await
        .expect("accepted");
    wait_done(&n.up, "c1").await;
    let mut inputs = none.as_array().cloned().unwrap_or_default();
    inputs.push(json!({"name": "deploy_action", "value": "DELETE"}));
    let del =
        n.up.submit(
            doc("c2", json!([svc("a"), svc("never")]), json!(inputs)),
            push(),
        )
        .await
        .expect("accepted");
    assert!(del.delete);
    wait_done(&n.up, "c2").await;
    let d = n
        .handle
        .deployment(&del.deployments[0].id)
        .await
        .expect("record");
    assert_eq!(d.action, berth_core::record::DeployAction::Delete);
    assert!(
        n.up.outbox_view().expect("view").is_empty(),
        "NO_SIGNAL queues nothing"
    );
}

/// Waits until the document's signal is queued (it is done).
async fn wait_done(up: &Upstream, id: &str) {
    for _ in 0..200 {
        if up.lookup(id).await.is_some_and(|s| s.done) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for document {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_delete_does_not_remove_a_pushed_service() {
    let n = start(NodePolicy::default());
    let none = json!([{"name": "deploy_signal_transport", "value": "NO_SIGNAL"}]);
    n.up.submit(doc("e1", json!([svc("a")]), none), push())
        .await
        .expect("accepted");
    let del = json!([{"name": "deploy_action", "value": "DELETE"}]);
    match n
        .up
        .submit(doc("e2", json!([svc("a")]), del), Origin::Pull)
        .await
    {
        Err(UpstreamError::Agent(berth_agent::AgentError::Conflict { service, owner })) => {
            assert_eq!((service.as_str(), owner.as_str()), ("a", "api"));
        }
        other => panic!("{other:?}"),
    }
    assert!(n.up.lookup("e2").await.is_none());
}

/// A new document naming an exec task runs it again, its spec unchanged
/// (heat-config runs a docker-cmd document's execs on every document);
/// the same document again does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_document_naming_an_exec_task_runs_it_again() {
    let n = start(NodePolicy::default());
    let exec = json!({"name": "bootstrap", "kind": "task", "exec_in": "a",
                      "command": ["/demo", "bootstrap"]});
    let first = doc("d1", json!([svc("a"), exec.clone()]), json!([]));
    let one = n.up.submit(first.clone(), push()).await.expect("accepted");
    wait_done(&n.up, "d1").await;
    let again = n.up.submit(first, push()).await.expect("accepted");
    assert!(again.unchanged, "the same document runs nothing");
    let second = doc("d2", json!([svc("a"), exec]), json!([]));
    let two = n.up.submit(second, push()).await.expect("accepted");
    let id = |s: &berth_upstream::Submitted| {
        s.deployments
            .iter()
            .find(|d| d.service == "bootstrap")
            .map(|d| d.id.clone())
            .expect("the exec task's deployment")
    };
    let hist = n.handle.history("bootstrap", 10).await.expect("history");
    assert_ne!(
        id(&one),
        id(&two),
        "a new run for the new document: {two:?} {hist:?}"
    );
    wait_done(&n.up, "d2").await;
    let runs: Vec<_> = n
        .handle
        .history("bootstrap", 10)
        .await
        .expect("history")
        .into_iter()
        .filter(|d| d.exec_container.is_some())
        .collect();
    assert_eq!(runs.len(), 2, "one run per document: {runs:?}");
}
