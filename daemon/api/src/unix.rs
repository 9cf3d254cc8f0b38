//! The local API on a Unix socket. Peers are checked with SO_PEERCRED:
//! root, berthd's own uid, or a member (primary or supplementary) of the
//! configured group. No token. Root and berthd's own uid are trusted; the
//! specs of other members are checked against the node policy, as pushed
//! specs are (a member must not be root in effect).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use berth_core::policy::NodePolicy;
use tokio::net::{UnixListener, UnixStream};

use crate::tcp::{ConnLimits, Connections, serve_conn};

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
    let conns = Connections::new(limits.max_connections);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a local API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = UnixPeer::of(&stream);
        let Some(permit) = conns.admit() else {
            tracing::warn!(
                uid = peer.uid,
                max = limits.max_connections,
                "too many local API connections; closing a new one"
            );
            drop(stream);
            continue;
        };
        let router = router.clone();
        let limits = limits.clone();
        let stop = conns.stopping();
        tokio::spawn(async move {
            serve_conn(stream, ConnectInfo(peer), router, &limits, stop).await;
            drop(permit);
        });
    }
    conns.drain().await;
    Ok(())
}
