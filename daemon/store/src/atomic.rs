//! Crash-safe files: a reader (or berthd after a crash) sees the old content
//! or the new, never a mix.
//!
//! How it works: the new content goes to a temp file named `.tmp-<random>` in
//! the *same* directory (so the rename cannot cross filesystems), created with
//! `O_CREAT|O_EXCL|O_CLOEXEC` and mode 0600, written, `fsync`ed, renamed over
//! the target, and then the directory is `fsync`ed so the rename itself is
//! durable. Every step after the directory is opened goes through that
//! directory's file descriptor (`openat`, `renameat`), so a directory renamed
//! mid-write cannot misplace the file. A crash leaves at most a stray temp
//! file, which [`sweep_temps`] removes at start.

use std::fs::{DirBuilder, File};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use berth_core::store::StoreError;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// Name prefix of temp files; nothing else berth writes starts with it.
pub const TMP_PREFIX: &str = ".tmp-";

/// Mode of every file berth writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory berth creates.
pub const DIR_MODE: u32 = 0o700;

/// What [`create_atomic`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Created {
    /// The file did not exist and now holds the new content.
    Created,
    /// The file already existed; it was left untouched.
    AlreadyExists,
}

/// Replaces (or creates) `dir/name` with `bytes`, atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    put(dir, name, bytes, true).map(|_| ())
}

/// Creates `dir/name` with `bytes`, atomically and durably, but never
/// replaces an existing file: if `dir/name` exists (even if it appeared while
/// the content was being written) it is left alone and
/// [`Created::AlreadyExists`] is returned.
///
/// Uses `renameat2(RENAME_NOREPLACE)`; on a filesystem without it, a hard link
/// of the temp file to the target (which fails if the target exists) and an
/// unlink of the temp file.
pub fn create_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<Created, StoreError> {
    put(dir, name, bytes, false)
}

fn put(dir: &Path, name: &str, bytes: &[u8], replace: bool) -> Result<Created, StoreError> {
    let target = dir.join(name);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io_err(
            "write",
            &target,
            io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name"),
        ));
    }
    let dirfd = open_dir(dir)?;
    let (mut tmp, fd) = TempFile::create(&dirfd, dir)?;
    let tmp_path = dir.join(&tmp.name);
    // The open mode is filtered by the umask; make it exactly 0600.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))
        .map_err(|e| io_err("set permissions on", &tmp_path, e.into()))?;
    let mut file = File::from(fd);
    file.write_all(bytes)
        .map_err(|e| io_err("write", &tmp_path, e))?;
    file.sync_all().map_err(|e| io_err("sync", &tmp_path, e))?;
    drop(file);

    if replace {
        rustix::fs::renameat(&dirfd, tmp.name.as_str(), &dirfd, name)
            .map_err(|e| io_err("move the new file into place at", &target, e.into()))?;
        tmp.disarm();
    } else {
        match rustix::fs::renameat_with(
            &dirfd,
            tmp.name.as_str(),
            &dirfd,
            name,
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) => tmp.disarm(),
            // The temp file is removed by its guard.
            Err(Errno::EXIST) => return Ok(Created::AlreadyExists),
            // No renameat2 here (old kernel, or a filesystem without
            // RENAME_NOREPLACE): a hard link also refuses an existing target.
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                if link_into_place(&dirfd, &tmp.name, name, &target)? == Created::AlreadyExists {
                    return Ok(Created::AlreadyExists);
                }
                // The target is complete; the temp name is just a second link.
                tmp.remove();
            }
            Err(e) => return Err(io_err("move the new file into place at", &target, e.into())),
        }
    }
    rustix::fs::fsync(&dirfd).map_err(|e| io_err("sync the directory", dir, e.into()))?;
    Ok(Created::Created)
}

/// The fallback of [`create_atomic`]: hard-links `tmp` to `name`, which
/// fails if `name` exists. The caller removes `tmp`.
fn link_into_place(
    dirfd: &OwnedFd,
    tmp: &str,
    name: &str,
    target: &Path,
) -> Result<Created, StoreError> {
    match rustix::fs::linkat(dirfd, tmp, dirfd, name, AtFlags::empty()) {
        Ok(()) => Ok(Created::Created),
        Err(Errno::EXIST) => Ok(Created::AlreadyExists),
        Err(e) => Err(io_err("link the new file to", target, e.into())),
    }
}

/// A temp file that removes itself unless disarmed.
struct TempFile<'a> {
    dirfd: &'a OwnedFd,
    name: String,
    armed: bool,
}

