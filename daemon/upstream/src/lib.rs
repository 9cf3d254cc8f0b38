//! berthd's upstream I/O, the I/O half of Heat compatibility (the pure
//! half is `berth_core::heat`):
//!
//! - [`Upstream::submit`] deploys a Heat software-deployment document
//!   through the agent, idempotent by document id (a durable index in
//!   `<state_dir>/heat/`), and spawns a waiter that, once every record of
//!   the document has ended, composes the one signal and appends it to the
//!   durable outbox. Only then is the document marked done
//!   (`signal_queued`); a restarted berthd resumes the waiters of documents
//!   not yet done.
//! - The outbox sender delivers signals (signed URL, or Keystone + Heat's
//!   signal API) with an `Idempotency-Key`, removes them after a 2xx,
//!   dead-letters permanent refusals and backs off otherwise.
//!   Every outbox write (queue, attempt, dead letter, delivery, an
//!   operator's retry or drop) goes through its one owner, which publishes
//!   the counts: [`Upstream::outbox_stats`] reads no file.
//! - The pull task polls `[upstream] metadata_url` like os-collect-config
//!   (conditional GETs, backoff) and submits the `group: berth` documents.
//! - The report task posts the node's state to `[upstream] report_url` on
//!   change (at most once a second) and on a heartbeat; latest wins.
//!
//! Secrets (passwords, tokens, signal URL signatures) never reach a log
//! line, an error or a view: URLs are shown through `redact_url`.

mod deploy;
mod follow;
pub mod hook_http;
pub mod http;
mod index;
mod outbox;
mod pull;
mod report;
mod sender;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_agent::{AgentError, Handle};
use berth_core::heat::outbox::OutboxView;
use berth_core::policy::NodePolicy;
use berth_core::store::StoreError;
use berth_store::OutboxError;
use tokio::sync::Notify;

pub use crate::http::check_url;
pub use crate::index::OriginKind;

/// `[upstream]` and the `[policy]` parts that concern upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Heat server metadata to poll; `None`: no pull.
    pub metadata_url: Option<String>,
    pub poll_interval: Duration,
    /// Where node state reports go; `None`: no reports.
    pub report_url: Option<String>,
    pub heartbeat: Duration,
    /// A PEM CA added to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `[policy]`: checked for pushed documents that ask for it
    /// ([`Origin::Push::check_policy`]); `allowed_signal_hosts` for every
    /// signal.
    pub policy: NodePolicy,
}

impl UpstreamConfig {
    /// The config keys whose values differ from `old`'s (`policy` for any
    /// of `[policy]`).
    pub fn changed_keys(&self, old: &UpstreamConfig) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                keys.push(key);
            }
        };
        check("metadata_url", self.metadata_url != old.metadata_url);
        check("poll_interval", self.poll_interval != old.poll_interval);
        check("report_url", self.report_url != old.report_url);
        check("heartbeat", self.heartbeat != old.heartbeat);
        check("ca_file", self.ca_file != old.ca_file);
        check("policy", self.policy != old.policy);
        keys
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            metadata_url: None,
            poll_interval: Duration::from_secs(30),
            report_url: None,
            heartbeat: Duration::from_secs(60),
            ca_file: None,
            policy: NodePolicy::default(),
        }
    }
}

/// Who handed a document to berth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `POST /v1/deployments`. Services become API-owned; `actor` is named
    /// in the records. `check_policy`: refuse specs `[policy]` forbids (the
    /// TCP API sets it; the local socket is trusted).
    Push { actor: String, check_policy: bool },
    /// The metadata pull: services are owned by the pull.
    Pull,
}

impl Origin {
    fn kind(&self) -> OriginKind {
        match self {
            Origin::Push { .. } => OriginKind::Push,
            Origin::Pull => OriginKind::Pull,
        }
    }
    fn actor(&self) -> String {
        match self {
            Origin::Push { actor, .. } => actor.clone(),
            Origin::Pull => "pull".to_string(),
        }
    }
}

/// A document berth accepted (now or earlier), as the API shows it.
pub use berth_core::dto::DocumentStatus as Submitted;

/// Why a document was not accepted, or an outbox operation failed: core's
/// one type, which the API answers as it is (see `berth_core::upstream`
/// for why it lives there). A document's index failing is `Store`.
pub type UpstreamError = berth_core::upstream::UpstreamError<AgentError>;

/// The Heat document index could not be read or written.
pub(crate) fn index_failed(e: StoreError) -> UpstreamError {
    UpstreamError::Store(format!(
        "the Heat document index failed: {}",
        berth_core::error_chain(&e)
    ))
}

