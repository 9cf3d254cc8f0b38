//! The outbox's data: pending upstream signals, as the store keeps them.
//! Pure types and rules; the store (`berth_store::FsOutbox`) writes them.
//!
//! An entry keeps everything needed to send (the full [`SignalPlan`], with
//! its secrets): show it only through [`OutboxEntry::view`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SignalPlan;

/// Version of the entry format on disk.
pub const OUTBOX_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Waiting to be sent (again) at `next_attempt_ms`.
    Pending,
    /// Refused for good (or given up on); waits for `retry` or `drop`.
    Dead,
}

/// What a caller queues.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// The signal's idempotency key ([`super::Signal::idempotency_key`]);
    /// queueing a key already queued returns the queued entry.
    pub key: String,
    /// The berth deployment (or Heat document) the signal reports on;
    /// entries of one deployment are sent in `seq` order.
    pub deployment_id: String,
    pub plan: SignalPlan,
    pub body: Value,
}

/// One queued message, as stored in `<state_dir>/outbox/<seq>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub schema_version: u32,
    pub seq: u64,
    pub key: String,
    pub deployment_id: String,
    pub plan: SignalPlan,
    pub body: Value,
    /// Failed sends so far (reset by `retry`).
    pub attempts: u32,
    /// Unix ms; not before this.
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub state: EntryState,
    pub created_ms: u64,
}

/// An entry for display (API, `berthctl outbox list`, logs): the target
/// without secrets, the body's size instead of the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxView {
    pub seq: u64,
    pub key: String,
    pub deployment_id: String,
    pub target: String,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub state: EntryState,
    pub created_ms: u64,
    pub body_bytes: usize,
}

impl OutboxEntry {
    pub fn new(seq: u64, new: NewEntry, now_ms: u64) -> OutboxEntry {
        OutboxEntry {
            schema_version: OUTBOX_SCHEMA_VERSION,
            seq,
            key: new.key,
            deployment_id: new.deployment_id,
            plan: new.plan,
            body: new.body,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: None,
            state: EntryState::Pending,
            created_ms: now_ms,
        }
    }

    pub fn view(&self) -> OutboxView {
        OutboxView {
            seq: self.seq,
            key: self.key.clone(),
            deployment_id: self.deployment_id.clone(),
            target: self.plan.redacted(),
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
            last_error: self.last_error.clone(),
            state: self.state,
            created_ms: self.created_ms,
            body_bytes: self.body.to_string().len(),
        }
    }
}

/// The entries to send now, from all entries sorted by `seq`: per
/// deployment, only its oldest pending entry, and only once it is due. A
/// dead entry does not hold back later ones of its deployment (it waits for
/// an operator; Heat gives each action its own document).
pub fn due(entries: &[OutboxEntry], now_ms: u64) -> Vec<&OutboxEntry> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut sorted: Vec<&OutboxEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    for e in sorted {
        if e.state != EntryState::Pending || !seen.insert(e.deployment_id.as_str()) {
            continue;
        }
        if e.next_attempt_ms <= now_ms {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, dep: &str, state: EntryState, next: u64) -> OutboxEntry {
        let mut e = OutboxEntry::new(
            seq,
            NewEntry {
                key: format!("k{seq}"),
                deployment_id: dep.into(),
                plan: SignalPlan::None,
                body: Value::Null,
            },
            0,
        );
        e.state = state;
        e.next_attempt_ms = next;
        e
    }

    #[test]
    fn due_keeps_per_deployment_order() {
        use EntryState::*;
        let entries = [
            entry(5, "a", Pending, 100),
            entry(2, "a", Pending, 900),
            entry(3, "b", Dead, 0),
            entry(4, "b", Pending, 0),
            entry(6, "c", Pending, 0),
        ];
        let seqs = |now| due(&entries, now).iter().map(|e| e.seq).collect::<Vec<_>>();
        // a's oldest (2) is not due yet, and 5 must not overtake it.
        assert_eq!(seqs(500), [4, 6]);
        assert_eq!(seqs(900), [2, 4, 6]);
    }
}
