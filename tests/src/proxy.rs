//! `EngineProxy`: a recording, cuttable HTTP proxy in front of the Docker
//! engine's Unix socket.
//!
//! Integration tests point berthd's `docker_host` at [`EngineProxy::docker_host`]
//! and can then
//! - see every engine API call berthd makes ([`EngineProxy::calls`],
//!   [`EngineProxy::mutating_calls`]), e.g. to prove that re-applying unchanged
//!   specs makes no mutating call, and
//! - cut berthd off from the engine and reconnect it ([`EngineProxy::cut`],
//!   [`EngineProxy::restore`]) without touching the machine's real engine.
//!
//! The proxy runs on its own thread with its own single-threaded tokio
//! runtime, so it works the same from sync and async tests. Every request is
//! forwarded on a fresh connection to the engine; request and response bodies
//! are streamed (so `GET /events` and `GET /containers/{id}/logs?follow=1`
//! work), and connection upgrades (`Connection: Upgrade` / `Upgrade: tcp`, as
//! used by attach and exec start) are spliced through as raw byte tunnels.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, watch};

/// Longest `cut()` waits for the open connections to be torn down.
const CUT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy sends back: the engine's response body as is, or a small
/// error body of its own.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// A recording, cuttable proxy in front of the engine socket; see the module docs.
pub struct EngineProxy {
    shared: Arc<Shared>,
    socket: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Removed (with the socket) when the proxy is dropped, after the thread
    /// has stopped.
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone, Copy, Default)]
struct CutState {
    /// New connections are accepted and dropped at once.
    cut: bool,
    /// Bumped by every `cut()`. Each task is tagged with the epoch it was
    /// started in and ends as soon as the epoch moves on.
    epoch: u64,
}

struct Shared {
    upstream: PathBuf,
    calls: Mutex<Vec<(String, String)>>,
    state: watch::Sender<CutState>,
    /// Connection, upstream and tunnel tasks still alive.
    live: Mutex<usize>,
    idle: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The engine's Unix socket (`$DOCKER_HOST`, else `/var/run/docker.sock`)
/// for [`EngineProxy::start`]. The proxy forwards to a Unix socket only: an
/// engine on TCP is a setup these tests do not cover, said plainly.
pub fn engine_socket() -> PathBuf {
    berth_prereq::docker_socket().unwrap_or_else(|| {
        panic!(
            "the engine proxy needs the engine on a Unix socket; DOCKER_HOST is {}",
            berth_prereq::docker_host()
        )
    })
}

impl EngineProxy {
    /// Listens on a fresh Unix socket in its own temp dir and forwards every
    /// HTTP request to the engine socket `upstream` (e.g.
    /// `/var/run/docker.sock`). The socket accepts connections as soon as this
    /// returns. `upstream` is only connected to per request, so it need not
    /// exist yet.
    pub fn start(upstream: &Path) -> io::Result<EngineProxy> {
        let mut dir = tempfile::Builder::new().prefix("berth-proxy-").tempdir()?;
        // sun_path holds 108 bytes; a long TMPDIR would not fit.
        if dir.path().join("engine.sock").as_os_str().len() > 100 {
            dir = tempfile::Builder::new()
                .prefix("berth-proxy-")
                .tempdir_in("/tmp")?;
        }
        let socket = dir.path().join("engine.sock");

        let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
        std_listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            UnixListener::from_std(std_listener)?
        };

