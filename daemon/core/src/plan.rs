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
    /// The generation of the deployment being judged, when it keeps the
    /// container it replaces aside (see [`aside_name`]): that container is
    /// stopped, its restart policy set to `no`, and kept until the
    /// deployment ends, instead of being removed. `None` (nothing judged,
    /// or a rollback): set-aside containers go. The loop asks
    /// [`crate::rollback::aside_generation`].
    pub aside_generation: Option<u64>,
}

/// The name an update of generation `generation` gives the container it
/// sets aside: `<container_name>.prev-g<generation>`. The generation is the
/// new deployment's, not the old container's (its labels keep that), so
/// the name says whose judging it waits for: `plan()` keeps it exactly
/// while that deployment is judged, and an interrupted swap is repaired
/// from names and labels alone.
pub fn aside_name(container_name: &str, generation: u64) -> String {
    format!("{container_name}.prev-g{generation}")
}

/// The generation in `name` when it is one of [`aside_name`]'s for this
/// service's `container_name`.
pub fn aside_generation_of(container_name: &str, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(container_name)?.strip_prefix(".prev-g")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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
    /// The container an update replaces, kept (stopped, restart policy
    /// `no`) until the deployment of `generation` is judged.
    SetAside { generation: u64 },
    /// Set aside for the deployment of `generation`, which is no longer
    /// being judged (it completed, failed without a rollback, or another
    /// deployment came).
    AsideDone { generation: u64 },
    /// The container an update set aside is the one wanted again (the
    /// update failed and was rolled back): its restart policy restored,
    /// started, given its name back.
    SwapBack,
    /// The container's restart policy is not the spec's.
    RestartPolicyChanged {
        from: RestartPolicy,
        to: RestartPolicy,
    },
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
            Reason::SetAside { generation } => write!(
                f,
                "set aside (stopped, restart policy no) while generation {generation} is judged"
            ),
            Reason::AsideDone { generation } => write!(
                f,
                "set aside for generation {generation}, which is no longer being judged"
            ),
            Reason::SwapBack => write!(
                f,
                "set aside by an update that did not complete; swapped back"
            ),
            Reason::RestartPolicyChanged { from, to } => write!(
                f,
                "restart policy is {}, the spec says {}",
                from.engine_name(),
                to.engine_name()
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

/// The live container a deploy sets aside rather than removes, and the
/// name it gets ([`aside_name`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aside {
    pub container: ContainerRef,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create a container from the current record, and swap it in for
    /// `replace` (create first; the old ones go only once the new one
    /// exists). `set_aside` is kept instead: restart policy `no`, stopped,
    /// renamed, until the deployment is judged.
    Deploy {
        service: String,
        replace: Vec<ContainerRef>,
        #[serde(skip_serializing_if = "Option::is_none")]
        set_aside: Option<Aside>,
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
    /// Change the engine's restart policy of a container.
    SetRestart {
        service: String,
        container: ContainerRef,
        policy: RestartPolicy,
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
            | Action::Remove { service, .. }
            | Action::SetRestart { service, .. } => service,
        }
    }
    pub fn reason(&self) -> &Reason {
        match self {
            Action::Deploy { reason, .. }
            | Action::Start { reason, .. }
            | Action::Stop { reason, .. }
            | Action::Rename { reason, .. }
            | Action::Remove { reason, .. }
            | Action::SetRestart { reason, .. } => reason,
        }
    }
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Deploy {
                replace, set_aside, ..
            } if replace.is_empty() && set_aside.is_none() => "create",
            Action::Deploy { .. } => "replace",
            Action::Start { .. } => "start",
            Action::Stop { .. } => "stop",
            Action::Rename { .. } => "rename",
            Action::Remove { .. } => "remove",
            Action::SetRestart { .. } => "set restart policy",
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
    // The container to keep aside while a deployment is judged: one that
    // already carries the aside name, else the live (canonically named)
    // one; never one made from the desired spec.
    let aside = svc
        .aside_generation
        .map(|g| (g, aside_name(&svc.container_name, g)));
    let aside_pick = aside.as_ref().and_then(|(_, to)| {
        if keeper.is_some_and(|k| k.name == *to) {
            // The wanted container holds the name (it is being swapped
            // back): nothing else can go aside under it.
            return None;
        }
        let mismatched = || containers.iter().copied().filter(|c| !svc.matches(c));
        mismatched()
            .find(|c| c.name == *to)
            .or_else(|| mismatched().find(|c| c.name == svc.container_name))
    });
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
        let replace: Vec<ContainerRef> = containers
            .iter()
            .filter(|c| aside_pick.is_none_or(|a| a.id != c.id))
            .map(|c| (*c).into())
            .collect();
        let set_aside = aside_pick.zip(aside.as_ref()).map(|(c, (_, to))| Aside {
            container: c.into(),
            to: to.clone(),
        });
        let reason = match containers.first() {
            None => Reason::Missing,
            Some(old) => svc.mismatch(old),
        };
        out.push(Action::Deploy {
            service: service(),
            replace,
            set_aside,
            start: svc.state == DesiredState::Running,
            reason,
        });
        return;
    };

    // Removals first: one of them may hold the aside name.
    let mut aside_actions = Vec::new();
    for c in containers {
        if c.id == keeper.id {
            continue;
        }
        if let (Some(picked), Some((generation, to))) = (aside_pick, aside.as_ref())
            && picked.id == c.id
        {
            set_aside(svc, c, *generation, to, &mut aside_actions);
            continue;
        }
        let reason = if svc.matches(c) {
            Reason::Duplicate
        } else if let Some(generation) = aside_generation_of(&svc.container_name, &c.name) {
            Reason::AsideDone { generation }
        } else {
            svc.mismatch(c)
        };
        out.push(Action::Remove {
            service: service(),
            container: (*c).into(),
            reason,
        });
    }
    out.extend(aside_actions);
    // A keeper that was set aside (by its name, or by the restart policy
    // `no` berth gives only to a container it sets aside) is swapped back:
    // policy restored and started while it still carries the aside name,
    // renamed last, so every state a crash leaves in between still says
    // where it came from.
    let was_aside = aside_generation_of(&svc.container_name, &keeper.name).is_some();
    let policy_no_by_berth =
        keeper.restart_policy == Some(RestartPolicy::Never) && svc.restart != RestartPolicy::Never;
    let restore = keeper
        .restart_policy
        .filter(|p| *p != svc.restart)
        .map(|from| Action::SetRestart {
            service: service(),
            container: keeper.into(),
            policy: svc.restart,
            reason: if was_aside || policy_no_by_berth {
                Reason::SwapBack
            } else {
                Reason::RestartPolicyChanged {
                    from,
                    to: svc.restart,
                }
            },
        });
    let rename = (keeper.name != svc.container_name).then(|| Action::Rename {
        service: service(),
        container: keeper.into(),
        to: svc.container_name.clone(),
        reason: if was_aside {
            Reason::SwapBack
        } else {
            Reason::Misnamed
        },
    });
    // The name the keeper has when a start or stop reaches it.
    let (first, keeper_name) = if was_aside {
        out.extend(restore);
        (rename, keeper.name.clone())
    } else {
        out.extend(rename);
        out.extend(restore);
        (None, svc.container_name.clone())
    };
    let keeper_ref = || ContainerRef {
        id: keeper.id.clone(),
        name: keeper_name.clone(),
    };
    let set_aside_before = was_aside || policy_no_by_berth;
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
                // One berth stopped to set it aside comes back in any case.
                ContainerState::Exited | ContainerState::Dead => {
                    svc.kind == Kind::Service
                        && (svc.restart == RestartPolicy::Always || set_aside_before)
                }
                _ => false,
            };
            if should_start {
                out.push(Action::Start {
                    service: service(),
                    container: keeper_ref(),
                    reason: if set_aside_before {
                        Reason::SwapBack
                    } else {
                        Reason::NotRunning {
                            state: keeper.state,
                        }
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
    out.extend(first);
}

/// The actions that set `c` aside for the deployment of `generation`:
/// restart policy `no` first (a container the engine could restart is not
/// aside), then stopped, then renamed to `to`. Each only when still needed,
/// so a swap interrupted anywhere is finished from what the engine shows.
fn set_aside(
    svc: &DesiredService,
    c: &ObservedContainer,
    generation: u64,
    to: &str,
    out: &mut Vec<Action>,
) {
    let reason = || Reason::SetAside { generation };
    if c.restart_policy != Some(RestartPolicy::Never) {
        out.push(Action::SetRestart {
            service: svc.name.clone(),
            container: c.into(),
            policy: RestartPolicy::Never,
            reason: reason(),
        });
    }
    if c.state.is_up() || c.state == ContainerState::Paused {
        out.push(Action::Stop {
            service: svc.name.clone(),
            container: c.into(),
            reason: reason(),
        });
    }
    if c.name != to {
        out.push(Action::Rename {
            service: svc.name.clone(),
            container: c.into(),
            to: to.to_string(),
            reason: reason(),
        });
    }
}

#[cfg(test)]
mod tests;
