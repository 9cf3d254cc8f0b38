//! The real [`Watcher`]: one `notify` (inotify) instance for all sources.
//!
//! Which paths are watched, per source:
//! - the **parent directory** of the source, non-recursively (a watch on the
//!   file itself dies when an editor or config tool renames a new file into
//!   place; the parent's watch does not), and likewise the parent of every
//!   link in the source's symlink chain (so `dir/app.conf -> ..data/app.conf`
//!   with `..data -> ..2024_xx` is seen when `..data` is swapped);
//! - for a directory source, the (canonical) directory itself, recursively.
//!
//! All watches are on canonical (symlink-free) paths, so event paths are
//! canonical too; an event concerns a key when its path equals, contains or
//! lies inside one of the key's paths (the given path, each link of its chain,
//! its canonical target). A missing parent is replaced by its nearest existing
//! ancestor, so a source that is created later is seen. Watches are
//! re-resolved before every flush and every rescan: after a symlink swap or a
//! recreated directory the new target is watched *before* `Changed` is sent,
//! so a write after the caller's re-hash is never missed.
//!
//! Events are debounced per batch: keys are collected until events are quiet
//! for `debounce`, but flushed no later than `max_wait` after the first one.
//! Access events (opens, reads; our own hashing causes them) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use berth_core::watch::{BoxStream, WatchError, WatchEvent, WatchSpec, Watcher};

/// Default quiet time before a batch of keys is sent.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
/// Default upper bound between a batch's first event and its flush.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);
/// Default period of the safety-net `Rescan`.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(60);

/// Raw events queued between notify's thread and the debounce task.
const RAW_CAPACITY: usize = 1024;
/// Events queued for the caller.
const OUT_CAPACITY: usize = 64;
/// Longest symlink chain followed when resolving a source (like Linux's 40).
const MAX_LINK_HOPS: usize = 40;

/// See the [module docs](self). Dropping it stops the watcher.
pub struct NotifyWatcher {
    state: Arc<Mutex<State>>,
    out: Arc<Mutex<Out>>,
    task: tokio::task::JoinHandle<()>,
}

/// Where events go: the newest [`Watcher::events`] stream. Events sent
/// before the first call wait in `first`.
struct Out {
    tx: mpsc::Sender<WatchEvent>,
    first: Option<mpsc::Receiver<WatchEvent>>,
}

impl std::fmt::Debug for NotifyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyWatcher").finish_non_exhaustive()
    }
}

enum Raw {
    Event(notify::Event),
    Error(notify::Error),
}

struct State {
    watcher: RecommendedWatcher,
    specs: Vec<WatchSpec>,
    /// Per spec (same order): the paths an event must touch to concern it.
    matches: Vec<Vec<PathBuf>>,
    /// What is watched now, by canonical path.
    active: BTreeMap<PathBuf, Active>,
}

struct Active {
    mode: RecursiveMode,
    /// (dev, ino) when the watch was added: a replaced directory is re-watched.
    id: (u64, u64),
    /// An event said notify dropped (or may have dropped) this watch.
    stale: bool,
}

