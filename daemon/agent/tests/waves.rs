//! Ordered waves in the loop: `depends_on` and `inputs` against the fake
//! engine, the in-memory store and in-memory files. The controller upgrade
//! (api-disable → db-migrate → api → api-enable) runs in order, each step
//! once per upgrade, with one step's output feeding the next one's input.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_agent::HostSeams;
use berth_core::dto::Change;
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::{Condition, Dependency, InputSource, Kind, OutputRef, ServiceSpec};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

mod common;
use common::*;

type WaveEnv = Clocked<HostSeams<FakeRuntime, MemStore, berth_agent::NoHost, NoWatcher, FakeFiles>>;

fn node() -> Running<WaveEnv> {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: berth_agent::NoHost,
        watcher: NoWatcher,
        files: FakeFiles::new(),
    });
    run_agent(env, cfg())
}

fn needs(mut s: ServiceSpec, on: &str, condition: Condition) -> ServiceSpec {
    s.depends_on.push(Dependency {
        service: on.into(),
        condition,
    });
    s
}

fn task(name: &str) -> ServiceSpec {
    let mut t = spec(name, "demo:1");
    t.kind = Kind::Task;
    t
}

/// The controller upgrade at `release`, in an order that is not the wave's.
fn upgrade(release: &str) -> Vec<ServiceSpec> {
    let with_release = |mut s: ServiceSpec| {
        s.inputs
            .insert("release".into(), InputSource::Value(release.into()));
        s
    };
    let disable = with_release(task("api-disable"));
    let mut migrate = with_release(needs(
        task("db-migrate"),
        "api-disable",
        Condition::Completed,
    ));
    migrate.outputs = vec!["version".into()];
    let mut api = with_release(spec("api", "demo:1"));
    api.inputs.insert(
        "schema_version".into(),
        InputSource::From {
            from: OutputRef::parse("db-migrate.outputs.version").expect("a ref"),
        },
    );
    let enable = with_release(needs(task("api-enable"), "api", Condition::Ended));
    vec![enable, api, migrate, disable]
}

async fn newest(node: &Running<WaveEnv>, service: &str) -> Deployment {
    node.handle
        .history(service, 1)
        .await
        .expect("history")
        .into_iter()
        .next()
        .expect("a record")
}

/// `service`'s newest record once `ready` holds for it (the loop takes a
/// step or two to say so).
async fn newest_when(
    node: &Running<WaveEnv>,
    service: &str,
    ready: impl Fn(&Deployment) -> bool,
) -> Deployment {
    for _ in 0..200 {
        let d = newest(node, service).await;
        if ready(&d) {
            return d;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "{service}: timed out; last {:?}",
        newest(node, service).await
    );
}

fn running(node: &Running<WaveEnv>, service: &str) -> bool {
    node.env
        .runtime
        .container_by_name(&format!("t-{service}"))
        .is_some_and(|c| c.state == ContainerState::Running)
}

fn creates(node: &Running<WaveEnv>, service: &str) -> usize {
    let name = format!("t-{service}");
    let next = format!("t-{service}.next-");
    node.env
        .runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Create(n) if *n == name || n.starts_with(&next)))
        .count()
}

fn outputs_dir(service: &str) -> PathBuf {
    cfg().state_dir.join("outputs").join(service)
}

/// Runs a task that waits for its turn: it starts, writes `outputs`, exits 0.
async fn run_task(node: &Running<WaveEnv>, service: &str, outputs: &[(&str, &str)]) {
    let what = format!("{service} started");
    eventually(&what, || running(node, service)).await;
    for (name, value) in outputs {
        node.env.files.set_output(outputs_dir(service), name, value);
    }
    node.env
        .runtime
        .exit(&format!("t-{service}"), 0, "done\n", "");
    let id = newest(node, service).await.id;
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{service}: {}", d.status_reason);
}

