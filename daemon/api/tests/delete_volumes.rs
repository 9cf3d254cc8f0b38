//! `DELETE /v1/services/{name}?volumes=true` through the router, against the
//! loop on fakes: the query parameter reaches the loop, the answer and the
//! record name the volumes; a value that is not a boolean is a 400 with an
//! ErrorBody, as the OpenAPI document says.

use http::StatusCode;
use serde_json::json;

mod common;
use common::oneshot::{app, call};

#[tokio::test]
async fn delete_with_volumes_true_removes_the_named_volume_and_says_so() {
    let (app, _handle, _stop) = app(0);
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
