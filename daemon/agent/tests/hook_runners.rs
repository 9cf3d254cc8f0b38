//! The hook runners on the fakes: host hooks (`where: host`) as transient
//! units of the fake host, http hooks against the fake endpoint, through
//! the loop (`pre_update` of an update). A host hook's exit code and output
//! and its timeout decide; a berthd restarted meanwhile re-attaches to the
//! unit by name instead of starting it again. An http hook's 423 is asked
//! again until a 2xx, a 500 aborts, and past its timeout it ends as
//! `on_timeout` says. No URL secret ever shows.

use std::time::Duration;

use berth_agent::NoHost;
use berth_core::hook_http::HookHttpError;
use berth_core::host::{ExitStatus, HostUnits, TransientSpec, hook_unit_name};
use berth_core::record::{Deployment, Status};
use berth_core::runtime::ContainerState;
use berth_core::spec::{Hook, HookKind, HookPhase, HookPlace};
use berth_fakes::{FakeAnswer, FakeHookHttp, FakeHost};

mod common;
use common::hooks::*;
use common::*;

fn on_host(cmd: &[&str], timeout: Option<Duration>) -> Hook {
    Hook {
        place: HookPlace::Host,
        timeout,
        ..hook(exec(cmd))
    }
}

fn http_at(url: &str, timeout: Option<Duration>) -> Hook {
    Hook {
        timeout,
        ..hook(HookKind::Http(url.into()))
    }
}

/// The unit of `web`'s generation-2 deployment's first `pre_update` hook.
fn unit() -> String {
    hook_unit_name("web", "pre_update-0", &Deployment::make_id("web", 2))
}

/// systemd killed the unit at its timeout, after it printed `output`.
fn killed_at_its_timeout(host: &FakeHost, output: &str) {
    assert!(host.complete(
        &unit(),
        "timeout",
        ExitStatus::Killed {
            signal: 15,
            core_dumped: false
        },
        output
    ));
}

async fn started(host: &FakeHost, n: usize) -> Vec<TransientSpec> {
    eventually("the host hook's unit starts", || host.started().len() >= n).await;
    host.started()
}

/// The old container still runs, untouched.
fn untouched(node: &HookNode, old: &str) {
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (c.id.as_str(), c.state),
        (old, ContainerState::Running),
        "the old container runs on"
    );
}

