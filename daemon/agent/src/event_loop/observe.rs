//! What the engine says: a container list becomes `observed`, an engine
//! event marks the loop dirty (berthd's own echoes are told apart). Never
//! acts on the engine.

use std::time::Duration;

use berth_core::event::EventKind;
use berth_core::runtime::{ObservedContainer, RuntimeError, RuntimeEvent};
use tokio::time::Instant;

use super::Agent;
use crate::Env;

impl<E: Env> Agent<E> {
    pub(super) fn observed(&mut self, result: Result<Vec<ObservedContainer>, RuntimeError>) {
        self.observing = false;
        match result {
            Ok(list) => {
                self.observed = list;
                self.last_resync = Instant::now();
                self.observe_backoff = Duration::from_millis(500);
                if self.engine_reachable != Some(true) {
                    self.engine_reachable = Some(true);
                    self.engine_detail = self.cfg.engine_endpoint.clone();
                    self.emit(EventKind::EngineState {
                        reachable: true,
                        detail: format!(
                            "{} ({} containers of this node)",
                            self.cfg.engine_endpoint,
                            self.observed.len()
                        ),
                    });
                }
                self.dirty = true;
            }
            Err(e) => {
                let detail = e.to_string();
                if self.engine_reachable != Some(false) || self.engine_detail != detail {
                    tracing::warn!(error = %detail, retry_in = ?self.observe_backoff, "cannot list containers");
                    self.engine_reachable = Some(false);
                    self.engine_detail = detail.clone();
                    self.emit(EventKind::EngineState {
                        reachable: false,
                        detail: format!("{detail}; retrying"),
                    });
                }
                self.observe_at = Some(Instant::now() + self.observe_backoff);
                self.observe_backoff = (self.observe_backoff * 2).min(Duration::from_secs(30));
                self.dirty = true;
            }
        }
    }

    pub(super) fn handle_engine_event(&mut self, ev: RuntimeEvent) {
        // Health probes run as execs: they change nothing berth looks at.
        if ev.action.starts_with("exec_") {
            return;
        }
        let reportable = matches!(ev.action.as_str(), "die" | "destroy" | "oom" | "kill")
            || ev.action.starts_with("health_status");
        if reportable
            && !self.is_own_transition(&ev)
            && let Some(c) = self.observed.iter().find(|c| c.id == ev.container_id)
        {
            let container = c.name.clone();
            self.emit(EventKind::ContainerObserved {
                service: ev.service.clone(),
                container,
                action: ev.action.clone(),
                exit_code: ev.exit_code,
            });
        }
        // Level-triggered: the event only says "look again".
        self.request_observe();
    }

    /// Events caused by berthd's own executor (a stop, a removal during a
    /// swap) are already reported as its steps, not again as observations.
    pub(super) fn is_own_transition(&self, ev: &RuntimeEvent) -> bool {
        self.own_containers.contains_key(&ev.container_id)
    }

    /// The container that stands for `service` (canonical name first).
    pub(super) fn container_of(&self, service: &str) -> Option<&ObservedContainer> {
        let name = format!("{}{service}", self.cfg.prefix);
        self.observed
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.observed.iter().find(|c| c.service == service))
    }
}
