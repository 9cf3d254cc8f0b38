//! A hook job whose deployment is over is stopped, on the fakes: a newer
//! deployment (or a delete) that supersedes a deployment whose http or
//! host hook runs does not wait for that hook. The http hook stops asking,
//! the host hook's transient unit is stopped and forgotten, the old record
//! is FAILED "superseded by generation N", and the newer deployment goes
//! on at once (its own `pre_update` hooks from the first, in the same old
//! container), not after the old hook's 5 minutes.

use std::time::Duration;

use berth_core::host::hook_unit_name;
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::{Hook, HookKind, HookPlace};
use berth_fakes::runtime::Call;
use berth_fakes::{FakeAnswer, FakeHookHttp, FakeHost};

mod common;
use common::hooks::*;
use common::*;

/// A hook of `kind` on the host, with the defaults.
fn on_host(kind: HookKind) -> Hook {
    Hook {
        place: HookPlace::Host,
        ..hook(kind)
    }
}

/// Deploys `web` v1 (no hooks), then applies v2 with `h` and waits until
/// it runs: the old container's id.
async fn hook_running(node: &HookNode, h: Hook, runs: impl Fn() -> bool) -> String {
    let (old, id) = update_with(node, h).await;
    eventually("the hook runs", runs).await;
    let d = node.handle.deployment(&id).await.expect("record");
    assert_eq!(d.status, Status::WaitingHook, "{}", d.status_reason);
    old
}

/// v3, with an exec `pre_update` hook, supersedes v2 and goes on at once:
/// its hook runs first, in the old container, then it deploys.
async fn v3_goes_on(node: &HookNode, old: &str) {
    let start = tokio::time::Instant::now();
    let drain = hook(exec(&["/drain", "v3"]));
    let id = apply_pre_update(&node.handle, "demo:3", drain, 3).await;
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        exec_calls(node.rt()),
        [Call::Exec(old.to_string(), argv(&["/drain", "v3"]))],
        "v3's own hook, once, in the old container"
    );
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(c.id, old, "replaced");
    assert_eq!(c.state, ContainerState::Running);
    superseded(&node.handle, &Deployment::make_id("web", 2), 3).await;
}

#[tokio::test(start_paused = true)]
async fn an_http_hook_answering_423_forever_does_not_hold_a_newer_deployment() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::body(423, "VMs still here"));
    let node = hook_node(&host, &http);
    let h = hook(HookKind::Http("https://ci/x?token=s3cret".into()));
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
    let h = on_host(exec(&["/usr/local/bin/drain", "--forever"]));
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
    let h = hook(HookKind::Http("https://ci/x".into()));
    hook_running(&node, h, || !http.requests().is_empty()).await;
    let r = delete_web(&node.handle).await;
    let id = r.deployment.expect("a delete record").id;
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    assert!(node.rt().container_by_name("t-web").is_none(), "removed");
    superseded(&node.handle, &Deployment::make_id("web", 2), 3).await;
    let asked = http.requests().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(http.requests().len(), asked, "the old hook stopped asking");
    node.stop().await;
}
