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
//! and a list does not fill in a container an event named while it ran (its
//! inspect may predate the change). Events about other containers do not
//! stop it: during a burst of changes (a cold apply, a restart of every
//! service) the containers that did not change stay cached.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::runtime::ObservedContainer;

pub const MAX_AGE: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct InspectCache {
    /// Open event streams; the cache is used only while this is above 0.
    live_streams: usize,
    /// Bumped by every event, so a list can tell that one came in meanwhile.
    epoch: u64,
    /// The epoch of the last stream open or close: a list begun before it
    /// fills nothing.
    reset_at: u64,
    /// The epoch of the newest event per container, kept while a list that
    /// began before it is still running.
    touched: HashMap<String, u64>,
    /// The start epochs of lists still running (how many began at each).
    lists: BTreeMap<u64, usize>,
    entries: HashMap<String, (ObservedContainer, Instant)>,
}

impl InspectCache {
    pub fn stream_opened(&mut self) {
        self.live_streams += 1;
        self.reset();
    }

    pub fn stream_closed(&mut self) {
        self.live_streams = self.live_streams.saturating_sub(1);
        self.reset();
    }

    fn reset(&mut self) {
        self.entries.clear();
        self.epoch += 1;
        self.reset_at = self.epoch;
    }

    /// An event about `id`: its entry is stale, and so is what a running
    /// list inspected of it.
    pub fn invalidate(&mut self, id: &str) {
        self.epoch += 1;
        self.entries.remove(id);
        if !self.lists.is_empty() {
            self.touched.insert(id.to_string(), self.epoch);
        }
    }

    #[cfg(test)]
    fn epoch(&self) -> u64 {
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

    /// Stores what a list begun at `epoch` inspected, but for containers an
    /// event named since. Entries for containers no longer listed are
    /// dropped.
    pub fn fill(&mut self, epoch: u64, listed: &[String], inspected: &[ObservedContainer]) {
        self.entries.retain(|id, _| listed.contains(id));
        if self.live_streams == 0 || self.reset_at > epoch {
            return;
        }
        let now = Instant::now();
        for o in inspected {
            if self.touched.get(&o.id).is_none_or(|at| *at <= epoch) {
                self.entries.insert(o.id.clone(), (o.clone(), now));
            }
        }
    }

    fn list_began(&mut self) -> u64 {
        *self.lists.entry(self.epoch).or_default() += 1;
        self.epoch
    }

    /// Forgets the events no running list began before.
    fn list_ended(&mut self, epoch: u64) {
        if let Some(n) = self.lists.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                self.lists.remove(&epoch);
            }
        }
        match self.lists.keys().next() {
            Some(&oldest) => self.touched.retain(|_, at| *at > oldest),
            None => self.touched.clear(),
        }
    }
}

/// A list in progress: what it inspects may fill the cache (see
/// [`InspectCache::fill`]); events are remembered until it ends (drop).
pub struct ListTicket {
    cache: Arc<Mutex<InspectCache>>,
    epoch: u64,
}

impl ListTicket {
    pub fn begin(cache: &Arc<Mutex<InspectCache>>) -> ListTicket {
        let epoch = lock(cache).list_began();
        ListTicket {
            cache: cache.clone(),
            epoch,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Drop for ListTicket {
    fn drop(&mut self) {
        lock(&self.cache).list_ended(self.epoch);
    }
}

/// The cache stays consistent if a holder panicked: every change is whole.
pub(crate) fn lock(cache: &Mutex<InspectCache>) -> std::sync::MutexGuard<'_, InspectCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closes the stream's registration when the stream is dropped.
pub struct StreamGuard(pub std::sync::Arc<std::sync::Mutex<InspectCache>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        lock(&self.0).stream_closed();
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
            restart_policy: None,
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
        c.stream_closed();
        assert!(c.get("a", None).is_none());
    }

    #[test]
    fn a_list_fills_in_all_but_the_containers_an_event_named_while_it_ran() {
        let cache = Arc::new(Mutex::new(InspectCache::default()));
        lock(&cache).stream_opened();
        let listed: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let ticket = ListTicket::begin(&cache);
        lock(&cache).invalidate("b");
        lock(&cache).fill(ticket.epoch(), &listed, &[obs("a"), obs("b"), obs("c")]);
        drop(ticket);
        let c = lock(&cache);
        assert!(c.get("a", None).is_some(), "others stay cached");
        assert!(c.get("b", None).is_none(), "b changed during the list");
        assert!(c.get("c", None).is_some());
        assert!(
            c.touched.is_empty() && c.lists.is_empty(),
            "nothing kept after"
        );
    }

    #[test]
    fn an_event_is_remembered_for_the_oldest_running_list() {
        let cache = Arc::new(Mutex::new(InspectCache::default()));
        lock(&cache).stream_opened();
        let listed: Vec<String> = vec!["a".into()];
        let old = ListTicket::begin(&cache);
        lock(&cache).invalidate("a");
        // A newer list begins and ends after the event: its inspect of a
        // is fresh, and its end must not make the older list forget.
        let new = ListTicket::begin(&cache);
        lock(&cache).fill(new.epoch(), &listed, &[obs("a")]);
        drop(new);
        lock(&cache).invalidate("x");
        lock(&cache).entries.clear();
        lock(&cache).fill(old.epoch(), &listed, &[obs("a")]);
        assert!(
            lock(&cache).get("a", None).is_none(),
            "the old inspect is stale"
        );
        drop(old);
        assert!(lock(&cache).touched.is_empty());
    }

    #[test]
    fn a_list_begun_before_the_stream_reopened_fills_nothing() {
        let cache = Arc::new(Mutex::new(InspectCache::default()));
        lock(&cache).stream_opened();
        let ticket = ListTicket::begin(&cache);
        lock(&cache).stream_closed();
        lock(&cache).stream_opened();
        lock(&cache).fill(ticket.epoch(), &["a".into()], &[obs("a")]);
        assert!(lock(&cache).get("a", None).is_none());
    }
}
