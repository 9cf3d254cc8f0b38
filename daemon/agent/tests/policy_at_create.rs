//! Issue 29 item 3: a host path accepted under `allowed_host_paths` is
//! asked again right before each create, so a symlink planted after the
//! spec was accepted (by a container that mounts the allowed directory)
//! fails the deployment instead of mounting what it leads to. The loop
//! resolves through its file seam: the symlinks are planted in `FakeFiles`
//! (the real resolver's own tests are in berth-sources).

use std::path::Path;
use std::sync::Arc;

use berth_agent::{HostSeams, NoHost, Verb};
use berth_core::policy::NodePolicy;
use berth_core::record::Status;
use berth_core::runtime::ContainerState;
use berth_core::spec::{ServiceSpec, Volume};
use berth_core::watch::NoWatcher;
use berth_fakes::runtime::Call;
use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

mod common;
use common::{Clocked, Running, apply, cfg, deploy, run_agent, spec, wait_status};

type Node = Running<Clocked<HostSeams<FakeRuntime, MemStore, NoHost, NoWatcher, FakeFiles>>>;

fn start(allowed: &Path, files: &FakeFiles) -> Node {
    let runtime = FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    runtime.add_image("demo:2", "sha256:two");
    let mut c = cfg();
    c.node_policy = tokio::sync::watch::channel(Arc::new(NodePolicy {
        allowed_host_paths: vec![allowed.to_string_lossy().into_owned()],
        ..NodePolicy::default()
    }))
    .1;
    run_agent(
        Clocked::new(HostSeams {
            runtime,
            store: MemStore::new(),
            host: NoHost,
            watcher: NoWatcher,
            files: files.clone(),
        }),
        c,
    )
}

fn mounting(name: &str, image: &str, source: &Path) -> ServiceSpec {
    let mut s = spec(name, image);
    s.volumes = vec![Volume::parse(&format!("{}:/host", source.display())).expect("volume")];
    s
}

/// Replaces the directory `d` with a symlink to `/`.
fn plant(files: &FakeFiles, d: &Path) {
    files.symlink(d, "/");
}

#[tokio::test(start_paused = true)]
async fn a_symlink_planted_after_the_check_fails_the_create() {
    let files = FakeFiles::new();
    let allowed = Path::new("/srv/berth");
    let d = allowed.join("d");
    files.mkdir(&d);
    let n = start(allowed, &files);

    // While `d` is a directory the service deploys.
    let first = deploy(&n.handle, vec![mounting("web", "demo:1", &d)]).await;
    assert_eq!(first[0].status, Status::Complete, "{:?}", first[0]);

    // Planted since: the update is refused before any container is made,
    // and the running container stays.
    plant(&files, &d);
    let creates_before = n.env.runtime.calls().len();
    let r = apply(&n.handle, vec![mounting("web", "demo:2", &d)]).await;
    let id = r.results[0].deployment.as_ref().expect("record").id.clone();
    let update = wait_status(&n.handle, &id).await;
    assert_eq!(update.status, Status::Failed);
    for part in ["allowed_host_paths", "volumes[0]", "leads to `/`"] {
        assert!(
            update.status_reason.contains(part),
            "{part}: {}",
            update.status_reason
        );
    }
    let running = n
        .env
        .runtime
        .container_by_name("t-web")
        .expect("old container");
    assert_eq!(running.req.spec.image, "sha256:one");
    assert!(
        !n.env.runtime.calls()[creates_before..]
            .iter()
            .any(|c| matches!(c, Call::Create(_))),
        "{:?}",
        n.env.runtime.calls()
    );

    // A new service on the planted path is refused as well.
    let r = apply(&n.handle, vec![mounting("other", "demo:1", &d)]).await;
    let id = r.results[0].deployment.as_ref().expect("record").id.clone();
    let fresh = wait_status(&n.handle, &id).await;
    assert_eq!(fresh.status, Status::Failed);
    assert!(fresh.status_reason.contains("allowed_host_paths"));
    assert!(n.env.runtime.container_by_name("t-other").is_none());

    // Paths outside allowed_host_paths are the local operator's: not asked.
    let etc = deploy(
        &n.handle,
        vec![mounting("etc", "demo:1", Path::new("/etc"))],
    )
    .await;
    assert_eq!(etc[0].status, Status::Complete, "{:?}", etc[0]);
    n.stop().await;
}

/// The engine resolves a bind source again at each start: starting a
/// stopped container whose source now leads out is refused as well.
#[tokio::test(start_paused = true)]
async fn a_symlink_planted_while_stopped_fails_the_start() {
    let files = FakeFiles::new();
    let allowed = Path::new("/srv/berth");
    let d = allowed.join("d");
    files.mkdir(&d);
    let n = start(allowed, &files);
    let first = deploy(&n.handle, vec![mounting("web", "demo:1", &d)]).await;
    assert_eq!(first[0].status, Status::Complete, "{:?}", first[0]);
    let v = n
        .handle
        .verb("web", Verb::Stop, "test")
        .await
        .expect("stop");
    wait_status(&n.handle, &v.deployment.expect("stop record").id).await;

    plant(&files, &d);
    let v = n
        .handle
        .verb("web", Verb::Start, "test")
        .await
        .expect("start");
    let started = wait_status(&n.handle, &v.deployment.expect("start record").id).await;
    assert_eq!(started.status, Status::Failed, "{started:?}");
    assert!(
        started.status_reason.contains("allowed_host_paths"),
        "{}",
        started.status_reason
    );
    assert_eq!(
        n.env
            .runtime
            .container_by_name("t-web")
            .expect("kept")
            .state,
        ContainerState::Exited
    );
    n.stop().await;
}
