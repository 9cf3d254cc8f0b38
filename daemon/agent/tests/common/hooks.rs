//! What the hook tests share: hooks with the defaults on `web`, the verbs
//! that delete it and clear its breakpoints, waits on its records, and a
//! node whose host units and http hook endpoint are fakes.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::{Handle, HostSeams, Verb, WithHookHttp};
use berth_core::dto::{ApplyResponse, VerbResponse};
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ExecOutput;
use berth_core::spec::{Hook, HookKind, HookPhase, HookPlace, OnTimeout, ServiceSpec};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeHookHttp, FakeHost, FakeRuntime, MemStore};

use super::{Clocked, Running, apply, cfg, deploy, run_agent, spec};

/// A hook of `kind` with the defaults: in the container, timeout 5m,
/// `on_timeout: abort`.
pub fn hook(kind: HookKind) -> Hook {
    Hook {
        kind,
        place: HookPlace::Container,
        timeout: None,
        on_timeout: OnTimeout::Abort,
    }
}

/// `hook` with `on_timeout: proceed`.
pub fn proceeding(hook: Hook) -> Hook {
    Hook {
        on_timeout: OnTimeout::Proceed,
        ..hook
    }
}

pub const BP: HookKind = HookKind::Breakpoint {};

pub fn argv(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|s| s.to_string()).collect()
}

pub fn exec(cmd: &[&str]) -> HookKind {
    HookKind::Exec(argv(cmd))
}

/// A hook, or the kind of one with the defaults ([`hook`]).
pub trait IntoHook {
    fn into_hook(self) -> Hook;
}

impl IntoHook for Hook {
    fn into_hook(self) -> Hook {
        self
    }
}

impl IntoHook for HookKind {
    fn into_hook(self) -> Hook {
        hook(self)
    }
}

/// `web` on `image` with `hooks` in `phase`.
pub fn web_with<H: IntoHook>(
    image: &str,
    phase: HookPhase,
    hooks: impl IntoIterator<Item = H>,
) -> ServiceSpec {
    let mut s = spec("web", image);
    let hooks = hooks.into_iter().map(IntoHook::into_hook).collect();
    match phase {
        HookPhase::PreUpdate => s.hooks.pre_update = hooks,
        HookPhase::PostUpdate => s.hooks.post_update = hooks,
        HookPhase::PreDelete => s.hooks.pre_delete = hooks,
    }
    s
}

/// The id of the record an apply's first service got.
pub fn id_of(r: &ApplyResponse) -> String {
    r.results[0].deployment.as_ref().expect("record").id.clone()
}

/// The fake engine's next exec exits `exit_code`, printing `stdout` and
/// `stderr`.
pub fn next_exec_exits(rt: &FakeRuntime, exit_code: i64, stdout: &str, stderr: &str) {
    rt.push_exec_result(ExecOutput {
        exit_code,
        stdout: stdout.into(),
        stderr: stderr.into(),
    });
}

/// The exec calls the fake engine got, in order.
pub fn exec_calls(rt: &FakeRuntime) -> Vec<Call> {
    rt.calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Exec(..)))
        .collect()
}

pub fn clear(phase: HookPhase) -> Verb {
    Verb::ClearHook { phase }
}

/// Clears `web`'s breakpoint waiting in `phase`.
pub async fn clear_web(h: &Handle, phase: HookPhase) -> VerbResponse {
    h.verb("web", clear(phase), "test").await.expect("cleared")
}

/// Deletes `web`, as the loop answers the verb.
pub async fn delete_web(h: &Handle) -> VerbResponse {
    h.verb("web", Verb::Delete, "test")
        .await
        .expect("delete accepted")
}

/// Waits for deployment `id` to be WAITING_HOOK in `phase`.
pub async fn waiting_in(h: &Handle, id: &str, phase: HookPhase) -> Deployment {
    for _ in 0..400 {
        let d = h.deployment(id).await.expect("record");
        if d.status == Status::WaitingHook && d.hook.as_ref().and_then(|h| h.phase) == Some(phase) {
            return d;
        }
        assert!(!d.status.is_terminal(), "{id} ended: {d:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never WAITING_HOOK in {phase}");
}

/// Waits (virtual time) until deployment `id` ends; fails past `within`.
pub async fn ended(h: &Handle, id: &str, within: Duration) -> Deployment {
    let until = tokio::time::Instant::now() + within;
    loop {
        let d = h.deployment(id).await.expect("record");
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

/// [`ended`], COMPLETE.
pub async fn completes(h: &Handle, id: &str, within: Duration) -> Deployment {
    let d = ended(h, id, within).await;
    assert_eq!(d.status, Status::Complete, "{}", d.status_reason);
    d
}

/// [`ended`], FAILED with a reason that says each of `says`.
pub async fn fails(h: &Handle, id: &str, within: Duration, says: &[&str]) -> Deployment {
    let d = ended(h, id, within).await;
    assert_eq!(d.status, Status::Failed, "{}", d.status_reason);
    for s in says {
        assert!(d.status_reason.contains(s), "{s:?} in {}", d.status_reason);
    }
    d
}

/// Deployment `id` is FAILED, superseded by generation `by`, and waits on
/// no hook.
pub async fn superseded(h: &Handle, id: &str, by: u64) {
    let old = h.deployment(id).await.expect("record");
    assert_eq!(
        (old.status, old.status_reason.as_str()),
        (
            Status::Failed,
            format!("superseded by generation {by}").as_str()
        )
    );
    assert_eq!(old.hook, None);
}

/// Seams whose host units are `H` and whose http hook endpoint is the fake.
pub type HookEnv<H = FakeHost> =
    Clocked<WithHookHttp<HostSeams<FakeRuntime, MemStore, H>, FakeHookHttp>>;
pub type HookNode<H = FakeHost> = Running<HookEnv<H>>;

/// The fake engine (`demo:1` to `demo:3`) and store, `host` and `http`.
pub fn hook_env<H>(host: H, http: FakeHookHttp) -> Arc<HookEnv<H>> {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    runtime.add_image("demo:2", "sha256:two");
    runtime.add_image("demo:3", "sha256:three");
    Clocked::new(WithHookHttp {
        inner: HostSeams {
            runtime,
            store: MemStore::new(),
            host,
            watcher: NoWatcher,
            files: berth_core::files::NoFiles,
        },
        http,
    })
}

/// A node whose host is `host` and whose http endpoint is `http`.
pub fn hook_node(host: &FakeHost, http: &FakeHookHttp) -> HookNode {
    run_agent(hook_env(host.clone(), http.clone()), cfg())
}

impl<H> HookNode<H> {
    pub fn rt(&self) -> &FakeRuntime {
        &(**self.env).inner.runtime
    }
}

/// Deploys `web` v1 (no hooks), then applies v2 with `h` in `pre_update`:
/// the old container's id and the new deployment's.
pub async fn update_with<H>(node: &HookNode<H>, h: Hook) -> (String, String) {
    let first = deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    assert_eq!(first[0].status, Status::Complete, "{first:?}");
    let old = node.rt().container_by_name("t-web").expect("web").id;
    (old, apply_pre_update(&node.handle, "demo:2", h, 2).await)
}

/// Applies `web` on `image` with `h` in `pre_update`: the id of the
/// record, that of generation `generation`.
pub async fn apply_pre_update(handle: &Handle, image: &str, h: Hook, generation: u64) -> String {
    let r = apply(handle, vec![web_with(image, HookPhase::PreUpdate, [h])]).await;
    let id = id_of(&r);
    assert_eq!(id, Deployment::make_id("web", generation));
    id
}