// --- host hooks ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_host_hook_runs_as_a_transient_unit_and_exit_zero_proceeds() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let (old, id) = update_with(&node, on_host(&["/usr/local/bin/drain", "web"], None)).await;
    let spec = started(&host, 1).await.remove(0);
    assert_eq!(spec.unit_name, unit());
    assert_eq!(spec.argv, ["/usr/local/bin/drain", "web"]);
    assert_eq!(
        spec.timeout,
        Some(Duration::from_secs(300)),
        "exec's default"
    );
    let hooks_dir = cfg().hooks_dir();
    assert!(
        std::path::Path::new(&spec.output_path).starts_with(&hooks_dir),
        "{} under {}",
        spec.output_path,
        hooks_dir.display()
    );
    assert_eq!(spec.env["BERTH_SERVICE"], "web");
    assert_eq!(spec.env["BERTH_DEPLOYMENT"], id);
    assert_eq!(spec.env["BERTH_HOOK_PHASE"], "pre_update");
    let d = node.handle.deployment(&id).await.expect("record");
    assert_eq!(d.status, Status::WaitingHook);
    assert_eq!(
        d.hook.map(|h| h.hook),
        Some("exec on the host /usr/local/bin/drain web".to_string())
    );
    untouched(&node, &old);

    assert!(host.exit(&unit(), 0, "drained\n"));
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    assert_ne!(node.rt().container_by_name("t-web").expect("web").id, old);
    assert_eq!(host.cleaned(), [unit()], "the unit is cleaned up once read");
    assert_eq!(host.started().len(), 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_exiting_non_zero_fails_the_update_with_its_output() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let (old, id) = update_with(&node, on_host(&["/usr/local/bin/drain"], None)).await;
    started(&host, 1).await;
    assert!(host.exit(&unit(), 3, "2 VMs still on this node\n"));
    let d = fails(
        &node.handle,
        &id,
        Duration::from_secs(30),
        &["exited with code 3", "2 VMs still on this node"],
    )
    .await;
    assert_eq!(d.outputs.deploy_status_code, Some(3));
    assert_eq!(
        d.outputs.deploy_stdout.as_deref(),
        Some("2 VMs still on this node\n")
    );
    untouched(&node, &old);
    assert_eq!(host.cleaned(), [unit()]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_killed_at_its_timeout_aborts_or_proceeds_as_on_timeout_says() {
    // systemd kills it at the timeout and reports `timeout`.
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let timeout = Some(Duration::from_secs(10));
    let (old, id) = update_with(&node, on_host(&["/bin/sleep", "600"], timeout)).await;
    let spec = started(&host, 1).await.remove(0);
    assert_eq!(spec.timeout, timeout, "the unit carries the hook's timeout");
    killed_at_its_timeout(&host, "begun\n");
    let d = fails(
        &node.handle,
        &id,
        Duration::from_secs(30),
        &["timed out after 10s"],
    )
    .await;
    assert_eq!(d.outputs.deploy_stdout.as_deref(), Some("begun\n"));
    untouched(&node, &old);
    node.stop().await;

    // on_timeout: proceed goes on.
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let h = proceeding(on_host(&["/bin/sleep", "600"], timeout));
    let (_, id) = update_with(&node, h).await;
    started(&host, 1).await;
    killed_at_its_timeout(&host, "");
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_unit_systemd_never_reports_on_is_given_up_and_stopped_after_its_timeout() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    let node = hook_node(&host, &http);
    let start = tokio::time::Instant::now();
    let (old, id) = update_with(
        &node,
        on_host(&["/bin/sleep", "600"], Some(Duration::from_secs(10))),
    )
    .await;
    started(&host, 1).await;
    fails(
        &node.handle,
        &id,
        Duration::from_secs(300),
        &["timed out after 10s"],
    )
    .await;
    // The timeout and a margin for systemd to kill and report it.
    assert!(
        start.elapsed() >= Duration::from_secs(70),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(host.cleaned(), [unit()], "stopped and forgotten");
    assert!(host.running().is_empty());
    untouched(&node, &old);
    node.stop().await;
}

/// What an earlier berthd left: the unit of this very hook.
async fn left_behind(host: &FakeHost) {
    host.run_transient(TransientSpec {
        unit_name: unit(),
        argv: vec!["/usr/local/bin/drain".into()],
        env: Default::default(),
        working_dir: None,
        output_path: "/var/lib/berth/hooks/pre_update-0-x.out".into(),
        timeout: Some(Duration::from_secs(300)),
    })
    .await
    .expect("the earlier berthd started it");
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_that_already_finished_is_not_run_again() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    left_behind(&host).await;
    assert!(host.exit(&unit(), 0, "drained before the restart\n"));
    let node = hook_node(&host, &http);
    let (_, id) = update_with(&node, on_host(&["/usr/local/bin/drain"], None)).await;
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    assert_eq!(host.started().len(), 1, "only the earlier berthd's start");
    assert_eq!(host.cleaned(), [unit()]);
    node.stop().await;

    // A failed one fails the update, again without running it.
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    left_behind(&host).await;
    assert!(host.exit(&unit(), 1, "refused\n"));
    let node = hook_node(&host, &http);
    let (old, id) = update_with(&node, on_host(&["/usr/local/bin/drain"], None)).await;
    fails(&node.handle, &id, Duration::from_secs(30), &["refused"]).await;
    assert_eq!(host.started().len(), 1);
    untouched(&node, &old);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_still_running_is_waited_for_not_started_again() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    left_behind(&host).await;
    let node = hook_node(&host, &http);
    let (old, id) = update_with(&node, on_host(&["/usr/local/bin/drain"], None)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = node.handle.deployment(&id).await.expect("record");
    assert_eq!(d.status, Status::WaitingHook, "{}", d.status_reason);
    assert_eq!(host.started().len(), 1, "re-attached, not started twice");
    untouched(&node, &old);
    assert!(host.exit(&unit(), 0, "done\n"));
    completes(&node.handle, &id, Duration::from_secs(30)).await;
    assert_eq!(host.started().len(), 1);
    assert_eq!(host.cleaned(), [unit()]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_host_hook_without_systemd_fails_soon_naming_the_bus() {
    // Seams without a host: the bus error, after a short patience.
    let node = run_agent(hook_env(NoHost, FakeHookHttp::new()), cfg());
    let (_, id) = update_with(&node, on_host(&["/bin/true"], None)).await;
    let start = tokio::time::Instant::now();
    let says = ["without a connection to systemd"];
    fails(&node.handle, &id, Duration::from_secs(120), &says).await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    node.stop().await;
}

// --- http hooks ----------------------------------------------------------

const URL: &str = "https://bob:pa55word@hooks.example/drain?token=t0ps3cret";

fn no_secret(what: &str, text: &str) {
    for secret in ["pa55word", "t0ps3cret"] {
        assert!(!text.contains(secret), "{secret} in {what}: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_http_hook_answering_423_is_asked_again_until_200() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.then(FakeAnswer::body(423, "3 VMs left"))
        .then(FakeAnswer::body(423, "1 VM left"))
        .then(FakeAnswer::body(200, "go"));
    let node = hook_node(&host, &http);
    let (_, id) = update_with(&node, http_at(URL, None)).await;
    completes(&node.handle, &id, Duration::from_secs(60)).await;
    let reqs = http.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let first = &reqs[0];
    assert_eq!(first.url, URL, "the real URL is what is sent");
    let body: serde_json::Value = serde_json::from_slice(&first.body).expect("JSON body");
    assert_eq!(body["service"], "web");
    assert_eq!(body["id"], id.as_str());
    no_secret("the posted body", &String::from_utf8_lossy(&first.body));
    assert!(
        first
            .headers
            .contains(&("Berth-Hook-Phase".to_string(), "pre_update".to_string())),
        "{:?}",
        first.headers
    );
    assert!(first.timeout <= Duration::from_secs(300));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_http_hook_answering_500_aborts_with_the_status_and_no_secret() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    // The endpoint echoes its URL back.
    http.then(FakeAnswer::body(
        500,
        &format!("cannot drain (POST {URL} failed)"),
    ));
    let node = hook_node(&host, &http);
    let mut events = node.handle.subscribe_events();
    let (old, id) = update_with(&node, http_at(URL, None)).await;
    let says = [
        "HTTP 500",
        "cannot drain",
        // The URL, redacted.
        "https://<redacted>@hooks.example/drain?<redacted>",
    ];
    let d = fails(&node.handle, &id, Duration::from_secs(60), &says).await;
    assert_eq!(http.requests().len(), 1, "no retry after a 500");
    untouched(&node, &old);
    no_secret("the reason", &d.status_reason);
    no_secret(
        "the outputs",
        &serde_json::to_string(&d.outputs).expect("json"),
    );
    while let Ok(e) = events.try_recv() {
        no_secret("an event", &serde_json::to_string(&e).expect("json"));
    }
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_http_hook_not_ready_within_its_timeout_ends_as_on_timeout_says() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::status(423));
    let node = hook_node(&host, &http);
    let start = tokio::time::Instant::now();
    let (old, id) = update_with(&node, http_at(URL, Some(Duration::from_secs(20)))).await;
    fails(
        &node.handle,
        &id,
        Duration::from_secs(120),
        &["timed out after 20s"],
    )
    .await;
    // 1 s, 2 s, 4 s, 8 s between attempts, then the rest of the 20 s.
    assert_eq!(http.requests().len(), 5, "{:?}", http.requests().len());
    assert!(start.elapsed() >= Duration::from_secs(20));
    untouched(&node, &old);
    node.stop().await;

    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::status(409));
    let node = hook_node(&host, &http);
    let h = proceeding(http_at(URL, Some(Duration::from_secs(20))));
    let (_, id) = update_with(&node, h).await;
    completes(&node.handle, &id, Duration::from_secs(120)).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_endpoint_is_retried_then_aborts_even_with_on_timeout_proceed() {
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    // Down for a while, then up: the update goes on.
    http.then(FakeAnswer::error(HookHttpError::Unreachable(
        "connection failed: connection refused".into(),
    )))
    .then(FakeAnswer::status(204));
    let node = hook_node(&host, &http);
    let (_, id) = update_with(&node, http_at(URL, None)).await;
    completes(&node.handle, &id, Duration::from_secs(60)).await;
    node.stop().await;

    // Never up: it never decided, so it aborts, saying why.
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::error(HookHttpError::Unreachable(format!(
        "connection failed: {URL} refused"
    ))));
    let node = hook_node(&host, &http);
    let h = proceeding(http_at(URL, Some(Duration::from_secs(20))));
    let (old, id) = update_with(&node, h).await;
    let d = fails(
        &node.handle,
        &id,
        Duration::from_secs(120),
        &["could not be reached in 20s", "connection failed"],
    )
    .await;
    no_secret("the reason", &d.status_reason);
    untouched(&node, &old);
    node.stop().await;

    // A URL that can never work fails at once.
    let (host, http) = (FakeHost::new(), FakeHookHttp::new());
    http.always(FakeAnswer::error(HookHttpError::Invalid(
        "not a valid http(s) URL".into(),
    )));
    let node = hook_node(&host, &http);
    let (_, id) = update_with(&node, http_at(URL, None)).await;
    fails(&node.handle, &id, Duration::from_secs(10), &["not a valid"]).await;
    assert_eq!(http.requests().len(), 1);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_agent_without_an_http_client_says_so() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let s = web_with("demo:2", HookPhase::PreUpdate, [http_at(URL, None)]);
    let r = apply(&node.handle, vec![s]).await;
    let d = wait_status(&node.handle, &id_of(&r)).await;
    assert_eq!(d.status, Status::Failed);
    assert!(
        d.status_reason.contains("no http client"),
        "{}",
        d.status_reason
    );
    node.stop().await;
}
