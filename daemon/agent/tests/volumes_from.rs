//! `volumes_from` in the loop, against the fake engine: the services it
//! names are dependencies (`started`), so a dependent is created after
//! their containers exist, and the engine is given those containers' ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_agent::{Seams, Verb};
use berth_core::event::EventKind;
use berth_core::record::Status;
use berth_core::runtime::{
    BoxStream, CreateRequest, ExecOutput, ImageInfo, LogChunk, LogOptions, ObservedContainer,
    Runtime, RuntimeError, RuntimeEvent, VolumeInfo,
};
use berth_core::spec::{RestartPolicy, ServiceSpec};
use berth_fakes::{FakeRuntime, MemStore};

mod common;
use common::*;

fn app() -> ServiceSpec {
    let mut app = spec("app", "demo:1");
    app.volumes_from = vec!["data:ro".into()];
    app
}

fn id_of(node: &Node, name: &str) -> String {
    node.rt()
        .container_by_name(name)
        .unwrap_or_else(|| panic!("{name} exists"))
        .id
}

/// Applied together (the dependent first), the dependent waits for the
/// other's container and is created with its id; replacing that other
/// service later leaves the dependent's container alone (the hash has the
/// service name, not the container).
#[tokio::test(start_paused = true)]
async fn a_dependent_is_created_from_the_container_in_place() {
    let node = start();
    let done = deploy(&node.handle, vec![app(), spec("data", "demo:1")]).await;
    assert!(
        done.iter().all(|d| d.status == Status::Complete),
        "{done:#?}"
    );
    let data = id_of(&node, "t-data");
    let c = node.rt().container_by_name("t-app").expect("app created");
    assert_eq!(c.req.spec.volumes_from, ["data:ro"]);
    assert_eq!(c.req.spec.volumes_from_containers, [format!("{data}:ro")]);

    let done = deploy(&node.handle, vec![spec("data", "demo:2")]).await;
    assert_eq!(done[0].status, Status::Complete, "{done:#?}");
    assert_ne!(id_of(&node, "t-data"), data, "data replaced");
    assert_eq!(id_of(&node, "t-app"), c.id, "app kept its container");
    node.stop().await;
}

/// A service that exists nowhere refuses the apply, naming the field.
#[tokio::test(start_paused = true)]
async fn a_service_that_is_nowhere_refuses_the_apply() {
    let node = start();
    let e = apply_from(
        &node.handle,
        vec![app()],
        berth_core::record::Source::Api,
        false,
    )
    .await
    .expect_err("refused");
    let said = e.to_string();
    assert!(
        said.contains("app: volumes_from[0]: data is neither in this apply nor on this node"),
        "{said}"
    );
    assert!(node.rt().container_by_name("t-app").is_none());
    node.stop().await;
}

/// When the dependent's container must be made again while the other
/// service has no container (held, and its container removed behind
/// berth's back), the create is refused, saying which service and field;
/// an update meanwhile waits for the other service to be started.
#[tokio::test(start_paused = true)]
async fn no_container_to_take_volumes_from_is_refused_naming_the_service() {
    let node = start();
    deploy(&node.handle, vec![spec("data", "demo:1"), app()]).await;
    node.handle
        .verb("data", Verb::Hold, "test")
        .await
        .expect("held");
    node.rt().remove_behind_back("t-data");
    node.rt().remove_behind_back("t-app");
    let refused = |node: &Node| {
        node.handle.events_since(0).events.into_iter().any(|e| {
            matches!(e.kind, EventKind::ContainerAction { service, action, reason, .. }
                if service == "app" && action == "failed"
                    && reason.contains("volumes_from: service data has no container on this node (t-data)"))
        })
    };
    eventually("the create is refused", || refused(&node)).await;
    assert!(node.rt().container_by_name("t-app").is_none());

    let mut update = app();
    update.image = berth_core::spec::ImageSource::Ref("demo:2".into());
    let r = apply(&node.handle, vec![update]).await;
    let id = r.results[0]
        .deployment
        .as_ref()
        .expect("a record")
        .id
        .clone();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let d = node
        .handle
        .history("app", 1)
        .await
        .expect("history")
        .remove(0);
    assert_eq!((d.id.as_str(), d.status), (id.as_str(), Status::Pending));
    assert!(
        d.status_reason.contains("waiting for data to be started"),
        "{}",
        d.status_reason
    );
    node.stop().await;
}

