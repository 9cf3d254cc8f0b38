//! Running a deployment's hooks: the phase it is WAITING_HOOK in, one hook
//! at a time, in order, and what happens when the phase passes or a hook
//! aborts. Where each phase is entered is `hook_points.rs`; when a phase
//! applies and what a hook's end means is `berth_core::hooks`.
//!
//! While a phase runs, the record is WAITING_HOOK and its `hook` names the
//! hook that runs or waits and since when. A breakpoint waits for
//! `berthctl hook clear` (a clear releases every breakpoint of the phase);
//! any other hook runs as a job (`crate::hook_job`): an exec `where:
//! container` runs in the old container for `pre_update` and `pre_delete`,
//! in the new one for `post_update`. A newer deployment supersedes a
//! waiting one (FAILED, "superseded by generation N"), whatever the phase,
//! and its running hook job is stopped (`hook_job::JobHandle::cancel`: an
//! http hook asks no more, a host hook's unit is stopped, a container exec
//! is let go): the service is no longer busy with it, so the newer
//! deployment goes on at once, and the stopped job's late answer is
//! ignored.
//!
//! | phase | all proceed | one aborts |
//! |---|---|---|
//! | `pre_update` | the deploy goes on, judged from now | FAILED before reaching the engine: the target goes back, the old container runs on untouched |
//! | `post_update` | COMPLETE | FAILED with the hook's output; nothing is rolled back (the new container runs on, the one set aside is already gone) |
//! | `pre_delete` | the delete goes on (the container is removed) | FAILED: the service is not deleted, its container runs on untouched |
//!
//! Progress is on the record, not only in memory: a hook that ended is
//! followed at once by the next one on the record, a clear is written
//! before the next hook starts, and a berthd restarted meanwhile resumes at
//! the hook the record names (a breakpoint waits again unless the phase was
//! cleared, a hook that was running runs again). Never acts on the engine
//! itself, and never waits.

use std::sync::Arc;
use std::time::Duration;

use berth_core::dto::VerbResponse;
use berth_core::hooks::{HookEnd, HookVerdict, HookWait, next_hook, verdict, waiting_in};
use berth_core::record::{Deployment, Outputs, Status};
use berth_core::spec::{Hook, HookKind, HookPhase};
use berth_core::store::Store;
use tokio::time::Instant;

use super::Agent;
use crate::state::Svc;
use crate::{AgentError, Env};

/// What runs of the current deployment's hooks, in memory: a job or a
/// breakpoint (everything else about the phase is on the record).
#[derive(Debug, Default)]
pub(crate) struct HookRun {
    /// The deployment this is about; another one starts over.
    generation: u64,
    running: Option<Running>,
}

#[derive(Debug)]
struct Running {
    index: usize,
    /// A breakpoint's timeout (an exec's is the job's).
    deadline: Option<Instant>,
    /// The job running it (none for a breakpoint): the service is busy
    /// with it until its outcome comes, or it is stopped.
    job: Option<crate::hook_job::JobHandle>,
}

/// The job request for hook `index` of `phase` of `record`, run in
/// `container` when it is an exec in the container.
fn hook_request(
    record: &Deployment,
    phase: HookPhase,
    index: usize,
    hook: &Hook,
    container: Option<String>,
    hooks_dir: std::path::PathBuf,
    job: (u64, crate::hook_job::Cancel),
) -> crate::hook_job::Request {
    crate::hook_job::Request {
        service: record.service.clone(),
        generation: record.generation,
        deployment_id: record.id.clone(),
        phase,
        index,
        hook: hook.clone(),
        container,
        body: serde_json::to_value(record.redacted()).unwrap_or_default(),
        hooks_dir,
        job: job.0,
        cancel: job.1,
    }
}

