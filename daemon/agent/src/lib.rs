//! berthd's event loop.
//!
//! One task owns all state ([`Agent`]); everything else talks to it through a
//! [`Handle`]: commands go in over a channel and are answered on a oneshot,
//! reads come from a `watch` snapshot, events from a broadcast. Engine calls
//! run in executor tasks (one at a time per service, services in parallel)
//! whose results come back to the loop as messages. The loop plans with the
//! pure `berth_core::plan::plan` after every change, never from the event
//! that woke it up.

mod event_loop;
mod hook_job;
mod images;
mod jobs;
mod outputs;
mod state;
mod swap;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::dto::{ApplyRequest, ApplyResponse, EventsResponse, VerbResponse};
use berth_core::event::{Event, EventKind};
use berth_core::files::{Files, NoFiles};
use berth_core::hook_http::{HookHttp, NoHookHttp};
use berth_core::host::HostUnits;
use berth_core::record::{Deployment, Source};
use berth_core::runtime::{BoxStream, LogChunk, LogOptions, Runtime, RuntimeError};
use berth_core::spec::ServiceSpec;
use berth_core::store::{Store, StoreError};
use berth_core::watch::{NoWatcher, Watcher};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use event_loop::Agent;
pub use event_loop::units::NoHost;
pub use state::Snapshot;

/// The seams the loop runs against, bundled so the loop has one type parameter.
pub trait Env: Send + Sync + 'static {
    type Runtime: Runtime;
    type Store: Store;
    /// The host's service manager (systemd), for `after_units` /
    /// `requires_units`.
    type Host: HostUnits;
    /// The config watcher: which config sources may have changed.
    type Watcher: Watcher;
    /// The loop's file access: config sources, a task's outputs dir, build
    /// contexts. Its methods block: jobs call them off the async workers.
    type Files: Files;
    /// The HTTP client http hooks are POSTed with (berthd:
    /// `berth_upstream::hook_http::UpstreamHookHttp`; tests:
    /// `berth_fakes::FakeHookHttp`, or [`NoHookHttp`]).
    type Http: HookHttp;
    fn runtime(&self) -> &Self::Runtime;
    fn store(&self) -> &Self::Store;
    fn host(&self) -> &Self::Host;
    fn watcher(&self) -> &Self::Watcher;
    fn files(&self) -> &Self::Files;
    fn http(&self) -> &Self::Http;
    /// Unix milliseconds, for timestamps in records and events.
    fn now_ms(&self) -> u64;
}

fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A runtime and a store, the system clock, no host units ([`NoHost`]:
/// a service with `after_units` / `requires_units` waits and then fails,
/// saying so), no config watcher ([`NoWatcher`]: config sources are read
/// at each deployment, changes between them are not seen) and no files
/// ([`NoFiles`]: a config source is unreadable, saying so; a task's outputs
/// dir is left alone and yields no declared outputs; a build context cannot
/// be hashed) and no http client ([`NoHookHttp`]: an http hook fails,
/// saying so). For tests that need none of these.
pub struct Seams<R, S> {
    pub runtime: R,
    pub store: S,
}

impl<R: Runtime, S: Store> Env for Seams<R, S> {
    type Runtime = R;
    type Store = S;
    type Host = NoHost;
    type Watcher = NoWatcher;
    type Files = NoFiles;
    type Http = NoHookHttp;
    fn runtime(&self) -> &R {
        &self.runtime
    }
    fn store(&self) -> &S {
        &self.store
    }
    fn host(&self) -> &NoHost {
        &NoHost
    }
    fn watcher(&self) -> &NoWatcher {
        &NoWatcher
    }
    fn files(&self) -> &NoFiles {
        &NoFiles
    }
    fn http(&self) -> &NoHookHttp {
        &NoHookHttp
    }
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
}

/// The production environment: a runtime, a store, the host's systemd
/// (berthd: `berth_systemd::DbusHost`; tests: `berth_fakes::FakeHost`),
/// the config watcher (berthd: `berth_watch::NotifyWatcher`; tests:
/// `berth_fakes::FakeWatcher`, or [`NoWatcher`]) and the files (berthd:
/// `berth_sources::HostFiles`; tests: `berth_fakes::FakeFiles`, or
/// [`NoFiles`]). No http client ([`NoHookHttp`]): wrap it in
/// [`WithHookHttp`] for one.
pub struct HostSeams<R, S, H, W = NoWatcher, F = NoFiles> {
    pub runtime: R,
    pub store: S,
    pub host: H,
    pub watcher: W,
    pub files: F,
}

impl<R: Runtime, S: Store, H: HostUnits, W: Watcher, F: Files> Env for HostSeams<R, S, H, W, F> {
    type Runtime = R;
    type Store = S;
    type Host = H;
    type Watcher = W;
    type Files = F;
    type Http = NoHookHttp;
    fn runtime(&self) -> &R {
        &self.runtime
    }
    fn store(&self) -> &S {
        &self.store
    }
    fn host(&self) -> &H {
        &self.host
    }
    fn watcher(&self) -> &W {
        &self.watcher
    }
    fn files(&self) -> &F {
        &self.files
    }
    fn http(&self) -> &NoHookHttp {
        &NoHookHttp
    }
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
}

/// `inner`'s seams with `http` as the client for http hooks (berthd:
/// `berth_upstream::hook_http::UpstreamHookHttp`; tests:
/// `berth_fakes::FakeHookHttp`).
pub struct WithHookHttp<E, P> {
    pub inner: E,
    pub http: P,
}

impl<E: Env, P: HookHttp> Env for WithHookHttp<E, P> {
    type Runtime = E::Runtime;
    type Store = E::Store;
    type Host = E::Host;
    type Watcher = E::Watcher;
    type Files = E::Files;
    type Http = P;
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
    fn http(&self) -> &P {
        &self.http
    }
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_id: String,
    /// Container name prefix.
    pub prefix: String,
    /// For task output directories (`<state_dir>/outputs/<service>`).
    pub state_dir: PathBuf,
    pub history_limit: usize,
    /// Events kept in memory and in the event log.
    pub events_keep: usize,
    /// How often the full container list is re-read even without events.
    pub resync_interval: Duration,
    /// Shown in `GET /v1/node`.
    pub engine_endpoint: String,
    /// A finished task's exited container is removed this long after the
    /// task ended (its output stays in the record).
    pub task_gc_after: Duration,
    /// A deployment waiting for host units (`after_units`,
    /// `requires_units`) fails after this long if one of them does not
    /// exist (or systemd cannot be reached); units that exist but are not
    /// active are waited for without limit. berthd's `units_timeout`.
    pub units_timeout: Duration,
    /// The node policy as it is now (berthd's SIGHUP replaces it): before
    /// each container create, host paths under `allowed_host_paths` must
    /// still lead there ([`berth_core::policy::NodePolicy::check_create`]).
    pub node_policy: watch::Receiver<Arc<berth_core::policy::NodePolicy>>,
    /// How many previous generations' images pruning keeps (berthd's
    /// `[images] keep_previous`): an image a record of the last
    /// `keep_previous` generations names is never pruned.
    pub keep_previous: usize,
    /// How long a pull may take, retries included (berthd's
    /// `[images] pull_timeout`).
    pub pull_timeout: Duration,
}

/// The default [`AgentConfig::units_timeout`].
pub const DEFAULT_UNITS_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`AgentConfig::keep_previous`].
pub const DEFAULT_KEEP_PREVIOUS: usize = 2;
/// The default [`AgentConfig::pull_timeout`].
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl AgentConfig {
    pub fn new(node_id: &str, prefix: &str, state_dir: PathBuf) -> Self {
        AgentConfig {
            node_id: node_id.to_string(),
            prefix: prefix.to_string(),
            state_dir,
            history_limit: 50,
            events_keep: 1000,
            resync_interval: Duration::from_secs(30),
            engine_endpoint: String::new(),
            task_gc_after: Duration::from_secs(600),
            units_timeout: DEFAULT_UNITS_TIMEOUT,
            // No allowed host paths: nothing to check at create.
            node_policy: watch::channel(Arc::default()).1,
            keep_previous: DEFAULT_KEEP_PREVIOUS,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        }
    }

    /// `<state_dir>/hooks`: where host hooks' output files go. berthd
    /// makes it (0700: the output may hold secrets) before the loop runs.
    pub fn hooks_dir(&self) -> PathBuf {
        self.state_dir.join("hooks")
    }
}

