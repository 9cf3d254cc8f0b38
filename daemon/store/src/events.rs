//! The event log: `events.jsonl`, one JSON event per line, appended.
//!
//! Appends are not `fsync`ed (see [`Store::append_event`]); compaction is an
//! atomic, durable rewrite keeping the newest lines. Reading skips lines that
//! do not parse, with a warning: a torn last line (a crash mid-append), or an
//! event kind written by a newer berth. Compaction keeps any line that is
//! JSON, so a downgrade does not drop a newer version's events.
//!
//! [`Store::append_event`]: berth_core::store::Store::append_event

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_core::event::Event;
use berth_core::store::StoreError;

use crate::atomic::{FILE_MODE, io_err, write_atomic};
use crate::{EVENTS_FILE, read_opt};

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
        let Some(bytes) = read_opt(&self.path).map_err(|e| io_err("read", &self.path, e))? else {
            return Ok(Vec::new());
        };
        let torn_tail = !bytes.is_empty() && bytes.last() != Some(&b'\n');
        let lines = lines(&bytes);
        let last = lines.len();
        let mut out = Vec::new();
        for (index, (number, line)) in lines.into_iter().enumerate().rev() {
            if out.len() >= limit {
                break;
            }
            match serde_json::from_slice::<Event>(line) {
                Ok(event) => out.push(event),
                Err(e) if torn_tail && index + 1 == last => tracing::warn!(
                    path = %self.path.display(),
                    line = number,
                    error = %e,
                    "skipping the torn last line of the event log (a crash during an append?)"
                ),
                Err(e) => tracing::warn!(
                    path = %self.path.display(),
                    line = number,
                    error = %e,
                    "skipping an unreadable line of the event log"
                ),
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Opens the log for appending, counting its lines. A torn last line is
    /// terminated first so the next event starts on a line of its own.
    fn open_for_append(&mut self) -> Result<&mut File, StoreError> {
        let existing = read_opt(&self.path).map_err(|e| io_err("read", &self.path, e))?;
        let (lines, torn_tail) = match &existing {
            Some(bytes) => (
                lines(bytes).len(),
                !bytes.is_empty() && bytes.last() != Some(&b'\n'),
            ),
            None => (0, false),
        };
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(&self.path)
            .map_err(|e| io_err("open for appending", &self.path, e))?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| io_err("set permissions on", &self.path, e))?;
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
        let bytes = read_opt(&self.path)
            .map_err(|e| io_err("read", &self.path, e))?
            .unwrap_or_default();
        let mut kept = Vec::new();
        for (number, line) in lines(&bytes) {
            if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
                kept.push(line);
            } else {
                tracing::warn!(path = %self.path.display(), line = number, "dropping a line that is not JSON while compacting the event log");
            }
        }
        let kept = &kept[kept.len().saturating_sub(keep)..];
        let mut out = Vec::with_capacity(kept.iter().map(|l| l.len() + 1).sum());
        for line in kept {
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

/// Non-blank lines with their 1-based line numbers.
fn lines(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| (i + 1, line))
        .collect()
}
