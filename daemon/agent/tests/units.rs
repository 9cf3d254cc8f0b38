//! Host units (`after_units`, `requires_units`) in the loop, against
//! `berth_fakes::FakeHost`, the fake engine and the in-memory store.

use std::time::Duration;

use berth_agent::{Handle, HostSeams};
use berth_core::dto::Change;
use berth_core::event::EventKind;
use berth_core::files::NoFiles;
use berth_core::host::HostError;
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::ServiceSpec;
use berth_core::watch::NoWatcher;
use berth_fakes::FakeHost;
use berth_fakes::{FakeRuntime, MemStore};

mod common;
use common::{Clocked, apply, cfg, eventually, spec, wait_status};

type Env = Clocked<HostSeams<FakeRuntime, MemStore, FakeHost>>;

type Node = common::Running<Env>;

impl Node {
    fn start(units_timeout: Duration) -> Node {
        let runtime = FakeRuntime::new("n1");
        runtime.add_image("demo:1", "sha256:one");
        let env = Clocked::new(HostSeams {
            runtime,
            store: MemStore::new(),
            host: FakeHost::new(),
            watcher: NoWatcher,
            files: NoFiles,
        });
        let mut c = cfg();
        c.units_timeout = units_timeout;
        common::run_agent(env, c)
    }
    fn rt(&self) -> &FakeRuntime {
        &self.env.runtime
    }
    fn host(&self) -> &FakeHost {
        &self.env.host
    }
    fn current(&self, service: &str) -> Option<Deployment> {
        self.handle
            .snapshot()
            .currents
            .get(service)
            .map(|d| (**d).clone())
    }
    fn state(&self, name: &str) -> Option<ContainerState> {
        self.rt().container_by_name(name).map(|c| c.state)
    }
}

fn with_units(mut s: ServiceSpec, after: &[&str], requires: &[&str]) -> ServiceSpec {
    s.after_units = after.iter().map(|u| u.to_string()).collect();
    s.requires_units = requires.iter().map(|u| u.to_string()).collect();
    s
}

/// The id of the one deployment an apply made.
async fn apply_one(h: &Handle, s: ServiceSpec) -> (Change, String) {
    let r = apply(h, vec![s]).await;
    let res = &r.results[0];
    let id = res.deployment.as_ref().expect("a record").id.clone();
    (res.change, id)
}

#[tokio::test(start_paused = true)]
async fn after_units_wait_until_active_then_the_container_starts() {
    let node = Node::start(Duration::from_secs(30));
    node.host().set("db.service", "inactive", "dead");
    let (_, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &["db.service"], &[]),
    )
    .await;
    eventually("the deployment says what it waits for", || {
        node.current("web").is_some_and(|d| {
            d.status == Status::InProgress
                && d.status_reason.contains("waiting for host units")
                && d.status_reason.contains("db.service (inactive)")
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        node.state("t-web"),
        None,
        "nothing is created while waiting"
    );
    assert_eq!(node.host().watched(), vec![vec!["db.service".to_string()]]);

    node.host().set("db.service", "active", "running");
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.status_reason, "", "the note is cleared");
    assert_eq!(node.state("t-web"), Some(ContainerState::Running));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_unit_that_does_not_exist_fails_the_deployment_after_the_timeout() {
    let node = Node::start(Duration::from_millis(600));
    let (_, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &["nope.service"], &[]),
    )
    .await;
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Failed, "{d:?}");
    assert!(
        d.status_reason.contains("nope.service (not-found)")
            && d.status_reason.contains("does not exist"),
        "{}",
        d.status_reason
    );
    assert_eq!(node.state("t-web"), None, "nothing was created");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_bus_fails_the_deployment_with_the_bus_error() {
    let node = Node::start(Duration::from_millis(600));
    node.host().set_unreachable(Some(HostError::BusUnavailable {
        bus: "system".into(),
        address: "unix:path=/nope".into(),
        reason: "No such file or directory".into(),
        hint: "is dbus running on this host?".into(),
    }));
    let (_, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &[], &["db.service"]),
    )
    .await;
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Failed, "{d:?}");
    assert!(
        d.status_reason.contains("db.service") && d.status_reason.contains("is dbus running"),
        "{}",
        d.status_reason
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn requires_units_stop_and_start_the_container_with_the_unit() {
    let node = Node::start(Duration::from_secs(30));
    node.host().set("db.service", "active", "running");
    let (_, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &[], &["db.service"]),
    )
    .await;
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    let before = node.rt().container_by_name("t-web").expect("container");

    node.host().set("db.service", "failed", "failed");
    eventually("the container is stopped", || {
        node.state("t-web") == Some(ContainerState::Exited)
    })
    .await;
    eventually("the status says why", || {
        node.current("web").is_some_and(|d| {
            d.status_reason.contains("stopped: required host unit")
                && d.status_reason.contains("db.service (failed (exit-code))")
        })
    })
    .await;
    let events = node.handle.events_since(0).events;
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::UnitState { service, unit, state, .. }
                if service == "web" && unit == "db.service" && state.starts_with("failed"))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::ContainerAction { action, reason, .. }
                if action == "stopped" && reason.contains("db.service"))),
        "{events:#?}"
    );

    node.host().set("db.service", "active", "running");
    eventually("the container runs again", || {
        node.state("t-web") == Some(ContainerState::Running)
    })
    .await;
    eventually("the note is cleared", || {
        node.current("web")
            .is_some_and(|d| d.status == Status::Complete && d.status_reason.is_empty())
    })
    .await;
    let after = node.rt().container_by_name("t-web").expect("container");
    assert_eq!(before.id, after.id, "the same container, started again");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_policy_only_change_of_units_touches_no_container() {
    let node = Node::start(Duration::from_millis(600));
    let (_, id) = apply_one(&node.handle, spec("web", "demo:1")).await;
    assert_eq!(
        wait_status(&node.handle, &id).await.status,
        Status::Complete
    );
    node.rt().clear_calls();
    node.host().set("db.service", "inactive", "dead");
    let (change, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &["db.service"], &[]),
    )
    .await;
    assert_eq!(change, Change::PolicyOnly);
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.spec.after_units, ["db.service"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    assert_eq!(node.state("t-web"), Some(ContainerState::Running));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_watch_that_fails_is_watched_again() {
    let node = Node::start(Duration::from_secs(30));
    node.host().set("db.service", "active", "running");
    let (_, id) = apply_one(
        &node.handle,
        with_units(spec("web", "demo:1"), &[], &["db.service"]),
    )
    .await;
    assert_eq!(
        wait_status(&node.handle, &id).await.status,
        Status::Complete
    );
    let gone = HostError::Disconnected {
        bus: "system".into(),
        reason: "test".into(),
    };
    node.host().set_unreachable(Some(gone));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        node.state("t-web"),
        Some(ContainerState::Running),
        "a lost bus stops nothing"
    );
    node.host().set_unreachable(None);
    node.host().set("db.service", "inactive", "dead");
    eventually("watched again: the stop is seen", || {
        node.state("t-web") == Some(ContainerState::Exited)
    })
    .await;
    node.stop().await;
}
