//! The systemd integration: `sd_notify` (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING), socket activation (`LISTEN_FDS`), and whether stderr is
//! connected to the journal (`JOURNAL_STREAM`).
//!
//! Everything systemd tells berthd through the environment is read once, by
//! [`SdEnv::from_env`] at the top of `main`, before any thread exists; nothing
//! here sets or removes environment variables. Without `NOTIFY_SOCKET` every
//! notification is a no-op, so berthd behaves the same outside systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// What systemd passed to this process through the environment.
#[derive(Debug, Default)]
pub struct SdEnv {
    /// `NOTIFY_SOCKET`: a path, or an abstract name starting with `@`.
    pub notify_socket: Option<String>,
    /// `WATCHDOG_USEC`, when `WATCHDOG_PID` is unset or names us.
    pub watchdog: Option<Duration>,
    /// `LISTEN_FDS`, when `LISTEN_PID` names us.
    pub listen_fds: u32,
    /// `JOURNAL_STREAM` (`dev:ino` of the journal stream on stdout/stderr).
    pub journal_stream: Option<(u64, u64)>,
}

impl SdEnv {
    /// Reads the variables. Call before any thread exists.
    pub fn from_env() -> SdEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        SdEnv::parse(std::process::id(), var)
    }

    fn parse(pid: u32, var: impl Fn(&str) -> Option<String>) -> SdEnv {
        let ours = |k: &str| match var(k) {
            None => true,
            Some(v) => v.trim().parse::<u32>().ok() == Some(pid),
        };
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours("WATCHDOG_PID"))
            .map(Duration::from_micros);
        let listen_fds = match var("LISTEN_PID") {
            Some(p) if p.trim().parse::<u32>().ok() == Some(pid) => var("LISTEN_FDS")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        let journal_stream = var("JOURNAL_STREAM").and_then(|v| {
            let (dev, ino) = v.split_once(':')?;
            Some((dev.trim().parse().ok()?, ino.trim().parse().ok()?))
        });
        SdEnv {
            notify_socket: var("NOTIFY_SOCKET"),
            watchdog,
            listen_fds,
            journal_stream,
        }
    }

    /// True when stderr is the journal stream systemd set up (not merely
    /// inherited by a child of a unit whose stderr went elsewhere).
    pub fn stderr_is_journal(&self) -> bool {
        use std::os::fd::AsFd;
        use std::os::unix::fs::MetadataExt;
        let Some((dev, ino)) = self.journal_stream else {
            return false;
        };
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        match std::fs::File::from(fd).metadata() {
            Ok(m) => m.dev() == dev && m.ino() == ino,
            Err(_) => false,
        }
    }

    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.notify_socket.as_deref())
    }
}

