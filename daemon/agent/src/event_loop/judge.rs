//! Judging deployments in flight: settle time, health, crash loops and
//! tasks' exits decide COMPLETE or FAILED; WAITING records whose cause is
//! gone resume. A deployment WAITING_HOOK is not judged, and an update
//! with `post_update` hooks judged COMPLETE waits for them instead
//! (`hook_points.rs`). Writes statuses, never acts on the engine.

use std::sync::Arc;
use std::time::Duration;

use berth_core::event::EventKind;
use berth_core::record::{DeployAction, Status};
use berth_core::runtime::{ContainerState, Health, RuntimeError};
use berth_core::spec::PullPolicy;
use berth_core::store::Store;
use tokio::time::Instant;

use super::{Agent, CRASH_LOOP_RESTARTS};
use crate::Env;
use crate::jobs::Job;
use berth_core::judge::{Verdict, judge};

use crate::state::HealthGate;

impl<E: Env> Agent<E> {
    /// Moves IN_PROGRESS records forward from what the engine shows.
    pub(super) fn judge(&mut self) {
        let now = Instant::now();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            // A container still carrying an aside name is not in place:
            // set aside, or on its way back (`plan()` starts it before it
            // is renamed). Nothing to judge until it is.
            let Some(canonical) = self
                .services
                .get(&name)
                .map(|s| s.container_name(&self.cfg.prefix))
            else {
                continue;
            };
            let container = self
                .container_of(&name)
                .cloned()
                .filter(|c| berth_core::plan::aside_generation_of(&canonical, &c.name).is_none());
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            // Crash-loop flag from the restart count.
            if let Some(c) = &container
                && c.spec_hash.as_deref() == Some(svc.target.spec_hash.as_str())
            {
                if c.restart_count > svc.last_restarts {
                    svc.crash_loop = c.restart_count >= CRASH_LOOP_RESTARTS
                        && c.state == ContainerState::Restarting
                        || c.restart_count >= svc.last_restarts + CRASH_LOOP_RESTARTS;
                } else if c.state == ContainerState::Running && c.health != Some(Health::Unhealthy)
                {
                    svc.crash_loop = false;
                }
                svc.last_restarts = c.restart_count;
            }
            // A config change's reaction waiting to run (again) is judged
            // once it has: a restart or a signal leaves no trace on the
            // container to see. A deployment WAITING_HOOK is not judged:
            // before its update (the container is the old one), after it
            // (judged already), or before its delete.
            if svc.busy
                || svc.current.status.is_terminal()
                || svc.config.resume
                || svc.current.status == Status::WaitingHook
                || svc.current.waiting
            {
                continue;
            }
            // An `exec_in` task runs in its service's container, not in
            // one of its own: nothing of the engine's to judge it by.
            // (A delete has nothing to run: it is judged as any other.)
            if let Some(target) = svc.current.spec.exec_in.clone()
                && svc.current.action != DeployAction::Delete
            {
                self.run_exec_task(&name, &target);
                continue;
            }
            // A deployment resumed after a crash whose container was in fact
            // created: it reached the engine. (Made from its spec and its
            // config: a recreate by config change has the old spec hash.)
            if !svc.current.applied
                && svc.current.generation == svc.target.generation
                && svc.current.action != DeployAction::Delete
                && container
                    .as_ref()
                    .is_some_and(|c| crate::state::made_from(&svc.current, c))
            {
                svc.edit_current(|d| d.applied = true);
                let record = Arc::clone(&svc.current);
                if let Err(e) = self.env.store().save_record(&record) {
                    tracing::error!(service = name, error = %e, "cannot save record");
                }
            }
            let Some(svc) = self.services.get_mut(&name) else {
                continue;
            };
            let verdict = judge(
                &svc.current,
                svc.gate.as_mut(),
                container.as_ref(),
                now.into_std(),
            );
            match verdict {
                Verdict::Wait => {}
                Verdict::Done(status, reason) => {
                    let Some(reason) = self.volumes_before_complete(&name, status, reason) else {
                        continue;
                    };
                    if status == Status::Failed {
                        self.fail_or_roll_back(&name, reason);
                        continue;
                    }
                    // An update with `post_update` hooks runs them first.
                    if status == Status::Complete && self.enter_post_update(&name) {
                        continue;
                    }
                    // A rollback's reason says what it undid; it stays.
                    let reason = match self.services.get(&name) {
                        Some(s)
                            if reason.is_empty() && s.current.action == DeployAction::Rollback =>
                        {
                            s.current.status_reason.clone()
                        }
                        _ => reason,
                    };
                    self.set_status(&name, status, reason, None);
                    if status == Status::Complete
                        && self
                            .services
                            .get(&name)
                            .is_some_and(|s| s.current.action == DeployAction::Delete)
                    {
                        self.emit(EventKind::ServiceDeleted {
                            service: name.clone(),
                        });
                    }
                }
                Verdict::Collect(c) => {
                    if let Some(svc) = self.services.get_mut(&name) {
                        svc.busy = true;
                        let job = Job::Collect {
                            service: name.clone(),
                            container: c.id.clone(),
                            exit_code: c.exit_code,
                            outputs: svc.current.spec.outputs.clone(),
                            outputs_dir: Some(self.cfg.state_dir.join("outputs").join(&name)),
                        };
                        self.spawn(job);
                    }
                }
            }
        }
    }

    /// An `exec_in` task's deployment in progress: its command runs in
    /// `target`'s container, as it is now (the wave released it once
    /// `target` was started). A deployment cut short by a berthd restart
    /// runs again, as paunch's execs do on every run.
    fn run_exec_task(&mut self, service: &str, target: &str) {
        // The engine was away at the last try: not before the backoff ends.
        if self
            .services
            .get(service)
            .and_then(|s| s.retry_at)
            .is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        let container = self
            .container_of(target)
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.id.clone());
        let Some(container) = container else {
            let reason =
                format!("{target} has no running container to exec in; apply again once it runs");
            self.set_status(service, Status::Failed, reason, None);
            return;
        };
        if self
            .services
            .get(service)
            .is_some_and(|s| s.current.status != Status::InProgress)
        {
            self.set_status(service, Status::InProgress, String::new(), None);
        }
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let spec = &svc.current.spec;
        let options = berth_core::runtime::ExecOptions {
            user: spec.user.clone(),
            env: spec
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", v.value))
                .collect(),
            privileged: spec.privileged,
        };
        let job = Job::ExecTask {
            service: service.to_string(),
            generation: svc.current.generation,
            container: container.clone(),
            argv: spec.command.clone().unwrap_or_default(),
            options,
        };
        svc.busy = true;
        svc.edit_current(|d| {
            d.applied = true;
            d.exec_container = Some(container.clone());
        });
        let record = Arc::clone(&svc.current);
        if let Err(e) = self.env.store().save_record(&record) {
            tracing::error!(service, error = %e, "cannot save record");
        }
        tracing::info!(
            service,
            target,
            container,
            "running the exec task in its service's container"
        );
        self.emit(EventKind::ContainerAction {
            service: service.to_string(),
            action: "exec".into(),
            container,
            reason: format!(
                "exec_in {target}: {}",
                record.spec.command.as_deref().unwrap_or_default().join(" ")
            ),
        });
        self.spawn(job);
    }

    /// Deployments recorded while the engine was away: resolve their images now.
    pub(super) fn resolve_waiting(&mut self) {
        let waiting: Vec<(String, u64, berth_core::spec::ImageSource, PullPolicy)> = self
            .services
            .values()
            .filter(|s| {
                // Recorded while the engine was away (PENDING), or retrying
                // the pull of its image (IN_PROGRESS, nothing created yet).
                (s.current.status == Status::Pending
                    || s.current.status == Status::InProgress && !s.current.applied)
                    && s.current.image_id.is_none()
                    && !s.current.waiting
                    && !s.busy
                    && s.retry_at.is_none_or(|t| Instant::now() >= t)
            })
            .map(|s| {
                (
                    s.meta.service.clone(),
                    s.current.generation,
                    s.current.spec.image.clone(),
                    // The apply that recorded it could not pull yet: an
                    // `always` is still that apply's.
                    s.current.spec.pull,
                )
            })
            .collect();
        for (service, generation, image, pull) in waiting {
            if let Some(svc) = self.services.get_mut(&service) {
                svc.busy = true;
            }
            self.spawn(Job::ResolveRecord {
                service,
                generation,
                image,
                pull,
            });
        }
    }

    /// The image of a waiting deployment resolved (or not).
    pub(super) fn resolved_record(
        &mut self,
        service: &str,
        generation: u64,
        result: Result<crate::images::Resolved, RuntimeError>,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.busy = false;
        if svc.current.generation != generation
            || !matches!(svc.current.status, Status::Pending | Status::InProgress)
            || svc.current.image_id.is_some()
        {
            return;
        }
        match result {
            Err(e) if e.is_unreachable() => {
                svc.retry_at = Some(Instant::now() + Duration::from_secs(2));
            }
            Err(e) if e.is_transient_pull() => self.pull_failed_again(service, &e),
            Err(e) => {
                svc.pull_retry = None;
                self.fail_early(service, e.to_string())
            }
            Ok(resolved) => {
                let crate::images::Resolved { id, digest, .. } = resolved;
                let Some(current) = self.services.get(service).map(|s| Arc::clone(&s.current))
                else {
                    return;
                };
                let hash = self.record_hash(&current, &id);
                let Some(svc) = self.services.get_mut(service) else {
                    return;
                };
                let already_runs = self
                    .observed
                    .iter()
                    .any(|c| c.service == service && c.spec_hash.as_deref() == Some(hash.as_str()));
                svc.pull_retry = None;
                let current = Arc::make_mut(&mut svc.current);
                current.image_id = Some(id);
                current.image_digest = digest;
                current.spec_hash = hash;
                current.status_reason.clear();
                if already_runs {
                    current.applied = true;
                    current.status = Status::InProgress;
                }
                // Judged from now: a wait for the engine or the registry
                // does not eat into its health timeout.
                svc.gate = Some(HealthGate::new(
                    !already_runs,
                    Instant::now().into_std(),
                    svc.current.spec.update.health_timeout,
                ));
                svc.target = Arc::clone(&svc.current);
                let record = Arc::clone(&svc.current);
                let create = self.create_request(&record);
                if let Some(svc) = self.services.get_mut(service) {
                    svc.create = create;
                }
                if let Err(e) = self.env.store().save_record(&record) {
                    tracing::error!(service, error = %e, "cannot save record");
                }
                self.emit_status(&record);
            }
        }
    }
}
