//! The local API on a Unix socket. Peers are checked with SO_PEERCRED:
//! root, berthd's own uid, or a member (primary or supplementary) of the
//! configured group. No token. Root and berthd's own uid are trusted; the
//! specs of other members are checked against the node policy, as pushed
//! specs are (a member must not be root in effect).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use berth_core::policy::NodePolicy;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::accept::{Admission, accept_loop};
use crate::tcp::{ConnLimits, serve_conn};

/// What SO_PEERCRED said about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixPeer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl UnixPeer {
    /// SO_PEERCRED of `stream`.
    pub fn of(stream: &UnixStream) -> UnixPeer {
        match stream.peer_cred() {
            Ok(c) => UnixPeer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            // Unknown peer: an impossible uid that no policy admits.
            Err(_) => UnixPeer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

/// Who may use the local socket.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// berthd's own effective uid (always allowed, as is root).
    pub own_uid: u32,
    /// The `socket_group`'s gid, when that group exists.
    pub group_gid: Option<u32>,
    /// `[policy]` as it is now (berthd's SIGHUP replaces it), applied to
    /// members of the group that are not root or berthd's uid. `None`: the
    /// strictest policy ([`NodePolicy::default`]).
    pub node_policy: Option<tokio::sync::watch::Receiver<Arc<NodePolicy>>>,
}

impl PeerPolicy {
    /// Root and berthd's own uid: the local operator, whose specs are not
    /// checked against the node policy.
    pub fn trusts(&self, peer: &UnixPeer) -> bool {
        peer.uid == 0 || peer.uid == self.own_uid
    }

    /// The node policy `peer`'s specs are checked against; `None` for a
    /// trusted peer.
    pub fn node_policy_for(&self, peer: &UnixPeer) -> Option<Arc<NodePolicy>> {
        if self.trusts(peer) {
            return None;
        }
        Some(match &self.node_policy {
            Some(rx) => Arc::clone(&rx.borrow()),
            None => Arc::default(),
        })
    }

    pub fn allows(&self, peer: &UnixPeer) -> bool {
        if self.trusts(peer) {
            return true;
        }
        let Some(gid) = self.group_gid else {
            return false;
        };
        if peer.gid == gid {
            return true;
        }
        peer.pid
            .is_some_and(|pid| supplementary_groups(pid).contains(&gid))
    }
}

/// The supplementary groups of a process, from /proc (empty when unreadable).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Binds the socket: removes a stale socket file first (never another kind
/// of file), then sets mode 0660 (group ownership is set by the caller, who
/// knows the group).
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A live berthd answers on it; a stale file refuses connections.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by a running process (another berthd?)",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Serves `router` on `listener` until `shutdown` resolves, with the same
/// bounds as the TCP API (`limits`: a request's headers must arrive in
/// time, and connections beyond the maximum are closed), so that a stuck
/// local client cannot hold the socket. Each request carries its peer's
/// credentials as `ConnectInfo<UnixPeer>`. Returns once open connections
/// have closed.
pub async fn serve_unix(
    listener: UnixListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admission = UnixAdmission {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        router,
        limits,
    };
    accept_loop(listener, admission, shutdown).await;
    Ok(())
}

/// The local socket's side of the accept loop: at most
/// `limits.max_connections` open, each request tagged with its peer's
/// credentials (who may do what is the router's to check).
struct UnixAdmission {
    /// A permit per open connection.
    slots: Arc<Semaphore>,
    router: Router,
    limits: ConnLimits,
}

impl Admission<UnixListener> for UnixAdmission {
    const NAME: &'static str = "local API";

    fn admit(
        &self,
        stream: UnixStream,
        _addr: tokio::net::unix::SocketAddr,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let peer = UnixPeer::of(&stream);
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(
                uid = peer.uid,
                max = self.limits.max_connections,
                "too many local API connections; closing a new one"
            );
            return None;
        };
        let router = self.router.clone();
        let limits = self.limits.clone();
        Some(async move {
            serve_conn(stream, ConnectInfo(peer), router, &limits, stop).await;
            drop(permit);
        })
    }

    async fn drain(self) {
        let max = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let _ = self.slots.acquire_many(max).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends one keep-alive request and reads the answer's body (the
    /// peer's uid as the router saw it).
    async fn ask(conn: &mut UnixStream) -> String {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: berth\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // The body ends in `#!`.
        while !got.ends_with(b"#!") {
            let n = conn.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let body = text.rsplit("\r\n\r\n").next().unwrap_or_default();
        body.trim_end_matches("#!").to_string()
    }

    /// Whether the server closed `conn` (it reads end of file in time).
    async fn closed(conn: &mut UnixStream) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn peers_are_tagged_the_maximum_holds_and_a_stop_drains() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("api.sock");
        let listener = bind_unix(&path).expect("bind");
        let own_uid = std::fs::metadata(tmp.path()).expect("stat").uid();
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<UnixPeer>| async move {
                format!("{}#!", peer.uid)
            }),
        );
        let limits = ConnLimits {
            max_connections: 1,
            ..ConnLimits::default()
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_unix(listener, router, limits, async move {
            let _ = stopped.await;
        }));

        let mut first = UnixStream::connect(&path).await.expect("connect");
        assert_eq!(ask(&mut first).await, own_uid.to_string());
        // The one slot is held (the first connection is kept alive): a
        // second connection is closed at once.
        let mut second = UnixStream::connect(&path).await.expect("connect");
        assert!(
            closed(&mut second).await,
            "a connection beyond the maximum is closed"
        );

        // A stop closes the idle connection, and serving ends once it has.
        shutdown.send(()).expect("shutdown");
        assert!(
            closed(&mut first).await,
            "an open connection is closed at a stop"
        );
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("serve_unix returns")
            .expect("no panic")
            .expect("served");
    }
}
