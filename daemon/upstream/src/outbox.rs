//! The outbox's one owner. [`Outbox`] holds the `FsOutbox` and nothing
//! else in berthd does, so every write (a signal queued, an attempt
//! recorded, a dead letter, a delivery, an operator's retry or drop) goes
//! through it. Under one lock it writes, updates its index of each entry's
//! state, and publishes the counts on a `watch` channel: `GET /v1/node`,
//! `/metrics` and the state reports read the counts without touching a
//! file, and the counts are those of the files after every write (there is
//! no other writer to make them drift).
//!
//! A listing (the sender lists at every round, `berthctl outbox list`)
//! reads every file anyway, so it also rebuilds the index from them: a file
//! an operator removed or put there behind berthd's back is counted from
//! the next listing on. A write that fails rebuilds it too (the files may
//! not be what the index says: an entry dropped meanwhile, a torn file).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use berth_core::dto::OutboxSummary;
use berth_core::heat::outbox::{EntryState, NewEntry, OutboxEntry};
use berth_store::{FsOutbox, OutboxError, OutboxList};
use tokio::sync::watch;

use crate::UpstreamError;

/// What one `<seq>.json` holds, as far as the counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending { created_ms: u64 },
    Dead,
    Unreadable,
}

impl Slot {
    fn of(e: &OutboxEntry) -> Slot {
        match e.state {
            EntryState::Pending => Slot::Pending {
                created_ms: e.created_ms,
            },
            EntryState::Dead => Slot::Dead,
        }
    }
}

type Slots = BTreeMap<u64, Slot>;

fn slots_of(list: &OutboxList) -> Slots {
    let entries = list.entries.iter().map(|e| (e.seq, Slot::of(e)));
    let unreadable = list.unreadable.iter().map(|u| (u.seq, Slot::Unreadable));
    entries.chain(unreadable).collect()
}

/// The outbox in numbers, as published after each write. The oldest
/// pending entry is kept as its creation time, so that its age is that of
/// the moment it is read ([`OutboxCounts::summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Pending entries.
    pub depth: usize,
    pub dead: usize,
    /// `<seq>.json` files that do not parse.
    pub unreadable: usize,
    /// `created_ms` of the oldest pending entry.
    pub oldest_created_ms: Option<u64>,
}

impl OutboxCounts {
    fn of(slots: &Slots) -> OutboxCounts {
        let mut c = OutboxCounts::default();
        for slot in slots.values() {
            match *slot {
                Slot::Pending { created_ms } => {
                    c.depth += 1;
                    c.oldest_created_ms = Some(
                        c.oldest_created_ms
                            .map_or(created_ms, |o| o.min(created_ms)),
                    );
                }
                Slot::Dead => c.dead += 1,
                Slot::Unreadable => c.unreadable += 1,
            }
        }
        c
    }

    /// The counts of a listing (what the files say).
    pub fn of_list(list: &OutboxList) -> OutboxCounts {
        OutboxCounts::of(&slots_of(list))
    }

    /// The summary the API and the reports show, the age taken at `now_ms`.
    pub fn summary(&self, now_ms: u64) -> OutboxSummary {
        OutboxSummary {
            depth: self.depth,
            oldest_age_ms: self
                .oldest_created_ms
                .map_or(0, |t| now_ms.saturating_sub(t)),
            dead: self.dead,
            unreadable: self.unreadable,
        }
    }
}

/// An outbox operation's error as the API answers it.
pub(crate) fn op_error(e: OutboxError) -> UpstreamError {
    let text = berth_core::error_chain(&e);
    match e {
        OutboxError::NotFound { .. } => UpstreamError::NotFound(text),
        OutboxError::WrongState { .. } => UpstreamError::WrongState(text),
        OutboxError::Store(_) => UpstreamError::Store(format!("the outbox failed: {text}")),
    }
}

/// The outbox and its published counts (see the module docs).
pub(crate) struct Outbox {
    files: FsOutbox,
    /// Every entry's state by seq; locked across each write, so that the
    /// index changes in the order the files do.
    slots: Mutex<Slots>,
    counts: watch::Sender<OutboxCounts>,
    /// The keys of the signals this process delivered (and removed). A
    /// document resumed after a crash between its signal's append and its
    /// index update queues that signal again; if it was delivered in the
    /// meantime, it must not be appended (and sent) twice. Changed only
    /// under `slots`' lock, with the append and the remove it guards.
    delivered: Mutex<std::collections::HashSet<String>>,
}

