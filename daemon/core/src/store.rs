//! The store seam: records, history, per-service state and the event log.
//!
//! The real implementation (`berth-store`) keeps one directory per service with
//! JSON files written atomically; the fake (`berth-fakes`) keeps a map.

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::images::PulledImage;
use crate::record::{Deployment, Source};

pub const META_SCHEMA_VERSION: u32 = 1;

/// `services/<name>/current.json`: which record is current, and how berthd
/// treats the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceMeta {
    pub schema_version: u32,
    pub service: String,
    /// The generation of the current (newest) record.
    pub generation: u64,
    /// The generation whose spec the containers should have: the newest
    /// record that reached the engine, or is on its way there. A deployment
    /// that failed before its container was created leaves the target where
    /// it was, so the old container keeps running.
    pub target_generation: u64,
    /// Held: berthd neither applies nor brings back until released.
    pub held: bool,
    /// Who owns the service.
    pub source: Source,
    /// The generation of its newest RECONFIGURE record (one with a config
    /// change), `Some(0)` when it has none. Absent in metas written before
    /// berth kept it: then berthd reads the history once at start instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_config_change: Option<u64>,
}

/// One service as found on disk at start.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadedService {
    Ok {
        meta: ServiceMeta,
        current: Box<Deployment>,
    },
    /// A torn, foreign or unparsable file. Reported, never overwritten.
    Unreadable {
        service: String,
        path: String,
        error: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is in the text too: logs show the text, not its sources.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a berth record: {reason}; it was left as is, move it away to let berthd write there"
    )]
    Corrupt { path: String, reason: String },
    #[error("record {service} generation {generation} already exists")]
    Exists { service: String, generation: u64 },
    /// Refused before any path was built from it (no path traversal).
    #[error("{service:?} is not a valid service name")]
    InvalidName { service: String },
}

pub trait Store: Send + Sync + 'static {
    /// Every service with its current record. Stray temp files are swept;
    /// unreadable files are returned as [`LoadedService::Unreadable`].
    fn load(&self) -> Result<Vec<LoadedService>, StoreError>;
    /// Writes (or rewrites, as its status moves) one record in the history.
    fn save_record(&self, record: &Deployment) -> Result<(), StoreError>;
    /// Writes the service's `current.json`.
    fn save_meta(&self, meta: &ServiceMeta) -> Result<(), StoreError>;
    /// Newest first, at most `limit`.
    fn history(&self, service: &str, limit: usize) -> Result<Vec<Deployment>, StoreError>;
    fn record(&self, service: &str, generation: u64) -> Result<Option<Deployment>, StoreError>;
    /// Removes all but the newest `keep` records of `service`.
    fn prune(&self, service: &str, keep: usize) -> Result<(), StoreError>;
    /// Removes a deleted service's directory.
    fn delete_service(&self, service: &str) -> Result<(), StoreError>;
    /// Appends to the event log (which keeps roughly the last `keep`).
    fn append_event(&self, event: &Event, keep: usize) -> Result<(), StoreError>;
    /// The newest `limit` events, oldest first.
    fn load_events(&self, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// The images berth pulled (`images/pulled.json`), oldest first; empty
    /// when it pulled none. A torn or foreign file is
    /// [`StoreError::Corrupt`]: reported, never replaced.
    fn pulled_images(&self) -> Result<Vec<PulledImage>, StoreError>;
    /// Notes that berth pulled `image`, merged by id
    /// ([`crate::images::note_pulled`]).
    fn note_pulled(&self, image: &PulledImage) -> Result<(), StoreError>;
    /// Forgets pulled images: pruned, or gone from the engine.
    fn forget_pulled(&self, ids: &[String]) -> Result<(), StoreError>;
}