pub use crate::outbox::OutboxCounts;
/// Outbox numbers for `status`, `/metrics` and `GET /v1/node`.
pub use berth_core::dto::OutboxSummary as OutboxStats;

/// Errors starting the upstream tasks (a bad `ca_file`, the state dir).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Client(#[from] crate::http::ClientError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the tasks read at each round: [`Upstream::reconfigure`] replaces it
/// (berthd's SIGHUP), and the pull and report tasks wake up for it.
pub(crate) struct Settings {
    pub cfg: UpstreamConfig,
    /// Pull and reports (URLs from the config).
    pub client: crate::http::HttpClient,
    /// Signals: guarded by `[policy] allowed_signal_hosts` right before it
    /// connects (see [`crate::http`]).
    pub signal_client: crate::http::HttpClient,
}

pub(crate) struct Inner {
    pub handle: Handle,
    pub node_id: String,
    pub settings: tokio::sync::watch::Sender<Arc<Settings>>,
    pub index: index::Index,
    /// The outbox's one owner: every outbox write goes through it.
    pub outbox: outbox::Outbox,
    /// Wakes the outbox sender (something was appended or retried).
    pub wake: Notify,
    /// One submit at a time (idempotency by id is read-check-write).
    pub submit_lock: tokio::sync::Mutex<()>,
}

impl Inner {
    /// The settings as they are now.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// Removes the index entries of done documents `forget` picks (one
    /// submit at a time meanwhile), logging which went as `what`.
    pub(crate) async fn forget_documents(
        &self,
        forget: impl Fn(&index::DocIndex) -> bool,
        what: &str,
    ) {
        let _one = self.submit_lock.lock().await;
        match self.index.forget(forget) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(documents = gone.join(", "), "forgot {what}")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune the Heat document index"),
        }
    }
}

/// The upstream handle: cheap to clone. Create it with [`Upstream::start`]
/// inside the tokio runtime, after the agent.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

/// How long a pushed document's index entry is kept: an orchestrator that
/// sends the same id again within this gets the same answer (and no second
/// deployment or signal); `GET /v1/deployments/{id}` finds it.
pub const PUSHED_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// A pushed document accepted longer than [`PUSHED_KEEP`] ago.
fn push_expired(e: &index::DocIndex, now_ms: u64) -> bool {
    e.origin == OriginKind::Push
        && now_ms.saturating_sub(e.created_ms) > PUSHED_KEEP.as_millis() as u64
}

