//! Reading a config source (a host file, or a directory recursively,
//! following symlinks, Kubernetes-ConfigMap `..data` style included) and
//! hashing it with [`berth_core::confighash`].
//!
//! Blocking `std::fs` reads, nothing else: no watching (that is
//! `berth-watch`), no async runtime. The loop reads a service's sources
//! with [`read_state`] (off its task); `berth-watch`'s change tracker
//! re-hashes with [`snapshot`]. Errors are [`berth_core::watch::WatchError`],
//! naming the path and the operation.

mod snapshot;
mod state;

pub use snapshot::{SourceSnapshot, snapshot};
pub use state::read_state;
