//! The inspect cache behind `list()`.
//!
//! `list()` must report restart counts and health, which only an inspect
//! shows, so without a cache every list costs one inspect per container: a
//! node with 200 services would inspect 200 containers on every resync. The
//! engine tells us when a container changes (the events stream), so an
//! inspect result stays valid until an event names its container.
//!
//! It is used only while an events stream is open (otherwise nothing would
//! invalidate it), entries expire after `MAX_AGE` so a change that slipped
//! between an inspect and the stream's subscription is seen within that time,
//! and a list whose inspects raced with an event does not fill it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_core::runtime::ObservedContainer;

pub const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct InspectCache {
    /// Open event streams; the cache is used only while this is above 0.
    live_streams: usize,
    /// Bumped by every event, so a list can tell that one came in meanwhile.
    epoch: u64,
    entries: HashMap<String, (ObservedContainer, Instant)>,
}

impl InspectCache {
    pub fn stream_opened(&mut self) {
        self.live_streams += 1;
        self.entries.clear();
        self.epoch += 1;
    }

    pub fn stream_closed(&mut self) {
        self.live_streams = self.live_streams.saturating_sub(1);
        self.entries.clear();
        self.epoch += 1;
    }

    /// An event about `id`: its entry is stale.
    pub fn invalidate(&mut self, id: &str) {
        self.epoch += 1;
        self.entries.remove(id);
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A still valid entry for `id` whose state matches what the list says.
    pub fn get(&self, id: &str, listed_state: Option<&str>) -> Option<ObservedContainer> {
        if self.live_streams == 0 {
            return None;
        }
        let (o, at) = self.entries.get(id)?;
        let state_matches = listed_state.is_none_or(|s| {
            serde_json::to_value(o.state)
                .ok()
                .and_then(|v| v.as_str().map(|x| x == s))
                .unwrap_or(false)
        });
        (at.elapsed() < MAX_AGE && state_matches).then(|| o.clone())
    }

    /// Stores what a list inspected, unless an event came in since `epoch`.
    /// Entries for containers no longer listed are dropped.
    pub fn fill(&mut self, epoch: u64, listed: &[String], inspected: &[ObservedContainer]) {
        self.entries.retain(|id, _| listed.contains(id));
        if self.live_streams == 0 || self.epoch != epoch {
            return;
        }
        let now = Instant::now();
        for o in inspected {
            self.entries.insert(o.id.clone(), (o.clone(), now));
        }
    }
}

/// Closes the stream's registration when the stream is dropped.
pub struct StreamGuard(pub std::sync::Arc<std::sync::Mutex<InspectCache>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.0.lock() {
            c.stream_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::runtime::ContainerState;

    fn obs(id: &str) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            name: id.into(),
            service: "s".into(),
            spec_hash: None,
            generation: None,
            config_hash: None,
            state: ContainerState::Running,
            exit_code: None,
            health: None,
            restart_count: 0,
            started_at: None,
        }
    }

    #[test]
    fn used_only_with_a_live_stream_and_invalidated_by_events() {
        let mut c = InspectCache::default();
        let e = c.epoch();
        c.fill(e, &["a".into()], &[obs("a")]);
        assert!(c.get("a", None).is_none(), "no stream: nothing cached");
        c.stream_opened();
        let e = c.epoch();
        c.fill(e, &["a".into()], &[obs("a")]);
        assert!(c.get("a", Some("running")).is_some());
        assert!(c.get("a", Some("exited")).is_none(), "listed state differs");
        c.invalidate("a");
        assert!(c.get("a", None).is_none());
        // A list that raced with an event does not fill.
        let e = c.epoch();
        c.invalidate("b");
        c.fill(e, &["a".into()], &[obs("a")]);
        assert!(c.get("a", None).is_none());
        c.stream_closed();
        assert!(c.get("a", None).is_none());
    }
}
