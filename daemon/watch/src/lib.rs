//! The config-watch seam.
//!
//! berth bind-mounts each service's configuration sources (host files or
//! directories) read-only into its container, and re-applies exactly the
//! services whose configuration *content* changed. This crate has the pieces:
//!
//! - [`snapshot`] reads a source (a file, or a directory recursively,
//!   following symlinks, Kubernetes-ConfigMap `..data` style included) and
//!   hashes it with [`berth_core::confighash`].
//! - [`Watcher`] is the seam: it only says *which keys may have changed*.
//!   [`NotifyWatcher`] is the real one (one inotify instance for all sources,
//!   parent-directory watches, debounced, periodic rescan); [`FakeWatcher`] is
//!   the test twin you push events into.
//! - [`ChangeTracker`] re-hashes a key's source and compares it with the last
//!   hash, so a `touch` or an identical rewrite is an event but no change.

mod fake;
mod notify_watcher;
mod snapshot;
mod state;
mod tracker;

use std::path::PathBuf;

pub use fake::{FakeWatcher, FakeWatcherHandle};
pub use notify_watcher::{DEFAULT_DEBOUNCE, DEFAULT_MAX_WAIT, DEFAULT_RESCAN, NotifyWatcher};
pub use snapshot::{SourceSnapshot, snapshot};
pub use state::read_state;
pub use tracker::{Change, ChangeTracker};

/// One watched config source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// Who cares about the source, e.g. `"web#0"` (service and mount index).
    pub key: String,
    /// A host file or directory; may be (or contain) symlinks. Relative paths
    /// are taken relative to the current directory when [`Watcher::set`] runs.
    pub source: PathBuf,
}

/// What a [`Watcher`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The sources of these keys may have changed (deduplicated, sorted).
    /// Re-hash them ([`ChangeTracker::check`]): an event is not a change.
    Changed { keys: Vec<String> },
    /// Events may have been lost (queue overflow, watch error) or the periodic
    /// safety-net timer fired: re-hash every key.
    Rescan,
}

/// The config-watch seam: replace the watched set, receive events.
pub trait Watcher: Send + 'static {
    /// Replaces the watched set. A source that does not exist (yet) is not an
    /// error: its nearest existing ancestor is watched, so its creation is seen.
    fn set(&mut self, specs: Vec<WatchSpec>) -> Result<(), WatchError>;

    /// The event stream. It ends (`recv` returns `None`) only if the watcher
    /// broke down; the watcher keeps running while it is owned.
    fn events(&mut self) -> &mut tokio::sync::mpsc::Receiver<WatchEvent>;
}

/// Errors of this crate; each names the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A config source (or a file in it) is missing or cannot be read.
    #[error("config source {path}: cannot {op}: {source}")]
    Unreadable {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A directory source contains a symlink cycle.
    #[error("config source {path}: symlink loop while walking the directory")]
    SymlinkLoop { path: PathBuf },
    /// A path has a name that is not UTF-8 (config hashes use text paths).
    #[error("config source {path}: file name is not UTF-8")]
    NonUtf8Name { path: PathBuf },
    /// The notify backend could not start or add/remove a watch.
    #[error("cannot {op} {path}: {source}")]
    Notify {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: notify::Error,
    },
    /// `NotifyWatcher::new` was called outside a tokio runtime.
    #[error("the notify watcher needs a tokio runtime")]
    NoRuntime,
    /// A fake was told to fail.
    #[error("injected failure: {0}")]
    Injected(String),
}
