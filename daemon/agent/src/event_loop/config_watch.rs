//! The config-watch side of the loop: which sources are watched, reading
//! them off the loop, and RECONFIGURE records with their reactions.
//!
//! A watcher event only marks services dirty. A dirty service is read when
//! it is idle (no job, no deployment in flight, not held) and the engine
//! answers; the reading is compared with the newest record's
//! ([`berth_core::reconfig::decide`]), and a real change makes one
//! RECONFIGURE record whose reaction runs like any other job. Never reads
//! a file on the loop: reads go through `Env::files` in a job.

use berth_core::dto::VerbResponse;
use berth_core::event::{EVENT_FILES_MAX, EventKind};
use berth_core::reconfig::{
    ConfigChange, ConfigState, Decision, Reaction, SourceChange, combined_hash, decide, identity,
};
use berth_core::record::{DeployAction, Deployment, Outputs, Status};
use berth_core::runtime::RuntimeError;
use berth_core::spec::{DesiredState, Kind};
use berth_core::store::Store;
use berth_core::watch::{WatchEvent, WatchSpec, Watcher};
use tokio::time::Instant;

use super::Agent;
use crate::jobs::{ConfigRead, Job};
use crate::state::{ConfigTrack, Svc, config_baseline, last_change_of};
use crate::{AgentError, Env, Reply};

/// Who the records of changes berthd saw itself name.
const WATCHER_ACTOR: &str = "config-watch";

impl<E: Env> Agent<E> {
    /// At load: a service with config is read once (changes made while
    /// berthd was down); an interrupted reconfigure is resumed. Its last
    /// config change is the current record, or the one its meta names; a
    /// meta from before berth kept that costs one read of the history.
    pub(super) fn load_config_track(&self, svc: &mut Svc) {
        if svc.target.spec.config.is_empty() {
            svc.config = ConfigTrack::default();
            return;
        }
        let store = self.env.store();
        let service = svc.meta.service.as_str();
        let last = if svc.current.config_change.is_some() {
            last_change_of(&svc.current)
        } else {
            match svc.meta.last_config_change {
                Some(0) => None,
                // Pruned from the history: nothing left to show.
                Some(generation) => store
                    .record(service, generation)
                    .ok()
                    .flatten()
                    .as_ref()
                    .and_then(last_change_of),
                None => match store.history(service, usize::MAX) {
                    Ok(history) => {
                        let newest = history.iter().find(|d| d.config_change.is_some());
                        // Kept from the next record on (the meta is written then).
                        svc.meta.last_config_change = Some(newest.map_or(0, |d| d.generation));
                        newest.and_then(last_change_of)
                    }
                    Err(e) => {
                        tracing::warn!(service, error = %e, "cannot read history; its last config change is not shown");
                        None
                    }
                },
            }
        };
        let mut track = ConfigTrack::new(true, last);
        // Not while it waits for its `pre_update` hooks: they run first.
        track.resume = svc.current.action == DeployAction::Reconfigure
            && !svc.current.status.is_terminal()
            && svc.current.status != Status::WaitingHook
            && !svc.current.applied;
        svc.config = track;
    }

    /// Tells the watcher the sources of every live service (only when the
    /// set changed).
    pub(super) fn refresh_watches(&mut self) {
        if self.watch_events.is_none() {
            return;
        }
        let mut want = Vec::new();
        for (name, svc) in &self.services {
            // Deleted, or being deleted: nothing to react to any more (a
            // delete waiting for, or refused by, its `pre_delete` hooks
            // has not begun).
            if svc.current.action == DeployAction::Delete && svc.current.applied {
                continue;
            }
            for (i, m) in svc.target.spec.config.iter().enumerate() {
                want.push(WatchSpec {
                    key: format!("{name}#{i}"),
                    source: m.source.clone().into(),
                });
            }
        }
        if want == self.watching {
            return;
        }
        match self.env.watcher().set(want.clone()) {
            Ok(()) => self.watching = want,
            Err(e) => {
                // The periodic rescan still reads every source.
                tracing::warn!(error = %e, "cannot watch config sources; relying on the periodic rescan");
            }
        }
    }

