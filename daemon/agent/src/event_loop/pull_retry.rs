//! Pulls that may work later: a deployment whose image's registry is away
//! or failing (5xx) stays IN_PROGRESS, with nothing created and the old
//! container running, and tries the pull again with backoff
//! (`resolve_waiting`) until berthd's `pull_timeout` has passed since the
//! first failure; then it fails, naming the last error. Which failures
//! count is [`RuntimeError::is_transient_pull`]; any other fails at once.
//! Writes the record's status only; never acts on the engine.

use berth_core::runtime::RuntimeError;
use berth_core::units::format_duration;
use tokio::time::Instant;

use super::Agent;
use crate::Env;
use crate::state::PullRetry;

impl<E: Env> Agent<E> {
    /// The status reason of a deployment whose pull failed (`tries` times
    /// now) and is tried again.
    pub(super) fn pull_retry_reason(&self, e: &str, tries: u32) -> String {
        format!(
            "pulling its image failed ({tries} {}): {e}; trying again until pull_timeout ({}) \
             has passed, with the old container left running",
            if tries == 1 { "try" } else { "tries" },
            format_duration(self.cfg.pull_timeout)
        )
    }

    /// The record just committed for `service` could not pull its image
    /// yet: its retries start.
    pub(super) fn start_pull_retry(&mut self, service: &str) {
        let timeout = self.cfg.pull_timeout;
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let now = Instant::now();
        let retry = PullRetry {
            tries: 1,
            deadline: now + timeout,
        };
        svc.retry_at = Some(now + retry.backoff());
        svc.pull_retry = Some(retry);
        tracing::warn!(
            service,
            reason = svc.current.status_reason,
            "image pull failed; retrying"
        );
    }

    /// Another try at `service`'s pull failed the same way: try again
    /// later, or fail once `pull_timeout` has passed.
    pub(super) fn pull_failed_again(&mut self, service: &str, e: &RuntimeError) {
        let timeout = self.cfg.pull_timeout;
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let now = Instant::now();
        // A deployment berthd found retrying at its start starts its
        // timeout over.
        let mut retry = svc.pull_retry.unwrap_or(PullRetry {
            tries: 0,
            deadline: now + timeout,
        });
        retry.tries += 1;
        if now >= retry.deadline {
            svc.pull_retry = None;
            let reason = format!(
                "{e}; gave up after {} tries over pull_timeout ({})",
                retry.tries,
                format_duration(timeout)
            );
            self.fail_early(service, reason);
            return;
        }
        svc.retry_at = Some((now + retry.backoff()).min(retry.deadline));
        svc.pull_retry = Some(retry);
        let reason = self.pull_retry_reason(&e.to_string(), retry.tries);
        tracing::info!(service, tries = retry.tries, error = %e, "image pull failed again; retrying");
        self.set_status(
            service,
            berth_core::record::Status::InProgress,
            reason,
            None,
        );
    }
}
