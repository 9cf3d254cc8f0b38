//! `GET /v1/images` and `POST /v1/images/prune` through the router, against
//! the loop on fakes: the image a service runs is listed as in use and not
//! prunable; a prune (and its dry run) answers with what it removed; a
//! `dry_run` that is not a boolean is a 400 with an ErrorBody.

use http::StatusCode;
use serde_json::json;

mod common;
use common::oneshot::{app, call};

#[tokio::test]
async fn images_lists_what_is_in_use_and_prune_answers_what_it_removed() {
    let (app, _handle, _stop) = app(0);
    let spec = json!({"name": "web", "image": "demo:1"});
    let (s, body) = call(&app, "PUT", "/v1/services/web", Some(spec)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let (_, body) = call(&app, "GET", &format!("/v1/deployments/{id}?wait=10s"), None).await;
    assert_eq!(body["status"], "COMPLETE", "{body}");

    let (s, body) = call(&app, "GET", "/v1/images", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let images = body["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{body}");
    let row = &images[0];
    assert_eq!(row["used_by"], json!(["web"]), "{body}");
    assert_eq!(row["records"], json!([{"service": "web", "generation": 1}]));
    assert_eq!(row["prunable"], false);
    // demo:1 was in the engine before berth needed it: never berth's to remove.
    assert_eq!(row["origin"], "other", "{body}");
    assert!(body["keep_previous"].is_u64(), "{body}");

    let (s, body) = call(&app, "POST", "/v1/images/prune?dry_run=maybe", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].is_string(), "an ErrorBody: {body}");

    for (query, dry) in [("?dry_run=true", true), ("", false)] {
        let (s, body) = call(&app, "POST", &format!("/v1/images/prune{query}"), None).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["dry_run"], dry, "{body}");
        assert_eq!(body["removed"], json!([]), "nothing berth pulled: {body}");
        assert_eq!(body["kept"], json!([]), "{body}");
    }
}
