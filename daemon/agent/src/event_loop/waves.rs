//! Ordered waves (`depends_on`, `inputs`): an apply checked and ordered
//! before anything is recorded, deployments that wait (PENDING,
//! `Deployment::waiting`) until their dependencies hold, their release
//! with the inputs resolved, and a new deployment for each dependent whose
//! input moved. The decisions are core's (`berth_core::waves`); this file
//! gives them the node's state and writes what they decide.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::record::{DeployAction, Status};
use berth_core::runtime::{ContainerState, Health};
use berth_core::spec::ServiceSpec;
use berth_core::store::Store;
use berth_core::waves::{self, DepView, Readiness};

use super::Agent;
use crate::{AgentError, Env};

/// A spec that takes part in waves: it has dependencies (`volumes_from`
/// and `exec_in` count as one) or inputs.
pub(super) fn in_waves(spec: &ServiceSpec) -> bool {
    !spec.depends_on.is_empty()
        || !spec.inputs.is_empty()
        || !spec.volumes_from.is_empty()
        || spec.exec_in.is_some()
}

impl<E: Env> Agent<E> {
    /// Refuses an apply whose dependencies or outputs exist nowhere, or
    /// that makes a cycle, before anything runs; else orders its services
    /// dependencies first (their records are made in that order, so a
    /// dependent sees its dependency's new deployment, not the old one).
    pub(super) fn order_wave(&self, services: &mut Vec<ServiceSpec>) -> Result<(), AgentError> {
        if !services.iter().any(in_waves) {
            return Ok(());
        }
        let mut known: BTreeMap<&str, &ServiceSpec> = self
            .services
            .iter()
            .filter(|(_, s)| !s.is_deleted())
            .map(|(n, s)| (n.as_str(), &s.current.spec))
            .collect();
        // Services of spec_dir files applied with this one (each file is an
        // apply of its own) count as known.
        for (name, spec) in &self.spec_dir_known {
            known.entry(name.as_str()).or_insert(spec);
        }
        match waves::check(services, &known) {
            Ok(order) => {
                let mut slots: Vec<Option<ServiceSpec>> =
                    std::mem::take(services).into_iter().map(Some).collect();
                services.extend(order.into_iter().filter_map(|i| slots[i].take()));
                Ok(())
            }
            Err(problems) => Err(AgentError::Invalid {
                reason: problems.join("; "),
                details: problems,
            }),
        }
    }

    /// Whether a deployment of `spec` may run now (`berth_core::waves::readiness`
    /// on the node's state). A dependency that an apply still being
    /// prepared (images resolving) will change waits for it.
    pub(super) fn readiness(&self, spec: &ServiceSpec) -> Readiness {
        for (dep, condition) in waves::dependencies(spec) {
            let preparing = self
                .pending
                .values()
                .any(|p| !p.dry_run && p.req.services.iter().any(|s| s.name == dep));
            if preparing {
                return Readiness::Waiting(format!(
                    "waiting for {dep} to be {condition}: an apply of it is being prepared"
                ));
            }
        }
        waves::readiness(spec, |name| self.dep_view(name))
    }

