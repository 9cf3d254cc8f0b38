//! `Undercloud`: an in-process fake of the Heat side of a node, for the
//! upstream tests. One HTTP server on 127.0.0.1 (its own thread and
//! runtime) that
//! - serves server metadata at `GET /metadata` with an ETag (a matching
//!   `If-None-Match` gets 304) and counts full and 304 answers;
//! - records every signal (`POST|PUT /signal/...`, and Heat's
//!   `POST /v1/{project}/stacks/{stack}/{id}/resources/{res}/signal`, which
//!   needs a token the fake Keystone issued) with method, path, headers,
//!   body and the status it answered, so tests can count deliveries per
//!   `Idempotency-Key`;
//! - fakes Keystone: `POST /v3/auth/tokens` answers 201 with an
//!   `X-Subject-Token` and a catalog whose `orchestration` endpoint points
//!   back here (`/v1/{project}`);
//! - records reports (`POST /report`);
//! - answers 404 under `/gone/` (a signal URL that no longer exists);
//! - can be made to fail: [`Mode::Status`] answers every request with that
//!   status, [`Mode::Hang`] never answers, [`Mode::Down`] drops every
//!   connection at once.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

/// How the undercloud answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    /// Every request gets this status (and is still recorded).
    Status(u16),
    /// Requests are read and never answered.
    Hang,
    /// Connections are accepted and closed at once.
    Down,
}

/// One request the undercloud answered (or hung on).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// What it answered (0: nothing, it hung).
    pub status: u16,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }
}

