//! The outbox: upstream signals waiting to be sent, one file each.
//!
//! ```text
//! <state_dir>/outbox/            0700
//!   next_seq.json                {"next_seq": N}: the counter, kept across restarts
//!   <seq>.json                   OutboxEntry (berth_core::heat::outbox), 0600
//! ```
//!
//! A signal is appended (durably) before it is sent, rewritten after each
//! failed attempt, and removed after a 2xx. Every write is atomic
//! ([`write_atomic`]/[`create_atomic`]). The counter is written before the
//! entry that uses its value, so a crash leaves at most a gap, never a reused
//! seq; at open it is also raised past every `<seq>.json` present. A file
//! that does not parse is reported ([`OutboxList::unreadable`]), never
//! rewritten or removed by berth (an operator may `drop` it), and its seq
//! is never reused. Entries hold the secrets needed to send them: show them
//! only through `OutboxEntry::view`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use berth_core::heat::outbox::{EntryState, NewEntry, OUTBOX_SCHEMA_VERSION, OutboxEntry};
use berth_core::store::StoreError;
use serde::{Deserialize, Serialize};

use crate::atomic::{
    Created, create_atomic, ensure_dir, io_err, sweep_temps, sync_dir, write_atomic,
};
use crate::numbered;
use crate::read::{RECORD_MAX_BYTES, ReadError, read_beneath};
use crate::to_json;

/// Name of the outbox directory in the state dir.
pub const OUTBOX_DIR: &str = "outbox";
/// Name of the counter file in the outbox directory.
pub const SEQ_FILE: &str = "next_seq.json";

/// An outbox operation that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("outbox entry {seq} does not exist")]
    NotFound { seq: u64 },
    #[error("outbox entry {seq} is {actual}; {op} needs a {expected} entry")]
    WrongState {
        seq: u64,
        op: &'static str,
        actual: &'static str,
        expected: &'static str,
    },
}

fn state_name(s: EntryState) -> &'static str {
    match s {
        EntryState::Pending => "pending",
        EntryState::Dead => "dead",
    }
}

/// A `<seq>.json` that could not be read as an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub seq: u64,
    pub path: PathBuf,
    pub reason: String,
}

/// The outbox's content, by ascending seq.
#[derive(Debug, Clone, Default)]
pub struct OutboxList {
    pub entries: Vec<OutboxEntry>,
    pub unreadable: Vec<Unreadable>,
}

#[derive(Serialize, Deserialize)]
struct SeqFile {
    next_seq: u64,
}

/// The outbox directory. `Send + Sync`; changes are serialized by a lock.
#[derive(Debug)]
pub struct FsOutbox {
    dir: PathBuf,
    /// The next seq to hand out; guards every change.
    next: Mutex<u64>,
}

