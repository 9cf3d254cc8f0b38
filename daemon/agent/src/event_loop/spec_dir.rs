//! The spec directory (`spec_dir`): files read at start and on SIGHUP
//! become applies of the files that changed. Never reads files itself:
//! berthd hands them over.

use std::collections::{BTreeMap, BTreeSet};

use berth_core::dto::ApplyRequest;
use berth_core::event::EventKind;
use berth_core::record::{DeployAction, Source, Status};
use berth_core::spec::ServiceSpec;

use super::Agent;
use crate::{Env, SpecFile, Verb};

impl<E: Env> Agent<E> {
    pub(super) fn spec_dir(&mut self, files: Vec<SpecFile>) -> Vec<String> {
        let mut problems = Vec::new();
        let present: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
        let mut to_apply: Vec<(ServiceSpec, Source)> = Vec::new();
        self.spec_dir_known = files
            .iter()
            .filter_map(|f| f.services.as_ref().ok())
            .flatten()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        for file in files {
            let services = match file.services {
                Ok(s) => s,
                Err(e) => {
                    let line = format!(
                        "spec_dir file {} is invalid; its services are left as they are:\n{e}",
                        file.path
                    );
                    self.emit(EventKind::Daemon {
                        message: line.clone(),
                    });
                    problems.push(line);
                    continue;
                }
            };
            let source = Source::SpecDir {
                path: file.path.clone(),
                content_hash: file.content_hash.clone(),
            };
            for spec in services {
                if let Some(svc) = self.services.get(&spec.name).filter(|s| !s.is_deleted()) {
                    if svc.meta.source == source {
                        continue; // unchanged file: never re-applied
                    }
                    if !svc.meta.source.same_owner(&source) {
                        let line = format!(
                            "{}: declared in {} but owned by {}; not applied (delete it or apply with --force to move it)",
                            spec.name,
                            file.path,
                            svc.meta.source.describe()
                        );
                        self.emit(EventKind::Daemon {
                            message: line.clone(),
                        });
                        problems.push(line);
                        continue;
                    }
                }
                to_apply.push((spec, source.clone()));
            }
        }
        // Services whose owning file is gone are deleted.
        let orphaned: Vec<String> = self
            .services
            .values()
            .filter(|s| !s.is_deleted())
            .filter(|s| match &s.meta.source {
                Source::SpecDir { path, .. } => !present.contains(path),
                _ => false,
            })
            .map(|s| s.meta.service.clone())
            .collect();
        for service in orphaned {
            // A delete that waits for its `pre_delete` hooks goes on; one
            // they refused is not tried again at every scan.
            if let Some(s) = self.services.get(&service)
                && s.current.action == DeployAction::Delete
                && !s.current.applied
            {
                if s.current.status == Status::Failed {
                    problems.push(format!(
                        "{service}: not deleted ({}); `berthctl delete {service}` tries again",
                        s.current.status_reason
                    ));
                }
                continue;
            }
            if let Err(e) = self.verb(&service, Verb::Delete, "spec_dir") {
                problems.push(format!("{service}: cannot delete ({e})"));
            }
        }
        // Group per source file so each file is one apply.
        let mut by_source: BTreeMap<String, (Source, Vec<ServiceSpec>)> = BTreeMap::new();
        for (spec, source) in to_apply {
            let key = source.describe();
            by_source
                .entry(key)
                .or_insert_with(|| (source, Vec::new()))
                .1
                .push(spec);
        }
        for (_, (source, services)) in by_source {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let what = source.describe();
            tokio::spawn(async move {
                if let Ok(Err(e)) = rx.await {
                    tracing::warn!("{what}: not applied: {e}");
                }
            });
            self.begin_apply(
                ApplyRequest {
                    services,
                    force: false,
                },
                source,
                "spec_dir".to_string(),
                false,
                tx,
            );
        }
        problems
    }
}