impl<'a> TempFile<'a> {
    fn create(dirfd: &'a OwnedFd, dir: &Path) -> Result<(Self, OwnedFd), StoreError> {
        let mut last = Errno::EXIST;
        for _ in 0..8 {
            let name = format!("{TMP_PREFIX}{:016x}", rand::random::<u64>());
            match rustix::fs::openat(
                dirfd,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(FILE_MODE),
            ) {
                Ok(fd) => {
                    let guard = TempFile {
                        dirfd,
                        name,
                        armed: true,
                    };
                    return Ok((guard, fd));
                }
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(io_err("create a temp file in", dir, last.into()))
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    fn remove(&mut self) {
        if self.armed {
            self.armed = false;
            // Best effort: a leftover is swept at the next start.
            let _ = rustix::fs::unlinkat(self.dirfd, self.name.as_str(), AtFlags::empty());
        }
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

pub(crate) fn open_dir(dir: &Path) -> Result<OwnedFd, StoreError> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open the directory", dir, e.into()))
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let fd = open_dir(dir)?;
    rustix::fs::fsync(&fd).map_err(|e| io_err("sync the directory", dir, e.into()))
}

/// Creates `path` (mode 0700) unless it exists; a new directory is made
/// durable by syncing its parent. Its parent must exist.
pub(crate) fn ensure_dir(path: &Path) -> Result<(), StoreError> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {
            // The mode was filtered by the umask; make it exactly 0700.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| io_err("set permissions on", path, e))?;
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Not followed: berth writes through no symlink in its state dir.
            let meta = std::fs::symlink_metadata(path).map_err(|e| io_err("inspect", path, e))?;
            if meta.is_dir() {
                Ok(())
            } else if meta.file_type().is_symlink() {
                Err(io_err(
                    "use as a directory",
                    path,
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "a symlink; berth does not follow symlinks in its state directory",
                    ),
                ))
            } else {
                Err(io_err(
                    "use as a directory",
                    path,
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ))
            }
        }
        Err(e) => Err(io_err("create the directory", path, e)),
    }
}

/// Removes stray temp files (left by a crash mid-write) from `dir`, logging
/// each. A missing `dir` is fine. Never touches anything else.
pub(crate) fn sweep_temps(dir: &Path) -> Result<usize, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(TMP_PREFIX) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                tracing::warn!(path = %path.display(), "removed a stray temp file left by an interrupted write");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a stray temp file");
            }
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_atomic(dir.path(), "a.json", b"one").expect("write");
        write_atomic(dir.path(), "a.json", b"two").expect("rewrite");
        assert_eq!(
            std::fs::read(dir.path().join("a.json")).expect("read"),
            b"two"
        );
        assert_eq!(names(dir.path()), ["a.json"]);
        let mode = std::fs::metadata(dir.path().join("a.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn create_atomic_refuses_to_clobber() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            create_atomic(dir.path(), "1.json", b"first").expect("create"),
            Created::Created
        );
        assert_eq!(
            create_atomic(dir.path(), "1.json", b"second").expect("create again"),
            Created::AlreadyExists
        );
        assert_eq!(
            std::fs::read(dir.path().join("1.json")).expect("read"),
            b"first"
        );
        assert_eq!(names(dir.path()), ["1.json"], "the temp file is cleaned up");
    }

    #[test]
    fn the_hard_link_fallback_refuses_to_clobber_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dirfd = open_dir(dir.path()).expect("open");
        std::fs::write(dir.path().join(".tmp-a"), b"new").expect("write");
        std::fs::write(dir.path().join("old.json"), b"old").expect("write");
        let target = dir.path().join("old.json");
        assert_eq!(
            link_into_place(&dirfd, ".tmp-a", "old.json", &target).expect("link"),
            Created::AlreadyExists
        );
        assert_eq!(std::fs::read(&target).expect("read"), b"old");
        let target = dir.path().join("new.json");
        assert_eq!(
            link_into_place(&dirfd, ".tmp-a", "new.json", &target).expect("link"),
            Created::Created
        );
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
    }

    #[test]
    fn names_with_slashes_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(write_atomic(dir.path(), bad, b"x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sweep_removes_only_temps() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".tmp-abc"), b"partial").expect("write");
        std::fs::write(dir.path().join("keep.json"), b"{}").expect("write");
        assert_eq!(sweep_temps(dir.path()).expect("sweep"), 1);
        assert_eq!(names(dir.path()), ["keep.json"]);
        assert_eq!(sweep_temps(&dir.path().join("missing")).expect("sweep"), 0);
    }
}
