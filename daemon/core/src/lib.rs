//! berth's pure core: the data model (specs, records, events), the spec hash,
//! the operator-input parser and `plan()`, plus the seam traits the daemon's
//! I/O crates implement.
//!
//! Architecture invariant: this crate does no I/O and has no async runtime.
//! No tokio, bollard, hyper, axum, reqwest, zbus or notify; no std::fs, net or
//! process. Ids and timestamps are passed in, never generated here.
//! `cargo xtask tidy` (run by CI) checks the dependency half of this.

pub mod confighash;
pub mod dockerignore;
pub mod dto;
pub mod event;
pub mod hash;
pub mod heat;
pub mod host;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod reconfig;
pub mod record;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod units;

/// What a secret looks like in any output that leaves the daemon.
pub const REDACTED: &str = "<redacted>";
