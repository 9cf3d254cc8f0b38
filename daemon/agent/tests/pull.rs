//! Images the engine does not have are pulled (`pull: missing`), before the
//! deployment touches any container, and the digest they resolved to is
//! recorded next to the image id.

use std::time::Duration;

use berth_agent::Verb;
use berth_core::dto::Change;
use berth_core::record::Status;
use berth_core::runtime::{ContainerState, PullCause, RuntimeError};
use berth_core::spec::PullPolicy;
use berth_fakes::runtime::Call;

mod common;
use common::*;

const DIGEST: &str = "sha256:d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1";

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_pulled_before_the_old_container_is_touched() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt()
        .add_registry_image("reg.example:5000/ns/web:2", "sha256:pulled", DIGEST);
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![spec("web", "reg.example:5000/ns/web:2")]).await;
    let d = r.results[0].deployment.clone().expect("record");
    // Pulled while the apply resolved it: the record has it already.
    assert_eq!(d.image_id.as_deref(), Some("sha256:pulled"));
    let want = format!("reg.example:5000/ns/web@{DIGEST}");
    assert_eq!(d.image_digest.as_deref(), Some(want.as_str()));
    let d = wait_status(&node.handle, &d.id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.image_digest.as_deref(), Some(want.as_str()));
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(after.id, before.id);
    assert_eq!(after.req.spec.image, "sha256:pulled", "created from the id");
    let calls = node.rt().mutating_calls();
    assert_eq!(
        calls[0],
        Call::Pull("reg.example:5000/ns/web:2".into()),
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| matches!(c, Call::Pull(_))).count(),
        1,
        "{calls:?}"
    );
    // An unchanged re-apply neither pulls nor touches anything.
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![spec("web", "reg.example:5000/ns/web:2")]).await;
    assert_eq!(r.results[0].change, Change::Unchanged);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.rt().mutating_calls(), vec![]);
    node.stop().await;
}

/// Built and loaded images, and references the engine had already without
/// a digest for their repository, record none.
#[tokio::test(start_paused = true)]
async fn an_image_the_engine_had_is_not_pulled_and_has_no_digest() {
    let node = start();
    let d = deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    assert_eq!(d[0].status, Status::Complete);
    assert_eq!(d[0].image_id.as_deref(), Some("sha256:one"));
    assert_eq!(d[0].image_digest, None);
    assert!(
        !node.rt().calls().iter().any(|c| matches!(c, Call::Pull(_))),
        "{:?}",
        node.rt().calls()
    );
    node.stop().await;
}

fn unreachable(registry: &str, reference: &str) -> RuntimeError {
    RuntimeError::Pull {
        registry: registry.into(),
        reference: reference.into(),
        cause: PullCause::Unreachable,
        message: format!("dial tcp {registry}: connect: connection refused"),
    }
}