#[derive(Default)]
struct State {
    metadata: Option<Value>,
    etag_n: u64,
    metadata_full: usize,
    metadata_304: usize,
    signals: Vec<Recorded>,
    reports: Vec<Recorded>,
    keystone: Vec<Recorded>,
    tokens: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    mode: watch::Sender<Mode>,
    addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Undercloud {
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Undercloud {
    pub fn start() -> Undercloud {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind undercloud");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = {
            let _g = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("listener")
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            mode: watch::Sender::new(Mode::Healthy),
            addr,
        });
        let (shutdown, mut shutdown_rx) = oneshot::channel::<()>();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("undercloud".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        loop {
                            tokio::select! {
                                _ = &mut shutdown_rx => break,
                                accepted = listener.accept() => {
                                    let Ok((stream, _)) = accepted else { continue };
                                    if *shared.mode.borrow() == Mode::Down {
                                        drop(stream);
                                        continue;
                                    }
                                    let shared = shared.clone();
                                    tokio::spawn(async move {
                                        let svc = service_fn(move |req| {
                                            let shared = shared.clone();
                                            async move { Ok::<_, Infallible>(handle(shared, req).await) }
                                        });
                                        let _ = hyper::server::conn::http1::Builder::new()
                                            .serve_connection(TokioIo::new(stream), svc)
                                            .await;
                                    });
                                }
                            }
                        }
                    });
                    drop(runtime);
                })
                .expect("undercloud thread")
        };
        Undercloud {
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.shared.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        self.shared.addr.to_string()
    }

    /// What `GET /metadata` serves from now on (a new ETag).
    pub fn set_metadata(&self, metadata: Value) {
        let mut s = lock(&self.shared.state);
        s.metadata = Some(metadata);
        s.etag_n += 1;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// (200 answers with a body, 304 answers) to `GET /metadata`.
    pub fn metadata_counts(&self) -> (usize, usize) {
        let s = lock(&self.shared.state);
        (s.metadata_full, s.metadata_304)
    }

    /// Every signal request, in order (failed ones included).
    pub fn signals(&self) -> Vec<Recorded> {
        lock(&self.shared.state).signals.clone()
    }

    /// The signals answered 2xx.
    pub fn delivered(&self) -> Vec<Recorded> {
        self.signals()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Idempotency key → how often a signal with it was answered 2xx.
    pub fn delivered_by_key(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.delivered() {
            *m.entry(r.key().unwrap_or_default().to_string())
                .or_insert(0) += 1;
        }
        m
    }

    /// Keys delivered (2xx) more than once.
    pub fn duplicates(&self) -> usize {
        self.delivered_by_key().values().filter(|n| **n > 1).count()
    }

    pub fn reports(&self) -> Vec<Recorded> {
        lock(&self.shared.state).reports.clone()
    }

    pub fn keystone_requests(&self) -> Vec<Recorded> {
        lock(&self.shared.state).keystone.clone()
    }
}

impl Drop for Undercloud {
    fn drop(&mut self) {
        // Hanging requests end with the runtime.
        self.shared.mode.send_replace(Mode::Healthy);
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Body = Full<Bytes>;

fn reply(status: u16, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let bare = req.uri().path().to_string();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut rec = Recorded {
        method: method.clone(),
        path,
        headers,
        body,
        status: 0,
    };
    let mode = *shared.mode.borrow();
    if mode == Mode::Hang {
        let mut rx = shared.mode.subscribe();
        // Until the mode changes (or the server stops).
        let _ = tokio::time::timeout(Duration::from_secs(3600), rx.changed()).await;
        return reply(503, json!({"error": "was hanging"}));
    }
    let forced = match mode {
        Mode::Status(s) => Some(s),
        _ => None,
    };
    let mut st = lock(&shared.state);
    if bare == "/metadata" && method == "GET" {
        if let Some(s) = forced {
            return reply(s, json!({"error": "forced"}));
        }
        let etag = format!("\"m{}\"", st.etag_n);
        if rec.header("if-none-match") == Some(etag.as_str()) {
            st.metadata_304 += 1;
            let mut r = reply(304, Value::Null);
            *r.body_mut() = Full::new(Bytes::new());
            return r;
        }
        st.metadata_full += 1;
        let body = st
            .metadata
            .clone()
            .unwrap_or_else(|| json!({"deployments": []}));
        let mut r = reply(200, body);
        if let Ok(v) = hyper::header::HeaderValue::from_str(&etag) {
            r.headers_mut().insert(hyper::header::ETAG, v);
        }
        return r;
    }
    if bare == "/v3/auth/tokens" && method == "POST" {
        let status = forced.unwrap_or(201);
        rec.status = status;
        st.keystone.push(rec.clone());
        if status != 201 {
            return reply(status, json!({"error": "forced"}));
        }
        let project = rec
            .json()
            .pointer("/auth/scope/project/id")
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_string();
        let token = format!("tok-{}", st.tokens.len() + 1);
        st.tokens.push(token.clone());
        let endpoint = format!("http://{}/v1/{project}", shared.addr);
        let mut r = reply(
            201,
            json!({"token": {"catalog": [
                {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": format!("http://{}/v3", shared.addr)}]},
                {"type": "orchestration", "endpoints": [
                    {"interface": "internal", "region_id": "RegionOne", "url": "http://127.0.0.1:1/wrong"},
                    {"interface": "public", "region_id": "RegionOne", "url": endpoint}
                ]}
            ]}}),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(&token) {
            r.headers_mut().insert("x-subject-token", v);
        }
        return r;
    }
    if bare == "/report" && method == "POST" {
        let status = forced.unwrap_or(204);
        rec.status = status;
        st.reports.push(rec);
        return reply(status, Value::Null);
    }
    let heat_signal = bare.starts_with("/v1/") && bare.ends_with("/signal");
    if bare.starts_with("/signal/") || bare.starts_with("/gone/") || heat_signal {
        let mut status = forced.unwrap_or(200);
        if bare.starts_with("/gone/") {
            status = 404;
        } else if heat_signal
            && forced.is_none()
            && !rec
                .header("x-auth-token")
                .is_some_and(|t| st.tokens.iter().any(|k| k == t))
        {
            status = 401;
        }
        rec.status = status;
        st.signals.push(rec);
        return reply(status, Value::Null);
    }
    reply(404, json!({"error": "no such route"}))
}
