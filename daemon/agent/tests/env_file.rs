//! `env_file` in the loop, against the fake engine and in-memory files:
//! the files are read at each apply (their values' digest in the spec
//! hash) and again right before each create, their values reach the
//! container's env and nothing else (records, events, what the API
//! shows), and a file that cannot be used fails that service's
//! deployment, naming the service, the field, the file and the line.

use std::collections::BTreeMap;

use berth_agent::HostSeams;
use berth_core::dto::Change;
use berth_core::event::EventKind;
use berth_core::record::{Deployment, Status};
use berth_core::spec::{EnvValue, ServiceSpec};
use berth_core::store::Store;
use berth_core::watch::NoWatcher;
use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

mod common;
use common::*;

type FileEnv = Clocked<HostSeams<FakeRuntime, MemStore, berth_agent::NoHost, NoWatcher, FakeFiles>>;

const COMMON: &str = "/etc/berth/common.env";
const WEB: &str = "/etc/berth/web.env";

fn node(files: &FakeFiles) -> Running<FileEnv> {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let env = Clocked::new(HostSeams {
        runtime,
        store: MemStore::new(),
        host: berth_agent::NoHost,
        watcher: NoWatcher,
        files: files.clone(),
    });
    run_agent(env, cfg())
}

fn web() -> ServiceSpec {
    let mut s = spec("web", "demo:1");
    s.env_file = vec![COMMON.into(), WEB.into()];
    s.env
        .insert("MODE".into(), EnvValue::plain("from-the-spec"));
    s
}

fn container_env(node: &Running<FileEnv>) -> BTreeMap<String, String> {
    node.env
        .runtime
        .container_by_name("t-web")
        .expect("t-web exists")
        .req
        .spec
        .env
}

/// Everything of `service` that leaves the engine's create: its stored
/// records, what the API shows of them, and every event.
async fn everything_but_the_container(node: &Running<FileEnv>, service: &str) -> String {
    let stored = node
        .env
        .store
        .history(service, usize::MAX)
        .expect("history");
    let shown = node.handle.history(service, 100).await.expect("history");
    let snapshot = node.handle.snapshot();
    let status = snapshot
        .currents
        .get(service)
        .map(|d| serde_json::to_string(&**d).expect("serializes"))
        .unwrap_or_default();
    format!(
        "{}\n{}\n{status}\n{}",
        serde_json::to_string(&stored).expect("serializes"),
        serde_json::to_string(&shown).expect("serializes"),
        serde_json::to_string(&node.handle.events_since(0).events).expect("serializes"),
    )
}

async fn newest(node: &Running<FileEnv>) -> Deployment {
    node.handle
        .history("web", 1)
        .await
        .expect("history")
        .remove(0)
}

/// The files' values reach the container under `env:` (which wins), a
/// later file over an earlier one; no record, event or view holds one.
#[tokio::test(start_paused = true)]
async fn values_reach_the_container_and_nothing_else() {
    let files = FakeFiles::new();
    files.write(
        COMMON,
        "# shared\nDB_PASSWORD=common-s3cret\nMODE=from-a-file\n",
    );
    files.write(WEB, "\nDB_PASSWORD=web-s3cret\nAPI_TOKEN=tok-s3cret\n");
    let n = node(&files);
    let done = deploy(&n.handle, vec![web()]).await;
    assert_eq!(done[0].status, Status::Complete, "{:?}", done[0]);
    let env = container_env(&n);
    assert_eq!(env["DB_PASSWORD"], "web-s3cret", "the later file wins");
    assert_eq!(env["API_TOKEN"], "tok-s3cret");
    assert_eq!(env["MODE"], "from-the-spec", "env: wins over a file");

    let seen = everything_but_the_container(&n, "web").await;
    for secret in ["common-s3cret", "web-s3cret", "tok-s3cret", "from-a-file"] {
        assert!(!seen.contains(secret), "{secret} leaked: {seen}");
    }
    let stored = n.env.store.history("web", 1).expect("history").remove(0);
    assert!(
        stored
            .env_file_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{stored:?}"
    );
    assert_eq!(
        newest(&n).await.env_file_digest.as_deref(),
        Some(berth_core::REDACTED),
        "the digest is not shown either"
    );
    // Read once at the apply and once right before the create.
    assert_eq!(
        files.env_file_reads().len(),
        4,
        "{:?}",
        files.env_file_reads()
    );
    n.stop().await;
}

