//! The outbox sender: delivers queued signals, oldest first per document.
//!
//! 2xx → removed; a permanent refusal (4xx other than 408/429), an
//! unsupported transport or a target `[policy] allowed_signal_hosts`
//! forbids (an unlisted host, or an internal one: loopback, link-local,
//! cloud metadata, by the URL or by what its name resolves to) → dead
//! letter (kept for `berthctl outbox retry|drop`); anything
//! else → retried after `signal_backoff` (1 s → 60 s, jittered). Every
//! request carries the entry's key as `Idempotency-Key`.

use std::sync::Arc;
use std::time::Duration;

use berth_core::event::EventKind;
use berth_core::heat::outbox::{EntryState, OutboxEntry, due};
use berth_core::heat::{
    HeatSignal, HttpMethod, HttpRequest, Secret, SignalPlan, is_permanent_refusal,
    orchestration_endpoint, redact_url, signal_backoff,
};
use bytes::Bytes;
use http::Method;

use crate::{Inner, jitter, now_ms};

/// Longest sleep when nothing is due (a wake-up comes sooner on append).
const IDLE: Duration = Duration::from_secs(60);

/// What became of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    Delivered,
    /// Will not get better by retrying.
    Permanent(String),
    Retry(String),
}

pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let list = match inner.outbox.list() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let now = now_ms();
        let batch: Vec<OutboxEntry> = due(&list.entries, now).into_iter().cloned().collect();
        if !batch.is_empty() {
            let mut store_failed = false;
            for entry in batch {
                if !deliver(&inner, entry).await {
                    store_failed = true;
                }
            }
            if store_failed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // A delivery may have made the next entry of a document due.
            continue;
        }
        // The earliest pending entry that heads its document.
        let mut heads = std::collections::BTreeSet::new();
        let mut next: Option<u64> = None;
        for e in &list.entries {
            if e.state == EntryState::Pending && heads.insert(e.deployment_id.as_str()) {
                next = Some(next.map_or(e.next_attempt_ms, |n: u64| n.min(e.next_attempt_ms)));
            }
        }
        let wait = next
            .map(|n| Duration::from_millis(n.saturating_sub(now)))
            .unwrap_or(IDLE)
            .min(IDLE);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.wake.notified() => {}
        }
    }
}

/// One attempt at one entry, its result recorded. `false` when the outbox
/// could not be updated.
async fn deliver(inner: &Inner, entry: OutboxEntry) -> bool {
    let target = entry.plan.redacted();
    let attempt = send(inner, &entry).await;
    let stored = match &attempt {
        Attempt::Delivered => {
            tracing::info!(
                seq = entry.seq,
                document = entry.deployment_id,
                key = entry.key,
                target,
                "signal delivered"
            );
            inner
                .outbox
                .remove_delivered(entry.seq, &entry.key)
                .map(|_| ())
        }
        Attempt::Permanent(reason) => {
            tracing::error!(
                seq = entry.seq,
                document = entry.deployment_id,
                target,
                reason,
                "signal refused for good; kept as a dead letter (berthctl outbox retry|drop)"
            );
            inner.outbox.dead_letter(entry.seq, reason).map(|_| ())
        }
        Attempt::Retry(reason) => {
            let attempts = entry.attempts.saturating_add(1);
            let delay = signal_backoff(attempts, jitter());
            tracing::warn!(
                seq = entry.seq,
                document = entry.deployment_id,
                target,
                attempts,
                retry_in = ?delay,
                reason,
                "signal not delivered; will retry"
            );
            let next = now_ms().saturating_add(delay.as_millis() as u64);
            inner
                .outbox
                .mark_attempt(entry.seq, reason, next)
                .map(|_| ())
        }
    };
    let (outcome, detail) = match &attempt {
        Attempt::Delivered => (Some("delivered"), String::new()),
        Attempt::Permanent(reason) => (Some("dead"), reason.clone()),
        // The first failure, then ever fewer: an outage is seen, not a flood.
        Attempt::Retry(reason) => {
            let n = entry.attempts.saturating_add(1);
            (
                n.is_power_of_two().then_some("retry"),
                format!("attempt {n}: {reason}"),
            )
        }
    };
    if let Some(outcome) = outcome {
        let _ = inner
            .handle
            .emit(EventKind::Signal {
                document: entry.deployment_id.clone(),
                entry: entry.seq,
                outcome: outcome.to_string(),
                target: target.clone(),
                detail,
            })
            .await;
    }
    match stored {
        Ok(()) => true,
        // Dropped by an operator meanwhile, or retried: nothing to record.
        Err(berth_store::OutboxError::NotFound { .. })
        | Err(berth_store::OutboxError::WrongState { .. }) => true,
        Err(e) => {
            tracing::error!(seq = entry.seq, error = %e, "cannot update the outbox entry");
            false
        }
    }
}

