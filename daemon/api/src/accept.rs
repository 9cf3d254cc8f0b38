//! The accept loop both API listeners run ([`crate::serve_tcp`],
//! [`crate::serve_unix`]): take connections until the shutdown future
//! resolves, hand each to the listener's [`Admission`] (which may refuse
//! it, or returns the task that serves it), then tell every open
//! connection to close and wait until they have.
//!
//! What differs between the listeners is all in their [`Admission`]: who a
//! connection is from, how many may be open and which one gives way, TLS.
//! The loop itself only accepts, spawns and drains.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;

/// A listening socket the loop accepts connections on.
pub(crate) trait Listener {
    /// An accepted connection.
    type Conn: Send + 'static;
    /// The peer's address, as accept(2) gives it.
    type Addr: Send + 'static;

    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Conn, Self::Addr)>> + Send;
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    type Addr = SocketAddr;

    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn accept(
        &self,
    ) -> impl Future<Output = std::io::Result<(UnixStream, tokio::net::unix::SocketAddr)>> + Send
    {
        UnixListener::accept(self)
    }
}

/// One listener's policy for the connections it accepts.
pub(crate) trait Admission<L: Listener> {
    /// The listener as log lines name it ("TCP API", "local API").
    const NAME: &'static str;

    /// Admits `conn` from `addr` and returns the task that serves it (run
    /// on its own), or refuses it with `None` (dropping `conn` closes it).
    /// `stop` turns true when the listener stops: the task should then
    /// close the connection gracefully.
    fn admit(
        &self,
        conn: L::Conn,
        addr: L::Addr,
        stop: watch::Receiver<bool>,
    ) -> Option<impl Future<Output = ()> + Send + 'static>;

    /// Resolves once every connection it admitted has closed.
    fn drain(self) -> impl Future<Output = ()> + Send;
}

/// Accepts connections on `listener` until `shutdown` resolves, serving
/// each that `admission` admits on a task of its own; then asks the open
/// connections to close and returns once they have.
pub(crate) async fn accept_loop<L, A>(
    listener: L,
    admission: A,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
    A: Admission<L>,
{
    let (stop_tx, _) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (conn, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a {} connection", A::NAME);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Some(serve) = admission.admit(conn, addr, stop_tx.subscribe()) {
            tokio::spawn(serve);
        }
    }
    let _ = stop_tx.send(true);
    admission.drain().await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc;

    use super::*;

    /// A listener whose connections (numbers) and accept errors the test
    /// hands in.
    struct FakeListener(tokio::sync::Mutex<mpsc::UnboundedReceiver<std::io::Result<u32>>>);

    impl Listener for FakeListener {
        type Conn = u32;
        type Addr = ();

        async fn accept(&self) -> std::io::Result<(u32, ())> {
            match self.0.lock().await.recv().await {
                Some(r) => r.map(|n| (n, ())),
                None => std::future::pending().await,
            }
        }
    }

    /// What the fake admission saw.
    #[derive(Default)]
    struct Seen {
        admitted: Vec<u32>,
        refused: Vec<u32>,
        /// Connections whose task saw `stop` turn true.
        stopped: Vec<u32>,
        drained: bool,
    }

    /// Refuses odd numbers; an admitted connection's task runs until the
    /// listener stops.
    struct OddsOut {
        seen: Arc<Mutex<Seen>>,
        open: Arc<tokio::sync::Semaphore>,
    }

    const MAX: u32 = 8;

    impl Admission<FakeListener> for OddsOut {
        const NAME: &'static str = "fake";

        fn admit(
            &self,
            n: u32,
            (): (),
            mut stop: watch::Receiver<bool>,
        ) -> Option<impl Future<Output = ()> + Send + 'static> {
            let mut seen = self.seen.lock().expect("lock");
            if n % 2 == 1 {
                seen.refused.push(n);
                return None;
            }
            seen.admitted.push(n);
            let permit = self.open.clone().try_acquire_owned().expect("a slot");
            let seen = self.seen.clone();
            Some(async move {
                let _ = stop.wait_for(|s| *s).await;
                // Closing takes a while: the loop must wait for it.
                tokio::time::sleep(Duration::from_millis(50)).await;
                seen.lock().expect("lock").stopped.push(n);
                drop(permit);
            })
        }

        async fn drain(self) {
            let _ = self.open.acquire_many(MAX).await;
            self.seen.lock().expect("lock").drained = true;
        }
    }

    async fn until(seen: &Mutex<Seen>, done: impl Fn(&Seen) -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done(&seen.lock().expect("lock")) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("in time");
    }

    #[tokio::test]
    async fn admits_refuses_survives_accept_errors_and_drains_on_shutdown() {
        let (conns, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let admission = OddsOut {
            seen: seen.clone(),
            open: Arc::new(tokio::sync::Semaphore::new(MAX as usize)),
        };
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(accept_loop(
            FakeListener(tokio::sync::Mutex::new(rx)),
            admission,
            async move {
                let _ = stopped.await;
            },
        ));

        for c in [
            Ok(2),
            Ok(3),
            Err(std::io::Error::other("out of descriptors")),
            Ok(4),
        ] {
            conns.send(c).expect("send");
        }
        until(&seen, |s| s.admitted.len() + s.refused.len() == 3).await;
        {
            let s = seen.lock().expect("lock");
            assert_eq!((&s.admitted[..], &s.refused[..]), (&[2, 4][..], &[3][..]));
            assert!(
                s.stopped.is_empty() && !s.drained,
                "nothing stops before shutdown"
            );
        }

        shutdown.send(()).expect("shutdown");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the loop returns")
            .expect("no panic");
        let s = seen.lock().expect("lock");
        let mut stopped = s.stopped.clone();
        stopped.sort_unstable();
        assert_eq!(
            stopped,
            [2, 4],
            "every admitted connection was told to stop"
        );
        assert!(s.drained, "the loop returns only after the drain");
    }
}
