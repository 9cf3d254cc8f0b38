//! The config-watch seam's real implementation.
//!
//! berth bind-mounts each service's configuration sources (host files or
//! directories) read-only into its container, and re-applies exactly the
//! services whose configuration *content* changed. The seam itself
//! ([`Watcher`], [`WatchSpec`], [`WatchEvent`], [`WatchError`]) is
//! `berth_core::watch`; its fake is `berth_fakes::FakeWatcher`. This crate
//! has:
//!
//! - [`NotifyWatcher`], the real [`Watcher`]: one inotify instance for all
//!   sources, parent-directory watches, debounced, periodic rescan. It only
//!   says *which keys may have changed*.
//! - [`ChangeTracker`] re-hashes a key's source (with
//!   [`berth_sources::snapshot`]) and compares it with the last hash, so a
//!   `touch` or an identical rewrite is an event but no change.

mod notify_watcher;
mod tracker;

pub use berth_core::watch::{WatchError, WatchEvent, WatchSpec, Watcher};
pub use berth_sources::{SourceSnapshot, snapshot};
pub use notify_watcher::{DEFAULT_DEBOUNCE, DEFAULT_MAX_WAIT, DEFAULT_RESCAN, NotifyWatcher};
pub use tracker::{Change, ChangeTracker};
