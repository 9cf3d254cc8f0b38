//! The API on TCP, for orchestrators: plain or TLS (mTLS when the TLS
//! config verifies clients). Connections are served by hyper directly so
//! that slow clients are bounded: a TLS handshake and a request's headers
//! must arrive within their timeouts (bodies have theirs in the router);
//! long polls and streams are not cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tower::Service;

/// Per-connection limits, for the TCP API and the local socket alike.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A TLS handshake must finish within this (TCP with TLS only).
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Who is on the other end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPeer {
    pub addr: SocketAddr,
}

/// Serves `router` on `listener` until `shutdown` resolves; while `tls`
/// holds an acceptor, every new connection is a TLS one (berthd replaces it
/// on SIGHUP: connections already open keep theirs). When `shutdown`
/// resolves, open connections are asked to close and this returns once
/// they have (streams end when the process does).
pub async fn serve_tcp(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Option<tokio_rustls::TlsAcceptor>>,
    router: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = Connections::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a TCP API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = conns.admit() else {
            tracing::warn!(peer = %addr, max = limits.max_connections, "too many TCP API connections; closing a new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.borrow().clone();
        let limits = limits.clone();
        let stop = conns.stopping();
        tokio::spawn(async move {
            let peer = TcpPeer { addr };
            match tls {
                None => serve_conn(stream, peer, router, &limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => serve_conn(s, peer, router, &limits, stop).await,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    conns.drain().await;
    Ok(())
}

/// The open connections of one listener: at most `max`, and told to close
/// when the listener stops.
pub(crate) struct Connections {
    slots: Arc<tokio::sync::Semaphore>,
    max: usize,
    stop_tx: tokio::sync::watch::Sender<bool>,
}

impl Connections {
    pub(crate) fn new(max: usize) -> Connections {
        Connections {
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            stop_tx: tokio::sync::watch::channel(false).0,
        }
    }

    /// A slot for a new connection, held for its life; `None` when full.
    pub(crate) fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Turns true when the listener stops.
    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Asks every connection to close and waits until all have.
    pub(crate) async fn drain(self) {
        let _ = self.stop_tx.send(true);
        let max = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(max).await;
    }
}

/// Serves one connection; `peer` is put in every request's extensions.
pub(crate) async fn serve_conn<S, P>(
    io: S,
    peer: P,
    router: Router,
    limits: &ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let shown = format!("{peer:?}");
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        let mut router = router.clone();
        async move { router.call(req).await }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = shown, error = %e, "API connection ended with an error");
    }
}
