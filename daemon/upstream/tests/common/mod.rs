//! What the upstream tests share: an agent on the fake engine and the
//! in-memory store, with `Upstream` started on it.

use std::sync::Arc;

use berth_agent::{Agent, AgentConfig, Handle, Seams};
use berth_core::policy::NodePolicy;
use berth_fakes::{FakeRuntime, MemStore};
use berth_upstream::{Upstream, UpstreamConfig};

pub struct Node {
    pub handle: Handle,
    pub up: Upstream,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn start(policy: NodePolicy) -> Node {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Arc::new(Seams {
        runtime,
        store: MemStore::new(),
    });
    let cfg = AgentConfig::new("n1", "t-", dir.path().to_path_buf());
    let (agent, handle) = Agent::new(env, cfg).expect("agent loads");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.run(async move {
        let _ = rx.await;
    }));
    let up = Upstream::start(
        handle.clone(),
        dir.path(),
        "n1",
        UpstreamConfig {
            policy,
            ..Default::default()
        },
    )
    .expect("upstream starts");
    Node {
        handle,
        up,
        _dir: dir,
        _stop: stop,
    }
}
