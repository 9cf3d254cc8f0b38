//! Turning "may have changed" into "did change".

use std::collections::{HashMap, HashSet};
use std::path::Path;

use berth_core::confighash::changed_files;

use berth_core::watch::WatchError;
use berth_sources::{SourceSnapshot, snapshot};

/// A real change of a key's config source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The last hash seen, `None` the first time a key is checked.
    pub old_hash: Option<String>,
    pub new_hash: String,
    /// Relative paths added, removed or modified (sorted); every file on a
    /// first check.
    pub files: Vec<String>,
    /// The source was unreadable at the previous check and is back. Reported
    /// even when the content is identical: a container whose bind-mounted
    /// directory was deleted and recreated still sees the deleted one.
    pub reappeared: bool,
}

/// The last snapshot per key; [`check`](Self::check) re-hashes and compares.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    last: HashMap<String, SourceSnapshot>,
    unreadable: HashSet<String>,
}

impl ChangeTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key`'s baseline without reporting a change (e.g. the snapshot the
    /// running container was created from).
    pub fn seed(&mut self, key: impl Into<String>, snap: SourceSnapshot) {
        let key = key.into();
        self.unreadable.remove(&key);
        self.last.insert(key, snap);
    }

    /// The last snapshot of `key`.
    pub fn last(&self, key: &str) -> Option<&SourceSnapshot> {
        self.last.get(key)
    }

    /// Forgets `key` (its service went away).
    pub fn forget(&mut self, key: &str) {
        self.last.remove(key);
        self.unreadable.remove(key);
    }

    /// Re-hashes `path` and compares with `key`'s last snapshot: `Some` if the
    /// content changed (or on the first check, or when the source came back
    /// after being unreadable), `None` for a `touch` or identical rewrite.
    /// An unreadable source is an error; the last good snapshot is kept.
    pub fn check(&mut self, key: &str, path: &Path) -> Result<Option<Change>, WatchError> {
        let snap = match snapshot(path) {
            Ok(s) => s,
            Err(err) => {
                self.unreadable.insert(key.to_string());
                return Err(err);
            }
        };
        let reappeared = self.unreadable.remove(key);
        let change = match self.last.get(key) {
            Some(old) if old.hash == snap.hash && !reappeared => None,
            Some(old) => Some(Change {
                old_hash: Some(old.hash.clone()),
                new_hash: snap.hash.clone(),
                files: changed_files(&old.files, &snap.files),
                reappeared,
            }),
            None => Some(Change {
                old_hash: None,
                new_hash: snap.hash.clone(),
                files: snap.files.keys().cloned().collect(),
                reappeared,
            }),
        };
        self.last.insert(key.to_string(), snap);
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn first_check_then_no_change_then_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a");
        fs::write(&f, "1").expect("write");
        let mut t = ChangeTracker::new();
        let first = t
            .check("k", dir.path())
            .expect("check")
            .expect("first is a change");
        assert_eq!(first.old_hash, None);
        assert_eq!(first.files, vec!["a"]);
        fs::write(&f, "1").expect("rewrite");
        assert_eq!(t.check("k", dir.path()).expect("check"), None);
        fs::write(dir.path().join("b"), "2").expect("write");
        let c = t.check("k", dir.path()).expect("check").expect("change");
        assert_eq!(c.old_hash.as_deref(), Some(first.new_hash.as_str()));
        assert_eq!(c.files, vec!["b"]);
        assert!(!c.reappeared);
    }

    #[test]
    fn seed_sets_baseline() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), "1").expect("write");
        let mut t = ChangeTracker::new();
        t.seed("k", snapshot(dir.path()).expect("snapshot"));
        assert_eq!(t.check("k", dir.path()).expect("check"), None);
    }

    #[test]
    fn reappearing_source_is_a_change_even_if_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("cfg");
        fs::create_dir(&src).expect("mkdir");
        fs::write(src.join("a"), "1").expect("write");
        let mut t = ChangeTracker::new();
        t.check("k", &src).expect("check");
        fs::remove_dir_all(&src).expect("rm");
        assert!(t.check("k", &src).is_err());
        assert!(t.last("k").is_some(), "last good snapshot kept");
        fs::create_dir(&src).expect("mkdir");
        fs::write(src.join("a"), "1").expect("write");
        let c = t.check("k", &src).expect("check").expect("change");
        assert!(c.reappeared);
        assert_eq!(c.old_hash.as_deref(), Some(c.new_hash.as_str()));
        assert_eq!(t.check("k", &src).expect("check"), None);
    }
}
