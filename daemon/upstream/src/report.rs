//! State reports to `[upstream] report_url`: the node's services on each
//! change (agent events), at most one per second, plus a heartbeat. Latest
//! wins: the report is built from the snapshot when it is sent, so there is
//! one pending report, never a queue; after a failure the next attempt
//! (backed off) carries the state as it then is.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::follow::FollowUrl;
use crate::{Inner, OutboxStats, jitter, now_ms};

/// Reports are at least this far apart.
const MIN_GAP: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize)]
struct Report {
    node_id: String,
    /// Increases with every report, across restarts too (it starts at the
    /// Unix time in ms and never goes back).
    seq: u64,
    sent_at_ms: u64,
    services: Vec<ServiceReport>,
    outbox: OutboxStats,
}

#[derive(Debug, Serialize)]
struct ServiceReport {
    name: String,
    /// The current record's status (`COMPLETE`, `FAILED`, ...).
    status: String,
    /// The container's health (`healthy`, `unhealthy`, `starting`) when it
    /// has a healthcheck.
    health: Option<String>,
    /// The current record's id.
    deployment: Option<String>,
    /// While WAITING_HOOK: the hook that runs or waits (phase, index, the
    /// hook in one line with any URL redacted, since when, breakpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: Option<berth_core::hooks::HookWait>,
    converged: bool,
    container_state: Option<String>,
}

fn build(inner: &Inner, seq: u64) -> Report {
    let snap = inner.handle.snapshot();
    let services = snap.services.values().map(service_report).collect();
    let now = now_ms();
    Report {
        node_id: inner.node_id.clone(),
        seq,
        sent_at_ms: now,
        services,
        outbox: inner.outbox.counts().summary(now),
    }
}

/// One service as the report shows it.
fn service_report(s: &berth_core::dto::ServiceStatus) -> ServiceReport {
    ServiceReport {
        name: s.name.clone(),
        status: s
            .current
            .as_ref()
            .map(|c| c.status.as_str().to_string())
            .unwrap_or_default(),
        health: s
            .container
            .as_ref()
            .and_then(|c| c.health)
            .and_then(|h| serde_json::to_value(h).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        deployment: s.current.as_ref().map(|c| c.id.clone()),
        hook: s.current.as_ref().and_then(|c| c.hook.clone()),
        converged: s.converged,
        container_state: s
            .container
            .as_ref()
            .and_then(|c| serde_json::to_value(c.state).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
    }
}

/// Posts reports while `report_url` is set; follows SIGHUP's new settings
/// (a new URL gets a report at once, an unset one idles until set).
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut follow = FollowUrl::new(
        inner.settings.subscribe(),
        |c| c.report_url.as_ref(),
        "report_url is unset: no more state reports",
    );
    let mut events = inner.handle.subscribe_events();
    let mut seq = now_ms();
    let mut dirty = true;
    let mut failures = 0u32;
    let mut last_attempt: Option<Instant> = None;
    let mut last_ok = Instant::now();
    loop {
        let Some(round) = follow.next().await else {
            return;
        };
        if round.fresh {
            tracing::info!(url = round.shown, heartbeat = ?round.settings.cfg.heartbeat, "reporting node state");
            dirty = true;
            failures = 0;
            last_attempt = None;
        }
        let (settings, url, shown) = (&round.settings, round.url.as_str(), &round.shown);
        let now = Instant::now();
        let due = if dirty || failures > 0 {
            let gap = if failures > 0 {
                let base = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
                base.mul_f64(1.0 - jitter() / 2.0)
            } else {
                MIN_GAP
            };
            last_attempt.map_or(now, |t| (t + gap).max(now))
        } else {
            last_ok + settings.cfg.heartbeat
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(_) | Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => return,
            },
            changed = follow.changed() => if !changed { return },
            _ = tokio::time::sleep_until(due) => {
                seq = seq.saturating_add(1).max(now_ms());
                let report = build(&inner, seq);
                dirty = false;
                last_attempt = Some(Instant::now());
                let body = match serde_json::to_vec(&report) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode the state report");
                        continue;
                    }
                };
                let sent = settings
                    .client
                    .send(Method::POST, url, &[("Content-Type", "application/json")], Some(body))
                    .await;
                match sent {
                    Ok(r) if r.status.is_success() => {
                        if failures > 0 {
                            tracing::info!(url = shown, "state reports delivered again");
                        }
                        failures = 0;
                        last_ok = Instant::now();
                    }
                    Ok(r) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 {
                            tracing::warn!(url = shown, status = %r.status, "state report refused; retrying with backoff");
                        }
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        if failures == 1 {
                            tracing::warn!(url = shown, error = %e, "state report not delivered; retrying with backoff");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::dto::{DeploymentSummary, ServiceStatus};
    use berth_core::hooks::HookWait;
    use berth_core::record::Status;
    use berth_core::spec::HookPhase;

    #[test]
    fn a_waiting_hook_reaches_the_report() {
        let wait = HookWait {
            phase: Some(HookPhase::PreUpdate),
            index: 1,
            hook: "breakpoint".into(),
            since_ms: 1_700_000_000_000,
            breakpoint: true,
            ..Default::default()
        };
        let s = ServiceStatus {
            name: "nova-compute".into(),
            current: Some(DeploymentSummary {
                id: "nova-compute-3".into(),
                status: Status::WaitingHook,
                hook: Some(wait),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = serde_json::to_value(service_report(&s)).unwrap();
        assert_eq!(v["status"], "WAITING_HOOK");
        assert_eq!(v["hook"]["phase"], "pre_update");
        assert_eq!(v["hook"]["index"], 1);
        assert_eq!(v["hook"]["since_ms"], 1_700_000_000_000u64);
        assert_eq!(v["hook"]["breakpoint"], true);
        let done = ServiceStatus {
            current: Some(DeploymentSummary {
                status: Status::Complete,
                ..Default::default()
            }),
            ..s
        };
        let v = serde_json::to_value(service_report(&done)).unwrap();
        assert!(v.get("hook").is_none(), "{v}");
    }
}
