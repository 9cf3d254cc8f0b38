//! `berth-upstream` behind the API's upstream seam (`berth_api::UpstreamApi`).

use berth_api::{BoxFuture, UpstreamApi, UpstreamError};
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;
use berth_store::OutboxError;
use berth_upstream::{Origin, OutboxOpError, SubmitError, Upstream};

pub struct Api(pub Upstream);

fn submit_error(e: SubmitError) -> UpstreamError {
    match e {
        SubmitError::Invalid {
            path,
            message,
            details,
        } => UpstreamError::Invalid {
            path,
            message,
            details,
        },
        SubmitError::NotOurs { group } => UpstreamError::NotOurs { group },
        SubmitError::Conflict { doc_id } => UpstreamError::Conflict { doc_id },
        SubmitError::Policy(v) => UpstreamError::Policy(v),
        SubmitError::Agent(a) => UpstreamError::Agent(a),
        SubmitError::Store(s) => {
            UpstreamError::Store(format!("the Heat document index failed: {s}"))
        }
    }
}

fn outbox_error(e: OutboxOpError) -> UpstreamError {
    let OutboxOpError::Outbox(e) = e;
    match e {
        OutboxError::NotFound { .. } => UpstreamError::NotFound(e.to_string()),
        OutboxError::WrongState { .. } => UpstreamError::WrongState(e.to_string()),
        OutboxError::Store(_) => UpstreamError::Store(e.to_string()),
    }
}

impl UpstreamApi for Api {
    fn submit(
        &self,
        doc: serde_json::Value,
        actor: String,
        check_policy: bool,
    ) -> BoxFuture<'_, Result<DocumentStatus, UpstreamError>> {
        Box::pin(async move {
            self.0
                .submit(
                    doc,
                    Origin::Push {
                        actor,
                        check_policy,
                    },
                )
                .await
                .map_err(submit_error)
        })
    }

    fn lookup(&self, doc_id: String) -> BoxFuture<'_, Option<DocumentStatus>> {
        Box::pin(async move { self.0.lookup(&doc_id).await })
    }

    fn outbox(&self) -> Result<Vec<OutboxView>, UpstreamError> {
        self.0.outbox_view().map_err(outbox_error)
    }

    fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError> {
        self.0.retry(seq).map_err(outbox_error)
    }

    fn drop_entry(&self, seq: u64) -> Result<bool, UpstreamError> {
        self.0.drop(seq).map_err(outbox_error)
    }

    fn summary(&self) -> OutboxSummary {
        self.0.outbox_stats()
    }
}
