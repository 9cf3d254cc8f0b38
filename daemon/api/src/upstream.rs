//! The upstream seam the API needs: Heat documents pushed to `POST
//! /v1/deployments`, and the signal outbox. berthd implements it with
//! `berth-upstream`; the API never names that crate, and tests can stand in
//! for it.

use std::future::Future;
use std::pin::Pin;

use berth_agent::AgentError;
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;
use berth_core::policy::PolicyViolation;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a document or an outbox operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// A malformed document; `path` names the field.
    #[error("{path}: {message}")]
    Invalid {
        path: String,
        message: String,
        details: Vec<String>,
    },
    /// Another agent's group.
    #[error("group {group:?} is not berth's; berth acts on group \"berth\" documents only")]
    NotOurs { group: String },
    /// The same id with another body.
    #[error(
        "document {doc_id} was already submitted with another body; Heat gives every change a new id"
    )]
    Conflict { doc_id: String },
    #[error("refused by the node policy")]
    Policy(Vec<PolicyViolation>),
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// No such outbox entry.
    #[error("{0}")]
    NotFound(String),
    /// The entry is not in a state the operation applies to.
    #[error("{0}")]
    WrongState(String),
    /// The document index or the outbox could not be read or written.
    #[error("{0}")]
    Store(String),
}

/// What the API asks of the upstream side.
pub trait UpstreamApi: Send + Sync + 'static {
    /// Deploys a Heat document (idempotent by its id). `check_policy`: the
    /// document came over TCP and the node policy applies.
    fn submit(
        &self,
        doc: serde_json::Value,
        actor: String,
        check_policy: bool,
    ) -> BoxFuture<'_, Result<DocumentStatus, UpstreamError>>;
    /// A document accepted earlier, by its Heat id.
    fn lookup(&self, doc_id: String) -> BoxFuture<'_, Option<DocumentStatus>>;
    /// Every outbox entry (no secrets).
    fn outbox(&self) -> Result<Vec<OutboxView>, UpstreamError>;
    /// A dead letter back in the queue.
    fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError>;
    /// Removes an entry; `false` if there was none.
    fn drop_entry(&self, seq: u64) -> Result<bool, UpstreamError>;
    fn summary(&self) -> OutboxSummary;
}
