//! A hook job whose deployment is over is stopped, on the fakes: a newer
//! deployment (or a delete) that supersedes a deployment whose http or
//! host hook runs does not wait for that hook. The http hook stops asking,
//! the host hook's transient unit is stopped and forgotten, the old record
//! is FAILED "superseded by generation N", and the newer deployment goes
//! on at once (its own `pre_update` hooks from the first, in the same old
//! container), not after the old hook's 5 minutes.

use std::time::Duration;

use berth_agent::{HostSeams, Verb, WithHookHttp};
use berth_core::host::hook_unit_name;
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::{Hook, HookKind, HookPlace, OnTimeout, ServiceSpec};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeAnswer, FakeHookHttp, FakeHost, FakeRuntime, MemStore};

mod common;
use common::*;

type HookEnv = Clocked<WithHookHttp<HostSeams<FakeRuntime, MemStore, FakeHost>, FakeHookHttp>>;
type HookNode = Running<HookEnv>;

fn hook_node(host: &FakeHost, http: &FakeHookHttp) -> HookNode {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    runtime.add_image("demo:2", "sha256:two");
    runtime.add_image("demo:3", "sha256:three");
    let env = Clocked::new(WithHookHttp {
        inner: HostSeams {
            runtime,
            store: MemStore::new(),
            host: host.clone(),
            watcher: NoWatcher,
            files: berth_core::files::NoFiles,
        },
        http: http.clone(),
    });
    run_agent(env, cfg())
}

fn rt(node: &HookNode) -> &FakeRuntime {
    &node.env.inner.runtime
}

/// A hook with the defaults (timeout 5m, `on_timeout: abort`).
fn hook(kind: HookKind, place: HookPlace) -> Hook {
    Hook {
        kind,
        place,
        timeout: None,
        on_timeout: OnTimeout::Abort,
    }
}

fn argv(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|s| s.to_string()).collect()
}

fn with_hooks(image: &str, hooks: Vec<Hook>) -> ServiceSpec {
    let mut s = spec("web", image);
    s.hooks.pre_update = hooks;
    s
}

/// Deploys `web` v1 (no hooks), then applies v2 with `h` and waits until
/// it runs: the old container's id.
async fn hook_running(node: &HookNode, h: Hook, runs: impl Fn() -> bool) -> String {
    let first = deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    assert_eq!(first[0].status, Status::Complete, "{first:?}");
    let old = rt(node).container_by_name("t-web").expect("web").id;
    let r = apply(&node.handle, vec![with_hooks("demo:2", vec![h])]).await;
    let id = r.results[0].deployment.as_ref().expect("record").id.clone();
    assert_eq!(id, Deployment::make_id("web", 2));
    eventually("the hook runs", runs).await;
    let d = node.handle.deployment(&id).await.expect("record");
    assert_eq!(d.status, Status::WaitingHook, "{}", d.status_reason);
    old
}

/// Waits (virtual time) until the deployment ends; fails past `within`.
async fn ended(node: &HookNode, id: &str, within: Duration) -> Deployment {
    let until = tokio::time::Instant::now() + within;
    loop {
        let d = node.handle.deployment(id).await.expect("record");
        if d.status.is_terminal() {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{id} still {:?} after {within:?}: {}",
            d.status,
            d.status_reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Generation 2's record is FAILED, superseded by generation 3.
async fn superseded(node: &HookNode) {
    let old = node
        .handle
        .deployment(&Deployment::make_id("web", 2))
        .await
        .expect("record");
    assert_eq!(old.status, Status::Failed);
    assert_eq!(old.status_reason, "superseded by generation 3");
    assert!(old.hook.is_none(), "{:?}", old.hook);
}

/// v3, with an exec `pre_update` hook, supersedes v2 and goes on at once:
/// its hook runs first, in the old container, then it deploys.
async fn v3_goes_on(node: &HookNode, old: &str) {
    let start = tokio::time::Instant::now();
    let drain = hook(
        HookKind::Exec(argv(&["/drain", "v3"])),
        HookPlace::Container,
    );
    let r = apply(&node.handle, vec![with_hooks("demo:3", vec![drain])]).await;
    let id = r.results[0].deployment.as_ref().expect("record").id.clone();
    assert_eq!(id, Deployment::make_id("web", 3));
    let d = ended(node, &id, Duration::from_secs(30)).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let execs: Vec<Call> = rt(node)
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Exec(..)))
        .collect();
    assert_eq!(
        execs,
        [Call::Exec(old.to_string(), argv(&["/drain", "v3"]))],
        "v3's own hook, once, in the old container"
    );
    let c = rt(node).container_by_name("t-web").expect("web");
    assert_ne!(c.id, old, "replaced");
    assert_eq!(c.state, ContainerState::Running);
    superseded(node).await;
}

#[tokio::test(start_paused = true)]
async fn an_http_hook_answering_423_forever_does_not_hold_a_newer_deployment() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::body(423, "VMs still here"));
    let node = hook_node(&host, &http);
    let h = hook(
        HookKind::Http("https://ci/x?token=s3cret".into()),
        HookPlace::Container,
    );
    let old = hook_running(&node, h, || !http.requests().is_empty()).await;
    v3_goes_on(&node, &old).await;
    // The old job asks no more.
    let asked = http.requests().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(http.requests().len(), asked, "the old hook stopped asking");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_still_running_is_stopped_when_superseded() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let h = hook(
        HookKind::Exec(argv(&["/usr/local/bin/drain", "--forever"])),
        HookPlace::Host,
    );
    let unit = hook_unit_name("web", "pre_update-0", &Deployment::make_id("web", 2));
    let old = hook_running(&node, h, || host.running() == [unit.clone()]).await;
    v3_goes_on(&node, &old).await;
    assert_eq!(host.cleaned(), [unit], "stopped and forgotten");
    assert!(host.running().is_empty(), "{:?}", host.running());
    assert_eq!(host.started().len(), 1, "not started again");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_delete_stops_a_running_http_hook_and_goes_through() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::status(423));
    let node = hook_node(&host, &http);
    let h = hook(HookKind::Http("https://ci/x".into()), HookPlace::Container);
    hook_running(&node, h, || !http.requests().is_empty()).await;
    let r = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete accepted");
    let id = r.deployment.expect("a delete record").id;
    let d = ended(&node, &id, Duration::from_secs(30)).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    assert!(rt(&node).container_by_name("t-web").is_none(), "removed");
    superseded(&node).await;
    let asked = http.requests().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(http.requests().len(), asked, "the old hook stopped asking");
    node.stop().await;
}
