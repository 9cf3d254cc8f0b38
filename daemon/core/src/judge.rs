//! Judging a deployment in flight: from its record, its health gate and the
//! container the engine shows, is it done (COMPLETE or FAILED, and why), to
//! be collected (a task that exited), or still to wait? Pure: the loop
//! passes `now` in and keeps the gate; nothing here reads a clock.

use std::time::{Duration, Instant};

use crate::plan::made_from;
use crate::record::{DeployAction, Deployment, Status};
use crate::runtime::{ContainerState, Health, ObservedContainer};
use crate::spec::{DesiredState, Kind};

/// A deployment being judged: its settle time and health gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthGate {
    /// When the container this deployment made was (first seen) running.
    pub running_since: Option<Instant>,
    /// The deployment created or started a container: wait out the settle time.
    pub needs_settle: bool,
    /// Restart count when the gate began (learned from the first look).
    pub restarts_at_start: Option<u64>,
    /// Not healthy by then: FAILED.
    pub health_deadline: Instant,
}

impl HealthGate {
    /// A gate opened at `now` for a record whose spec allows
    /// `health_timeout` to become healthy.
    pub fn new(needs_settle: bool, now: Instant, health_timeout: Duration) -> HealthGate {
        HealthGate {
            running_since: None,
            needs_settle,
            restarts_at_start: None,
            health_deadline: now + health_timeout,
        }
    }

    /// The record's container was (re)created or started again: its settle
    /// time and restart count start over from the next look; the health
    /// deadline stays.
    pub fn settle_again(&mut self) {
        self.needs_settle = true;
        self.running_since = None;
        self.restarts_at_start = None;
    }

    /// Judged afresh from `now` (a container that was stopped for a reason
    /// of the node's, e.g. a required host unit, did not fail its settle).
    pub fn restart(&mut self, now: Instant, health_timeout: Duration) {
        *self = HealthGate::new(false, now, health_timeout);
    }
}

/// What the judge decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not decided yet: look again after the next change or tick.
    Wait,
    /// Done: the status to write and why (empty for COMPLETE).
    Done(Status, String),
    /// A task's container exited: collect its outputs, then decide.
    Collect(ObservedContainer),
}

/// Whether `record` is done, from `container` (the service's container, if
/// any) and its gate (`None`: not being judged). The gate learns the restart
/// count and the first running instant as it goes.
pub fn judge(
    record: &Deployment,
    gate: Option<&mut HealthGate>,
    container: Option<&ObservedContainer>,
    now: Instant,
) -> Verdict {
    if record.status == Status::Pending {
        return Verdict::Wait;
    }
    let spec = &record.spec;
    if record.action == DeployAction::Delete {
        return if container.is_none() {
            Verdict::Done(Status::Complete, String::new())
        } else {
            Verdict::Wait
        };
    }
    let made_by_it =
        |c: &ObservedContainer| made_from(&record.spec_hash, record.config_identity.as_deref(), c);
    let Some(c) = container.filter(|c| made_by_it(c)) else {
        return Verdict::Wait;
    };
    let Some(gate) = gate else {
        return Verdict::Wait;
    };
    if spec.state == DesiredState::Stopped {
        return if c.state.is_up() {
            Verdict::Wait
        } else {
            Verdict::Done(Status::Complete, String::new())
        };
    }
    if spec.kind == Kind::Task {
        return match c.state {
            ContainerState::Exited | ContainerState::Dead => Verdict::Collect(c.clone()),
            _ => Verdict::Wait,
        };
    }
    let exit_code = || {
        c.exit_code
            .map(|x| x.to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let restarts_at_start = *gate.restarts_at_start.get_or_insert(c.restart_count);
    if c.restart_count > restarts_at_start {
        return Verdict::Done(
            Status::Failed,
            format!(
                "container restarted {} time(s) while settling (last exit code {})",
                c.restart_count - restarts_at_start,
                exit_code()
            ),
        );
    }
    if !c.state.is_up() || c.state == ContainerState::Restarting {
        if !gate.needs_settle || c.state == ContainerState::Created {
            return Verdict::Wait;
        }
        return Verdict::Done(
            Status::Failed,
            format!("container exited with code {} while settling", exit_code()),
        );
    }
    let since = *gate.running_since.get_or_insert(now);
    let settled = !gate.needs_settle || now.duration_since(since) >= spec.update.settle;
    if spec.healthcheck.is_none() {
        return if settled {
            Verdict::Done(Status::Complete, String::new())
        } else {
            Verdict::Wait
        };
    }
    match c.health {
        Some(Health::Healthy) if settled => Verdict::Done(Status::Complete, String::new()),
        _ if now >= gate.health_deadline => Verdict::Done(
            Status::Failed,
            format!(
                "not healthy within update.health_timeout ({}); health is {}",
                crate::units::format_duration(spec.update.health_timeout),
                match c.health {
                    Some(Health::Unhealthy) => "unhealthy",
                    Some(Health::Starting) => "starting",
                    Some(Health::Healthy) => "healthy",
                    None => "unknown",
                }
            ),
        ),
        _ => Verdict::Wait,
    }
}

#[cfg(test)]
mod tests;
