//! Config watch in the loop: in-memory files (`FakeFiles`), the fake
//! engine, and a fake watcher the tests push "may have changed" events
//! into. How real files read (symlinks, ConfigMap swaps, touch, modes) is
//! berth-sources' tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_agent::{AgentError, Verb};
use berth_core::dto::Change;
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::runtime::{ExecOutput, LABEL_CONFIG_HASH};
use berth_core::spec::{ConfigMount, OnChange, ServiceSpec};
use berth_core::watch::WatchEvent;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeFiles, FakeRuntime};

mod common;
use common::watched::*;
use common::*;

type Node = WatchedNode;

impl Node {
    fn rt(&self) -> &FakeRuntime {
        &self.env.runtime
    }
    fn files(&self) -> &FakeFiles {
        &self.env.files
    }
}

fn with_config(name: &str, source: &Path, on_change: OnChange) -> ServiceSpec {
    let mut s = spec(name, "demo:1");
    s.config = vec![ConfigMount {
        source: source.to_string_lossy().into_owned(),
        target: "/etc/demo".into(),
        on_change,
    }];
    s
}

/// The directory all config sources of a test live under.
const ROOT: &str = "/berth-test/cfg";

/// A config directory `ROOT/web` holding `app.conf`.
fn config_dir(files: &FakeFiles, content: &str) -> PathBuf {
    let src = Path::new(ROOT).join("web");
    files.write(src.join("app.conf"), content);
    src
}

async fn history(node: &Node, service: &str) -> Vec<Deployment> {
    node.handle.history(service, 50).await.expect("history")
}

/// Waits for the newest record of `service` to be a terminal RECONFIGURE
/// newer than generation `after`.
async fn reconfigured(node: &Node, service: &str, after: u64) -> Deployment {
    for _ in 0..400 {
        if let Some(d) = history(node, service).await.into_iter().next()
            && d.generation > after
            && d.action == DeployAction::Reconfigure
            && d.status.is_terminal()
        {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "no finished RECONFIGURE of {service} after generation {after}: {:#?}",
        history(node, service).await
    );
}

/// Nothing new for a while: no record past `generation`, no mutating call.
async fn quiet(node: &Node, service: &str, generation: u64) {
    tokio::time::sleep(Duration::from_millis(600)).await;
    let newest = history(node, service).await[0].generation;
    assert_eq!(newest, generation, "{:#?}", history(node, service).await);
    assert_eq!(node.rt().mutating_calls(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_content_change_signals_and_records_what_changed() {
    let env = watched_env();
    let src = config_dir(&env.files, "greeting=hello\n");
    let (node, w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Signal("SIGHUP".into()))],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete);
    let first_hash = d[0].config_hash.clone().expect("config hash recorded");
    assert_eq!(w.current()[0].key, "web#0");
    let c = &node.rt().containers()[0];
    assert_eq!(c.req.spec.config[0].target, "/etc/demo");
    // Not recreate: the config hash is no part of the container's identity.
    assert!(!c.labels.contains_key(LABEL_CONFIG_HASH));

    node.rt().clear_calls();
    node.files()
        .write(src.join("app.conf"), "greeting=bonjour\n");
    node.files().write(src.join("extra.conf"), "x=1\n");
    w.changed(["web#0"]).await;
    let r = reconfigured(&node, "web", d[0].generation).await;
    assert_eq!(r.status, Status::Complete, "{}", r.status_reason);
    let change = r.config_change.expect("change recorded");
    assert_eq!(change.old_hash.as_deref(), Some(first_hash.as_str()));
    assert_ne!(change.new_hash, change.old_hash);
    assert_eq!(change.sources[0].files, vec!["app.conf", "extra.conf"]);
    assert_eq!(change.reaction, "signal SIGHUP");
    assert_eq!(r.actor, "config-watch");
    let calls = node.rt().mutating_calls();
    assert!(
        matches!(calls.as_slice(), [Call::Kill(_, sig)] if sig == "SIGHUP"),
        "{calls:?}"
    );
    let show = node.handle.snapshot().services["web"].clone();
    assert_eq!(show.config[0].hash, change.sources[0].new_hash);
    assert_eq!(
        show.last_config_change.expect("last change").deployment,
        r.id
    );
    node.stop().await;
}

/// (That a touch, a new mtime, changes nothing is the real reader's:
/// berth-sources' `a_touch_changes_nothing`.)
#[tokio::test(start_paused = true)]
async fn an_identical_rewrite_changes_nothing() {
    let env = watched_env();
    let src = config_dir(&env.files, "a=1\n");
    let (node, w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Restart)],
    )
    .await;
    node.rt().clear_calls();
    node.files().write(src.join("app.conf"), "a=1\n");
    w.changed(["web#0"]).await;
    w.push(WatchEvent::Rescan).await;
    quiet(&node, "web", d[0].generation).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_service_sharing_a_source_reacts_by_its_own_policy() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![
            with_config("a", &src, OnChange::Restart),
            with_config("b", &src, OnChange::Recreate),
            with_config("c", &src, OnChange::None),
        ],
    )
    .await;
    let untouched = {
        let mut s = spec("plain", "demo:1");
        s.command = Some(vec!["x".into()]);
        deploy(&node.handle, vec![s]).await
    };
    let old_b = node
        .rt()
        .containers()
        .into_iter()
        .find(|c| c.name == "t-b")
        .expect("b runs");
    assert!(old_b.labels.contains_key(LABEL_CONFIG_HASH));
    node.rt().clear_calls();
    node.files().write(src.join("app.conf"), "v=2\n");
    w.changed(["a#0", "b#0", "c#0"]).await;
    let a = reconfigured(&node, "a", d[0].generation).await;
    let b = reconfigured(&node, "b", d[1].generation).await;
    let c = reconfigured(&node, "c", d[2].generation).await;
    for r in [&a, &b, &c] {
        assert_eq!(r.status, Status::Complete, "{}: {}", r.id, r.status_reason);
    }
    assert_eq!(c.status_reason, "recorded only (on_change: none)");
    let calls = node.rt().mutating_calls();
    let containers = node.rt().containers();
    let a_id = &containers.iter().find(|c| c.name == "t-a").expect("a").id;
    assert!(calls.contains(&Call::Restart(a_id.clone())), "{calls:?}");
    let new_b = containers.iter().find(|c| c.name == "t-b").expect("b");
    assert_ne!(new_b.id, old_b.id, "b is a new container");
    assert_eq!(
        new_b.labels.get(LABEL_CONFIG_HASH),
        b.config_identity.as_ref()
    );
    assert_ne!(
        new_b.labels.get(LABEL_CONFIG_HASH),
        old_b.labels.get(LABEL_CONFIG_HASH)
    );
    // The service without config was not touched, nor was c's container.
    assert!(
        calls
            .iter()
            .all(|call| !format!("{call:?}").contains("t-plain")
                && !format!("{call:?}").contains("t-c")),
        "{calls:?}"
    );
    assert_eq!(
        history(&node, "plain").await[0].generation,
        untouched[0].generation
    );
    node.stop().await;
}

