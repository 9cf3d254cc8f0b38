//! The router driven through `oneshot` as a Unix peer, for the tests that
//! call it that way (router.rs, delete_volumes.rs).

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_agent::Handle;
use berth_api::{PeerPolicy, UnixPeer, router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::start_agent;

/// berthd's own uid in these tests.
pub const OWN_UID: u32 = 4242;

/// The router on a running loop, as Unix peer `peer_uid` (gid 100;
/// `socket_group` 900), with the loop's handle and its stop sender.
pub fn app(peer_uid: u32) -> (Router, Handle, tokio::sync::oneshot::Sender<()>) {
    let (handle, stop) = start_agent();
    let r = router(
        handle.clone(),
        PeerPolicy {
            own_uid: OWN_UID,
            group_gid: Some(900),
            node_policy: None,
        },
        None,
    )
    .layer(MockConnectInfo(UnixPeer {
        uid: peer_uid,
        gid: 100,
        pid: None,
    }));
    (r, handle, stop)
}

/// One request; the body as JSON, or as a JSON string when it is not JSON.
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
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
