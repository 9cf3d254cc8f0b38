//! The durable index of Heat documents berth has deployed:
//!
//! ```text
//! <state_dir>/heat/                  0700
//!   doc-<sanitized id>.json          DocIndex, one per document id
//!   pulled.json                      PulledSet: services the pull owns
//! ```
//!
//! Every write is atomic (`berth_store::write_atomic`). A document's entry
//! keeps the document itself only until its signal is queued (it holds the
//! signal's credentials); after that only its hash.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_core::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const HEAT_DIR: &str = "heat";
const PULLED_FILE: &str = "pulled.json";
const SCHEMA_VERSION: u32 = 1;

/// Where a document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OriginKind {
    #[default]
    Push,
    Pull,
}

/// One document berth accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DocIndex {
    pub schema_version: u32,
    pub doc_id: String,
    /// `berth_core::heat::document_hash` of the body as received.
    pub doc_hash: String,
    /// The document's services, in document order.
    pub services: Vec<String>,
    /// The record each service's outcome is read from (same order; empty
    /// when the service had none, e.g. a DELETE of an unknown service).
    pub deployments: Vec<String>,
    /// `deploy_action: DELETE`.
    pub delete: bool,
    pub origin: OriginKind,
    pub actor: String,
    /// The signal is in the outbox (or there is none to send): the
    /// document is done.
    pub signal_queued: bool,
    pub created_ms: u64,
    /// The document as received, kept until the signal is queued (a
    /// restarted berthd composes the signal from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
}

/// The services the pull put on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PulledSet {
    pub services: BTreeSet<String>,
}

pub struct Index {
    dir: PathBuf,
    /// Moves on after each write of a done entry, once it is on disk: a
    /// long poll subscribes, reads the entry, and waits on this.
    done: tokio::sync::watch::Sender<u64>,
}

