//! berth's pure core: the data model (specs, records, events), the spec hash,
//! the operator-input parser and `plan()`, plus the seam traits the daemon's
//! I/O crates implement.
//!
//! Architecture invariant: this crate does no I/O and has no async runtime.
//! No tokio, bollard, hyper, axum, reqwest, zbus or notify; no std::fs, net or
//! process. Ids and timestamps are passed in, never generated here.
//! `cargo xtask tidy` (run by CI) checks the dependency half of this.

pub mod adopt;
pub mod apply_body;
pub mod confighash;
pub mod container;
pub mod dockerignore;
pub mod dto;
pub mod event;
pub mod files;
pub mod hash;
pub mod heat;
pub mod hook_http;
pub mod hooks;
pub mod host;
pub mod images;
pub mod import;
pub mod judge;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod pull_progress;
pub mod reconfig;
pub mod record;
pub mod rollback;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod units;
pub mod upstream;
pub mod watch;
pub mod waves;
pub mod waves_check;

/// What a secret looks like in any output that leaves the daemon.
pub const REDACTED: &str = "<redacted>";

/// An error and its sources, `: `-separated, without repeats: "cannot
/// write /var/lib/berth/...: No space left on device" rather than only its
/// first line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn an_error_chain_names_every_cause_once() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        // The middle already quotes the io error: it is not repeated.
        assert_eq!(error_chain(&e), "outer: middle: disk full");
    }
}
