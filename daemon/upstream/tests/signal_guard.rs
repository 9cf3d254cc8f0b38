//! Signals never reach this host or the cloud's metadata service unless
//! `[policy] allowed_signal_hosts` lists the target (issue 29, item 6):
//! the guarded client refuses literal and resolved internal addresses
//! before connecting, and a document whose signal points there ends as a
//! dead letter naming the rule and the host, with an event.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_core::event::EventKind;
use berth_core::policy::NodePolicy;
use berth_upstream::Origin;
use berth_upstream::http::{HttpClient, RequestError};
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{Node, start, wait_for};

/// A server on 127.0.0.1 that answers every request 200 and counts the
/// connections it accepted: the "internal" service an attacker aims at.
async fn internal_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, hits)
}

async fn post(client: &HttpClient, url: &str) -> Result<u16, RequestError> {
    client
        .send(Method::POST, url, &[], Some("{}".into()))
        .await
        .map(|r| r.status.as_u16())
}

#[tokio::test]
async fn the_signal_client_refuses_internal_addresses_before_connecting() {
    let (addr, hits) = internal_server().await;
    let port = addr.port();
    let guarded = HttpClient::for_signals(None, &[]).expect("client");
    for url in [
        // An address literal (never reaches the resolver).
        format!("http://127.0.0.1:{port}/internal"),
        format!("http://[::ffff:127.0.0.1]:{port}/internal"),
        // A name the resolver turns into loopback: the resolved answer is
        // what is checked (as with a rebinding DNS name).
        format!("http://localhost:{port}/internal"),
        // inet_aton's short form, which the resolver reads as 127.0.0.1.
        format!("http://127.1:{port}/internal"),
    ] {
        match post(&guarded, &url).await {
            Err(RequestError::Refused(why)) => {
                assert!(why.contains("allowed_signal_hosts"), "{url}: {why}");
                assert!(why.contains("loopback"), "{url}: {why}");
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no connection reached the server"
    );

    // Listed, by name or by address: allowed.
    let by_name = HttpClient::for_signals(None, &["localhost".into()]).expect("client");
    assert_eq!(
        post(&by_name, &format!("http://localhost:{port}/x"))
            .await
            .expect("listed name"),
        200
    );
    let by_addr = HttpClient::for_signals(None, &["127.0.0.1".into()]).expect("client");
    assert_eq!(
        post(&by_addr, &format!("http://127.0.0.1:{port}/x"))
            .await
            .expect("listed address"),
        200
    );
    // The unguarded client (pull, reports: the operator's URLs) connects.
    let open = HttpClient::new(None).expect("client");
    assert_eq!(
        post(&open, &format!("http://127.0.0.1:{port}/x"))
            .await
            .expect("open"),
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

fn doc(id: &str, signal: &str) -> Value {
    json!({"id": id, "group": "berth",
           "config": [{"name": "a", "image": "demo:1", "update": {"settle": "100ms"}}],
           "inputs": [{"name": "deploy_signal_id", "value": signal}],
           "outputs": [], "options": {}})
}

/// A pushed document's signal to `url` becomes a dead letter; returns its
/// last error and the `dead` event's detail.
async fn dead_letter(n: &Node, id: &str, url: &str) -> (String, String) {
    n.up.submit(
        doc(id, url),
        Origin::Push {
            actor: "tester".into(),
            check_policy: true,
        },
    )
    .await
    .expect("accepted: the deployment itself is allowed");
    wait_for("a dead letter", || {
        n.up.outbox_view()
            .expect("view")
            .iter()
            .any(|e| e.deployment_id == id && e.last_error.is_some())
    })
    .await;
    let view = n.up.outbox_view().expect("view");
    let entry = view
        .iter()
        .find(|e| e.deployment_id == id)
        .expect("the entry");
    assert_eq!(
        entry.state,
        berth_core::heat::outbox::EntryState::Dead,
        "{entry:?}"
    );
    let err = entry.last_error.clone().unwrap_or_default();
    // The event follows the outbox write: wait for it too.
    let dead_event = || {
        n.handle
            .events_since(0)
            .events
            .into_iter()
            .find_map(|e| match e.kind {
                EventKind::Signal {
                    document,
                    outcome,
                    detail,
                    ..
                } if document == id && outcome == "dead" => Some(detail),
                _ => None,
            })
    };
    wait_for("the dead signal event", || dead_event().is_some()).await;
    (err, dead_event().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_to_an_internal_address_is_a_dead_letter_naming_rule_and_host() {
    let (addr, hits) = internal_server().await;
    let n = start(NodePolicy::default());
    let port = addr.port();
    for (id, url, host) in [
        (
            "lo",
            format!("http://127.0.0.1:{port}/internal?Signature=s3cret"),
            "127.0.0.1",
        ),
        (
            "md",
            "http://169.254.169.254/latest/".to_string(),
            "169.254.169.254",
        ),
        (
            "gce",
            "http://metadata.google.internal/x".to_string(),
            "metadata.google.internal",
        ),
        ("ll", "http://[fe80::1]:8000/x".to_string(), "fe80::1"),
        ("any", format!("http://0.0.0.0:{port}/x"), "0.0.0.0"),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            "::ffff:127.0.0.1",
        ),
        ("name", format!("http://localhost:{port}/x"), "localhost"),
    ] {
        let (err, detail) = dead_letter(&n, id, &url).await;
        for text in [&err, &detail] {
            assert!(text.contains("allowed_signal_hosts"), "{id}: {text}");
            assert!(text.contains(host), "{id}: names the host: {text}");
            assert!(!text.contains("s3cret"), "{id}: {text}");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the internal server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_internal_host_is_signalled() {
    let (addr, hits) = internal_server().await;
    let n = start(NodePolicy {
        allowed_signal_hosts: vec!["127.0.0.1".into()],
        ..NodePolicy::default()
    });
    n.up.submit(
        doc("ok", &format!("http://127.0.0.1:{}/signal", addr.port())),
        Origin::Push {
            actor: "tester".into(),
            check_policy: true,
        },
    )
    .await
    .expect("accepted");
    wait_for("the signal", || hits.load(Ordering::SeqCst) == 1).await;
    // The delivery's removal is counted (no listing in between).
    wait_for("the entry counted as delivered", || {
        n.up.outbox_stats().depth == 0
    })
    .await;
    assert_eq!(n.up.outbox_counts(), n.counts_on_disk());
    assert!(n.up.outbox_view().expect("view").is_empty());
}
