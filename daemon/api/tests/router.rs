//! The router through `oneshot`, against the loop on fakes.

use http::StatusCode;
use serde_json::{Value, json};

mod common;
use common::oneshot::{OWN_UID, app, call};

#[tokio::test]
async fn healthz_needs_no_credentials_but_the_api_does() {
    let (app, _h, _stop) = app(1000);
    let (s, body) = call(&app, "GET", "/healthz", None).await;
    assert_eq!((s, body), (StatusCode::OK, Value::String("ok".into())));
    let (s, body) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["kind"], "forbidden");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("uid 1000")),
        "{body}"
    );
}

#[tokio::test]
async fn root_and_own_uid_are_admitted() {
    for uid in [0, OWN_UID] {
        let (app, _h, _stop) = app(uid);
        let (s, body) = call(&app, "GET", "/v1/services", None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body, json!([]));
    }
}

#[tokio::test]
async fn invalid_specs_are_refused_with_every_field_named() {
    let (app, _h, _stop) = app(0);
    let (s, body) = call(
        &app,
        "POST",
        "/v1/apply",
        Some(json!({"services": [
            {"name": "web", "image": "demo:1", "imgae": "x"},
            {"name": "api", "image": "demo:1", "restart": "sometimes"}
        ]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["kind"], "invalid_spec");
    let details = body["details"].to_string();
    assert!(
        details.contains("imgae") && details.contains("image"),
        "{details}"
    );
    assert!(
        details.contains("services[1]") && details.contains("sometimes"),
        "{details}"
    );
    // Nothing was applied: all or nothing.
    let (_, list) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!(list, json!([]));
}

/// JSON says what a value is: a number is not an image reference, and a
/// body that says so is refused with 422 naming the field (a wrong value
/// stays 400, above).
#[tokio::test]
async fn a_field_of_the_wrong_json_type_is_422_naming_it() {
    let (app, _h, _stop) = app(0);
    let (s, body) = call(
        &app,
        "PUT",
        "/v1/services/bad",
        Some(json!({"name": "bad", "image": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["kind"], "invalid_spec");
    assert_eq!(
        body["details"],
        json!([
            "image: expected a string or an object, got the number 5; write it as a string: \"5\""
        ])
    );

    let (s, body) = call(
        &app,
        "POST",
        "/v1/apply",
        Some(json!({"services": [
            {"name": "web", "image": "demo:1"},
            {"name": "api", "image": "demo:1", "command": "serve", "restart": "sometimes"}
        ], "force": "yes"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let details: Vec<&str> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Every problem, the wrong values with the wrong types.
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("force: expected true or false"))
            && details.iter().any(|d| d.starts_with(
                "services[1].command: expected a list of strings, got the string \"serve\""
            ))
            && details
                .iter()
                .any(|d| d.starts_with("services[1].restart:") && d.contains("sometimes")),
        "{details:?}"
    );
    assert_eq!(details.len(), 3, "{details:?}");
    // Nothing was applied: all or nothing.
    let (_, list) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn apply_dry_run_then_for_real_then_read_back() {
    let (app, handle, _stop) = app(0);
    let spec = json!({"name": "web", "image": "demo:1", "env": {"TOKEN": {"value": "s3cret", "secret": true}}});
    let (s, body) = call(
        &app,
        "POST",
        "/v1/apply?dry_run=true",
        Some(json!({"services": [spec]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["results"][0]["change"], "created");
    assert!(
        handle.snapshot().services.is_empty(),
        "dry run applies nothing"
    );

    let (s, body) = call(&app, "PUT", "/v1/services/web", Some(spec.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("record id").to_string();
    assert_eq!(
        body["spec"]["env"]["TOKEN"]["value"], "<redacted>",
        "{body}"
    );
    assert!(!body.to_string().contains("s3cret"));

    let (s, body) = call(&app, "PUT", "/v1/services/web", Some(spec)).await;
    assert_eq!(s, StatusCode::OK, "unchanged: {body}");

    let (s, body) = call(&app, "GET", &format!("/v1/deployments/{id}?wait=10s"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "COMPLETE", "{body}");
    let (s, body) = call(&app, "GET", "/v1/services/web", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"]["name"], "web");
    assert!(!body.to_string().contains("s3cret"));
    let (_, events) = call(&app, "GET", "/v1/events?since=0", None).await;
    assert!(!events.to_string().contains("s3cret"));
    assert!(events["events"].as_array().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn errors_have_kinds_and_statuses() {
    let (app, _h, _stop) = app(0);
    let (s, body) = call(&app, "GET", "/v1/services/nope", None).await;
    assert_eq!(
        (s, body["kind"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, body) = call(
        &app,
        "PUT",
        "/v1/services/other",
        Some(json!({"name": "web", "image": "demo:1"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = call(
        &app,
        "POST",
        "/v1/apply",
        Some(json!({"services": [], "extra": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = call(&app, "POST", "/v1/services/nope/stop", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let (s, _) = call(&app, "GET", "/v1/deployments/garbage", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&app, "GET", "/v1/deployments/web-1?wait=forever", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_are_the_snapshot_in_the_text_format() {
    let (app, _h, _stop) = app(0);
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/services/web",
        Some(json!({"name": "web", "image": "demo:1"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, body) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = body.as_str().expect("text, not JSON");
    assert!(
        text.contains("# TYPE berth_services gauge\n")
            && text.contains("berth_services{condition=\"converged\"}")
            && text.contains("# TYPE berth_event_seq counter\n"),
        "{text}"
    );
    // No upstream on this router: no outbox numbers, rather than zeros.
    assert!(!text.contains("berth_outbox"), "{text}");
}
