//! A config source read into the form records keep.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_core::reconfig::ConfigState;
use berth_core::spec::{ConfigMount, SourceKind};

use crate::snapshot;

/// Reads `mount.source`: its content hash, per-file digests, what a bind
/// mount resolves it to (`dev:ino`, symlinks followed) and what kind of
/// path it is. An unreadable source keeps `previous`'s files and names the
/// path and the OS error. Blocking: run it off the event loop.
pub fn read_state(
    mount: &ConfigMount,
    previous: Option<&ConfigState>,
) -> (ConfigState, Option<SourceKind>) {
    let path = Path::new(&mount.source);
    let kind = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Some(SourceKind::Symlink),
        Ok(m) if m.is_dir() => Some(SourceKind::Directory),
        Ok(_) => Some(SourceKind::File),
        Err(_) => None,
    };
    let root = match std::fs::metadata(path) {
        Ok(m) => format!("{}:{}", m.dev(), m.ino()),
        Err(e) => {
            let error = format!("config source {}: cannot stat: {e}", mount.source);
            return (ConfigState::unreadable(mount, previous, error), kind);
        }
    };
    match snapshot(path) {
        Ok(snap) => (
            ConfigState {
                source: mount.source.clone(),
                target: mount.target.clone(),
                hash: Some(snap.hash),
                files: snap.files,
                root: Some(root),
                error: None,
            },
            kind,
        ),
        Err(e) => (
            ConfigState::unreadable(mount, previous, e.to_string()),
            kind,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::spec::OnChange;

    fn mount(source: &Path) -> ConfigMount {
        ConfigMount {
            source: source.to_string_lossy().into_owned(),
            target: "/etc/x".into(),
            on_change: OnChange::Restart,
        }
    }

    #[test]
    fn reads_a_directory_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("cfg");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("a.conf"), "one").expect("write");
        let (state, kind) = read_state(&mount(&src), None);
        assert_eq!(kind, Some(SourceKind::Directory));
        assert!(state.hash.is_some() && state.error.is_none());
        assert_eq!(state.files.keys().collect::<Vec<_>>(), ["a.conf"]);
        assert!(state.root.is_some());

        std::fs::remove_dir_all(&src).expect("rm");
        let (gone, kind) = read_state(&mount(&src), Some(&state));
        assert_eq!(kind, None);
        assert_eq!(gone.hash, None);
        let err = gone.error.expect("error");
        assert!(err.contains(&src.to_string_lossy().into_owned()), "{err}");
        assert!(err.contains("No such file"), "{err}");
        // What was known is kept, to name changed files when it is back.
        assert_eq!(gone.files, state.files);
    }

    #[test]
    fn tells_files_and_symlinks_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.conf");
        std::fs::write(&file, "x").expect("write");
        let link = dir.path().join("current");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert_eq!(read_state(&mount(&file), None).1, Some(SourceKind::File));
        assert_eq!(read_state(&mount(&link), None).1, Some(SourceKind::Symlink));
    }

    /// A touch (a new mtime, same bytes and mode) is no change: the
    /// loop's config tests rewrite in-memory files, this is the real one.
    #[test]
    fn a_touch_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("cfg");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("app.conf"), "a=1\n").expect("write");
        let (before, _) = read_state(&mount(&src), None);
        std::fs::write(src.join("app.conf"), "a=1\n").expect("identical rewrite");
        let f = std::fs::File::options()
            .write(true)
            .open(src.join("app.conf"))
            .expect("open");
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
            .expect("touch");
        let (after, _) = read_state(&mount(&src), Some(&before));
        assert_eq!(after, before);
    }
}
