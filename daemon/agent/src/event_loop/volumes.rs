//! `berthctl delete NAME --volumes`: once the deleted service's container
//! is gone, the named volumes it mounted are removed when berth created
//! them for this node (label `io.berth.node=<node>`) and no other service
//! of this node mounts them. Like `docker compose down` without `-v`, a
//! plain delete keeps every volume.
//!
//! Never removed: a volume berth did not create (no node label, or another
//! node's), one another service's spec mounts, and one any container still
//! uses (the engine refuses; removal is never forced). The delete record
//! stays IN_PROGRESS until the removals are done, then completes with a
//! reason naming what was removed and what was kept and why; each volume
//! gets an event and a log line.
//!
//! What is to be removed is held in memory only: if berthd restarts during
//! the delete, the volumes stay (the side without data loss); `docker volume
//! rm` removes them.

use std::collections::BTreeSet;

use berth_core::event::EventKind;
use berth_core::record::{DeployAction, Status};
use berth_core::runtime::{LABEL_NODE, Runtime};

use super::Agent;
use crate::Env;
use crate::jobs::Job;

/// A delete that removes volumes once its container is gone.
#[derive(Debug)]
pub(crate) struct Removal {
    /// The delete record's generation.
    generation: u64,
    /// Still to be asked of the engine (this node's label is checked there).
    candidates: Vec<String>,
    /// Per volume: removed (`Ok`) or kept, and why (`Err`).
    results: Vec<(String, Result<(), String>)>,
    running: bool,
    done: bool,
}

/// The job: remove `volumes` if they carry this node's label.
#[derive(Debug)]
pub(crate) struct Request {
    service: String,
    generation: u64,
    volumes: Vec<String>,
}

/// What the job reports back.
#[derive(Debug)]
pub(crate) struct Outcome {
    service: String,
    generation: u64,
    results: Vec<(String, Result<(), String>)>,
}

impl Request {
    pub(crate) async fn run<R: Runtime>(self, runtime: &R) -> Outcome {
        let mut results = Vec::new();
        let ours: Result<BTreeSet<String>, String> = runtime
            .list_volumes()
            .await
            .map(|v| v.into_iter().map(|v| v.name).collect())
            .map_err(|e| e.to_string());
        for name in self.volumes {
            let result = match &ours {
                Err(e) => Err(format!("the engine could not list volumes: {e}")),
                Ok(ours) if ours.contains(&name) => match runtime.remove_volume(&name).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                Ok(_) => Err(match runtime.inspect_volume(&name).await {
                    Ok(None) => "no such volume".to_string(),
                    Ok(Some(v)) => match v.node {
                        None => format!("it has no {LABEL_NODE} label: berth did not create it"),
                        Some(node) => format!("it was created by node `{node}`, not this one"),
                    },
                    Err(e) => format!("the engine could not inspect it: {e}"),
                }),
            };
            results.push((name, result));
        }
        Outcome {
            service: self.service,
            generation: self.generation,
            results,
        }
    }
}

impl<E: Env> Agent<E> {
    /// At a delete with `--volumes`: which named volumes of `service` are
    /// candidates and which are kept because another service mounts them.
    /// Returns the sentence the verb's answer adds.
    pub(super) fn plan_volume_removal(&mut self, service: &str, generation: u64) -> String {
        let Some(svc) = self.services.get(service) else {
            return String::new();
        };
        let mut names = BTreeSet::new();
        for spec in [&svc.current.spec, &svc.target.spec] {
            names.extend(
                spec.volumes
                    .iter()
                    .filter(|v| !v.is_host_path())
                    .map(|v| v.source.clone()),
            );
        }
        let mut candidates = Vec::new();
        let mut results = Vec::new();
        for name in names {
            match self.other_users(service, &name) {
                None => candidates.push(name),
                Some(reason) => results.push((name, Err(reason))),
            }
        }
        let sentence = if candidates.is_empty() && results.is_empty() {
            "; it mounts no named volume".to_string()
        } else {
            let mut s = String::new();
            if !candidates.is_empty() {
                s.push_str(&format!(
                    "; once its container is gone, its named volumes {} are removed if berth \
                     created them for this node and nothing uses them",
                    candidates.join(", ")
                ));
            }
            if !results.is_empty() {
                s.push_str(&format!("; kept: {}", kept_list(&results)));
            }
            s
        };
        self.volume_removals.insert(
            service.to_string(),
            Removal {
                generation,
                candidates,
                results,
                running: false,
                done: false,
            },
        );
        sentence
    }