/// The engine went away just as a config change needed a restart and a
/// signal: the records wait (IN_PROGRESS, saying why) and the reactions run
/// once the engine is back, instead of failing and leaving the old config.
#[tokio::test(start_paused = true)]
async fn a_reaction_the_engine_missed_runs_again_when_it_is_back() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![
            with_config("r", &src, OnChange::Restart),
            with_config("s", &src, OnChange::Signal("SIGHUP".into())),
        ],
    )
    .await;
    let unreachable = || berth_core::runtime::RuntimeError::Unreachable {
        endpoint: "unix:///fake".into(),
        reason: "connection refused".into(),
    };
    node.rt().fail_next("restart", unreachable());
    node.rt().fail_next("kill", unreachable());
    node.rt().clear_calls();
    node.files().write(src.join("app.conf"), "v=2\n");
    w.changed(["r#0", "s#0"]).await;
    let r = reconfigured(&node, "r", d[0].generation).await;
    let s = reconfigured(&node, "s", d[1].generation).await;
    for rec in [&r, &s] {
        assert_eq!(
            rec.status,
            Status::Complete,
            "{}: {}",
            rec.id,
            rec.status_reason
        );
    }
    let calls = node.rt().mutating_calls();
    let restarts = calls
        .iter()
        .filter(|c| matches!(c, Call::Restart(_)))
        .count();
    let kills = calls.iter().filter(|c| matches!(c, Call::Kill(..))).count();
    assert_eq!(
        (restarts, kills),
        (2, 2),
        "each tried again once: {calls:?}"
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_exec_fails_the_record_with_its_stderr() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    let reload = OnChange::Exec(vec!["/demo".into(), "reload".into()]);
    let d = deploy(&node.handle, vec![with_config("web", &src, reload)]).await;
    node.rt().push_exec_result(ExecOutput {
        exit_code: 3,
        stdout: "checking\n".into(),
        stderr: "line 1: bad value\n".into(),
    });
    node.files().write(src.join("app.conf"), "v=oops\n");
    w.changed(["web#0"]).await;
    let r = reconfigured(&node, "web", d[0].generation).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.status_reason.contains("exited with code 3"),
        "{}",
        r.status_reason
    );
    assert!(
        r.status_reason.contains("line 1: bad value"),
        "{}",
        r.status_reason
    );
    assert_eq!(r.outputs.deploy_status_code, Some(3));
    assert_eq!(r.outputs.deploy_stdout.as_deref(), Some("checking\n"));
    // No retry loop: the same content is not reloaded again.
    node.rt().clear_calls();
    w.push(WatchEvent::Rescan).await;
    quiet(&node, "web", r.generation).await;
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_missing_source_fails_once_leaves_the_container_and_recovers() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Signal("SIGHUP".into()))],
    )
    .await;
    node.rt().clear_calls();
    node.files().remove(&src);
    w.changed(["web#0"]).await;
    let r = reconfigured(&node, "web", d[0].generation).await;
    assert_eq!(r.status, Status::Failed);
    assert!(
        r.status_reason.contains(&*src.to_string_lossy())
            && r.status_reason.contains("No such file"),
        "{}",
        r.status_reason
    );
    assert_eq!(node.rt().mutating_calls(), vec![]);
    // Seen again: nothing new.
    w.push(WatchEvent::Rescan).await;
    quiet(&node, "web", r.generation).await;
    // Back (same content): the container's mount still shows the deleted
    // directory, so an in-place reload is not enough: restart.
    node.files().write(src.join("app.conf"), "v=1\n");
    w.changed(["web#0"]).await;
    let back = reconfigured(&node, "web", r.generation).await;
    assert_eq!(back.status, Status::Complete, "{}", back.status_reason);
    let change = back.config_change.expect("change");
    assert!(change.sources[0].replaced);
    assert_eq!(change.reaction, "restart");
    assert!(
        node.rt()
            .mutating_calls()
            .iter()
            .any(|c| matches!(c, Call::Restart(_))),
        "{:?}",
        node.rt().mutating_calls()
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_change_made_while_berthd_was_down_is_found_at_start() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, _w) = watched(env.clone());
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Signal("SIGHUP".into()))],
    )
    .await;
    let env = node.stop().await;
    env.files.write(src.join("app.conf"), "v=2\n");
    env.runtime.clear_calls();
    // No watcher event at all: the start-up read finds it.
    let (node, _w) = watched(env);
    let r = reconfigured(&node, "web", d[0].generation).await;
    assert_eq!(r.status, Status::Complete, "{}", r.status_reason);
    assert_eq!(
        r.config_change.expect("change").sources[0].files,
        vec!["app.conf"]
    );
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_last_config_change_is_found_at_start_without_reading_the_history() {
    use berth_core::store::{LoadedService, Store};
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    let web = |greeting: &str| {
        let mut s = with_config("web", &src, OnChange::Signal("SIGHUP".into()));
        s.env.insert(
            "GREETING".into(),
            berth_core::spec::EnvValue::plain(greeting),
        );
        s
    };
    deploy(&node.handle, vec![web("hello")]).await;
    node.files().write(src.join("app.conf"), "v=2\n");
    w.changed(["web#0"]).await;
    let r = reconfigured(&node, "web", 1).await;
    assert_eq!(r.id, "web-2");
    // A later update is not a config change: the last one stays web-2.
    let d = deploy(&node.handle, vec![web("bonjour")]).await;
    assert_eq!(d[0].id, "web-3");
    let last_change = |node: &Node| {
        node.handle.snapshot().services["web"]
            .last_config_change
            .as_ref()
            .map(|c| c.deployment.clone())
    };
    assert_eq!(last_change(&node).as_deref(), Some("web-2"));

    // Restarted: the meta names web-2, and only that record is read.
    let env = node.stop().await;
    let (node, _w) = watched(env);
    assert_eq!(last_change(&node).as_deref(), Some("web-2"));
    assert_eq!(node.env.store.full_history_reads(), 0);

    // A meta written before berth kept the field: the history is read
    // once, and the next record's meta keeps what it found.
    let env = node.stop().await;
    let Ok(loaded) = env.store.load() else {
        panic!("store loads")
    };
    let Some(LoadedService::Ok { mut meta, .. }) = loaded.into_iter().next() else {
        panic!("web loads")
    };
    assert_eq!(meta.last_config_change, Some(2));
    meta.last_config_change = None;
    env.store.save_meta(&meta).expect("meta saved");
    let (node, _w) = watched(env);
    assert_eq!(last_change(&node).as_deref(), Some("web-2"));
    assert_eq!(node.env.store.full_history_reads(), 1);
    deploy(&node.handle, vec![web("hej")]).await;
    let env = node.stop().await;
    let (node, _w) = watched(env);
    assert_eq!(last_change(&node).as_deref(), Some("web-2"));
    assert_eq!(node.env.store.full_history_reads(), 1, "not read again");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconfigure_verb_forces_the_policy_and_answers_with_the_record() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, _w) = watched(env);
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Restart)],
    )
    .await;
    node.rt().clear_calls();
    let r = node
        .handle
        .verb("web", Verb::Reconfigure, "uid:0")
        .await
        .expect("reconfigure accepted");
    let rec = r.deployment.expect("a record");
    assert_eq!(rec.action, DeployAction::Reconfigure);
    assert_eq!(rec.actor, "uid:0");
    assert!(rec.config_change.as_ref().expect("change").forced);
    let done = reconfigured(&node, "web", d[0].generation).await;
    assert_eq!(done.status, Status::Complete, "{}", done.status_reason);
    assert!(
        node.rt()
            .mutating_calls()
            .iter()
            .any(|c| matches!(c, Call::Restart(_)))
    );
    let plain = deploy(&node.handle, vec![spec("plain", "demo:1")]).await;
    assert_eq!(plain[0].status, Status::Complete);
    let e = node
        .handle
        .verb("plain", Verb::Reconfigure, "uid:0")
        .await
        .expect_err("no config");
    assert!(e.to_string().contains("has no config sources"), "{e}");
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn apply_with_a_missing_source_fails_and_in_place_reload_of_a_file_is_refused() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, _w) = watched(env);
    let missing = Path::new(ROOT).join("nope");
    let d = deploy(
        &node.handle,
        vec![with_config("web", &missing, OnChange::Restart)],
    )
    .await;
    assert_eq!(d[0].status, Status::Failed);
    assert!(
        d[0].status_reason.contains(&*missing.to_string_lossy())
            && d[0].status_reason.contains("never creates one"),
        "{}",
        d[0].status_reason
    );
    assert!(node.rt().containers().is_empty());

    let file = src.join("app.conf");
    let r = apply_from(
        &node.handle,
        vec![
            spec("ok", "demo:1"),
            with_config("web2", &file, OnChange::Signal("SIGHUP".into())),
        ],
        berth_core::record::Source::Api,
        false,
    )
    .await;
    match r {
        Err(AgentError::Invalid { reason, .. }) => {
            assert!(reason.contains("web2: config[0]"), "{reason}");
            assert!(reason.contains("Mount the directory"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // All or nothing: "ok" was not applied either.
    assert!(!node.handle.snapshot().services.contains_key("ok"));
    // A file source with restart is fine (a restart re-resolves the mount).
    let r = apply(
        &node.handle,
        vec![with_config("web3", &file, OnChange::Restart)],
    )
    .await;
    assert_eq!(r.results[0].change, Change::Created);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_policy_only_change_keeps_the_container_and_its_config_identity() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, _w) = watched(env);
    deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Signal("SIGHUP".into()))],
    )
    .await;
    node.rt().clear_calls();
    // signal -> recreate is a policy change: no container is touched.
    let d = deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Recreate)],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete, "{}", d[0].status_reason);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn watches_follow_the_sources_and_stop_at_a_delete() {
    let env = watched_env();
    let src = config_dir(&env.files, "v=1\n");
    let (node, w) = watched(env);
    deploy(
        &node.handle,
        vec![with_config("web", &src, OnChange::Restart)],
    )
    .await;
    assert_eq!(w.current().len(), 1);
    let sets = w.sets().len();
    // A record that changes neither sources nor deletion sets nothing.
    let v = node
        .handle
        .verb("web", Verb::Stop, "test")
        .await
        .expect("stop");
    wait_status(&node.handle, &v.deployment.expect("record").id).await;
    assert_eq!(w.sets().len(), sets, "{:?}", w.sets());
    let v = node
        .handle
        .verb("web", Verb::Delete, "test")
        .await
        .expect("delete");
    assert!(w.current().is_empty(), "{:?}", w.current());
    wait_status(&node.handle, &v.deployment.expect("record").id).await;
    node.stop().await;
}
