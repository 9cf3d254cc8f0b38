//! The event log: `events.jsonl`, one JSON event per line, appended.
//!
//! Appends are not `fsync`ed (see [`Store::append_event`]); compaction is an
//! atomic, durable rewrite keeping the newest lines. Reading skips lines that
//! do not parse, with a warning: a torn last line (a crash mid-append), or an
//! event kind written by a newer berth. Compaction keeps any line that is
//! JSON, so a downgrade does not drop a newer version's events.
//!
//! The file is opened with `O_NOFOLLOW` and must be a regular file: a
//! symlink, FIFO or device planted in its place is refused with an error
//! naming it, never followed, read or appended to. It is read as a stream,
//! one line at a time, each line cut at [`EVENT_LINE_MAX`] and only the
//! newest lines kept, so a huge file costs time but not memory.
//!
//! [`Store::append_event`]: berth_core::store::Store::append_event

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use berth_core::event::Event;
use berth_core::store::StoreError;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::EVENTS_FILE;
use crate::atomic::{FILE_MODE, io_err, write_atomic};

/// The longest line of the event log berth reads. An event berth writes is
/// a few hundred bytes (its longest texts are error messages); a longer
/// line was not written by berth and is skipped, never held in memory whole.
pub(crate) const EVENT_LINE_MAX: usize = 64 << 10;

/// In-memory state of the log; lives behind the store's mutex.
#[derive(Debug)]
pub(crate) struct EventLog {
    dir: PathBuf,
    path: PathBuf,
    /// Open for appending; `None` until the first append (and after an
    /// error), when the file is scanned again.
    file: Option<File>,
    /// Lines in the file; meaningful while `file` is open.
    lines: usize,
}

impl EventLog {
    pub(crate) fn new(dir: &Path) -> EventLog {
        EventLog {
            dir: dir.to_path_buf(),
            path: dir.join(EVENTS_FILE),
            file: None,
            lines: 0,
        }
    }

    /// Forgets what is known about the file; the next append re-reads it.
    pub(crate) fn reset(&mut self) {
        self.file = None;
        self.lines = 0;
    }

    pub(crate) fn append(&mut self, event: &Event, keep: usize) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(event)
            .map_err(|e| io_err("serialize an event for", &self.path, io::Error::other(e)))?;
        line.push(b'\n');
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => self.open_for_append()?,
        };
        // One write call for the whole line: with O_APPEND it lands whole or,
        // on a crash, as a torn tail.
        if let Err(e) = file.write_all(&line) {
            self.reset();
            return Err(io_err("append to", &self.path, e));
        }
        self.lines += 1;
        if self.lines > keep.saturating_mul(2) {
            self.compact(keep)?;
        }
        Ok(())
    }

    /// The newest `limit` events, oldest first.
    pub(crate) fn load(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let Some(file) = open_log(&self.path, false)? else {
            return Ok(Vec::new());
        };
        let mut out = VecDeque::new();
        scan(&self.path, file, |line| {
            let Some(bytes) = line.bytes else {
                return;
            };
            match serde_json::from_slice::<Event>(bytes) {
                Ok(event) => {
                    if limit > 0 {
                        if out.len() == limit {
                            out.pop_front();
                        }
                        out.push_back(event);
                    }
                }
                Err(e) if !line.terminated => tracing::warn!(
                    path = %self.path.display(),
                    line = line.number,
                    error = %e,
                    "skipping the torn last line of the event log (a crash during an append?)"
                ),
                Err(e) => tracing::warn!(
                    path = %self.path.display(),
                    line = line.number,
                    error = %e,
                    "skipping an unreadable line of the event log"
                ),
            }
        })?;
        Ok(out.into())
    }

    /// Opens the log for appending, counting its lines. A torn last line is
    /// terminated first so the next event starts on a line of its own.
    fn open_for_append(&mut self) -> Result<&mut File, StoreError> {
        let Some(file) = open_log(&self.path, true)? else {
            return Err(io_err(
                "open for appending",
                &self.path,
                io::ErrorKind::NotFound.into(),
            ));
        };
        let mut lines = 0;
        let mut torn_tail = false;
        scan(&self.path, &file, |line| {
            lines += 1;
            torn_tail = !line.terminated;
        })?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| io_err("set permissions on", &self.path, e.into()))?;
        let mut file = file;
        if torn_tail {
            tracing::warn!(path = %self.path.display(), "the event log ends in a torn line (a crash during an append?); it is skipped when read");
            file.write_all(b"\n")
                .map_err(|e| io_err("append to", &self.path, e))?;
        }
        self.lines = lines;
        Ok(self.file.insert(file))
    }

    /// Rewrites the log to its newest `keep` lines.
    fn compact(&mut self, keep: usize) -> Result<(), StoreError> {
        self.reset();
        let mut kept: VecDeque<Vec<u8>> = VecDeque::new();
        if let Some(file) = open_log(&self.path, false)? {
            scan(&self.path, file, |line| {
                let Some(bytes) = line.bytes else {
                    return;
                };
                if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
                    if keep > 0 {
                        if kept.len() == keep {
                            kept.pop_front();
                        }
                        kept.push_back(bytes.to_vec());
                    }
                } else {
                    tracing::warn!(path = %self.path.display(), line = line.number, "dropping a line that is not JSON while compacting the event log");
                }
            })?;
        }
        let mut out = Vec::with_capacity(kept.iter().map(|l| l.len() + 1).sum());
        for line in &kept {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        write_atomic(&self.dir, EVENTS_FILE, &out)?;
        tracing::debug!(path = %self.path.display(), kept = kept.len(), "compacted the event log");
        // The rename replaced the file: append to the new one.
        self.open_for_append()?;
        Ok(())
    }
}