    /// Judge found `service`'s delete done (its container is gone).
    /// `None` while its volumes are being removed (the record stays IN
    /// PROGRESS); else the reason to complete it with.
    pub(super) fn volumes_before_complete(
        &mut self,
        service: &str,
        status: Status,
        reason: String,
    ) -> Option<String> {
        let generation = match self.services.get(service) {
            Some(s) if s.current.action == DeployAction::Delete => s.current.generation,
            _ => return Some(reason),
        };
        if status != Status::Complete {
            // A failed delete keeps the service, and so its volumes.
            self.volume_removals.remove(service);
            return Some(reason);
        }
        let Some(removal) = self.volume_removals.get(service) else {
            return Some(reason);
        };
        if removal.generation != generation {
            self.volume_removals.remove(service);
            return Some(reason);
        }
        if removal.running {
            return None;
        }
        if !removal.done && !removal.candidates.is_empty() {
            // Asked again now: a service applied since the delete may
            // mount one of them.
            let mut volumes = Vec::new();
            let mut kept = Vec::new();
            for name in removal.candidates.clone() {
                match self.other_users(service, &name) {
                    None => volumes.push(name),
                    Some(why) => kept.push((name, Err(why))),
                }
            }
            if let Some(removal) = self.volume_removals.get_mut(service) {
                removal.results.extend(kept);
                removal.candidates = volumes.clone();
                if !volumes.is_empty() {
                    removal.running = true;
                    self.spawn(Job::RemoveVolumes(Request {
                        service: service.to_string(),
                        generation,
                        volumes,
                    }));
                    return None;
                }
            }
        }
        let results = self
            .volume_removals
            .remove(service)
            .map(|r| r.results)
            .unwrap_or_default();
        Some(self.announce(service, results))
    }

    /// `Some("mounted by a, b")` when a service other than `service` that
    /// is not gone yet mounts the named volume `name`, whatever it is doing.
    fn other_users(&self, service: &str, name: &str) -> Option<String> {
        let users: Vec<&str> = self
            .services
            .iter()
            .filter(|(other, s)| *other != service && !s.is_deleted())
            .filter(|(_, s)| {
                [&s.current.spec, &s.target.spec].iter().any(|spec| {
                    spec.volumes
                        .iter()
                        .any(|v| !v.is_host_path() && v.source == name)
                })
            })
            .map(|(other, _)| other.as_str())
            .collect();
        (!users.is_empty()).then(|| format!("mounted by {}", users.join(", ")))
    }

    /// The job's answer: the delete completes at the next judging.
    pub(super) fn volumes_removed(&mut self, outcome: Outcome) {
        if let Some(removal) = self
            .volume_removals
            .get_mut(&outcome.service)
            .filter(|r| r.generation == outcome.generation)
        {
            removal.results.extend(outcome.results);
            removal.running = false;
            removal.done = true;
        }
    }

    /// An event and a log line per volume; the record's reason.
    fn announce(&mut self, service: &str, results: Vec<(String, Result<(), String>)>) -> String {
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for (name, result) in results {
            match result {
                Ok(()) => {
                    tracing::info!(service, volume = %name, "removed a named volume berth created for this node (delete --volumes)");
                    self.emit(EventKind::ContainerAction {
                        service: service.to_string(),
                        action: "removed volume".into(),
                        container: name.clone(),
                        reason: "created by berth for this node, no other service mounts it (delete --volumes)".into(),
                    });
                    removed.push(name);
                }
                Err(why) => {
                    tracing::info!(service, volume = %name, reason = %why, "kept a named volume (delete --volumes)");
                    self.emit(EventKind::ContainerAction {
                        service: service.to_string(),
                        action: "kept volume".into(),
                        container: name.clone(),
                        reason: why.clone(),
                    });
                    kept.push((name, Err(why)));
                }
            }
        }
        let mut parts = Vec::new();
        if !removed.is_empty() {
            parts.push(format!("volumes removed: {}", removed.join(", ")));
        }
        if !kept.is_empty() {
            parts.push(format!("volumes kept: {}", kept_list(&kept)));
        }
        if parts.is_empty() {
            parts.push("no named volume to remove".into());
        }
        parts.join("; ")
    }
}

fn kept_list(kept: &[(String, Result<(), String>)]) -> String {
    kept.iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|why| format!("{name} ({why})")))
        .collect::<Vec<_>>()
        .join(", ")
}