        let shared = Arc::new(Shared {
            upstream: upstream.to_path_buf(),
            calls: Mutex::new(Vec::new()),
            state: watch::Sender::new(CutState::default()),
            live: Mutex::new(0),
            idle: Condvar::new(),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("berth-engine-proxy".into())
                .spawn(move || {
                    runtime.block_on(accept_loop(listener, shared, shutdown_rx));
                    // Dropping the runtime drops every connection task.
                    drop(runtime);
                })?
        };

        Ok(EngineProxy {
            shared,
            socket,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// `unix:///tmp/.../engine.sock`: what to give berthd as `docker_host`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Every request seen so far as `(METHOD, path-with-query)`, in order,
    /// with any API version prefix (`/v1.41`) removed from the path. A request
    /// is recorded when it arrives, before it is forwarded, so it is recorded
    /// even if the engine never answers it.
    pub fn calls(&self) -> Vec<(String, String)> {
        lock(&self.shared.calls).clone()
    }

    /// The calls that may change engine state: every method other than
    /// `GET` and `HEAD`.
    pub fn mutating_calls(&self) -> Vec<(String, String)> {
        lock(&self.shared.calls)
            .iter()
            .filter(|(method, _)| !is_read_only(method))
            .cloned()
            .collect()
    }

    /// How many single-container inspects (`GET /containers/{id}/json`) were
    /// made; the list (`GET /containers/json`) is not one.
    pub fn container_inspects(&self) -> usize {
        lock(&self.shared.calls)
            .iter()
            .filter(|(method, path)| {
                let path = path.split('?').next().unwrap_or_default();
                method.eq_ignore_ascii_case("GET")
                    && path.starts_with("/containers/")
                    && path.ends_with("/json")
                    && path != "/containers/json"
            })
            .count()
    }

    /// Forgets the calls recorded so far.
    pub fn clear(&self) {
        lock(&self.shared.calls).clear();
    }

    /// Cuts clients off from the engine: closes every open connection
    /// (including long-lived streams such as `GET /events` and upgraded
    /// attach/exec tunnels, together with their engine-side connections), and
    /// until [`restore`](Self::restore) accepts new connections only to drop
    /// them at once, so clients see EOF or a reset.
    ///
    /// Returns once every connection that was open has been closed (or after
    /// a few seconds if that somehow does not happen).
    pub fn cut(&self) {
        self.shared.state.send_modify(|s| {
            s.cut = true;
            s.epoch += 1;
        });
        let live = lock(&self.shared.live);
        let _ = self
            .shared
            .idle
            .wait_timeout_while(live, CUT_TIMEOUT, |n| *n > 0);
    }

    /// Lets connections through again after [`cut`](Self::cut).
    pub fn restore(&self) {
        self.shared.state.send_modify(|s| s.cut = false);
    }

    /// Whether the proxy is currently cut.
    pub fn is_cut(&self) -> bool {
        self.shared.state.borrow().cut
    }
}

impl std::fmt::Debug for EngineProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineProxy")
            .field("socket", &self.socket)
            .field("upstream", &self.shared.upstream)
            .field("cut", &self.is_cut())
            .finish_non_exhaustive()
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // `_dir` (and the socket in it) goes after this.
    }
}

fn is_read_only(method: &str) -> bool {
    method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")
}

/// `/v1.41/containers/json?all=1` -> `/containers/json?all=1`. Paths without
/// a version prefix are returned as they are.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let version = &rest[..end];
    let is_version = version.starts_with(|c: char| c.is_ascii_digit())
        && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !is_version {
        return path;
    }
    match &rest[end..] {
        "" => "/",
        tail if tail.starts_with('?') => path, // "/v1.41?x": odd; keep as is
        tail => tail,
    }
}

/// Counts a task as alive for `cut()` until dropped.
struct LiveToken(Arc<Shared>);

impl LiveToken {
    fn new(shared: &Arc<Shared>) -> LiveToken {
        *lock(&shared.live) += 1;
        LiveToken(shared.clone())
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        let mut live = lock(&self.0.live);
        *live = live.saturating_sub(1);
        if *live == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Resolves once a `cut()` after `epoch` happened.
async fn cut_since(mut rx: watch::Receiver<CutState>, epoch: u64) {
    let changed = rx.wait_for(|s| s.epoch != epoch).await.is_ok();
    if !changed {
        // The sender lives as long as the runtime; should it go, the runtime
        // is going too and will drop this task.
        std::future::pending::<()>().await;
    }
}

/// Runs `fut` as a task that `cut()` ends (drops) and waits for.
fn spawn_tracked<F>(token: LiveToken, epoch: u64, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let rx = token.0.state.subscribe();
    tokio::spawn(async move {
        let _token = token;
        tokio::select! {
            () = fut => {}
            () = cut_since(rx, epoch) => {}
        }
    });
}

async fn accept_loop(
    listener: UnixListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // E.g. out of file descriptors; don't spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Read the state and count the task under the watch lock, so a
        // concurrent `cut()` either sees this task or makes us drop it.
        let admitted = {
            let state = shared.state.borrow();
            (!state.cut).then(|| (state.epoch, LiveToken::new(&shared)))
        };
        match admitted {
            Some((epoch, token)) => {
                spawn_tracked(token, epoch, serve_client(stream, shared.clone(), epoch));
            }
            None => drop(stream),
        }
    }
}

async fn serve_client(stream: UnixStream, shared: Arc<Shared>, epoch: u64) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(forward(req, &shared, epoch).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// Records `req` and forwards it to the engine on a fresh connection.
async fn forward(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    epoch: u64,
) -> Response<ProxyBody> {
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path(), |pq| pq.as_str());
    let call = (req.method().to_string(), strip_version(path).to_string());
    lock(&shared.calls).push(call);

    // Take the client side's upgrade handle before the request is moved.
    let client_upgrade = req
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));

