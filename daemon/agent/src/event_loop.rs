//! The loop itself: the `Agent` struct, how it starts (`new`), and `run`,
//! which waits on its inputs (commands, engine events, job results, config
//! and unit changes, the tick) and then takes one `step`. Each concern of
//! the loop lives in a file of its own below `event_loop/`:
//!
//! | file | owns |
//! |---|---|
//! | `load.rs` | reading the state dir at start |
//! | `observe.rs` | the engine's container list and events |
//! | `commands.rs` | routing the API's commands |
//! | `apply.rs` | applies: PENDING records, committed before anything acts |
//! | `verbs.rs` | stop, start, restart, hold, release, rollback, delete, reconfigure |
//! | `spec_dir.rs` | the spec directory's files |
//! | `judge.rs` | COMPLETE or FAILED for deployments in flight |
//! | `reconcile.rs` | records → `plan()` → engine actions (as jobs) |
//! | `results.rs` | what jobs report back |
//! | `rollback.rs` | automatic rollback of a failed update; applies of a rolled back spec refused |
//! | `snapshot.rs` | the snapshot API readers see |
//! | `config_watch.rs` | config sources: watching them, reacting to content changes |
//! | `units.rs` | host systemd units the services wait for |
//! | `volumes.rs` | `delete --volumes`: the named volumes berth created, removed after the container |
//! | `hooks.rs` | running a deployment's hooks: WAITING_HOOK, breakpoints and their clear, hook jobs, a phase passed or aborted |
//! | `hook_points.rs` | where `pre_update`, `post_update` and `pre_delete` come in, and what drives a waiting phase |
//! | `waves.rs` | `depends_on` and `inputs`: an apply ordered, deployments waiting for their dependencies, released with their inputs, run again when an input moves |
//!
//! The loop never waits on the engine or D-Bus: those calls run as jobs
//! (`crate::jobs`) or tasks that report back. Durable record writes are the
//! one I/O it does itself (a record is on disk before anything acts on it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::dto::{ApplyRequest, ApplyResponse};
use berth_core::event::{Event, EventKind};
use berth_core::record::Source;
use berth_core::runtime::{ObservedContainer, Runtime, RuntimeError, RuntimeEvent};
use berth_core::store::Store;
use berth_core::watch::{BoxStream, WatchEvent, WatchSpec, Watcher};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::jobs::{self, Done, Job};
use crate::state::{EventRing, Snapshot, Svc};

mod apply;
mod commands;
mod config_watch;
mod hook_points;
pub(crate) mod hooks;
mod judge;
mod load;
mod observe;
pub(crate) mod prune;
mod pull_retry;
mod reconcile;
mod results;
mod rollback;
mod snapshot;
mod spec_dir;
pub(crate) mod units;
mod verbs;
pub(crate) mod volumes;
mod waves;
use crate::{AgentConfig, AgentError, Command, Env, Handle, Reply};

/// Lists are coalesced to at most one per this interval.
const MIN_LIST_INTERVAL: Duration = Duration::from_millis(50);
/// While container jobs run, lists are spaced further apart: each list takes
/// the engine's container-store lock that the jobs' creates and starts need,
/// and what is in flight cannot be planned anyway.
const BUSY_LIST_INTERVAL: Duration = Duration::from_millis(1000);
/// At most this many container jobs run at once; the engine serialises much
/// of create/start internally, and a bounded queue keeps each job quick.
pub(crate) const MAX_PARALLEL_JOBS: usize = 16;

/// Crash loop: this many restarts observed by the engine...
const CRASH_LOOP_RESTARTS: u64 = 3;

/// An apply waiting for its images to resolve.
struct PendingApply {
    req: ApplyRequest,
    source: Source,
    actor: String,
    dry_run: bool,
    reply: Option<Reply<ApplyResponse>>,
}