/// Opens the event log without following a symlink; `append` opens it for
/// appending (creating it), else for reading (`None` if it does not exist).
/// Anything but a regular file is refused with an error that names the path
/// and what to do.
fn open_log(path: &Path, append: bool) -> Result<Option<File>, StoreError> {
    // NONBLOCK: opening a FIFO would otherwise wait for its other end.
    let common = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let (flags, op) = if append {
        (
            OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | common,
            "open for appending",
        )
    } else {
        (OFlags::RDONLY | common, "read")
    };
    let fd = match rustix::fs::open(path, flags, Mode::from_raw_mode(FILE_MODE)) {
        Ok(fd) => fd,
        Err(Errno::NOENT) if !append => return Ok(None),
        Err(Errno::LOOP) => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            return Err(refused(op, path, &format!("it is a symlink (to {target})")));
        }
        Err(e) => return Err(io_err(op, path, e.into())),
    };
    let file = File::from(fd);
    let kind = file
        .metadata()
        .map_err(|e| io_err(op, path, e))?
        .file_type();
    if !kind.is_file() {
        return Err(refused(
            op,
            path,
            &format!(
                "it is {}, not a regular file",
                crate::read::kind_name(&kind)
            ),
        ));
    }
    Ok(Some(file))
}

fn refused(op: &'static str, path: &Path, what: &str) -> StoreError {
    io_err(
        op,
        path,
        io::Error::other(format!(
            "{what}; berth does not follow symlinks in its state directory nor read anything \
             but a regular file there: move it away (berthd then starts a new event log) or \
             put the regular file it should be in its place"
        )),
    )
}

/// One non-blank line of the log, as [`scan`] hands it over.
struct Line<'a> {
    /// 1-based.
    number: usize,
    /// `None` when the line is longer than [`EVENT_LINE_MAX`] (it was
    /// skipped with a warning, never held whole).
    bytes: Option<&'a [u8]>,
    /// False for a last line with no newline (a torn append).
    terminated: bool,
}

/// Streams the log's non-blank lines to `each`, holding at most
/// [`EVENT_LINE_MAX`] bytes of a line at once.
fn scan<R: io::Read>(
    path: &Path,
    file: R,
    mut each: impl FnMut(Line<'_>),
) -> Result<(), StoreError> {
    let mut reader = BufReader::with_capacity(64 << 10, file);
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let mut len = 0usize;
        let mut terminated = false;
        loop {
            let available = match reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("read", path, e)),
            };
            if available.is_empty() {
                break;
            }
            let (segment, used) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    terminated = true;
                    (&available[..at], at + 1)
                }
                None => (available, available.len()),
            };
            len = len.saturating_add(segment.len());
            if buf.len() < EVENT_LINE_MAX + 1 {
                let room = EVENT_LINE_MAX + 1 - buf.len();
                buf.extend_from_slice(&segment[..segment.len().min(room)]);
            }
            reader.consume(used);
            if terminated {
                break;
            }
        }
        if !terminated && len == 0 {
            return Ok(());
        }
        number += 1;
        if buf.iter().all(u8::is_ascii_whitespace) && len <= EVENT_LINE_MAX {
            continue;
        }
        let bytes = if len > EVENT_LINE_MAX {
            tracing::warn!(
                path = %path.display(),
                line = number,
                bytes = len,
                max = EVENT_LINE_MAX,
                "skipping a line of the event log longer than berth writes"
            );
            None
        } else {
            Some(buf.as_slice())
        };
        each(Line {
            number,
            bytes,
            terminated,
        });
    }
}
