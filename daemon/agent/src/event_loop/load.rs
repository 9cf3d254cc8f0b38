//! Loading the state dir at start: every service's current record and meta
//! from the store, torn ones set aside as unreadable. Touches the store
//! only; decides nothing about containers.

use std::sync::Arc;

use berth_core::event::EventKind;
use berth_core::store::{LoadedService, Store};

use super::Agent;
use crate::state::{ConfigTrack, Svc};
use crate::{AgentError, Env};

impl<E: Env> Agent<E> {
    pub(super) fn load(&mut self) -> Result<(), AgentError> {
        let store = self.env.store();
        let events = store.load_events(self.cfg.events_keep)?;
        if let Ok(mut ring) = self.ring.lock() {
            for e in events {
                self.seq = self.seq.max(e.seq);
                ring.push(e);
            }
        }
        let mut unreadable = Vec::new();
        for loaded in store.load()? {
            match loaded {
                LoadedService::Unreadable {
                    service,
                    path,
                    error,
                } => {
                    tracing::error!(
                        service,
                        path,
                        error,
                        "record unreadable; service left alone"
                    );
                    unreadable.push((service.clone(), path.clone(), error.clone()));
                    self.unreadable.insert(service, (path, error));
                }
                LoadedService::Ok { mut meta, current } => {
                    let mut current = *current;
                    // A record written just before a crash, whose meta was not: adopt it.
                    if let Some(newest) = store.history(&meta.service, 1)?.into_iter().next()
                        && newest.generation > current.generation
                    {
                        tracing::warn!(
                            service = meta.service,
                            generation = newest.generation,
                            "found a record newer than current.json (crash between writes); adopting it"
                        );
                        meta.generation = newest.generation;
                        meta.target_generation = newest.generation;
                        current = newest;
                    }
                    if meta.target_generation == 0 {
                        meta.target_generation = meta.generation;
                    }
                    let current = Arc::new(current);
                    let target = if meta.target_generation == current.generation {
                        Arc::clone(&current)
                    } else {
                        match store.record(&meta.service, meta.target_generation)? {
                            Some(t) => Arc::new(t),
                            None => Arc::clone(&current),
                        }
                    };
                    let mut svc = Svc {
                        meta,
                        current,
                        target,
                        create: None,
                        busy: false,
                        retry_at: None,
                        pull_retry: None,
                        failures: 0,
                        looked_again: false,
                        gate: None,
                        last_restarts: 0,
                        crash_loop: false,
                        config: ConfigTrack::default(),
                        hooks: Default::default(),
                    };
                    self.load_config_track(&mut svc);
                    svc.create = self.create_request(&svc.target);
                    if !svc.current.status.is_terminal() {
                        // Resumed: judged again from what the engine shows.
                        svc.gate = Some(self.new_gate(&svc.current, true));
                    }
                    self.services.insert(svc.meta.service.clone(), svc);
                }
            }
        }
        for (service, path, error) in unreadable {
            self.emit(EventKind::RecordUnreadable {
                service,
                path,
                error,
            });
        }
        let n = self.services.len();
        self.emit(EventKind::Daemon {
            message: format!(
                "berthd started: node {}, {n} services loaded, {} unreadable",
                self.cfg.node_id,
                self.unreadable.len()
            ),
        });
        Ok(())
    }
}
