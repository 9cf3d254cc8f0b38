//! Hooks around a restart or a recreate by config change (`on_change:
//! restart | recreate` of a `config:` mount), against the fake engine,
//! in-memory files and a fake watcher: `pre_update` runs in the old
//! container before the restart or the recreate, `post_update` after it,
//! and a restarted berthd resumes a restart that waits for its hooks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::spec::{ConfigMount, HookPhase, OnChange, ServiceSpec};
use berth_fakes::FakeFiles;
use berth_fakes::runtime::Call;

mod common;
use common::hooks::*;
use common::watched::*;
use common::*;

type Node = WatchedNode;

/// `web` with `ROOT/web` mounted, reacting by `on_change`.
fn web(files: &FakeFiles, on_change: OnChange) -> (ServiceSpec, PathBuf) {
    let src = Path::new("/berth-test/cfg").join("web");
    files.write(src.join("app.conf"), "v=1\n");
    let mut s = spec("web", "demo:1");
    s.config = vec![ConfigMount {
        source: src.to_string_lossy().into_owned(),
        target: "/etc/demo".into(),
        on_change,
    }];
    (s, src)
}

/// The newest record of `web`, once it is a RECONFIGURE after `after`.
async fn reconfigure(node: &Node, after: u64) -> Deployment {
    for _ in 0..400 {
        let newest = node.handle.history("web", 1).await.expect("history");
        if let Some(d) = newest.into_iter().next()
            && d.generation > after
            && d.action == DeployAction::Reconfigure
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no RECONFIGURE after generation {after}");
}

fn calls_of(node: &Node) -> Vec<Call> {
    node.env
        .runtime
        .calls()
        .into_iter()
        .filter(|c| c.is_mutating())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_restart_by_config_change_waits_for_pre_update_then_runs_post_update() {
    let env = watched_env();
    let (mut s, src) = web(&env.files, OnChange::Restart);
    s.hooks.pre_update = vec![hook(BP), hook(exec(&["/drain"]))];
    s.hooks.post_update = vec![hook(exec(&["/ready"]))];
    let (node, w) = watched(env);
    let d = deploy(&node.handle, vec![s]).await;
    assert_eq!(d[0].status, Status::Complete);
    let c = node.env.runtime.container_by_name("t-web").expect("web");
    node.env.runtime.clear_calls();

    node.env.files.write(src.join("app.conf"), "v=2\n");
    w.changed(["web#0"]).await;
    let r = reconfigure(&node, d[0].generation).await;
    assert_eq!(r.status, Status::WaitingHook, "{r:?}");
    assert_eq!(
        r.hook.as_ref().and_then(|h| h.phase),
        Some(HookPhase::PreUpdate)
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(calls_of(&node), vec![], "no restart before the hooks");

    // Restarted while it waits: it waits still, and the restart is not
    // resumed behind the hooks' back.
    let env = node.stop().await;
    let (node, _w) = watched(env);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let waiting = node.handle.deployment(&r.id).await.expect("record");
    assert_eq!(waiting.status, Status::WaitingHook, "{waiting:?}");
    assert_eq!(calls_of(&node), vec![], "no restart before the hooks");

    clear_web(&node.handle, HookPhase::PreUpdate).await;
    let done = wait_status(&node.handle, &r.id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    let calls = calls_of(&node);
    let drain = Call::Exec(c.id.clone(), vec!["/drain".into()]);
    let restart = Call::Restart(c.id.clone());
    let ready = Call::Exec(c.id.clone(), vec!["/ready".into()]);
    let at = |call: &Call| {
        calls
            .iter()
            .position(|x| x == call)
            .unwrap_or_else(|| panic!("{call:?} in {calls:?}"))
    };
    assert!(
        at(&drain) < at(&restart) && at(&restart) < at(&ready),
        "{calls:?}"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_recreate_by_config_change_runs_pre_update_in_the_old_container() {
    let env = watched_env();
    let (mut s, src) = web(&env.files, OnChange::Recreate);
    s.hooks.pre_update = vec![hook(exec(&["/drain"]))];
    let (node, w) = watched(env);
    let d = deploy(&node.handle, vec![s]).await;
    assert_eq!(d[0].status, Status::Complete);
    let old = node.env.runtime.container_by_name("t-web").expect("web");
    node.env.runtime.clear_calls();
    next_exec_exits(&node.env.runtime, 4, "", "busy\n");

    node.env.files.write(src.join("app.conf"), "v=2\n");
    w.changed(["web#0"]).await;
    let r = reconfigure(&node, d[0].generation).await;
    let failed = wait_status(&node.handle, &r.id).await;
    assert_eq!(failed.status, Status::Failed, "{failed:?}");
    assert!(
        failed
            .status_reason
            .contains("pre_update hook `exec /drain` exited with code 4: busy"),
        "{}",
        failed.status_reason
    );
    assert_eq!(
        calls_of(&node),
        vec![Call::Exec(old.id.clone(), vec!["/drain".into()])],
        "the old container untouched"
    );

    // The next change recreates, after the hook.
    node.env.runtime.clear_calls();
    node.env.files.write(src.join("app.conf"), "v=3\n");
    w.changed(["web#0"]).await;
    let r = reconfigure(&node, failed.generation).await;
    let done = wait_status(&node.handle, &r.id).await;
    assert_eq!(done.status, Status::Complete, "{done:?}");
    let calls = calls_of(&node);
    assert_eq!(
        calls.first(),
        Some(&Call::Exec(old.id.clone(), vec!["/drain".into()])),
        "{calls:?}"
    );
    let new = node.env.runtime.container_by_name("t-web").expect("web");
    assert_ne!(new.id, old.id, "recreated");
    node.stop().await;
}
