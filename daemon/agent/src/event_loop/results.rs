//! Job results: what a spawned job reports back (created, started, removed,
//! failed, outputs) is recorded and announced, and a job that failed early
//! fails its deployment. Never starts engine work of its own: what comes
//! next is reconcile's, on the next step.

use std::sync::Arc;

use berth_core::event::EventKind;
use berth_core::record::Status;
use berth_core::runtime::RuntimeError;
use berth_core::store::Store;
use tokio::time::Instant;

use super::Agent;
use crate::Env;
use crate::jobs::Done;

impl<E: Env> Agent<E> {
    pub(super) fn handle_done(&mut self, done: Done) {
        // A job still running said something: nothing changed for the plan.
        let done = match done {
            Done::Event(kind) => return self.emit(kind),
            done => done,
        };
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
            Done::Event(kind) => self.emit(kind),
            Done::Listed(result) => self.observed(result),
            Done::VolumesRemoved(outcome) => self.volumes_removed(outcome),
            Done::Hook(outcome) => self.hook_done(outcome),
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
                env_files,
            } => {
                self.note_apply_pulls(apply_id, &results);
                self.finish_apply(apply_id, results, configs, env_files)
            }
            Done::ImagesPruned(outcome) => self.images_pruned(outcome),
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
            } => {
                self.note_record_pull(&service, generation, &result);
                self.resolved_record(&service, generation, result)
            }
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
                for s in steps.iter().filter(|s| s.verb == "pulled") {
                    self.note_swap_pull(&service, &s.container);
                }
                if steps.iter().any(|s| s.verb == "removed") {
                    self.prune_after_removal();
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
                            && let Some(w) = svc.gate.as_mut()
                        {
                            w.settle_again();
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
            Done::ExecTaskRan {
                service,
                generation,
                result,
                unreachable,
            } => {
                let Some(svc) = self.services.get_mut(&service) else {
                    return;
                };
                svc.busy = false;
                if svc.current.generation != generation || svc.current.status.is_terminal() {
                    return;
                }
                match result {
                    Ok(out) => {
                        let code = out.exit_code;
                        let outputs = berth_core::record::Outputs {
                            deploy_stdout: Some(berth_core::record::cap_output(out.stdout)),
                            deploy_stderr: Some(berth_core::record::cap_output(out.stderr)),
                            deploy_status_code: Some(code),
                            declared: Default::default(),
                        };
                        let (status, reason) = exit_verdict(&svc.current.spec, "exec", Some(code));
                        self.set_status(&service, status, reason, Some(outputs));
                    }
                    // Not run: the judge runs it again once the engine is
                    // back (after a short backoff, not in a loop).
                    Err(_) if unreachable => {
                        if let Some(svc) = self.services.get_mut(&service) {
                            svc.retry_at = Some(
                                tokio::time::Instant::now() + std::time::Duration::from_secs(2),
                            );
                        }
                    }
                    Err(reason) => self.set_status(&service, Status::Failed, reason, None),
                }
            }
            Done::Collected { service, outputs } => {
                if let Some(svc) = self.services.get_mut(&service) {
                    svc.busy = false;
                }
                let Some(svc) = self.services.get(&service) else {
                    return;
                };
                let (status, reason) =
                    exit_verdict(&svc.current.spec, "task", outputs.deploy_status_code);
                self.set_status(&service, status, reason, Some(outputs));
            }
        }
    }

    /// A deployment failed before reaching the engine: record it, and point
    /// the target back at the previous record so the old container stays.
    pub(super) fn fail_early(&mut self, service: &str, reason: String) {
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
}

/// How a task's (or an exec task's) exit code judges its deployment:
/// COMPLETE for 0 or one of its `exit_codes` (saying which), else FAILED.
fn exit_verdict(
    spec: &berth_core::spec::ServiceSpec,
    what: &str,
    code: Option<i64>,
) -> (Status, String) {
    match code {
        Some(0) if spec.task_succeeded(0) => (Status::Complete, String::new()),
        Some(c) if spec.task_succeeded(c) => (
            Status::Complete,
            format!("{what} exited with code {c}, one of its exit_codes"),
        ),
        Some(c) => (Status::Failed, format!("{what} exited with code {c}")),
        None => (Status::Failed, format!("{what} ended without an exit code")),
    }
}