fn pulls(node: &Node) -> Vec<String> {
    node.rt()
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Pull(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// A registry that is away holds the deployment IN_PROGRESS (nothing is
/// touched) and the pull is tried again with backoff: once the registry is
/// back, the deployment converges with no other command.
#[tokio::test(start_paused = true)]
async fn an_unreachable_registry_holds_the_deployment_until_it_is_back() {
    let node = start();
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let reference = "127.0.0.1:5999/web:2";
    for _ in 0..2 {
        node.rt()
            .fail_next("pull", unreachable("127.0.0.1:5999", reference));
    }
    let r = apply(&node.handle, vec![spec("web", reference)]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::InProgress, "{d:?}");
    for part in [
        reference,
        "from 127.0.0.1:5999",
        "unreachable",
        "connection refused",
        "trying again until pull_timeout (30m)",
        "old container left running",
    ] {
        assert!(
            d.status_reason.contains(part),
            "{part}: {}",
            d.status_reason
        );
    }
    assert_eq!(d.image_id, None);
    // The second try fails too (2 s later), and says so.
    eventually("a second try", || pulls(&node).len() == 2).await;
    eventually("the record says so", || {
        node.handle.snapshot().currents["web"]
            .status_reason
            .contains("(2 tries)")
    })
    .await;
    let still = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(still.id, before.id);
    assert_eq!(still.state, ContainerState::Running);
    // The registry is back: the third try pulls, and the update runs.
    node.rt()
        .add_registry_image(reference, "sha256:pulled", DIGEST);
    let d = wait_status(&node.handle, &d.id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.image_id.as_deref(), Some("sha256:pulled"));
    assert_eq!(pulls(&node), vec![reference; 3]);
    let after = node.rt().container_by_name("t-web").expect("web");
    assert_ne!(after.id, before.id);
    node.stop().await;
}

/// A registry that stays away fails the deployment once `pull_timeout`
/// has passed, naming the last error; the old container never moved.
#[tokio::test(start_paused = true)]
async fn a_registry_away_for_the_whole_pull_timeout_fails_the_deployment() {
    let runtime = berth_fakes::FakeRuntime::new("n1");
    runtime.add_image("demo:1", "sha256:one");
    let mut c = cfg();
    c.pull_timeout = Duration::from_secs(30);
    let node = run_agent(
        Clocked::new(berth_agent::Seams {
            runtime,
            store: berth_fakes::MemStore::new(),
        }),
        c,
    );
    deploy(&node.handle, vec![spec("web", "demo:1")]).await;
    let before = node.rt().container_by_name("t-web").expect("web");
    node.rt().clear_calls();
    let reference = "10.9.9.9:8787/web:2";
    for _ in 0..20 {
        node.rt()
            .fail_next("pull", unreachable("10.9.9.9:8787", reference));
    }
    let started = tokio::time::Instant::now();
    let r = apply(&node.handle, vec![spec("web", reference)]).await;
    let id = r.results[0].deployment.clone().expect("record").id;
    let d = node
        .handle
        .wait_deployment(&id, Duration::from_secs(120))
        .await
        .expect("exists");
    assert_eq!(d.status, Status::Failed, "{d:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(60),
        "{waited:?}"
    );
    assert!(
        d.status_reason.contains("gave up after")
            && d.status_reason.contains("over pull_timeout (30s)")
            && d.status_reason.contains("connection refused"),
        "{}",
        d.status_reason
    );
    // 0, 2, 6, 14, 30 s: tries back off.
    assert_eq!(pulls(&node).len(), 5, "{:?}", pulls(&node));
    let still = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(
        (still.id, still.state),
        (before.id, ContainerState::Running)
    );
    node.stop().await;
}

/// Docker Hub, which an offline node never reaches, is not waited for: an
/// unqualified name the engine lacks fails at once.
#[tokio::test(start_paused = true)]
async fn an_unqualified_name_with_no_registry_fails_at_once() {
    let node = start();
    node.rt()
        .fail_next("pull", unreachable("docker.io", "nosuch:1"));
    let r = apply(&node.handle, vec![spec("web", "nosuch:1")]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Failed, "{d:?}");
    assert!(
        d.status_reason.contains("docker load"),
        "{}",
        d.status_reason
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(pulls(&node).len(), 1);
    node.stop().await;
}

fn pulling(name: &str, image: &str, pull: PullPolicy) -> berth_core::spec::ServiceSpec {
    let mut s = spec(name, image);
    s.pull = pull;
    s
}

const REF: &str = "reg.example:5000/ns/web:stable";
const DIGEST_2: &str = "sha256:d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2";

/// A tag moved in the registry is followed only by an apply with
/// `pull: always`; never by one with the default, a berthd restart or a
/// spec file read again unchanged.
#[tokio::test(start_paused = true)]
async fn a_moved_tag_is_followed_only_by_an_apply_with_pull_always() {
    let node = start();
    node.rt().add_registry_image(REF, "sha256:first", DIGEST);
    let d = deploy(&node.handle, vec![spec("web", REF)]).await;
    assert_eq!(d[0].image_id.as_deref(), Some("sha256:first"));
    // The tag moves in the registry.
    node.rt().add_registry_image(REF, "sha256:second", DIGEST_2);
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![spec("web", REF)]).await;
    assert_eq!(r.results[0].change, Change::Unchanged);
    assert_eq!(pulls(&node), Vec::<String>::new(), "pull: missing");
    // A dry run changes nothing, so it pulls nothing either.
    let dry = node
        .handle
        .apply(
            berth_core::dto::ApplyRequest {
                services: vec![pulling("web", REF, PullPolicy::Always)],
                force: false,
            },
            berth_core::record::Source::Api,
            "test",
            true,
        )
        .await
        .expect("dry run");
    assert_eq!(dry.results[0].change, Change::PolicyOnly);
    assert_eq!(pulls(&node), Vec::<String>::new(), "dry run");
    let r = apply(&node.handle, vec![pulling("web", REF, PullPolicy::Always)]).await;
    assert_eq!(r.results[0].change, Change::Updated);
    assert_eq!(pulls(&node), vec![REF]);
    let d = wait_status(
        &node.handle,
        &r.results[0].deployment.clone().expect("record").id,
    )
    .await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(d.image_id.as_deref(), Some("sha256:second"));
    let want = format!("reg.example:5000/ns/web@{DIGEST_2}");
    assert_eq!(d.image_digest.as_deref(), Some(want.as_str()));
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(c.req.spec.image, "sha256:second");
    assert_eq!(
        c.req.labels.get("io.berth.image-digest"),
        Some(&want),
        "the container says what it was pulled as"
    );
    // Applied again, the same: pulled again (always), nothing moved.
    node.rt().clear_calls();
    let r = apply(&node.handle, vec![pulling("web", REF, PullPolicy::Always)]).await;
    assert_eq!(r.results[0].change, Change::Unchanged);
    assert_eq!(pulls(&node), vec![REF]);
    // The tag moves again; berthd restarts: nothing pulled, nothing moved.
    node.rt().add_registry_image(REF, "sha256:third", DIGEST);
    node.rt().clear_calls();
    let env = node.stop().await;
    let node = start_with(env);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pulls(&node), Vec::<String>::new(), "restart");
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(c.req.spec.image, "sha256:second");
    node.stop().await;
}

/// A spec file's service with `pull: always` pulls when the file brings a
/// changed spec, not when the same spec is read again.
#[tokio::test(start_paused = true)]
async fn a_spec_file_pulls_always_only_when_its_service_changed() {
    let node = start();
    node.rt().add_registry_image(REF, "sha256:first", DIGEST);
    let file = |content: &str, s: berth_core::spec::ServiceSpec| berth_agent::SpecFile {
        path: "/specs/web.yaml".into(),
        content_hash: berth_core::hash::sha256_hex(content.as_bytes()),
        services: Ok(vec![s]),
    };
    let mut v1 = pulling("web", REF, PullPolicy::Always);
    let f1 = file("v1", v1.clone());
    node.handle
        .spec_dir(vec![f1.clone()])
        .await
        .expect("spec dir");
    eventually("deployed", || {
        node.rt().container_by_name("t-web").is_some()
    })
    .await;
    assert_eq!(pulls(&node).len(), 1);
    node.rt().add_registry_image(REF, "sha256:second", DIGEST_2);
    // Read again (a rescan, berthd's start): no pull.
    node.handle.spec_dir(vec![f1]).await.expect("spec dir");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pulls(&node).len(), 1);
    // The file changed the service: pulled, the moved tag followed.
    v1.command = Some(vec!["/demo".into(), "serve".into()]);
    node.handle
        .spec_dir(vec![file("v2", v1)])
        .await
        .expect("spec dir");
    eventually("updated to the moved tag", || {
        node.rt()
            .container_by_name("t-web")
            .is_some_and(|c| c.req.spec.image == "sha256:second")
    })
    .await;
    assert_eq!(pulls(&node).len(), 2);
    node.stop().await;
}

