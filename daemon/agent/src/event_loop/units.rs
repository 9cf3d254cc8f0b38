//! Host units (`after_units`, `requires_units`): following their states
//! through the host seam ([`berth_core::host::HostUnits`]), and what they
//! mean for each service.
//!
//! One watch covers the union of every live service's units. A task of its
//! own owns the stream and forwards each state to the loop over a channel,
//! so the loop never waits on D-Bus. When the set of units changes, the
//! task drops its stream and watches the new set (a watch starts with the
//! current states, and the seam subscribes before it reads, so nothing is
//! missed); states of units still wanted are kept meanwhile. A stream that
//! ends with an error is watched again after a backoff (0.5 s doubling to
//! 30 s while systemd cannot be reached).
//!
//! Level-triggered like the rest of the loop: a state only marks the loop
//! dirty. `desired()` asks [`Agent::units_blocked`] for each service, and
//! `plan()` then neither creates nor starts a blocked service, and stops a
//! running one whose required unit is down. [`Agent::judge_units`] keeps
//! the current record's status reason saying what the service waits for,
//! and fails a deployment whose unit does not exist (or whose units cannot
//! be learned at all) once `units_timeout` has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_core::event::EventKind;
use berth_core::host::{HostError, HostUnits, TransientResult, TransientSpec, UnitState};
use berth_core::plan::Blocked;
use berth_core::record::Status;
use berth_core::runtime::BoxStream;
use berth_core::spec::{DesiredState, Kind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::Agent;
use crate::Env;
use crate::state::{Svc, made_from};

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After an error that is not about reaching systemd (a refused call).
const OTHER_ERROR_RETRY: Duration = Duration::from_secs(5);

/// Status reasons berthd writes for host units start with one of these, so
/// they are cleared again once the units are active (also after a restart).
const WAITING: &str = "waiting for host unit";
const STOPPED: &str = "stopped: required host unit";
const NOT_STARTED: &str = "not started: waiting for host unit";

fn is_units_note(reason: &str) -> bool {
    [WAITING, STOPPED, NOT_STARTED]
        .iter()
        .any(|p| reason.starts_with(p))
}

/// What the follower task tells the loop.
pub(crate) enum UnitMsg {
    State(UnitState),
    /// The watch ended with this error; it is watched again after a backoff.
    Lost(HostError),
}

/// The loop's view of the host units.
pub(crate) struct Units {
    states: BTreeMap<String, UnitState>,
    /// The last watch error, until a state arrives again.
    error: Option<HostError>,
    /// The set the follower watches; `None` until a service has units.
    wanted: Option<watch::Sender<BTreeSet<String>>>,
    tx: mpsc::UnboundedSender<UnitMsg>,
    pub(crate) rx: mpsc::UnboundedReceiver<UnitMsg>,
    /// Deployments waiting for units: service → (generation, since).
    waiting: BTreeMap<String, (u64, Instant)>,
}

impl Units {
    pub(crate) fn new() -> Units {
        let (tx, rx) = mpsc::unbounded_channel();
        Units {
            states: BTreeMap::new(),
            error: None,
            wanted: None,
            tx,
            rx,
            waiting: BTreeMap::new(),
        }
    }
}

/// A unit's state in a word or two: `active`, `inactive`, `failed
/// (exit-code)`, `not-found`, `bad-setting`, ...
fn describe(s: &UnitState) -> String {
    if s.is_not_found() || s.is_load_error() {
        return s.load_state.clone();
    }
    match (&s.result, s.is_failed()) {
        (Some(r), true) if r != "success" => format!("{} ({r})", s.active_state),
        _ => s.active_state.clone(),
    }
}

impl<E: Env> Agent<E> {
    /// Tells the follower which units to watch (starting it the first time
    /// a service has units). Cheap when nothing changed.
    pub(super) fn refresh_units(&mut self) {
        let want: BTreeSet<String> = self
            .services
            .values()
            .filter(|s| !s.is_deleted())
            .flat_map(|s| s.target.spec.host_units())
            .collect();
        match &self.units.wanted {
            Some(tx) => {
                if *tx.borrow() != want {
                    self.units.states.retain(|k, _| want.contains(k));
                    tx.send_replace(want);
                }
            }
            None if want.is_empty() => {}
            None => {
                let (tx, rx) = watch::channel(want);
                tokio::spawn(follow(self.env.clone(), rx, self.units.tx.clone()));
                self.units.wanted = Some(tx);
            }
        }
    }

    pub(super) fn on_unit_msg(&mut self, msg: UnitMsg) {
        match msg {
            UnitMsg::State(s) => {
                self.units.error = None;
                let prev = self.units.states.insert(s.name.clone(), s.clone());
                let changed = prev.as_ref().is_none_or(|p| {
                    p.load_state != s.load_state
                        || p.active_state != s.active_state
                        || p.result != s.result
                });
                if !changed {
                    return;
                }
                self.dirty = true;
                tracing::debug!(unit = s.name, state = describe(&s), "host unit");
                // The first report of an active unit is no news.
                if prev.is_none() && s.is_active() {
                    return;
                }
                let listed: Vec<(String, bool)> = self
                    .services
                    .iter()
                    .filter(|(_, svc)| !svc.is_deleted())
                    .filter_map(|(name, svc)| {
                        let spec = &svc.target.spec;
                        if spec.requires_units.contains(&s.name) {
                            Some((name.clone(), true))
                        } else if spec.after_units.contains(&s.name) {
                            Some((name.clone(), false))
                        } else {
                            None
                        }
                    })
                    .collect();
                for (service, required) in listed {
                    let effect = match (s.is_active(), required) {
                        (true, _) => "the service may start".to_string(),
                        (false, _) if s.is_not_found() || s.is_load_error() => format!(
                            "systemd cannot load it; a deployment waiting for it fails after units_timeout ({})",
                            berth_core::units::format_duration(self.cfg.units_timeout)
                        ),
                        (false, true) => {
                            "its container is stopped until the unit is active again (requires_units)"
                                .to_string()
                        }
                        (false, false) => {
                            "its container is not started until the unit is active (after_units)"
                                .to_string()
                        }
                    };
                    self.emit(EventKind::UnitState {
                        service,
                        unit: s.name.clone(),
                        state: describe(&s),
                        effect,
                    });
                }
            }
            UnitMsg::Lost(e) => {
                tracing::warn!(error = %e, "following host units failed; watching again");
                let new = self.units.error.as_ref() != Some(&e);
                self.units.error = Some(e.clone());
                self.dirty = true;
                if new {
                    self.emit(EventKind::Daemon {
                        message: format!("cannot follow host units: {e}; berthd keeps retrying"),
                    });
                }
            }
        }
    }

    /// The units of `svc` that are not active, and whether a required one
    /// is known to be down; `None` when it may start.
    pub(super) fn units_blocked(&self, svc: &Svc) -> Option<Blocked> {
        let spec = &svc.target.spec;
        if spec.after_units.is_empty() && spec.requires_units.is_empty() {
            return None;
        }
        let mut b = Blocked::default();
        for u in spec.host_units() {
            match self.units.states.get(&u) {
                Some(s) if s.is_active() => {}
                Some(_) => {
                    b.stop |= spec.requires_units.contains(&u);
                    b.units.push(u);
                }
                None => b.units.push(u),
            }
        }
        (!b.units.is_empty()).then_some(b)
    }

    /// Each blocked unit with its state, for status reasons.
    fn units_list(&self, b: &Blocked) -> String {
        let mut parts: Vec<String> = b
            .units
            .iter()
            .map(|u| match self.units.states.get(u) {
                Some(s) => format!("{u} ({})", describe(s)),
                None => format!("{u} (state not known yet)"),
            })
            .collect();
        if let Some(e) = &self.units.error {
            parts.push(format!("[{e}]"));
        }
        parts.join(", ")
    }

    /// Why a deployment waiting for `b` gives up, once `units_timeout` has
    /// passed: a unit systemd has no (usable) unit file for, or units whose
    /// state cannot be learned because systemd cannot be reached. Units that
    /// exist and are only inactive are waited for without limit.
    fn units_give_up(&self, b: &Blocked) -> Option<String> {
        let waited = berth_core::units::format_duration(self.cfg.units_timeout);
        let missing: Vec<String> = b
            .units
            .iter()
            .filter_map(|u| {
                let s = self.units.states.get(u)?;
                (s.is_not_found() || s.is_load_error()).then(|| format!("{u} ({})", s.load_state))
            })
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "host unit {} does not exist or cannot be loaded (waited {waited}); \
                 berth waits for host units but never creates or starts them: fix the name \
                 in after_units/requires_units, or install the unit and run `systemctl daemon-reload`",
                missing.join(", ")
            ));
        }
        let unknown: Vec<&str> = b
            .units
            .iter()
            .filter(|u| !self.units.states.contains_key(*u))
            .map(String::as_str)
            .collect();
        match &self.units.error {
            Some(e) if !unknown.is_empty() => Some(format!(
                "cannot learn the state of host unit {} (waited {waited}): {e}",
                unknown.join(", ")
            )),
            _ => None,
        }
    }

    /// Keeps the status reason of services with host units saying what they
    /// wait for, and fails deployments whose units do not exist.
    pub(super) fn judge_units(&mut self) {
        let now = Instant::now();
        let timeout = self.cfg.units_timeout;
        let names: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| {
                let spec = &s.target.spec;
                let concerned = !spec.after_units.is_empty()
                    || !spec.requires_units.is_empty()
                    || is_units_note(&s.current.status_reason);
                concerned && !s.is_deleted() && !s.meta.held && !s.busy
            })
            .map(|(n, _)| n.clone())
            .collect();
        self.units
            .waiting
            .retain(|n, _| names.binary_search(n).is_ok());
        for name in names {
            let Some(svc) = self.services.get(&name) else {
                continue;
            };
            let cur = &svc.current;
            let same = cur.generation == svc.target.generation;
            let runs = svc.target.spec.state == DesiredState::Running;
            let container_up = self
                .container_of(&name)
                .is_some_and(|c| made_from(&svc.target, c) && c.state.is_up());
            let (status, generation, applied, resolved) = (
                cur.status,
                cur.generation,
                cur.applied,
                cur.image_id.is_some(),
            );
            let noted = is_units_note(&cur.status_reason);
            let kind = svc.target.spec.kind;
            let health = cur.spec.update.health_timeout;
            let Some(b) = self.units_blocked(svc).filter(|_| same && runs) else {
                self.units.waiting.remove(&name);
                if noted && matches!(status, Status::InProgress | Status::Complete) {
                    self.set_status(&name, status, String::new(), None);
                }
                continue;
            };
            let waiting = !container_up
                && (status == Status::InProgress || (status == Status::Pending && resolved));
            if waiting {
                let since = match self.units.waiting.get(&name) {
                    Some((g, t)) if *g == generation => *t,
                    _ => {
                        self.units.waiting.insert(name.clone(), (generation, now));
                        now
                    }
                };
                if now.duration_since(since) >= timeout
                    && let Some(reason) = self.units_give_up(&b)
                {
                    self.units.waiting.remove(&name);
                    if applied {
                        self.set_status(&name, Status::Failed, reason, None);
                    } else {
                        // Nothing was created: the previous container (if
                        // any) stays what the service runs.
                        self.fail_early(&name, reason);
                    }
                    continue;
                }
                let note = format!(
                    "{WAITING}s to be active: {}; berth waits, it never starts them",
                    self.units_list(&b)
                );
                if let Some(w) = self.services.get_mut(&name).and_then(|s| s.gate.as_mut()) {
                    // Judged afresh once it starts: a container stopped for a
                    // required unit did not fail its settle, and the health
                    // gate counts from the start, not from the wait.
                    w.restart(now.into_std(), health);
                }
                self.set_status(&name, Status::InProgress, note, None);
            } else if status == Status::Complete
                && kind == Kind::Service
                && (b.stop || !container_up)
            {
                let note = if b.stop {
                    format!(
                        "{STOPPED} not active: {}; the container starts again once it is",
                        self.units_list(&b)
                    )
                } else {
                    format!("{NOT_STARTED}s to be active: {}", self.units_list(&b))
                };
                self.set_status(&name, Status::Complete, note, None);
            }
        }
    }
}

