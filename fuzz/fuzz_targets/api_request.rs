//! One request through berthd's axum router (berth_api::router on the
//! local socket, tcp_router behind tokens) on the event loop with a fake
//! engine and store, in process: no socket. Time is paused, so long polls
//! and streams end at once.
//!
//! The input is a request in a text form the corpus can be written in:
//!
//! ```text
//! PUT /v1/services/web?force=true
//! content-type: application/json
//! x-fuzz-peer: 1000
//!
//! {"name": "web", "image": "demo:1"}
//! ```
//!
//! `x-fuzz-peer` is not sent: it picks the caller, a Unix peer's uid (0,
//! berthd's own 4242, a `socket_group` member, a stranger) or `tcp` (then
//! `authorization: Bearer admin-token-0123456789` or `read-token-...`).
//!
//! Beyond "no panic": no request is answered 5xx (the engine, the store and
//! upstream are fakes that do not fail), and every 4xx is a JSON error body
//! `{"error": "...", ...}`.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use berth_agent::{Agent, AgentConfig, Seams};
use berth_api::{
    BoxFuture, PeerPolicy, TcpAccess, Tokens, UnixPeer, UpstreamApi, UpstreamError, router,
    tcp_router,
};
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;
use berth_core::heat::{Classified, parse_document};
use berth_core::policy::NodePolicy;
use berth_fakes::{FakeRuntime, MemStore};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;

const OWN_UID: u32 = 4242;
const GROUP_GID: u32 = 900;
const TOKENS: &str = "admin admin-token-0123456789\nread read-token-0123456789\n";

/// Upstream as far as the API can tell: documents parsed and classified as
/// berth-upstream does before it deploys (nothing is deployed), an empty
/// outbox.
struct FakeUpstream {
    done: tokio::sync::watch::Sender<u64>,
}

impl UpstreamApi for FakeUpstream {
    fn submit(
        &self,
        doc: Value,
        _actor: String,
        _check_policy: bool,
    ) -> BoxFuture<'_, Result<DocumentStatus, UpstreamError>> {
        Box::pin(async move {
            let invalid = |e: berth_core::heat::HeatError| UpstreamError::Invalid {
                path: e.path().to_string(),
                message: e.to_string(),
                details: vec![],
            };
            let parsed = parse_document(&doc).map_err(invalid)?;
            match parsed.classify().map_err(invalid)? {
                Classified::NotOurs(n) => Err(UpstreamError::NotOurs { group: n.group }),
                Classified::Berth(d) => Ok(DocumentStatus {
                    doc_id: d.id.clone(),
                    services: d.services.iter().map(|s| s.name.clone()).collect(),
                    ..DocumentStatus::default()
                }),
            }
        })
    }

    fn lookup(&self, _doc_id: String) -> BoxFuture<'_, Option<DocumentStatus>> {
        Box::pin(async { None })
    }

    fn watch_done(&self) -> tokio::sync::watch::Receiver<u64> {
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

/// One runtime for the whole run, its clock paused.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime")
});

static STATE_DIR: LazyLock<std::path::PathBuf> =
    LazyLock::new(|| std::env::temp_dir().join(format!("berth-fuzz-{}", std::process::id())));

/// Who sends the request.
enum Peer {
    Unix(u32),
    Tcp,
}

/// The request in the input's text form; `None` when the text is not one
/// (http refuses the method, the URI or a header, as a server would).
fn request(data: &[u8]) -> Option<(Peer, Request<Body>)> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(uri.parse::<Uri>().ok()?);
    let mut peer = Peer::Unix(0);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim_start();
        if name.eq_ignore_ascii_case("x-fuzz-peer") {
            peer = match value {
                "tcp" => Peer::Tcp,
                uid => Peer::Unix(uid.parse().ok()?),
            };
            continue;
        }
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some((peer, builder.body(Body::from(body.to_vec())).ok()?))
}

async fn serve(peer: Peer, req: Request<Body>) {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Arc::new(Seams {
        runtime,
        store: MemStore::new(),
    });
    let (agent, handle) = Agent::new(env, AgentConfig::new("n1", "t-", STATE_DIR.clone()))
        .expect("the loop starts on fakes");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));
    let upstream: Arc<dyn UpstreamApi> = Arc::new(FakeUpstream {
        done: tokio::sync::watch::channel(0).0,
    });
    let app: Router = match peer {
        Peer::Unix(uid) => router(
            handle,
            PeerPolicy {
                own_uid: OWN_UID,
                group_gid: Some(GROUP_GID),
                node_policy: None,
            },
            Some(upstream),
        )
        .layer(MockConnectInfo(UnixPeer {
            uid,
            gid: if uid == 1000 { GROUP_GID } else { 100 },
            pid: None,
        })),
        Peer::Tcp => {
            let access = TcpAccess {
                tokens: Arc::new(Tokens::parse(TOKENS, "tokens").expect("tokens")),
                node_policy: Arc::new(NodePolicy::default()),
            };
            tcp_router(
                handle,
                tokio::sync::watch::channel(access).1,
                Some(upstream),
            )
        }
    };
    let shown = format!("{} {}", req.method(), req.uri());
    let resp = app.oneshot(req).await.expect("the router is infallible");
    let status = resp.status();
    assert!(!status.is_server_error(), "{shown}: {status}");
    if status.is_client_error() {
        let is_json = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        assert!(is_json, "{shown}: {status} without a JSON body");
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("an error body is in memory")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{shown}: {status}: not JSON ({e}): {bytes:?}"));
        assert!(
            body.get("error").is_some_and(Value::is_string),
            "{shown}: {status}: no error text: {body}"
        );
    } else {
        // A stream (events, logs) ends when the paused clock runs out.
        let _ = tokio::time::timeout(Duration::from_secs(600), resp.into_body().collect()).await;
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(600), agent).await;
}

fuzz_target!(|data: &[u8]| {
    let Some((peer, req)) = request(data) else {
        return;
    };
    RUNTIME.block_on(serve(peer, req));
});
