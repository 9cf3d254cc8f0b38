//! The harness the loop tests share: an agent on the fake engine and the
//! in-memory store, and helpers to apply and wait.
//!
//! Every loop test runs on tokio's paused clock (`cargo xtask tidy` checks
//! `start_paused = true`): time moves only when every task waits, straight
//! to the next timer, so a test takes as long as the loop needs, whatever
//! the machine's load, and a wait that is too short fails every time, not
//! now and then. The seams' Unix clock follows it ([`Clocked`]).
#![allow(dead_code)]

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use berth_agent::{Agent, AgentConfig, Handle, Seams};
use berth_core::dto::ApplyRequest;
use berth_core::record::Source;
use berth_core::spec::{ImageSource, ServiceSpec, UpdatePolicy};
use berth_fakes::{FakeRuntime, MemStore};

pub mod hooks;
pub mod watched;

pub type Env = Clocked<Seams<FakeRuntime, MemStore>>;

/// Seams whose Unix clock (`Env::now_ms`: records' and events' times, which
/// task GC compares) is tokio's clock, paused in these tests, from a fixed
/// start: the system clock would not move while a test's virtual seconds
/// pass. Its fields are the inner seams' (`env.runtime`, `env.files`).
pub struct Clocked<E> {
    inner: E,
    start: tokio::time::Instant,
}

/// 2023-11-14T22:13:20Z: every run's records carry the same times.
const START_MS: u64 = 1_700_000_000_000;

impl<E> Clocked<E> {
    pub fn new(inner: E) -> Arc<Clocked<E>> {
        Arc::new(Clocked {
            inner,
            start: tokio::time::Instant::now(),
        })
    }
}

impl<E> Deref for Clocked<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.inner
    }
}

impl<E: berth_agent::Env> berth_agent::Env for Clocked<E> {
    type Runtime = E::Runtime;
    type Store = E::Store;
    type Host = E::Host;
    type Watcher = E::Watcher;
    type Files = E::Files;
    type Http = E::Http;
    fn runtime(&self) -> &E::Runtime {
        self.inner.runtime()
    }
    fn store(&self) -> &E::Store {
        self.inner.store()
    }
    fn host(&self) -> &E::Host {
        self.inner.host()
    }
    fn watcher(&self) -> &E::Watcher {
        self.inner.watcher()
    }
    fn files(&self) -> &E::Files {
        self.inner.files()
    }
    fn http(&self) -> &E::Http {
        self.inner.http()
    }
    fn now_ms(&self) -> u64 {
        START_MS + self.start.elapsed().as_millis() as u64
    }
}

/// A running loop on its seams.
pub struct Running<E> {
    pub env: Arc<E>,
    pub handle: Handle,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

pub type Node = Running<Env>;

pub fn cfg() -> AgentConfig {
    let mut c = AgentConfig::new("n1", "t-", std::env::temp_dir().join("berth-agent-test"));
    c.resync_interval = Duration::from_millis(200);
    c
}

pub fn start_with(env: Arc<Env>) -> Node {
    run_agent(env, cfg())
}

/// Starts the loop on any seams (its config watcher is the env's), with `cfg`.
pub fn run_agent<E: berth_agent::Env>(env: Arc<E>, cfg: AgentConfig) -> Running<E> {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::DEBUG)
        .try_init();
    let (agent, handle) = Agent::new(env.clone(), cfg).expect("agent loads");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    Running {
        env,
        handle,
        stop,
        task,
    }
}

pub fn start() -> Node {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    runtime.add_image("demo:2", "sha256:two");
    start_with(Clocked::new(Seams {
        runtime,
        store: MemStore::new(),
    }))
}

impl<E> Running<E> {
    pub async fn stop(self) -> Arc<E> {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.env
    }
}

impl Node {
    pub fn rt(&self) -> &FakeRuntime {
        &self.env.runtime
    }
}

pub fn spec(name: &str, image: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: ImageSource::Ref(image.into()),
        update: UpdatePolicy {
            settle: Duration::from_millis(100),
            health_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An apply by `source` (`force` to take services over), as the loop answers it.
pub async fn apply_from(
    h: &Handle,
    specs: Vec<ServiceSpec>,
    source: Source,
    force: bool,
) -> Result<berth_core::dto::ApplyResponse, berth_agent::AgentError> {
    h.apply(
        ApplyRequest {
            services: specs,
            force,
        },
        source,
        "test",
        false,
    )
    .await
}

pub async fn apply(h: &Handle, specs: Vec<ServiceSpec>) -> berth_core::dto::ApplyResponse {
    apply_from(h, specs, Source::Api, false)
        .await
        .expect("apply accepted")
}

/// Applies and waits until every deployment the apply made has ended.
pub async fn deploy(h: &Handle, specs: Vec<ServiceSpec>) -> Vec<berth_core::record::Deployment> {
    let r = apply(h, specs).await;
    let mut out = Vec::new();
    for res in &r.results {
        if let Some(d) = &res.deployment {
            out.push(wait_status(h, &d.id).await);
        }
    }
    out
}

pub async fn wait_status(h: &Handle, id: &str) -> berth_core::record::Deployment {
    let d = h
        .wait_deployment(id, Duration::from_secs(10))
        .await
        .expect("deployment exists");
    assert!(d.status.is_terminal(), "{id} still {:?}", d.status);
    d
}

pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}