/// The fake engine, except that a create of a container whose name starts
/// with `held` waits until the test lets it go (the job making it, and the
/// service it is for, stay busy meanwhile), and that the next rename to
/// `fail_rename_to` fails as if the name were taken.
#[derive(Clone)]
struct Gated {
    inner: FakeRuntime,
    held: Arc<std::sync::Mutex<Option<String>>>,
    /// A create is waiting at the gate.
    waiting: Arc<AtomicBool>,
    open: Arc<tokio::sync::Semaphore>,
    fail_rename_to: Arc<std::sync::Mutex<Option<String>>>,
    /// The rename to `fail_rename_to` was failed.
    rename_failed: Arc<AtomicBool>,
}

impl Gated {
    fn new(inner: FakeRuntime) -> Self {
        Gated {
            inner,
            held: Arc::default(),
            waiting: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
            fail_rename_to: Arc::default(),
            rename_failed: Arc::default(),
        }
    }
    fn hold(&self, prefix: &str) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(prefix.to_string());
    }
    fn release(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.open.add_permits(1);
    }
}

impl Runtime for Gated {
    async fn list(&self) -> Result<Vec<ObservedContainer>, RuntimeError> {
        self.inner.list().await
    }
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.inner.inspect_image(reference).await
    }
    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|p| req.name.starts_with(p.as_str()));
        if held {
            self.waiting.store(true, Ordering::SeqCst);
            if let Ok(permit) = self.open.acquire().await {
                permit.forget();
            }
            self.waiting.store(false, Ordering::SeqCst);
        }
        self.inner.create(req).await
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.start(id).await
    }
    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.stop(id).await
    }
    async fn restart(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.restart(id).await
    }
    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.inner.kill(id, signal).await
    }
    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        options: &berth_core::runtime::ExecOptions,
    ) -> Result<ExecOutput, RuntimeError> {
        self.inner.exec(id, argv, options).await
    }
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.remove(id).await
    }
    async fn rename(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        let fail = {
            let mut to = self
                .fail_rename_to
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let fail = to.as_deref() == Some(new_name);
            if fail {
                *to = None;
            }
            fail
        };
        if fail {
            self.rename_failed.store(true, Ordering::SeqCst);
            return Err(RuntimeError::NameConflict {
                name: new_name.to_string(),
            });
        }
        self.inner.rename(id, new_name).await
    }
    async fn set_restart_policy(
        &self,
        id: &str,
        policy: RestartPolicy,
    ) -> Result<(), RuntimeError> {
        self.inner.set_restart_policy(id, policy).await
    }
    async fn build(
        &self,
        context: &str,
        dockerfile: Option<&str>,
        tag: &str,
    ) -> Result<String, RuntimeError> {
        self.inner.build(context, dockerfile, tag).await
    }
    async fn pull_with_progress(
        &self,
        reference: &str,
        progress: &(dyn Fn(berth_core::runtime::PullProgress) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        self.inner.pull_with_progress(reference, progress).await
    }
    async fn load(&self, path: &str) -> Result<Vec<String>, RuntimeError> {
        self.inner.load(path).await
    }
    async fn list_images(&self, repository_prefix: &str) -> Result<Vec<ImageInfo>, RuntimeError> {
        self.inner.list_images(repository_prefix).await
    }
    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        self.inner.remove_image(id).await
    }
    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>, RuntimeError> {
        self.inner.inspect_volume(name).await
    }
    async fn list_volumes(&self) -> Result<Vec<VolumeInfo>, RuntimeError> {
        self.inner.list_volumes().await
    }
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner.remove_volume(name).await
    }
    fn logs(&self, id: &str, opts: LogOptions) -> BoxStream<Result<LogChunk, RuntimeError>> {
        self.inner.logs(id, opts)
    }
    fn events(&self) -> BoxStream<Result<RuntimeEvent, RuntimeError>> {
        self.inner.events()
    }
}