/// One whole upgrade at `release`: each step runs once, in order.
async fn run_upgrade(node: &Running<WaveEnv>, release: &str, version: &str) {
    let before: BTreeMap<&str, usize> = ["api-disable", "db-migrate", "api", "api-enable"]
        .into_iter()
        .map(|s| (s, creates(node, s)))
        .collect();
    let r = apply(&node.handle, upgrade(release)).await;
    let order: Vec<&str> = r.results.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(
        order,
        ["api-disable", "db-migrate", "api", "api-enable"],
        "recorded dependencies first"
    );
    // Only api-disable may go: the others wait, saying for what.
    run_task(node, "api-disable", &[]).await;
    let api = newest(node, "api").await;
    assert!(api.waiting && api.status == Status::Pending, "{api:?}");
    run_task(node, "db-migrate", &[("version", &format!("{version}\n"))]).await;
    let enable = newest(node, "api-enable").await;
    assert!(
        enable.waiting && enable.status_reason.contains("waiting for api"),
        "{enable:?}"
    );
    let api = wait_status(&node.handle, &api.id).await;
    assert_eq!(api.status, Status::Complete, "{}", api.status_reason);
    assert_eq!(api.inputs["schema_version"], version, "one newline less");
    assert_eq!(api.inputs["release"], release);
    let c = node
        .env
        .runtime
        .container_by_name("t-api")
        .expect("api runs");
    assert_eq!(c.req.spec.env["BERTH_INPUT_SCHEMA_VERSION"], version);
    assert_eq!(c.req.spec.env["BERTH_INPUT_RELEASE"], release);
    let dir = cfg()
        .state_dir
        .join("inputs/api")
        .join(format!("g{}", api.generation));
    assert_eq!(
        c.req.spec.inputs.as_ref().map(|i| PathBuf::from(&i.dir)),
        Some(dir.clone())
    );
    assert_eq!(node.env.files.inputs_in(&dir), api.inputs, "the files");
    run_task(node, "api-enable", &[]).await;
    for (service, n) in before {
        assert_eq!(
            creates(node, service),
            n + 1,
            "{service} ran exactly once at {release}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_controller_upgrade_runs_in_order_once_per_upgrade() {
    let node = node();
    run_upgrade(&node, "v1", "1").await;
    // The same apply again: nothing runs, nothing is recorded.
    let r = apply(&node.handle, upgrade("v1")).await;
    assert!(
        r.results.iter().all(|r| r.change == Change::Unchanged),
        "{:?}",
        r.results
    );
    run_upgrade(&node, "v2", "2").await;
    run_upgrade(&node, "v3", "3").await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_holds_its_dependents_and_a_reapply_resumes_there() {
    let node = node();
    run_upgrade(&node, "v1", "1").await;
    apply(&node.handle, upgrade("v2")).await;
    run_task(&node, "api-disable", &[]).await;
    eventually("db-migrate started", || running(&node, "db-migrate")).await;
    node.env.runtime.exit("t-db-migrate", 3, "", "boom\n");
    let failed = wait_status(&node.handle, &newest(&node, "db-migrate").await.id).await;
    assert_eq!(failed.status, Status::Failed);
    // Its dependents stay PENDING, saying why; the old api keeps running.
    let api = newest_when(&node, "api", |d| d.status_reason.contains("FAILED")).await;
    assert_eq!(api.status, Status::Pending);
    assert!(
        api.status_reason.contains("db-migrate") && api.status_reason.contains("FAILED"),
        "{}",
        api.status_reason
    );
    assert!(running(&node, "api"), "the old api is left alone");
    let disables = creates(&node, "api-disable");
    // The fixed migration applied with the rest: api-disable completed at
    // this release and is not run again; the wave goes on from db-migrate.
    let mut fixed = upgrade("v2");
    fixed[2]
        .env
        .insert("FIXED".into(), berth_core::spec::EnvValue::plain("1"));
    let r = apply(&node.handle, fixed).await;
    let change = |s: &str| {
        r.results
            .iter()
            .find(|r| r.service == s)
            .map(|r| r.change)
            .expect("in the results")
    };
    assert_eq!(change("api-disable"), Change::Unchanged);
    assert_eq!(change("db-migrate"), Change::Updated);
    assert_eq!(change("api"), Change::Unchanged, "still waiting, same spec");
    run_task(&node, "db-migrate", &[("version", "2")]).await;
    let api = wait_status(&node.handle, &api.id).await;
    assert_eq!(api.status, Status::Complete, "{}", api.status_reason);
    assert_eq!(api.inputs["schema_version"], "2");
    run_task(&node, "api-enable", &[]).await;
    assert_eq!(creates(&node, "api-disable"), disables, "not run twice");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_moved_output_gives_each_dependent_a_new_deployment() {
    let node = node();
    run_upgrade(&node, "v1", "1").await;
    let api_before = newest(&node, "api").await;
    // db-migrate alone, changed: its new output reaches api by itself.
    let mut migrate = upgrade("v1").remove(2);
    migrate
        .env
        .insert("AGAIN".into(), berth_core::spec::EnvValue::plain("1"));
    apply(&node.handle, vec![migrate]).await;
    run_task(&node, "db-migrate", &[("version", "7\n")]).await;
    eventually("api redeployed", || {
        node.env
            .runtime
            .container_by_name("t-api")
            .is_some_and(|c| {
                c.req
                    .spec
                    .env
                    .get("BERTH_INPUT_SCHEMA_VERSION")
                    .map(String::as_str)
                    == Some("7")
            })
    })
    .await;
    let api = newest(&node, "api").await;
    assert_eq!(api.generation, api_before.generation + 1);
    assert_eq!(api.actor, "berthd");
    assert!(
        api.status_reason.is_empty() || api.status == Status::Complete,
        "{api:?}"
    );
    let api = wait_status(&node.handle, &api.id).await;
    assert_eq!(api.status, Status::Complete, "{}", api.status_reason);
    assert_eq!(api.inputs["schema_version"], "7");
    // Unchanged output: no new deployment.
    let mut same = upgrade("v1").remove(2);
    same.env
        .insert("AGAIN".into(), berth_core::spec::EnvValue::plain("2"));
    apply(&node.handle, vec![same]).await;
    run_task(&node, "db-migrate", &[("version", "7")]).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(newest(&node, "api").await.generation, api.generation);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn cycles_and_missing_names_are_refused_before_anything_runs() {
    let node = node();
    let cycle = vec![
        needs(spec("a", "demo:1"), "b", Condition::Started),
        needs(spec("b", "demo:1"), "c", Condition::Started),
        needs(spec("c", "demo:1"), "a", Condition::Started),
    ];
    let e = apply_from(&node.handle, cycle, berth_core::record::Source::Api, false)
        .await
        .expect_err("a cycle");
    assert!(e.to_string().contains("a → b → c → a"), "{e}");
    let missing = vec![needs(spec("a", "demo:1"), "nosuch", Condition::Healthy)];
    let e = apply_from(
        &node.handle,
        missing,
        berth_core::record::Source::Api,
        false,
    )
    .await
    .expect_err("missing");
    assert!(e.to_string().contains("nosuch is neither"), "{e}");
    let mut bad_output = upgrade("v1");
    bad_output[2].outputs = vec!["other".into()];
    let e = apply_from(
        &node.handle,
        bad_output,
        berth_core::record::Source::Api,
        false,
    )
    .await
    .expect_err("missing output");
    assert!(
        e.to_string()
            .contains("db-migrate declares no output \"version\""),
        "{e}"
    );
    assert!(node.env.runtime.mutating_calls().is_empty(), "nothing ran");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn berthd_restarted_mid_wave_resumes_from_its_records() {
    let first = node();
    apply(&first.handle, upgrade("v1")).await;
    run_task(&first, "api-disable", &[]).await;
    eventually("db-migrate started", || running(&first, "db-migrate")).await;
    let env = first.stop().await;
    env.runtime.clear_calls();
    // berthd is away while db-migrate finishes.
    env.files
        .set_output(outputs_dir("db-migrate"), "version", "1");
    env.runtime.exit("t-db-migrate", 0, "", "");
    let node = run_agent(env, cfg());
    let migrate = wait_status(&node.handle, &newest(&node, "db-migrate").await.id).await;
    assert_eq!(
        migrate.status,
        Status::Complete,
        "{}",
        migrate.status_reason
    );
    assert_eq!(migrate.outputs.declared["version"], "1");
    let api = wait_status(&node.handle, &newest(&node, "api").await.id).await;
    assert_eq!(api.status, Status::Complete, "{}", api.status_reason);
    assert_eq!(api.inputs["schema_version"], "1");
    run_task(&node, "api-enable", &[]).await;
    assert_eq!(
        creates(&node, "api-disable") + creates(&node, "db-migrate"),
        0,
        "a completed step is not run again after the restart"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dependency_in_another_spec_dir_file_is_waited_for() {
    let node = node();
    let mut steps = upgrade("v1");
    let (disable, migrate) = (steps.pop().expect("disable"), steps.pop().expect("migrate"));
    let file = |path: &str, services: Vec<ServiceSpec>| berth_agent::SpecFile {
        path: path.into(),
        content_hash: format!("hash of {path}"),
        services: Ok(services),
    };
    // The dependents' file sorts (and is applied) first.
    let problems = node
        .handle
        .spec_dir(vec![
            file("/etc/berth/services.d/a-api.yaml", steps),
            file("/etc/berth/services.d/b-db.yaml", vec![migrate, disable]),
        ])
        .await
        .expect("scanned");
    assert!(problems.is_empty(), "{problems:?}");
    run_task(&node, "api-disable", &[]).await;
    let api = newest_when(&node, "api", |d| d.waiting).await;
    assert!(!running(&node, "api"), "api waits for db-migrate");
    run_task(&node, "db-migrate", &[("version", "1")]).await;
    let api = wait_status(&node.handle, &api.id).await;
    assert_eq!(api.status, Status::Complete, "{}", api.status_reason);
    assert_eq!(api.inputs["schema_version"], "1");
    run_task(&node, "api-enable", &[]).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_api_that_rolls_back_still_lets_api_enable_run_and_stays_rolled_back() {
    let node = node();
    run_upgrade(&node, "v1", "1").await;
    run_upgrade(&node, "v2", "2").await;
    let mut v3 = upgrade("v3");
    v3[1].healthcheck = Some(berth_core::spec::Healthcheck {
        test: None,
        exec: vec!["/demo".into(), "health".into()],
        interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
        retries: 1,
        start_period: None,
    });
    apply(&node.handle, v3).await;
    run_task(&node, "api-disable", &[]).await;
    run_task(&node, "db-migrate", &[("version", "3")]).await;
    let update = newest_when(&node, "api", |d| !d.waiting).await;
    eventually("the v3 api runs", || {
        node.env
            .runtime
            .container_by_name("t-api")
            .is_some_and(|c| c.state == ContainerState::Running && c.req.spec.healthcheck.is_some())
    })
    .await;
    node.env
        .runtime
        .set_health("t-api", berth_core::runtime::Health::Unhealthy);
    let failed = wait_status(&node.handle, &update.id).await;
    assert_eq!(
        failed.status,
        Status::RolledBack,
        "{}",
        failed.status_reason
    );
    run_task(&node, "api-enable", &[]).await;
    assert_eq!(creates(&node, "api-enable"), 3, "once per upgrade, v3 too");
    let rollback = newest(&node, "api").await;
    assert_eq!(rollback.action, berth_core::record::DeployAction::Rollback);
    assert_eq!(
        rollback.inputs["schema_version"], "2",
        "the inputs it restored"
    );
    // db-migrate's output moved to 3, but the rollback stays: no berthd
    // deployment takes api forward again.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let still = newest(&node, "api").await;
    assert_eq!(still.generation, rollback.generation, "{still:?}");
    assert_eq!(still.status, Status::Complete);
    node.stop().await;
}
