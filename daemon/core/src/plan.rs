//! `plan()`: from what should run and what does run, the container actions
//! that converge them. Pure and deterministic: same inputs, same actions.
//!
//! Level-triggered: the planner never sees what woke the loop up, only the
//! full desired and observed state, so re-planning is always safe.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::runtime::{ContainerState, ObservedContainer};
use crate::spec::{DesiredState, Kind, RestartPolicy};

/// One service as berthd wants it, derived from its current record.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    pub name: String,
    /// `<prefix><name>`.
    pub container_name: String,
    pub spec_hash: String,
    pub state: DesiredState,
    pub kind: Kind,
    pub restart: RestartPolicy,
    /// Held services are left alone entirely.
    pub held: bool,
    /// A task whose current generation already ran: never run it again, even
    /// when its container has been pruned.
    pub task_done: bool,
    /// The `io.berth.config-hash` label the container must carry (services
    /// with `on_change: recreate` config sources); `None`: not compared.
    pub config_identity: Option<String>,
    /// Host units (`after_units` / `requires_units`) that are not active:
    /// while set, the container is neither created nor started.
    pub blocked: Option<Blocked>,
}

/// Why a service may not start now: host units that are not active.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blocked {
    /// The units that are not active (or not known yet), in spec order.
    pub units: Vec<String>,
    /// A `requires_units` unit is known to be inactive or failed: a running
    /// container is stopped. (A unit whose state is not known yet, say
    /// while berthd connects to systemd, blocks starts but stops nothing,
    /// so a restarted berthd never stops what it re-adopts.)
    pub stop: bool,
}

/// Whether `c` was made from the spec with `spec_hash` and, when the spec
/// has `recreate` config sources, from the config with `config_identity`
/// (`None`: the config label is not compared). The one identity check the
/// planner and the judging of deployments share.
pub fn made_from(spec_hash: &str, config_identity: Option<&str>, c: &ObservedContainer) -> bool {
    c.spec_hash.as_deref() == Some(spec_hash)
        && config_identity.is_none_or(|id| c.config_hash.as_deref() == Some(id))
}

impl DesiredService {
    /// The container was made from this spec (and, for `recreate` config,
    /// from this config).
    pub fn matches(&self, c: &ObservedContainer) -> bool {
        made_from(&self.spec_hash, self.config_identity.as_deref(), c)
    }

    /// Why `c` is not the container this service wants.
    fn mismatch(&self, c: &ObservedContainer) -> Reason {
        if c.spec_hash.as_deref() == Some(self.spec_hash.as_str()) {
            Reason::ConfigChanged {
                from: c.config_hash.clone(),
                to: self.config_identity.clone().unwrap_or_default(),
            }
        } else {
            Reason::SpecChanged {
                from: c.spec_hash.clone(),
                to: self.spec_hash.clone(),
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub services: BTreeMap<String, DesiredService>,
    /// Services whose record could not be read: their containers are not touched.
    pub untouchable: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
}

/// Why an action is planned; `berthctl diff` and events print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// No container for the service.
    Missing,
    /// The running container was made from another spec.
    SpecChanged { from: Option<String>, to: String },
    /// A `recreate` config source changed: the container was made from other content.
    ConfigChanged { from: Option<String>, to: String },
    /// The container is not running and should be.
    NotRunning { state: ContainerState },
    /// The service is set to `state: stopped`.
    DesiredStopped,
    /// No service by that name is desired any more.
    NotDesired,
    /// Another container of the service already has the desired spec.
    Duplicate,
    /// The container has the desired spec but not the canonical name
    /// (left by an interrupted swap).
    Misnamed,
    /// A finished task's container, kept a while for `logs`; its output is
    /// in the record.
    TaskFinished,
    /// A `requires_units` host unit is not active.
    UnitsInactive { units: Vec<String> },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "no container"),
            Reason::SpecChanged { from, to } => match from {
                Some(from) => write!(f, "spec changed ({} -> {})", short(from), short(to)),
                None => write!(f, "container has no spec hash (now {})", short(to)),
            },
            Reason::ConfigChanged { from, to } => match from {
                Some(from) => write!(f, "config changed ({} -> {})", short(from), short(to)),
                None => write!(f, "config changed (now {})", short(to)),
            },
            Reason::NotRunning { state } => write!(f, "container is {state:?}, should run"),
            Reason::DesiredStopped => write!(f, "service is set to state: stopped"),
            Reason::NotDesired => write!(f, "service is not desired any more"),
            Reason::Duplicate => write!(f, "duplicate of the current container"),
            Reason::Misnamed => write!(f, "left by an interrupted swap"),
            Reason::TaskFinished => write!(f, "task finished; its output is kept in the record"),
            Reason::UnitsInactive { units } => write!(
                f,
                "required host unit {} not active (requires_units); started again once active",
                units.join(", ")
            ),
        }
    }
}

