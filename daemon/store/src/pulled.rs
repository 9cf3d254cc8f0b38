//! The images berth pulled, so that pruning removes only those.
//!
//! ```text
//! <state_dir>/images/            0700
//!   pulled.json                  {"schema_version": 1, "images": [PulledImage, ...]}
//! ```
//!
//! Replaced whole ([`write_atomic`]) on every change. A file that is not
//! such a document (torn, empty, foreign, a symlink, over the cap) is
//! reported as [`StoreError::Corrupt`] and never rewritten: until an
//! operator moves it away berth notes no pull and prunes nothing.

use std::path::{Path, PathBuf};

use berth_core::images::{PulledImage, note_pulled};
use berth_core::store::StoreError;
use serde::{Deserialize, Serialize};

use crate::atomic::{ensure_dir, io_err, write_atomic};
use crate::read::{ReadError, read_beneath};

/// Name of the images directory in the state dir.
pub const IMAGES_DIR: &str = "images";
/// Name of the pulled-images file in [`IMAGES_DIR`].
pub const PULLED_FILE: &str = "pulled.json";
/// Version of the pulled-images document berth writes.
pub const PULLED_SCHEMA_VERSION: u32 = 1;
/// The largest pulled-images file berth reads (some thousands of images).
const PULLED_MAX_BYTES: u64 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct PulledDoc {
    schema_version: u32,
    images: Vec<PulledImage>,
}

/// `<state_dir>/images/pulled.json`.
#[derive(Debug)]
pub(crate) struct PulledFile {
    root: PathBuf,
    dir: PathBuf,
}

impl PulledFile {
    pub(crate) fn new(state_dir: &Path) -> PulledFile {
        PulledFile {
            root: state_dir.to_path_buf(),
            dir: state_dir.join(IMAGES_DIR),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(PULLED_FILE)
    }

    /// The list; empty when the file is not there.
    pub(crate) fn read(&self) -> Result<Vec<PulledImage>, StoreError> {
        let path = self.path();
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match read_beneath(&self.root, &[IMAGES_DIR, PULLED_FILE], PULLED_MAX_BYTES) {
            Ok(None) => return Ok(Vec::new()),
            Ok(Some(bytes)) => bytes,
            Err(ReadError::Io(e)) => return Err(io_err("read", &path, e)),
            Err(ReadError::Refused(reason)) => return Err(corrupt(reason)),
        };
        parse(&bytes).map_err(corrupt)
    }

    /// Reads, changes and writes the list back (the caller holds the
    /// store's write lock). An unreadable file is left as it is.
    pub(crate) fn update(
        &self,
        change: impl FnOnce(&mut Vec<PulledImage>) -> bool,
    ) -> Result<(), StoreError> {
        let mut images = self.read()?;
        if !change(&mut images) {
            return Ok(());
        }
        ensure_dir(&self.dir)?;
        let doc = PulledDoc {
            schema_version: PULLED_SCHEMA_VERSION,
            images,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| {
            io_err(
                "serialize",
                &self.path(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        write_atomic(&self.dir, PULLED_FILE, &bytes)
    }

    pub(crate) fn note(&self, image: &PulledImage) -> Result<(), StoreError> {
        self.update(|list| {
            let before = list.clone();
            note_pulled(list, image.clone());
            *list != before
        })
    }

    pub(crate) fn forget(&self, ids: &[String]) -> Result<(), StoreError> {
        self.update(|list| {
            let before = list.len();
            list.retain(|p| !ids.contains(&p.id));
            list.len() != before
        })
    }
}

/// The list in `bytes`, or why they are not a pulled-images document.
fn parse(bytes: &[u8]) -> Result<Vec<PulledImage>, String> {
    let value = crate::parse::json_value(bytes)?;
    let is_ours = value
        .as_object()
        .is_some_and(|o| o.contains_key("schema_version") && o.contains_key("images"));
    if !is_ours {
        return Err(
            "not a berth pulled-images list (a JSON object with `schema_version` and `images`)"
                .to_string(),
        );
    }
    let doc: PulledDoc = serde_json::from_value(value)
        .map_err(|e| format!("not a valid berth pulled-images list: {e}"))?;
    if doc.schema_version > PULLED_SCHEMA_VERSION {
        tracing::warn!(
            schema_version = doc.schema_version,
            known = PULLED_SCHEMA_VERSION,
            "pulled-images list written by a newer berth; reading what this version knows"
        );
    }
    Ok(doc.images)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, reference: &str) -> PulledImage {
        PulledImage {
            id: id.into(),
            references: vec![reference.into()],
            digest: Some(format!("reg/web@sha256:{}", &id[7..])),
            service: "web".into(),
            pulled_at_ms: 10,
        }
    }

    #[test]
    fn notes_and_forgets_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = PulledFile::new(dir.path());
        assert_eq!(f.read().expect("no file is an empty list"), []);
        f.note(&image("sha256:aa", "reg/web:1")).expect("note");
        f.note(&image("sha256:bb", "reg/web:2")).expect("note");
        let again = PulledFile::new(dir.path());
        let ids: Vec<String> = again
            .read()
            .expect("read")
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["sha256:aa", "sha256:bb"]);
        again.forget(&["sha256:aa".to_string()]).expect("forget");
        let left = f.read().expect("read");
        assert_eq!(left, [image("sha256:bb", "reg/web:2")]);
        let text = std::fs::read_to_string(dir.path().join("images/pulled.json")).expect("file");
        assert!(text.contains("\"schema_version\": 1"), "{text}");
    }

    #[test]
    fn a_torn_or_foreign_file_is_reported_and_never_replaced() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (
                b"{\"schema_version\": 1, \"images\": [{\"id\"",
                "torn write",
            ),
            (b"[1, 2]", "not a berth pulled-images list"),
            (b"{\"name\": \"x\"}", "not a berth pulled-images list"),
            (
                b"{\"schema_version\": 1, \"images\": [{\"id\": 3}]}",
                "not a valid berth pulled-images list",
            ),
        ];
        for (bytes, want) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir(dir.path().join(IMAGES_DIR)).expect("mkdir");
            let path = dir.path().join(IMAGES_DIR).join(PULLED_FILE);
            std::fs::write(&path, bytes).expect("write");
            let f = PulledFile::new(dir.path());
            let err = f.read().expect_err("reported").to_string();
            assert!(err.contains(want), "{err} lacks {want:?}");
            assert!(err.contains("pulled.json"), "{err} names the file");
            let noted = f.note(&image("sha256:aa", "reg/web:1"));
            assert!(
                matches!(noted, Err(StoreError::Corrupt { .. })),
                "{noted:?}"
            );
            assert!(matches!(
                f.forget(&["sha256:aa".into()]),
                Err(StoreError::Corrupt { .. })
            ));
            assert_eq!(std::fs::read(&path).expect("still there"), *bytes);
        }
    }

    #[test]
    fn a_symlinked_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(IMAGES_DIR)).expect("mkdir");
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, br#"{"schema_version": 1, "images": []}"#).expect("write");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(IMAGES_DIR).join(PULLED_FILE))
            .expect("symlink");
        let f = PulledFile::new(dir.path());
        assert!(matches!(f.read(), Err(StoreError::Corrupt { .. })));
    }
}
