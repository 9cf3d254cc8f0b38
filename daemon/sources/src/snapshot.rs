//! Reading and hashing a config source.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_core::confighash::{FileEntry, config_hash, file_digest};

use berth_core::watch::WatchError;

/// The content of a config source at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// [`berth_core::confighash::config_hash`] over all files.
    pub hash: String,
    /// Relative path → [`berth_core::confighash::file_digest`] (mode and content).
    pub files: BTreeMap<String, String>,
}

/// Reads a config source: a file, or a directory recursively.
///
/// Symlinks are followed, for the source itself and for every entry; content
/// is hashed under the *visible* relative names. Entries whose name starts with
/// `..` are skipped: that is the Kubernetes ConfigMap layout (`dir/..data ->
/// ..2024_xx`, `dir/app.conf -> ..data/app.conf`), whose internals change on
/// every update while the visible files are what the container reads. A file
/// source is hashed under its own file name.
///
/// A dangling symlink is hashed as a symlink (mode `0o120777`-ish, content =
/// its target), so fixing or retargeting it is a change. FIFOs, sockets and
/// devices are hashed by mode only and never opened. Empty directories do not
/// contribute.
///
/// A missing or unreadable source, or a file that vanishes mid-walk (a
/// ConfigMap swap racing us), is [`WatchError::Unreadable`] naming the path;
/// the event that the swap also produces makes the caller try again.
pub fn snapshot(source: &Path) -> Result<SourceSnapshot, WatchError> {
    let meta = fs::metadata(source).map_err(|e| unreadable(source, "stat", e))?;
    let mut entries = Vec::new();
    if meta.is_dir() {
        let mut ancestors = vec![(meta.dev(), meta.ino())];
        walk(source, "", &mut ancestors, &mut entries)?;
    } else {
        let name = match source.file_name() {
            Some(n) => utf8(n.as_bytes(), source)?,
            None => ".".to_string(),
        };
        entries.push(read_entry(source, name, &meta)?);
    }
    let files = entries
        .iter()
        .map(|e| (e.rel_path.clone(), file_digest(e.mode, &e.content)))
        .collect();
    Ok(SourceSnapshot {
        hash: config_hash(&entries),
        files,
    })
}

fn walk(
    dir: &Path,
    prefix: &str,
    ancestors: &mut Vec<(u64, u64)>,
    entries: &mut Vec<FileEntry>,
) -> Result<(), WatchError> {
    let listing = fs::read_dir(dir).map_err(|e| unreadable(dir, "read directory", e))?;
    for item in listing {
        let item = item.map_err(|e| unreadable(dir, "read directory", e))?;
        let name = item.file_name();
        let path = item.path();
        let name = utf8(name.as_bytes(), &path)?;
        if name.starts_with("..") {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(err) => match fs::symlink_metadata(&path) {
                // Dangling (or looping) symlink: hash the link itself.
                Ok(lmeta) if lmeta.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&path).map_err(|e| unreadable(&path, "read symlink", e))?;
                    entries.push(FileEntry {
                        rel_path: rel,
                        mode: lmeta.mode(),
                        content: target.as_os_str().as_bytes().to_vec(),
                    });
                    continue;
                }
                _ => return Err(unreadable(&path, "stat", err)),
            },
        };
        if meta.is_dir() {
            let id = (meta.dev(), meta.ino());
            if ancestors.contains(&id) {
                return Err(WatchError::SymlinkLoop { path });
            }
            ancestors.push(id);
            walk(&path, &format!("{rel}/"), ancestors, entries)?;
            ancestors.pop();
        } else {
            entries.push(read_entry(&path, rel, &meta)?);
        }
    }
    Ok(())
}

fn read_entry(path: &Path, rel_path: String, meta: &fs::Metadata) -> Result<FileEntry, WatchError> {
    let content = if meta.is_file() {
        fs::read(path).map_err(|e| unreadable(path, "read", e))?
    } else {
        Vec::new()
    };
    Ok(FileEntry {
        rel_path,
        mode: meta.mode(),
        content,
    })
}

fn utf8(name: &[u8], path: &Path) -> Result<String, WatchError> {
    String::from_utf8(name.to_vec()).map_err(|_| WatchError::NonUtf8Name {
        path: path.to_path_buf(),
    })
}

