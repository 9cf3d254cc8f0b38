//! `GET /v1/deployments/{id}?wait=` for a Heat document: the long poll
//! waits on upstream's word that a document is done, not on a timer. Time
//! is paused, so "at once" is exact: no timer of any length passed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_api::{BoxFuture, PeerPolicy, UnixPeer, UpstreamApi, UpstreamError, router};
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

mod common;

/// One Heat document, done when the test says so.
struct FakeUpstream {
    doc: Mutex<DocumentStatus>,
    done: watch::Sender<u64>,
    lookups: AtomicUsize,
    /// Told on every lookup.
    looked_up: Notify,
    /// The document is done while the first lookup answers "not done":
    /// after the look, before the wait.
    done_during_first_lookup: bool,
}

impl FakeUpstream {
    fn new(done_during_first_lookup: bool) -> Arc<FakeUpstream> {
        Arc::new(FakeUpstream {
            doc: Mutex::new(DocumentStatus {
                doc_id: "doc-1".into(),
                services: vec!["web".into()],
                ..Default::default()
            }),
            done: watch::channel(0).0,
            lookups: AtomicUsize::new(0),
            looked_up: Notify::new(),
            done_during_first_lookup,
        })
    }

    /// What berth-upstream does when a document's signal is queued: the
    /// index first, then the word.
    fn finish(&self) {
        self.doc.lock().expect("doc").done = true;
        self.done.send_modify(|n| *n += 1);
    }
}

impl UpstreamApi for FakeUpstream {
    fn submit(
        &self,
        _doc: Value,
        _actor: String,
        _check_policy: bool,
    ) -> BoxFuture<'_, Result<DocumentStatus, UpstreamError>> {
        Box::pin(async { Err(UpstreamError::Store("this fake takes no documents".into())) })
    }

    fn lookup(&self, doc_id: String) -> BoxFuture<'_, Option<DocumentStatus>> {
        Box::pin(async move {
            let first = self.lookups.fetch_add(1, Ordering::SeqCst) == 0;
            let doc = self.doc.lock().expect("doc").clone();
            if first && self.done_during_first_lookup {
                self.finish();
            }
            self.looked_up.notify_one();
            (doc.doc_id == doc_id).then_some(doc)
        })
    }

    fn watch_done(&self) -> watch::Receiver<u64> {
        self.done.subscribe()
    }

    fn outbox(&self) -> Result<Vec<OutboxView>, UpstreamError> {
        Ok(Vec::new())
    }

    fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError> {
        Err(UpstreamError::NotFound(format!("no outbox entry {seq}")))
    }

    fn drop_entry(&self, _seq: u64) -> Result<bool, UpstreamError> {
        Ok(false)
    }

    fn summary(&self) -> OutboxSummary {
        OutboxSummary::default()
    }
}

fn app(up: Arc<FakeUpstream>) -> (Router, tokio::sync::oneshot::Sender<()>) {
    let (handle, stop) = common::start_agent();
    let r = router(
        handle,
        PeerPolicy {
            own_uid: 4242,
            group_gid: None,
            node_policy: None,
        },
        Some(up),
    )
    .layer(MockConnectInfo(UnixPeer {
        uid: 0,
        gid: 0,
        pid: None,
    }));
    (r, stop)
}

/// Starts `GET uri` on its own task; the status and the document.
fn get(app: &Router, uri: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let app = app.clone();
    tokio::spawn(async move {
        let resp = app.oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    })
}

#[tokio::test(start_paused = true)]
async fn a_document_done_wakes_the_poll_at_once() {
    let up = FakeUpstream::new(false);
    let (app, _stop) = app(up.clone());
    let poll = get(&app, "/v1/deployments/doc-1?wait=60s");
    up.looked_up.notified().await;
    let start = Instant::now();
    up.finish();
    let (status, doc) = poll.await.expect("the poll");
    assert_eq!(
        (status, doc["done"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{doc}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "no timer ran");
    assert_eq!(up.lookups.load(Ordering::SeqCst), 2);
}

/// Subscribed before it looks: a document done between the look and the
/// wait is not missed.
#[tokio::test(start_paused = true)]
async fn a_document_done_between_the_look_and_the_wait_is_not_missed() {
    let up = FakeUpstream::new(true);
    let (app, _stop) = app(up.clone());
    let start = Instant::now();
    let (status, doc) = get(&app, "/v1/deployments/doc-1?wait=60s")
        .await
        .expect("the poll");
    assert_eq!(
        (status, doc["done"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{doc}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(up.lookups.load(Ordering::SeqCst), 2);
}

/// Nothing happens: the poll answers at the deadline with the document
/// as it is, having looked only at the start and at the end.
#[tokio::test(start_paused = true)]
async fn without_a_change_the_poll_answers_at_the_deadline() {
    let up = FakeUpstream::new(false);
    let (app, _stop) = app(up.clone());
    let start = Instant::now();
    let (status, doc) = get(&app, "/v1/deployments/doc-1?wait=5s")
        .await
        .expect("the poll");
    assert_eq!(
        (status, doc["done"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{doc}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(up.lookups.load(Ordering::SeqCst), 2);

    // Without wait: one look, at once.
    let start = Instant::now();
    let (status, doc) = get(&app, "/v1/deployments/doc-1").await.expect("the get");
    assert_eq!(
        (status, doc["done"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{doc}"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(up.lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_id_is_not_found_at_once() {
    let up = FakeUpstream::new(false);
    let (app, _stop) = app(up.clone());
    let start = Instant::now();
    let (status, body) = get(&app, "/v1/deployments/nosuch-doc?wait=60s")
        .await
        .expect("the poll");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(start.elapsed(), Duration::ZERO);
}