impl NotifyWatcher {
    /// Starts the watcher with nothing watched; call [`Watcher::set`].
    /// Must be called inside a tokio runtime (it spawns its debounce task).
    /// `rescan` is clamped to at least 10 ms.
    pub fn new(
        debounce: Duration,
        max_wait: Duration,
        rescan: Duration,
    ) -> Result<Self, WatchError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| WatchError::NoRuntime)?;
        let (raw_tx, raw_rx) = mpsc::channel(RAW_CAPACITY);
        let overflow = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        let handler = {
            let overflow = overflow.clone();
            let wake = wake.clone();
            // Runs on notify's thread: never block it (set() waits on that
            // thread while holding the state lock the task also takes).
            move |res: notify::Result<notify::Event>| {
                let raw = match res {
                    Ok(ev) if !ev.need_rescan() && is_access(&ev.kind) => return,
                    Ok(ev) => Raw::Event(ev),
                    Err(err) => Raw::Error(err),
                };
                if let Err(mpsc::error::TrySendError::Full(_)) = raw_tx.try_send(raw) {
                    overflow.store(true, Ordering::SeqCst);
                    wake.notify_one();
                }
            }
        };
        let config = notify::Config::default().with_follow_symlinks(false);
        let watcher =
            RecommendedWatcher::new(handler, config).map_err(|source| WatchError::Backend {
                path: PathBuf::new(),
                op: "start inotify",
                reason: source.to_string(),
            })?;
        let state = Arc::new(Mutex::new(State {
            watcher,
            specs: Vec::new(),
            matches: Vec::new(),
            active: BTreeMap::new(),
        }));
        let (tx, rx) = mpsc::channel(OUT_CAPACITY);
        let out = Arc::new(Mutex::new(Out {
            tx,
            first: Some(rx),
        }));
        let task = runtime.spawn(run(
            state.clone(),
            raw_rx,
            out.clone(),
            overflow,
            wake,
            Timing {
                debounce,
                max_wait,
                rescan: rescan.max(Duration::from_millis(10)),
            },
        ));
        Ok(Self { state, out, task })
    }

    /// [`new`](Self::new) with 100 ms debounce, 1 s max wait, 60 s rescan.
    pub fn with_defaults() -> Result<Self, WatchError> {
        Self::new(DEFAULT_DEBOUNCE, DEFAULT_MAX_WAIT, DEFAULT_RESCAN)
    }
}

impl Drop for NotifyWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher for NotifyWatcher {
    fn set(&self, specs: Vec<WatchSpec>) -> Result<(), WatchError> {
        let mut specs = specs;
        for spec in &mut specs {
            spec.source = absolute(&spec.source)?;
        }
        let mut state = lock(&self.state);
        state.specs = specs;
        state.reconcile()
    }

    fn events(&self) -> BoxStream<WatchEvent> {
        let mut out = lock(&self.out);
        let rx = match out.first.take() {
            Some(rx) => rx,
            None => {
                // Takes over: the earlier stream ends once its sender is gone.
                let (tx, rx) = mpsc::channel(OUT_CAPACITY);
                out.tx = tx;
                rx
            }
        };
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|ev| (ev, rx))
        }))
    }
}

#[derive(Clone, Copy)]
struct Timing {
    debounce: Duration,
    max_wait: Duration,
    rescan: Duration,
}