/// `pull: never`: an image the engine lacks fails the deployment, naming
/// the policy and the ways to provide it; nothing is pulled.
#[tokio::test(start_paused = true)]
async fn pull_never_fails_when_the_engine_lacks_the_image() {
    let node = start();
    node.rt().add_registry_image(REF, "sha256:first", DIGEST);
    let r = apply(&node.handle, vec![pulling("web", REF, PullPolicy::Never)]).await;
    let d = r.results[0].deployment.clone().expect("record");
    assert_eq!(d.status, Status::Failed, "{d:?}");
    for part in [REF, "pull: never", "docker load", "pull: missing"] {
        assert!(
            d.status_reason.contains(part),
            "{part}: {}",
            d.status_reason
        );
    }
    assert_eq!(pulls(&node), Vec::<String>::new());
    // With the image there, never is as good as missing.
    let d = deploy(
        &node.handle,
        vec![pulling("web", "demo:1", PullPolicy::Never)],
    )
    .await;
    assert_eq!(d[0].status, Status::Complete, "{:?}", d[0]);
    assert_eq!(pulls(&node), Vec::<String>::new());
    node.stop().await;
}

/// A rollback to a generation whose image was pruned gets it again by the
/// digest it was pulled as, never by its tag (which names another image
/// by now).
#[tokio::test(start_paused = true)]
async fn a_rollback_to_a_pruned_image_pulls_it_by_its_digest() {
    let node = start();
    node.rt().add_registry_image(REF, "sha256:first", DIGEST);
    let by_digest = format!("reg.example:5000/ns/web@{DIGEST}");
    node.rt()
        .add_registry_image(&by_digest, "sha256:first", DIGEST);
    let d1 = deploy(&node.handle, vec![spec("web", REF)]).await;
    assert_eq!(d1[0].image_digest.as_deref(), Some(by_digest.as_str()));
    node.rt().add_registry_image(REF, "sha256:second", DIGEST_2);
    let r = apply(&node.handle, vec![pulling("web", REF, PullPolicy::Always)]).await;
    let d2 = wait_status(
        &node.handle,
        &r.results[0].deployment.clone().expect("r").id,
    )
    .await;
    assert_eq!(d2.image_id.as_deref(), Some("sha256:second"));
    // Pruned: the first image is gone from the engine.
    use berth_core::runtime::Runtime;
    node.rt()
        .remove_image("sha256:first")
        .await
        .expect("not in use any more");
    node.rt().clear_calls();
    let resp = node
        .handle
        .verb(
            "web",
            Verb::Rollback {
                generation: Some(1),
            },
            "test",
        )
        .await
        .expect("rollback");
    let id = resp.deployment.expect("record").id;
    let d = wait_status(&node.handle, &id).await;
    assert_eq!(d.status, Status::Complete, "{d:?}");
    assert_eq!(pulls(&node), vec![by_digest.clone()], "never the tag");
    let c = node.rt().container_by_name("t-web").expect("web");
    assert_eq!(c.req.spec.image, "sha256:first");
    node.stop().await;
}
