//! `SlowProxy`: a TCP proxy on 127.0.0.1 in front of a test registry that,
//! while slowed, passes the registry's answers on at a trickle, so a pull
//! through it is still running when a test acts (SIGKILLs berthd mid-pull).
//! What the client sends passes at full speed. Stopped when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes passed on per step while slowed; a step is [`STEP`].
const TRICKLE: usize = 2048;
const STEP: Duration = Duration::from_millis(50);

pub struct SlowProxy {
    /// `127.0.0.1:PORT`: use it in place of the registry's address.
    pub addr: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    slow: AtomicBool,
    stop: AtomicBool,
    /// Bytes passed from the registry to clients so far.
    sent: AtomicU64,
}

impl SlowProxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`), slowed from the start.
    pub fn start(upstream: &str) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("its address").to_string();
        let shared = Arc::new(Shared {
            slow: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
        });
        let upstream = upstream.to_string();
        let accept = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    connect(client, server, Arc::clone(&shared));
                }
            })
        };
        SlowProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Slowed (a trickle) or not (full speed), from now on.
    pub fn set_slow(&self, slow: bool) {
        self.shared.slow.store(slow, Ordering::SeqCst);
    }

    /// Bytes the registry's answers have brought clients so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }
}

/// Copies both ways between `client` and `server`, each way on a thread.
fn connect(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (Ok(client_r), Ok(server_w)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pipe(client_r, server_w, None));
    std::thread::spawn(move || pipe(server, client, Some(shared)));
}

/// `from` to `to` until either ends; slowed by `shared` when given.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Option<Arc<Shared>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let slow = shared
            .as_ref()
            .is_some_and(|s| s.slow.load(Ordering::SeqCst));
        if shared
            .as_ref()
            .is_some_and(|s| s.stop.load(Ordering::SeqCst))
        {
            break;
        }
        let want = if slow { TRICKLE } else { buf.len() };
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(s) = &shared {
            s.sent.fetch_add(n as u64, Ordering::SeqCst);
        }
        if slow {
            std::thread::sleep(STEP);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.slow.store(false, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
