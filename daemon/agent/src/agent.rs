//! The loop itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::dto::{
    ApplyRequest, ApplyResponse, ApplyResult, Change, EngineStatus, NodeInfo, Summary,
    VerbResponse, spec_diff,
};
use berth_core::event::{Event, EventKind};
use berth_core::hash::{create_spec, spec_hash};
use berth_core::plan::{Action, Desired, DesiredService, Observed, plan};
use berth_core::record::{DeployAction, Deployment, RECORD_SCHEMA_VERSION, Source, Status};
use berth_core::runtime::{
    ContainerState, CreateRequest, Health, LABEL_CONFIG_HASH, LABEL_DEPLOYMENT, LABEL_GENERATION,
    LABEL_KIND, LABEL_SERVICE, LABEL_SPEC_HASH, ObservedContainer, Runtime, RuntimeError,
    RuntimeEvent,
};
use berth_core::spec::{DesiredState, Kind, ServiceSpec};
use berth_core::store::{LoadedService, META_SCHEMA_VERSION, ServiceMeta, Store};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::exec::{self, ConfigRead, Done, Job};
use crate::state::{
    ConfigTrack, EventRing, Snapshot, Svc, Watch, converged, last_change_of, made_from,
    service_status,
};

mod config;
pub(crate) mod units;
use crate::{AgentConfig, AgentError, Command, Env, Handle, Reply, SpecFile, Verb};

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
    /// The config watcher, when berthd has one (tests may run without).
    watcher: Option<Box<dyn berth_watch::Watcher>>,
    /// What the watcher was last told to watch.
    watching: Vec<berth_watch::WatchSpec>,
    /// Host units (`after_units`, `requires_units`) and their states.
    units: units::Units,
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
            watcher: None,
            watching: Vec::new(),
            units: units::Units::new(),
        };
        agent.load()?;
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

    fn load(&mut self) -> Result<(), AgentError> {
        let store = self.env.store();
        let events = store.load_events(self.cfg.events_keep)?;
        if let Ok(mut ring) = self.ring.lock() {
            for e in events {
                self.seq = self.seq.max(e.seq);
                ring.push(e);
            }
        }
        let mut unreadable = Vec::new();
        for loaded in store.load()? {
            match loaded {
                LoadedService::Unreadable {
                    service,
                    path,
                    error,
                } => {
                    tracing::error!(
                        service,
                        path,
                        error,
                        "record unreadable; service left alone"
                    );
                    unreadable.push((service.clone(), path.clone(), error.clone()));
                    self.unreadable.insert(service, (path, error));
                }
                LoadedService::Ok { mut meta, current } => {
                    let mut current = *current;
                    // A record written just before a crash, whose meta was not: adopt it.
                    if let Some(newest) = store.history(&meta.service, 1)?.into_iter().next()
                        && newest.generation > current.generation
                    {
                        tracing::warn!(
                            service = meta.service,
                            generation = newest.generation,
                            "found a record newer than current.json (crash between writes); adopting it"
                        );
                        meta.generation = newest.generation;
                        meta.target_generation = newest.generation;
                        current = newest;
                    }
                    if meta.target_generation == 0 {
                        meta.target_generation = meta.generation;
                    }
                    let current = Arc::new(current);
                    let target = if meta.target_generation == current.generation {
                        Arc::clone(&current)
                    } else {
                        match store.record(&meta.service, meta.target_generation)? {
                            Some(t) => Arc::new(t),
                            None => Arc::clone(&current),
                        }
                    };
                    let mut svc = Svc {
                        meta,
                        current,
                        target,
                        create: None,
                        busy: false,
                        retry_at: None,
                        failures: 0,
                        looked_again: false,
                        watch: None,
                        last_restarts: 0,
                        crash_loop: false,
                        config: ConfigTrack::default(),
                    };
                    self.load_config_track(&mut svc);
                    svc.create = self.create_request(&svc.target);
                    if !svc.current.status.is_terminal() {
                        // Resumed: judged again from what the engine shows.
                        svc.watch = Some(self.new_watch(&svc.current, true));
                    }
                    self.services.insert(svc.meta.service.clone(), svc);
                }
            }
        }
        for (service, path, error) in unreadable {
            self.emit(EventKind::RecordUnreadable {
                service,
                path,
                error,
            });
        }
        let n = self.services.len();
        self.emit(EventKind::Daemon {
            message: format!(
                "berthd started: node {}, {n} services loaded, {} unreadable",
                self.cfg.node_id,
                self.unreadable.len()
            ),
        });
        Ok(())
    }

    fn new_watch(&self, record: &Deployment, needs_settle: bool) -> Watch {
        Watch {
            running_since: None,
            needs_settle,
            restarts_at_start: None,
            health_deadline: Instant::now() + record.spec.update.health_timeout,
        }
    }

    fn outputs_dir(&self, service: &str) -> PathBuf {
        self.cfg.state_dir.join("outputs").join(service)
    }

    /// The create call for a record, when its image was resolved.
    fn create_request(&self, record: &Deployment) -> Option<Box<CreateRequest>> {
        let image_id = record.image_id.as_deref()?;
        let outputs_dir = self.outputs_dir(&record.service);
        let spec = create_spec(
            &record.spec,
            image_id,
            Some(outputs_dir.to_string_lossy().as_ref()),
        );
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_SERVICE.to_string(), record.service.clone());
        labels.insert(LABEL_SPEC_HASH.to_string(), record.spec_hash.clone());
        labels.insert(LABEL_GENERATION.to_string(), record.generation.to_string());
        labels.insert(LABEL_DEPLOYMENT.to_string(), record.id.clone());
        let kind = match record.spec.kind {
            Kind::Service => "service",
            Kind::Task => "task",
        };
        labels.insert(LABEL_KIND.to_string(), kind.to_string());
        if let Some(identity) = &record.config_identity {
            labels.insert(LABEL_CONFIG_HASH.to_string(), identity.clone());
        }
        Some(Box::new(CreateRequest {
            name: format!("{}{}", self.cfg.prefix, record.service),
            spec,
            labels,
        }))
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
                ev = next_watch_event(&mut self.watcher) => match ev {
                    Some(ev) => self.on_watch_event(ev),
                    None => {
                        tracing::error!("the config watcher stopped; config changes are no longer seen");
                        self.emit(EventKind::Daemon {
                            message: "the config watcher stopped; config changes are no longer seen until berthd restarts".into(),
                        });
                        self.watcher = None;
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
        let waiting = self.services.values().any(|s| {
            !s.current.status.is_terminal()
                || s.watch.is_some()
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
                self.reconcile();
            }
            // Reading files needs no fresh container list, and a reaction
            // only names the service's container (kept while it is idle).
            self.schedule_config_reads();
        }
        self.publish_snapshot();
    }

    fn observed(&mut self, result: Result<Vec<ObservedContainer>, RuntimeError>) {
        self.observing = false;
        match result {
            Ok(list) => {
                self.observed = list;
                self.last_resync = Instant::now();
                self.observe_backoff = Duration::from_millis(500);
                if self.engine_reachable != Some(true) {
                    self.engine_reachable = Some(true);
                    self.engine_detail = self.cfg.engine_endpoint.clone();
                    self.emit(EventKind::EngineState {
                        reachable: true,
                        detail: format!(
                            "{} ({} containers of this node)",
                            self.cfg.engine_endpoint,
                            self.observed.len()
                        ),
                    });
                }
                self.dirty = true;
            }
            Err(e) => {
                let detail = e.to_string();
                if self.engine_reachable != Some(false) || self.engine_detail != detail {
                    tracing::warn!(error = %detail, retry_in = ?self.observe_backoff, "cannot list containers");
                    self.engine_reachable = Some(false);
                    self.engine_detail = detail.clone();
                    self.emit(EventKind::EngineState {
                        reachable: false,
                        detail: format!("{detail}; retrying"),
                    });
                }
                self.observe_at = Some(Instant::now() + self.observe_backoff);
                self.observe_backoff = (self.observe_backoff * 2).min(Duration::from_secs(30));
                self.dirty = true;
            }
        }
    }

    fn handle_engine_event(&mut self, ev: RuntimeEvent) {
        // Health probes run as execs: they change nothing berth looks at.
        if ev.action.starts_with("exec_") {
            return;
        }
        let reportable = matches!(ev.action.as_str(), "die" | "destroy" | "oom" | "kill")
            || ev.action.starts_with("health_status");
        if reportable
            && !self.is_own_transition(&ev)
            && let Some(c) = self.observed.iter().find(|c| c.id == ev.container_id)
        {
            let container = c.name.clone();
            self.emit(EventKind::ContainerObserved {
                service: ev.service.clone(),
                container,
                action: ev.action.clone(),
                exit_code: ev.exit_code,
            });
        }
        // Level-triggered: the event only says "look again".
        self.request_observe();
    }

    /// Events caused by berthd's own executor (a stop, a removal during a
    /// swap) are already reported as its steps, not again as observations.
    fn is_own_transition(&self, ev: &RuntimeEvent) -> bool {
        self.own_containers.contains_key(&ev.container_id)
    }

    fn handle_command(&mut self, cmd: Command) {
        self.dirty = true;
        match cmd {
            Command::Apply {
                req,
                source,
                actor,
                dry_run,
                reply,
            } => self.begin_apply(req, source, actor, dry_run, reply),
            // Said so, not "no service named": the service is there, berthd
            // just cannot read its record.
            Command::Verb { service, reply, .. } if self.unreadable.contains_key(&service) => {
                let _ = reply.send(Err(self.unreadable_refusal(&service)));
            }
            Command::Verb {
                service,
                verb: Verb::Reconfigure,
                actor,
                reply,
            } => self.request_reconfigure(&service, actor, reply),
            Command::Verb {
                service,
                verb,
                actor,
                reply,
            } => {
                let r = self.verb(&service, verb, &actor);
                let _ = reply.send(r);
            }
            Command::History {
                service,
                limit,
                reply,
            } => {
                let r = if !self.services.contains_key(&service)
                    && !self.unreadable.contains_key(&service)
                {
                    Err(AgentError::NoSuchService { service })
                } else {
                    self.env
                        .store()
                        .history(&service, limit)
                        .map(|v| v.iter().map(Deployment::redacted).collect())
                        .map_err(AgentError::from)
                };
                let _ = reply.send(r);
            }
            Command::Deployment { id, reply } => {
                let _ = reply.send(self.find_deployment(&id));
            }
            Command::Logs {
                service,
                opts,
                reply,
            } => {
                let r = match self.container_of(&service) {
                    Some(c) => Ok(self.env.runtime().logs(&c.id, opts)),
                    None if self.services.contains_key(&service) => Err(AgentError::Refused {
                        service,
                        reason: "has no container".into(),
                    }),
                    None if self.unreadable.contains_key(&service) => {
                        Err(self.unreadable_refusal(&service))
                    }
                    None => Err(AgentError::NoSuchService { service }),
                };
                let _ = reply.send(r);
            }
            Command::Emit { kind } => self.emit(kind),
            Command::SpecDir { files, reply } => {
                let problems = self.spec_dir(files);
                let _ = reply.send(Ok(problems));
            }
        }
    }

    fn find_deployment(&self, id: &str) -> Result<Deployment, AgentError> {
        let not_found = || AgentError::NoSuchDeployment { id: id.to_string() };
        let (service, generation) = id.rsplit_once('-').ok_or_else(not_found)?;
        let generation: u64 = generation.parse().map_err(|_| not_found())?;
        if let Some(svc) = self.services.get(service)
            && svc.current.generation == generation
        {
            return Ok(svc.current.redacted());
        }
        if !berth_core::spec::valid_service_name(service) {
            return Err(not_found());
        }
        match self.env.store().record(service, generation)? {
            Some(d) => Ok(d.redacted()),
            None => Err(not_found()),
        }
    }

    /// The container that stands for `service` (canonical name first).
    fn container_of(&self, service: &str) -> Option<&ObservedContainer> {
        let name = format!("{}{service}", self.cfg.prefix);
        self.observed
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.observed.iter().find(|c| c.service == service))
    }

    // ---- apply ----------------------------------------------------------

    fn begin_apply(
        &mut self,
        req: ApplyRequest,
        source: Source,
        actor: String,
        dry_run: bool,
        reply: Reply<ApplyResponse>,
    ) {
        // All-or-nothing checks first.
        let mut seen = BTreeSet::new();
        for spec in &req.services {
            if let Some((i, m)) = spec
                .config
                .iter()
                .enumerate()
                .find(|(_, m)| !m.source.starts_with('/'))
            {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: format!(
                        "{}: config[{i}].source {:?} must be an absolute host path (berthctl resolves a relative one against the spec file's directory)",
                        spec.name, m.source
                    ),
                    details: vec![],
                }));
                return;
            }
            if !seen.insert(spec.name.clone()) {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: format!("service {} appears twice in one apply", spec.name),
                    details: vec![],
                }));
                return;
            }
            if self.unreadable.contains_key(&spec.name) {
                let (path, error) = &self.unreadable[&spec.name];
                let _ = reply.send(Err(AgentError::Refused {
                    service: spec.name.clone(),
                    reason: format!(
                        "has an unreadable record {path} ({error}); move it away first"
                    ),
                }));
                return;
            }
            if let Some(svc) = self.services.get(&spec.name) {
                if !svc.is_deleted() && !svc.meta.source.same_owner(&source) && !req.force {
                    let _ = reply.send(Err(AgentError::Conflict {
                        service: spec.name.clone(),
                        owner: svc.meta.source.describe(),
                    }));
                    return;
                }
                if svc.meta.held && !dry_run {
                    let _ = reply.send(Err(AgentError::Refused {
                        service: spec.name.clone(),
                        reason: "is held; `berthctl release` it first".into(),
                    }));
                    return;
                }
            }
        }
        let apply_id = self.next_apply_id;
        self.next_apply_id += 1;
        let images = req
            .services
            .iter()
            .map(|s| (s.name.clone(), s.image.clone()))
            .collect();
        let configs = req.services.iter().map(|s| s.config.clone()).collect();
        self.pending.insert(
            apply_id,
            PendingApply {
                req,
                source,
                actor,
                dry_run,
                reply: Some(reply),
            },
        );
        self.spawn(Job::Resolve {
            apply_id,
            images,
            configs,
        });
    }

    fn finish_apply(
        &mut self,
        apply_id: u64,
        results: Vec<Result<String, RuntimeError>>,
        configs: Vec<Vec<ConfigRead>>,
    ) {
        let Some(mut pending) = self.pending.remove(&apply_id) else {
            return;
        };
        // All or nothing: a source that cannot be reloaded in place refuses
        // the whole apply before anything is recorded.
        let problems: Vec<String> =
            pending
                .req
                .services
                .iter()
                .zip(&configs)
                .flat_map(|(spec, reads)| {
                    spec.config.iter().zip(reads).enumerate().filter_map(
                        move |(i, (m, (_, kind)))| {
                            let problem = berth_core::spec::config_source_problem(m, (*kind)?)?;
                            Some(format!("{}: config[{i}]: {problem}", spec.name))
                        },
                    )
                })
                .collect();
        if !problems.is_empty() {
            if let Some(reply) = pending.reply.take() {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: problems.join("; "),
                    details: problems,
                }));
            }
            return;
        }
        let mut out = ApplyResponse {
            dry_run: pending.dry_run,
            results: Vec::new(),
        };
        let mut error = None;
        let mut configs = configs.into_iter();
        let services = &pending.req.services;
        for (i, (spec, image)) in services.iter().zip(results).enumerate() {
            let reads = configs.next().unwrap_or_default();
            match self.apply_one(
                spec,
                image,
                reads,
                &pending.source,
                &pending.actor,
                pending.dry_run,
            ) {
                Ok(r) => out.results.push(r),
                Err(e) if out.results.is_empty() => {
                    error = Some(e);
                    break;
                }
                // Records already made stay (each is whole on disk and its
                // deployment runs): the error says which, so nobody has to
                // guess what this apply left behind.
                Err(e) => {
                    let done = out
                        .results
                        .iter()
                        .map(|r| match &r.deployment {
                            Some(d) if r.change != Change::Unchanged => {
                                format!("{} ({})", r.service, d.id)
                            }
                            _ => format!("{} (unchanged)", r.service),
                        })
                        .collect();
                    let not_applied = services[i + 1..].iter().map(|s| s.name.clone()).collect();
                    tracing::error!(
                        error = berth_core::error_chain(&e),
                        service = spec.name,
                        "an apply stopped part way"
                    );
                    error = Some(AgentError::PartlyApplied {
                        failed: spec.name.clone(),
                        cause: Box::new(e),
                        done,
                        not_applied,
                    });
                    break;
                }
            }
        }
        if let Some(reply) = pending.reply.take() {
            let _ = reply.send(match error {
                Some(e) => Err(e),
                None => Ok(out),
            });
        }
    }

    fn apply_one(
        &mut self,
        spec: &ServiceSpec,
        image: Result<String, RuntimeError>,
        reads: Vec<ConfigRead>,
        source: &Source,
        actor: &str,
        dry_run: bool,
    ) -> Result<ApplyResult, AgentError> {
        let states: Vec<berth_core::reconfig::ConfigState> =
            reads.into_iter().map(|(state, _)| state).collect();
        let config_errors: Vec<String> = states.iter().filter_map(|s| s.error.clone()).collect();
        let existing = self.services.get(&spec.name).filter(|s| !s.is_deleted());
        let old_spec = existing.map(|s| s.current.spec.redacted());
        let diff = spec_diff(old_spec.as_ref(), &spec.redacted());
        // (unreachable engine, message)
        let (hash, image_id, failure): (String, Option<String>, Option<(bool, String)>) =
            match &image {
                Ok(id) => {
                    let outputs_dir = self.outputs_dir(&spec.name);
                    let create =
                        create_spec(spec, id, Some(outputs_dir.to_string_lossy().as_ref()));
                    let failure = (!config_errors.is_empty()).then(|| {
                        (
                            false,
                            format!(
                                "{}; nothing was changed (mount a source that exists: berth never creates one)",
                                config_errors.join("; ")
                            ),
                        )
                    });
                    (spec_hash(&create), Some(id.clone()), failure)
                }
                Err(e) => (
                    String::new(),
                    None,
                    Some((e.is_unreachable(), e.to_string())),
                ),
            };
        // Content that changed under an unchanged spec is the watcher's
        // business: it reconfigures by the policy (marked below).
        let mut config_moved = false;
        let change = match existing {
            None => Change::Created,
            Some(svc) => {
                if failure.is_none() && svc.target.spec_hash == hash {
                    let same_source = svc.meta.source == *source;
                    config_moved = !spec.config.is_empty()
                        && berth_core::reconfig::combined_hash(&states) != svc.target.config_hash;
                    if svc.current.spec == *spec
                        && svc.current.status != Status::Failed
                        && same_source
                    {
                        Change::Unchanged
                    } else {
                        Change::PolicyOnly
                    }
                } else {
                    Change::Updated
                }
            }
        };
        let mut result = ApplyResult {
            service: spec.name.clone(),
            change,
            diff,
            deployment: None,
        };
        if dry_run || change == Change::Unchanged {
            if change == Change::Unchanged {
                result.deployment = existing.map(|s| s.current.redacted());
                if config_moved && !dry_run {
                    self.mark_config_dirty(&spec.name);
                }
            }
            return Ok(result);
        }
        let action = if change == Change::Created {
            DeployAction::Create
        } else {
            DeployAction::Update
        };
        let mut record = self.new_record(spec.clone(), action, source.clone(), actor);
        record.image_id = image_id;
        record.spec_hash = hash;
        match (change, self.services.get(&spec.name)) {
            // Same container: its config is what it was; the watcher
            // compares the content against that.
            (Change::PolicyOnly, Some(svc)) => {
                record.config = svc.target.config.clone();
                record.config_hash = svc.target.config_hash.clone();
                record.config_identity = svc.target.config_identity.clone();
            }
            _ => {
                record.config_hash = berth_core::reconfig::combined_hash(&states);
                record.config_identity = berth_core::reconfig::identity(spec, &states);
                record.config = states;
            }
        }
        match failure {
            // The engine is away: the deployment waits for it rather than
            // failing, and its image is resolved once the engine answers.
            Some((true, e)) => {
                record.status = Status::Pending;
                record.status_reason = format!("waiting for the container engine: {e}");
            }
            Some((false, e)) => {
                record.status = Status::Failed;
                record.status_reason = e;
            }
            None if change == Change::PolicyOnly => {
                record.applied = true;
                record.status = Status::InProgress;
            }
            None => {}
        }
        let record = self.commit_record(record, Some(source.clone()))?;
        if change == Change::PolicyOnly && config_moved {
            self.mark_config_dirty(&record.service);
        }
        result.deployment = Some(record.redacted());
        Ok(result)
    }

    /// A new record for `service` at the next generation (not yet saved).
    fn new_record(
        &self,
        spec: ServiceSpec,
        action: DeployAction,
        source: Source,
        actor: &str,
    ) -> Deployment {
        let generation = self
            .services
            .get(&spec.name)
            .map(|s| s.meta.generation)
            .unwrap_or(0)
            + 1;
        let now = self.env.now_ms();
        Deployment {
            schema_version: RECORD_SCHEMA_VERSION,
            id: Deployment::make_id(&spec.name, generation),
            service: spec.name.clone(),
            generation,
            action,
            source,
            actor: actor.to_string(),
            spec,
            image_id: None,
            spec_hash: String::new(),
            config_hash: None,
            config: Vec::new(),
            config_identity: None,
            config_change: None,
            status: Status::Pending,
            status_reason: String::new(),
            outputs: Default::default(),
            created_at_ms: now,
            updated_at_ms: now,
            applied: false,
            rollback_of: None,
        }
    }

    /// Saves a new record, makes it current (and the target unless it failed
    /// before reaching the engine), prunes history, emits the event.
    fn commit_record(
        &mut self,
        record: Deployment,
        source: Option<Source>,
    ) -> Result<Deployment, AgentError> {
        let store = self.env.store();
        store.save_record(&record)?;
        let name = record.service.clone();
        let failed_early = record.status == Status::Failed && !record.applied;
        let prev = self.services.remove(&name);
        let mut meta = match &prev {
            Some(p) => p.meta.clone(),
            None => ServiceMeta {
                schema_version: META_SCHEMA_VERSION,
                service: name.clone(),
                generation: 0,
                target_generation: 0,
                held: false,
                source: record.source.clone(),
                last_config_change: Some(0),
            },
        };
        meta.generation = record.generation;
        if record.config_change.is_some() {
            meta.last_config_change = Some(record.generation);
        }
        if let Some(source) = source {
            meta.source = source;
        }
        let record = Arc::new(record);
        let target = match (&prev, failed_early) {
            (Some(p), true) => Arc::clone(&p.target),
            _ => Arc::clone(&record),
        };
        meta.target_generation = target.generation;
        if let Err(e) = store.save_meta(&meta) {
            if let Some(p) = prev {
                self.services.insert(name, p);
            }
            return Err(e.into());
        }
        let watch = if record.status.is_terminal() {
            None
        } else {
            Some(self.new_watch(&record, !record.applied))
        };
        let create = self.create_request(&target);
        // What the watcher watches follows the target's sources and
        // deletions; most records change neither.
        let watches_change = prev.as_ref().is_none_or(|p| {
            p.target.spec.config != target.spec.config
                || (p.current.action == DeployAction::Delete)
                    != (record.action == DeployAction::Delete)
        });
        let mut svc = Svc {
            meta,
            current: Arc::clone(&record),
            target,
            create,
            busy: prev.as_ref().is_some_and(|p| p.busy),
            retry_at: None,
            failures: 0,
            looked_again: false,
            watch,
            last_restarts: prev.as_ref().map(|p| p.last_restarts).unwrap_or(0),
            crash_loop: false,
            config: prev.map(|p| p.config).unwrap_or_default(),
        };
        if record.config_change.is_some() {
            svc.config.last_change = last_change_of(&record);
        }
        if failed_early && svc.target.generation == record.generation {
            // A brand-new service whose first deployment failed: nothing runs.
            svc.create = None;
        }
        self.services.insert(name.clone(), svc);
        if let Err(e) = store.prune(&name, self.cfg.history_limit) {
            tracing::warn!(service = name, error = %e, "pruning history failed");
        }
        if watches_change {
            self.refresh_watches();
        }
        self.emit_status(&record);
        Ok(Arc::unwrap_or_clone(record))
    }

    fn emit_status(&mut self, record: &Deployment) {
        self.emit(EventKind::DeploymentStatus {
            service: record.service.clone(),
            deployment: record.id.clone(),
            action: record.action,
            status: record.status,
            reason: record.status_reason.clone(),
            actor: record.actor.clone(),
        });
    }

    /// Moves the current record of `service` to `status`.
    fn set_status(
        &mut self,
        service: &str,
        status: Status,
        reason: String,
        outputs: Option<berth_core::record::Outputs>,
    ) {
        let now = self.env.now_ms();
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        if svc.current.status == status && svc.current.status_reason == reason && outputs.is_none()
        {
            return;
        }
        svc.edit_current(|d| {
            d.status = status;
            d.status_reason = reason;
            d.updated_at_ms = now;
            if let Some(o) = outputs {
                d.outputs = o;
            }
        });
        if status.is_terminal() {
            svc.watch = None;
        }
        let record = Arc::clone(&svc.current);
        if let Err(e) = self.env.store().save_record(&record) {
            tracing::error!(service, error = %e, "cannot save record status");
        }
        self.emit_status(&record);
        if status.is_terminal()
            && matches!(
                record.spec.image,
                berth_core::spec::ImageSource::Build { .. }
            )
        {
            self.collect_images(service);
        }
    }

    /// Built images of `service` that no record in its (pruned) history uses
    /// any more are removed, so rebuilds do not fill the disk.
    fn collect_images(&mut self, service: &str) {
        let keep = match self.env.store().history(service, usize::MAX) {
            Ok(h) => h.into_iter().filter_map(|d| d.image_id).collect(),
            Err(e) => {
                tracing::warn!(service, error = %e, "cannot read history; no image garbage collection");
                return;
            }
        };
        self.spawn(Job::ImageGc {
            service: service.to_string(),
            keep,
        });
    }

    // ---- verbs ----------------------------------------------------------

    /// The answer to a verb on a service whose record berthd could not read
    /// at start: which file, what is wrong with it, and what to do.
    fn unreadable_refusal(&self, service: &str) -> AgentError {
        let (path, error) = self
            .unreadable
            .get(service)
            .map(|(p, e)| (p.as_str(), e.as_str()))
            .unwrap_or(("?", "?"));
        AgentError::Refused {
            service: service.to_string(),
            reason: format!(
                "has an unreadable record {path} ({error}); berthd leaves the service alone: \
                 repair the file, or move the service's directory out of the state dir, \
                 then restart berthd"
            ),
        }
    }

    fn verb(&mut self, service: &str, verb: Verb, actor: &str) -> Result<VerbResponse, AgentError> {
        let Some(svc) = self.services.get(service).filter(|s| !s.is_deleted()) else {
            return Err(AgentError::NoSuchService {
                service: service.to_string(),
            });
        };
        let response = |deployment: Option<Deployment>, message: String| VerbResponse {
            service: service.to_string(),
            deployment: deployment.map(|d| d.redacted()),
            message,
        };
        if svc.current.action == DeployAction::Delete && !svc.current.status.is_terminal() {
            // A finished delete is filtered out above; this one is on its way.
            return Err(AgentError::Refused {
                service: service.to_string(),
                reason: format!(
                    "is being deleted (deployment {} is {})",
                    svc.current.id, svc.current.status
                ),
            });
        }
        let held = svc.meta.held;
        if held && !matches!(verb, Verb::Release | Verb::Hold) {
            return Err(AgentError::Refused {
                service: service.to_string(),
                reason: "is held; `berthctl release` it first".into(),
            });
        }
        match verb {
            Verb::Hold | Verb::Release => {
                let want = verb == Verb::Hold;
                if held == want {
                    return Ok(response(
                        None,
                        format!(
                            "{service} is already {}",
                            if want { "held" } else { "released" }
                        ),
                    ));
                }
                let mut meta = svc.meta.clone();
                meta.held = want;
                self.env.store().save_meta(&meta)?;
                if let Some(svc) = self.services.get_mut(service) {
                    svc.meta = meta;
                }
                self.emit(EventKind::ServiceHeld {
                    service: service.to_string(),
                    held: want,
                });
                Ok(response(
                    None,
                    if want {
                        format!("{service} held: berthd leaves it alone until released")
                    } else {
                        format!("{service} released")
                    },
                ))
            }
            Verb::Restart => {
                let Some(c) = self.container_of(service) else {
                    return Err(AgentError::Refused {
                        service: service.to_string(),
                        reason: "has no container to restart".into(),
                    });
                };
                if svc.busy {
                    return Err(AgentError::Refused {
                        service: service.to_string(),
                        reason: "is being changed right now; try again when its deployment ends"
                            .into(),
                    });
                }
                let container = c.id.clone();
                let name = c.name.clone();
                if let Some(svc) = self.services.get_mut(service) {
                    svc.busy = true;
                }
                self.own_containers
                    .insert(container.clone(), Instant::now());
                self.spawn(Job::Restart {
                    service: service.to_string(),
                    container,
                    name: name.clone(),
                    reconfigure: None,
                });
                Ok(response(None, format!("restarting {name}")))
            }
            Verb::Stop | Verb::Start => {
                let (state, action) = if verb == Verb::Stop {
                    (DesiredState::Stopped, DeployAction::Stop)
                } else {
                    (DesiredState::Running, DeployAction::Start)
                };
                if svc.target.spec.state == state && svc.current.status != Status::Failed {
                    return Ok(response(
                        Some((*svc.current).clone()),
                        format!("{service} is already set to {state:?}").to_lowercase(),
                    ));
                }
                let mut spec = svc.target.spec.clone();
                spec.state = state;
                let target = svc.target.clone();
                let source = svc.meta.source.clone();
                let mut record = self.new_record(spec, action, source, actor);
                record.image_id = target.image_id.clone();
                record.spec_hash = target.spec_hash.clone();
                inherit_config(&mut record, &target);
                record.applied = target.applied || target.image_id.is_some();
                record.status = Status::InProgress;
                let record = self.commit_record(record, None)?;
                let message = if action == DeployAction::Stop {
                    format!("stopping {service}")
                } else {
                    format!("starting {service}")
                };
                Ok(response(Some(record), message))
            }
            Verb::Delete => {
                let spec = svc.current.spec.clone();
                let source = svc.meta.source.clone();
                let target = svc.target.clone();
                let mut record = self.new_record(spec, DeployAction::Delete, source, actor);
                inherit_config(&mut record, &target);
                record.image_id = target.image_id.clone();
                record.spec_hash = target.spec_hash.clone();
                record.applied = true;
                record.status = Status::InProgress;
                let record = self.commit_record(record, None)?;
                let message = format!("deleting {service}");
                Ok(response(Some(record), message))
            }
            Verb::Reconfigure => Err(AgentError::Refused {
                service: service.to_string(),
                reason: "cannot be reconfigured this way (internal: reconfigure is answered by the config reader)".into(),
            }),
            Verb::Rollback { generation } => {
                let history = self.env.store().history(service, usize::MAX)?;
                let current_hash = svc.target.spec_hash.clone();
                let chosen = match generation {
                    Some(g) => history.iter().find(|d| d.generation == g).cloned().ok_or_else(|| {
                        AgentError::Refused {
                            service: service.to_string(),
                            reason: format!("has no generation {g} in its history (kept: last {})", self.cfg.history_limit),
                        }
                    })?,
                    None => history
                        .iter()
                        .find(|d| {
                            d.status == Status::Complete
                                && d.applied
                                && !d.spec_hash.is_empty()
                                && d.spec_hash != current_hash
                                && d.action != DeployAction::Delete
                        })
                        .cloned()
                        .ok_or_else(|| AgentError::Refused {
                            service: service.to_string(),
                            reason: "has no earlier COMPLETE deployment with a different spec to roll back to".into(),
                        })?,
                };
                if chosen.image_id.is_none() {
                    return Err(AgentError::Refused {
                        service: service.to_string(),
                        reason: format!(
                            "cannot go back to generation {}: it never resolved an image (it failed before reaching the engine)",
                            chosen.generation
                        ),
                    });
                }
                let source = svc.meta.source.clone();
                let mut record =
                    self.new_record(chosen.spec.clone(), DeployAction::Rollback, source, actor);
                record.image_id = chosen.image_id.clone();
                record.spec_hash = chosen.spec_hash.clone();
                // Config files are not rolled back: the chosen record's
                // reading is the baseline the watcher compares today's
                // content with (a difference reconfigures by the policy).
                inherit_config(&mut record, &chosen);
                record.rollback_of = Some(chosen.generation);
                if record.spec_hash == current_hash {
                    record.applied = true;
                    record.status = Status::InProgress;
                }
                let record = self.commit_record(record, None)?;
                let message = format!(
                    "rolling {service} back to generation {}; config files are not rolled back",
                    chosen.generation
                );
                Ok(response(Some(record), message))
            }
        }
    }

    // ---- spec_dir -------------------------------------------------------

    fn spec_dir(&mut self, files: Vec<SpecFile>) -> Vec<String> {
        let mut problems = Vec::new();
        let present: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
        let mut to_apply: Vec<(ServiceSpec, Source)> = Vec::new();
        for file in files {
            let services = match file.services {
                Ok(s) => s,
                Err(e) => {
                    let line = format!(
                        "spec_dir file {} is invalid; its services are left as they are:\n{e}",
                        file.path
                    );
                    self.emit(EventKind::Daemon {
                        message: line.clone(),
                    });
                    problems.push(line);
                    continue;
                }
            };
            let source = Source::SpecDir {
                path: file.path.clone(),
                content_hash: file.content_hash.clone(),
            };
            for spec in services {
                if let Some(svc) = self.services.get(&spec.name).filter(|s| !s.is_deleted()) {
                    if svc.meta.source == source {
                        continue; // unchanged file: never re-applied
                    }
                    if !svc.meta.source.same_owner(&source) {
                        let line = format!(
                            "{}: declared in {} but owned by {}; not applied (delete it or apply with --force to move it)",
                            spec.name,
                            file.path,
                            svc.meta.source.describe()
                        );
                        self.emit(EventKind::Daemon {
                            message: line.clone(),
                        });
                        problems.push(line);
                        continue;
                    }
                }
                to_apply.push((spec, source.clone()));
            }
        }
        // Services whose owning file is gone are deleted.
        let orphaned: Vec<String> = self
            .services
            .values()
            .filter(|s| !s.is_deleted())
            .filter(|s| match &s.meta.source {
                Source::SpecDir { path, .. } => !present.contains(path),
                _ => false,
            })
            .map(|s| s.meta.service.clone())
            .collect();
        for service in orphaned {
            if let Err(e) = self.verb(&service, Verb::Delete, "spec_dir") {
                problems.push(format!("{service}: cannot delete ({e})"));
            }
        }
        // Group per source file so each file is one apply.
        let mut by_source: BTreeMap<String, (Source, Vec<ServiceSpec>)> = BTreeMap::new();
        for (spec, source) in to_apply {
            let key = source.describe();
            by_source
                .entry(key)
                .or_insert_with(|| (source, Vec::new()))
                .1
                .push(spec);
        }
        for (_, (source, services)) in by_source {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let what = source.describe();
            tokio::spawn(async move {
                if let Ok(Err(e)) = rx.await {
                    tracing::warn!("{what}: not applied: {e}");
                }
            });
            self.begin_apply(
                ApplyRequest {
                    services,
                    force: false,
                },
                source,
                "spec_dir".to_string(),
                false,
                tx,
            );
        }
        problems
    }

    // ---- judging deployments ---------------------------------------------

    /// Moves IN_PROGRESS records forward from what the engine shows.
    fn judge(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let container = self.container_of(&name).cloned();
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            // Crash-loop flag from the restart count.
            if let Some(c) = &container
                && c.spec_hash.as_deref() == Some(svc.target.spec_hash.as_str())
            {
                if c.restart_count > svc.last_restarts {
                    svc.crash_loop = c.restart_count >= CRASH_LOOP_RESTARTS
                        && c.state == ContainerState::Restarting
                        || c.restart_count >= svc.last_restarts + CRASH_LOOP_RESTARTS;
                } else if c.state == ContainerState::Running && c.health != Some(Health::Unhealthy)
                {
                    svc.crash_loop = false;
                }
                svc.last_restarts = c.restart_count;
            }
            // A config change's reaction waiting to run (again) is judged
            // once it has: a restart or a signal leaves no trace on the
            // container to see.
            if svc.busy || svc.current.status.is_terminal() || svc.config.resume {
                continue;
            }
            // A deployment resumed after a crash whose container was in fact
            // created: it reached the engine.
            if !svc.current.applied
                && svc.current.generation == svc.target.generation
                && container
                    .as_ref()
                    .is_some_and(|c| c.spec_hash.as_deref() == Some(svc.current.spec_hash.as_str()))
            {
                svc.edit_current(|d| d.applied = true);
                let record = Arc::clone(&svc.current);
                if let Err(e) = self.env.store().save_record(&record) {
                    tracing::error!(service = name, error = %e, "cannot save record");
                }
            }
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            let verdict = judge_one(svc, container.as_ref(), now);
            match verdict {
                Verdict::Wait => {}
                Verdict::Done(status, reason) => {
                    self.set_status(&name, status, reason, None);
                    if status == Status::Complete
                        && self
                            .services
                            .get(&name)
                            .is_some_and(|s| s.current.action == DeployAction::Delete)
                    {
                        self.emit(EventKind::ServiceDeleted {
                            service: name.clone(),
                        });
                    }
                }
                Verdict::Collect(c) => {
                    if let Some(svc) = self.services.get_mut(&name) {
                        svc.busy = true;
                        let job = Job::Collect {
                            service: name.clone(),
                            container: c.id.clone(),
                            exit_code: c.exit_code,
                            outputs: svc.current.spec.outputs.clone(),
                            outputs_dir: Some(self.cfg.state_dir.join("outputs").join(&name)),
                        };
                        self.spawn(job);
                    }
                }
            }
        }
    }

    // ---- reconcile ------------------------------------------------------

    fn desired(&self) -> Desired {
        let mut d = Desired {
            services: BTreeMap::new(),
            untouchable: self.unreadable.keys().cloned().collect(),
        };
        for (name, svc) in &self.services {
            if svc.current.action == DeployAction::Delete {
                continue;
            }
            if svc.create.is_none() && svc.target.image_id.is_none() {
                // Never resolved (first deployment failed early): nothing to run,
                // but its leftover containers are not ours to remove either.
                d.untouchable.insert(name.clone());
                continue;
            }
            let spec = &svc.target.spec;
            d.services.insert(
                name.clone(),
                DesiredService {
                    name: name.clone(),
                    container_name: svc.container_name(&self.cfg.prefix),
                    spec_hash: svc.target.spec_hash.clone(),
                    state: spec.state,
                    kind: spec.kind,
                    restart: spec.effective_restart(),
                    held: svc.meta.held,
                    task_done: spec.kind == Kind::Task
                        && svc.target.status.is_terminal()
                        && svc.target.applied,
                    config_identity: svc.target.config_identity.clone(),
                    blocked: self.units_blocked(svc),
                },
            );
        }
        d
    }

    /// Exited containers of tasks that ended more than `task_gc_after` ago.
    fn task_gc(&self) -> Vec<Action> {
        let now = self.env.now_ms();
        let after = self.cfg.task_gc_after.as_millis() as u64;
        let mut out = Vec::new();
        for (name, svc) in &self.services {
            let done = svc.target.spec.kind == Kind::Task
                && svc.current.status.is_terminal()
                && svc.current.action != DeployAction::Delete
                && !svc.meta.held
                && now.saturating_sub(svc.current.updated_at_ms) >= after;
            if !done {
                continue;
            }
            for c in self.observed.iter().filter(|c| c.service == *name) {
                if matches!(c.state, ContainerState::Exited | ContainerState::Dead) {
                    out.push(Action::Remove {
                        service: name.clone(),
                        container: c.into(),
                        reason: berth_core::plan::Reason::TaskFinished,
                    });
                }
            }
        }
        out
    }

    /// Deployments recorded while the engine was away: resolve their images now.
    fn resolve_waiting(&mut self) {
        let waiting: Vec<(String, u64, berth_core::spec::ImageSource)> = self
            .services
            .values()
            .filter(|s| {
                s.current.status == Status::Pending
                    && s.current.image_id.is_none()
                    && !s.busy
                    && s.retry_at.is_none_or(|t| Instant::now() >= t)
            })
            .map(|s| {
                (
                    s.meta.service.clone(),
                    s.current.generation,
                    s.current.spec.image.clone(),
                )
            })
            .collect();
        for (service, generation, image) in waiting {
            if let Some(svc) = self.services.get_mut(&service) {
                svc.busy = true;
            }
            self.spawn(Job::ResolveRecord {
                service,
                generation,
                image,
            });
        }
    }

    /// The image of a waiting deployment resolved (or not).
    fn resolved_record(
        &mut self,
        service: &str,
        generation: u64,
        result: Result<String, RuntimeError>,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.busy = false;
        if svc.current.generation != generation || svc.current.status != Status::Pending {
            return;
        }
        match result {
            Err(e) if e.is_unreachable() => {
                svc.retry_at = Some(Instant::now() + Duration::from_secs(2));
            }
            Err(e) => self.fail_early(service, e.to_string()),
            Ok(id) => {
                let outputs_dir = self.outputs_dir(service);
                let Some(svc) = self.services.get_mut(service) else {
                    return;
                };
                let create = create_spec(
                    &svc.current.spec,
                    &id,
                    Some(outputs_dir.to_string_lossy().as_ref()),
                );
                let hash = spec_hash(&create);
                let already_runs = self
                    .observed
                    .iter()
                    .any(|c| c.service == service && c.spec_hash.as_deref() == Some(hash.as_str()));
                let current = Arc::make_mut(&mut svc.current);
                current.image_id = Some(id);
                current.spec_hash = hash;
                current.status_reason.clear();
                if already_runs {
                    current.applied = true;
                    current.status = Status::InProgress;
                    svc.watch = Some(Watch {
                        running_since: None,
                        needs_settle: false,
                        restarts_at_start: None,
                        health_deadline: Instant::now() + svc.current.spec.update.health_timeout,
                    });
                }
                svc.target = Arc::clone(&svc.current);
                let record = Arc::clone(&svc.current);
                let create = self.create_request(&record);
                if let Some(svc) = self.services.get_mut(service) {
                    svc.create = create;
                }
                if let Err(e) = self.env.store().save_record(&record) {
                    tracing::error!(service, error = %e, "cannot save record");
                }
                self.emit_status(&record);
            }
        }
    }

    fn reconcile(&mut self) {
        self.resolve_waiting();
        let mut actions = plan(
            &self.desired(),
            &Observed {
                containers: self.observed.clone(),
            },
        );
        let planned: BTreeSet<String> = actions.iter().map(|a| a.service().to_string()).collect();
        actions.extend(
            self.task_gc()
                .into_iter()
                .filter(|a| !planned.contains(a.service())),
        );
        let mut by_service: BTreeMap<String, Vec<Action>> = BTreeMap::new();
        for a in actions {
            by_service
                .entry(a.service().to_string())
                .or_default()
                .push(a);
        }
        let now = Instant::now();
        // A backoff that expired with nothing left to do is over.
        for (name, svc) in self.services.iter_mut() {
            if svc.retry_at.is_some_and(|t| now >= t) && !by_service.contains_key(name) {
                svc.retry_at = None;
            }
        }
        for (service, actions) in by_service {
            let (create, outputs_dir) = match self.services.get(&service) {
                Some(svc) => {
                    if svc.busy || svc.retry_at.is_some_and(|t| now < t) {
                        continue;
                    }
                    let outputs_dir = (svc.target.spec.kind == Kind::Task
                        && !svc.target.spec.outputs.is_empty())
                    .then(|| self.outputs_dir(&service));
                    (svc.create.clone(), outputs_dir)
                }
                None => (None, None),
            };
            let deploys = actions.iter().any(|a| matches!(a, Action::Deploy { .. }));
            // The engine resolves bind sources again at each start: a
            // stopped container is asked about as a new one is.
            let verdict = if deploys {
                create.as_ref().map(|c| self.policy_at_create(&c.spec))
            } else if actions.iter().any(|a| matches!(a, Action::Start { .. })) {
                self.services
                    .get(&service)
                    .map(|s| self.policy_at_create(&create_spec(&s.current.spec, "", None)))
            } else {
                None
            };
            if let Some(Err(reason)) = verdict {
                self.refuse_create(&service, reason);
                continue;
            }
            if let Some(svc) = self.services.get_mut(&service) {
                svc.busy = true;
            } else {
                // Containers of a service berthd has no record of: only removals.
                if self.orphans_busy.contains(&service) {
                    continue;
                }
                self.orphans_busy.insert(service.clone());
            }
            if deploys
                && self
                    .services
                    .get(&service)
                    .is_some_and(|s| s.current.status == Status::Pending)
            {
                self.set_status(&service, Status::InProgress, String::new(), None);
            }
            self.own_containers
                .retain(|_, at| now.duration_since(*at) < Duration::from_secs(30));
            for a in &actions {
                tracing::info!(service, action = a.verb(), reason = %a.reason(), "planned");
                match a {
                    Action::Deploy { replace, .. } => {
                        for c in replace {
                            self.own_containers.insert(c.id.clone(), now);
                        }
                    }
                    Action::Start { container, .. }
                    | Action::Stop { container, .. }
                    | Action::Rename { container, .. }
                    | Action::Remove { container, .. } => {
                        self.own_containers.insert(container.id.clone(), now);
                    }
                }
            }
            self.spawn(Job::Actions {
                service,
                actions,
                create,
                outputs_dir,
            });
        }
    }

    /// The node policy right before a create or a start: a host path under
    /// `allowed_host_paths` must still lead there (a symlink planted since
    /// the spec was accepted, e.g. by a container that mounts the allowed
    /// directory, is caught here). Resolved on the loop like the store's
    /// reads: a few `stat`s per path.
    fn policy_at_create(&self, spec: &berth_core::runtime::CreateSpec) -> Result<(), String> {
        let policy = Arc::clone(&self.cfg.node_policy.borrow());
        let violations = policy.check_create(spec, &crate::hostpath::FsResolver);
        if violations.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        Err(format!(
            "refused by the node policy before creating or starting the container: {}",
            list.join("; ")
        ))
    }

    /// A create the node policy refused: the deployment fails (the target
    /// goes back to what runs) or, for a container of an applied record, the
    /// service is failed and asked again after a backoff.
    fn refuse_create(&mut self, service: &str, reason: String) {
        tracing::warn!(service, %reason, "container create refused");
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.back_off();
        let deploying = !svc.current.status.is_terminal() && !svc.current.applied;
        if deploying {
            self.fail_early(service, reason);
            return;
        }
        self.emit(EventKind::ContainerAction {
            service: service.to_string(),
            action: "failed".into(),
            container: String::new(),
            reason: reason.clone(),
        });
        if !self
            .services
            .get(service)
            .is_some_and(|s| s.current.status.is_terminal())
        {
            self.set_status(service, Status::Failed, reason, None);
        }
    }

    fn handle_done(&mut self, done: Done) {
        // A config reading that finds nothing new changes no state: no
        // re-plan, no new snapshot (a periodic rescan reads every source).
        if !matches!(done, Done::ConfigRead { .. }) {
            self.dirty = true;
        }
        if done.is_container_job() {
            self.jobs_in_flight = self.jobs_in_flight.saturating_sub(1);
        }
        // What a job did to the engine is seen in a fresh list (reading
        // config files changes nothing there).
        if !matches!(done, Done::Listed(_) | Done::ConfigRead { .. }) {
            self.request_observe();
        }
        match done {
            Done::Listed(result) => self.observed(result),
            Done::ImagesCollected {
                service,
                removed,
                errors,
            } => {
                for tag in removed {
                    self.emit(EventKind::ContainerAction {
                        service: service.clone(),
                        action: "removed image".into(),
                        container: tag,
                        reason: "built by berth, no record in the history uses it".into(),
                    });
                }
                for e in errors {
                    tracing::warn!(service, error = %e, "image garbage collection");
                }
            }
            Done::Resolved {
                apply_id,
                results,
                configs,
            } => self.finish_apply(apply_id, results, configs),
            Done::ConfigRead {
                service,
                generation,
                reads,
                forced,
            } => self.config_read(&service, generation, reads, forced),
            Done::Reloaded {
                service,
                generation,
                outputs,
                error,
                unreachable,
            } => self.reloaded(&service, generation, outputs, error, unreachable),
            Done::ResolvedRecord {
                service,
                generation,
                result,
            } => self.resolved_record(&service, generation, result),
            Done::Actions {
                service,
                steps,
                deployed,
                started,
                error,
            } => {
                self.orphans_busy.remove(&service);
                for s in &steps {
                    self.emit(EventKind::ContainerAction {
                        service: service.clone(),
                        action: s.verb.to_string(),
                        container: s.container.clone(),
                        reason: s.reason.clone(),
                    });
                }
                let Some(svc) = self.services.get_mut(&service) else {
                    if let Some(e) = error {
                        tracing::warn!(service, error = %e, "removing an orphaned container failed");
                    }
                    return;
                };
                svc.busy = false;
                match error {
                    None => {
                        svc.reset_backoff();
                        svc.looked_again = false;
                        if (deployed || started)
                            && let Some(w) = svc.watch.as_mut()
                        {
                            w.needs_settle = true;
                            w.running_since = None;
                            w.restarts_at_start = None;
                        }
                        if deployed
                            && !svc.current.applied
                            && svc.current.generation == svc.target.generation
                        {
                            svc.edit_current(|d| d.applied = true);
                            let record = Arc::clone(&svc.current);
                            if let Err(e) = self.env.store().save_record(&record) {
                                tracing::error!(service, error = %e, "cannot save record");
                            }
                        }
                    }
                    Some(e) => {
                        let backoff = svc.back_off();
                        tracing::warn!(service, error = %e, retry_in = ?backoff, "container action failed");
                        let unreachable = e.is_unreachable();
                        let deploying = !svc.current.status.is_terminal() && !svc.current.applied;
                        // The engine is not as the last list showed it: a name is taken
                        // by a container the list did not have, or a listed one is gone.
                        // Most likely this node's own doing: a berthd killed mid-call, whose
                        // create or remove the engine finished after the new berthd listed.
                        // Look again (the plan then replaces or adopts what is there); only
                        // what persists after that is a failure.
                        let conflict = matches!(e, RuntimeError::NameConflict { .. });
                        let stale_view = (conflict
                            || matches!(e, RuntimeError::NoSuchContainer { .. }))
                            && !svc.looked_again;
                        svc.looked_again = stale_view;
                        if unreachable || stale_view {
                            self.observe_at = Some(Instant::now());
                        } else if deploying {
                            // The deployment failed before its container replaced the old one:
                            // the target goes back to what runs.
                            let reason = if conflict {
                                format!(
                                    "{e}, and it is not one of this node's containers: remove or rename it"
                                )
                            } else {
                                e.to_string()
                            };
                            self.fail_early(&service, reason);
                        } else {
                            self.emit(EventKind::ContainerAction {
                                service: service.clone(),
                                action: "failed".into(),
                                container: String::new(),
                                reason: e.to_string(),
                            });
                            if !self
                                .services
                                .get(&service)
                                .is_some_and(|s| s.current.status.is_terminal())
                            {
                                self.set_status(&service, Status::Failed, e.to_string(), None);
                            }
                        }
                    }
                }
            }
            Done::Restart {
                service,
                name: _,
                reconfigure: Some(generation),
                error,
            } => self.reconfigure_restarted(&service, generation, error),
            Done::Restart {
                service,
                name: container,
                reconfigure: None,
                error,
            } => {
                if let Some(svc) = self.services.get_mut(&service) {
                    svc.busy = false;
                }
                match error {
                    None => self.emit(EventKind::ContainerAction {
                        service,
                        action: "restarted".into(),
                        container,
                        reason: "operator asked (berthctl restart)".into(),
                    }),
                    Some(e) => self.emit(EventKind::ContainerAction {
                        service,
                        action: "restart failed".into(),
                        container,
                        reason: e.to_string(),
                    }),
                }
            }
            Done::Collected { service, outputs } => {
                if let Some(svc) = self.services.get_mut(&service) {
                    svc.busy = false;
                }
                let code = outputs.deploy_status_code;
                let (status, reason) = match code {
                    Some(0) => (Status::Complete, String::new()),
                    Some(c) => (Status::Failed, format!("task exited with code {c}")),
                    None => (Status::Failed, "task ended without an exit code".into()),
                };
                self.set_status(&service, status, reason, Some(outputs));
            }
        }
    }

    /// A deployment failed before reaching the engine: record it, and point
    /// the target back at the previous record so the old container stays.
    fn fail_early(&mut self, service: &str, reason: String) {
        let store = self.env.store();
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let current_gen = svc.current.generation;
        if svc.target.generation == current_gen {
            // Fall back to the newest applied record before it.
            let previous = store.history(service, usize::MAX).ok().and_then(|h| {
                h.into_iter()
                    .find(|d| d.generation < current_gen && d.applied)
            });
            match previous {
                Some(prev) => {
                    svc.meta.target_generation = prev.generation;
                    svc.target = Arc::new(prev);
                }
                None => {
                    svc.meta.target_generation = current_gen;
                }
            }
            let meta = svc.meta.clone();
            if let Err(e) = store.save_meta(&meta) {
                tracing::error!(service, error = %e, "cannot save service meta");
            }
        }
        let target = self.services.get(service).map(|s| s.target.clone());
        if let Some(t) = target {
            let create = if t.generation == current_gen {
                None
            } else {
                self.create_request(&t)
            };
            if let Some(svc) = self.services.get_mut(service) {
                svc.create = create;
                svc.reset_backoff();
            }
        }
        self.set_status(service, Status::Failed, reason, None);
    }

    // ---- plumbing -------------------------------------------------------

    fn spawn(&mut self, job: Job) {
        let env = self.env.clone();
        let tx = self.done_tx.clone();
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
            let done = exec::run(env.runtime(), job).await;
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

    fn publish_snapshot(&mut self) {
        let mut summary = Summary::default();
        let mut services = BTreeMap::new();
        let mut currents = BTreeMap::new();
        for (name, svc) in &self.services {
            if svc.is_deleted() {
                continue;
            }
            let container = self.container_of(name);
            let mut st = service_status(svc, container);
            st.converged = converged(svc, container) && svc.current.status.is_terminal();
            summary.services += 1;
            if svc.meta.held {
                summary.held += 1;
            }
            if !svc.current.status.is_terminal() {
                summary.in_progress += 1;
            } else if svc.current.status == Status::Failed || svc.crash_loop {
                summary.failing += 1;
            } else if st.converged {
                summary.converged += 1;
            }
            services.insert(name.clone(), st);
            currents.insert(name.clone(), crate::state::shown_record(&svc.current));
        }
        for (name, (path, error)) in &self.unreadable {
            summary.services += 1;
            summary.unreadable += 1;
            services.insert(
                name.clone(),
                berth_core::dto::ServiceStatus {
                    name: name.clone(),
                    unreadable: Some(format!("{path}: {error}")),
                    container: self.container_of(name).map(crate::state::container_status),
                    ..Default::default()
                },
            );
        }
        let node = NodeInfo {
            node_id: self.cfg.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            engine: EngineStatus {
                reachable: self.engine_reachable == Some(true),
                detail: if self.engine_detail.is_empty() {
                    self.cfg.engine_endpoint.clone()
                } else {
                    self.engine_detail.clone()
                },
            },
            summary,
            event_seq: self.seq,
            warnings: Vec::new(),
            // Filled in by the API from the upstream outbox.
            outbox: Default::default(),
        };
        let snap = Snapshot {
            node,
            services,
            currents,
        };
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Copies what `from`'s container was given: its config reading and identity.
fn inherit_config(record: &mut Deployment, from: &Deployment) {
    record.config = from.config.clone();
    record.config_hash = from.config_hash.clone();
    record.config_identity = from.config_identity.clone();
}

async fn next_watch_event(
    watcher: &mut Option<Box<dyn berth_watch::Watcher>>,
) -> Option<berth_watch::WatchEvent> {
    match watcher {
        Some(w) => w.events().recv().await,
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

enum Verdict {
    Wait,
    Done(Status, String),
    /// A task ended: collect its outputs.
    Collect(ObservedContainer),
}

/// Whether the current record of `svc` is done, from its container.
fn judge_one(svc: &mut Svc, container: Option<&ObservedContainer>, now: Instant) -> Verdict {
    let record = &svc.current;
    if record.status == Status::Pending {
        return Verdict::Wait;
    }
    let spec = &record.spec;
    let hash_matches = |c: &ObservedContainer| made_from(record, c);
    if record.action == DeployAction::Delete {
        return if container.is_none() {
            Verdict::Done(Status::Complete, String::new())
        } else {
            Verdict::Wait
        };
    }
    let Some(c) = container.filter(|c| hash_matches(c)) else {
        return Verdict::Wait;
    };
    let Some(watch) = svc.watch.as_mut() else {
        return Verdict::Wait;
    };
    if spec.state == DesiredState::Stopped {
        return if c.state.is_up() {
            Verdict::Wait
        } else {
            Verdict::Done(Status::Complete, String::new())
        };
    }
    if spec.kind == Kind::Task {
        return match c.state {
            ContainerState::Exited | ContainerState::Dead => Verdict::Collect(c.clone()),
            _ => Verdict::Wait,
        };
    }
    let restarts_at_start = *watch.restarts_at_start.get_or_insert(c.restart_count);
    if c.restart_count > restarts_at_start {
        return Verdict::Done(
            Status::Failed,
            format!(
                "container restarted {} time(s) while settling (last exit code {})",
                c.restart_count - restarts_at_start,
                c.exit_code
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
        );
    }
    if !c.state.is_up() || c.state == ContainerState::Restarting {
        if !watch.needs_settle {
            return Verdict::Wait;
        }
        if c.state == ContainerState::Created {
            return Verdict::Wait;
        }
        return Verdict::Done(
            Status::Failed,
            format!(
                "container exited with code {} while settling",
                c.exit_code
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "unknown".into())
            ),
        );
    }
    let since = *watch.running_since.get_or_insert(now);
    let settled = !watch.needs_settle || now.duration_since(since) >= spec.update.settle;
    if spec.healthcheck.is_some() {
        match c.health {
            Some(Health::Healthy) if settled => Verdict::Done(Status::Complete, String::new()),
            _ if now >= watch.health_deadline => Verdict::Done(
                Status::Failed,
                format!(
                    "not healthy within update.health_timeout ({}); health is {}",
                    berth_core::units::format_duration(spec.update.health_timeout),
                    match c.health {
                        Some(Health::Unhealthy) => "unhealthy",
                        Some(Health::Starting) => "starting",
                        Some(Health::Healthy) => "healthy",
                        None => "unknown",
                    }
                ),
            ),
            _ => Verdict::Wait,
        }
    } else if settled {
        Verdict::Done(Status::Complete, String::new())
    } else {
        Verdict::Wait
    }
}
