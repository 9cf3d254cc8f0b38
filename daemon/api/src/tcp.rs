//! The API on TCP, for orchestrators: plain or TLS (mTLS when the TLS
//! config verifies clients). Connections are served by hyper directly so
//! that slow clients are bounded: a TLS handshake and a request's headers
//! must arrive within their timeouts (bodies have theirs in the router);
//! long polls and streams are not cut.
//!
//! # Who may hold a connection
//!
//! Anyone who reaches the port can open connections, token or not, so the
//! slots are shared out by what a connection has shown ([`TcpSlots`]):
//!
//! - A new connection is *unauthenticated*. It becomes *authenticated* when
//!   one of its requests carries a token the tokens file holds (checked
//!   here as the request arrives, with the same tokens the router uses).
//! - Pre-authentication deadline: a connection still unauthenticated
//!   [`ConnLimits::auth_deadline`] after it was accepted is closed, whatever
//!   it is doing (a TLS handshake, headers trickling in, idle keep-alive
//!   after a `/healthz`). An authenticated connection has no such deadline.
//! - Unauthenticated connections may fill at most `max_connections -
//!   reserved_for_authenticated` slots, and at most
//!   [`ConnLimits::max_unauthenticated_per_peer`] per peer (an IPv4
//!   address, or an IPv6 /64). The reserved share is only ever held by
//!   authenticated connections.
//! - When a new connection finds its peer's share, the unauthenticated
//!   share or every slot full, the oldest unauthenticated connection (of
//!   that peer when its share is full) is closed to make room, preferring
//!   one that has not sent a byte. Only when every slot is held by an
//!   authenticated connection is the new one refused.
//!
//! So a flood of idle connections costs the flooder its own oldest
//! connections, never an authenticated client its answer: a client with a
//! token connects, sends its request at once (so it is not silent), and is
//! authenticated as the request arrives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::Service;

use crate::accept::{Admission, accept_loop};
use crate::routes::TcpAccess;

/// Per-connection limits, for the TCP API and the local socket alike
/// (the fields marked *TCP only* are not used on the local socket, whose
/// peers are checked by their credentials before anything is read).
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// A TLS handshake must finish within this (TCP with TLS only).
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_read_timeout: Duration,
    /// Connections beyond this are closed at once (on TCP, after closing
    /// an unauthenticated one to make room if there is one).
    pub max_connections: usize,
    /// *TCP only.* A connection that has not sent a request with a valid
    /// token within this of being accepted is closed.
    pub auth_deadline: Duration,
    /// *TCP only.* Slots of `max_connections` that only authenticated
    /// connections may hold.
    pub reserved_for_authenticated: usize,
    /// *TCP only.* Unauthenticated connections one peer (IPv4 address,
    /// IPv6 /64) may hold at once.
    pub max_unauthenticated_per_peer: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            auth_deadline: Duration::from_secs(5),
            reserved_for_authenticated: 64,
            max_unauthenticated_per_peer: 16,
        }
    }
}

/// The accept backlog [`serve_tcp`] gives its listener (the kernel caps it
/// at `net.core.somaxconn`, 4096 by default).
///
/// Why: tokio and std listen with a backlog of 128. A flood of more
/// connections than that, each reopened as soon as it is closed to make
/// room, keeps the kernel's accept queue full, and a client's handshake
/// that finds it full is dropped: its SYN is sent again only after a
/// second (then three). With room for the flood in the queue, the client's
/// connection waits behind at most the flood's in-flight connections, which
/// the accept loop takes in a few milliseconds.
pub(crate) const ACCEPT_BACKLOG: i32 = 4096;

/// Who is on the other end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPeer {
    pub addr: SocketAddr,
}

/// Serves `router` on `listener` until `shutdown` resolves; while `tls`
/// holds an acceptor, every new connection is a TLS one (berthd replaces it
/// on SIGHUP: connections already open keep theirs). `access` holds the
/// tokens (the same channel the router reads): a request carrying one of
/// them authenticates its connection (see the module docs for what that
/// changes). When `shutdown` resolves, open connections are asked to close
/// and this returns once they have (streams end when the process does).
pub async fn serve_tcp(
    listener: TcpListener,
    tls: tokio::sync::watch::Receiver<Option<tokio_rustls::TlsAcceptor>>,
    access: tokio::sync::watch::Receiver<TcpAccess>,
    router: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    raise_backlog(&listener);
    let admission = TcpAdmission {
        slots: TcpSlots::new(&limits),
        tls,
        access,
        router,
        limits,
    };
    accept_loop(listener, admission, shutdown).await;
    Ok(())
}

