//! What the router tests share: the loop on fakes, running.

use std::sync::Arc;

use berth_agent::{Agent, AgentConfig, Handle, Seams};
use berth_fakes::{FakeRuntime, MemStore};

/// Starts the loop on a fake engine (image `demo:1` present) and an
/// in-memory store; it runs until the returned sender is dropped or fired.
pub fn start_agent() -> (Handle, tokio::sync::oneshot::Sender<()>) {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Arc::new(Seams {
        runtime,
        store: MemStore::new(),
    });
    let (agent, handle) =
        Agent::new(env, AgentConfig::new("n1", "t-", std::env::temp_dir())).expect("agent");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    (handle, stop)
}

/// Only the test binaries that drive the router through `oneshot` use
/// it; the others would warn of dead code.
#[allow(dead_code)]
pub mod oneshot;
