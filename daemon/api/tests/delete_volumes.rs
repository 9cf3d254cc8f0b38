//! `DELETE /v1/services/{name}?volumes=true` through the router, against the
//! loop on fakes: the query parameter reaches the loop, the answer and the
//! record name the volumes; a value that is not a boolean is a 400 with an
//! ErrorBody, as the OpenAPI document says.

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_api::{PeerPolicy, UnixPeer, router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::start_agent;

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

#[tokio::test]
async fn delete_with_volumes_true_removes_the_named_volume_and_says_so() {
    let (handle, _stop) = start_agent();
    let app = router(
        handle,
        PeerPolicy {
            own_uid: 4242,
            group_gid: None,
            node_policy: None,
        },
        None,
    )
    .layer(MockConnectInfo(UnixPeer {
        uid: 0,
        gid: 0,
        pid: None,
    }));
    let spec = json!({"name": "web", "image": "demo:1", "volumes": ["data:/data"]});
    let (s, body) = call(&app, "PUT", "/v1/services/web", Some(spec)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let (_, body) = call(&app, "GET", &format!("/v1/deployments/{id}?wait=10s"), None).await;
    assert_eq!(body["status"], "COMPLETE", "{body}");

    let (s, body) = call(&app, "DELETE", "/v1/services/web?volumes=maybe", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].is_string(), "an ErrorBody: {body}");

    let (s, body) = call(&app, "DELETE", "/v1/services/web?volumes=true", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("named volumes data")),
        "{body}"
    );
    let id = body["deployment"]["id"].as_str().expect("id").to_string();
    let (_, body) = call(&app, "GET", &format!("/v1/deployments/{id}?wait=10s"), None).await;
    assert_eq!(body["status"], "COMPLETE", "{body}");
    assert_eq!(body["status_reason"], "volumes removed: data", "{body}");
}