fn unreadable(path: &Path, op: &'static str, source: std::io::Error) -> WatchError {
    WatchError::Unreadable {
        path: PathBuf::from(path),
        op,
        reason: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn file_source_is_hashed_under_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("app.conf");
        fs::write(&f, "a=1\n").expect("write");
        let snap = snapshot(&f).expect("snapshot");
        assert_eq!(snap.files.keys().collect::<Vec<_>>(), vec!["app.conf"]);
        assert!(snap.hash.starts_with("sha256:"));
    }

    #[test]
    fn directory_is_recursive_and_sorted_by_visible_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("sub/deeper")).expect("mkdir");
        fs::create_dir(dir.path().join("empty")).expect("mkdir");
        fs::write(dir.path().join("a.conf"), "a").expect("write");
        fs::write(dir.path().join("sub/deeper/b.conf"), "b").expect("write");
        fs::write(dir.path().join(".hidden"), "h").expect("write");
        let snap = snapshot(dir.path()).expect("snapshot");
        assert_eq!(
            snap.files.keys().collect::<Vec<_>>(),
            vec![".hidden", "a.conf", "sub/deeper/b.conf"]
        );
    }

    #[test]
    fn configmap_layout_hashes_visible_names_and_follows_swaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir(d.join("..2024_a")).expect("mkdir");
        fs::write(d.join("..2024_a/app.conf"), "v1").expect("write");
        symlink("..2024_a", d.join("..data")).expect("symlink");
        symlink("..data/app.conf", d.join("app.conf")).expect("symlink");
        let before = snapshot(d).expect("snapshot");
        assert_eq!(before.files.keys().collect::<Vec<_>>(), vec!["app.conf"]);
        // The file source through the symlink chain hashes the same content.
        let file_before = snapshot(&d.join("app.conf")).expect("snapshot");

        fs::create_dir(d.join("..2024_b")).expect("mkdir");
        fs::write(d.join("..2024_b/app.conf"), "v2").expect("write");
        symlink("..2024_b", d.join("..data_tmp")).expect("symlink");
        fs::rename(d.join("..data_tmp"), d.join("..data")).expect("rename");
        let after = snapshot(d).expect("snapshot");
        assert_ne!(before.hash, after.hash);
        assert_ne!(
            file_before.hash,
            snapshot(&d.join("app.conf")).expect("snapshot").hash
        );
    }

    #[test]
    fn symlinked_source_equals_its_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        fs::write(real.join("x"), "1").expect("write");
        symlink(&real, dir.path().join("link")).expect("symlink");
        assert_eq!(
            snapshot(&real).expect("snapshot"),
            snapshot(&dir.path().join("link")).expect("snapshot")
        );
    }

    #[test]
    fn mode_change_changes_hash_touch_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x");
        fs::write(&f, "1").expect("write");
        let a = snapshot(dir.path()).expect("snapshot");
        fs::write(&f, "1").expect("rewrite");
        assert_eq!(a, snapshot(dir.path()).expect("snapshot"));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_ne!(a.hash, snapshot(dir.path()).expect("snapshot").hash);
    }

    #[test]
    fn missing_source_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = dir.path().join("gone");
        match snapshot(&gone) {
            Err(err @ WatchError::Unreadable { .. }) => {
                let WatchError::Unreadable { path, .. } = &err else {
                    unreachable!()
                };
                assert_eq!(path, &gone);
                assert!(err.to_string().contains(&*gone.to_string_lossy()));
            }
            other => panic!("expected Unreadable, got {other:?}"),
        }
    }

    #[test]
    fn dangling_symlink_is_hashed_as_a_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        symlink("nowhere", dir.path().join("dangling")).expect("symlink");
        let a = snapshot(dir.path()).expect("snapshot");
        assert_eq!(a.files.keys().collect::<Vec<_>>(), vec!["dangling"]);
        fs::write(dir.path().join("nowhere"), "now here").expect("write");
        let b = snapshot(dir.path()).expect("snapshot");
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        symlink("..", dir.path().join("sub/up")).expect("symlink");
        assert!(matches!(
            snapshot(dir.path()),
            Err(WatchError::SymlinkLoop { .. })
        ));
    }
}