/// At start and then hourly, forgets pushed documents past
/// [`PUSHED_KEEP`] whose signal is queued (pulled ones go when the metadata
/// stops listing them).
async fn forget_old_pushes(inner: Arc<Inner>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = now_ms();
        inner
            .forget_documents(
                |e| push_expired(e, now),
                "pushed Heat documents accepted over 30 days ago",
            )
            .await;
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A value in `[0, 1)` for backoff jitter.
pub(crate) fn jitter() -> f64 {
    rand::random::<f64>()
}

impl Upstream {
    /// Opens the outbox and the document index under `state_dir`, and
    /// starts the tasks: the outbox sender, the waiters of documents not
    /// yet done, the pull and the reports (these two idle while their URL
    /// is unset). The tasks end when the runtime does.
    pub fn start(
        handle: Handle,
        state_dir: &Path,
        node_id: &str,
        cfg: UpstreamConfig,
    ) -> Result<Upstream, StartError> {
        let client = crate::http::HttpClient::new(cfg.ca_file.as_deref())?;
        let signal_client = crate::http::HttpClient::for_signals(
            cfg.ca_file.as_deref(),
            &cfg.policy.allowed_signal_hosts,
        )?;
        let outbox = outbox::Outbox::open(state_dir)?;
        let index = index::Index::open(state_dir)?;
        let settings = Arc::new(Settings {
            cfg,
            client,
            signal_client,
        });
        let inner = Arc::new(Inner {
            handle,
            node_id: node_id.to_string(),
            settings: tokio::sync::watch::channel(settings).0,
            index,
            outbox,
            wake: Notify::new(),
            submit_lock: tokio::sync::Mutex::new(()),
        });
        let up = Upstream { inner };
        deploy::resume(&up.inner);
        tokio::spawn(sender::run(up.inner.clone()));
        tokio::spawn(forget_old_pushes(up.inner.clone()));
        tokio::spawn(pull::run(up.clone()));
        tokio::spawn(report::run(up.inner.clone()));
        Ok(up)
    }

    /// Replaces `[upstream]` and `[policy]` (berthd's SIGHUP). The CA file
    /// is read again even when its path is the same (a rotated CA); if it
    /// cannot be read nothing changes. Polling moves to a new
    /// `metadata_url` at once (services pulled from the old one are deleted
    /// only when a clean round from the new one does not name them) and
    /// stops when it is unset; reports likewise. Signals already queued
    /// are sent with the new policy and CA. Returns the keys that changed.
    pub fn reconfigure(&self, cfg: UpstreamConfig) -> Result<Vec<&'static str>, StartError> {
        let old = self.inner.settings();
        let new_ca = cfg.ca_file.is_some() || cfg.ca_file != old.cfg.ca_file;
        let client = if new_ca {
            crate::http::HttpClient::new(cfg.ca_file.as_deref())?
        } else {
            old.client.clone()
        };
        let signal_client =
            if new_ca || cfg.policy.allowed_signal_hosts != old.cfg.policy.allowed_signal_hosts {
                crate::http::HttpClient::for_signals(
                    cfg.ca_file.as_deref(),
                    &cfg.policy.allowed_signal_hosts,
                )?
            } else {
                old.signal_client.clone()
            };
        let changed = cfg.changed_keys(&old.cfg);
        self.inner.settings.send_replace(Arc::new(Settings {
            cfg,
            client,
            signal_client,
        }));
        self.inner.wake.notify_one();
        Ok(changed)
    }

    /// Deploys a Heat document (see the crate docs); idempotent by id.
    /// Returns once the records exist; the signal follows when they end.
    pub async fn submit(
        &self,
        doc: serde_json::Value,
        origin: Origin,
    ) -> Result<Submitted, UpstreamError> {
        deploy::submit(&self.inner, doc, origin).await
    }

    /// Changes each time a document is done, after [`Upstream::lookup`]
    /// would say so: `GET /v1/deployments/{id}?wait=` subscribes, looks,
    /// then waits on it.
    pub fn watch_done(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.index.watch_done()
    }

    /// A document accepted earlier, by its Heat id (for `GET
    /// /v1/deployments/{id}`); `None` if berth never accepted that id.
    pub async fn lookup(&self, doc_id: &str) -> Option<Submitted> {
        match self.inner.index.get(doc_id) {
            Ok(Some(entry)) => Some(deploy::submitted(&self.inner, &entry, true).await),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Heat document index");
                None
            }
        }
    }

    /// Every outbox entry, by seq, without secrets (`berthctl outbox list`).
    pub fn outbox_view(&self) -> Result<Vec<OutboxView>, UpstreamError> {
        let list = self.inner.outbox.list().map_err(outbox::op_error)?;
        Ok(list.entries.iter().map(|e| e.view()).collect())
    }

    /// Puts a dead letter back in the queue, due now (`berthctl outbox retry`).
    pub fn retry(&self, seq: u64) -> Result<OutboxView, UpstreamError> {
        let e = self
            .inner
            .outbox
            .retry(seq, now_ms())
            .map_err(outbox::op_error)?;
        tracing::info!(
            seq,
            deployment = e.deployment_id,
            "outbox entry put back in the queue"
        );
        self.inner.wake.notify_one();
        Ok(e.view())
    }

    /// Removes an entry whatever its state (`berthctl outbox drop`);
    /// `false` if there was none.
    pub fn drop(&self, seq: u64) -> Result<bool, UpstreamError> {
        let gone = self
            .inner
            .outbox
            .drop_entry(seq)
            .map_err(outbox::op_error)?;
        if gone {
            tracing::info!(seq, "outbox entry dropped by an operator");
        }
        Ok(gone)
    }

    /// Depth, oldest age and dead letters, from the counts the outbox
    /// publishes on every write: reads no file.
    pub fn outbox_stats(&self) -> OutboxStats {
        self.outbox_counts().summary(now_ms())
    }

    /// The outbox's counts as last published.
    pub fn outbox_counts(&self) -> OutboxCounts {
        self.inner.outbox.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_is_forgotten_30_days_after_it_was_accepted_and_a_pull_never_by_age() {
        let day = 24 * 3600 * 1000;
        let now = 100 * day;
        let entry = |origin, age_days| index::DocIndex {
            origin,
            created_ms: now - age_days * day,
            ..Default::default()
        };
        assert!(!push_expired(&entry(OriginKind::Push, 29), now));
        assert!(push_expired(&entry(OriginKind::Push, 31), now));
        assert!(!push_expired(&entry(OriginKind::Pull, 90), now));
    }
}