pub struct Agent<E: Env> {
    env: Arc<E>,
    cfg: AgentConfig,
    services: BTreeMap<String, Svc>,
    /// Services whose record could not be read: (path, error).
    unreadable: BTreeMap<String, (String, String)>,
    observed: Vec<ObservedContainer>,
    engine_reachable: Option<bool>,
    engine_detail: String,
    /// When to list the engine's containers again.
    observe_at: Option<Instant>,
    observe_backoff: Duration,
    /// A list is running.
    observing: bool,
    /// Container jobs (actions, restarts) spawned and not yet reported back.
    jobs_in_flight: usize,
    job_permits: Arc<tokio::sync::Semaphore>,
    events_connected: bool,
    events_retry_at: Instant,
    last_resync: Instant,
    seq: u64,
    ring: Arc<Mutex<EventRing>>,
    events_tx: broadcast::Sender<Event>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    heartbeat_tx: watch::Sender<u64>,
    cmd_rx: mpsc::Receiver<Command>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    pending: BTreeMap<u64, PendingApply>,
    next_apply_id: u64,
    /// Services with no record whose containers are being removed.
    orphans_busy: BTreeSet<String>,
    /// Containers a job acted on lately, so the engine's echo of berthd's own
    /// actions is not reported as something that happened to it.
    own_containers: std::collections::HashMap<String, Instant>,
    dirty: bool,
    /// The config watcher's events (the watcher is `Env::watcher`);
    /// `None` once it stopped.
    watch_events: Option<BoxStream<WatchEvent>>,
    /// What the watcher was last told to watch.
    watching: Vec<WatchSpec>,
    /// Host units (`after_units`, `requires_units`) and their states.
    units: units::Units,
    /// Deletes that remove named volumes once the container is gone.
    volume_removals: BTreeMap<String, volumes::Removal>,
    /// The services of the spec_dir's files at the last scan: a dependency
    /// on one of them is known while its file's apply is under way.
    spec_dir_known: BTreeMap<String, berth_core::spec::ServiceSpec>,
    /// Pruning pulled images (`prune.rs`).
    pruning: prune::Pruning,
}

