//! The TCP router (tokens, node policy) and the OpenAPI document, through
//! `oneshot` against the loop on fakes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_api::{
    OPENAPI, PeerPolicy, TcpAccess, Tokens, UnixPeer, route_paths, router, tcp_router,
};
use berth_core::policy::NodePolicy;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

mod common;
use common::start_agent;

const ADMIN: &str = "admin-0123456789abcdef";
const READ: &str = "read-0123456789abcdef";

struct Apps {
    tcp: Router,
    unix: Router,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn apps() -> Apps {
    let (handle, stop) = start_agent();
    let tokens = Tokens::parse(&format!("admin {ADMIN}\nread {READ}\n"), "tokens").expect("tokens");
    let policy = NodePolicy {
        allowed_host_paths: vec!["/srv/berth".into()],
        ..NodePolicy::default()
    };
    let access = TcpAccess {
        tokens: Arc::new(tokens),
        node_policy: Arc::new(policy),
    };
    let tcp = tcp_router(handle.clone(), tokio::sync::watch::channel(access).1, None);
    let unix = router(
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
    Apps {
        tcp,
        unix,
        _stop: stop,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

#[tokio::test]
async fn tokens_decide_who_may_read_and_write() {
    let a = apps();
    let (s, h, body) = call(&a.tcp, "GET", "/v1/services", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        h.get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer")),
        "{h:?}"
    );
    assert_eq!(body["kind"], "unauthorized");
    let (s, _, _) = call(
        &a.tcp,
        "GET",
        "/v1/services",
        Some("wrong-token-123456789"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for t in [READ, ADMIN] {
        let (s, _, body) = call(&a.tcp, "GET", "/v1/services", Some(t), None).await;
        assert_eq!((s, body), (StatusCode::OK, json!([])));
        let (s, _, _) = call(&a.tcp, "GET", "/metrics", Some(t), None).await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _, _) = call(&a.tcp, "GET", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, body) = call(&a.tcp, "GET", "/healthz", None, None).await;
    assert_eq!((s, body), (StatusCode::OK, json!("ok")));
    let (s, _, body) = call(&a.tcp, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body["openapi"].is_string());

    let spec = json!({"name": "web", "image": "demo:1"});
    let (s, _, body) = call(
        &a.tcp,
        "PUT",
        "/v1/services/web",
        Some(READ),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["kind"], "forbidden");
    let (s, _, body) = call(
        &a.tcp,
        "PUT",
        "/v1/services/web",
        Some(ADMIN),
        Some(spec.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let actor = body["actor"].as_str().expect("actor");
    assert!(actor.starts_with("token:admin:"), "{actor}");
    assert!(!actor.contains(ADMIN));
    // The same spec again: 200 with the current record.
    let (s, _, again) = call(&a.tcp, "PUT", "/v1/services/web", Some(ADMIN), Some(spec)).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], body["id"]);
    let (s, _, _) = call(&a.tcp, "POST", "/v1/services/web/stop", Some(READ), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call(&a.tcp, "DELETE", "/v1/services/web", Some(READ), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_node_policy_refuses_pushed_specs_but_not_local_ones() {
    let a = apps();
    let bad = json!({"name": "root", "image": "demo:1", "privileged": true, "state": "stopped"});
    let (s, _, body) = call(
        &a.tcp,
        "PUT",
        "/v1/services/root",
        Some(ADMIN),
        Some(bad.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["kind"], "policy");
    assert_eq!(body["rule"], "allow_privileged");
    assert_eq!(body["field"], "privileged");
    let req = json!({"services": [
        {"name": "ok", "image": "demo:1", "volumes": ["/srv/berth/ok:/data"]},
        {"name": "bad", "image": "demo:1", "volumes": ["/etc:/etc"], "network": "host"},
    ]});
    let (s, _, body) = call(
        &a.tcp,
        "POST",
        "/v1/apply?dry_run=true",
        Some(ADMIN),
        Some(req),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["rule"], "allow_host_network");
    assert_eq!(body["field"], "services[1].network");
    assert_eq!(body["details"].as_array().map(Vec::len), Some(2), "{body}");
    // Nothing was applied.
    let (_, _, list) = call(&a.tcp, "GET", "/v1/services", Some(READ), None).await;
    assert_eq!(list, json!([]));
    // The local operator is trusted.
    let (s, _, body) = call(&a.unix, "PUT", "/v1/services/root", None, Some(bad)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["actor"], "uid:0");
}

#[tokio::test]
async fn errors_are_json_everywhere() {
    let a = apps();
    for (method, uri, body) in [
        ("GET", "/nope", None),
        ("PATCH", "/v1/services", None),
        ("GET", "/v1/services/web/deployments?limit=-1", None),
        ("GET", "/v1/events?since=x", None),
        (
            "POST",
            "/v1/apply?dry_run=maybe",
            Some(json!({"services": []})),
        ),
        ("POST", "/v1/apply", Some(json!("x".repeat(2 << 20)))),
    ] {
        let (s, h, v) = call(&a.tcp, method, uri, Some(ADMIN), body).await;
        assert!(s.is_client_error(), "{method} {uri}: {s}");
        assert_eq!(
            h.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {uri}"
        );
        assert!(
            v["kind"].is_string() && v["error"].is_string(),
            "{method} {uri}: {v}"
        );
    }
    let (s, _, v) = call(
        &a.tcp,
        "POST",
        "/v1/apply",
        Some(ADMIN),
        Some(json!("x".repeat(2 << 20))),
    )
    .await;
    assert_eq!(
        (s, v["kind"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
}

/// Every route the router serves is in the document with exactly the
/// methods it answers, and the document names no other.
#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let a = apps();
    let doc: Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = route_paths().into_iter().collect();
    assert_eq!(documented, routed);

    let fill = |p: &str| {
        p.replace("{name}", "nosuch")
            .replace("{verb}", "stop")
            .replace("{id}", "nosuch-1")
    };
    let mut mismatches = BTreeMap::new();
    for (path, item) in paths {
        let doc_methods: BTreeSet<String> = item
            .as_object()
            .expect("path item")
            .keys()
            .filter(|k| *k != "parameters")
            .map(|k| k.to_ascii_uppercase())
            .collect();
        let mut served = BTreeSet::new();
        for m in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let (s, _, _) = call(&a.unix, m, &fill(path), None, None).await;
            if s != StatusCode::METHOD_NOT_ALLOWED {
                served.insert(m.to_string());
            }
        }
        if served != doc_methods {
            mismatches.insert(path.clone(), (served, doc_methods));
        }
    }
    assert!(
        mismatches.is_empty(),
        "served vs documented: {mismatches:?}"
    );

    // The verbs the document lists are the ones the handler knows.
    let verbs = doc["paths"]["/v1/services/{name}/{verb}"]["post"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "verb"))
        .and_then(|p| p["schema"]["enum"].as_array())
        .expect("the verb enum");
    for v in verbs {
        let v = v.as_str().expect("a verb");
        let (_, _, body) = call(
            &a.unix,
            "POST",
            &format!("/v1/services/nosuch/{v}"),
            None,
            None,
        )
        .await;
        assert!(
            !body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("no verb"),
            "{v}: {body}"
        );
    }
    let (s, _, body) = call(&a.unix, "POST", "/v1/services/nosuch/explode", None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no verb"),
        "{body}"
    );

    // Every $ref resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.extend(v.as_str());
                    } else {
                        refs(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
}

/// A `socket_group` member's router: uid 1000 in group 900, with the node
/// policy berthd would hand it.
fn group_member(
    uid: u32,
    policy: Option<NodePolicy>,
) -> (Router, tokio::sync::oneshot::Sender<()>) {
    let (handle, stop) = start_agent();
    let r = router(
        handle,
        PeerPolicy {
            own_uid: 4242,
            group_gid: Some(900),
            node_policy: policy.map(|p| tokio::sync::watch::channel(Arc::new(p)).1),
        },
        None,
    )
    .layer(MockConnectInfo(UnixPeer {
        uid,
        gid: 900,
        pid: None,
    }));
    (r, stop)
}

/// Issue 29 item 8: a `socket_group` member was root in effect (the socket
/// skipped the node policy). Now its specs are checked as pushed ones are;
/// root's are not.
#[tokio::test]
async fn socket_group_members_are_held_to_the_node_policy_root_is_not() {
    let policy = NodePolicy {
        allowed_host_paths: vec!["/srv/berth".into()],
        ..NodePolicy::default()
    };
    let (member, _stop) = group_member(1000, Some(policy.clone()));
    for (spec, rule, field) in [
        (
            json!({"name": "r", "image": "demo:1", "privileged": true, "state": "stopped"}),
            "allow_privileged",
            "privileged",
        ),
        (
            json!({"name": "r", "image": "demo:1", "network": "host", "state": "stopped"}),
            "allow_host_network",
            "network",
        ),
        (
            json!({"name": "r", "image": "demo:1", "volumes": ["/:/host"], "state": "stopped"}),
            "allowed_host_paths",
            "volumes[0]",
        ),
        (
            json!({"name": "r", "image": "demo:1", "cap_add": ["SYS_MODULE"], "state": "stopped"}),
            "allow_privileged",
            "cap_add[0]",
        ),
    ] {
        let (s, _, body) = call(&member, "PUT", "/v1/services/r", None, Some(spec.clone())).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{spec}: {body}");
        assert_eq!(body["kind"], "policy", "{body}");
        assert_eq!(body["rule"], rule, "{body}");
        assert_eq!(body["field"], field, "{body}");
        let (s, _, body) = call(
            &member,
            "POST",
            "/v1/apply",
            None,
            Some(json!({"services": [spec]})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["rule"], rule, "{body}");
    }
    // Nothing was applied; a spec the policy allows is.
    let (_, _, list) = call(&member, "GET", "/v1/services", None, None).await;
    assert_eq!(list, json!([]));
    let ok = json!({"name": "fine", "image": "demo:1", "state": "stopped"});
    let (s, _, body) = call(&member, "PUT", "/v1/services/fine", None, Some(ok)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["actor"], "uid:1000");

    // Root and berthd's own uid stay trusted.
    let all = json!({"name": "root", "image": "demo:1", "privileged": true,
        "network": "host", "volumes": ["/:/host"], "state": "stopped"});
    for uid in [0, 4242] {
        let (trusted, _stop) = group_member(uid, Some(policy.clone()));
        let (s, _, body) = call(
            &trusted,
            "PUT",
            "/v1/services/root",
            None,
            Some(all.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "uid {uid}: {body}");
    }
    // Without a policy handed over, a member gets the strictest one.
    let (strict, _stop) = group_member(1000, None);
    let spec =
        json!({"name": "v", "image": "demo:1", "volumes": ["/srv/berth/x:/x"], "state": "stopped"});
    let (s, _, body) = call(&strict, "PUT", "/v1/services/v", None, Some(spec)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["rule"], "allowed_host_paths");
}
