//! The published snapshot: what API readers see (services, statuses, engine
//! state) without asking the loop. Read-only: it changes no state and
//! writes nothing to disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::dto::{EngineStatus, NodeInfo, Summary};
use berth_core::record::Status;

use super::Agent;
use crate::Env;
use crate::state::{Snapshot, converged, service_status};

impl<E: Env> Agent<E> {
    pub(super) fn publish_snapshot(&mut self) {
        let mut summary = Summary::default();
        let mut services = BTreeMap::new();
        let mut currents = BTreeMap::new();
        for (name, svc) in &self.services {
            if svc.is_deleted() {
                continue;
            }
            let container = self.container_of(name);
            let mut st = service_status(svc, container);
            st.converged = converged(svc, container) && svc.current.status.is_terminal();
            summary.services += 1;
            if svc.meta.held {
                summary.held += 1;
            }
            if !svc.current.status.is_terminal() {
                summary.in_progress += 1;
            } else if svc.current.status == Status::Failed || svc.crash_loop {
                summary.failing += 1;
            } else if st.converged {
                summary.converged += 1;
            }
            services.insert(name.clone(), st);
            currents.insert(name.clone(), crate::state::shown_record(&svc.current));
        }
        for (name, (path, error)) in &self.unreadable {
            summary.services += 1;
            summary.unreadable += 1;
            services.insert(
                name.clone(),
                berth_core::dto::ServiceStatus {
                    name: name.clone(),
                    unreadable: Some(format!("{path}: {error}")),
                    container: self.container_of(name).map(crate::state::container_status),
                    ..Default::default()
                },
            );
        }
        let node = NodeInfo {
            node_id: self.cfg.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            engine: EngineStatus {
                reachable: self.engine_reachable == Some(true),
                detail: if self.engine_detail.is_empty() {
                    self.cfg.engine_endpoint.clone()
                } else {
                    self.engine_detail.clone()
                },
            },
            summary,
            event_seq: self.seq,
            warnings: Vec::new(),
            // Filled in by the API from the upstream outbox.
            outbox: Default::default(),
        };
        let snap = Snapshot {
            node,
            services,
            currents,
        };
        self.snapshot_tx.send_replace(Arc::new(snap));
    }
}
