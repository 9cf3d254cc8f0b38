//! The TCP listener under a connection flood (issue 29, item 5): `serve_tcp`
//! with the real router and tokens, on loopback. Idle connections opened
//! (and reopened as they are dropped) by one peer must not keep a client
//! with a token from getting its answer within 1 s, and connections that
//! never authenticate are closed at the pre-authentication deadline.
//!
//! The flood runs on a thread and runtime of its own, as an attacker on
//! another host would: it does not take the server's worker threads, only
//! CPU time. Each of its 300 connections is reopened as soon as the server
//! closes it, so it keeps far more connections in flight than the server
//! lets one peer hold, and far more than the listen backlog tokio and std
//! give a listener (128): with that backlog the kernel's accept queue
//! overflowed and dropped the client's handshake now and then, which then
//! waited a second for its SYN to be sent again (`ListenOverflows` and
//! `TCPSynRetrans` in `/proc/net/netstat`); `serve_tcp` now raises the
//! backlog.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_api::{ConnLimits, TcpAccess, Tokens, serve_tcp, tcp_router};
use berth_core::policy::NodePolicy;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod common;
use common::start_agent;

const ADMIN: &str = "admin-0123456789abcdef";

/// What issue 29 asks: an answer arrives at all within 1 s under the flood
/// (this is no speed test: an answer takes milliseconds; what took a second
/// or more was a dropped handshake waiting to be sent again).
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Authenticated requests sent during each flood (each one a new
/// connection, so each goes through the accept queue).
const REQUESTS: usize = 20;

struct Server {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    _agent: tokio::sync::oneshot::Sender<()>,
}

async fn serve(limits: ConnLimits) -> Server {
    let (handle, agent) = start_agent();
    let tokens = Tokens::parse(&format!("admin {ADMIN}\n"), "tokens").expect("tokens");
    let access = TcpAccess {
        tokens: Arc::new(tokens),
        node_policy: Arc::new(NodePolicy::default()),
    };
    let (_access_tx, access) = tokio::sync::watch::channel(access);
    let router = tcp_router(handle, access.clone(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_tls_tx, tls) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let _keep = _access_tx;
        let _keep_tls = _tls_tx;
        let _ = serve_tcp(listener, tls, access, router, limits, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        addr,
        _stop: stop,
        _agent: agent,
    }
}

/// A connection to `addr` from `from` (any loopback address).
async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// The attacker: `count` idle connections from `from`, each reopened as
/// soon as the server drops it, until `stop` (then the thread ends; join
/// it). Runs on a thread and runtime of its own. `opened` counts the
/// connections opened in all.
fn flood(
    from: IpAddr,
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<()>) {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    let thread = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..count {
                let stop = stop.clone();
                let opened = counter.clone();
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut s) = connect_from(from, addr).await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        opened.fetch_add(1, Ordering::Relaxed);
                        // Say nothing; wait for the server to close it
                        // (checking for the end now and then).
                        let mut buf = [0u8; 64];
                        while !stop.load(Ordering::Relaxed) {
                            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf))
                                .await
                            {
                                Err(_) => continue,
                                Ok(_) => break,
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    (opened, thread)
}

/// `GET /v1/node` with the admin token on a new connection: the status.
async fn authenticated_get(addr: SocketAddr) -> Result<u16, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/node")
        .header("host", "berthd")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// [`REQUESTS`] authenticated requests while 300 idle connections from
/// `attacker` are kept open: each must be answered within
/// [`ANSWER_WITHIN`]. With
/// `retry`, a request whose connection was closed before it could send
/// anything is sent again on a new one (within the same bound), as
/// clients do with a connection closed under them.
async fn answers_under_flood(attacker: IpAddr, retry: bool) {
    let server = serve(ConnLimits::default()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, attacker_thread) = flood(attacker, server.addr, 300, stop.clone());
    // Let the flood fill what it can.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        opened.load(Ordering::Relaxed) >= 300,
        "the flood is on: {} connections opened",
        opened.load(Ordering::Relaxed)
    );
    let mut slowest = Duration::ZERO;
    for i in 0..REQUESTS {
        let started = Instant::now();
        let attempt = async {
            loop {
                match authenticated_get(server.addr).await {
                    Err(e) if retry && !e.starts_with("body") => {
                        eprintln!("request {i}: {e}; trying again");
                    }
                    other => return other,
                }
            }
        };
        let status = tokio::time::timeout(ANSWER_WITHIN, attempt)
            .await
            .unwrap_or_else(|_| {
                panic!("request {i}: no answer within {ANSWER_WITHIN:?} under the flood")
            })
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, 200, "request {i}");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || attacker_thread.join()).await;
    eprintln!(
        "slowest answer under the flood from {attacker}: {slowest:?}; {} flood connections opened",
        opened.load(Ordering::Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_peer_do_not_starve_a_client_with_a_token() {
    answers_under_flood("127.0.0.2".parse().expect("ip"), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_the_clients_own_address_do_not_starve_it() {
    // Behind one NAT address: the flood's silent connections are the ones
    // evicted, not the client's once it has spoken. Until its request is
    // in, the client's new connection is as young and silent as the
    // flood's and may be closed: it tries again.
    answers_under_flood("127.0.0.1".parse().expect("ip"), true).await;
}

/// Reads until the server closes the connection; `true` if it did within
/// `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn raw_get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nhost: berthd\r\n{auth}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_valid_token_are_closed_at_the_deadline() {
    let limits = ConnLimits {
        auth_deadline: Duration::from_millis(500),
        ..ConnLimits::default()
    };
    let server = serve(limits).await;

    // Silent.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    // Idle keep-alive after an open route.
    let mut probe = TcpStream::connect(server.addr).await.expect("connect");
    probe
        .write_all(&raw_get("/healthz", None))
        .await
        .expect("write");
    // A wrong token.
    let mut wrong = TcpStream::connect(server.addr).await.expect("connect");
    wrong
        .write_all(&raw_get("/v1/node", Some("wrong-token-0123456789")))
        .await
        .expect("write");
    for (what, s) in [
        ("silent", &mut silent),
        ("healthz", &mut probe),
        ("wrong token", &mut wrong),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "{what}: still open 5 s after a 500 ms deadline"
        );
    }

    // An authenticated keep-alive connection outlives the deadline.
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    for round in 0..2 {
        let req = hyper::Request::get("/v1/node")
            .header("host", "berthd")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("answered");
        assert_eq!(resp.status(), 200, "round {round}");
        let _ = resp.into_body().collect().await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert!(
        !conn.is_finished(),
        "the authenticated connection stays open"
    );
}
