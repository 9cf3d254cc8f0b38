//! The test twin of [`NotifyWatcher`](crate::NotifyWatcher).

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::{WatchError, WatchEvent, WatchSpec, Watcher};

#[derive(Debug, Default)]
struct Shared {
    sets: Vec<Vec<WatchSpec>>,
    fail_next_set: Option<String>,
}

/// A [`Watcher`] whose events come from its [`FakeWatcherHandle`], and which
/// records every `set` call.
#[derive(Debug)]
pub struct FakeWatcher {
    rx: mpsc::Receiver<WatchEvent>,
    shared: Arc<Mutex<Shared>>,
}

/// The test's side of a [`FakeWatcher`].
#[derive(Debug, Clone)]
pub struct FakeWatcherHandle {
    tx: mpsc::Sender<WatchEvent>,
    shared: Arc<Mutex<Shared>>,
}

impl FakeWatcher {
    pub fn new() -> (Self, FakeWatcherHandle) {
        let (tx, rx) = mpsc::channel(256);
        let shared = Arc::new(Mutex::new(Shared::default()));
        (
            Self {
                rx,
                shared: shared.clone(),
            },
            FakeWatcherHandle { tx, shared },
        )
    }
}

impl Watcher for FakeWatcher {
    fn set(&mut self, specs: Vec<WatchSpec>) -> Result<(), WatchError> {
        let mut shared = lock(&self.shared);
        if let Some(msg) = shared.fail_next_set.take() {
            return Err(WatchError::Injected(msg));
        }
        shared.sets.push(specs);
        Ok(())
    }

    fn events(&mut self) -> &mut mpsc::Receiver<WatchEvent> {
        &mut self.rx
    }
}

impl FakeWatcherHandle {
    /// Delivers an event (waits if 256 are queued unread).
    pub async fn push(&self, event: WatchEvent) {
        // The receiver lives in the FakeWatcher; if it is gone nobody listens.
        let _ = self.tx.send(event).await;
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
    use std::path::PathBuf;

    #[tokio::test]
    async fn records_sets_and_delivers_events() {
        let (mut w, h) = FakeWatcher::new();
        let spec = WatchSpec {
            key: "web#0".into(),
            source: PathBuf::from("/etc/web"),
        };
        w.set(vec![spec.clone()]).expect("set");
        assert_eq!(h.current(), vec![spec.clone()]);
        h.fail_next_set("boom");
        assert!(matches!(w.set(vec![]), Err(WatchError::Injected(_))));
        assert_eq!(h.sets().len(), 1);
        h.changed(["b", "a", "b"]).await;
        h.push(WatchEvent::Rescan).await;
        assert_eq!(
            w.events().recv().await,
            Some(WatchEvent::Changed {
                keys: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(w.events().recv().await, Some(WatchEvent::Rescan));
    }
}
