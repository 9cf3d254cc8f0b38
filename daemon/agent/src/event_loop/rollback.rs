//! Automatic rollback, and the applies it refuses. A deployment that failed
//! its judging (settle, restarts, health), whose update set the previous
//! container aside, is undone with a ROLLBACK record carrying the spec that
//! made that container: `plan()` then sees the aside container as the one
//! that matches, so the failed one is removed and the aside one gets its
//! restart policy back, is started and renamed into place (no create, no
//! pull). The failed record becomes ROLLED_BACK with its reason, and an
//! apply of that same spec is answered FAILED, naming it, until another
//! spec is applied. Writes records only; never acts on the engine.

use std::sync::Arc;

use berth_core::plan::aside_name;
use berth_core::record::{DeployAction, Status};
use berth_core::rollback::{aside_record, not_retried, rolls_back};
use berth_core::spec::ServiceSpec;
use berth_core::store::Store;

use super::Agent;
use crate::Env;

impl<E: Env> Agent<E> {
    /// The current record of `service` failed its judging for `reason`:
    /// roll it back when its policy and the engine allow, else FAILED.
    pub(super) fn fail_or_roll_back(&mut self, service: &str, reason: String) {
        let Some(svc) = self.services.get(service) else {
            return;
        };
        let failed = Arc::clone(&svc.current);
        if !rolls_back(&failed) || failed.generation != svc.target.generation {
            self.set_status(service, Status::Failed, reason, None);
            return;
        }
        let aside = aside_name(&svc.container_name(&self.cfg.prefix), failed.generation);
        let Some(container) = self
            .observed
            .iter()
            .find(|c| c.service == service && c.name == aside)
            .cloned()
        else {
            // A first deployment has nothing to go back to.
            let reason = if failed.action == DeployAction::Create {
                reason
            } else {
                format!("{reason}; not rolled back: no container was set aside ({aside} is gone)")
            };
            self.set_status(service, Status::Failed, reason, None);
            return;
        };
        let history = match self.env.store().history(service, usize::MAX) {
            Ok(h) => h,
            Err(e) => {
                let reason = format!("{reason}; not rolled back: cannot read the history: {e}");
                self.set_status(service, Status::Failed, reason, None);
                return;
            }
        };
        let Some(previous) = aside_record(&history, failed.generation, &container).cloned() else {
            let reason = format!(
                "{reason}; not rolled back: no record in the history made the container set aside ({aside})"
            );
            self.set_status(service, Status::Failed, reason, None);
            return;
        };
        tracing::warn!(
            service,
            generation = failed.generation,
            %reason,
            back_to = previous.generation,
            container = aside,
            "deployment failed; rolling back (update.rollback: auto)"
        );
        let source = svc.meta.source.clone();
        let mut record = self.new_record(
            previous.spec.clone(),
            DeployAction::Rollback,
            source,
            "berthd",
        );
        record.same_container_as(&previous);
        super::verbs::inherit_config(&mut record, &previous);
        record.rollback_of = Some(previous.generation);
        // Its container exists: the one set aside.
        record.applied = true;
        record.status = Status::InProgress;
        record.status_reason = format!(
            "generation {} failed ({reason}); its predecessor's container {aside} is swapped back",
            failed.generation
        );
        // The rollback is on disk first: killed before the failed record is
        // rewritten, berthd comes back with the rollback as its target (the
        // failed record then stays IN_PROGRESS in the history, and this
        // record says what became of it). The other order could come back
        // to a finished target and remove the container set aside.
        let rollback = match self.commit_record(record, None) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(service, error = %e, "cannot write the rollback record");
                let reason =
                    format!("{reason}; not rolled back: the record could not be written: {e}");
                self.set_status(service, Status::Failed, reason, None);
                return;
            }
        };
        let mut rolled = Arc::unwrap_or_clone(failed);
        rolled.status = Status::RolledBack;
        rolled.status_reason = format!(
            "{reason}; rolled back to generation {} (deployment {})",
            previous.generation, rollback.id
        );
        rolled.updated_at_ms = self.env.now_ms();
        if let Err(e) = self.env.store().save_record(&rolled) {
            tracing::error!(service, error = %e, "cannot save the rolled back record");
        }
        self.emit_status(&rolled);
    }

    /// Why an apply of `spec` (hashing to `hash`) is not retried: the
    /// newest apply of the service was this very spec and was rolled back.
    /// Reads records back from the current one only as far as the newest
    /// one an apply made (none when that is the current one).
    pub(super) fn rolled_back_refusal(&self, spec: &ServiceSpec, hash: &str) -> Option<String> {
        let svc = self.services.get(&spec.name)?;
        let store = self.env.store();
        let current = (*svc.current).clone();
        let older = (1..current.generation).rev().map_while(|g| {
            match store.record(&spec.name, g) {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(service = spec.name, generation = g, error = %e, "cannot read a record to check for a rolled back spec");
                    None
                }
            }
        });
        let d = not_retried(std::iter::once(current).chain(older), spec, hash)?;
        Some(format!(
            "the same spec as deployment {}, which was ROLLED_BACK ({}); not retried until a different spec is applied",
            d.id, d.status_reason
        ))
    }
}
