//! The loop's per-service state, the read snapshot, and the event ring:
//! data and small helpers only, no I/O and no decisions (those are the
//! loop files' and core's).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use berth_core::dto::{
    ConfigSourceStatus, ContainerStatus, DeploymentSummary, EventsResponse, LastConfigChange,
    NodeInfo, ServiceStatus, VerbResponse,
};
use berth_core::event::Event;
pub(crate) use berth_core::judge::HealthGate;
use berth_core::reconfig::ConfigState;
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::runtime::{CreateRequest, ObservedContainer};
use berth_core::spec::{ImageSource, Kind};
use berth_core::store::ServiceMeta;
use tokio::time::Instant;

/// What the loop knows of one service.
pub(crate) struct Svc {
    pub meta: ServiceMeta,
    /// The newest record. Shared with `target` when they are the same
    /// record, and with the read snapshot; edited through [`Svc::edit_current`].
    pub current: Arc<Deployment>,
    /// The record whose spec the containers should have (see `ServiceMeta::target_generation`).
    pub target: Arc<Deployment>,
    /// The create call for `target`; `None` when its image was never resolved.
    pub create: Option<Box<CreateRequest>>,
    /// An executor job is running for this service.
    pub busy: bool,
    /// After a failed job: not before this instant.
    pub retry_at: Option<Instant>,
    pub failures: u32,
    /// The current record's image could not be pulled yet (its registry
    /// away or failing): the tries so far and when `pull_timeout` ends.
    /// Not kept across a berthd restart, which gives it a new timeout.
    pub pull_retry: Option<PullRetry>,
    /// The last job failed because the engine was not as the last list
    /// showed it (a name taken, a container gone); it is retried after
    /// another list, and fails if that happens again.
    pub looked_again: bool,
    /// Set while the current record waits to be judged.
    pub gate: Option<HealthGate>,
    /// Restart count last seen, to report crash loops.
    pub last_restarts: u64,
    pub crash_loop: bool,
    pub config: ConfigTrack,
    /// The hooks of the current deployment (`event_loop/hooks.rs`).
    pub hooks: crate::event_loop::hooks::HookRun,
}

/// A deployment retrying the pull of its image (see [`Svc::pull_retry`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullRetry {
    pub tries: u32,
    pub deadline: Instant,
}

impl PullRetry {
    /// The wait before the next try: 2 s, doubling, at most a minute.
    pub fn backoff(&self) -> std::time::Duration {
        std::time::Duration::from_secs(2u64 << self.tries.saturating_sub(1).min(5))
            .min(std::time::Duration::from_secs(60))
    }
}

/// The config-watch side of a service.
#[derive(Default)]
pub(crate) struct ConfigTrack {
    /// Its sources may have changed: read them when the service is idle.
    pub dirty: bool,
    /// An operator asked for a reconfigure whatever the content.
    pub forced: bool,
    /// A read is running.
    pub reading: bool,
    /// Resume an interrupted reconfigure (berthd restarted mid-way).
    pub resume: bool,
    pub last_change: Option<LastConfigChange>,
    /// `berthctl reconfigure` callers waiting for the record: (actor, reply).
    pub replies: Vec<(String, crate::Reply<VerbResponse>)>,
}

impl ConfigTrack {
    pub fn new(dirty: bool, last_change: Option<LastConfigChange>) -> Self {
        ConfigTrack {
            dirty,
            last_change,
            ..Default::default()
        }
    }
}

/// What `show` says about a RECONFIGURE record.
pub(crate) fn last_change_of(d: &Deployment) -> Option<LastConfigChange> {
    let change = d.config_change.clone()?;
    Some(LastConfigChange {
        deployment: d.id.clone(),
        status: d.status,
        status_reason: d.status_reason.clone(),
        at_ms: d.created_at_ms,
        change,
    })
}

/// The config the service's container was last given: the newest record's
/// reading when it has the same sources as the target, else the target's.
pub(crate) fn config_baseline(svc: &Svc) -> &[ConfigState] {
    if svc.current.spec.config == svc.target.spec.config {
        &svc.current.config
    } else {
        &svc.target.config
    }
}

/// The container was made from `record`'s spec (and, with `recreate` config
/// sources, from its config).
pub(crate) fn made_from(record: &Deployment, c: &ObservedContainer) -> bool {
    berth_core::plan::made_from(&record.spec_hash, record.config_identity.as_deref(), c)
}

impl Svc {
    /// One more failed job: no new one before the returned backoff has
    /// passed (2 s, doubling, at most 32 s).
    pub fn back_off(&mut self) -> std::time::Duration {
        self.failures += 1;
        let backoff = std::time::Duration::from_secs(1 << self.failures.min(5));
        self.retry_at = Some(Instant::now() + backoff);
        backoff
    }

    /// A job succeeded, or there is nothing left to retry: no backoff.
    pub fn reset_backoff(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    pub fn is_deleted(&self) -> bool {
        self.current.action == DeployAction::Delete && self.current.status == Status::Complete
    }

    /// Edits the newest record (copying it first if the snapshot still
    /// shows the old one). A target that is the same record gets the same
    /// edit and stays one shared copy.
    pub fn edit_current(&mut self, edit: impl FnOnce(&mut Deployment)) {
        edit(Arc::make_mut(&mut self.current));
        if self.target.generation == self.current.generation {
            self.target = Arc::clone(&self.current);
        }
    }

    pub fn container_name(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.meta.service)
    }
}