    let stream = match UnixStream::connect(&shared.upstream).await {
        Ok(stream) => stream,
        Err(e) => {
            return error_response(&format!("connecting to {}: {e}", shared.upstream.display()));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return error_response(&format!("handshake with the engine: {e}")),
    };
    // Drives the engine connection until the response body is done (or the
    // connection is upgraded); ended by `cut()` like the client side.
    spawn_tracked(LiveToken::new(shared), epoch, async move {
        let _ = conn.with_upgrades().await;
    });

    let mut response = match sender.send_request(req).await {
        Ok(response) => response,
        Err(e) => return error_response(&format!("forwarding to the engine: {e}")),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let engine_upgrade = hyper::upgrade::on(&mut response);
        spawn_tracked(
            LiveToken::new(shared),
            epoch,
            tunnel(client_upgrade, engine_upgrade),
        );
    }
    response.map(Either::Left)
}

/// Splices an upgraded client connection to the upgraded engine connection.
/// Both resolve only after the 101 response has gone through. EOF in one
/// direction is passed on as a write shutdown (half-close), as the engine's
/// attach/exec expect for the end of stdin.
async fn tunnel(client: OnUpgrade, engine: OnUpgrade) {
    let (Ok(client), Ok(engine)) = tokio::join!(client, engine) else {
        return;
    };
    let mut client = TokioIo::new(client);
    let mut engine = TokioIo::new(engine);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
}

/// A 502 with an engine-style JSON error body.
fn error_response(message: &str) -> Response<ProxyBody> {
    let body = format!(
        "{{\"message\":\"berth engine proxy: {}\"}}\n",
        json_escape(message)
    );
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Output, Stdio};
    use std::time::Instant;

    use http_body_util::BodyExt;

    fn proxy() -> EngineProxy {
        EngineProxy::start(&engine_socket()).expect("proxy starts")
    }

    fn io_err(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(e.to_string())
    }

    /// Sends one request on a new connection to `socket`; returns the
    /// response with its body still streaming.
    async fn send(
        socket: &Path,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> io::Result<Response<Incoming>> {
        let stream = UnixStream::connect(socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io_err)?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "docker");
        if json.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let body = Full::new(Bytes::from(json.unwrap_or("").to_owned()));
        let req = builder.body(body).map_err(io_err)?;
        sender.send_request(req).await.map_err(io_err)
    }