impl<E: Env> Agent<E> {
    /// Loads state from the store and returns the agent and its handle. The
    /// loop starts with [`Agent::run`].
    pub fn new(env: Arc<E>, cfg: AgentConfig) -> Result<(Agent<E>, Handle), AgentError> {
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (events_tx, _) = broadcast::channel(1024);
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (heartbeat_tx, heartbeat_rx) = watch::channel(0u64);
        let ring = Arc::new(Mutex::new(EventRing::new(cfg.events_keep)));
        let now = Instant::now();
        let mut agent = Agent {
            env,
            cfg,
            services: BTreeMap::new(),
            unreadable: BTreeMap::new(),
            observed: Vec::new(),
            engine_reachable: None,
            engine_detail: String::new(),
            observe_at: Some(now),
            observe_backoff: Duration::from_millis(500),
            observing: false,
            jobs_in_flight: 0,
            job_permits: Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL_JOBS)),
            events_connected: false,
            events_retry_at: now,
            last_resync: now,
            seq: 0,
            ring: ring.clone(),
            events_tx: events_tx.clone(),
            snapshot_tx,
            heartbeat_tx,
            cmd_rx,
            done_tx,
            done_rx,
            pending: BTreeMap::new(),
            next_apply_id: 1,
            orphans_busy: BTreeSet::new(),
            own_containers: std::collections::HashMap::new(),
            dirty: true,
            watch_events: None,
            watching: Vec::new(),
            units: units::Units::new(),
            volume_removals: BTreeMap::new(),
            spec_dir_known: BTreeMap::new(),
            pruning: prune::Pruning::default(),
        };
        agent.load()?;
        agent.watch_events = Some(agent.env.watcher().events());
        agent.refresh_watches();
        agent.publish_snapshot();
        let handle = Handle {
            cmd: cmd_tx,
            snapshot: snapshot_rx,
            heartbeat: heartbeat_rx,
            events: events_tx,
            ring,
        };
        Ok((agent, handle))
    }

    /// Runs until `shutdown` resolves. Containers are left running.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut engine_events: Option<
            berth_core::runtime::BoxStream<Result<RuntimeEvent, RuntimeError>>,
        > = None;
        loop {
            if engine_events.is_none()
                && self.engine_reachable == Some(true)
                && Instant::now() >= self.events_retry_at
            {
                engine_events = Some(self.env.runtime().events());
                self.events_connected = true;
                // Anything that happened before the subscription is caught by a list.
                self.observe_at = Some(Instant::now());
            }
            tokio::select! {
                _ = &mut shutdown => break,
                Some(cmd) = self.cmd_rx.recv() => self.handle_command(cmd),
                Some(done) = self.done_rx.recv() => self.handle_done(done),
                ev = next_event(&mut engine_events) => match ev {
                    Some(Ok(ev)) => self.handle_engine_event(ev),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "engine event stream failed; resyncing");
                        engine_events = None;
                        self.lost_events();
                    }
                    None => {
                        tracing::warn!("engine event stream ended; resyncing");
                        engine_events = None;
                        self.lost_events();
                    }
                },
                ev = next_watch_event(&mut self.watch_events) => match ev {
                    Some(ev) => self.on_watch_event(ev),
                    None => {
                        tracing::error!("the config watcher stopped; config changes are no longer seen");
                        self.emit(EventKind::Daemon {
                            message: "the config watcher stopped; config changes are no longer seen until berthd restarts".into(),
                        });
                        self.watch_events = None;
                    }
                },
                Some(msg) = self.units.rx.recv() => self.on_unit_msg(msg),
                _ = tick.tick() => self.on_tick(),
                // Not while a list runs: a due request then waits for that
                // list to report back (waking for it would spin the loop).
                _ = sleep_until_opt(self.observe_at.filter(|_| !self.observing)) => {}
            }
            self.step().await;
        }
        self.emit(EventKind::Daemon {
            message: "berthd stopping; containers are left running".into(),
        });
    }

    /// Asks for a fresh container list soon: at once, unless one was read
    /// less than `MIN_LIST_INTERVAL` ago (a burst of events costs one list).
    fn request_observe(&mut self) {
        let interval = if self.jobs_in_flight > 0 {
            BUSY_LIST_INTERVAL
        } else {
            MIN_LIST_INTERVAL
        };
        let earliest = self.last_resync + interval;
        let at = Instant::now().max(earliest);
        self.observe_at = Some(match self.observe_at {
            Some(existing) => existing.min(at),
            None => at,
        });
    }

    fn lost_events(&mut self) {
        self.events_connected = false;
        self.events_retry_at = Instant::now() + Duration::from_secs(1);
        self.observe_at = Some(Instant::now());
    }

    fn on_tick(&mut self) {
        // Proof of life for the systemd watchdog: only a loop that runs ticks.
        self.heartbeat_tx.send_modify(|n| *n = n.wrapping_add(1));
        if self.last_resync.elapsed() >= self.cfg.resync_interval && self.observe_at.is_none() {
            self.observe_at = Some(Instant::now());
        }
        // Deadlines (settle, health, retry) are judged in step(); an idle
        // node has none, and then a tick costs nothing.
        let now = Instant::now();
        // A deployment waiting for its dependencies needs no tick: what it
        // waits for changes by a status or an engine event, each of which
        // takes a step (a wave held by a failed step would otherwise plan
        // the whole node four times a second until someone re-applies).
        let waiting = self.services.values().any(|s| {
            (!s.current.status.is_terminal() && !s.current.waiting)
                || s.gate.is_some()
                || s.retry_at.is_some_and(|t| now >= t)
                || (s.config.dirty && !s.config.reading && !s.meta.held)
        });
        if waiting {
            self.dirty = true;
        }
    }

    /// After any input: observe if due, judge deployments, plan, dispatch.
    async fn step(&mut self) {
        // Listing runs in a task of its own, so the loop keeps answering
        // commands while the engine is slow.
        if !self.observing
            && let Some(at) = self.observe_at
            && Instant::now() >= at
        {
            self.observing = true;
            self.observe_at = None;
            self.spawn(Job::List);
        }
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.refresh_units();
        // Plan only from a fresh list: while a re-list is pending (after an
        // engine event or a finished job), what we hold is stale and acting on
        // it would repeat work that was just done.
        if self.engine_reachable == Some(true) {
            if !self.observing && self.observe_at.is_none() {
                self.judge_units();
                self.judge();
                self.drive_waves();
                self.reconcile();
            }
            // Reading files needs no fresh container list, and a reaction
            // only names the service's container (kept while it is idle).
            self.schedule_config_reads();
        }
        self.publish_snapshot();
    }

    // ---- apply ----------------------------------------------------------

    // ---- verbs ----------------------------------------------------------

    // ---- spec_dir -------------------------------------------------------

    // ---- judging deployments ---------------------------------------------

    // ---- reconcile ------------------------------------------------------

    // ---- plumbing -------------------------------------------------------

    fn spawn(&mut self, job: Job) {
        let env = self.env.clone();
        let tx = self.done_tx.clone();
        let events = jobs::JobEvents::new(tx.clone());
        let container_job = job.is_container_job();
        let permits = self.job_permits.clone();
        if container_job {
            self.jobs_in_flight += 1;
        }
        tokio::spawn(async move {
            let _permit = if container_job {
                permits.acquire_owned().await.ok()
            } else {
                None
            };
            let done = jobs::run(&env, job, &events).await;
            let _ = tx.send(done);
        });
    }

    fn emit(&mut self, kind: EventKind) {
        self.seq += 1;
        let event = Event {
            seq: self.seq,
            at_ms: self.env.now_ms(),
            kind,
        };
        tracing::info!(target: "berth::event", seq = event.seq, service = event.kind.service().unwrap_or(""), "{}", event.kind.summary());
        if let Err(e) = self.env.store().append_event(&event, self.cfg.events_keep) {
            tracing::warn!(error = %e, "cannot append to the event log");
        }
        if let Ok(mut ring) = self.ring.lock() {
            ring.push(event.clone());
        }
        let _ = self.events_tx.send(event);
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_watch_event(events: &mut Option<BoxStream<WatchEvent>>) -> Option<WatchEvent> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

async fn next_event(
    stream: &mut Option<berth_core::runtime::BoxStream<Result<RuntimeEvent, RuntimeError>>>,
) -> Option<Result<RuntimeEvent, RuntimeError>> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}
