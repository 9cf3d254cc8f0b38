//! From records to engine actions: what is desired, `plan()` against what
//! was observed, the node policy checked again right before a create, and
//! the resulting actions handed to jobs. Decides nothing `plan()`, task GC
//! or `container::create_request` in core could decide, and never waits on
//! the engine (the jobs call it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::container::{RecordDirs, record_create_spec};
use berth_core::event::EventKind;
use berth_core::hash::{create_spec, spec_hash};
use berth_core::hooks::waiting_in;
use berth_core::plan::{Action, Desired, DesiredService, GcCandidate, Observed, plan, task_gc};
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::runtime::CreateRequest;
use berth_core::spec::{HookPhase, Kind};
use tokio::time::Instant;

use super::Agent;
use crate::Env;
use crate::jobs::Job;
use crate::state::HealthGate;

impl<E: Env> Agent<E> {
    pub(super) fn new_gate(&self, record: &Deployment, needs_settle: bool) -> HealthGate {
        HealthGate::new(
            needs_settle,
            Instant::now().into_std(),
            record.spec.update.health_timeout,
        )
    }

    pub(super) fn outputs_dir(&self, service: &str) -> PathBuf {
        self.cfg.state_dir.join("outputs").join(service)
    }

    /// The host directory of one generation's input files.
    pub(super) fn inputs_dir(&self, service: &str, generation: u64) -> PathBuf {
        self.cfg
            .state_dir
            .join("inputs")
            .join(service)
            .join(format!("g{generation}"))
    }

    /// The create call for a record, when its image was resolved and it
    /// does not wait for its dependencies (its inputs are not known yet).
    pub(super) fn create_request(&self, record: &Deployment) -> Option<Box<CreateRequest>> {
        if record.waiting {
            return None;
        }
        self.with_dirs(record, |dirs| {
            berth_core::container::create_request(record, &self.cfg.prefix, dirs)
        })
        .map(Box::new)
    }

    /// The spec hash of `record` (its inputs included) with its image
    /// resolved to `image_id`: what its container's label will say.
    pub(super) fn record_hash(&self, record: &Deployment, image_id: &str) -> String {
        self.with_dirs(record, |dirs| {
            spec_hash(&record_create_spec(record, image_id, dirs))
        })
    }

    /// `f` given the host directories `record`'s container mounts.
    fn with_dirs<T>(&self, record: &Deployment, f: impl FnOnce(&RecordDirs<'_>) -> T) -> T {
        let outputs = self.outputs_dir(&record.service);
        let inputs = self.inputs_dir(&record.service, record.generation);
        f(&RecordDirs {
            outputs: &outputs.to_string_lossy(),
            inputs: &inputs.to_string_lossy(),
        })
    }

    pub(super) fn desired(&self) -> Desired {
        let mut d = Desired {
            services: BTreeMap::new(),
            untouchable: self.unreadable.keys().cloned().collect(),
        };
        for (name, svc) in &self.services {
            // A delete removes the container once it reached the engine
            // (not while its `pre_delete` hooks wait, nor after they aborted).
            if svc.current.action == DeployAction::Delete && svc.current.applied {
                continue;
            }
            if (svc.create.is_none() && svc.target.image_id.is_none()) || svc.target.waiting {
                // Never resolved (first deployment failed early), or waiting
                // for its dependencies before it ever ran: nothing to run,
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
                    // An `exec_in` task never has a container of its own:
                    // the judge runs it (`judge.rs`).
                    task_done: spec.exec_in.is_some()
                        || spec.kind == Kind::Task
                            && svc.target.status.is_terminal()
                            && svc.target.applied,
                    config_identity: svc.target.config_identity.clone(),
                    blocked: self.units_blocked(svc),
                    // Judged COMPLETE and in its `post_update` hooks: the
                    // container set aside goes before they run.
                    aside_generation: berth_core::rollback::aside_generation(&svc.target)
                        .filter(|_| waiting_in(&svc.target, HookPhase::PostUpdate).is_none()),
                },
            );
        }
        d
    }

    /// Exited containers of tasks that ended more than `task_gc_after` ago.
    pub(super) fn task_gc(&self) -> Vec<Action> {
        let candidates = self.services.iter().map(|(name, svc)| GcCandidate {
            service: name,
            kind: svc.target.spec.kind,
            current: &svc.current,
            held: svc.meta.held,
        });
        task_gc(
            candidates,
            &self.observed,
            self.env.now_ms(),
            self.cfg.task_gc_after.as_millis() as u64,
        )
    }