fn short(hash: &str) -> &str {
    let h = hash.strip_prefix("v1:").unwrap_or(hash);
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    &h[..h.len().min(12)]
}

/// A container to act on: id and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
}

impl From<&ObservedContainer> for ContainerRef {
    fn from(c: &ObservedContainer) -> Self {
        ContainerRef {
            id: c.id.clone(),
            name: c.name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create a container from the current record, and swap it in for
    /// `replace` (create first; the old ones go only once the new one exists).
    Deploy {
        service: String,
        replace: Vec<ContainerRef>,
        start: bool,
        reason: Reason,
    },
    Start {
        service: String,
        container: ContainerRef,
        reason: Reason,
    },
    Stop {
        service: String,
        container: ContainerRef,
        reason: Reason,
    },
    Rename {
        service: String,
        container: ContainerRef,
        to: String,
        reason: Reason,
    },
    Remove {
        service: String,
        container: ContainerRef,
        reason: Reason,
    },
}

impl Action {
    pub fn service(&self) -> &str {
        match self {
            Action::Deploy { service, .. }
            | Action::Start { service, .. }
            | Action::Stop { service, .. }
            | Action::Rename { service, .. }
            | Action::Remove { service, .. } => service,
        }
    }
    pub fn reason(&self) -> &Reason {
        match self {
            Action::Deploy { reason, .. }
            | Action::Start { reason, .. }
            | Action::Stop { reason, .. }
            | Action::Rename { reason, .. }
            | Action::Remove { reason, .. } => reason,
        }
    }
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Deploy { replace, .. } if replace.is_empty() => "create",
            Action::Deploy { .. } => "replace",
            Action::Start { .. } => "start",
            Action::Stop { .. } => "stop",
            Action::Rename { .. } => "rename",
            Action::Remove { .. } => "remove",
        }
    }
}

/// A service as task garbage collection sees it: its newest record and
/// whether the operator holds it.
#[derive(Debug, Clone, Copy)]
pub struct GcCandidate<'a> {
    pub service: &'a str,
    /// The kind of the spec its containers have.
    pub kind: Kind,
    pub current: &'a crate::record::Deployment,
    pub held: bool,
}

/// Task GC: the exited containers of tasks whose newest record ended at
/// least `after_ms` ago (and is not a delete, and the service is not held)
/// are removed; the output stays in the record. `now_ms` is Unix ms.
pub fn task_gc<'a>(
    services: impl IntoIterator<Item = GcCandidate<'a>>,
    observed: &[ObservedContainer],
    now_ms: u64,
    after_ms: u64,
) -> Vec<Action> {
    let mut out = Vec::new();
    for s in services {
        let done = s.kind == Kind::Task
            && s.current.status.is_terminal()
            && s.current.action != crate::record::DeployAction::Delete
            && !s.held
            && now_ms.saturating_sub(s.current.updated_at_ms) >= after_ms;
        if !done {
            continue;
        }
        for c in observed.iter().filter(|c| c.service == s.service) {
            if matches!(c.state, ContainerState::Exited | ContainerState::Dead) {
                out.push(Action::Remove {
                    service: s.service.to_string(),
                    container: c.into(),
                    reason: Reason::TaskFinished,
                });
            }
        }
    }
    out
}

