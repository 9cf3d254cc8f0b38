//! The API's request and response bodies. `berthctl --json` prints these
//! same values. Secrets are redacted before a DTO is built.

use serde::{Deserialize, Serialize};

use crate::record::{DeployAction, Deployment, Status};
use crate::runtime::{ContainerState, Health};
use crate::spec::{DesiredState, Kind, ServiceSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeInfo {
    pub node_id: String,
    pub version: String,
    pub engine: EngineStatus,
    pub summary: Summary,
    /// The newest event's sequence number.
    pub event_seq: u64,
    /// Node config warnings worth an operator's eye.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The upstream signal outbox.
    pub outbox: OutboxSummary,
}

/// The upstream signal outbox in numbers (`status`, `/metrics`, `/v1/node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct OutboxSummary {
    /// Signals waiting to be delivered.
    pub depth: usize,
    /// Age of the oldest waiting signal, ms (0 when none).
    pub oldest_age_ms: u64,
    /// Signals refused for good (`berthctl outbox list`, `retry`, `drop`).
    pub dead: usize,
    /// Outbox files that do not parse (left alone, reported).
    pub unreadable: usize,
}

/// A Heat software-deployment document berth accepted (`POST
/// /v1/deployments`, the pull), as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DocumentStatus {
    /// The Heat document id.
    pub doc_id: String,
    /// Its services, in document order.
    pub services: Vec<String>,
    /// The record of each service (redacted), as it is now.
    pub deployments: Vec<Deployment>,
    /// The same id and body were submitted before: nothing was applied.
    pub unchanged: bool,
    /// `deploy_action: DELETE`.
    pub delete: bool,
    /// Every record ended and the signal is queued (or none is sent).
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EngineStatus {
    pub reachable: bool,
    /// The endpoint, and when unreachable why.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Summary {
    pub services: usize,
    pub converged: usize,
    pub in_progress: usize,
    pub failing: usize,
    pub held: usize,
    pub unreadable: usize,
}

impl Summary {
    /// One line: `12 services: 12 converged` / `12 services: 9 converged, 3 failing`.
    pub fn line(&self) -> String {
        let mut parts = vec![format!("{} converged", self.converged)];
        for (n, what) in [
            (self.in_progress, "in progress"),
            (self.failing, "failing"),
            (self.held, "held"),
            (self.unreadable, "unreadable"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        format!("{} services: {}", self.services, parts.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceStatus {
    pub name: String,
    /// Who owns it: `api`, `spec_dir file PATH`, `pull`.
    pub owner: String,
    pub held: bool,
    pub kind: Kind,
    pub desired_state: DesiredState,
    /// The image as the spec names it.
    pub image: String,
    pub current: Option<DeploymentSummary>,
    pub container: Option<ContainerStatus>,
    /// The container matches the current record and is in its desired state.
    pub converged: bool,
    /// The engine keeps restarting it.
    pub crash_loop: bool,
    /// Set when the service's record could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Its config sources as last read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigSourceStatus>,
    /// The newest RECONFIGURE record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_config_change: Option<LastConfigChange>,
}

/// One config source of a service, as `show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ConfigSourceStatus {
    pub source: String,
    pub target: String,
    /// `restart`, `recreate`, `signal SIGHUP`, `exec CMD...`, `none`.
    pub on_change: String,
    /// The content hash the service was last given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why the source could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The newest config change of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LastConfigChange {
    pub deployment: String,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_reason: String,
    pub at_ms: u64,
    pub change: crate::reconfig::ConfigChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DeploymentSummary {
    pub id: String,
    pub generation: u64,
    pub action: DeployAction,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_reason: String,
    pub spec_hash: String,
    pub actor: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// While WAITING_HOOK: the hook that runs or waits, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<crate::hooks::HookWait>,
}

impl From<&Deployment> for DeploymentSummary {
    fn from(d: &Deployment) -> Self {
        DeploymentSummary {
            id: d.id.clone(),
            generation: d.generation,
            action: d.action,
            status: d.status,
            status_reason: d.status_reason.clone(),
            spec_hash: d.spec_hash.clone(),
            actor: d.actor.clone(),
            created_at_ms: d.created_at_ms,
            updated_at_ms: d.updated_at_ms,
            hook: d.hook.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub state: ContainerState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    pub restart_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
}

/// `POST /v1/apply`: several specs, validated all-or-nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApplyRequest {
    pub services: Vec<ServiceSpec>,
    /// Take over services owned by another source.
    pub force: bool,
}

/// What an apply did (or, with `dry_run`, would do) to each service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApplyResponse {
    pub dry_run: bool,
    pub results: Vec<ApplyResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApplyResult {
    pub service: String,
    pub change: Change,
    /// Field-level differences from the current spec (secrets redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldChange>,
    /// The record created (absent when unchanged or dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new service.
    Created,
    /// The container changes (spec hash differs).
    Updated,
    /// Only fields outside the spec hash changed: a record, no container touched.
    PolicyOnly,
    #[default]
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::PolicyOnly => "policy-only",
            Change::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct FieldChange {
    /// `env.GREETING`, `healthcheck.interval`.
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// `POST /v1/services/{name}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RollbackRequest {
    pub generation: Option<u64>,
}

/// Every error body the API returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ErrorBody {
    /// Machine-readable: `invalid_spec`, `not_found`, `conflict`, `forbidden`, ...
    pub kind: String,
    pub error: String,
    /// One line per problem (e.g. every invalid field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// The differences between two specs, field by field (secrets redacted by the caller).
pub fn spec_diff(old: Option<&ServiceSpec>, new: &ServiceSpec) -> Vec<FieldChange> {
    let to_value = |s: &ServiceSpec| serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    let old_v = old.map(to_value).unwrap_or(serde_json::Value::Null);
    let new_v = to_value(new);
    let mut out = Vec::new();
    diff_values("", &old_v, &new_v, &mut out);
    out
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<FieldChange>,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(
                    &child,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Null, Value::Object(b)) => {
            for (k, v) in b {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(&child, &Value::Null, v, out);
            }
        }
        _ => {
            let show = |v: &Value| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            out.push(FieldChange {
                field: path.to_string(),
                old: show(old),
                new: show(new),
            });
        }
    }
}

/// `GET /v1/services/{name}`: the status plus the current record (redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceDetail {
    pub status: ServiceStatus,
    pub current: Option<Deployment>,
}

/// What an operator verb (`stop`, `start`, `restart`, `rollback`, `hold`,
/// `release`, `delete`) did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VerbResponse {
    pub service: String,
    /// The record the verb created, if it created one.
    pub deployment: Option<Deployment>,
    /// One human line: what was done, or why nothing was.
    pub message: String,
}

/// `GET /v1/events?since=SEQ` without `follow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EventsResponse {
    /// True when `since` is older than the oldest kept event: events were
    /// missed, resync from `GET /v1/services`.
    pub reset: bool,
    pub events: Vec<crate::event::Event>,
}
