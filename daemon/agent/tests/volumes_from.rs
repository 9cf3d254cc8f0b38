//! `volumes_from` in the loop, against the fake engine: the services it
//! names are dependencies (`started`), so a dependent is created after
//! their containers exist, and the engine is given those containers' ids.

use std::time::Duration;

use berth_agent::Verb;
use berth_core::event::EventKind;
use berth_core::record::Status;
use berth_core::spec::ServiceSpec;

mod common;
use common::*;

fn app() -> ServiceSpec {
    let mut app = spec("app", "demo:1");
    app.volumes_from = vec!["data:ro".into()];
    app
}

fn id_of(node: &Node, name: &str) -> String {
    node.rt()
        .container_by_name(name)
        .unwrap_or_else(|| panic!("{name} exists"))
        .id
}

/// Applied together (the dependent first), the dependent waits for the
/// other's container and is created with its id; replacing that other
/// service later leaves the dependent's container alone (the hash has the
/// service name, not the container).
#[tokio::test(start_paused = true)]
async fn a_dependent_is_created_from_the_container_in_place() {
    let node = start();
    let done = deploy(&node.handle, vec![app(), spec("data", "demo:1")]).await;
    assert!(
        done.iter().all(|d| d.status == Status::Complete),
        "{done:#?}"
    );
    let data = id_of(&node, "t-data");
    let c = node.rt().container_by_name("t-app").expect("app created");
    assert_eq!(c.req.spec.volumes_from, ["data:ro"]);
    assert_eq!(c.req.spec.volumes_from_containers, [format!("{data}:ro")]);

    let done = deploy(&node.handle, vec![spec("data", "demo:2")]).await;
    assert_eq!(done[0].status, Status::Complete, "{done:#?}");
    assert_ne!(id_of(&node, "t-data"), data, "data replaced");
    assert_eq!(id_of(&node, "t-app"), c.id, "app kept its container");
    node.stop().await;
}

/// A service that exists nowhere refuses the apply, naming the field.
#[tokio::test(start_paused = true)]
async fn a_service_that_is_nowhere_refuses_the_apply() {
    let node = start();
    let e = apply_from(
        &node.handle,
        vec![app()],
        berth_core::record::Source::Api,
        false,
    )
    .await
    .expect_err("refused");
    let said = e.to_string();
    assert!(
        said.contains("app: volumes_from[0]: data is neither in this apply nor on this node"),
        "{said}"
    );
    assert!(node.rt().container_by_name("t-app").is_none());
    node.stop().await;
}

/// When the dependent's container must be made again while the other
/// service has no container (held, and its container removed behind
/// berth's back), the create is refused, saying which service and field;
/// an update meanwhile waits for the other service to be started.
#[tokio::test(start_paused = true)]
async fn no_container_to_take_volumes_from_is_refused_naming_the_service() {
    let node = start();
    deploy(&node.handle, vec![spec("data", "demo:1"), app()]).await;
    node.handle
        .verb("data", Verb::Hold, "test")
        .await
        .expect("held");
    node.rt().remove_behind_back("t-data");
    node.rt().remove_behind_back("t-app");
    let refused = |node: &Node| {
        node.handle.events_since(0).events.into_iter().any(|e| {
            matches!(e.kind, EventKind::ContainerAction { service, action, reason, .. }
                if service == "app" && action == "failed"
                    && reason.contains("volumes_from: service data has no container on this node (t-data)"))
        })
    };
    eventually("the create is refused", || refused(&node)).await;
    assert!(node.rt().container_by_name("t-app").is_none());

    let mut update = app();
    update.image = berth_core::spec::ImageSource::Ref("demo:2".into());
    let r = apply(&node.handle, vec![update]).await;
    let id = r.results[0]
        .deployment
        .as_ref()
        .expect("a record")
        .id
        .clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = node
        .handle
        .history("app", 1)
        .await
        .expect("history")
        .remove(0);
    assert_eq!((d.id.as_str(), d.status), (id.as_str(), Status::Pending));
    assert!(
        d.status_reason.contains("waiting for data to be started"),
        "{}",
        d.status_reason
    );
    node.stop().await;
}