    /// Like `send`, and reads the whole body.
    async fn call(
        socket: &Path,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> io::Result<(StatusCode, String)> {
        let response = send(socket, method, path, json).await?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(io_err)?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    }

    fn docker(proxy: &EngineProxy, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(proxy.docker_host())
            .args(args)
            .env("DOCKER_API_VERSION", "1.41")
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI runs")
    }

    fn live_tasks(proxy: &EngineProxy) -> usize {
        *lock(&proxy.shared.live)
    }

    fn call_pair(method: &str, path: &str) -> (String, String) {
        (method.to_string(), path.to_string())
    }

    #[test]
    fn strips_the_version_prefix() {
        berth_prereq::require!(Engine);
        assert_eq!(strip_version("/v1.41/_ping"), "/_ping");
        assert_eq!(
            strip_version("/v1.41/containers/json?all=1"),
            "/containers/json?all=1"
        );
        assert_eq!(strip_version("/v1.41"), "/");
        assert_eq!(strip_version("/_ping"), "/_ping");
        assert_eq!(strip_version("/volumes/v1/x"), "/volumes/v1/x");
        assert_eq!(strip_version("/version"), "/version");
        assert_eq!(strip_version("/vx.1/_ping"), "/vx.1/_ping");
    }

    #[test]
    fn escapes_json() {
        berth_prereq::require!(Engine);
        assert_eq!(json_escape("a\"b\\c\nd\u{1}"), "a\\\"b\\\\c\\nd\\u0001");
    }

    #[tokio::test]
    async fn forwards_and_records_ping() {
        berth_prereq::require!(Engine);
        let proxy = proxy();
        assert!(proxy.docker_host().starts_with("unix:///"));
        assert!(proxy.socket_path().exists());

        let (status, body) = call(proxy.socket_path(), "GET", "/v1.41/_ping", None)
            .await
            .expect("ping through the proxy");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "OK");
        let (status, _) = call(proxy.socket_path(), "HEAD", "/_ping", None)
            .await
            .expect("HEAD ping through the proxy");
        assert_eq!(status, StatusCode::OK);

        assert_eq!(
            proxy.calls(),
            vec![call_pair("GET", "/_ping"), call_pair("HEAD", "/_ping")]
        );
        assert!(proxy.mutating_calls().is_empty());
        proxy.clear();
        assert!(proxy.calls().is_empty());

        // Once the clients hang up, no connection task (client or engine
        // side) is left behind.
        let deadline = Instant::now() + Duration::from_secs(2);
        while live_tasks(&proxy) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(live_tasks(&proxy), 0);
    }