/// Operator verbs on one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Stop,
    Start,
    Restart,
    Hold,
    Release,
    Delete,
    /// Delete, then remove the named volumes it mounted that berth created
    /// for this node and no other service mounts (`event_loop/volumes.rs`).
    DeleteWithVolumes,
    Rollback {
        generation: Option<u64>,
    },
    /// Re-read the config sources and apply every source's `on_change`,
    /// changed or not.
    Reconfigure,
    /// Release the breakpoints of `phase` the current deployment waits at
    /// (`event_loop/hooks.rs`).
    ClearHook {
        phase: berth_core::spec::HookPhase,
    },
}

/// A spec_dir file as berthd read it.
#[derive(Debug, Clone)]
pub struct SpecFile {
    pub path: String,
    pub content_hash: String,
    /// The parsed services, or every parse error as one text.
    pub services: Result<Vec<ServiceSpec>, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("no service named {service}")]
    NoSuchService { service: String },
    #[error("no deployment {id}")]
    NoSuchDeployment { id: String },
    #[error("{service} is owned by {owner}; apply with --force to take it over")]
    Conflict { service: String, owner: String },
    #[error("invalid request: {reason}")]
    Invalid {
        reason: String,
        details: Vec<String>,
    },
    /// `reason` reads on from the service name: "web is held; ...".
    #[error("{service} {reason}")]
    Refused { service: String, reason: String },
    #[error("the state store failed")]
    Store(#[from] StoreError),
    #[error("the container engine failed")]
    Runtime(#[from] RuntimeError),
    #[error("berthd is shutting down")]
    ShuttingDown,
    /// An apply of several services failed part way (the store refused a
    /// write): `done` were applied before it and stay so (`"web (web-3)"`,
    /// `"db (unchanged)"`), `not_applied` were not.
    #[error(
        "{failed}: {}; applied before it: {}; not applied: {}. Fix the cause and apply again: what was applied shows as unchanged",
        berth_core::error_chain(cause.as_ref()),
        list_or_none(done),
        list_or_none(not_applied)
    )]
    PartlyApplied {
        failed: String,
        cause: Box<AgentError>,
        done: Vec<String>,
        not_applied: Vec<String>,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, AgentError>>;

pub(crate) enum Command {
    Apply {
        req: ApplyRequest,
        source: Source,
        actor: String,
        dry_run: bool,
        reply: Reply<ApplyResponse>,
    },
    Verb {
        service: String,
        verb: Verb,
        actor: String,
        reply: Reply<VerbResponse>,
    },
    History {
        service: String,
        limit: usize,
        reply: Reply<Vec<Deployment>>,
    },
    Deployment {
        id: String,
        reply: Reply<Deployment>,
    },
    Logs {
        service: String,
        opts: LogOptions,
        reply: Reply<BoxStream<Result<LogChunk, RuntimeError>>>,
    },
    SpecDir {
        files: Vec<SpecFile>,
        reply: Reply<Vec<String>>,
    },
    /// An event from outside the loop (upstream signals), numbered and
    /// kept like the loop's own.
    Emit { kind: EventKind },
    /// `berthctl images`.
    Images {
        reply: Reply<berth_core::images::ImagesResponse>,
    },
    /// `berthctl images prune [--dry-run]`.
    PruneImages {
        dry_run: bool,
        actor: String,
        reply: Reply<berth_core::images::PruneResponse>,
    },
    /// `berthctl adopt --check`: read-only.
    AdoptCheck {
        from: berth_core::adopt::AdoptFrom,
        config_id: Option<String>,
        reply: Reply<berth_core::adopt::AdoptReport>,
    },
}

/// How the API (and tests) talk to the loop.
#[derive(Clone)]
pub struct Handle {
    cmd: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    heartbeat: watch::Receiver<u64>,
    events: broadcast::Sender<Event>,
    ring: Arc<std::sync::Mutex<state::EventRing>>,
}

impl Handle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, AgentError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| AgentError::ShuttingDown)?;
        rx.await.map_err(|_| AgentError::ShuttingDown)?
    }

    pub async fn apply(
        &self,
        req: ApplyRequest,
        source: Source,
        actor: &str,
        dry_run: bool,
    ) -> Result<ApplyResponse, AgentError> {
        let actor = actor.to_string();
        self.call(|reply| Command::Apply {
            req,
            source,
            actor,
            dry_run,
            reply,
        })
        .await
    }

    pub async fn verb(
        &self,
        service: &str,
        verb: Verb,
        actor: &str,
    ) -> Result<VerbResponse, AgentError> {
        let (service, actor) = (service.to_string(), actor.to_string());
        self.call(|reply| Command::Verb {
            service,
            verb,
            actor,
            reply,
        })
        .await
    }

    pub async fn history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<Deployment>, AgentError> {
        let service = service.to_string();
        self.call(|reply| Command::History {
            service,
            limit,
            reply,
        })
        .await
    }

    /// One record by id (`<service>-<generation>`), redacted.
    pub async fn deployment(&self, id: &str) -> Result<Deployment, AgentError> {
        let id = id.to_string();
        self.call(|reply| Command::Deployment { id, reply }).await
    }

    /// Waits until deployment `id` is terminal or `wait` elapses; returns it as it then is.
    pub async fn wait_deployment(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<Deployment, AgentError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut snapshots = self.snapshot.clone();
        loop {
            let d = self.deployment(id).await?;
            if d.status.is_terminal() {
                return Ok(d);
            }
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Err(AgentError::ShuttingDown);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return self.deployment(id).await,
            }
        }
    }

    pub async fn logs(
        &self,
        service: &str,
        opts: LogOptions,
    ) -> Result<BoxStream<Result<LogChunk, RuntimeError>>, AgentError> {
        let service = service.to_string();
        self.call(|reply| Command::Logs {
            service,
            opts,
            reply,
        })
        .await
    }

    /// Hands berthd's reading of the spec dir to the loop; returns one line
    /// per problem (also logged and sent as events).
    pub async fn spec_dir(&self, files: Vec<SpecFile>) -> Result<Vec<String>, AgentError> {
        self.call(|reply| Command::SpecDir { files, reply }).await
    }

    /// Records an event that happened outside the loop (e.g. an upstream
    /// signal delivered): it gets the next sequence number, reaches the
    /// event log, `berthctl events` and the logs.
    pub async fn emit(&self, kind: EventKind) -> Result<(), AgentError> {
        self.cmd
            .send(Command::Emit { kind })
            .await
            .map_err(|_| AgentError::ShuttingDown)
    }

    /// Every image berth knows (pulled, built, or named by a kept
    /// record): who uses it, and whether a prune may remove it.
    pub async fn images(&self) -> Result<berth_core::images::ImagesResponse, AgentError> {
        self.call(|reply| Command::Images { reply }).await
    }

    /// Removes the pulled images no kept record names and no container
    /// runs (with `dry_run`: says which it would remove).
    pub async fn prune_images(
        &self,
        dry_run: bool,
        actor: &str,
    ) -> Result<berth_core::images::PruneResponse, AgentError> {
        let actor = actor.to_string();
        self.call(|reply| Command::PruneImages {
            dry_run,
            actor,
            reply,
        })
        .await
    }

    /// What `berthctl adopt --check` reports: each container `from`'s
    /// tool started (with `config_id`, when given) against its config.
    /// Lists and inspects off the loop; changes nothing.
    pub async fn adopt_check(
        &self,
        from: berth_core::adopt::AdoptFrom,
        config_id: Option<String>,
    ) -> Result<berth_core::adopt::AdoptReport, AgentError> {
        self.call(|reply| Command::AdoptCheck {
            from,
            config_id,
            reply,
        })
        .await
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// Bumped by the loop on every tick (250 ms) from the loop itself: a
    /// watchdog that sees it stop knows the loop is stuck.
    pub fn heartbeat(&self) -> watch::Receiver<u64> {
        self.heartbeat.clone()
    }

    pub fn watch_snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// Events after `since` still in memory; `reset` when some were dropped.
    pub fn events_since(&self, since: u64) -> EventsResponse {
        match self.ring.lock() {
            Ok(ring) => ring.since(since),
            Err(poisoned) => poisoned.into_inner().since(since),
        }
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