    fn dep_view(&self, name: &str) -> Option<DepView<'_>> {
        let svc = self.services.get(name).filter(|s| !s.is_deleted())?;
        let container = self.container_of(name);
        Some(DepView {
            newest: &svc.current,
            running: container.is_some_and(|c| c.state == ContainerState::Running),
            healthy: container.is_some_and(|c| c.health == Some(Health::Healthy)),
        })
    }

    /// Each step: deployments waiting for their dependencies that may run
    /// now are released; those that still wait say why; dependents whose
    /// input moved get a new deployment.
    pub(super) fn drive_waves(&mut self) {
        let waiting: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.current.waiting && !s.busy && !s.meta.held)
            .map(|(n, _)| n.clone())
            .collect();
        for name in waiting {
            let Some(svc) = self.services.get(&name) else {
                continue;
            };
            match self.readiness(&svc.current.spec) {
                Readiness::Waiting(reason) => {
                    if svc.current.status_reason != reason {
                        tracing::info!(service = name, %reason, "deployment waits");
                        self.set_status(&name, Status::Pending, reason, None);
                    }
                }
                Readiness::Ready(inputs) => self.release(&name, inputs),
            }
        }
        self.rerun_moved_inputs();
        self.rerun_exec_tasks();
    }

    /// An `exec_in` task that completed in a container its service no
    /// longer runs: the service got a new container (an update, a
    /// recreate), so the task gets a new deployment by `berthd`, as paunch
    /// runs its execs again. Not after a failure (an apply retries that),
    /// nor while the service is being replaced.
    fn rerun_exec_tasks(&mut self) {
        let mut rerun: Vec<(String, String, String)> = Vec::new();
        for (name, svc) in &self.services {
            let Some(target) = svc.current.spec.exec_in.as_deref() else {
                continue;
            };
            if svc.busy
                || svc.meta.held
                || svc.is_deleted()
                || svc.current.status != Status::Complete
                || self.services.get(target).is_none_or(|t| t.busy)
            {
                continue;
            }
            let Some(now) = self
                .container_of(target)
                .filter(|c| c.state == berth_core::runtime::ContainerState::Running)
            else {
                continue;
            };
            if svc.current.exec_container.as_deref() != Some(now.id.as_str()) {
                rerun.push((name.clone(), target.to_string(), now.id.clone()));
            }
        }
        for (name, target, container) in rerun {
            let short = &container[..container.len().min(12)];
            let why = format!("{target} has a new container ({short})");
            tracing::info!(service = name, reason = why, "running the exec task again");
            if let Err(e) = self.run_exec_task_again(&name, "berthd", &why) {
                tracing::error!(service = name, error = %e, "cannot record the exec task's new run");
            }
        }
    }

    /// A new deployment of the `exec_in` task `service`, with its current
    /// spec, saying `why`: it waits for its service to be started like any
    /// other, then the judge runs it. For a new container of that service,
    /// and for `berthctl restart` (or a Heat document naming the task).
    pub(super) fn run_exec_task_again(
        &mut self,
        service: &str,
        actor: &str,
        why: &str,
    ) -> Result<berth_core::record::Deployment, AgentError> {
        let Some(svc) = self.services.get(service) else {
            return Err(AgentError::NoSuchService {
                service: service.to_string(),
            });
        };
        let current = Arc::clone(&svc.current);
        let source = svc.meta.source.clone();
        let mut record = self.new_record(current.spec.clone(), DeployAction::Update, source, actor);
        record.image_id = current.image_id.clone();
        record.spec_hash = current.spec_hash.clone();
        record.inputs = current.inputs.clone();
        record.waiting = true;
        record.status_reason = format!("{why} since {}", current.id);
        self.commit_record(record, None)
    }

    /// A waiting deployment whose dependencies hold: its inputs are
    /// resolved into the record, and it runs as an apply's would (the
    /// container kept when nothing it is made of changed).
    fn release(&mut self, service: &str, inputs: BTreeMap<String, String>) {
        let Some(svc) = self.services.get(service) else {
            return;
        };
        let mut record = (*svc.current).clone();
        record.inputs = inputs;
        record.waiting = false;
        record.status_reason.clear();
        record.updated_at_ms = self.env.now_ms();
        let prev_target = Arc::clone(&svc.target);
        match record.image_id.clone() {
            // Recorded while the engine was away: its image is resolved
            // next (`resolve_waiting`), its hash with it.
            None => {
                record.status_reason =
                    "waiting for the container engine to resolve its image".into();
            }
            Some(id) => {
                record.spec_hash = self.record_hash(&record, &id);
                let same_container = prev_target.generation != record.generation
                    && prev_target.applied
                    && prev_target.spec_hash == record.spec_hash
                    && prev_target.config_identity == record.config_identity;
                if same_container {
                    // As an apply that changed only policy: a record, no
                    // new container (a task is not run again).
                    record.applied = true;
                    record.status = Status::InProgress;
                }
            }
        }
        tracing::info!(
            service,
            deployment = record.id,
            inputs = ?record.inputs.keys().collect::<Vec<_>>(),
            "dependencies hold; deployment released"
        );
        let record = Arc::new(record);
        let create = self.create_request(&record);
        // Judged as an apply's record: a kept container needs no settling.
        let gate = self.new_gate(&record, !record.applied);
        let store = self.env.store();
        if let Err(e) = store.save_record(&record) {
            tracing::error!(service, error = %e, "cannot save the released record");
            return;
        }
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.current = Arc::clone(&record);
        svc.target = Arc::clone(&record);
        svc.create = create;
        svc.gate = Some(gate);
        svc.meta.target_generation = record.generation;
        let meta = svc.meta.clone();
        if let Err(e) = store.save_meta(&meta) {
            tracing::error!(service, error = %e, "cannot save service meta");
        }
        if prev_target.spec.config != record.spec.config {
            self.refresh_watches();
        }
        self.emit_status(&record);
        self.dirty = true;
    }

    /// Dependents whose recorded input no longer matches the output it was
    /// taken from get a new deployment (actor `berthd`), which waits for
    /// its dependencies as any other.
    fn rerun_moved_inputs(&mut self) {
        let mut moved: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (name, svc) in &self.services {
            if svc.busy || svc.meta.held || svc.is_deleted() || svc.current.spec.inputs.is_empty() {
                continue;
            }
            let inputs = waves::stale_inputs(&svc.current, |dep| {
                self.services
                    .get(dep)
                    .filter(|s| !s.is_deleted())
                    .map(|s| &*s.current)
            });
            if !inputs.is_empty() {
                moved.push((name.clone(), inputs));
            }
        }
        for (name, inputs) in moved {
            let Some(svc) = self.services.get(&name) else {
                continue;
            };
            let current = Arc::clone(&svc.current);
            let source = svc.meta.source.clone();
            let names: Vec<String> = inputs
                .iter()
                .map(|(input, _)| match current.spec.inputs.get(input) {
                    Some(berth_core::spec::InputSource::From { from }) => {
                        format!("inputs.{input} ({from})")
                    }
                    _ => format!("inputs.{input}"),
                })
                .collect();
            let mut record =
                self.new_record(current.spec.clone(), DeployAction::Update, source, "berthd");
            record.image_id = current.image_id.clone();
            record.image_digest = current.image_digest.clone();
            // The env files as the apply read them (the deploy reads them
            // again and refuses if they changed since).
            record.env_file_digest = current.env_file_digest.clone();
            super::verbs::inherit_config(&mut record, &current);
            record.waiting = true;
            record.status_reason = format!("{} changed since {}", names.join(", "), current.id);
            tracing::info!(
                service = name,
                reason = record.status_reason,
                "an input moved; deploying again"
            );
            if let Err(e) = self.commit_record(record, None) {
                tracing::error!(service = name, error = %e, "cannot record the new deployment for a moved input");
            }
        }
    }
}