    pub(super) fn on_watch_event(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Changed { keys } => {
                for key in keys {
                    let service = key.rsplit_once('#').map_or(key.as_str(), |(s, _)| s);
                    self.mark_config_dirty(service);
                }
            }
            WatchEvent::Rescan => {
                let names: Vec<String> = self
                    .services
                    .iter()
                    .filter(|(_, s)| !s.target.spec.config.is_empty())
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in names {
                    self.mark_config_dirty(&n);
                }
            }
        }
    }

    pub(super) fn mark_config_dirty(&mut self, service: &str) {
        if let Some(svc) = self.services.get_mut(service)
            && !svc.target.spec.config.is_empty()
        {
            svc.config.dirty = true;
            self.dirty = true;
        }
    }

    /// `berthctl reconfigure`: answered once the record exists.
    pub(super) fn request_reconfigure(
        &mut self,
        service: &str,
        actor: String,
        reply: Reply<VerbResponse>,
    ) {
        let refuse = |reason: &str| AgentError::Refused {
            service: service.to_string(),
            reason: reason.to_string(),
        };
        let Some(svc) = self.services.get_mut(service).filter(|s| !s.is_deleted()) else {
            let _ = reply.send(Err(AgentError::NoSuchService {
                service: service.to_string(),
            }));
            return;
        };
        if svc.meta.held {
            let _ = reply.send(Err(refuse("is held; `berthctl release` it first")));
            return;
        }
        if svc.target.spec.config.is_empty() {
            let _ = reply.send(Err(refuse(
                "has no config sources (add `config:` to its spec)",
            )));
            return;
        }
        svc.config.forced = true;
        svc.config.dirty = true;
        svc.config.replies.push((actor, reply));
        self.dirty = true;
    }

    /// Starts reads for dirty services that are idle.
    pub(super) fn schedule_config_reads(&mut self) {
        let mut jobs = Vec::new();
        let mut resumes = Vec::new();
        for (name, svc) in self.services.iter_mut() {
            if svc.is_deleted() {
                // Deleted while an operator waited for a reconfigure.
                for (_, reply) in svc.config.replies.drain(..) {
                    let _ = reply.send(Err(AgentError::NoSuchService {
                        service: name.clone(),
                    }));
                }
                svc.config.dirty = false;
                continue;
            }
            if svc.config.resume && !svc.busy && svc.retry_at.is_none_or(|t| Instant::now() >= t) {
                svc.config.resume = false;
                resumes.push(name.clone());
                continue;
            }
            let idle = !svc.busy
                && !svc.meta.held
                && !svc.config.reading
                && svc.current.status.is_terminal()
                && !svc.is_deleted();
            if !svc.config.dirty || !idle {
                continue;
            }
            svc.config.dirty = false;
            svc.config.reading = true;
            let forced = std::mem::take(&mut svc.config.forced);
            jobs.push(Job::ReadConfig {
                service: name.clone(),
                generation: svc.current.generation,
                mounts: svc.target.spec.config.clone(),
                previous: config_baseline(svc).to_vec(),
                forced,
            });
        }
        for name in resumes {
            self.resume_reconfigure(&name);
        }
        for job in jobs {
            self.spawn(job);
        }
    }

    /// A reading came back: compare, record, react.
    pub(super) fn config_read(
        &mut self,
        service: &str,
        generation: u64,
        reads: Vec<ConfigRead>,
        forced: bool,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.config.reading = false;
        if svc.current.generation != generation || svc.is_deleted() || svc.meta.held {
            // Something else happened meanwhile: read again against it.
            svc.config.dirty = !svc.is_deleted();
            svc.config.forced |= forced;
            self.dirty = true;
            return;
        }
        let svc_dirty = svc.config.dirty;
        let replies = if forced {
            std::mem::take(&mut svc.config.replies)
        } else {
            Vec::new()
        };
        let actor = replies
            .first()
            .map(|(a, _)| a.clone())
            .unwrap_or_else(|| WATCHER_ACTOR.to_string());
        let spec = svc.target.spec.clone();
        let old: Vec<ConfigState> = config_baseline(svc).to_vec();
        let states: Vec<ConfigState> = reads.into_iter().map(|(s, _)| s).collect();
        let decision = decide(&spec, &old, &states, forced);
        // Nothing new, and no change came in while reading: no re-plan.
        if decision != Decision::Unchanged || !replies.is_empty() || svc_dirty {
            self.dirty = true;
        }
        let result = match decision {
            Decision::Unchanged => Ok(None),
            Decision::Unreadable { errors } => {
                self.record_unreadable(service, &actor, &old, states, errors)
            }
            Decision::Changed { change, reaction } => {
                self.start_reconfigure(service, &actor, states, change, reaction)
            }
        };
        for (_, reply) in replies {
            let _ = reply.send(match &result {
                Ok(Some(d)) => Ok(VerbResponse {
                    service: service.to_string(),
                    deployment: Some(d.redacted()),
                    message: format!(
                        "reconfiguring {service}: {}",
                        d.config_change
                            .as_ref()
                            .map(|c| c.reaction.clone())
                            .unwrap_or_default()
                    ),
                }),
                Ok(None) => Ok(VerbResponse {
                    service: service.to_string(),
                    deployment: None,
                    message: format!("{service}: config unchanged"),
                }),
                Err(e) => Err(AgentError::Refused {
                    service: service.to_string(),
                    reason: format!("could not be reconfigured: {e}"),
                }),
            });
        }
    }

    /// A source is missing or unreadable: a FAILED record naming it; the
    /// container is left as it was (no restart, no loop: the same error is
    /// not recorded twice).
    fn record_unreadable(
        &mut self,
        service: &str,
        actor: &str,
        old: &[ConfigState],
        states: Vec<ConfigState>,
        errors: Vec<String>,
    ) -> Result<Option<Deployment>, AgentError> {
        let Some(svc) = self.services.get(service) else {
            return Ok(None);
        };
        let target = svc.target.clone();
        let source = svc.meta.source.clone();
        let mut record = self.new_record(
            target.spec.clone(),
            DeployAction::Reconfigure,
            source,
            actor,
        );
        record.same_container_as(&target);
        record.config_identity = target.config_identity.clone();
        record.config_hash = None;
        let change = ConfigChange {
            old_hash: combined_hash(old),
            new_hash: None,
            sources: states
                .iter()
                .filter(|s| s.error.is_some())
                .map(|s| SourceChange {
                    source: s.source.clone(),
                    old_hash: old
                        .iter()
                        .find(|o| o.source == s.source && o.target == s.target)
                        .and_then(|o| o.hash.clone()),
                    new_hash: None,
                    files: Vec::new(),
                    replaced: false,
                })
                .collect(),
            reaction: "none: the container is left as it was".into(),
            plan: None,
            forced: false,
        };
        record.config = states;
        record.config_change = Some(change.clone());
        record.status = Status::Failed;
        record.status_reason = format!(
            "{}; the container is left as it was, and is reconfigured when the source is back",
            errors.join("; ")
        );
        self.emit(EventKind::ConfigChanged {
            service: service.to_string(),
            old_hash: change.old_hash.clone(),
            new_hash: None,
            files: Vec::new(),
            more: 0,
            reaction: errors.join("; "),
        });
        self.commit_record(record, None).map(Some)
    }

    /// Records a RECONFIGURE and starts its reaction.
    fn start_reconfigure(
        &mut self,
        service: &str,
        actor: &str,
        states: Vec<ConfigState>,
        change: ConfigChange,
        reaction: Reaction,
    ) -> Result<Option<Deployment>, AgentError> {
        let Some(svc) = self.services.get(service) else {
            return Ok(None);
        };
        let target = svc.target.clone();
        let spec = target.spec.clone();
        let source = svc.meta.source.clone();
        let files = change.files();
        self.emit(EventKind::ConfigChanged {
            service: service.to_string(),
            old_hash: change.old_hash.clone(),
            new_hash: change.new_hash.clone(),
            more: files.len().saturating_sub(EVENT_FILES_MAX),
            files: files.into_iter().take(EVENT_FILES_MAX).collect(),
            reaction: if change.forced {
                format!("{} (forced by {actor})", change.reaction)
            } else {
                change.reaction.clone()
            },
        });
        let mut record = self.new_record(spec.clone(), DeployAction::Reconfigure, source, actor);
        record.same_container_as(&target);
        record.config_hash = combined_hash(&states);
        record.config_identity = if reaction == Reaction::Recreate {
            identity(&spec, &states)
        } else {
            target.config_identity.clone()
        };
        record.config = states;
        record.config_change = Some(change);
        let quiet = match (&reaction, spec.kind, spec.state) {
            (Reaction::None, _, _) => Some("recorded only (on_change: none)"),
            (_, Kind::Task, _) => Some(
                "a task is not re-run by a config change; its next deployment reads the new config",
            ),
            (Reaction::Restart | Reaction::InPlace(_), _, DesiredState::Stopped) => {
                Some("the service is stopped; it reads the new config when it starts")
            }
            _ => None,
        };
        if let Some(reason) = quiet {
            record.applied = true;
            record.status = Status::Complete;
            record.status_reason = reason.to_string();
            return self.commit_record(record, None).map(Some);
        }
        record.status = Status::InProgress;
        // A restart waits for the `pre_update` hooks (`hook_points.rs`).
        let held = reaction == Reaction::Restart && self.restart_waits_for_hooks(&mut record);
        let record = self.commit_record(record, None)?;
        if !held {
            self.dispatch_reaction(service, &record, &reaction);
        }
        Ok(Some(record))
    }

    /// Starts the job a reaction needs (a recreate needs none: the new
    /// config identity makes the planner replace the container).
    fn dispatch_reaction(&mut self, service: &str, record: &Deployment, reaction: &Reaction) {
        let container = self.container_of(service).cloned();
        let Some(c) = container else {
            // No container: the planner creates one, which sees the new config.
            return;
        };
        let job = match reaction {
            Reaction::Restart => Job::Restart {
                service: service.to_string(),
                container: c.id.clone(),
                name: c.name.clone(),
                reconfigure: Some(record.generation),
            },
            Reaction::InPlace(steps) => Job::Reload {
                service: service.to_string(),
                generation: record.generation,
                container: c.id.clone(),
                steps: steps.clone(),
            },
            Reaction::Recreate | Reaction::None => return,
        };
        if let Some(svc) = self.services.get_mut(service) {
            svc.busy = true;
        }
        self.own_containers
            .insert(c.id.clone(), tokio::time::Instant::now());
        self.spawn(job);
    }

    /// berthd restarted in the middle of a reconfigure: do it again (a
    /// signal or a restart twice is harmless; a missed one is not).
    fn resume_reconfigure(&mut self, service: &str) {
        let Some(svc) = self.services.get(service) else {
            return;
        };
        let record = svc.current.clone();
        let Some(plan) = record.config_change.as_ref().and_then(|c| c.plan.as_ref()) else {
            return;
        };
        let reaction = Reaction::from(plan);
        tracing::info!(service, deployment = record.id, reaction = %reaction.describe(), "resuming an interrupted reconfigure");
        self.dispatch_reaction(service, &record, &reaction);
    }

    /// The engine could not be reached for a config change's reaction: the
    /// record stays IN_PROGRESS, saying why, and the reaction runs again
    /// once the engine answers, with backoff (a signal or a restart twice is
    /// harmless; a missed one is not).
    fn retry_reaction(&mut self, service: &str, error: String) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let backoff = svc.back_off();
        svc.config.resume = true;
        tracing::warn!(service, error, retry_in = ?backoff, "a config change's reaction did not reach the engine; it runs again");
        self.set_status(
            service,
            Status::InProgress,
            format!("waiting for the engine to apply the config change: {error}"),
            None,
        );
        self.request_observe();
    }

    pub(super) fn reconfigure_restarted(
        &mut self,
        service: &str,
        generation: u64,
        error: Option<RuntimeError>,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.busy = false;
        if svc.current.generation != generation {
            return;
        }
        match error {
            Some(e) if e.is_unreachable() => return self.retry_reaction(service, e.to_string()),
            None => {
                svc.reset_backoff();
                svc.edit_current(|d| d.applied = true);
                if let Some(w) = svc.gate.as_mut() {
                    w.settle_again();
                }
                let record = svc.current.clone();
                if let Err(e) = self.env.store().save_record(&record) {
                    tracing::error!(service, error = %e, "cannot save record");
                }
                self.emit(EventKind::ContainerAction {
                    service: service.to_string(),
                    action: "restarted".into(),
                    container: self
                        .container_of(service)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    reason: "config changed (on_change: restart)".into(),
                });
            }
            Some(e) => {
                self.set_status(
                    service,
                    Status::Failed,
                    format!("restarting for the new config failed: {e}"),
                    None,
                );
            }
        }
        self.request_observe();
    }

    pub(super) fn reloaded(
        &mut self,
        service: &str,
        generation: u64,
        outputs: Outputs,
        error: Option<String>,
        unreachable: bool,
    ) {
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        svc.busy = false;
        if svc.current.generation != generation {
            return;
        }
        if let Some(e) = error.as_ref().filter(|_| unreachable) {
            return self.retry_reaction(service, e.clone());
        }
        svc.reset_backoff();
        svc.edit_current(|d| d.applied = true);
        let reaction = svc
            .current
            .config_change
            .as_ref()
            .map(|c| c.reaction.clone())
            .unwrap_or_default();
        match error {
            None => {
                self.emit(EventKind::ContainerAction {
                    service: service.to_string(),
                    action: "reloaded".into(),
                    container: self
                        .container_of(service)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    reason: format!("config changed ({reaction})"),
                });
                self.set_status(service, Status::Complete, String::new(), Some(outputs));
            }
            Some(e) => self.set_status(
                service,
                Status::Failed,
                format!("{e}; the container keeps running with its previous configuration loaded"),
                Some(outputs),
            ),
        }
    }
}