/// The actions that converge `observed` to `desired`, grouped per service in
/// the order they must run (a service's actions run one after another; different
/// services may run in parallel).
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Action> {
    let mut by_service: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in &observed.containers {
        by_service.entry(c.service.as_str()).or_default().push(c);
    }
    for list in by_service.values_mut() {
        list.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    }

    let mut actions = Vec::new();
    let names: BTreeSet<&str> = desired
        .services
        .keys()
        .map(String::as_str)
        .chain(by_service.keys().copied())
        .collect();
    for name in names {
        if desired.untouchable.contains(name) {
            continue;
        }
        let containers = by_service.get(name).map(Vec::as_slice).unwrap_or(&[]);
        match desired.services.get(name) {
            Some(svc) if svc.held => {}
            Some(svc) => plan_service(svc, containers, &mut actions),
            None => {
                for c in containers {
                    actions.push(Action::Remove {
                        service: name.to_string(),
                        container: (*c).into(),
                        reason: Reason::NotDesired,
                    });
                }
            }
        }
    }
    actions
}

fn plan_service(svc: &DesiredService, containers: &[&ObservedContainer], out: &mut Vec<Action>) {
    let service = || svc.name.clone();
    let matching: Vec<&ObservedContainer> = containers
        .iter()
        .copied()
        .filter(|c| svc.matches(c))
        .collect();
    // Keep one matching container: the canonically named one, else a running
    // one, else the first by name.
    let keeper = matching
        .iter()
        .copied()
        .find(|c| c.name == svc.container_name)
        .or_else(|| matching.iter().copied().find(|c| c.state.is_up()))
        .or_else(|| matching.first().copied());

    // Host units not active: no container is created or started, and with
    // a required unit down, running ones are stopped.
    let blocked = svc
        .blocked
        .as_ref()
        .filter(|_| svc.state == DesiredState::Running);
    let stop_for_units = |c: ContainerRef, state: ContainerState, out: &mut Vec<Action>| {
        if let Some(b) = blocked.filter(|b| b.stop)
            && (state.is_up() || state == ContainerState::Paused)
        {
            out.push(Action::Stop {
                service: service(),
                container: c,
                reason: Reason::UnitsInactive {
                    units: b.units.clone(),
                },
            });
        }
    };
    let Some(keeper) = keeper else {
        if svc.kind == Kind::Task && svc.task_done {
            // The task ran; its containers are history. Nothing to create.
            return;
        }
        if blocked.is_some() {
            // Nothing is created while waiting: an old container keeps
            // running (unless a required unit is down), so a deployment
            // that gives up on its units leaves it as it was.
            for c in containers {
                stop_for_units((*c).into(), c.state, out);
            }
            return;
        }
        let replace: Vec<ContainerRef> = containers.iter().map(|c| (*c).into()).collect();
        let reason = match containers.first() {
            None => Reason::Missing,
            Some(old) => svc.mismatch(old),
        };
        out.push(Action::Deploy {
            service: service(),
            replace,
            start: svc.state == DesiredState::Running,
            reason,
        });
        return;
    };

    for c in containers {
        if c.id != keeper.id {
            let reason = if svc.matches(c) {
                Reason::Duplicate
            } else {
                svc.mismatch(c)
            };
            out.push(Action::Remove {
                service: service(),
                container: (*c).into(),
                reason,
            });
        }
    }
    if keeper.name != svc.container_name {
        out.push(Action::Rename {
            service: service(),
            container: keeper.into(),
            to: svc.container_name.clone(),
            reason: Reason::Misnamed,
        });
    }
    let keeper_ref = || ContainerRef {
        id: keeper.id.clone(),
        name: svc.container_name.clone(),
    };
    match svc.state {
        DesiredState::Running if blocked.is_some() => {
            stop_for_units(keeper_ref(), keeper.state, out);
        }
        DesiredState::Running => {
            let should_start = match keeper.state {
                // Never started (created, or left by an interrupted swap).
                ContainerState::Created => !(svc.kind == Kind::Task && svc.task_done),
                // Stopped behind berth's back: only `always` brings it back; for
                // `never`/`on-failure` an exit is the engine's policy at work.
                ContainerState::Exited | ContainerState::Dead => {
                    svc.kind == Kind::Service && svc.restart == RestartPolicy::Always
                }
                _ => false,
            };
            if should_start {
                out.push(Action::Start {
                    service: service(),
                    container: keeper_ref(),
                    reason: Reason::NotRunning {
                        state: keeper.state,
                    },
                });
            }
        }
        DesiredState::Stopped => {
            if keeper.state.is_up() || keeper.state == ContainerState::Paused {
                out.push(Action::Stop {
                    service: service(),
                    container: keeper_ref(),
                    reason: Reason::DesiredStopped,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
