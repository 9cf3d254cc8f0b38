//! What the upstream tests share: an agent on the fake engine and the
//! in-memory store, with `Upstream` started on it.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::{Agent, AgentConfig, Handle, Seams};
use berth_core::policy::NodePolicy;
use berth_fakes::{FakeRuntime, MemStore};
use berth_upstream::{OutboxCounts, Upstream, UpstreamConfig};

pub struct Node {
    pub handle: Handle,
    pub up: Upstream,
    dir: tempfile::TempDir,
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
        dir,
        _stop: stop,
    }
}

/// Waits up to 10 s for `f` to hold; panics naming `what` if it does not.
pub async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

impl Node {
    /// What a fresh read of the outbox files counts.
    pub fn counts_on_disk(&self) -> OutboxCounts {
        let files = berth_store::FsOutbox::open(self.dir.path()).expect("open the outbox");
        OutboxCounts::of_list(&files.list().expect("list the outbox"))
    }
}
