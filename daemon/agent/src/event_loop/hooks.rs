//! `pre_update` hooks: before a deploy stops or replaces the running
//! container, the deployment's hooks run in order and it is WAITING_HOOK
//! meanwhile (the hook and since when on the record). A breakpoint waits
//! for `berthctl hook clear` (a clear releases every breakpoint of the
//! phase); an exec hook runs in the old container as a job
//! (`crate::hook_job`). A hook that aborts fails the deployment before it
//! reaches the engine (the target goes back, the old container runs on
//! untouched); a newer deployment supersedes a waiting one. When a phase
//! applies and what an end means is `berth_core::hooks`. Never acts on the
//! engine itself, and never waits.
//!
//! Progress is kept in memory: a berthd restarted while a deployment waits
//! runs its hooks again from the first (at least once).

use std::sync::Arc;

use berth_core::dto::VerbResponse;
use berth_core::hooks::{HookEnd, HookVerdict, HookWait, next_hook, pre_update_applies, verdict};
use berth_core::plan::Action;
use berth_core::record::Status;
use berth_core::spec::{HookKind, HookPhase};
use berth_core::store::Store;
use tokio::time::Instant;

use super::Agent;
use crate::state::Svc;
use crate::{AgentError, Env};

/// Where a service's current deployment is in its hooks.
#[derive(Debug, Default)]
pub(crate) struct HookRun {
    /// The deployment this is about; another one starts over.
    generation: u64,
    /// The next hook to run.
    next: usize,
    /// The phase's breakpoints were cleared.
    cleared: bool,
    /// Every hook of the phase proceeded.
    passed: bool,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    index: usize,
    breakpoint: bool,
    /// A breakpoint's timeout (an exec's is the job's).
    deadline: Option<Instant>,
}

/// The running container a deploy replaces: the one it sets aside, else
/// the first it removes.
fn replaced_container(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Deploy {
            replace, set_aside, ..
        } => set_aside
            .as_ref()
            .map(|s| s.container.id.clone())
            .or_else(|| replace.first().map(|c| c.id.clone())),
        _ => None,
    })
}

impl<E: Env> Agent<E> {
    /// Whether `service`'s planned `actions` wait for its `pre_update`
    /// hooks; starts the next hook when none runs.
    pub(super) fn hold_for_hooks(
        &mut self,
        service: &str,
        actions: &[Action],
        now: Instant,
    ) -> bool {
        let Some(svc) = self.services.get_mut(service) else {
            return false;
        };
        if svc.busy || svc.retry_at.is_some_and(|t| now < t) {
            return false;
        }
        let container = replaced_container(actions);
        let current = Arc::clone(&svc.current);
        if current.generation != svc.target.generation
            || !pre_update_applies(&current, container.is_some())
        {
            return false;
        }
        if svc.hooks.generation != current.generation {
            svc.hooks = HookRun {
                generation: current.generation,
                ..Default::default()
            };
        }
        if svc.hooks.passed {
            return false;
        }
        let phase = HookPhase::PreUpdate;
        if let Some(r) = &svc.hooks.running {
            let (index, timed_out) = (r.index, r.deadline.is_some_and(|d| now >= d));
            if timed_out && let Some(hook) = current.spec.hooks.pre_update.get(index) {
                let after = hook.effective_timeout().unwrap_or_default();
                self.hook_ended(service, phase, index, HookEnd::TimedOut(after), None);
            }
            return true;
        }
        let hooks = &current.spec.hooks.pre_update;
        let Some((index, hook)) = next_hook(hooks, svc.hooks.next, svc.hooks.cleared) else {
            // Every hook proceeded: the deploy goes on, judged from now.
            svc.hooks.passed = true;
            let gate = self.new_gate(&current, true);
            if let Some(svc) = self.services.get_mut(service) {
                svc.gate = Some(gate);
            }
            self.set_hook(service, None, Status::InProgress, String::new());
            return false;
        };
        let breakpoint = matches!(hook.kind, HookKind::Breakpoint {});
        svc.hooks.running = Some(Running {
            index,
            breakpoint,
            deadline: breakpoint
                .then(|| hook.effective_timeout().map(|t| now + t))
                .flatten(),
        });
        if let HookKind::Exec(argv) = &hook.kind
            && let Some(container) = container
        {
            svc.busy = true;
            self.spawn(crate::jobs::Job::Hook(crate::hook_job::Request {
                service: service.to_string(),
                generation: current.generation,
                phase,
                index,
                container,
                argv: argv.clone(),
                timeout: hook.effective_timeout(),
            }));
        }
        let wait = HookWait {
            phase: Some(phase),
            index,
            hook: hook.describe(),
            since_ms: self.env.now_ms(),
            breakpoint,
        };
        tracing::info!(service, phase = %phase, index, hook = wait.hook, "hook");
        let reason = berth_core::hooks::waiting_reason(service, &wait);
        self.set_hook(service, Some(wait), Status::WaitingHook, reason);
        true
    }