    pub(super) fn reconcile(&mut self) {
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
        // Hooks of deployments WAITING_HOOK that no planned action holds.
        self.drive_hooks(&by_service, now);
        for (service, actions) in by_service {
            // `pre_update` hooks run (or wait) before a deploy replaces a container.
            if self.hold_for_hooks(&service, &actions, now) {
                continue;
            }
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
            // `volumes_from` names services: the engine is given their
            // containers, as they are now; not while one of them is being
            // replaced (its container then is the old one, or none).
            let mut create = create;
            if deploys
                && let Some(c) = create.as_mut()
                && !c.spec.volumes_from.is_empty()
            {
                match self.volumes_from_containers(&c.spec.volumes_from) {
                    Ok(VolumesFrom::Ids(ids)) => c.spec.volumes_from_containers = ids,
                    Ok(VolumesFrom::NotNow(why)) => {
                        tracing::debug!(service, %why, "create waits for a volumes_from service");
                        continue;
                    }
                    Err(reason) => {
                        self.refuse_create(&service, reason);
                        continue;
                    }
                }
            }
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
                    Action::Deploy {
                        replace, set_aside, ..
                    } => {
                        for c in replace.iter().chain(set_aside.iter().map(|a| &a.container)) {
                            self.own_containers.insert(c.id.clone(), now);
                        }
                    }
                    Action::Start { container, .. }
                    | Action::Stop { container, .. }
                    | Action::Rename { container, .. }
                    | Action::Remove { container, .. }
                    | Action::SetRestart { container, .. } => {
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

    /// `volumes_from` entries (`SERVICE[:ro|:rw]`) with each service
    /// replaced by the id of its container in place (named
    /// `<prefix><service>`, as last listed). Not now while one of those
    /// services is busy (a job, e.g. a create-then-swap, may be renaming
    /// its containers: the one in place is about to go, or there is none
    /// for a moment), nor while it has no container and its newest
    /// deployment is still under way (it will have one). The error names
    /// the service that has no container and none coming.
    fn volumes_from_containers(&self, entries: &[String]) -> Result<VolumesFrom, String> {
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            let (service, mode) = match entry.split_once(':') {
                Some((service, mode)) => (service, Some(mode)),
                None => (entry.as_str(), None),
            };
            let svc = self.services.get(service);
            if svc.is_some_and(|s| s.busy) {
                return Ok(VolumesFrom::NotNow(format!(
                    "{service} is busy (its containers may be being replaced)"
                )));
            }
            let name = format!("{}{service}", self.cfg.prefix);
            let Some(c) = self
                .observed
                .iter()
                .find(|c| c.service == service && c.name == name)
            else {
                if let Some(s) = svc.filter(|s| !s.current.status.is_terminal()) {
                    return Ok(VolumesFrom::NotNow(format!(
                        "{service} has no container yet: its deployment {} is {}",
                        s.current.id, s.current.status
                    )));
                }
                return Err(format!(
                    "volumes_from: service {service} has no container on this node \
                     ({name}) to take volumes from; deploy or start {service} first"
                ));
            };
            ids.push(match mode {
                Some(mode) => format!("{}:{mode}", c.id),
                None => c.id.clone(),
            });
        }
        Ok(VolumesFrom::Ids(ids))
    }

    /// The node policy right before a create or a start: a host path under
    /// `allowed_host_paths` must still lead there (a symlink planted since
    /// the spec was accepted, e.g. by a container that mounts the allowed
    /// directory, is caught here). Resolved through the file seam
    /// (`Env::files`), on the loop like the store's reads: a few `stat`s
    /// per path.
    pub(super) fn policy_at_create(
        &self,
        spec: &berth_core::runtime::CreateSpec,
    ) -> Result<(), String> {
        let policy = Arc::clone(&self.cfg.node_policy.borrow());
        let violations = policy.check_create(spec, self.env.files());
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
    pub(super) fn refuse_create(&mut self, service: &str, reason: String) {
        tracing::warn!(service, %reason, "container create refused");
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.back_off();
        // A deployment waiting for its dependencies is not what was
        // refused (the target's container was): it keeps waiting.
        let waiting = svc.current.waiting;
        let deploying = !svc.current.status.is_terminal() && !svc.current.applied && !waiting;
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
        if !waiting
            && !self
                .services
                .get(service)
                .is_some_and(|s| s.current.status.is_terminal())
        {
            self.set_status(service, Status::Failed, reason, None);
        }
    }
}

/// The containers a create takes volumes from, or why not this round.
enum VolumesFrom {
    /// `volumes_from` with each service replaced by its container's id.
    Ids(Vec<String>),
    /// A service named is being replaced, or its deployment has not made
    /// its container yet: planned again later.
    NotNow(String),
}