fn policy_check(inner: &Inner, url: &str, what: &str) -> Result<(), Attempt> {
    inner
        .settings()
        .cfg
        .policy
        .check_signal_url(url, what)
        .map_err(|v| Attempt::Permanent(format!("refused by node policy: {v}")))
}

pub(crate) async fn send(inner: &Inner, entry: &OutboxEntry) -> Attempt {
    match &entry.plan {
        SignalPlan::None => Attempt::Delivered,
        SignalPlan::Unsupported { transport, reason } => {
            Attempt::Permanent(format!("{}: {reason}", transport.as_str()))
        }
        SignalPlan::Url(u) => {
            if let Err(a) = policy_check(inner, u.url.expose(), "deploy_signal_id") {
                return a;
            }
            let req = u.request(&entry.body);
            match request(inner, &req, &entry.key).await {
                Ok(_) => Attempt::Delivered,
                Err(a) => a,
            }
        }
        SignalPlan::Heat(h) => heat_signal(inner, h, entry).await,
    }
}

async fn heat_signal(inner: &Inner, h: &HeatSignal, entry: &OutboxEntry) -> Attempt {
    if let Err(a) = policy_check(inner, &h.auth_url, "deploy_auth_url") {
        return a;
    }
    let token_req = h.token_request();
    let resp = match request(inner, &token_req, &entry.key).await {
        Ok(r) => r,
        Err(Attempt::Permanent(r)) => return Attempt::Permanent(format!("Keystone: {r}")),
        Err(Attempt::Retry(r)) => return Attempt::Retry(format!("Keystone: {r}")),
        Err(a) => return a,
    };
    let Some(token) = resp
        .headers
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(Secret::new)
    else {
        return Attempt::Retry("Keystone answered without an X-Subject-Token header".into());
    };
    let body: serde_json::Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => return Attempt::Retry(format!("Keystone's token response is not JSON: {e}")),
    };
    let endpoint = match orchestration_endpoint(&body, h.region_name.as_deref()) {
        Ok(e) => e,
        Err(e) => return Attempt::Permanent(format!("Keystone catalog: {e}")),
    };
    if let Err(a) = policy_check(inner, &endpoint, "orchestration endpoint") {
        return a;
    }
    let req = h.signal_request(&endpoint, &token, &entry.body);
    match request(inner, &req, &entry.key).await {
        Ok(_) => Attempt::Delivered,
        Err(a) => a,
    }
}

/// Sends `req`; a 2xx response is `Ok`, anything else the attempt's fate.
async fn request(
    inner: &Inner,
    req: &HttpRequest,
    key: &str,
) -> Result<crate::http::Response, Attempt> {
    let shown = redact_url(req.url.expose());
    let method = match req.method {
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
    };
    let mut headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.expose()))
        .collect();
    headers.push(("Idempotency-Key", key));
    let body = Bytes::from(req.body.clone());
    let client = inner.settings().signal_client.clone();
    match client
        .send(method.clone(), req.url.expose(), &headers, Some(body))
        .await
    {
        Ok(resp) if resp.status.is_success() => Ok(resp),
        Ok(resp) if is_permanent_refusal(resp.status.as_u16()) => Err(Attempt::Permanent(format!(
            "{method} {shown} answered {}",
            resp.status
        ))),
        Ok(resp) => Err(Attempt::Retry(format!(
            "{method} {shown} answered {}",
            resp.status
        ))),
        Err(crate::http::RequestError::BadUrl) => Err(Attempt::Permanent(format!(
            "{shown} is not a valid http(s) URL"
        ))),
        // The guard named the host, the address and the rule.
        Err(crate::http::RequestError::Refused(why)) => Err(Attempt::Permanent(format!(
            "{method} {shown}: refused by node policy: {why}"
        ))),
        Err(e) => Err(Attempt::Retry(format!("{method} {shown}: {e}"))),
    }
}