impl Outbox {
    /// Opens `<state_dir>/outbox` and counts what is there (the one read
    /// of every file outside a listing).
    pub(crate) fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        let files = FsOutbox::open(state_dir)?;
        let slots = slots_of(&files.list()?);
        let counts = watch::channel(OutboxCounts::of(&slots)).0;
        Ok(Outbox {
            files,
            slots: Mutex::new(slots),
            counts,
            delivered: Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The counts as of the last write or listing; reads no file.
    pub(crate) fn counts(&self) -> OutboxCounts {
        *self.counts.borrow()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // The index is only changed after the write it follows succeeded
        // or failed, so a panic cannot leave it half-changed.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, slots: &Slots) {
        let counts = OutboxCounts::of(slots);
        self.counts.send_if_modified(|c| {
            let changed = *c != counts;
            *c = counts;
            changed
        });
    }

    /// Runs the write `op` under the lock; on success `apply` brings the
    /// index along, on failure it is rebuilt from the files (kept as it is
    /// if they cannot be listed either). Then the counts are published.
    fn write<T>(
        &self,
        op: impl FnOnce(&FsOutbox) -> Result<T, OutboxError>,
        apply: impl FnOnce(&T, &mut Slots),
    ) -> Result<T, OutboxError> {
        let mut slots = self.lock();
        let result = op(&self.files);
        match &result {
            Ok(value) => apply(value, &mut slots),
            Err(_) => {
                if let Ok(list) = self.files.list() {
                    *slots = slots_of(&list);
                }
            }
        }
        self.publish(&slots);
        result
    }

    /// Every entry and unreadable file; the index is rebuilt from them.
    pub(crate) fn list(&self) -> Result<OutboxList, OutboxError> {
        let mut slots = self.lock();
        let list = self.files.list()?;
        *slots = slots_of(&list);
        self.publish(&slots);
        Ok(list)
    }

    /// A test's append: nothing was delivered in these tests.
    #[cfg(test)]
    fn append(&self, new: NewEntry, now_ms: u64) -> Result<OutboxEntry, OutboxError> {
        self.append_unless_delivered(new, now_ms)
            .map(|e| e.expect("no signal with this key was delivered"))
    }

    /// Queues a signal (see `FsOutbox::append`: an entry with the same key
    /// is returned as it is), unless this process delivered a signal with
    /// that key already (`None`: nothing appended).
    pub(crate) fn append_unless_delivered(
        &self,
        new: NewEntry,
        now_ms: u64,
    ) -> Result<Option<OutboxEntry>, OutboxError> {
        let delivered = &self.delivered;
        self.write(
            |f| {
                let done = delivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&new.key);
                if done {
                    Ok(None)
                } else {
                    f.append(new, now_ms).map(Some)
                }
            },
            |e, slots| {
                if let Some(e) = e {
                    slots.insert(e.seq, Slot::of(e));
                }
            },
        )
    }

    /// Removes a delivered entry and remembers its key (see `delivered`);
    /// `false` if it was gone already.
    pub(crate) fn remove_delivered(&self, seq: u64, key: &str) -> Result<bool, OutboxError> {
        let delivered = &self.delivered;
        self.write(
            |f| {
                delivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.to_string());
                f.remove(seq)
            },
            |_, slots| {
                slots.remove(&seq);
            },
        )
    }

    /// Records a failed attempt; the entry stays pending.
    pub(crate) fn mark_attempt(
        &self,
        seq: u64,
        error: &str,
        next_attempt_ms: u64,
    ) -> Result<OutboxEntry, OutboxError> {
        self.write(|f| f.mark_attempt(seq, error, next_attempt_ms), upsert)
    }

    /// A pending entry becomes a dead letter.
    pub(crate) fn dead_letter(&self, seq: u64, reason: &str) -> Result<OutboxEntry, OutboxError> {
        self.write(|f| f.dead_letter(seq, reason), upsert)
    }

    /// A dead letter goes back in the queue, due at `now_ms`.
    pub(crate) fn retry(&self, seq: u64, now_ms: u64) -> Result<OutboxEntry, OutboxError> {
        self.write(|f| f.retry(seq, now_ms), upsert)
    }

    /// Removes an entry (or an unreadable file) on an operator's request;
    /// `false` if there was none.
    pub(crate) fn drop_entry(&self, seq: u64) -> Result<bool, OutboxError> {
        self.write(
            |f| f.drop_entry(seq),
            |_, slots| {
                slots.remove(&seq);
            },
        )
    }
}

fn upsert(e: &OutboxEntry, slots: &mut Slots) {
    slots.insert(e.seq, Slot::of(e));
}

#[cfg(test)]
mod tests {
    use berth_core::heat::SignalPlan;

    use super::*;

    fn new(key: &str, doc: &str) -> NewEntry {
        NewEntry {
            key: key.into(),
            deployment_id: doc.into(),
            plan: SignalPlan::None,
            body: serde_json::json!({}),
        }
    }

    /// What a fresh look at the files counts.
    fn fresh(dir: &Path) -> OutboxCounts {
        let files = FsOutbox::open(dir).expect("open");
        OutboxCounts::of_list(&files.list().expect("list"))
    }

