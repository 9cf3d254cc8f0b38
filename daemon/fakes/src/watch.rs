//! [`FakeWatcher`]: the test twin of `berth_watch::NotifyWatcher`. Tests
//! push "may have changed" events into it and see every `set` call.

use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::watch::{BoxStream, WatchError, WatchEvent, WatchSpec, Watcher};
use tokio::sync::mpsc;

/// Events queued unread before [`FakeWatcherHandle::push`] waits.
const CAPACITY: usize = 256;

#[derive(Debug)]
struct Shared {
    sets: Vec<Vec<WatchSpec>>,
    fail_next_set: Option<String>,
    /// Where pushed events go: the newest `events()` stream.
    tx: mpsc::Sender<WatchEvent>,
    /// Events pushed before the first `events()` call wait here.
    first: Option<mpsc::Receiver<WatchEvent>>,
}

/// A [`Watcher`] whose events come from its [`FakeWatcherHandle`], and which
/// records every `set` call.
#[derive(Debug)]
pub struct FakeWatcher {
    shared: Arc<Mutex<Shared>>,
}

/// The test's side of a [`FakeWatcher`].
#[derive(Debug, Clone)]
pub struct FakeWatcherHandle {
    shared: Arc<Mutex<Shared>>,
}

impl FakeWatcher {
    pub fn new() -> (Self, FakeWatcherHandle) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let shared = Arc::new(Mutex::new(Shared {
            sets: Vec::new(),
            fail_next_set: None,
            tx,
            first: Some(rx),
        }));
        (
            Self {
                shared: shared.clone(),
            },
            FakeWatcherHandle { shared },
        )
    }

    /// Another handle on this watcher (for a watcher already inside an `Env`).
    pub fn handle(&self) -> FakeWatcherHandle {
        FakeWatcherHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Watcher for FakeWatcher {
    fn set(&self, specs: Vec<WatchSpec>) -> Result<(), WatchError> {
        let mut shared = lock(&self.shared);
        if let Some(msg) = shared.fail_next_set.take() {
            return Err(WatchError::Injected(msg));
        }
        shared.sets.push(specs);
        Ok(())
    }

    fn events(&self) -> BoxStream<WatchEvent> {
        let mut shared = lock(&self.shared);
        let rx = match shared.first.take() {
            Some(rx) => rx,
            None => {
                // Takes over, like the real one: the earlier stream ends.
                let (tx, rx) = mpsc::channel(CAPACITY);
                shared.tx = tx;
                rx
            }
        };
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        }))
    }
}

impl FakeWatcherHandle {
    /// Delivers an event (waits if 256 are queued unread).
    pub async fn push(&self, event: WatchEvent) {
        let tx = lock(&self.shared).tx.clone();
        // The stream was dropped: nobody listens.
        let _ = tx.send(event).await;
    }

    /// Delivers `Changed` for these keys (sorted, deduplicated like the real one).
    pub async fn changed<S: Into<String>>(&self, keys: impl IntoIterator<Item = S>) {
        let mut keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        keys.sort();
        keys.dedup();
        self.push(WatchEvent::Changed { keys }).await;
    }

    /// Every successful `set` call, oldest first.
    pub fn sets(&self) -> Vec<Vec<WatchSpec>> {
        lock(&self.shared).sets.clone()
    }

    /// The watched set (the last successful `set`).
    pub fn current(&self) -> Vec<WatchSpec> {
        lock(&self.shared).sets.last().cloned().unwrap_or_default()
    }

    /// Makes the next `set` fail with [`WatchError::Injected`] (and not record).
    pub fn fail_next_set(&self, message: impl Into<String>) {
        lock(&self.shared).fail_next_set = Some(message.into());
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock leaves plain data behind; keep going.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::path::PathBuf;

    #[tokio::test]
    async fn records_sets_and_delivers_events() {
        let (w, h) = FakeWatcher::new();
        let spec = WatchSpec {
            key: "web#0".into(),
            source: PathBuf::from("/etc/web"),
        };
        w.set(vec![spec.clone()]).expect("set");
        assert_eq!(h.current(), vec![spec.clone()]);
        h.fail_next_set("boom");
        assert!(matches!(w.set(vec![]), Err(WatchError::Injected(_))));
        assert_eq!(h.sets().len(), 1);
        // Pushed before anyone listens: kept for the first stream.
        h.changed(["b", "a", "b"]).await;
        h.push(WatchEvent::Rescan).await;
        let mut events = w.events();
        assert_eq!(
            events.next().await,
            Some(WatchEvent::Changed {
                keys: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(events.next().await, Some(WatchEvent::Rescan));
    }

    #[tokio::test]
    async fn a_later_stream_takes_over_and_the_earlier_one_ends() {
        let (w, h) = FakeWatcher::new();
        let mut first = w.events();
        h.push(WatchEvent::Rescan).await;
        let mut second = w.events();
        h.changed(["web#0"]).await;
        assert_eq!(first.next().await, Some(WatchEvent::Rescan));
        assert_eq!(first.next().await, None, "the earlier stream ends");
        assert_eq!(
            second.next().await,
            Some(WatchEvent::Changed {
                keys: vec!["web#0".into()]
            })
        );
    }
}
