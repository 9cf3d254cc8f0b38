//! The host's files as the loop reads them: config sources (a host file,
//! or a directory recursively, following symlinks, Kubernetes-ConfigMap
//! `..data` style included, hashed with [`berth_core::confighash`]), a
//! task's outputs directory (prepared, and its declared outputs read as
//! hostile input: rustix, `O_NOFOLLOW`, capped) and build contexts (hashed
//! through `.dockerignore`), and host paths resolved for the node policy
//! ([`hostpath::FsResolver`]). [`HostFiles`] is core's
//! [`berth_core::files::Files`] seam over all of it.
//!
//! Blocking reads, nothing else: no watching (that is `berth-watch`), no
//! async runtime. The loop calls [`HostFiles`] off its task;
//! `berth-watch`'s change tracker re-hashes with [`snapshot`]. Config
//! errors are [`berth_core::watch::WatchError`], naming the path and the
//! operation.

mod context;
mod files;
pub mod hostpath;
pub mod outputs;
mod snapshot;
mod state;

pub use context::context_hash;
pub use files::HostFiles;
pub use snapshot::{SourceSnapshot, snapshot};
pub use state::read_state;
