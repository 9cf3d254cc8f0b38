//! The upstream seam the API needs: Heat documents pushed to `POST
//! /v1/deployments`, and the signal outbox. berthd implements it with
//! `berth-upstream`; the API never names that crate, and tests can stand in
//! for it.

use std::future::Future;
use std::pin::Pin;

use berth_agent::AgentError;
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a document or an outbox operation was refused: core's one type
/// (see `berth_core::upstream` for why it lives there), which
/// `berth-upstream` returns as it is.
pub type UpstreamError = berth_core::upstream::UpstreamError<AgentError>;

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
    /// Changes each time a document is done, after `lookup` would say so
    /// (a long poll subscribes before it looks, so it misses none).
    fn watch_done(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Every outbox entry (no secrets).
    fn outbox(&self) -> Result<Vec<OutboxView>, UpstreamError>;
    /// A dead letter back in the queue.
    fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError>;
    /// Removes an entry; `false` if there was none.
    fn drop_entry(&self, seq: u64) -> Result<bool, UpstreamError>;
    /// The outbox's counts for `GET /v1/node` and `/metrics`: read from a
    /// published snapshot, never from the outbox files (it runs on every
    /// such request).
    fn summary(&self) -> OutboxSummary;
}