impl<E: Env> Agent<E> {
    /// Runs `service`'s current deployment through `phase`, which it is
    /// WAITING_HOOK in: starts the hook its record names when none runs,
    /// or times a breakpoint out. `container` is the one an exec `where:
    /// container` runs in. True while the phase holds the deployment.
    pub(super) fn run_phase(
        &mut self,
        service: &str,
        phase: HookPhase,
        container: Option<String>,
        now: Instant,
    ) -> bool {
        let now_ms = self.env.now_ms();
        let Some(svc) = self.services.get_mut(service) else {
            return false;
        };
        let current = Arc::clone(&svc.current);
        let Some(wait) = waiting_in(&current, phase).cloned() else {
            return false;
        };
        if svc.busy || svc.retry_at.is_some_and(|t| now < t) {
            return true;
        }
        if svc.hooks.generation != current.generation {
            svc.hooks = HookRun {
                generation: current.generation,
                running: None,
            };
        }
        if let Some(r) = &svc.hooks.running {
            let (index, timed_out) = (r.index, r.deadline.is_some_and(|d| now >= d));
            if timed_out && let Some(hook) = current.spec.hooks.phase(phase).get(index) {
                let after = hook.effective_timeout().unwrap_or_default();
                self.hook_ended(service, phase, index, HookEnd::TimedOut(after), None);
            }
            return true;
        }
        let hooks = current.spec.hooks.phase(phase);
        let Some((index, hook)) = next_hook(hooks, wait.index, wait.cleared) else {
            // Resumed past the last hook (the spec is the record's: only a
            // record from an older berth could say so).
            self.phase_passed(service, phase);
            return false;
        };
        // Resumed or started late (after the plan's actions): since when
        // the record has named this hook.
        let since_ms = if wait.index == index {
            wait.since_ms
        } else {
            now_ms
        };
        let breakpoint = matches!(hook.kind, HookKind::Breakpoint {});
        let deadline = breakpoint
            .then(|| hook.effective_timeout())
            .flatten()
            .map(|t| {
                now + t.saturating_sub(Duration::from_millis(now_ms.saturating_sub(since_ms)))
            });
        if breakpoint {
            svc.hooks.running = Some(Running {
                index,
                deadline,
                job: None,
            });
        } else {
            let (handle, cancel) = crate::hook_job::JobHandle::new();
            let job = (handle.id, cancel);
            svc.hooks.running = Some(Running {
                index,
                deadline,
                job: Some(handle),
            });
            svc.busy = true;
            let dir = self.cfg.hooks_dir();
            let request = hook_request(&current, phase, index, hook, container, dir, job);
            self.spawn(crate::jobs::Job::Hook(request));
        }
        let wait = HookWait::at(phase, index, hook, since_ms, wait.cleared);
        tracing::info!(service, %phase, index, hook = wait.hook, "hook");
        self.set_hook(service, Some(wait), Status::WaitingHook);
        true
    }

    /// The current record's hook (and with it WAITING_HOOK's reason),
    /// saved and announced when it changed.
    pub(super) fn set_hook(&mut self, service: &str, wait: Option<HookWait>, status: Status) {
        let reason = match &wait {
            Some(w) => berth_core::hooks::waiting_reason(service, w),
            None => String::new(),
        };
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        if svc.current.hook == wait && svc.current.status == status {
            return;
        }
        let same_status = svc.current.status == status && svc.current.status_reason == reason;
        svc.edit_current(|d| d.hook = wait);
        if same_status {
            self.save_current(service);
        } else {
            self.set_status(service, status, reason, None);
        }
    }

    /// Writes the current record as it is (a status change writes it too).
    pub(super) fn save_current(&mut self, service: &str) {
        let Some(svc) = self.services.get(service) else {
            return;
        };
        let record = Arc::clone(&svc.current);
        if let Err(e) = self.env.store().save_record(&record) {
            tracing::error!(service, error = %e, "cannot save record");
        }
    }

    /// A hook's job reported back.
    pub(super) fn hook_done(&mut self, o: crate::hook_job::Outcome) {
        let Some(svc) = self.services.get_mut(&o.service) else {
            return;
        };
        let ours = svc
            .hooks
            .running
            .as_ref()
            .and_then(|r| r.job.as_ref())
            .is_some_and(|j| j.id == o.job);
        if !ours {
            // A job stopped when its deployment was superseded: the
            // service stopped waiting for it then (and may be busy with
            // the newer deployment's job now).
            tracing::debug!(
                service = o.service,
                generation = o.generation,
                "a stopped hook job ended"
            );
            return;
        }
        svc.busy = false;
        let current = svc.hooks.generation == o.generation
            && svc.current.generation == o.generation
            && waiting_in(&svc.current, o.phase).is_some()
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

    /// Hook `index` of `phase` ended: the record names the next one, or
    /// the phase passed, or it aborted.
    fn hook_ended(
        &mut self,
        service: &str,
        phase: HookPhase,
        index: usize,
        end: HookEnd,
        outputs: Option<Outputs>,
    ) {
        let now_ms = self.env.now_ms();
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let Some(hook) = svc.current.spec.hooks.phase(phase).get(index).cloned() else {
            return;
        };
        svc.hooks.running = None;
        self.dirty = true;
        match verdict(phase, &hook, &end) {
            HookVerdict::Proceed => {
                let cleared = svc.current.hook.as_ref().is_some_and(|h| h.cleared);
                if let Some(o) = outputs {
                    svc.edit_current(|d| d.outputs = o);
                }
                let hooks = svc.current.spec.hooks.phase(phase);
                let next = next_hook(hooks, index + 1, cleared)
                    .map(|(next, hook)| HookWait::at(phase, next, hook, now_ms, cleared));
                match next {
                    Some(wait) => self.set_hook(service, Some(wait), Status::WaitingHook),
                    None => self.phase_passed(service, phase),
                }
            }
            HookVerdict::Abort(reason) => {
                tracing::warn!(service, %phase, %reason, "hook aborted the deployment");
                svc.edit_current(|d| {
                    d.hook = None;
                    if let Some(o) = outputs {
                        d.outputs = o;
                    }
                });
                self.phase_aborted(service, phase, reason);
            }
        }
    }

    /// Every hook of `phase` proceeded: the deployment goes on.
    fn phase_passed(&mut self, service: &str, phase: HookPhase) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.hooks.running = None;
        tracing::info!(service, %phase, deployment = svc.current.id, "hooks passed");
        match phase {
            HookPhase::PreUpdate => {
                // The deploy (or the restart by config change) goes on,
                // judged from now.
                svc.edit_current(|d| d.pre_update_passed = true);
                if berth_core::hooks::restarts_by_config(&svc.current) {
                    svc.config.resume = true;
                }
                let current = Arc::clone(&svc.current);
                let gate = self.new_gate(&current, true);
                if let Some(svc) = self.services.get_mut(service) {
                    svc.gate = Some(gate);
                }
                self.set_hook(service, None, Status::InProgress);
            }
            HookPhase::PostUpdate => self.set_hook(service, None, Status::Complete),
            HookPhase::PreDelete => {
                // The container goes now (`desired()` leaves it out).
                svc.edit_current(|d| d.applied = true);
                self.set_hook(service, None, Status::InProgress);
                self.refresh_watches();
            }
        }
    }

