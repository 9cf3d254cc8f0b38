//! Where a deployment's hooks come in, and what drives a phase on each
//! step (the running of a phase is `hooks.rs`):
//!
//! - `pre_update`, at the point where an update would first touch the
//!   running container: a deploy that sets it aside or replaces it (a
//!   spec change, a manual rollback, a recreate by config change), asked by
//!   reconcile before it dispatches the plan's actions, or a restart by
//!   config change, entered when its RECONFIGURE record is made (the
//!   restart is dispatched once the phase passed). Passing that point is
//!   written on the record (`pre_update_passed`), hooks or not, so it is
//!   passed once, and it is what makes `post_update` apply.
//! - `post_update`, when judge finds such an update COMPLETE: the record
//!   stays WAITING_HOOK instead, no longer judged. In this order: the
//!   container set aside is removed (`desired()` stops keeping it once the
//!   record waits in `post_update`), then, once the plan has nothing left
//!   to do for the service, the hooks run (in the new container), then
//!   COMPLETE, or FAILED with nothing rolled back.
//! - `pre_delete`, when `berthctl delete` makes its record: a service with
//!   such hooks and a container gets a DELETE record that has not reached
//!   the engine (`applied: false`) and waits; `desired()` keeps the service
//!   until the phase passed.
//!
//! Decides nothing `berth_core::hooks` could decide.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_core::hooks::{first_wait, update_hooks_apply, waiting_phase};
use berth_core::plan::Action;
use berth_core::record::{Deployment, Status};
use berth_core::spec::HookPhase;
use tokio::time::Instant;

use super::Agent;
use crate::Env;

/// The running container a deploy replaces: the one it sets aside, else
/// the first it removes.
fn replaced_container(actions: &[Action]) -> Option<String> {
    actions.iter().find_map(|a| match a {
        Action::Deploy {
            replace, set_aside, ..
        } => set_aside
            .as_ref()
            .map(|s| s.container.id.clone())
            .or_else(|| replace.first().map(|c| c.id.clone())),
        _ => None,
    })
}

/// Makes a new record wait at the first hook of `phase` (it has one).
fn wait_at_first(record: &mut Deployment, phase: HookPhase, now_ms: u64) -> bool {
    let Some(wait) = first_wait(record, phase, now_ms) else {
        return false;
    };
    record.status = Status::WaitingHook;
    record.status_reason = berth_core::hooks::waiting_reason(&record.service, &wait);
    record.hook = Some(wait);
    true
}

impl<E: Env> Agent<E> {
    fn container_id(&self, service: &str) -> Option<String> {
        self.container_of(service).map(|c| c.id.clone())
    }

    /// Whether `service`'s planned `actions` wait for its `pre_update`
    /// hooks; at the `pre_update` point, enters the phase (or passes it,
    /// with no hook to run).
    pub(super) fn hold_for_hooks(
        &mut self,
        service: &str,
        actions: &[Action],
        now: Instant,
    ) -> bool {
        let Some(svc) = self.services.get(service) else {
            return false;
        };
        let current = Arc::clone(&svc.current);
        if current.generation != svc.target.generation {
            return false;
        }
        let replaced = replaced_container(actions);
        match waiting_phase(&current) {
            Some(HookPhase::PreUpdate) => {
                let container = replaced.or_else(|| self.container_id(service));
                return self.run_phase(service, HookPhase::PreUpdate, container, now);
            }
            // Driven by `drive_hooks`, after the plan's actions.
            Some(_) => return false,
            None => {}
        }
        if svc.busy
            || svc.retry_at.is_some_and(|t| now < t)
            || !update_hooks_apply(&current, replaced.is_some())
        {
            return false;
        }
        let mut record = (*current).clone();
        if !wait_at_first(&mut record, HookPhase::PreUpdate, self.env.now_ms()) {
            // No `pre_update` hook (only `post_update` ones): past the point.
            if let Some(svc) = self.services.get_mut(service) {
                svc.edit_current(|d| d.pre_update_passed = true);
            }
            self.save_current(service);
            return false;
        }
        self.set_hook(service, record.hook, Status::WaitingHook);
        self.run_phase(service, HookPhase::PreUpdate, replaced, now)
    }

    /// Every service WAITING_HOOK that reconcile did not hold: its phase
    /// runs on (`planned`: the services the plan had actions for).
    pub(super) fn drive_hooks(&mut self, planned: &BTreeMap<String, Vec<Action>>, now: Instant) {
        let waiting: Vec<(String, HookPhase)> = self
            .services
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), waiting_phase(&s.current)?)))
            .collect();
        for (service, phase) in waiting {
            // `pre_update` with actions was `hold_for_hooks`'s; `post_update`
            // waits for the plan to be done (the container set aside goes).
            if planned.contains_key(&service) && phase != HookPhase::PreDelete {
                continue;
            }
            let container = self.container_id(&service);
            self.run_phase(&service, phase, container, now);
        }
    }

    /// Judge found `service`'s current deployment COMPLETE: true when it
    /// waits for its `post_update` hooks instead.
    pub(super) fn enter_post_update(&mut self, service: &str) -> bool {
        let now_ms = self.env.now_ms();
        let Some(svc) = self.services.get_mut(service) else {
            return false;
        };
        if !berth_core::hooks::post_update_applies(&svc.current) {
            return false;
        }
        let mut record = (*svc.current).clone();
        if !wait_at_first(&mut record, HookPhase::PostUpdate, now_ms) {
            return false;
        }
        // Judged: no more judging, whatever the container does now.
        svc.gate = None;
        self.set_hook(service, record.hook, Status::WaitingHook);
        true
    }

    /// A new RECONFIGURE `record` that restarts the container: at the
    /// `pre_update` point, it waits for the hooks (true: the restart is not
    /// dispatched now) or passes it.
    pub(super) fn restart_waits_for_hooks(&self, record: &mut Deployment) -> bool {
        let has_container = self.container_of(&record.service).is_some();
        if !update_hooks_apply(record, has_container) {
            return false;
        }
        if wait_at_first(record, HookPhase::PreUpdate, self.env.now_ms()) {
            return true;
        }
        record.pre_update_passed = true;
        false
    }

    /// A new DELETE `record` of a service with `pre_delete` hooks and a
    /// container waits for them before it reaches the engine.
    pub(super) fn delete_waits_for_hooks(&self, record: &mut Deployment) -> bool {
        let has_container = self.container_of(&record.service).is_some();
        if !berth_core::hooks::pre_delete_applies(record, has_container) {
            return false;
        }
        record.applied = false;
        wait_at_first(record, HookPhase::PreDelete, self.env.now_ms())
    }
}
