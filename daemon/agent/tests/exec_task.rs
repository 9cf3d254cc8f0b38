//! `exec_in` tasks in the loop (paunch's `action: exec`): the command runs
//! in the named service's running container, never in a container of its
//! own; its output and exit code are the deployment's; it runs once the
//! service is started, again when its spec changes or the service gets a
//! new container, and not on an unchanged apply.

use berth_agent::{HostSeams, Verb};
use berth_core::record::{Deployment, Status};
use berth_core::runtime::{ExecOptions, ExecOutput};
use berth_core::spec::{EnvValue, ImageSource, Kind, ServiceSpec};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

mod common;
use common::*;

type ExecEnv = Clocked<HostSeams<FakeRuntime, MemStore, berth_agent::NoHost, NoWatcher, FakeFiles>>;

fn node() -> Running<ExecEnv> {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    runtime.add_image("demo:2", "sha256:two");
    let env = Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: berth_agent::NoHost,
        watcher: NoWatcher,
        files: FakeFiles::new(),
    });
    run_agent(env, cfg())
}

fn bootstrap(argv: &[&str]) -> ServiceSpec {
    let mut s = ServiceSpec {
        name: "keystone_bootstrap".into(),
        image: ImageSource::default(),
        kind: Kind::Task,
        exec_in: Some("keystone".into()),
        command: Some(argv.iter().map(|a| a.to_string()).collect()),
        user: Some("0".into()),
        exit_codes: vec![0, 3],
        ..ServiceSpec::default()
    };
    s.env.insert(
        "TOKEN".into(),
        EnvValue {
            value: "s3cret".into(),
            secret: true,
        },
    );
    s
}

async fn newest(node: &Running<ExecEnv>, service: &str) -> Deployment {
    node.handle
        .history(service, 1)
        .await
        .expect("history")
        .into_iter()
        .next()
        .expect("a record")
}

/// Each exec the fake engine ran: (container, argv).
fn execs(node: &Running<ExecEnv>) -> Vec<(String, Vec<String>)> {
    node.env
        .runtime
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::Exec(id, argv) => Some((id.clone(), argv.clone())),
            _ => None,
        })
        .collect()
}

fn keystone_id(node: &Running<ExecEnv>) -> String {
    node.env
        .runtime
        .container_by_name("t-keystone")
        .expect("keystone runs")
        .id
}

/// Lets the loop take its steps (time is paused: this costs nothing).
async fn settle(_node: &Running<ExecEnv>) {
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

/// The task's newest deployment once it has ended.
async fn ended(node: &Running<ExecEnv>) -> Deployment {
    let id = newest(node, "keystone_bootstrap").await.id;
    wait_status(&node.handle, &id).await
}

#[tokio::test(start_paused = true)]
async fn an_exec_task_runs_in_its_services_container_once_it_is_started() {
    let node = node();
    node.env.runtime.push_exec_result(ExecOutput {
        exit_code: 3,
        stdout: "bootstrapped\n".into(),
        stderr: "a warning\n".into(),
    });
    // Applied together, task first: it waits for keystone to start.
    let r = apply(
        &node.handle,
        vec![
            bootstrap(&["keystone-manage", "bootstrap"]),
            spec("keystone", "demo:1"),
        ],
    )
    .await;
    assert_eq!(r.results.len(), 2);
    let d = ended(&node).await;
    assert_eq!(
        d.status,
        Status::Complete,
        "3 is one of its exit_codes: {}",
        d.status_reason
    );
    assert_eq!(d.outputs.deploy_status_code, Some(3));
    assert_eq!(d.outputs.deploy_stdout.as_deref(), Some("bootstrapped\n"));
    assert_eq!(d.outputs.deploy_stderr.as_deref(), Some("a warning\n"));
    let keystone = keystone_id(&node);
    assert_eq!(d.exec_container.as_deref(), Some(keystone.as_str()));
    assert_eq!(
        execs(&node),
        [(
            keystone.clone(),
            vec!["keystone-manage".to_string(), "bootstrap".into()]
        )]
    );
    assert_eq!(
        node.env.runtime.exec_options(),
        [ExecOptions {
            user: Some("0".into()),
            env: vec!["TOKEN=s3cret".into()],
            privileged: false,
        }]
    );
    // Never a container of its own.
    assert!(
        node.env
            .runtime
            .container_by_name("t-keystone_bootstrap")
            .is_none(),
        "{:?}",
        node.env.runtime.calls()
    );
    assert!(
        !node
            .env
            .runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Create(n) if n.contains("keystone_bootstrap"))),
        "no create for an exec task"
    );

    // The same apply again runs nothing.
    apply(
        &node.handle,
        vec![
            bootstrap(&["keystone-manage", "bootstrap"]),
            spec("keystone", "demo:1"),
        ],
    )
    .await;
    settle(&node).await;
    assert_eq!(execs(&node).len(), 1, "an unchanged apply runs no exec");
}