    /// The current record's hook and status, saved and announced.
    fn set_hook(&mut self, service: &str, wait: Option<HookWait>, status: Status, reason: String) {
        if let Some(svc) = self.services.get_mut(service) {
            svc.edit_current(|d| d.hook = wait);
        }
        self.set_status(service, status, reason, None);
    }

    /// An exec hook's job reported back.
    pub(super) fn hook_done(&mut self, o: crate::hook_job::Outcome) {
        let Some(svc) = self.services.get_mut(&o.service) else {
            return;
        };
        svc.busy = false;
        let current = svc.hooks.generation == o.generation
            && svc.current.generation == o.generation
            && svc.current.status == Status::WaitingHook
            && svc
                .hooks
                .running
                .as_ref()
                .is_some_and(|r| r.index == o.index);
        if !current {
            // Superseded meanwhile: its end changes nothing.
            return;
        }
        self.hook_ended(&o.service, o.phase, o.index, o.end, Some(o.outputs));
    }

    /// Hook `index` of `phase` ended: the next one, or the deployment fails
    /// (before reaching the engine: the old container is left as it is).
    fn hook_ended(
        &mut self,
        service: &str,
        phase: HookPhase,
        index: usize,
        end: HookEnd,
        outputs: Option<berth_core::record::Outputs>,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let Some(hook) = svc.current.spec.hooks.phase(phase).get(index).cloned() else {
            return;
        };
        svc.hooks.running = None;
        svc.hooks.next = index + 1;
        self.dirty = true;
        match verdict(phase, &hook, &end) {
            HookVerdict::Proceed => {
                if let Some(o) = outputs {
                    svc.edit_current(|d| d.outputs = o);
                }
            }
            HookVerdict::Abort(reason) => {
                tracing::warn!(service, %reason, "hook aborted the deployment");
                svc.edit_current(|d| {
                    d.hook = None;
                    if let Some(o) = outputs {
                        d.outputs = o;
                    }
                });
                self.fail_early(
                    service,
                    format!("{reason}; the running container was left as it is"),
                );
            }
        }
    }

    /// `berthctl hook clear SERVICE PHASE`: releases the breakpoints of
    /// `phase` the current deployment waits at.
    pub(super) fn clear_hook(
        &mut self,
        service: &str,
        phase: HookPhase,
        actor: &str,
    ) -> Result<VerbResponse, AgentError> {
        let Some(svc) = self.services.get_mut(service).filter(|s| !s.is_deleted()) else {
            return Err(AgentError::NoSuchService {
                service: service.to_string(),
            });
        };
        let waiting = svc.current.status == Status::WaitingHook
            && svc
                .current
                .hook
                .as_ref()
                .is_some_and(|h| h.phase == Some(phase))
            && svc.hooks.generation == svc.current.generation
            && svc.hooks.running.as_ref().is_some_and(|r| r.breakpoint);
        if !waiting {
            return Err(AgentError::Refused {
                service: service.to_string(),
                reason: not_waiting(svc, phase),
            });
        }
        svc.hooks.cleared = true;
        let index = svc.hooks.running.as_ref().map(|r| r.index).unwrap_or(0);
        let id = svc.current.id.clone();
        tracing::info!(service, %phase, actor, deployment = id, "breakpoints cleared");
        self.hook_ended(service, phase, index, HookEnd::Cleared, None);
        Ok(VerbResponse {
            service: service.to_string(),
            deployment: None,
            message: format!("cleared the {phase} breakpoints of deployment {id} (by {actor})"),
        })
    }

    /// A deployment replaced while it waited on a hook is FAILED, naming the
    /// newer one (its hooks never ran to the end, it never reached the engine).
    pub(super) fn supersede_waiting(&mut self, service: &str, generation: u64) {
        let Some(prev) = self.services.get(service) else {
            return;
        };
        if prev.current.status != Status::WaitingHook || prev.current.generation >= generation {
            return;
        }
        let mut old = (*prev.current).clone();
        old.status = Status::Failed;
        old.status_reason = format!("superseded by generation {generation}");
        old.hook = None;
        old.updated_at_ms = self.env.now_ms();
        if let Err(e) = self.env.store().save_record(&old) {
            tracing::error!(service = old.service, error = %e, "cannot save the superseded record");
        }
        self.emit_status(&old);
    }
}

fn not_waiting(svc: &Svc, phase: HookPhase) -> String {
    match &svc.current.hook {
        Some(h) if svc.current.status == Status::WaitingHook => format!(
            "has no {phase} breakpoint waiting: deployment {} runs {} hook {}",
            svc.current.id,
            h.phase.map(HookPhase::as_str).unwrap_or("?"),
            h.hook
        ),
        _ => format!(
            "has no {phase} breakpoint waiting (deployment {} is {})",
            svc.current.id, svc.current.status
        ),
    }
}