    /// A hook of `phase` aborted with `reason`: the deployment fails.
    fn phase_aborted(&mut self, service: &str, phase: HookPhase, reason: String) {
        match phase {
            HookPhase::PreUpdate => self.fail_early(
                service,
                format!("{reason}; the running container was left as it is"),
            ),
            HookPhase::PostUpdate => self.set_status(
                service,
                Status::Failed,
                format!("{reason}; nothing was rolled back: the new container runs on"),
                None,
            ),
            HookPhase::PreDelete => {
                self.volume_removals.remove(service);
                self.fail_early(
                    service,
                    format!(
                        "{reason}; the service was not deleted: its container runs on untouched"
                    ),
                );
                self.refresh_watches();
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
        let Some(index) = waiting_in(&svc.current, phase)
            .filter(|h| h.breakpoint)
            .map(|h| h.index)
        else {
            return Err(AgentError::Refused {
                service: service.to_string(),
                reason: not_waiting(svc, phase),
            });
        };
        // On disk before the next hook starts: a berthd restarted
        // meanwhile does not wait here again.
        svc.edit_current(|d| {
            if let Some(h) = d.hook.as_mut() {
                h.cleared = true;
            }
        });
        self.save_current(service);
        let id = self.services[service].current.id.clone();
        tracing::info!(service, %phase, actor, deployment = id, "breakpoints cleared");
        self.hook_ended(service, phase, index, HookEnd::Cleared, None);
        Ok(VerbResponse {
            service: service.to_string(),
            deployment: None,
            message: format!("cleared the {phase} breakpoints of deployment {id} (by {actor})"),
        })
    }

    /// A new record, `generation`, is about to replace `service`'s current
    /// one: a hook job that runs is stopped, and a deployment that waited
    /// on a hook (or on its dependencies) is FAILED, naming the newer one
    /// (it never ran to the end).
    pub(super) fn supersede_waiting(&mut self, service: &str, generation: u64) {
        let Some(prev) = self.services.get(service) else {
            return;
        };
        if prev.current.generation >= generation {
            return;
        }
        self.stop_hook_job(service, &format!("superseded by generation {generation}"));
        let Some(prev) = self.services.get(service) else {
            return;
        };
        // One waiting for its hooks or for its dependencies never ran: it
        // ends here rather than stay open in the history.
        if prev.current.status != Status::WaitingHook && !prev.current.waiting {
            return;
        }
        let mut old = (*prev.current).clone();
        old.status = Status::Failed;
        old.status_reason = format!("superseded by generation {generation}");
        old.hook = None;
        old.waiting = false;
        old.updated_at_ms = self.env.now_ms();
        if let Err(e) = self.env.store().save_record(&old) {
            tracing::error!(service = old.service, error = %e, "cannot save the superseded record");
        }
        self.emit_status(&old);
    }

    /// Stops `service`'s running hook job, if any (`why`: its deployment
    /// is over). The service is no longer busy with it at once: the job
    /// stops on its own (see `crate::hook_job`) and its outcome is ignored.
    fn stop_hook_job(&mut self, service: &str, why: &str) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let Some(job) = svc.hooks.running.as_mut().and_then(|r| r.job.take()) else {
            return;
        };
        svc.hooks.running = None;
        tracing::info!(
            service,
            why,
            deployment = svc.current.id,
            "stopping the running hook"
        );
        job.cancel(why);
        svc.busy = false;
        self.dirty = true;
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