    #[tokio::test]
    async fn forwards_and_counts_a_failing_create() {
        berth_prereq::require!(Engine);
        let proxy = proxy();
        let (status, body) = call(
            proxy.socket_path(),
            "POST",
            "/v1.41/containers/create?name=berth-proxy-test-never-created",
            Some(r#"{"Image":"berth-proxy-test-does-not-exist:none","Labels":{"io.berth.test":"proxy"}}"#),
        )
        .await
        .expect("create through the proxy");
        assert_eq!(status, StatusCode::NOT_FOUND, "engine said: {body}");
        assert!(body.contains("message"), "engine error body: {body}");
        let expected = vec![call_pair(
            "POST",
            "/containers/create?name=berth-proxy-test-never-created",
        )];
        assert_eq!(proxy.calls(), expected);
        assert_eq!(proxy.mutating_calls(), expected);
    }

    #[test]
    fn docker_cli_works_through_the_proxy() {
        berth_prereq::require!(Engine);
        let proxy = proxy();
        let out = docker(&proxy, &["ps", "--format", "{{.ID}}"]);
        assert!(
            out.status.success(),
            "docker ps through the proxy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = proxy.calls();
        assert!(
            calls
                .iter()
                .any(|(m, p)| m == "GET" && p.starts_with("/containers/json")),
            "calls: {calls:?}"
        );
        assert!(proxy.mutating_calls().is_empty(), "calls: {calls:?}");
    }

    #[test]
    fn reports_an_unreachable_engine_as_bad_gateway() {
        berth_prereq::require!(Engine);
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = EngineProxy::start(&dir.path().join("nothing.sock")).expect("proxy starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (status, body) = runtime
            .block_on(call(proxy.socket_path(), "GET", "/_ping", None))
            .expect("the proxy answers");
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body.contains("berth engine proxy"), "{body}");
        assert_eq!(proxy.calls(), vec![call_pair("GET", "/_ping")]);
    }

    #[tokio::test]
    async fn cut_ends_streams_and_refuses_until_restore() {
        berth_prereq::require!(Engine);
        let proxy = proxy();
        let socket = proxy.socket_path().to_path_buf();

        // An events stream that would otherwise never end.
        let response = send(&socket, "GET", "/v1.41/events", None)
            .await
            .expect("events through the proxy");
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let reader = tokio::spawn(async move {
            loop {
                match body.frame().await {
                    Some(Ok(_)) => continue,
                    Some(Err(_)) => return "error",
                    None => return "end",
                }
            }
        });
        // Still open a while later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!reader.is_finished(), "the events stream ended on its own");

        let started = Instant::now();
        proxy.cut();
        assert!(proxy.is_cut());
        let ended = tokio::time::timeout(Duration::from_secs(1), reader).await;
        assert!(
            ended.is_ok(),
            "the events stream was still open 1s after cut()"
        );
        assert!(started.elapsed() < Duration::from_secs(1));

        // New connections are accepted and dropped.
        for _ in 0..3 {
            let refused =
                tokio::time::timeout(Duration::from_secs(5), call(&socket, "GET", "/_ping", None))
                    .await
                    .expect("a cut connection fails promptly");
            assert!(refused.is_err(), "ping went through while cut: {refused:?}");
        }

        proxy.restore();
        assert!(!proxy.is_cut());
        let (status, body) = call(&socket, "GET", "/_ping", None)
            .await
            .expect("ping after restore");
        assert_eq!((status, body.as_str()), (StatusCode::OK, "OK"));

        // Refused connections never reached the request stage.
        let pings = proxy
            .calls()
            .iter()
            .filter(|(m, p)| m == "GET" && p == "/_ping")
            .count();
        assert_eq!(pings, 1, "calls: {:?}", proxy.calls());
    }

    #[test]
    fn drop_removes_the_socket_dir() {
        berth_prereq::require!(Engine);
        let proxy = proxy();
        let dir = proxy
            .socket_path()
            .parent()
            .map(Path::to_path_buf)
            .expect("socket dir");
        assert!(dir.exists());
        drop(proxy);
        assert!(!dir.exists());
    }

    /// Removes the named container (if it exists) when dropped.
    struct RemoveOnDrop(String);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &self.0])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Attach (via `docker run`) and exec start are `Upgrade: tcp` requests
    /// that hijack the connection; both go through the proxy's tunnel.
    #[test]
    fn upgraded_attach_and_exec_go_through() {
        berth_prereq::require!(Engine);
        crate::bins::demo_image();
        let proxy = proxy();

        // Attach: `docker run` without -d attaches (upgraded) to stdout.
        let name = crate::node::unique("proxyrun");
        let _guard = RemoveOnDrop(name.clone());
        let out = docker(
            &proxy,
            &[
                "run",
                "--rm",
                "--name",
                &name,
                "--label",
                "io.berth.test=proxy",
                "berth-demo:latest",
                "exit",
                "0",
                "--stdout",
                "hello-through-proxy",
            ],
        );
        assert!(
            out.status.success(),
            "docker run through the proxy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("hello-through-proxy"),
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            proxy
                .calls()
                .iter()
                .any(|(m, p)| m == "POST" && p.contains("/attach?")),
            "calls: {:?}",
            proxy.calls()
        );

        // Exec in a container started directly on the engine; `-i` with
        // stdin at EOF also sends the half-close through the tunnel.
        let name = crate::node::unique("proxyexec");
        let _guard = RemoveOnDrop(name.clone());
        let started = Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                "io.berth.test=proxy",
                "berth-demo:latest",
                "sleep",
                "60s",
            ])
            .output()
            .expect("docker run -d runs");
        assert!(
            started.status.success(),
            "docker run -d failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        proxy.clear();
        let out = docker(
            &proxy,
            &[
                "exec",
                "-i",
                &name,
                "/demo",
                "exit",
                "0",
                "--stdout",
                "exec-through-proxy",
            ],
        );
        assert!(
            out.status.success(),
            "docker exec through the proxy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("exec-through-proxy"),
            "stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let mutating = proxy.mutating_calls();
        assert!(
            mutating
                .iter()
                .any(|(m, p)| m == "POST" && p.starts_with("/exec/") && p.ends_with("/start")),
            "mutating calls: {mutating:?}"
        );

        // cut() also closes upgraded tunnels: a long exec ends promptly.
        proxy.clear();
        let mut exec = Command::new("docker")
            .arg("-H")
            .arg(proxy.docker_host())
            .args(["exec", &name, "/demo", "sleep", "60s"])
            .env("DOCKER_API_VERSION", "1.41")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker exec runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !proxy.calls().iter().any(|(_, p)| p.ends_with("/start")) {
            assert!(Instant::now() < deadline, "exec never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            exec.try_wait().expect("exec status").is_none(),
            "exec ended before cut()"
        );
        proxy.cut();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = exec.try_wait().expect("exec status") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = exec.kill();
                let _ = exec.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.is_some(), "docker exec still running 5s after cut()");
        assert_eq!(live_tasks(&proxy), 0);
    }
}
