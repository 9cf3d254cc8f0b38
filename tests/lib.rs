//! Harness for berth's integration tests against the real Docker engine (and,
//! later, a real systemd user manager). The tests themselves are in `tests/tests/`.
//!
//! Every test node gets its own node id, container prefix, state dir and
//! socket, and removes everything carrying its node label when dropped, even
//! when the test panics, so tests can run in parallel and never touch
//! containers that are not theirs. Set `BERTH_TEST_KEEP=1` to keep them for
//! debugging.

#[path = "src/api.rs"]
pub mod api;
#[path = "src/bins.rs"]
pub mod bins;
#[path = "src/engine.rs"]
pub mod engine;
#[path = "src/node.rs"]
pub mod node;
#[path = "src/proxy.rs"]
pub mod proxy;
#[path = "src/registry.rs"]
pub mod registry;
#[path = "src/slow_proxy.rs"]
pub mod slow_proxy;
#[path = "src/systemd.rs"]
pub mod systemd;
#[path = "src/undercloud.rs"]
pub mod undercloud;