/// The follower: watches the wanted units, forwards states, re-watches.
async fn follow<E: Env>(
    env: Arc<E>,
    mut wanted: watch::Receiver<BTreeSet<String>>,
    tx: mpsc::UnboundedSender<UnitMsg>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let names: Vec<String> = wanted.borrow_and_update().iter().cloned().collect();
        if names.is_empty() {
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut stream = env.host().watch_units(names);
        let retry_in = loop {
            tokio::select! {
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break None;
                }
                item = stream.next() => match item {
                    Some(Ok(s)) => {
                        backoff = MIN_BACKOFF;
                        if tx.send(UnitMsg::State(s)).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let wait = if e.is_unreachable() {
                            let w = backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            w
                        } else {
                            OTHER_ERROR_RETRY
                        };
                        if tx.send(UnitMsg::Lost(e)).is_err() {
                            return;
                        }
                        break Some(wait);
                    }
                    None => break Some(backoff),
                }
            }
        };
        drop(stream);
        if let Some(wait) = retry_in {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = wanted.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A host without systemd: every call fails as unreachable, saying so. The
/// host of [`crate::Seams`] (tests and tools that need no host units).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl NoHost {
    fn error() -> HostError {
        HostError::BusUnavailable {
            bus: "none".into(),
            address: "-".into(),
            reason: "this berthd runs without a connection to systemd".into(),
            hint: "run it with a host seam (berth_agent::HostSeams) to use after_units and requires_units".into(),
        }
    }
}

impl HostUnits for NoHost {
    fn watch_units(&self, _names: Vec<String>) -> BoxStream<Result<UnitState, HostError>> {
        Box::pin(futures_util::stream::iter([Err(NoHost::error())]))
    }

    async fn unit_state(&self, _name: &str) -> Result<UnitState, HostError> {
        Err(NoHost::error())
    }

    async fn run_transient(&self, _spec: TransientSpec) -> Result<(), HostError> {
        Err(NoHost::error())
    }

    async fn transient_result(
        &self,
        _unit_name: &str,
        _output_path: &str,
    ) -> Result<Option<TransientResult>, HostError> {
        Err(NoHost::error())
    }

    async fn cleanup_transient(
        &self,
        _unit_name: &str,
        _output_path: &str,
    ) -> Result<(), HostError> {
        Err(NoHost::error())
    }
}
