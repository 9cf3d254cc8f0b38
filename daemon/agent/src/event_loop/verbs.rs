//! Operator verbs on one service (stop, start, restart, hold, release,
//! rollback, delete, reconfigure): each makes a record or changes one, and
//! acts on the engine only through reconcile or a job (a restart).

use berth_core::dto::VerbResponse;
use berth_core::event::EventKind;
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::spec::DesiredState;
use berth_core::store::Store;
use tokio::time::Instant;

use super::Agent;
use crate::jobs::Job;
use crate::{AgentError, Env, Verb};

impl<E: Env> Agent<E> {
    /// The answer to a verb on a service whose record berthd could not read
    /// at start: which file, what is wrong with it, and what to do.
    pub(super) fn unreadable_refusal(&self, service: &str) -> AgentError {
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

    pub(super) fn verb(
        &mut self,
        service: &str,
        verb: Verb,
        actor: &str,
    ) -> Result<VerbResponse, AgentError> {
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
            Verb::Stop | Verb::Start | Verb::Reconfigure if svc.current.spec.exec_in.is_some() => {
                Err(AgentError::Refused {
                    service: service.to_string(),
                    reason: "is an exec_in task: it has no container to stop, start or \
                             reconfigure (`berthctl restart` runs it again)"
                        .into(),
                })
            }
            // An exec task has no container: a restart runs it again.
            Verb::Restart if svc.current.spec.exec_in.is_some() => {
                if svc.busy || !svc.current.status.is_terminal() {
                    return Err(AgentError::Refused {
                        service: service.to_string(),
                        reason: format!(
                            "is running (deployment {} is {}); restart it once it ends",
                            svc.current.id, svc.current.status
                        ),
                    });
                }
                let record = self.run_exec_task_again(service, actor, "restarted")?;
                let message = format!("running {service} again");
                Ok(response(Some(record), message))
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
                record.same_container_as(&target);
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
            Verb::Delete | Verb::DeleteWithVolumes => {
                let spec = svc.current.spec.clone();
                let source = svc.meta.source.clone();
                let target = svc.target.clone();
                let mut record = self.new_record(spec, DeployAction::Delete, source, actor);
                inherit_config(&mut record, &target);
                record.same_container_as(&target);
                record.applied = true;
                record.status = Status::InProgress;
                // With `pre_delete` hooks, nothing is removed before they pass.
                let waits = self.delete_waits_for_hooks(&mut record);
                let record = self.commit_record(record, None)?;
                let mut message = format!("deleting {service}");
                if waits {
                    message.push_str(&format!(" once its pre_delete hooks pass ({})", record.status_reason));
                }
                if verb == Verb::DeleteWithVolumes {
                    message.push_str(&self.plan_volume_removal(service, record.generation));
                } else {
                    self.volume_removals.remove(service);
                }
                Ok(response(Some(record), message))
            }
            Verb::ClearHook { phase } => self.clear_hook(service, phase, actor),
            Verb::Reconfigure => Err(AgentError::Refused {
                service: service.to_string(),
                reason: "cannot be reconfigured this way (internal: reconfigure is answered by the config reader)".into(),
            }),
            Verb::Rollback { generation } => {
                let history = self.env.store().history(service, usize::MAX)?;
                let current_hash = svc.target.spec_hash.clone();
                let chosen = berth_core::rollback::rollback_target(
                    &history,
                    &current_hash,
                    generation,
                    self.cfg.history_limit,
                )
                .map_err(|reason| AgentError::Refused {
                    service: service.to_string(),
                    reason,
                })?
                .clone();
                let source = svc.meta.source.clone();
                let mut record =
                    self.new_record(chosen.spec.clone(), DeployAction::Rollback, source, actor);
                record.same_container_as(&chosen);
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
}

/// Copies what `from`'s container was given: its config reading and identity.
pub(super) fn inherit_config(record: &mut Deployment, from: &Deployment) {
    record.config = from.config.clone();
    record.config_hash = from.config_hash.clone();
    record.config_identity = from.config_identity.clone();
}
