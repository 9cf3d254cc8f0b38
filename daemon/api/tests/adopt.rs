//! `POST /v1/adopt` through the router, against the loop on fakes: a check
//! answers the report (an adoptable container and one that differs, with
//! the field); a bad `from` is a 400; `check: false` a 422 saying that only
//! the check exists; nothing in the engine is changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_agent::{Agent, AgentConfig, Seams};
use berth_api::{PeerPolicy, UnixPeer, router};
use berth_core::adopt::{
    ForeignContainer, ImageDefaults, LABEL_CONFIG_DATA, LABEL_CONFIG_ID, LABEL_CONTAINER_NAME,
    LABEL_MANAGED_BY, config_create,
};
use berth_fakes::{FakeRuntime, MemStore};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn tool_container(name: &str, config: &Value) -> ForeignContainer {
    ForeignContainer {
        id: format!("{name}-0123456789abcdef"),
        name: name.to_string(),
        labels: BTreeMap::from([
            (
                LABEL_MANAGED_BY.to_string(),
                "tripleo-Controller".to_string(),
            ),
            (LABEL_CONFIG_ID.to_string(), "cfg-1".to_string()),
            (LABEL_CONTAINER_NAME.to_string(), name.to_string()),
            (LABEL_CONFIG_DATA.to_string(), config.to_string()),
        ]),
        started_at: Some("2026-12-04T10:00:00Z".to_string()),
        running: true,
        create: config_create(name, &config.to_string()).expect("converts"),
        image: ImageDefaults::default(),
    }
}

fn app(runtime: FakeRuntime) -> (Router, tokio::sync::oneshot::Sender<()>) {
    let env = Arc::new(Seams {
        runtime,
        store: MemStore::new(),
    });
    let (agent, handle) =
        Agent::new(env, AgentConfig::new("n1", "t-", std::env::temp_dir())).expect("agent");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    let policy = PeerPolicy {
        own_uid: 0,
        group_gid: None,
        node_policy: None,
    };
    let r = router(handle, policy, None).layer(MockConnectInfo(UnixPeer {
        uid: 0,
        gid: 0,
        pid: None,
    }));
    (r, stop)
}

async fn post(app: &Router, body: Value) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/adopt")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test]
async fn a_check_reports_and_a_take_over_is_refused_as_not_yet() {
    let runtime = FakeRuntime::new("n1");
    let config = json!({"image": "demo:1", "environment": {"A": "1"}});
    runtime.add_tool_container(tool_container("keystone", &config));
    let mut changed = tool_container("nova_api", &config);
    changed
        .create
        .volumes
        .push(berth_core::spec::Volume::parse("/srv/x:/x").expect("volume"));
    runtime.add_tool_container(changed);
    let (app, _stop) = app(runtime.clone());
    let before = runtime.mutating_calls().len();

    let (s, body) = post(
        &app,
        json!({"from": "paunch", "config_id": "cfg-1", "check": true}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["check"], true);
    let entries = body["containers"].as_array().expect("containers");
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(entries[0]["name"], "keystone");
    assert_eq!(entries[0]["verdict"], "adopt", "{body}");
    assert_eq!(entries[0]["systemd_unit"], "tripleo_keystone.service");
    assert_eq!(entries[1]["verdict"], "differs", "{body}");
    assert_eq!(entries[1]["diffs"][0]["field"], "volumes", "{body}");
    assert_eq!(
        entries[1]["diffs"][0]["container_has"],
        json!(["/srv/x:/x:rw"])
    );

    let (s, body) = post(&app, json!({"from": "nova", "check": true})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("paunch, tripleo or docker-cmd"))
    );
    let (s, body) = post(&app, json!({"from": "paunch", "replace": true})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an unknown field: {body}");

    let (s, body) = post(&app, json!({"from": "paunch"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["kind"], "not_implemented");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--check only")),
        "{body}"
    );

    assert_eq!(runtime.mutating_calls().len(), before, "nothing changed");
}