/// A node on the gated engine, with `data` and `web` (volumes from
/// `data`) deployed.
async fn start_gated() -> (Running<Clocked<Seams<Gated, MemStore>>>, Gated) {
    let fake = FakeRuntime::new("n1");
    fake.add_image("demo:1", "sha256:one");
    fake.add_image("demo:2", "sha256:two");
    let rt = Gated::new(fake);
    let node = run_agent(
        Clocked::new(Seams {
            runtime: rt.clone(),
            store: MemStore::new(),
        }),
        cfg(),
    );
    let done = deploy(&node.handle, vec![spec("data", "demo:1"), web()]).await;
    assert!(
        done.iter().all(|d| d.status == Status::Complete),
        "{done:#?}"
    );
    (node, rt)
}

/// The dependent ends up made from `data`'s container in place, and was
/// never refused nor failed.
async fn web_made_from_data(node: &Running<Clocked<Seams<Gated, MemStore>>>, fake: &FakeRuntime) {
    let data = fake.container_by_name("t-data").expect("data in place").id;
    eventually("web is made again", || {
        fake.container_by_name("t-web").is_some()
    })
    .await;
    let web_c = fake.container_by_name("t-web").expect("web");
    assert_eq!(
        web_c.req.spec.volumes_from_containers,
        [format!("{data}:ro")]
    );
    let web_now = node
        .handle
        .history("web", 1)
        .await
        .expect("history")
        .remove(0);
    assert_ne!(web_now.status, Status::Failed, "{web_now:#?}");
    let refused = node.handle.events_since(0).events.into_iter().find(|e| {
        matches!(&e.kind, EventKind::ContainerAction { service, action, .. }
            if service == "web" && action == "failed")
    });
    assert!(refused.is_none(), "web's create was refused: {refused:#?}");
}

fn web() -> ServiceSpec {
    let mut web = spec("web", "demo:1");
    web.volumes_from = vec!["data:ro".into()];
    web
}

/// A dependent whose container must be made again while the service it
/// takes volumes from is being replaced (its create-then-swap job held
/// before the new container exists, the old one still in place) is not
/// made from the old container, nor refused: it waits for the swap and is
/// made from the new container.
#[tokio::test(start_paused = true)]
async fn a_dependent_waits_for_a_swap_of_the_service_it_takes_volumes_from() {
    let (node, rt) = start_gated().await;
    let fake = rt.inner.clone();
    let old_data = fake.container_by_name("t-data").expect("data created").id;

    rt.hold("t-data.next");
    let r = apply(&node.handle, vec![spec("data", "demo:2")]).await;
    let data_id = r.results[0]
        .deployment
        .as_ref()
        .expect("a record")
        .id
        .clone();
    eventually("data's swap is held", || rt.waiting.load(Ordering::SeqCst)).await;
    // web's container goes while data is mid-swap: it must be made again.
    fake.remove_behind_back("t-web");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        fake.container_by_name("t-web").is_none(),
        "web was made while data was being replaced"
    );

    rt.release();
    let d = wait_status(&node.handle, &data_id).await;
    assert_eq!(d.status, Status::Complete, "{d:#?}");
    let new_data = fake.container_by_name("t-data").expect("data replaced").id;
    assert_ne!(new_data, old_data);
    web_made_from_data(&node, &fake).await;
    node.stop().await;
}

/// A dependent whose container must be made again while the service it
/// takes volumes from has no container in place because its deployment is
/// still under way (its swap failed before the new container took the
/// name, and is retried after a backoff) is not refused: it waits, and is
/// made from the container that deployment puts in place.
#[tokio::test(start_paused = true)]
async fn a_dependent_waits_for_a_deployment_that_has_not_put_its_container_in_place() {
    let (node, rt) = start_gated().await;
    let fake = rt.inner.clone();

    *rt.fail_rename_to.lock().expect("lock") = Some("t-data".into());
    let r = apply(&node.handle, vec![spec("data", "demo:2")]).await;
    let data_id = r.results[0]
        .deployment
        .as_ref()
        .expect("a record")
        .id
        .clone();
    eventually("data's swap failed midway", || {
        rt.rename_failed.load(Ordering::SeqCst)
    })
    .await;
    assert!(fake.container_by_name("t-data").is_none(), "no t-data");
    fake.remove_behind_back("t-web");

    let d = wait_status(&node.handle, &data_id).await;
    assert_eq!(d.status, Status::Complete, "{d:#?}");
    web_made_from_data(&node, &fake).await;
    node.stop().await;
}
