//! Reading state-dir files without trusting what lies there.
//!
//! A record is found by walking from the `services/` directory one component
//! at a time with `openat(O_NOFOLLOW)`: a symlink anywhere below `services/`
//! (a service directory, `history/`, the file itself) is refused, never
//! followed. The file must be a regular file (checked with `fstat` on the
//! open descriptor, opened `O_NONBLOCK` so a FIFO cannot block the open) of
//! at most [`RECORD_MAX_BYTES`], and is read with a bounded read: a file
//! that grows while it is read is refused too, never loaded whole.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

/// The largest state-dir record berth reads: a service's `current.json` or
/// one `history/<gen>.json`.
///
/// Why 8 MiB: a record holds a spec (an API body is at most 1 MiB) and a
/// task's or reload's outputs (stdout and stderr, 1 MiB each, and the
/// declared outputs, 4 MiB together), which as pretty JSON stays under it;
/// `save_record` cuts the outputs of a record that would not (control
/// characters grow sixfold as JSON escapes), so every record berth writes
/// is readable. A bigger file was not written by berth, and parsing it
/// would cost several times its size in memory (a 100 MB file took
/// 417 MB), for every service at every start.
pub const RECORD_MAX_BYTES: u64 = 8 << 20;

/// Why a state-dir file was not read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The disk or the kernel failed.
    Io(io::Error),
    /// What lies there is not a file berth wrote: a symlink, a FIFO, a
    /// directory, a file over the cap. Reported as torn or foreign, left
    /// as is.
    Refused(String),
}

impl ReadError {
    /// The error as a load reports it for a service.
    pub(crate) fn reason(&self) -> String {
        match self {
            ReadError::Io(e) => format!("cannot read it: {e}"),
            ReadError::Refused(reason) => reason.clone(),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Refused(reason) => f.write_str(reason),
        }
    }
}

const NO_SYMLINKS: &str = "berth does not follow symlinks in its state directory";

/// Reads `base/<rel...>` without following a symlink in any of `rel`'s
/// components (`base` itself is trusted: it is the state dir the operator
/// configured). `Ok(None)` if a component does not exist.
pub(crate) fn read_beneath(
    base: &Path,
    rel: &[&str],
    max: u64,
) -> Result<Option<Vec<u8>>, ReadError> {
    let Some((name, dirs)) = rel.split_last() else {
        return Err(ReadError::Refused("no file name".into()));
    };
    let mut dirfd = match rustix::fs::open(
        base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(ReadError::Io(e.into())),
    };
    let mut walked = String::new();
    for dir in dirs {
        walked.push_str(dir);
        walked.push('/');
        match rustix::fs::openat(
            &dirfd,
            *dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => dirfd = fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
                return Err(describe(&dirfd, dir, &walked, e));
            }
            Err(e) => return Err(ReadError::Io(e.into())),
        }
    }
    let fd = match rustix::fs::openat(
        &dirfd,
        *name,
        // NONBLOCK: opening a FIFO for reading would wait for a writer.
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e @ Errno::LOOP) => return Err(describe(&dirfd, name, name, e)),
        Err(e) => return Err(ReadError::Io(e.into())),
    };
    read_regular(fd, max).map(Some)
}

/// Reads an open file that must be a regular file of at most `max` bytes.
fn read_regular(fd: OwnedFd, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = File::from(fd);
    let meta = file.metadata().map_err(ReadError::Io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadError::Refused(format!(
            "it is {}, not a regular file",
            kind_name(&kind)
        )));
    }
    if meta.len() > max {
        return Err(ReadError::Refused(format!(
            "it is {} bytes, more than the {} a berth record can be: not a file berth wrote",
            meta.len(),
            size(max)
        )));
    }
    // Bounded even if the file grows after the fstat.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::Refused(format!(
            "it grew past the {} a berth record can be while it was read: not a file berth wrote",
            size(max)
        )));
    }
    Ok(bytes)
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// Says what `name` (shown as `shown`) in `dirfd` is, after an open that
/// refused it.
fn describe(dirfd: &OwnedFd, name: &str, shown: &str, errno: Errno) -> ReadError {
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st)
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink =>
        {
            let target = rustix::fs::readlinkat(dirfd, name, Vec::new())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            ReadError::Refused(format!("{shown} is a symlink (to {target}); {NO_SYMLINKS}"))
        }
        Ok(_) if errno == Errno::NOTDIR => {
            ReadError::Refused(format!("{shown} is not a directory"))
        }
        _ => ReadError::Io(errno.into()),
    }
}

/// What a file that is not a regular one is, for the refusal's message.
pub(crate) fn kind_name(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_symlink() {
        "a symlink"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("f.json"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        match read_beneath(dir.path(), &["f.json"], 100) {
            Err(ReadError::Refused(r)) => assert!(r.contains("a FIFO"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlinked_directory_on_the_way_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::write(elsewhere.path().join("1.json"), b"{}").expect("write");
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("history")).expect("symlink");
        match read_beneath(dir.path(), &["history", "1.json"], 100) {
            Err(ReadError::Refused(r)) => {
                assert!(r.contains("history/ is a symlink"), "{r}");
                assert!(r.contains(NO_SYMLINKS), "{r}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_beneath(dir.path(), &["missing", "1.json"], 100),
            Ok(None)
        ));
    }

    #[test]
    fn a_file_at_the_cap_is_read_and_one_past_it_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), vec![b'x'; 100]).expect("write");
        assert_eq!(
            read_beneath(dir.path(), &["a"], 100)
                .expect("read")
                .map(|b| b.len()),
            Some(100)
        );
        match read_beneath(dir.path(), &["a"], 99) {
            Err(ReadError::Refused(r)) => assert!(r.contains("100 bytes"), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
