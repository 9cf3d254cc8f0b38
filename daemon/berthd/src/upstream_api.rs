//! `berth-upstream` behind the API's upstream seam (`berth_api::UpstreamApi`).
//! Both sides name the same error (`berth_core::upstream::UpstreamError`),
//! so this only forwards.

use berth_api::{BoxFuture, UpstreamApi, UpstreamError};
use berth_core::dto::{DocumentStatus, OutboxSummary};
use berth_core::heat::outbox::OutboxView;
use berth_upstream::{Origin, Upstream};

pub struct Api(pub Upstream);

impl UpstreamApi for Api {
    fn submit(
        &self,
        doc: serde_json::Value,
        actor: String,
        check_policy: bool,
    ) -> BoxFuture<'_, Result<DocumentStatus, UpstreamError>> {
        let origin = Origin::Push {
            actor,
            check_policy,
        };
        Box::pin(self.0.submit(doc, origin))
    }

    fn lookup(&self, doc_id: String) -> BoxFuture<'_, Option<DocumentStatus>> {
        Box::pin(async move { self.0.lookup(&doc_id).await })
    }

    fn watch_done(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.watch_done()
    }

    fn outbox(&self) -> Result<Vec<OutboxView>, UpstreamError> {
        self.0.outbox_view()
    }

    fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError> {
        self.0.retry(seq)
    }

    fn drop_entry(&self, seq: u64) -> Result<bool, UpstreamError> {
        self.0.drop(seq)
    }

    /// The counts the outbox published on its last write: no file is read.
    fn summary(&self) -> OutboxSummary {
        self.0.outbox_stats()
    }
}
