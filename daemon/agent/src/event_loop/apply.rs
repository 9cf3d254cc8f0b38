//! Applies: a request becomes PENDING records (images resolved first), each
//! record is committed durably before anything acts on it, and a record's
//! status changes are written and announced here. Never acts on the engine:
//! reconcile turns committed records into jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_core::dto::{ApplyRequest, ApplyResponse, ApplyResult, Change, spec_diff};
use berth_core::event::EventKind;
use berth_core::hash::{create_spec, spec_hash, with_inputs};
use berth_core::record::{DeployAction, Deployment, RECORD_SCHEMA_VERSION, Source, Status};
use berth_core::runtime::RuntimeError;
use berth_core::spec::{PullPolicy, ServiceSpec};
use berth_core::store::{META_SCHEMA_VERSION, ServiceMeta, Store};
use berth_core::waves::Readiness;

use super::{Agent, PendingApply};
use crate::jobs::{ConfigRead, EnvFileRead, Job};
use crate::state::{Svc, last_change_of};
use crate::{AgentError, Env, Reply};

/// What an apply read from the host for one service: its config sources
/// and the digest of its env files' values.
pub(super) struct HostReads {
    pub(super) configs: Vec<ConfigRead>,
    pub(super) env_file: EnvFileRead,
}

impl<E: Env> Agent<E> {
    pub(super) fn begin_apply(
        &mut self,
        mut req: ApplyRequest,
        source: Source,
        actor: String,
        dry_run: bool,
        reply: Reply<ApplyResponse>,
    ) {
        // All-or-nothing checks first.
        let mut seen = BTreeSet::new();
        for spec in &req.services {
            if let Some((i, m)) = spec
                .config
                .iter()
                .enumerate()
                .find(|(_, m)| !m.source.starts_with('/'))
            {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: format!(
                        "{}: config[{i}].source {:?} must be an absolute host path (berthctl resolves a relative one against the spec file's directory)",
                        spec.name, m.source
                    ),
                    details: vec![],
                }));
                return;
            }
            if let Some((i, p)) = spec
                .env_file
                .iter()
                .enumerate()
                .find(|(_, p)| !p.starts_with('/'))
            {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: format!(
                        "{}: env_file[{i}] {p:?} must be an absolute host path (berthctl resolves a relative one against the spec file's directory)",
                        spec.name
                    ),
                    details: vec![],
                }));
                return;
            }
            if !seen.insert(spec.name.clone()) {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: format!("service {} appears twice in one apply", spec.name),
                    details: vec![],
                }));
                return;
            }
            if self.unreadable.contains_key(&spec.name) {
                let (path, error) = &self.unreadable[&spec.name];
                let _ = reply.send(Err(AgentError::Refused {
                    service: spec.name.clone(),
                    reason: format!(
                        "has an unreadable record {path} ({error}); move it away first"
                    ),
                }));
                return;
            }
            if let Some(svc) = self.services.get(&spec.name) {
                if !svc.is_deleted() && !svc.meta.source.same_owner(&source) && !req.force {
                    let _ = reply.send(Err(AgentError::Conflict {
                        service: spec.name.clone(),
                        owner: svc.meta.source.describe(),
                    }));
                    return;
                }
                if svc.meta.held && !dry_run {
                    let _ = reply.send(Err(AgentError::Refused {
                        service: spec.name.clone(),
                        reason: "is held; `berthctl release` it first".into(),
                    }));
                    return;
                }
            }
        }
        // Dependencies and outputs that exist nowhere, and cycles, refuse
        // the apply; else its services are recorded dependencies first.
        if let Err(e) = self.order_wave(&mut req.services) {
            let _ = reply.send(Err(e));
            return;
        }
        let apply_id = self.next_apply_id;
        self.next_apply_id += 1;
        let images = req
            .services
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.image.clone(),
                    self.pull_now(s, &source, dry_run),
                )
            })
            .collect();
        let configs = req.services.iter().map(|s| s.config.clone()).collect();
        let env_files = req.services.iter().map(|s| s.env_file.clone()).collect();
        self.pending.insert(
            apply_id,
            PendingApply {
                req,
                source,
                actor,
                dry_run,
                reply: Some(reply),
            },
        );
        self.spawn(Job::Resolve {
            apply_id,
            images,
            configs,
            env_files,
        });
    }

    /// `spec`'s `pull:` as this apply applies it. `always` pulls on an
    /// apply that names the service: an operator's or an orchestrator's
    /// (each Heat document once: one seen before is answered without an
    /// apply), or a spec file whose service changed. A spec directory
    /// read again unchanged (berthd's start, a rescan, SIGHUP) is a resync
    /// and a dry run changes nothing: both take the image the engine has.
    fn pull_now(&self, spec: &ServiceSpec, source: &Source, dry_run: bool) -> PullPolicy {
        let resync = matches!(source, Source::SpecDir { .. })
            && self
                .services
                .get(&spec.name)
                .is_some_and(|s| !s.is_deleted() && s.current.spec == *spec);
        match spec.pull {
            PullPolicy::Always if dry_run || resync => PullPolicy::Missing,
            pull => pull,
        }
    }

    pub(super) fn finish_apply(
        &mut self,
        apply_id: u64,
        results: Vec<Result<crate::images::Resolved, RuntimeError>>,
        configs: Vec<Vec<ConfigRead>>,
        env_files: Vec<EnvFileRead>,
    ) {
        let Some(mut pending) = self.pending.remove(&apply_id) else {
            return;
        };
        // All or nothing: a source that cannot be reloaded in place refuses
        // the whole apply before anything is recorded.
        let problems: Vec<String> =
            pending
                .req
                .services
                .iter()
                .zip(&configs)
                .flat_map(|(spec, reads)| {
                    spec.config.iter().zip(reads).enumerate().filter_map(
                        move |(i, (m, (_, kind)))| {
                            let problem = berth_core::spec::config_source_problem(m, (*kind)?)?;
                            Some(format!("{}: config[{i}]: {problem}", spec.name))
                        },
                    )
                })
                .collect();
        if !problems.is_empty() {
            if let Some(reply) = pending.reply.take() {
                let _ = reply.send(Err(AgentError::Invalid {
                    reason: problems.join("; "),
                    details: problems,
                }));
            }
            return;
        }
        let mut out = ApplyResponse {
            dry_run: pending.dry_run,
            results: Vec::new(),
        };
        let mut error = None;
        let mut configs = configs.into_iter();
        let mut env_files = env_files.into_iter();
        let services = &pending.req.services;
        for (i, (spec, image)) in services.iter().zip(results).enumerate() {
            let reads = configs.next().unwrap_or_default();
            let env_file = env_files.next().unwrap_or(Ok(None));
            match self.apply_one(
                spec,
                image,
                HostReads {
                    configs: reads,
                    env_file,
                },
                &pending.source,
                &pending.actor,
                pending.dry_run,
            ) {
                Ok(r) => out.results.push(r),
                Err(e) if out.results.is_empty() => {
                    error = Some(e);
                    break;
                }
                // Records already made stay (each is whole on disk and its
                // deployment runs): the error says which, so nobody has to
                // guess what this apply left behind.
                Err(e) => {
                    let done = out
                        .results
                        .iter()
                        .map(|r| match &r.deployment {
                            Some(d) if r.change != Change::Unchanged => {
                                format!("{} ({})", r.service, d.id)
                            }
                            _ => format!("{} (unchanged)", r.service),
                        })
                        .collect();
                    let not_applied = services[i + 1..].iter().map(|s| s.name.clone()).collect();
                    tracing::error!(
                        error = berth_core::error_chain(&e),
                        service = spec.name,
                        "an apply stopped part way"
                    );
                    error = Some(AgentError::PartlyApplied {
                        failed: spec.name.clone(),
                        cause: Box::new(e),
                        done,
                        not_applied,
                    });
                    break;
                }
            }
        }
        if let Some(reply) = pending.reply.take() {
            let _ = reply.send(match error {
                Some(e) => Err(e),
                None => Ok(out),
            });
        }
    }

    pub(super) fn apply_one(
        &mut self,
        spec: &ServiceSpec,
        image: Result<crate::images::Resolved, RuntimeError>,
        HostReads {
            configs: reads,
            env_file,
        }: HostReads,
        source: &Source,
        actor: &str,
        dry_run: bool,
    ) -> Result<ApplyResult, AgentError> {
        let states: Vec<berth_core::reconfig::ConfigState> =
            reads.into_iter().map(|(state, _)| state).collect();
        let config_errors: Vec<String> = states.iter().filter_map(|s| s.error.clone()).collect();
        let existing = self.services.get(&spec.name).filter(|s| !s.is_deleted());
        let old_spec = existing.map(|s| s.current.spec.redacted());
        let diff = spec_diff(old_spec.as_ref(), &spec.redacted());
        // A spec with dependencies or inputs runs once they hold, with its
        // inputs resolved then (`waves.rs`); until then its record waits.
        let (inputs, waits_for) = match super::waves::in_waves(spec).then(|| self.readiness(spec)) {
            None => (BTreeMap::new(), None),
            Some(Readiness::Ready(inputs)) => (inputs, None),
            Some(Readiness::Waiting(why)) => (BTreeMap::new(), Some(why)),
        };
        // The digest of the values the env files hold now (never the values).
        let env_file_digest = env_file.as_ref().ok().cloned().flatten();
        // (unreachable engine, message)
        let (hash, resolved, failure): (String, Option<_>, Option<(bool, String)>) = match &image {
            Ok(resolved) => {
                let id = &resolved.id;
                let outputs_dir = self.outputs_dir(&spec.name);
                let mut create = with_inputs(
                    create_spec(spec, id, Some(outputs_dir.to_string_lossy().as_ref())),
                    &inputs,
                    "",
                );
                create.env_file_digest = env_file_digest.clone();
                let failure = match &env_file {
                        Err(e) => Some((
                            false,
                            format!("{}: {e}; nothing was changed", spec.name),
                        )),
                        Ok(_) => (!config_errors.is_empty()).then(|| {
                            (
                                false,
                                format!(
                                    "{}; nothing was changed (mount a source that exists: berth never creates one)",
                                    config_errors.join("; ")
                                ),
                            )
                        }),
                    };
                let hash = if waits_for.is_some() {
                    String::new()
                } else {
                    spec_hash(&create)
                };
                (hash, Some(resolved.clone()), failure)
            }
            // An env file that cannot be used fails the deployment
            // even while the engine is away (nothing would run it).
            Err(e) => (
                String::new(),
                None,
                Some(match &env_file {
                    Err(ef) => (false, format!("{}: {ef}; nothing was changed", spec.name)),
                    Ok(_) => (e.is_unreachable() || e.is_transient_pull(), e.to_string()),
                }),
            ),
        };
        // Content that changed under an unchanged spec is the watcher's
        // business: it reconfigures by the policy (marked below).
        let mut config_moved = false;
        let change = match existing {
            None => Change::Created,
            Some(svc) => {
                let same_source = svc.meta.source == *source;
                // An apply while a delete waits for its `pre_delete`
                // hooks is a change: it supersedes the delete.
                let delete_waits =
                    svc.current.action == DeployAction::Delete && !svc.current.applied;
                let same_spec = svc.current.spec == *spec
                    && svc.current.status != Status::Failed
                    && !delete_waits
                    && same_source;
                if waits_for.is_some() || svc.current.waiting {
                    // Still waiting, or waiting for a dependency's new run:
                    // the same spec is the same deployment (one whose input
                    // moves gets a new one from berthd then).
                    if same_spec && failure.is_none() {
                        Change::Unchanged
                    } else {
                        Change::Updated
                    }
                } else if failure.is_none() && svc.target.spec_hash == hash {
                    config_moved = !spec.config.is_empty()
                        && berth_core::reconfig::combined_hash(&states) != svc.target.config_hash;
                    if same_spec && svc.current.inputs == inputs {
                        Change::Unchanged
                    } else {
                        Change::PolicyOnly
                    }
                } else {
                    Change::Updated
                }
            }
        };
        // A spec rolled back is not tried again until another one comes.
        let failure = match failure {
            None if change == Change::Updated && !dry_run && waits_for.is_none() => self
                .rolled_back_refusal(spec, &hash)
                .map(|why| (false, why)),
            other => other,
        };
        let mut result = ApplyResult {
            service: spec.name.clone(),
            change,
            diff,
            deployment: None,
        };
        if dry_run || change == Change::Unchanged {
            if change == Change::Unchanged {
                result.deployment = existing.map(|s| s.current.redacted());
                if config_moved && !dry_run {
                    self.mark_config_dirty(&spec.name);
                }
            }
            return Ok(result);
        }
        let action = if change == Change::Created {
            DeployAction::Create
        } else {
            DeployAction::Update
        };
        let mut record = self.new_record(spec.clone(), action, source.clone(), actor);
        if let Some(resolved) = resolved {
            record.image_id = Some(resolved.id);
            record.image_digest = resolved.digest;
        }
        record.spec_hash = hash;
        record.inputs = inputs;
        record.env_file_digest = env_file_digest;
        match (change, self.services.get(&spec.name)) {
            // Same container: its config is what it was; the watcher
            // compares the content against that.
            (Change::PolicyOnly, Some(svc)) => {
                record.config = svc.target.config.clone();
                record.config_hash = svc.target.config_hash.clone();
                record.config_identity = svc.target.config_identity.clone();
            }
            _ => {
                record.config_hash = berth_core::reconfig::combined_hash(&states);
                record.config_identity = berth_core::reconfig::identity(spec, &states);
                record.config = states;
            }
        }
        let pull_waits = image.as_ref().is_err_and(RuntimeError::is_transient_pull);
        match failure {
            // Its registry is away or failing: the deployment goes on
            // trying the pull (`resolve_waiting`) until `pull_timeout`.
            Some((true, e)) if pull_waits => {
                record.status = Status::InProgress;
                record.status_reason = self.pull_retry_reason(&e, 1);
                record.waiting = waits_for.is_some();
            }
            // The engine is away: the deployment waits for it rather than
            // failing, and its image is resolved once the engine answers.
            Some((true, e)) => {
                record.status = Status::Pending;
                record.status_reason = format!("waiting for the container engine: {e}");
                // Its dependencies are judged before its image is resolved.
                record.waiting = waits_for.is_some();
            }
            Some((false, e)) => {
                record.status = Status::Failed;
                record.status_reason = e;
            }
            None if waits_for.is_some() => {
                record.waiting = true;
                record.status_reason = waits_for.unwrap_or_default();
            }
            None if change == Change::PolicyOnly => {
                record.applied = true;
                record.status = Status::InProgress;
            }
            None => {}
        }
        let record = self.commit_record(record, Some(source.clone()))?;
        if pull_waits {
            self.start_pull_retry(&record.service);
        }
        if change == Change::PolicyOnly && config_moved {
            self.mark_config_dirty(&record.service);
        }
        result.deployment = Some(record.redacted());
        Ok(result)
    }

    /// A new record for `service` at the next generation (not yet saved).
    pub(super) fn new_record(
        &self,
        spec: ServiceSpec,
        action: DeployAction,
        source: Source,
        actor: &str,
    ) -> Deployment {
        let generation = self
            .services
            .get(&spec.name)
            .map(|s| s.meta.generation)
            .unwrap_or(0)
            + 1;
        let now = self.env.now_ms();
        Deployment {
            schema_version: RECORD_SCHEMA_VERSION,
            id: Deployment::make_id(&spec.name, generation),
            service: spec.name.clone(),
            generation,
            action,
            source,
            actor: actor.to_string(),
            spec,
            image_id: None,
            image_digest: None,
            exec_container: None,
            spec_hash: String::new(),
            config_hash: None,
            config: Vec::new(),
            config_identity: None,
            config_change: None,
            status: Status::Pending,
            status_reason: String::new(),
            outputs: Default::default(),
            created_at_ms: now,
            updated_at_ms: now,
            applied: false,
            rollback_of: None,
            hook: None,
            pre_update_passed: false,
            inputs: Default::default(),
            waiting: false,
            env_file_digest: None,
        }
    }

    /// Saves a new record, makes it current (and the target unless it failed
    /// before reaching the engine), prunes history, emits the event.
    pub(super) fn commit_record(
        &mut self,
        record: Deployment,
        source: Option<Source>,
    ) -> Result<Deployment, AgentError> {
        self.supersede_waiting(&record.service, record.generation);
        let store = self.env.store();
        store.save_record(&record)?;
        let name = record.service.clone();
        let failed_early = record.status == Status::Failed && !record.applied;
        // A deployment waiting for its dependencies is not the target yet
        // either: what runs stays as it is until it is released.
        let keeps_target = failed_early || record.waiting;
        let prev = self.services.remove(&name);
        let mut meta = match &prev {
            Some(p) => p.meta.clone(),
            None => ServiceMeta {
                schema_version: META_SCHEMA_VERSION,
                service: name.clone(),
                generation: 0,
                target_generation: 0,
                held: false,
                source: record.source.clone(),
                last_config_change: Some(0),
            },
        };
        meta.generation = record.generation;
        if record.config_change.is_some() {
            meta.last_config_change = Some(record.generation);
        }
        if let Some(source) = source {
            meta.source = source;
        }
        let record = Arc::new(record);
        let target = match (&prev, keeps_target) {
            (Some(p), true) => Arc::clone(&p.target),
            _ => Arc::clone(&record),
        };
        meta.target_generation = target.generation;
        if let Err(e) = store.save_meta(&meta) {
            if let Some(p) = prev {
                self.services.insert(name, p);
            }
            return Err(e.into());
        }
        // One waiting for its dependencies is judged once released (which
        // gives it its gate).
        let gate = if record.status.is_terminal() || record.waiting {
            None
        } else {
            Some(self.new_gate(&record, !record.applied))
        };
        let create = self.create_request(&target);
        // What the watcher watches follows the target's sources and
        // deletions; most records change neither.
        let watches_change = prev.as_ref().is_none_or(|p| {
            p.target.spec.config != target.spec.config
                || (p.current.action == DeployAction::Delete)
                    != (record.action == DeployAction::Delete)
        });
        let mut svc = Svc {
            meta,
            current: Arc::clone(&record),
            target,
            create,
            busy: prev.as_ref().is_some_and(|p| p.busy),
            retry_at: None,
            pull_retry: None,
            failures: 0,
            looked_again: false,
            gate,
            last_restarts: prev.as_ref().map(|p| p.last_restarts).unwrap_or(0),
            crash_loop: false,
            config: prev.map(|p| p.config).unwrap_or_default(),
            hooks: Default::default(),
        };
        if record.config_change.is_some() {
            svc.config.last_change = last_change_of(&record);
        }
        if failed_early && svc.target.generation == record.generation {
            // A brand-new service whose first deployment failed: nothing runs.
            svc.create = None;
        }
        self.services.insert(name.clone(), svc);
        if let Err(e) = store.prune(&name, self.cfg.history_limit) {
            tracing::warn!(service = name, error = %e, "pruning history failed");
        }
        if watches_change {
            self.refresh_watches();
        }
        self.emit_status(&record);
        Ok(Arc::unwrap_or_clone(record))
    }

    pub(super) fn emit_status(&mut self, record: &Deployment) {
        self.emit(EventKind::DeploymentStatus {
            service: record.service.clone(),
            deployment: record.id.clone(),
            action: record.action,
            status: record.status,
            reason: record.status_reason.clone(),
            actor: record.actor.clone(),
        });
    }

    /// Moves the current record of `service` to `status`.
    pub(super) fn set_status(
        &mut self,
        service: &str,
        status: Status,
        reason: String,
        outputs: Option<berth_core::record::Outputs>,
    ) {
        let now = self.env.now_ms();
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        if svc.current.status == status && svc.current.status_reason == reason && outputs.is_none()
        {
            return;
        }
        svc.edit_current(|d| {
            d.status = status;
            d.status_reason = reason;
            d.updated_at_ms = now;
            if let Some(o) = outputs {
                d.outputs = o;
            }
        });
        if status.is_terminal() {
            svc.gate = None;
        }
        let record = Arc::clone(&svc.current);
        if let Err(e) = self.env.store().save_record(&record) {
            tracing::error!(service, error = %e, "cannot save record status");
        }
        self.emit_status(&record);
        if status.is_terminal()
            && matches!(
                record.spec.image,
                berth_core::spec::ImageSource::Build { .. }
            )
        {
            self.collect_images(service);
        }
        if status.is_terminal() {
            self.prune_after_deployment(&record.spec.image);
        }
    }

    /// Built images of `service` that no record in its (pruned) history uses
    /// any more are removed, so rebuilds do not fill the disk.
    pub(super) fn collect_images(&mut self, service: &str) {
        let keep = match self.env.store().history(service, usize::MAX) {
            Ok(h) => h.into_iter().filter_map(|d| d.image_id).collect(),
            Err(e) => {
                tracing::warn!(service, error = %e, "cannot read history; no image garbage collection");
                return;
            }
        };
        self.spawn(Job::ImageGc {
            service: service.to_string(),
            keep,
        });
    }
}
