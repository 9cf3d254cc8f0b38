//! The content hash of a service's configuration source (a bind-mounted host
//! file or directory). Pure: the caller reads the files and passes them in.
//!
//! `config_hash` = `"sha256:"` + hex of, for every file sorted by relative
//! path: `path NUL mode-octal NUL length-decimal NUL content`. The mode is the
//! full `st_mode` (file type and permission bits). Times (mtime, atime) never
//! enter it, so `touch` or an identical rewrite leaves the hash unchanged.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The prefix of every config hash (and per-file digest).
pub const CONFIG_HASH_PREFIX: &str = "sha256:";

/// One file of a config source, under its visible relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the source, `/`-separated (for a file source: its name).
    pub rel_path: String,
    /// `st_mode`: file type and permission bits (e.g. `0o100644`).
    pub mode: u32,
    /// The file's bytes (for a dangling symlink: its target).
    pub content: Vec<u8>,
}

/// The hash of a whole source; independent of the order of `entries`.
pub fn config_hash(entries: &[FileEntry]) -> String {
    let mut sorted: Vec<&FileEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let mut hasher = Sha256::new();
    for e in sorted {
        hasher.update(e.rel_path.as_bytes());
        hasher.update([0]);
        update_mode_content(&mut hasher, e.mode, &e.content);
    }
    format!("{CONFIG_HASH_PREFIX}{}", hex(&hasher.finalize()))
}

/// The digest of one file's mode and content (not its path): what
/// [`changed_files`] compares.
pub fn file_digest(mode: u32, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    update_mode_content(&mut hasher, mode, content);
    format!("{CONFIG_HASH_PREFIX}{}", hex(&hasher.finalize()))
}

/// Relative paths added, removed or modified between two per-file digest
/// maps, sorted.
pub fn changed_files(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = old
        .iter()
        .filter(|(path, digest)| new.get(*path) != Some(*digest))
        .map(|(path, _)| path.clone())
        .collect();
    out.extend(new.keys().filter(|path| !old.contains_key(*path)).cloned());
    out.sort();
    out
}

fn update_mode_content(hasher: &mut Sha256, mode: u32, content: &[u8]) {
    hasher.update(format!("{mode:o}").as_bytes());
    hasher.update([0]);
    hasher.update(content.len().to_string().as_bytes());
    hasher.update([0]);
    hasher.update(content);
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: u32, content: &str) -> FileEntry {
        FileEntry {
            rel_path: path.to_string(),
            mode,
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn hash_has_prefix_and_hex() {
        let h = config_hash(&[entry("a", 0o100644, "x")]);
        let hex = h.strip_prefix("sha256:").expect("prefix");
        assert_eq!(hex.len(), 64);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn order_independent() {
        let a = entry("a.conf", 0o100644, "one");
        let b = entry("sub/b.conf", 0o100600, "two");
        assert_eq!(config_hash(&[a.clone(), b.clone()]), config_hash(&[b, a]));
    }

    #[test]
    fn mode_matters() {
        assert_ne!(
            config_hash(&[entry("a", 0o100644, "x")]),
            config_hash(&[entry("a", 0o100755, "x")])
        );
        assert_ne!(file_digest(0o100644, b"x"), file_digest(0o100755, b"x"));
    }

    #[test]
    fn content_matters() {
        assert_ne!(
            config_hash(&[entry("a", 0o100644, "x")]),
            config_hash(&[entry("a", 0o100644, "y")])
        );
    }

    #[test]
    fn path_matters() {
        assert_ne!(
            config_hash(&[entry("a", 0o100644, "x")]),
            config_hash(&[entry("b", 0o100644, "x")])
        );
    }

    #[test]
    fn boundaries_are_unambiguous() {
        // Moving bytes from one file's content into the next file's path must
        // not collide.
        assert_ne!(
            config_hash(&[entry("a", 0o100644, "bc"), entry("d", 0o100644, "")]),
            config_hash(&[entry("a", 0o100644, "b"), entry("cd", 0o100644, "")])
        );
        assert_ne!(config_hash(&[]), config_hash(&[entry("", 0o100644, "")]));
    }

    #[test]
    fn touch_same_bytes_same_hash() {
        // There is no time in an entry: the same bytes and mode are the same hash.
        let before = config_hash(&[entry("a", 0o100644, "x"), entry("b", 0o100644, "y")]);
        let after = config_hash(&[entry("a", 0o100644, "x"), entry("b", 0o100644, "y")]);
        assert_eq!(before, after);
    }

    #[test]
    fn changed_files_lists_added_removed_modified_sorted() {
        let old: BTreeMap<String, String> = [("a", "1"), ("b", "2"), ("c", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let new: BTreeMap<String, String> = [("a", "1"), ("c", "9"), ("0new", "4")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(changed_files(&old, &new), vec!["0new", "b", "c"]);
        assert!(changed_files(&old, &old).is_empty());
    }
}