/// The same content is the same deployment; new content is a new
/// container with the new values (the digest is in the spec hash).
#[tokio::test(start_paused = true)]
async fn a_content_change_is_a_new_container_at_the_next_apply() {
    let files = FakeFiles::new();
    files.write(COMMON, "A=1\n");
    files.write(WEB, "# only a comment changes below\nB=2\n");
    let n = node(&files);
    let first = deploy(&n.handle, vec![web()]).await.remove(0);
    let id = n.env.runtime.container_by_name("t-web").expect("web").id;

    files.write(WEB, "# a comment changed, nothing else\n\nB=2\n");
    let again = apply(&n.handle, vec![web()]).await;
    assert_eq!(again.results[0].change, Change::Unchanged);

    files.write(WEB, "B=3\n");
    let changed = deploy(&n.handle, vec![web()]).await.remove(0);
    assert_eq!(changed.status, Status::Complete, "{changed:?}");
    assert_ne!(changed.spec_hash, first.spec_hash);
    let now = n.env.runtime.container_by_name("t-web").expect("web");
    assert_ne!(now.id, id, "a new container");
    assert_eq!(now.req.spec.env["B"], "3");
    n.stop().await;
}

/// A missing file or a bad line fails that service's deployment before
/// anything is touched, naming the service, env_file, the file and line.
#[tokio::test(start_paused = true)]
async fn an_unusable_file_fails_the_deployment_naming_file_and_line() {
    let files = FakeFiles::new();
    files.write(COMMON, "A=1\n");
    files.write(WEB, "B=2\n");
    let n = node(&files);
    deploy(&n.handle, vec![web()]).await;
    let id = n.env.runtime.container_by_name("t-web").expect("web").id;

    files.write(WEB, "B=2\n# next, a value without its key\nhunter2\n");
    let failed = deploy(&n.handle, vec![web()]).await.remove(0);
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(
        failed.status_reason,
        "web: env_file /etc/berth/web.env, line 3: no `=`: each line is KEY=VALUE (a bare \
         KEY, which docker takes from its caller's environment, has no environment to come \
         from in berthd); nothing was changed"
    );
    assert!(
        !everything_but_the_container(&n, "web")
            .await
            .contains("hunter2")
    );

    files.remove(COMMON);
    let failed = deploy(&n.handle, vec![web()]).await.remove(0);
    assert_eq!(failed.status, Status::Failed);
    assert!(
        failed
            .status_reason
            .starts_with("web: env_file /etc/berth/common.env: No such file"),
        "{}",
        failed.status_reason
    );
    assert_eq!(
        n.env.runtime.container_by_name("t-web").expect("web").id,
        id,
        "the running container is left alone"
    );
    n.stop().await;
}

/// A file changed after the apply is not used for a container made later
/// from that deployment (its hash was made from the old values): the
/// create is refused, saying so, until the spec is applied again.
#[tokio::test(start_paused = true)]
async fn a_file_changed_since_the_apply_refuses_a_later_create() {
    let files = FakeFiles::new();
    files.write(COMMON, "A=1\n");
    files.write(WEB, "B=2\n");
    let n = node(&files);
    deploy(&n.handle, vec![web()]).await;
    files.write(WEB, "B=changed-s3cret\n");
    n.env.runtime.remove_behind_back("t-web");
    let refused = |n: &Running<FileEnv>| {
        n.handle.events_since(0).events.into_iter().any(|e| {
            matches!(&e.kind, EventKind::ContainerAction { service, reason, .. }
                if service == "web"
                    && reason.contains("web: env_file /etc/berth/common.env, /etc/berth/web.env changed since this deployment was applied"))
        })
    };
    eventually("the create is refused", || refused(&n)).await;
    assert!(n.env.runtime.container_by_name("t-web").is_none());
    assert!(
        !everything_but_the_container(&n, "web")
            .await
            .contains("changed-s3cret")
    );

    // Applied again, the new content is used.
    let done = deploy(&n.handle, vec![web()]).await.remove(0);
    assert_eq!(done.status, Status::Complete, "{done:?}");
    assert_eq!(container_env(&n)["B"], "changed-s3cret");
    n.stop().await;
}

/// A relative path never reaches berthd: berthctl resolves it first.
#[tokio::test(start_paused = true)]
async fn a_relative_path_is_refused_before_anything_is_recorded() {
    let files = FakeFiles::new();
    let n = node(&files);
    let mut s = web();
    s.env_file = vec!["web.env".into()];
    let e = apply_from(&n.handle, vec![s], berth_core::record::Source::Api, false)
        .await
        .expect_err("refused");
    assert!(
        e.to_string()
            .contains("web: env_file[0] \"web.env\" must be an absolute host path"),
        "{e}"
    );
    assert!(files.env_file_reads().is_empty());
    n.stop().await;
}
