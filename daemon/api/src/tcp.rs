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

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
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

/// Serves `router` on `listener` until `shutdown` resolves; with `tls`,
/// every connection is a TLS one. Open connections are asked to close
/// when it resolves (streams end when the process does).
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    limits: TcpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %addr, max = limits.max_connections, "too many TCP API connections; closing a new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        let stop = stop_rx.clone();
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
    let _ = stop_tx.send(true);
    Ok(())
}

async fn serve_conn<S>(
    io: S,
    peer: TcpPeer,
    router: Router,
    limits: &TcpLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(peer);
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
        tracing::debug!(peer = %peer.addr, error = %e, "TCP API connection ended with an error");
    }
}
