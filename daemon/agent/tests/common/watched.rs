//! Seams for the config watch tests: the fake engine, the in-memory store,
//! a fake config watcher and in-memory files.

use std::sync::Arc;

use berth_agent::{HostSeams, NoHost};
use berth_fakes::{FakeFiles, FakeRuntime, FakeWatcher, FakeWatcherHandle, MemStore};

use super::{Clocked, Running, cfg, run_agent};

pub type WatchedEnv = Clocked<HostSeams<FakeRuntime, MemStore, NoHost, FakeWatcher, FakeFiles>>;
pub type WatchedNode = Running<WatchedEnv>;

/// The seams with `demo:1` and no files yet.
pub fn watched_env() -> Arc<WatchedEnv> {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: NoHost,
        watcher: FakeWatcher::new().0,
        files: FakeFiles::new(),
    })
}

/// A loop on `env`, and the handle its tests push watcher events with.
pub fn watched(env: Arc<WatchedEnv>) -> (WatchedNode, FakeWatcherHandle) {
    let h = env.watcher.handle();
    (run_agent(env, cfg()), h)
}