/// The TCP listener's side of the accept loop: a slot per connection (see
/// the module docs), TLS when configured, and the connection closed when
/// it is evicted or misses the pre-authentication deadline.
struct TcpAdmission {
    slots: TcpSlots,
    tls: tokio::sync::watch::Receiver<Option<tokio_rustls::TlsAcceptor>>,
    access: tokio::sync::watch::Receiver<TcpAccess>,
    router: Router,
    limits: ConnLimits,
}

impl Admission<TcpListener> for TcpAdmission {
    const NAME: &'static str = "TCP API";

    fn admit(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        // A second handle on the socket, to peek whether the peer has
        // sent anything yet (eviction spares connections that have).
        let peek = stream
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::net::TcpStream::from);
        let (stream, heard) = Heard::new(stream);
        let slot = self.slots.admit(addr.ip(), heard, peek)?;
        let _ = stream.io.set_nodelay(true);
        let router = self.router.clone();
        let tls = self.tls.borrow().clone();
        let limits = self.limits.clone();
        let access = self.access.clone();
        Some(async move {
            let peer = TcpPeer { addr };
            let evicted = slot.evicted();
            let deadline = slot.deadline(limits.auth_deadline);
            let serve = async {
                let promote = Promote {
                    slot: slot.clone(),
                    access,
                };
                match tls {
                    None => {
                        serve_conn_with(stream, peer, router, &limits, stop, Some(promote)).await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(
                            limits.handshake_timeout,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(s)) => {
                                serve_conn_with(s, peer, router, &limits, stop, Some(promote)).await
                            }
                            Ok(Err(e)) => {
                                tracing::info!(peer = %addr, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                () = evicted => {
                    tracing::debug!(peer = %addr, "closed an unauthenticated TCP API connection to make room");
                }
                () = deadline => {
                    slot.note_closed();
                    tracing::debug!(peer = %addr, deadline = ?limits.auth_deadline, "closed a TCP API connection that sent no valid token in time");
                }
            }
            drop(slot);
        })
    }

    async fn drain(self) {
        self.slots.drain().await;
    }
}

/// Gives `listener` the [`ACCEPT_BACKLOG`]: listen(2) on a listening socket
/// sets its backlog anew.
fn raise_backlog(listener: &TcpListener) {
    if let Err(e) = rustix::net::listen(listener, ACCEPT_BACKLOG) {
        tracing::warn!(error = %e, backlog = ACCEPT_BACKLOG, "cannot raise the TCP API listener's accept backlog; a connection flood may delay clients by a second or more");
    }
}

/// Marks a connection authenticated when a request carries a valid token.
#[derive(Clone)]
struct Promote {
    slot: Slot,
    access: tokio::sync::watch::Receiver<TcpAccess>,
}

impl Promote {
    fn check(&self, headers: &http::HeaderMap) {
        if self.slot.is_authenticated() {
            return;
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return;
        };
        let tokens = self.access.borrow().tokens.clone();
        if tokens.authenticate(value.as_bytes()).is_some() {
            self.slot.promote();
        }
    }
}

/// The peer key for the per-peer share: an IPv4 address (IPv4-mapped IPv6
/// counts as IPv4), or the /64 of an IPv6 address (one host usually has a
/// whole /64).
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// How often at most the TCP listener warns about connections it closed
/// to keep room (each one is a debug line).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The TCP listener's slots (see the module docs): a total cap, a share for
/// unauthenticated connections, a per-peer share of that, and eviction of
/// the oldest unauthenticated connection to make room.
pub(crate) struct TcpSlots {
    state: Arc<Mutex<SlotState>>,
    open: tokio::sync::watch::Receiver<usize>,
}

struct SlotState {
    max: usize,
    max_unauth: usize,
    per_peer: usize,
    /// Every open connection.
    total: usize,
    open_tx: tokio::sync::watch::Sender<usize>,
    next_id: u64,
    /// The unauthenticated connections, oldest first.
    unauth: BTreeMap<u64, Unauth>,
    per_peer_unauth: HashMap<IpAddr, usize>,
    /// Evicted connections whose task has not ended yet (no longer in
    /// `total`).
    uncounted: HashSet<u64>,
    /// Connections closed to keep room since the last warning.
    closed: u64,
    last_warn: Option<Instant>,
}

struct Unauth {
    peer: IpAddr,
    /// Set once the server has read a byte from the peer.
    heard: Arc<AtomicBool>,
    /// The same socket, to peek at bytes not read yet.
    peek: Option<std::net::TcpStream>,
    /// Fired to close the connection; dropped (not fired) when it is
    /// authenticated.
    evict: tokio::sync::oneshot::Sender<()>,
}

impl Unauth {
    /// Whether the peer has sent anything, read or not yet read.
    fn has_spoken(&self) -> bool {
        if self.heard.load(Ordering::Relaxed) {
            return true;
        }
        // Non-blocking (the socket is): WouldBlock when nothing waits,
        // Ok(0) when the peer has closed its side.
        let mut byte = [0u8; 1];
        self.peek
            .as_ref()
            .is_some_and(|p| matches!(p.peek(&mut byte), Ok(n) if n > 0))
    }
}

impl SlotState {
    /// Closes the oldest unauthenticated connection (of `peer` when given),
    /// a silent one if there is one. `false` when there is none.
    fn evict_oldest(&mut self, peer: Option<IpAddr>) -> bool {
        let candidates = || {
            self.unauth
                .iter()
                .filter(move |(_, u)| peer.is_none_or(|p| u.peer == p))
        };
        let silent = candidates()
            .find(|(_, u)| !u.has_spoken())
            .map(|(id, _)| *id);
        let Some(id) = silent.or_else(|| candidates().next().map(|(id, _)| *id)) else {
            return false;
        };
        if let Some(u) = self.forget_unauth(id) {
            // Its slot is free now; the task closes the socket next.
            let _ = u.evict.send(());
            self.total = self.total.saturating_sub(1);
            self.uncounted.insert(id);
            let total = self.total;
            self.open_tx.send_replace(total);
            self.note_closed();
        }
        true
    }

    fn forget_unauth(&mut self, id: u64) -> Option<Unauth> {
        let u = self.unauth.remove(&id)?;
        if let Some(n) = self.per_peer_unauth.get_mut(&u.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer_unauth.remove(&u.peer);
            }
        }
        Some(u)
    }

    /// Counts a connection closed to keep room; warns at most every
    /// [`WARN_EVERY`].
    fn note_closed(&mut self) {
        self.closed += 1;
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            tracing::warn!(
                closed = self.closed,
                open = self.total,
                unauthenticated = self.unauth.len(),
                "closed or refused unauthenticated TCP API connections to keep room for clients with a token (too many connections, or no valid token within the deadline)"
            );
            self.closed = 0;
            self.last_warn = Some(now);
        }
    }
}

impl TcpSlots {
    pub(crate) fn new(limits: &ConnLimits) -> TcpSlots {
        let max = limits.max_connections.max(1);
        let (open_tx, open) = tokio::sync::watch::channel(0);
        TcpSlots {
            state: Arc::new(Mutex::new(SlotState {
                max,
                max_unauth: max.saturating_sub(limits.reserved_for_authenticated).max(1),
                per_peer: limits.max_unauthenticated_per_peer.max(1),
                total: 0,
                open_tx,
                next_id: 0,
                unauth: BTreeMap::new(),
                per_peer_unauth: HashMap::new(),
                uncounted: HashSet::new(),
                closed: 0,
                last_warn: None,
            })),
            open,
        }
    }