    #[track_caller]
    fn same_as_disk(ob: &Outbox, dir: &Path) -> OutboxCounts {
        let counts = ob.counts();
        assert_eq!(counts, fresh(dir), "published counts differ from the files");
        counts
    }

    #[test]
    fn counts_after_every_write_are_the_files_counts() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        assert_eq!(same_as_disk(&ob, dir.path()), OutboxCounts::default());

        let append = |key: &str, doc: &str, at: u64| {
            ob.append_unless_delivered(new(key, doc), at)
                .expect("append")
                .expect("not delivered")
        };
        let a = append("k1", "d1", 1_000);
        let b = append("k2", "d2", 2_000);
        let c = append("k3", "d3", 3_000);
        let counts = same_as_disk(&ob, dir.path());
        assert_eq!((counts.depth, counts.oldest_created_ms), (3, Some(1_000)));
        // The same key again writes nothing and counts nothing twice.
        assert_eq!(append("k1", "d1", 9_000).seq, a.seq);
        assert_eq!(same_as_disk(&ob, dir.path()).depth, 3);

        ob.mark_attempt(a.seq, "503", 5_000).expect("attempt");
        assert_eq!(same_as_disk(&ob, dir.path()).depth, 3);

        ob.dead_letter(a.seq, "404").expect("dead");
        let counts = same_as_disk(&ob, dir.path());
        assert_eq!(
            (counts.depth, counts.dead, counts.oldest_created_ms),
            (2, 1, Some(2_000))
        );

        ob.retry(a.seq, 6_000).expect("retry");
        let counts = same_as_disk(&ob, dir.path());
        assert_eq!((counts.depth, counts.dead), (3, 0));
        assert_eq!(counts.oldest_created_ms, Some(1_000), "created_ms is kept");

        assert!(ob.remove_delivered(b.seq, "k2").expect("delivered"));
        assert_eq!(same_as_disk(&ob, dir.path()).depth, 2);
        // A delivered signal queued again (a document resumed after a crash
        // before its index update) is not appended, nor sent, twice.
        assert_eq!(
            ob.append_unless_delivered(new("k2", "d2"), 9_500)
                .expect("append"),
            None
        );
        assert_eq!(same_as_disk(&ob, dir.path()).depth, 2);
        assert!(ob.drop_entry(c.seq).expect("dropped"));
        assert!(!ob.drop_entry(c.seq).expect("dropped again"));
        ob.dead_letter(a.seq, "404").expect("dead");
        assert!(ob.drop_entry(a.seq).expect("dropped"));
        assert_eq!(same_as_disk(&ob, dir.path()), OutboxCounts::default());
    }

    #[test]
    fn a_failed_write_leaves_the_counts_those_of_the_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        let a = ob.append(new("k1", "d1"), 1_000).expect("append");
        // Gone behind berthd's back, then a delivery's write fails on it.
        std::fs::remove_file(ob.files.path().join(format!("{}.json", a.seq))).expect("rm");
        assert!(matches!(
            ob.dead_letter(a.seq, "404"),
            Err(OutboxError::NotFound { .. })
        ));
        assert_eq!(same_as_disk(&ob, dir.path()), OutboxCounts::default());
        // Not dead: retry is refused, and the counts still match.
        let b = ob.append(new("k2", "d2"), 2_000).expect("append");
        assert!(matches!(
            ob.retry(b.seq, 3_000),
            Err(OutboxError::WrongState { .. })
        ));
        assert_eq!(same_as_disk(&ob, dir.path()).depth, 1);
    }

    #[test]
    fn counts_are_read_without_touching_the_files_and_a_listing_resyncs() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = Outbox::open(dir.path()).expect("open");
        let a = ob.append(new("k1", "d1"), 1_000).expect("append");
        ob.dead_letter(a.seq, "404").expect("dead");
        ob.append(new("k2", "d2"), 2_000).expect("append");
        let before = ob.counts();
        // Every entry file replaced by garbage: reading them would count
        // two unreadable files and nothing else.
        for e in FsOutbox::open(dir.path())
            .expect("open")
            .list()
            .expect("list")
            .entries
        {
            std::fs::write(ob.files.path().join(format!("{}.json", e.seq)), b"{torn")
                .expect("write");
        }
        assert_eq!(ob.counts(), before, "the counts came from the files");
        assert_eq!(ob.counts().summary(2_500).oldest_age_ms, 500);
        // The next listing sees what the files hold.
        let list = ob.list().expect("list");
        assert_eq!(list.unreadable.len(), 2);
        assert_eq!(
            ob.counts(),
            OutboxCounts {
                unreadable: 2,
                ..Default::default()
            }
        );
        // An operator drops an unreadable file: counted at once.
        assert!(ob.drop_entry(a.seq).expect("drop"));
        assert_eq!(same_as_disk(&ob, dir.path()).unreadable, 1);
    }
}