/// Sends `sd_notify` messages; a no-op without `NOTIFY_SOCKET`.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Option<std::sync::Arc<Target>>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    pub fn disabled() -> Notifier {
        Notifier { inner: None }
    }

    fn new(notify_socket: Option<&str>) -> Notifier {
        let Some(path) = notify_socket else {
            return Notifier::disabled();
        };
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            std::os::unix::net::SocketAddr::from_pathname(path)
        };
        let target = addr.and_then(|addr| Ok((UnixDatagram::unbound()?, addr)));
        match target {
            Ok((socket, addr)) => Notifier {
                inner: Some(std::sync::Arc::new(Target { socket, addr })),
            },
            Err(e) => {
                tracing::warn!(notify_socket = path, error = %e, "cannot use NOTIFY_SOCKET; not notifying systemd");
                Notifier::disabled()
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends `msg` (newline-separated `KEY=value` lines). Failures are logged,
    /// never fatal: systemd may be gone while berthd stops.
    pub fn send(&self, msg: &str) {
        let Some(t) = &self.inner else { return };
        if let Err(e) = t.socket.send_to_addr(msg.as_bytes(), &t.addr) {
            tracing::debug!(error = %e, msg, "sd_notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping; containers keep running");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The listener systemd passed (fd 3), if this process was socket-activated.
/// `Err` when `LISTEN_FDS` names us but fd 3 is not a listening Unix socket.
pub fn inherited_listener(
    env: &SdEnv,
) -> std::io::Result<Option<std::os::unix::net::UnixListener>> {
    if env.listen_fds == 0 {
        return Ok(None);
    }
    if env.listen_fds > 1 {
        tracing::warn!(
            listen_fds = env.listen_fds,
            "systemd passed more than one socket; using the first (fd 3)"
        );
    }
    let listener = take_fd3()?;
    // An fd that is not a Unix socket fails here (getsockname's family differs).
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    tracing::info!(socket = ?addr.as_pathname(), "using the socket passed by systemd");
    Ok(Some(listener))
}

#[allow(unsafe_code)]
fn take_fd3() -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    let fd = LISTEN_FDS_START;
    // SAFETY: per the sd_listen_fds protocol, when LISTEN_PID is our pid and
    // LISTEN_FDS >= 1, fd 3 is an open socket that systemd passed to this
    // process and nothing else in it owns; `SdEnv::from_env` checked both
    // before any thread existed, and this function is called once. fcntl only
    // reads and sets fd flags on that fd.
    unsafe {
        if libc::fcntl(fd, libc::F_GETFD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Not inherited by anything berthd might spawn.
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(std::os::unix::net::UnixListener::from_raw_fd(fd))
    }
}

/// Feeds the systemd watchdog from the agent loop's heartbeat: `WATCHDOG=1`
/// at most every half interval, and only when the loop ticked since the last
/// ping, so a wedged loop stops the pings and systemd restarts berthd.
pub async fn feed_watchdog(
    notifier: Notifier,
    interval: Duration,
    mut heartbeat: tokio::sync::watch::Receiver<u64>,
) {
    let half = interval / 2;
    let mut last_ping: Option<tokio::time::Instant> = None;
    loop {
        // Resolves only when the loop bumps the heartbeat.
        if heartbeat.changed().await.is_err() {
            tracing::debug!("the loop's heartbeat ended; no more watchdog pings");
            return;
        }
        let now = tokio::time::Instant::now();
        if last_ping.is_none_or(|t| now.duration_since(t) >= half) {
            notifier.watchdog();
            last_ping = Some(now);
        }
    }
}

/// Keeps systemd's STATUS= at the node's one-line summary.
pub async fn track_status(
    notifier: Notifier,
    mut snapshots: tokio::sync::watch::Receiver<std::sync::Arc<berth_agent::Snapshot>>,
    mut last: String,
) {
    while snapshots.changed().await.is_ok() {
        let line = snapshots.borrow_and_update().node.summary.line();
        if line != last {
            notifier.status(&line);
            last = line;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_set_means_no_systemd() {
        let e = SdEnv::parse(42, env(&[]));
        assert!(e.notify_socket.is_none());
        assert!(e.watchdog.is_none());
        assert_eq!(e.listen_fds, 0);
        assert!(!e.notifier().enabled());
        assert!(!e.stderr_is_journal());
    }

    #[test]
    fn listen_fds_only_for_our_pid() {
        let e = SdEnv::parse(42, env(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "1")]));
        assert_eq!(e.listen_fds, 1);
        let e = SdEnv::parse(42, env(&[("LISTEN_PID", "41"), ("LISTEN_FDS", "1")]));
        assert_eq!(e.listen_fds, 0);
        let e = SdEnv::parse(42, env(&[("LISTEN_FDS", "1")]));
        assert_eq!(e.listen_fds, 0);
    }

    #[test]
    fn watchdog_respects_watchdog_pid() {
        let e = SdEnv::parse(42, env(&[("WATCHDOG_USEC", "3000000")]));
        assert_eq!(e.watchdog, Some(Duration::from_secs(3)));
        let e = SdEnv::parse(
            42,
            env(&[("WATCHDOG_USEC", "3000000"), ("WATCHDOG_PID", "7")]),
        );
        assert_eq!(e.watchdog, None);
        let e = SdEnv::parse(42, env(&[("WATCHDOG_USEC", "0")]));
        assert_eq!(e.watchdog, None);
    }

    #[test]
    fn journal_stream_parses_and_a_foreign_one_is_not_ours() {
        let e = SdEnv::parse(42, env(&[("JOURNAL_STREAM", "8:12345")]));
        assert_eq!(e.journal_stream, Some((8, 12345)));
        // The test's stderr is not that inode.
        assert!(!e.stderr_is_journal());
        let e = SdEnv::parse(42, env(&[("JOURNAL_STREAM", "garbage")]));
        assert_eq!(e.journal_stream, None);
    }

    #[test]
    fn notifier_sends_to_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::new(Some(path.to_str().expect("utf-8")));
        n.ready("1 services: 1 converged");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(
            std::str::from_utf8(&buf[..len]).expect("utf-8"),
            "READY=1\nSTATUS=1 services: 1 converged"
        );

        use std::os::linux::net::SocketAddrExt;
        let name = format!("berthd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let n = Notifier::new(Some(&format!("@{name}")));
        n.watchdog();
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