    fn lock(state: &Mutex<SlotState>) -> std::sync::MutexGuard<'_, SlotState> {
        state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip`, unauthenticated; `None` when
    /// every slot is held by an authenticated connection.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        heard: Arc<AtomicBool>,
        peek: Option<std::net::TcpStream>,
    ) -> Option<Slot> {
        let peer = peer_key(ip);
        let mut s = Self::lock(&self.state);
        if s.per_peer_unauth.get(&peer).copied().unwrap_or(0) >= s.per_peer {
            s.evict_oldest(Some(peer));
        }
        if s.unauth.len() >= s.max_unauth {
            s.evict_oldest(None);
        }
        if s.total >= s.max && !s.evict_oldest(None) {
            s.note_closed();
            tracing::debug!(%ip, max = s.max, "every TCP API slot is held by an authenticated connection; closing a new one");
            return None;
        }
        let id = s.next_id;
        s.next_id += 1;
        let (evict, evicted) = tokio::sync::oneshot::channel();
        s.unauth.insert(
            id,
            Unauth {
                peer,
                heard,
                peek,
                evict,
            },
        );
        *s.per_peer_unauth.entry(peer).or_insert(0) += 1;
        s.total += 1;
        let total = s.total;
        s.open_tx.send_replace(total);
        Some(Slot(Arc::new(SlotInner {
            id,
            state: self.state.clone(),
            authenticated: AtomicBool::new(false),
            evicted: Mutex::new(Some(evicted)),
        })))
    }

    /// Waits until every connection has closed.
    pub(crate) async fn drain(self) {
        let mut open = self.open;
        let _ = open.wait_for(|n| *n == 0).await;
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let s = Self::lock(&self.state);
        (s.total, s.unauth.len())
    }
}

/// One connection's slot, held for its life (clones share it).
#[derive(Clone)]
pub(crate) struct Slot(Arc<SlotInner>);

struct SlotInner {
    id: u64,
    state: Arc<Mutex<SlotState>>,
    authenticated: AtomicBool,
    evicted: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Slot {
    fn is_authenticated(&self) -> bool {
        self.0.authenticated.load(Ordering::Acquire)
    }

    /// The connection presented a valid token: it leaves the
    /// unauthenticated share and is never evicted or timed out.
    fn promote(&self) {
        let mut s = TcpSlots::lock(&self.0.state);
        // Evicted meanwhile: too late, the connection is closing.
        if s.forget_unauth(self.0.id).is_some() {
            self.0.authenticated.store(true, Ordering::Release);
        }
    }

    fn note_closed(&self) {
        TcpSlots::lock(&self.0.state).note_closed();
    }

    /// Resolves when the connection is closed to make room (never once it
    /// is authenticated).
    fn evicted(&self) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self
            .0
            .evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        async move {
            let fired = match rx {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            if !fired {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves `after` from now if the connection is still
    /// unauthenticated then; never otherwise.
    fn deadline(&self, after: Duration) -> impl std::future::Future<Output = ()> + use<> {
        let slot = self.clone();
        async move {
            tokio::time::sleep(after).await;
            if slot.is_authenticated() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut s = TcpSlots::lock(&self.state);
        s.forget_unauth(self.id);
        if s.uncounted.remove(&self.id) {
            return;
        }
        s.total = s.total.saturating_sub(1);
        let total = s.total;
        s.open_tx.send_replace(total);
    }
}

/// An IO that notes when its peer first sent a byte (eviction prefers
/// connections that never did).
struct Heard<S> {
    io: S,
    heard: Arc<AtomicBool>,
}

impl<S> Heard<S> {
    fn new(io: S) -> (Heard<S>, Arc<AtomicBool>) {
        let heard = Arc::new(AtomicBool::new(false));
        (
            Heard {
                io,
                heard: heard.clone(),
            },
            heard,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.heard.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves one connection; `peer` is put in every request's extensions.
pub(crate) async fn serve_conn<S, P>(
    io: S,
    peer: P,
    router: Router,
    limits: &ConnLimits,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    serve_conn_with(io, peer, router, limits, stop, None).await
}

/// [`serve_conn`], and with `promote`, each request's token is checked
/// as it arrives (before routing) to authenticate the connection.
async fn serve_conn_with<S, P>(
    io: S,
    peer: P,
    router: Router,
    limits: &ConnLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
    promote: Option<Promote>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    P: Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let shown = format!("{peer:?}");
    let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        if let Some(p) = &promote {
            p.check(req.headers());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserved: usize, per_peer: usize) -> ConnLimits {
        ConnLimits {
            max_connections: max,
            reserved_for_authenticated: reserved,
            max_unauthenticated_per_peer: per_peer,
            ..ConnLimits::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn admit(slots: &TcpSlots, from: &str) -> Option<Slot> {
        slots.admit(ip(from), Arc::new(AtomicBool::new(false)), None)
    }

    /// Whether the connection's eviction has fired.
    fn is_evicted(slot: &Slot) -> bool {
        let fut = slot.evicted();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut fut = std::pin::pin!(fut);
        fut.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_peer_over_its_share_loses_its_oldest_silent_connection() {
        let slots = TcpSlots::new(&limits(10, 2, 3));
        // The first one has spoken: the second (oldest silent) goes.
        let a: Vec<Slot> = (0..3)
            .map(|i| {
                slots
                    .admit(ip("10.0.0.1"), Arc::new(AtomicBool::new(i == 0)), None)
                    .expect("admitted")
            })
            .collect();
        let fourth = admit(&slots, "10.0.0.1").expect("admitted");
        assert!(!is_evicted(&a[0]));
        assert!(is_evicted(&a[1]));
        assert!(!is_evicted(&a[2]) && !is_evicted(&fourth));
        // Another peer is not touched by this one's share.
        let b = admit(&slots, "10.0.0.2").expect("admitted");
        assert!(!is_evicted(&b) && !is_evicted(&a[2]));
        assert_eq!(slots.counts(), (4, 4));
    }

    #[test]
    fn the_reserved_share_is_only_for_authenticated_connections() {
        let slots = TcpSlots::new(&limits(6, 2, 100));
        // Four unauthenticated from many peers fill the unreserved share.
        let first: Vec<Slot> = (1..=4)
            .map(|i| admit(&slots, &format!("10.0.0.{i}")).expect("admitted"))
            .collect();
        // A fifth evicts the oldest rather than taking a reserved slot.
        let fifth = admit(&slots, "10.0.0.5").expect("admitted");
        assert!(is_evicted(&first[0]));
        assert_eq!(slots.counts(), (4, 4));
        // Authenticated connections leave the unauthenticated share...
        fifth.promote();
        first[1].promote();
        assert_eq!(slots.counts(), (4, 2));
        // ...and are never evicted: fill every slot, then one more.
        let more: Vec<Slot> = (6..=7)
            .map(|i| admit(&slots, &format!("10.0.0.{i}")).expect("admitted"))
            .collect();
        assert_eq!(slots.counts(), (6, 4));
        let late = admit(&slots, "10.0.0.8").expect("admitted");
        assert!(!is_evicted(&fifth) && !is_evicted(&first[1]));
        assert!(is_evicted(&first[2]));
        // Every slot authenticated: a new connection is refused.
        for s in [&first[3], &more[0], &more[1], &late] {
            s.promote();
        }
        assert_eq!(slots.counts(), (6, 0));
        assert!(admit(&slots, "10.0.0.9").is_none());
        drop(late);
        assert!(admit(&slots, "10.0.0.9").is_some());
    }

    #[test]
    fn ipv6_peers_share_by_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(peer_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(peer_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(peer_key(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    /// Connections that complete their handshake on `listener` within 2 s
    /// when `n` connect at once and nothing accepts them.
    async fn handshakes_without_accept(listener: &TcpListener, n: usize) -> usize {
        let addr = listener.local_addr().expect("addr");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            tasks.spawn(async move {
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await
                    .ok()
                    .and_then(Result::ok)
            });
        }
        let mut open = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(s)) = done {
                open.push(s);
            }
        }
        open.len()
    }

    /// The flood of issue 29 keeps ~300 connections in flight; with the
    /// backlog of 128 that tokio gives a listener, the accept queue filled
    /// and a client's handshake was dropped (its SYN sent again a second
    /// later). The raised backlog holds them all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_raised_backlog_holds_a_flood_the_default_one_drops() {
        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let held = handshakes_without_accept(&plain, 400).await;
        assert!(held < 400, "tokio's default backlog held {held} of 400");

        let raised = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        raise_backlog(&raised);
        let held = handshakes_without_accept(&raised, 400).await;
        assert_eq!(held, 400, "the raised backlog holds every handshake");
    }

    #[tokio::test]
    async fn drain_waits_for_connections_evicted_ones_included() {
        let slots = TcpSlots::new(&limits(2, 0, 1));
        let a = admit(&slots, "10.0.0.1").expect("admitted");
        let b = admit(&slots, "10.0.0.1").expect("admitted");
        assert!(is_evicted(&a));
        drop(a);
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), slots.drain())
            .await
            .expect("drained");
    }
}