fn corrupt(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// A file name for a document id: `[A-Za-z0-9._-]` kept, anything else
/// `_`; when that changed the id (or it is long), a hash of the id is
/// appended so two ids never share a file.
pub fn file_name(doc_id: &str) -> String {
    let safe: String = doc_id
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe == doc_id {
        format!("doc-{safe}.json")
    } else {
        let h = berth_core::hash::sha256_hex(doc_id.as_bytes());
        format!("doc-{safe}-{}.json", &h[..16])
    }
}

impl Index {
    pub fn open(state_dir: &Path) -> Result<Index, StoreError> {
        let dir = state_dir.join(HEAT_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("chmod", &dir, e))?;
        Ok(Index {
            dir,
            done: tokio::sync::watch::channel(0).0,
        })
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| corrupt(&path, e))?;
        berth_store::write_atomic(&self.dir, name, &bytes)
    }

    pub fn get(&self, doc_id: &str) -> Result<Option<DocIndex>, StoreError> {
        let name = file_name(doc_id);
        let entry: Option<DocIndex> = self.read_json(&name)?;
        match entry {
            Some(e) if e.doc_id != doc_id => Err(corrupt(
                &self.dir.join(name),
                format!("holds document {:?}", e.doc_id),
            )),
            other => Ok(other),
        }
    }

    pub fn put(&self, entry: &DocIndex) -> Result<(), StoreError> {
        let mut entry = entry.clone();
        entry.schema_version = SCHEMA_VERSION;
        self.write_json(&file_name(&entry.doc_id), &entry)?;
        if entry.signal_queued {
            self.done.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }

    /// Changes after each write of a done entry (signal queued), when a
    /// read already sees it done.
    pub fn watch_done(&self) -> tokio::sync::watch::Receiver<u64> {
        self.done.subscribe()
    }

    /// Every readable entry; unreadable files are logged and skipped.
    pub fn all(&self) -> Result<Vec<DocIndex>, StoreError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| io_error("list", &self.dir, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| io_error("list", &self.dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with("doc-") || !name.ends_with(".json") {
                continue;
            }
            match self.read_json::<DocIndex>(name) {
                Ok(Some(e)) => out.push(e),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable Heat document index entry left as is")
                }
            }
        }
        out.sort_by_key(|e| e.created_ms);
        Ok(out)
    }

    /// Removes the entries of done documents (signal queued) that `forget`
    /// picks; entries still waiting for their signal and unreadable files
    /// stay. Returns the ids removed.
    pub fn forget(&self, forget: impl Fn(&DocIndex) -> bool) -> Result<Vec<String>, StoreError> {
        let mut gone = Vec::new();
        for e in self.all()? {
            if !e.signal_queued || !forget(&e) {
                continue;
            }
            let path = self.dir.join(file_name(&e.doc_id));
            match std::fs::remove_file(&path) {
                Ok(()) => gone.push(e.doc_id),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error("remove", &path, err)),
            }
        }
        if !gone.is_empty() {
            berth_store::sync_dir(&self.dir)?;
        }
        Ok(gone)
    }

    pub fn pulled(&self) -> Result<PulledSet, StoreError> {
        Ok(self.read_json(PULLED_FILE)?.unwrap_or_default())
    }

    pub fn set_pulled(&self, set: &PulledSet) -> Result<(), StoreError> {
        self.write_json(PULLED_FILE, set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_ids_apart() {
        assert_eq!(file_name("abc-123"), "doc-abc-123.json");
        let a = file_name("a/b");
        let b = file_name("a_b");
        assert_ne!(a, b);
        assert!(a.starts_with("doc-a_b-"));
        assert!(!file_name("../x").contains('/'));
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let idx = Index::open(dir.path()).expect("open");
        assert_eq!(idx.get("d1").expect("get"), None);
        let e = DocIndex {
            doc_id: "d1".into(),
            doc_hash: "sha256:x".into(),
            services: vec!["a".into()],
            ..Default::default()
        };
        idx.put(&e).expect("put");
        let got = idx.get("d1").expect("get").expect("some");
        assert_eq!(got.services, ["a"]);
        assert_eq!(idx.all().expect("all").len(), 1);
        let mut p = PulledSet::default();
        p.services.insert("a".into());
        idx.set_pulled(&p).expect("set");
        assert_eq!(idx.pulled().expect("pulled"), p);
    }

    #[test]
    fn writing_a_done_entry_moves_watch_done_and_only_that() {
        let dir = tempfile::tempdir().expect("tmp");
        let idx = Index::open(dir.path()).expect("open");
        let mut done = idx.watch_done();
        let mut e = DocIndex {
            doc_id: "d1".into(),
            ..Default::default()
        };
        idx.put(&e).expect("put");
        assert!(!done.has_changed().expect("open"), "not done yet");
        e.signal_queued = true;
        idx.put(&e).expect("put");
        assert!(done.has_changed().expect("open"));
        done.borrow_and_update();
        assert!(idx.get("d1").expect("get").expect("some").signal_queued);
    }

    #[test]
    fn forget_removes_only_done_documents_it_picks() {
        let dir = tempfile::tempdir().expect("tmp");
        let idx = Index::open(dir.path()).expect("open");
        for (id, done) in [("old", true), ("waiting", false), ("kept", true)] {
            idx.put(&DocIndex {
                doc_id: id.into(),
                signal_queued: done,
                ..Default::default()
            })
            .expect("put");
        }
        std::fs::write(dir.path().join(HEAT_DIR).join("doc-torn.json"), b"{\"doc_").expect("torn");
        let gone = idx.forget(|e| e.doc_id != "kept").expect("forget");
        assert_eq!(gone, ["old"]);
        assert_eq!(idx.get("old").expect("get"), None);
        assert!(
            idx.get("waiting").expect("get").is_some(),
            "its signal is not queued yet"
        );
        assert!(idx.get("kept").expect("get").is_some());
        assert!(
            dir.path().join(HEAT_DIR).join("doc-torn.json").exists(),
            "an unreadable entry is reported, never removed"
        );
    }
}