#[tokio::test(start_paused = true)]
async fn a_failing_exec_fails_its_deployment_and_a_new_container_runs_it_again() {
    let node = node();
    apply(
        &node.handle,
        vec![
            spec("keystone", "demo:1"),
            bootstrap(&["keystone-manage", "bootstrap"]),
        ],
    )
    .await;
    let first = ended(&node).await;
    assert_eq!(first.status, Status::Complete, "{}", first.status_reason);

    // keystone gets a new container: the task runs again, in it.
    node.env.runtime.push_exec_result(ExecOutput {
        exit_code: 1,
        stdout: String::new(),
        stderr: "db unreachable\n".into(),
    });
    apply(&node.handle, vec![spec("keystone", "demo:2")]).await;
    let mut tries = 0;
    let new_keystone = loop {
        tries += 1;
        assert!(tries < 100, "keystone never got its new container");
        settle(&node).await;
        let c = node.env.runtime.container_by_name("t-keystone");
        if let Some(c) = c.filter(|c| c.req.spec.image == "sha256:two") {
            break c.id;
        }
    };
    let mut tries = 0;
    let again = loop {
        tries += 1;
        assert!(tries < 100, "the task never ran again: {:?}", execs(&node));
        let d = ended(&node).await;
        if d.id != first.id {
            break d;
        }
        settle(&node).await;
    };
    assert_eq!(again.actor, "berthd");
    assert_eq!(again.exec_container.as_deref(), Some(new_keystone.as_str()));
    assert_eq!(again.status, Status::Failed);
    assert!(
        again.status_reason.contains("exited with code 1"),
        "{}",
        again.status_reason
    );
    assert_eq!(
        again.outputs.deploy_stderr.as_deref(),
        Some("db unreachable\n")
    );
    let runs = execs(&node);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].0, new_keystone);
    // A failed run is not retried in a loop.
    settle(&node).await;
    assert_eq!(execs(&node).len(), 2);

    // A changed spec runs it again.
    apply(
        &node.handle,
        vec![bootstrap(&["keystone-manage", "bootstrap", "--force"])],
    )
    .await;
    let third = ended(&node).await;
    assert_eq!(third.status, Status::Complete, "{}", third.status_reason);
    assert_eq!(execs(&node).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_exec_task_whose_service_does_not_run_fails_saying_so() {
    let node = node();
    apply(&node.handle, vec![spec("keystone", "demo:1")]).await;
    let k = newest(&node, "keystone").await;
    assert_eq!(
        wait_status(&node.handle, &k.id).await.status,
        Status::Complete
    );
    node.env.runtime.exit("t-keystone", 1, "", "");
    // With restart: always the fake engine would restart it; stop it for good.
    node.handle
        .verb("keystone", Verb::Stop, "test")
        .await
        .expect("stop");
    settle(&node).await;
    apply(
        &node.handle,
        vec![bootstrap(&["keystone-manage", "bootstrap"])],
    )
    .await;
    let d = newest(&node, "keystone_bootstrap").await;
    assert!(
        d.status == Status::Pending && d.status_reason.contains("waiting for keystone"),
        "it waits for keystone to be started: {d:?}"
    );
    assert!(execs(&node).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restart_runs_an_exec_task_again() {
    let node = node();
    apply(
        &node.handle,
        vec![
            spec("keystone", "demo:1"),
            bootstrap(&["keystone-manage", "bootstrap"]),
        ],
    )
    .await;
    let first = ended(&node).await;
    assert_eq!(first.status, Status::Complete, "{}", first.status_reason);
    let r = node
        .handle
        .verb("keystone_bootstrap", Verb::Restart, "uid:0")
        .await
        .expect("restart");
    let again = r.deployment.expect("a new deployment");
    assert_ne!(again.id, first.id);
    let d = wait_status(&node.handle, &again.id).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    assert_eq!(d.actor, "uid:0");
    assert_eq!(execs(&node).len(), 2, "ran again");
}

#[tokio::test(start_paused = true)]
async fn an_exec_task_is_deleted_without_running_and_cannot_be_stopped() {
    let node = node();
    apply(
        &node.handle,
        vec![
            spec("keystone", "demo:1"),
            bootstrap(&["keystone-manage", "bootstrap"]),
        ],
    )
    .await;
    assert_eq!(ended(&node).await.status, Status::Complete);
    let stop = node
        .handle
        .verb("keystone_bootstrap", Verb::Stop, "uid:0")
        .await
        .expect_err("no container to stop");
    assert!(stop.to_string().contains("exec_in task"), "{stop}");
    let deleted = node
        .handle
        .verb("keystone_bootstrap", Verb::Delete, "uid:0")
        .await
        .expect("delete")
        .deployment
        .expect("a DELETE record");
    let d = wait_status(&node.handle, &deleted.id).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    assert_eq!(execs(&node).len(), 1, "a delete runs nothing");
}