async fn run(
    state: Arc<Mutex<State>>,
    mut raw_rx: mpsc::Receiver<Raw>,
    out: Arc<Mutex<Out>>,
    overflow: Arc<AtomicBool>,
    wake: Arc<Notify>,
    timing: Timing,
) {
    let mut pending = BTreeSet::new();
    // (first event, last event) of the current batch.
    let mut batch: Option<(Instant, Instant)> = None;
    let mut ticker = tokio::time::interval_at(Instant::now() + timing.rescan, timing.rescan);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline =
            batch.map(|(first, last)| (last + timing.debounce).min(first + timing.max_wait));
        let mut rescan = false;
        let mut flush = false;
        tokio::select! {
            raw = raw_rx.recv() => match raw {
                None => return,
                Some(Raw::Error(err)) => {
                    tracing::warn!(error = %err, "config watch error; rescanning");
                    rescan = true;
                }
                Some(Raw::Event(ev)) if ev.need_rescan() => rescan = true,
                Some(Raw::Event(ev)) => {
                    let keys = lock(&state).keys_for(&ev);
                    if !keys.is_empty() {
                        let now = Instant::now();
                        batch = Some(batch.map_or((now, now), |(first, _)| (first, now)));
                        pending.extend(keys);
                    }
                }
            },
            () = wake.notified() => {}
            () = sleep_until(deadline), if deadline.is_some() => flush = true,
            _ = ticker.tick() => rescan = true,
        }
        if overflow.swap(false, Ordering::SeqCst) {
            tracing::warn!("config watch queue overflowed; rescanning");
            rescan = true;
        }
        let event = if rescan {
            // A rescan re-hashes every key, so it covers the pending batch.
            pending.clear();
            batch = None;
            WatchEvent::Rescan
        } else if flush {
            batch = None;
            WatchEvent::Changed {
                keys: std::mem::take(&mut pending).into_iter().collect(),
            }
        } else {
            continue;
        };
        // Re-resolve watches before telling the caller (see module docs).
        if let Err(err) = lock(&state).reconcile() {
            tracing::warn!(error = %err, "config watch: cannot watch every source");
        }
        // The stream was dropped: nobody listens, the event is dropped.
        // The watcher keeps running while it is owned.
        let tx = lock(&out).tx.clone();
        let _ = tx.send(event).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

impl State {
    /// The keys `ev` concerns; also marks watches notify dropped on it.
    fn keys_for(&mut self, ev: &notify::Event) -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        let drops_watch = matches!(
            ev.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        for path in &ev.paths {
            if drops_watch {
                for (watched, active) in self.active.iter_mut() {
                    if watched.starts_with(path) {
                        active.stale = true;
                    }
                }
            }
            for (spec, matches) in self.specs.iter().zip(&self.matches) {
                if matches
                    .iter()
                    .any(|m| path.starts_with(m) || m.starts_with(path))
                {
                    keys.insert(spec.key.clone());
                }
            }
        }
        keys
    }

    /// Re-resolves every spec and brings the watches in line. Keeps going
    /// past errors and returns the first.
    fn reconcile(&mut self) -> Result<(), WatchError> {
        let mut desired: BTreeMap<PathBuf, RecursiveMode> = BTreeMap::new();
        self.matches = Vec::with_capacity(self.specs.len());
        for spec in &self.specs {
            let resolved = resolve(&spec.source);
            for (path, mode) in resolved.watches {
                let entry = desired.entry(path).or_insert(mode);
                if mode == RecursiveMode::Recursive {
                    *entry = mode;
                }
            }
            self.matches.push(resolved.matches);
        }
        // A directory inside a recursive watch is covered by it; watching it
        // again would turn notify's sub-watch non-recursive.
        let roots: Vec<PathBuf> = desired
            .iter()
            .filter(|(_, m)| **m == RecursiveMode::Recursive)
            .map(|(p, _)| p.clone())
            .collect();
        desired.retain(|path, mode| {
            *mode == RecursiveMode::Recursive || !roots.iter().any(|r| path.starts_with(r))
        });

        let mut first_err = None;
        let current: Vec<PathBuf> = self.active.keys().cloned().collect();
        for path in current {
            let Some(active) = self.active.get(&path) else {
                continue; // dropped with a recursive root above it
            };
            let keep = !active.stale
                && desired.get(&path) == Some(&active.mode)
                && identity(&path) == Some(active.id);
            if keep {
                continue;
            }
            let recursive = active.mode == RecursiveMode::Recursive;
            // notify may already have dropped it (deleted dir): not an error.
            let _ = self.watcher.unwatch(&path);
            self.active.remove(&path);
            if recursive {
                // notify removed every watch under a recursive root.
                self.active.retain(|p, _| !p.starts_with(&path));
            }
        }
        for (path, mode) in desired {
            if self.active.contains_key(&path) {
                continue;
            }
            let Some(id) = identity(&path) else {
                continue; // vanished since resolving; its parent's event will follow
            };
            match self.watcher.watch(&path, mode) {
                Ok(()) => {
                    self.active.insert(
                        path,
                        Active {
                            mode,
                            id,
                            stale: false,
                        },
                    );
                }
                Err(err) if is_not_found(&err) => {}
                Err(source) => {
                    first_err.get_or_insert(WatchError::Backend {
                        path,
                        op: "watch",
                        reason: source.to_string(),
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

struct Resolved {
    matches: Vec<PathBuf>,
    watches: Vec<(PathBuf, RecursiveMode)>,
}

/// The paths that concern `source` (absolute, normalized) and what to watch.
fn resolve(source: &Path) -> Resolved {
    let mut matches = vec![source.to_path_buf()];
    let mut watches = Vec::new();
    let mut cur = source.to_path_buf();
    for _ in 0..MAX_LINK_HOPS {
        let (Some(parent), Some(name)) = (cur.parent(), cur.file_name()) else {
            break;
        };
        match fs::canonicalize(parent) {
            Ok(canonical_parent) => {
                watches.push((canonical_parent.clone(), RecursiveMode::NonRecursive));
                cur = canonical_parent.join(name);
                matches.push(cur.clone());
            }
            Err(_) => {
                if let Some(ancestor) = nearest_existing_ancestor(parent) {
                    watches.push((ancestor, RecursiveMode::NonRecursive));
                }
                break;
            }
        }
        match fs::read_link(&cur) {
            Ok(target) => {
                let base = cur.parent().map(Path::to_path_buf).unwrap_or_default();
                cur = normalize(&base.join(target));
                matches.push(cur.clone());
            }
            Err(_) => break,
        }
    }
    if let Ok(canonical) = fs::canonicalize(source) {
        if fs::metadata(&canonical).is_ok_and(|m| m.is_dir()) {
            watches.push((canonical.clone(), RecursiveMode::Recursive));
        }
        matches.push(canonical);
    }
    matches.sort();
    matches.dedup();
    Resolved { matches, watches }
}

fn nearest_existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find_map(|p| fs::canonicalize(p).ok())
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Lexical `.`/`..` removal (only used on paths whose prefix is canonical,
/// and on the operator's source path).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn absolute(path: &Path) -> Result<PathBuf, WatchError> {
    std::path::absolute(path)
        .map(|p| normalize(&p))
        .map_err(|source| WatchError::Unreadable {
            path: path.to_path_buf(),
            op: "make absolute",
            reason: source.to_string(),
        })
}

fn is_access(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

fn is_not_found(err: &notify::Error) -> bool {
    match &err.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind the lock; a panic elsewhere must not stop watching.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn normalize_removes_dots() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    #[test]
    fn resolve_configmap_file_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = fs::canonicalize(dir.path()).expect("canonicalize");
        fs::create_dir(d.join("..2024_a")).expect("mkdir");
        fs::write(d.join("..2024_a/app.conf"), "v1").expect("write");
        symlink("..2024_a", d.join("..data")).expect("symlink");
        symlink("..data/app.conf", d.join("app.conf")).expect("symlink");
        let r = resolve(&d.join("app.conf"));
        assert!(r.matches.contains(&d.join("..data/app.conf")));
        assert!(r.matches.contains(&d.join("..2024_a/app.conf")));
        let watched: Vec<&PathBuf> = r.watches.iter().map(|(p, _)| p).collect();
        assert!(watched.contains(&&d));
        assert!(watched.contains(&&d.join("..2024_a")));
        assert!(
            r.watches
                .iter()
                .all(|(_, m)| *m == RecursiveMode::NonRecursive)
        );
    }

    #[test]
    fn resolve_missing_source_watches_nearest_ancestor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = fs::canonicalize(dir.path()).expect("canonicalize");
        let r = resolve(&d.join("not/yet/here.conf"));
        assert_eq!(r.watches, vec![(d.clone(), RecursiveMode::NonRecursive)]);
        assert!(r.matches.contains(&d.join("not/yet/here.conf")));
    }

    #[test]
    fn access_events_are_ignored_except_close_write() {
        assert!(is_access(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_access(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(!is_access(&EventKind::Modify(ModifyKind::Any)));
    }
}