impl FsOutbox {
    /// Opens `<state_dir>/outbox` (created 0700 if needed), sweeps temp
    /// files left by a crash, and restores the counter. A counter file that
    /// does not parse is an error (it is only ever replaced atomically).
    pub fn open(state_dir: &Path) -> Result<FsOutbox, OutboxError> {
        let dir = state_dir.join(OUTBOX_DIR);
        ensure_dir(&dir)?;
        sweep_temps(&dir)?;
        let seq_path = dir.join(SEQ_FILE);
        let stored = match read_file(&dir, SEQ_FILE)? {
            None => 1,
            Some(bytes) => {
                serde_json::from_slice::<SeqFile>(&bytes)
                    .map_err(|e| StoreError::Corrupt {
                        path: seq_path.display().to_string(),
                        reason: e.to_string(),
                    })?
                    .next_seq
            }
        };
        let past_files = numbered::list(&dir)?.last().map_or(1, |s| s + 1);
        Ok(FsOutbox {
            dir,
            next: Mutex::new(stored.max(past_files).max(1)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        // A panic while holding the lock leaves files consistent (every
        // write is atomic), so the lock is still good.
        self.next.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a message (durably) and returns its entry. If an entry with
    /// the same key is already queued (pending or dead), that entry is
    /// returned and nothing is written: re-queueing after a crash cannot
    /// double a signal.
    pub fn append(&self, new: NewEntry, now_ms: u64) -> Result<OutboxEntry, OutboxError> {
        let mut next = self.lock();
        if let Some(existing) = self
            .read_all()?
            .entries
            .into_iter()
            .find(|e| e.key == new.key)
        {
            return Ok(existing);
        }
        let mut entry = OutboxEntry::new(*next, new, now_ms);
        // A file in the way (put there behind berth's back) is never
        // replaced; skip its seq.
        for _ in 0..16 {
            let seq = *next;
            entry.seq = seq;
            *next = seq + 1;
            let counter = to_json(&SeqFile { next_seq: *next }, &self.dir.join(SEQ_FILE))?;
            write_atomic(&self.dir, SEQ_FILE, &counter)?;
            let name = numbered::file_name(seq);
            let bytes = to_json(&entry, &self.dir.join(&name))?;
            match create_atomic(&self.dir, &name, &bytes)? {
                Created::Created => return Ok(entry),
                Created::AlreadyExists => continue,
            }
        }
        Err(io_err(
            "append to the outbox in",
            &self.dir,
            io::Error::other("every new seq is already taken by a file"),
        )
        .into())
    }

    /// Every entry by ascending seq, and the files that do not parse.
    pub fn list(&self) -> Result<OutboxList, OutboxError> {
        self.read_all()
    }

    pub fn get(&self, seq: u64) -> Result<Option<OutboxEntry>, OutboxError> {
        self.read_entry(seq)
    }

    /// Records a failed attempt: `attempts + 1`, the error, the next time.
    pub fn mark_attempt(
        &self,
        seq: u64,
        error: &str,
        next_attempt_ms: u64,
    ) -> Result<OutboxEntry, OutboxError> {
        self.update(seq, "mark_attempt", EntryState::Pending, |e| {
            e.attempts = e.attempts.saturating_add(1);
            e.last_error = Some(error.to_string());
            e.next_attempt_ms = next_attempt_ms;
        })
    }

    /// Moves a pending entry to the dead letters.
    pub fn dead_letter(&self, seq: u64, reason: &str) -> Result<OutboxEntry, OutboxError> {
        self.update(seq, "dead_letter", EntryState::Pending, |e| {
            e.state = EntryState::Dead;
            e.last_error = Some(reason.to_string());
        })
    }

    /// Puts a dead entry back in the queue, due now, its attempts reset (so
    /// the backoff starts over); the last error is kept.
    pub fn retry(&self, seq: u64, now_ms: u64) -> Result<OutboxEntry, OutboxError> {
        self.update(seq, "retry", EntryState::Dead, |e| {
            e.state = EntryState::Pending;
            e.attempts = 0;
            e.next_attempt_ms = now_ms;
        })
    }

    /// Removes an entry after its 2xx. `false` if it was already gone.
    pub fn remove(&self, seq: u64) -> Result<bool, OutboxError> {
        let _guard = self.lock();
        self.unlink(seq)
    }

    /// Removes an entry on an operator's request, whatever its state, and
    /// also an unreadable file at that seq. `false` if there was none.
    pub fn drop_entry(&self, seq: u64) -> Result<bool, OutboxError> {
        let _guard = self.lock();
        self.unlink(seq)
    }

    fn unlink(&self, seq: u64) -> Result<bool, OutboxError> {
        let path = self.dir.join(numbered::file_name(seq));
        match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path, e).into()),
        }
    }

    fn update(
        &self,
        seq: u64,
        op: &'static str,
        expected: EntryState,
        change: impl FnOnce(&mut OutboxEntry),
    ) -> Result<OutboxEntry, OutboxError> {
        let _guard = self.lock();
        let mut entry = self.read_entry(seq)?.ok_or(OutboxError::NotFound { seq })?;
        if entry.state != expected {
            return Err(OutboxError::WrongState {
                seq,
                op,
                actual: state_name(entry.state),
                expected: state_name(expected),
            });
        }
        change(&mut entry);
        let name = numbered::file_name(seq);
        let bytes = to_json(&entry, &self.dir.join(&name))?;
        write_atomic(&self.dir, &name, &bytes)?;
        Ok(entry)
    }

    /// The entry at `seq`; a file that does not parse is `Corrupt` (and
    /// left alone).
    fn read_entry(&self, seq: u64) -> Result<Option<OutboxEntry>, OutboxError> {
        let path = self.dir.join(numbered::file_name(seq));
        let Some(bytes) = read_file(&self.dir, &numbered::file_name(seq))? else {
            return Ok(None);
        };
        parse_entry(seq, &bytes).map(Some).map_err(|reason| {
            StoreError::Corrupt {
                path: path.display().to_string(),
                reason,
            }
            .into()
        })
    }

    fn read_all(&self) -> Result<OutboxList, OutboxError> {
        let mut list = OutboxList::default();
        for seq in numbered::list(&self.dir)? {
            let path = self.dir.join(numbered::file_name(seq));
            // Gone between the listing and the read: removed meanwhile.
            let bytes = match read_file(&self.dir, &numbered::file_name(seq)) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(StoreError::Corrupt { reason, .. }) => {
                    tracing::warn!(path = %path.display(), %reason, "unreadable outbox entry left as is");
                    list.unreadable.push(Unreadable { seq, path, reason });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match parse_entry(seq, &bytes) {
                Ok(entry) => list.entries.push(entry),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "unreadable outbox entry left as is");
                    list.unreadable.push(Unreadable { seq, path, reason });
                }
            }
        }
        Ok(list)
    }
}

/// `dir/name`, not through a symlink, a regular file of at most
/// [`RECORD_MAX_BYTES`] (an entry's body is a signal of under 1 MB); one
/// that is not is `Corrupt`, as a torn one is.
fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(name);
    read_beneath(dir, &[name], RECORD_MAX_BYTES).map_err(|e| match e {
        ReadError::Io(source) => io_err("read", &path, source),
        ReadError::Refused(reason) => StoreError::Corrupt {
            path: path.display().to_string(),
            reason,
        },
    })
}

fn parse_entry(seq: u64, bytes: &[u8]) -> Result<OutboxEntry, String> {
    let entry: OutboxEntry = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if entry.seq != seq {
        return Err(format!(
            "holds seq {} under the name of seq {seq}",
            entry.seq
        ));
    }
    if entry.schema_version > OUTBOX_SCHEMA_VERSION {
        return Err(format!(
            "schema_version {} is newer than this berth reads ({OUTBOX_SCHEMA_VERSION})",
            entry.schema_version
        ));
    }
    Ok(entry)
}