/// The read side: what `GET` routes show. Rebuilt after every change.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub node: NodeInfo,
    pub services: BTreeMap<String, ServiceStatus>,
    /// Current records, redacted (the loop's own copy when there is no
    /// secret to hide).
    pub currents: BTreeMap<String, Arc<Deployment>>,
}

/// The record the read side shows: the loop's own copy when it has no
/// secret to hide (no copy per snapshot), else a redacted one.
pub(crate) fn shown_record(d: &Arc<Deployment>) -> Arc<Deployment> {
    if d.needs_redaction() {
        Arc::new(d.redacted())
    } else {
        Arc::clone(d)
    }
}

pub(crate) fn image_display(image: &ImageSource) -> String {
    match image {
        ImageSource::Ref(r) => r.clone(),
        ImageSource::Build { build } => format!("build:{}", build.context),
        ImageSource::Load { load } => format!("load:{load}"),
    }
}

/// A container as `status` shows it (short id).
pub(crate) fn container_status(c: &ObservedContainer) -> ContainerStatus {
    ContainerStatus {
        id: c.id.chars().take(12).collect(),
        name: c.name.clone(),
        state: c.state,
        health: c.health,
        restart_count: c.restart_count,
        exit_code: c.exit_code,
        started_at: c.started_at.clone(),
        spec_hash: c.spec_hash.clone(),
    }
}

pub(crate) fn service_status(svc: &Svc, container: Option<&ObservedContainer>) -> ServiceStatus {
    let spec = &svc.target.spec;
    let container_status = container.map(container_status);
    ServiceStatus {
        name: svc.meta.service.clone(),
        owner: svc.meta.source.describe(),
        held: svc.meta.held,
        kind: spec.kind,
        desired_state: spec.state,
        image: match &spec.exec_in {
            Some(target) => format!("exec in {target}"),
            None => image_display(&spec.image),
        },
        current: Some(DeploymentSummary::from(&*svc.current)),
        container: container_status,
        converged: false,
        crash_loop: svc.crash_loop,
        unreadable: None,
        config: spec
            .config
            .iter()
            .map(|m| {
                let read = config_baseline(svc)
                    .iter()
                    .find(|s| s.source == m.source && s.target == m.target);
                ConfigSourceStatus {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    on_change: m.on_change.describe(),
                    hash: read.and_then(|r| r.hash.clone()),
                    error: read.and_then(|r| r.error.clone()),
                }
            })
            .collect(),
        last_config_change: svc.config.last_change.clone(),
    }
}

/// Whether the service is where it should be, given its container.
pub(crate) fn converged(svc: &Svc, container: Option<&ObservedContainer>) -> bool {
    use berth_core::spec::DesiredState;
    let spec = &svc.target.spec;
    match container {
        None => spec.kind == Kind::Task && svc.target.status.is_terminal(),
        Some(c) => {
            made_from(&svc.target, c)
                && match (spec.kind, spec.state) {
                    (_, DesiredState::Stopped) => !c.state.is_up(),
                    (Kind::Task, DesiredState::Running) => true,
                    (Kind::Service, DesiredState::Running) => c.state.is_up(),
                }
        }
    }
}

/// The last N events, for `since` queries.
pub(crate) struct EventRing {
    pub keep: usize,
    pub events: VecDeque<Event>,
    /// The sequence number of the newest event ever (also when the ring is empty).
    pub last_seq: u64,
}

impl EventRing {
    pub fn new(keep: usize) -> Self {
        EventRing {
            keep: keep.max(1),
            events: VecDeque::new(),
            last_seq: 0,
        }
    }

    pub fn push(&mut self, e: Event) {
        self.last_seq = self.last_seq.max(e.seq);
        self.events.push_back(e);
        while self.events.len() > self.keep {
            self.events.pop_front();
        }
    }

    pub fn since(&self, since: u64) -> EventsResponse {
        let oldest = self.events.front().map(|e| e.seq);
        // Events after `since` were dropped if the oldest kept one is beyond since+1.
        let reset = match oldest {
            Some(oldest) => since + 1 < oldest,
            None => since < self.last_seq,
        };
        EventsResponse {
            reset,
            events: self
                .events
                .iter()
                .filter(|e| e.seq > since)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::event::EventKind;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            at_ms: 0,
            kind: EventKind::Daemon {
                message: format!("e{seq}"),
            },
        }
    }

    #[test]
    fn ring_reports_reset_when_since_is_too_old() {
        let mut r = EventRing::new(3);
        for s in 1..=5 {
            r.push(ev(s));
        }
        // Kept: 3, 4, 5.
        assert!(!r.since(2).reset);
        assert_eq!(r.since(2).events.len(), 3);
        assert!(r.since(1).reset);
        assert!(!r.since(5).reset);
        assert!(r.since(5).events.is_empty());
    }
}
