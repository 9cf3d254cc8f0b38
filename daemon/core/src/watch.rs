//! The config-watch seam: which config sources the loop wants watched, and
//! the "may have changed" events it gets back, in berth's words.
//!
//! berth bind-mounts each service's config sources (host files or
//! directories) read-only into its container and re-applies exactly the
//! services whose config *content* changed. A [`Watcher`] only says which
//! keys may have changed; the loop re-reads those sources and compares
//! hashes ([`crate::reconfig::decide`]), so an event is not a change.
//!
//! The real implementation (notify/inotify, debounced, with a periodic
//! rescan) lives in `berth-watch`, the fake in `berth-fakes`. Everything
//! here is pure: no I/O, no async runtime.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

pub use crate::runtime::BoxStream;

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
    /// Re-read them: an event is not a change.
    Changed { keys: Vec<String> },
    /// Events may have been lost (queue overflow, watch error) or the periodic
    /// safety-net timer fired: re-read every key.
    Rescan,
}

/// Why watching or reading a config source failed; each names the path and
/// the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// A config source (or a file in it) is missing or cannot be read.
    #[error("config source {path}: cannot {op}: {reason}")]
    Unreadable {
        path: PathBuf,
        op: &'static str,
        /// The OS error, as text.
        reason: String,
    },
    /// A directory source contains a symlink cycle.
    #[error("config source {path}: symlink loop while walking the directory")]
    SymlinkLoop { path: PathBuf },
    /// A path has a name that is not UTF-8 (config hashes use text paths).
    #[error("config source {path}: file name is not UTF-8")]
    NonUtf8Name { path: PathBuf },
    /// The watch backend (inotify) could not start or add/remove a watch.
    #[error("cannot {op} {path}: {reason}")]
    Backend {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    /// The watcher was started outside the async runtime it needs.
    #[error("the notify watcher needs a tokio runtime")]
    NoRuntime,
    /// A fake was told to fail.
    #[error("injected failure: {0}")]
    Injected(String),
}

/// The config-watch seam: replace the watched set, receive events.
pub trait Watcher: Send + Sync + 'static {
    /// Replaces the watched set. A source that does not exist (yet) is not an
    /// error: its nearest existing ancestor is watched, so its creation is seen.
    fn set(&self, specs: Vec<WatchSpec>) -> Result<(), WatchError>;

    /// The event stream. Events from before the first call wait for it (a
    /// bounded queue); a later call takes over, and the earlier stream ends.
    /// Otherwise it ends only if the watcher broke down: it keeps running
    /// while it is owned.
    fn events(&self) -> BoxStream<WatchEvent>;
}

/// A watcher that watches nothing: `set` is accepted, no event ever comes.
/// For an agent run without config watching (tests that need none).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWatcher;

impl Watcher for NoWatcher {
    fn set(&self, _specs: Vec<WatchSpec>) -> Result<(), WatchError> {
        Ok(())
    }

    fn events(&self) -> BoxStream<WatchEvent> {
        Box::pin(Never)
    }
}

/// A stream that never yields and never ends.
struct Never;

impl Stream for Never {
    type Item = WatchEvent;
    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<WatchEvent>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_and_the_operation() {
        let e = WatchError::Unreadable {
            path: "/etc/web".into(),
            op: "read",
            reason: "Permission denied (os error 13)".into(),
        };
        assert_eq!(
            e.to_string(),
            "config source /etc/web: cannot read: Permission denied (os error 13)"
        );
        let e = WatchError::Backend {
            path: "/etc".into(),
            op: "watch",
            reason: "No space left on device".into(),
        };
        assert_eq!(e.to_string(), "cannot watch /etc: No space left on device");
    }

    #[test]
    fn no_watcher_accepts_any_set_and_never_says_anything() {
        let w = NoWatcher;
        let spec = WatchSpec {
            key: "web#0".into(),
            source: "/etc/web".into(),
        };
        assert_eq!(w.set(vec![spec]), Ok(()));
        let mut events = w.events();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(events.as_mut().poll_next(&mut cx), Poll::Pending);
    }
}
