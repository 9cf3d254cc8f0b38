//! `FakeRuntime`: an in-memory engine. Containers have names, labels, states
//! and health; every call is recorded; any call can be made to fail; state
//! changes are published on the event stream like the real engine does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::runtime::{
    BoxStream, ContainerState, CreateRequest, ExecOptions, ExecOutput, Health, ImageInfo,
    LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SPEC_HASH, LogChunk,
    LogOptions, LogStream, ObservedContainer, PullCause, PullProgress, Runtime, RuntimeError,
    RuntimeEvent, VolumeInfo, image_registry, image_repository,
};
use berth_core::spec::RestartPolicy;
use tokio::sync::broadcast;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    List,
    InspectImage(String),
    Create(String),
    Start(String),
    Stop(String),
    Restart(String),
    /// Container id, signal.
    Kill(String, String),
    /// Container id, command.
    Exec(String, Vec<String>),
    Remove(String),
    Rename(String, String),
    /// Container id, restart policy.
    SetRestartPolicy(String, RestartPolicy),
    Build(String),
    Load(String),
    Pull(String),
    ListImages,
    RemoveImage(String),
    InspectVolume(String),
    ListVolumes,
    RemoveVolume(String),
    ListForeign,
}

impl Call {
    /// Calls that change the engine's state.
    pub fn is_mutating(&self) -> bool {
        !matches!(
            self,
            Call::List
                | Call::InspectImage(_)
                | Call::ListImages
                | Call::InspectVolume(_)
                | Call::ListVolumes
                | Call::ListForeign
        )
    }
    fn kind(&self) -> &'static str {
        match self {
            Call::List => "list",
            Call::InspectImage(_) => "inspect_image",
            Call::Create(_) => "create",
            Call::Start(_) => "start",
            Call::Stop(_) => "stop",
            Call::Restart(_) => "restart",
            Call::Kill(..) => "kill",
            Call::Exec(..) => "exec",
            Call::Remove(_) => "remove",
            Call::Rename(..) => "rename",
            Call::SetRestartPolicy(..) => "set_restart_policy",
            Call::Build(_) => "build",
            Call::Load(_) => "load",
            Call::Pull(_) => "pull",
            Call::ListImages => "list_images",
            Call::RemoveImage(_) => "remove_image",
            Call::InspectVolume(_) => "inspect_volume",
            Call::ListVolumes => "list_volumes",
            Call::RemoveVolume(_) => "remove_volume",
            Call::ListForeign => "list_foreign",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub req: CreateRequest,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    pub health: Option<Health>,
    pub restart_count: u64,
    /// The engine's restart policy now: the create's, until changed.
    pub restart_policy: RestartPolicy,
    /// Stopped through `stop` and not started since (the engine's
    /// "manually stopped", which `unless-stopped` honours).
    pub stopped_on_purpose: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    containers: Vec<FakeContainer>,
    /// reference (or id) → id
    images: BTreeMap<String, String>,
    /// id → `repository@digest` entries (the engine's `RepoDigests`).
    digests: BTreeMap<String, Vec<String>>,
    /// What a pull finds: reference → (id, digest).
    registry: BTreeMap<String, (String, String)>,
    calls: Vec<Call>,
    /// (call kind, error) to return on the next call of that kind.
    failures: VecDeque<(&'static str, RuntimeError)>,
    unreachable: bool,
    next_id: u64,
    /// What the next execs return (default: exit 0, no output).
    exec_results: VecDeque<ExecOutput>,
    /// The options of every exec, in order.
    exec_options: Vec<ExecOptions>,
    /// How a pull reports its progress: this many steps after the first
    /// (default 1), this long apart (default: at once).
    pull_steps: Option<(u32, std::time::Duration)>,
    /// Named volumes: name → labels. A create makes the missing ones with
    /// this node's label, as the Docker runtime does.
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    /// Containers another tool started ([`FakeRuntime::add_tool_container`]).
    foreign: Vec<berth_core::adopt::ForeignContainer>,
}

#[derive(Clone)]
pub struct FakeRuntime {
    node: String,
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl FakeRuntime {
    pub fn new(node: &str) -> Self {
        let (events, _) = broadcast::channel(1024);
        FakeRuntime {
            node: node.to_string(),
            inner: Arc::new(Mutex::new(Inner::default())),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in a test holding the lock poisons it; keep going so the
        // test reports its own failure rather than a poison error.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A container another tool (paunch, ...) started, as the engine
    /// would show it: [`Runtime::list_foreign`] lists it.
    pub fn add_tool_container(&self, c: berth_core::adopt::ForeignContainer) {
        self.lock().foreign.push(c);
    }

    /// Makes `reference` resolvable to `id`.
    pub fn add_image(&self, reference: &str, id: &str) {
        let mut g = self.lock();
        g.images.insert(reference.to_string(), id.to_string());
        g.images.insert(id.to_string(), id.to_string());
    }

    /// Makes `reference` pullable: a pull brings image `id`, whose
    /// `RepoDigests` then name `digest` (`sha256:...`) for its repository.
    pub fn add_registry_image(&self, reference: &str, id: &str, digest: &str) {
        self.lock()
            .registry
            .insert(reference.to_string(), (id.to_string(), digest.to_string()));
    }

    /// Pulls take `steps` progress steps `every` apart (a slow pull), each
    /// told to `pull_with_progress`; by default a pull tells its start and
    /// its end at once. The synthetic image has 2 layers of 1 MB each.
    pub fn set_pull_steps(&self, steps: u32, every: std::time::Duration) {
        self.lock().pull_steps = Some((steps.max(1), every));
    }

    /// The next call of `kind` (`create`, `start`, ...) fails with `err`.
    pub fn fail_next(&self, kind: &'static str, err: RuntimeError) {
        self.lock().failures.push_back((kind, err));
    }

    /// Forgets the failures [`FakeRuntime::fail_next`] queued and no call
    /// took yet.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// The next `exec` returns `out`.
    pub fn push_exec_result(&self, out: ExecOutput) {
        self.lock().exec_results.push_back(out);
    }

    /// The options every `exec` was given, in order.
    pub fn exec_options(&self) -> Vec<ExecOptions> {
        self.lock().exec_options.clone()
    }

    /// Adds a named volume berth did not make here (by hand: no labels; or
    /// another node's), or one of this node's with `labels` naming it.
    pub fn add_volume(&self, name: &str, labels: BTreeMap<String, String>) {
        self.lock().volumes.insert(name.to_string(), labels);
    }

    /// The names of the engine's named volumes, all nodes' and none.
    pub fn volume_names(&self) -> Vec<String> {
        self.lock().volumes.keys().cloned().collect()
    }

    pub fn set_unreachable(&self, down: bool) {
        self.lock().unreachable = down;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn mutating_calls(&self) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.is_mutating())
            .cloned()
            .collect()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.clone()
    }

    pub fn container_by_name(&self, name: &str) -> Option<FakeContainer> {
        self.lock()
            .containers
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    /// Simulates the workload exiting with `code` (a crash, or a task ending).
    pub fn exit(&self, name: &str, code: i64, stdout: &str, stderr: &str) {
        let event = {
            let mut g = self.lock();
            let Some(c) = g.containers.iter_mut().find(|c| c.name == name) else {
                return;
            };
            c.state = ContainerState::Exited;
            c.exit_code = Some(code);
            c.stdout.extend_from_slice(stdout.as_bytes());
            c.stderr.extend_from_slice(stderr.as_bytes());
            event(c, "die", Some(code))
        };
        let _ = self.events.send(event);
    }

    pub fn set_health(&self, name: &str, health: Health) {
        let event = {
            let mut g = self.lock();
            let Some(c) = g.containers.iter_mut().find(|c| c.name == name) else {
                return;
            };
            c.health = Some(health);
            let action = match health {
                Health::Starting => "health_status: starting",
                Health::Healthy => "health_status: healthy",
                Health::Unhealthy => "health_status: unhealthy",
            };
            event(c, action, None)
        };
        let _ = self.events.send(event);
    }

    /// Removes a container behind berth's back (like `docker rm -f`).
    pub fn remove_behind_back(&self, name: &str) {
        let event = {
            let mut g = self.lock();
            let Some(i) = g.containers.iter().position(|c| c.name == name) else {
                return;
            };
            let c = g.containers.remove(i);
            event(&c, "destroy", None)
        };
        let _ = self.events.send(event);
    }

    /// Adds a container that berth did not create (another node's, or a
    /// leftover), with the given labels.
    pub fn add_foreign(&self, name: &str, labels: BTreeMap<String, String>) {
        let mut g = self.lock();
        g.next_id += 1;
        let id = format!("foreign{}", g.next_id);
        g.containers.push(FakeContainer {
            id,
            name: name.to_string(),
            labels: labels.clone(),
            req: CreateRequest {
                name: name.to_string(),
                spec: Default::default(),
                labels,
            },
            state: ContainerState::Running,
            exit_code: None,
            health: None,
            restart_count: 0,
            restart_policy: RestartPolicy::Always,
            stopped_on_purpose: false,
            stdout: Vec::new(),
            stderr: Vec::new(),
        });
    }

    /// Simulates the engine restarting (dockerd's own restart): every
    /// stopped container whose restart policy says so is started again
    /// (`always` even when it was stopped on purpose, `unless-stopped`
    /// unless it was; `on-failure` after a non-zero exit), as dockerd does
    /// at its start.
    pub fn restart_engine(&self) {
        let events: Vec<RuntimeEvent> = {
            let mut g = self.lock();
            g.containers
                .iter_mut()
                .filter(|c| !c.state.is_up())
                .filter(|c| match c.restart_policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => c.exit_code.is_some_and(|x| x != 0),
                    RestartPolicy::Never => false,
                    RestartPolicy::UnlessStopped => !c.stopped_on_purpose,
                })
                .map(|c| {
                    c.state = ContainerState::Running;
                    c.exit_code = None;
                    event(c, "start", None)
                })
                .collect()
        };
        for e in events {
            let _ = self.events.send(e);
        }
    }

    fn begin(&self, call: Call) -> Result<MutexGuard<'_, Inner>, RuntimeError> {
        let mut g = self.lock();
        let kind = call.kind();
        g.calls.push(call);
        if g.unreachable {
            return Err(RuntimeError::Unreachable {
                endpoint: "fake".into(),
                reason: "set unreachable by the test".into(),
            });
        }
        if let Some(pos) = g.failures.iter().position(|(k, _)| *k == kind)
            && let Some((_, err)) = g.failures.remove(pos)
        {
            return Err(err);
        }
        Ok(g)
    }

    fn mine<'a>(&self, g: &'a mut Inner, id: &str) -> Result<&'a mut FakeContainer, RuntimeError> {
        let node = &self.node;
        match g.containers.iter_mut().find(|c| c.id == id || c.name == id) {
            None => Err(RuntimeError::NoSuchContainer { id: id.to_string() }),
            Some(c) if c.labels.get(LABEL_NODE) != Some(node) => Err(RuntimeError::Refused {
                op: "touch",
                target: id.to_string(),
                message: "not this node's container".into(),
            }),
            Some(c) => Ok(c),
        }
    }

    fn publish(&self, e: RuntimeEvent) {
        let _ = self.events.send(e);
    }
}

fn event(c: &FakeContainer, action: &str, exit_code: Option<i64>) -> RuntimeEvent {
    RuntimeEvent {
        container_id: c.id.clone(),
        service: c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        action: action.to_string(),
        exit_code,
    }
}

fn not_running(op: &'static str, id: &str) -> RuntimeError {
    RuntimeError::Refused {
        op,
        target: id.to_string(),
        message: format!("container {id} is not running"),
    }
}

fn observe(c: &FakeContainer) -> ObservedContainer {
    ObservedContainer {
        id: c.id.clone(),
        name: c.name.clone(),
        service: c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        spec_hash: c.labels.get(LABEL_SPEC_HASH).cloned(),
        generation: c.labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
        config_hash: c.labels.get(LABEL_CONFIG_HASH).cloned(),
        state: c.state,
        exit_code: c.exit_code,
        health: c.health,
        restart_count: c.restart_count,
        started_at: None,
        restart_policy: Some(c.restart_policy),
    }
}

impl Runtime for FakeRuntime {
    async fn list_foreign(&self) -> Result<Vec<berth_core::adopt::ForeignContainer>, RuntimeError> {
        let g = self.begin(Call::ListForeign)?;
        Ok(g.foreign.clone())
    }

    async fn list(&self) -> Result<Vec<ObservedContainer>, RuntimeError> {
        let g = self.begin(Call::List)?;
        Ok(g.containers
            .iter()
            .filter(|c| c.labels.get(LABEL_NODE) == Some(&self.node))
            .map(observe)
            .collect())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let g = self.begin(Call::InspectImage(reference.to_string()))?;
        Ok(g.images.get(reference).map(|id| ImageInfo {
            id: id.clone(),
            tags: vec![reference.to_string()],
            digests: g.digests.get(id).cloned().unwrap_or_default(),
        }))
    }

    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Create(req.name.clone()))?;
            if !g.images.contains_key(&req.spec.image) {
                return Err(RuntimeError::ImageNotFound {
                    image: req.spec.image.clone(),
                });
            }
            if g.containers.iter().any(|c| c.name == req.name) {
                return Err(RuntimeError::NameConflict {
                    name: req.name.clone(),
                });
            }
            // As the Docker runtime: `volumes_from` must have been resolved
            // to containers, and (as the engine) each must exist.
            if req.spec.volumes_from.len() != req.spec.volumes_from_containers.len() {
                return Err(RuntimeError::Refused {
                    op: "create",
                    target: req.name.clone(),
                    message: format!("volumes_from {:?} was not resolved", req.spec.volumes_from),
                });
            }
            for from in &req.spec.volumes_from_containers {
                let id = from.split(':').next().unwrap_or_default();
                if !g.containers.iter().any(|c| c.id == id) {
                    return Err(RuntimeError::NoSuchContainer { id: id.to_string() });
                }
            }
            for v in req.spec.volumes.iter().filter(|v| !v.is_host_path()) {
                g.volumes.entry(v.source.clone()).or_insert_with(|| {
                    BTreeMap::from([(LABEL_NODE.to_string(), self.node.clone())])
                });
            }
            g.next_id += 1;
            let id = format!("c{:04}", g.next_id);
            let mut labels = req.labels.clone();
            labels.insert(LABEL_NODE.to_string(), self.node.clone());
            let c = FakeContainer {
                id: id.clone(),
                name: req.name.clone(),
                labels,
                req: req.clone(),
                state: ContainerState::Created,
                exit_code: None,
                health: None,
                restart_count: 0,
                restart_policy: req.spec.restart,
                stopped_on_purpose: false,
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            let e = event(&c, "create", None);
            g.containers.push(c);
            (id, e)
        };
        self.publish(e.1);
        Ok(e.0)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Start(id.to_string()))?;
            let c = self.mine(&mut g, id)?;
            c.state = ContainerState::Running;
            c.exit_code = None;
            c.stopped_on_purpose = false;
            if c.req.spec.healthcheck.is_some() {
                c.health = Some(Health::Starting);
            }
            event(c, "start", None)
        };
        self.publish(e);
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Stop(id.to_string()))?;
            let c = self.mine(&mut g, id)?;
            if !c.state.is_up() {
                return Ok(());
            }
            c.state = ContainerState::Exited;
            c.exit_code = Some(0);
            c.stopped_on_purpose = true;
            event(c, "die", Some(0))
        };
        self.publish(e);
        Ok(())
    }

    async fn restart(&self, id: &str) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Restart(id.to_string()))?;
            let c = self.mine(&mut g, id)?;
            c.state = ContainerState::Running;
            c.stopped_on_purpose = false;
            event(c, "restart", None)
        };
        self.publish(e);
        Ok(())
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Kill(id.to_string(), signal.to_string()))?;
            let c = self.mine(&mut g, id)?;
            if c.state != ContainerState::Running {
                return Err(not_running("signal", id));
            }
            event(c, "kill", None)
        };
        self.publish(e);
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        options: &ExecOptions,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut g = self.begin(Call::Exec(id.to_string(), argv.to_vec()))?;
        g.exec_options.push(options.clone());
        let c = self.mine(&mut g, id)?;
        if c.state != ContainerState::Running {
            return Err(not_running("exec in", id));
        }
        Ok(g.exec_results.pop_front().unwrap_or_default())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::Remove(id.to_string()))?;
            let c = match self.mine(&mut g, id) {
                Ok(c) => c.id.clone(),
                Err(RuntimeError::NoSuchContainer { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            let i = g.containers.iter().position(|x| x.id == c);
            match i {
                Some(i) => {
                    let c = g.containers.remove(i);
                    event(&c, "destroy", None)
                }
                None => return Ok(()),
            }
        };
        self.publish(e);
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        let mut g = self.begin(Call::Rename(id.to_string(), new_name.to_string()))?;
        if g.containers.iter().any(|c| c.name == new_name) {
            return Err(RuntimeError::NameConflict {
                name: new_name.to_string(),
            });
        }
        let c = self.mine(&mut g, id)?;
        c.name = new_name.to_string();
        Ok(())
    }

    async fn set_restart_policy(
        &self,
        id: &str,
        policy: RestartPolicy,
    ) -> Result<(), RuntimeError> {
        let e = {
            let mut g = self.begin(Call::SetRestartPolicy(id.to_string(), policy))?;
            let c = self.mine(&mut g, id)?;
            c.restart_policy = policy;
            event(c, "update", None)
        };
        self.publish(e);
        Ok(())
    }

    async fn build(
        &self,
        context: &str,
        _dockerfile: Option<&str>,
        tag: &str,
    ) -> Result<String, RuntimeError> {
        let mut g = self.begin(Call::Build(context.to_string()))?;
        g.next_id += 1;
        let id = format!("sha256:built{}", g.next_id);
        g.images.insert(tag.to_string(), id.clone());
        g.images.insert(id.clone(), id.clone());
        Ok(id)
    }

    async fn pull_with_progress(
        &self,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        let (steps, every) = {
            let g = self.begin(Call::Pull(reference.to_string()))?;
            if !g.registry.contains_key(reference) {
                return Err(RuntimeError::Pull {
                    registry: image_registry(reference).to_string(),
                    reference: reference.to_string(),
                    cause: PullCause::NotFound,
                    message: format!("manifest for {reference} not found: manifest unknown"),
                });
            }
            g.pull_steps.unwrap_or((1, std::time::Duration::ZERO))
        };
        const LAYERS: u32 = 2;
        const BYTES: u64 = 2_000_000;
        for step in 0..=steps {
            if step > 0 && !every.is_zero() {
                tokio::time::sleep(every).await;
            }
            progress(PullProgress {
                reference: reference.to_string(),
                layers_done: LAYERS * step / steps,
                layers_total: LAYERS,
                bytes_done: BYTES * u64::from(step) / u64::from(steps),
                bytes_total: BYTES,
            });
        }
        let mut g = self.lock();
        let Some((id, digest)) = g.registry.get(reference).cloned() else {
            return Err(RuntimeError::Pull {
                registry: image_registry(reference).to_string(),
                reference: reference.to_string(),
                cause: PullCause::NotFound,
                message: format!("{reference} left the registry during the pull"),
            });
        };
        g.images.insert(reference.to_string(), id.clone());
        g.images.insert(id.clone(), id.clone());
        let entry = format!("{}@{digest}", image_repository(reference));
        let digests = g.digests.entry(id).or_default();
        if !digests.contains(&entry) {
            digests.push(entry);
        }
        Ok(())
    }

    async fn load(&self, path: &str) -> Result<Vec<String>, RuntimeError> {
        let mut g = self.begin(Call::Load(path.to_string()))?;
        let reference = format!("loaded/{}:latest", path.rsplit('/').next().unwrap_or(path));
        g.next_id += 1;
        let id = format!("sha256:loaded{}", g.next_id);
        g.images.insert(reference.clone(), id.clone());
        g.images.insert(id.clone(), id);
        Ok(vec![reference])
    }

    async fn list_images(&self, repository_prefix: &str) -> Result<Vec<ImageInfo>, RuntimeError> {
        let g = self.begin(Call::ListImages)?;
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (reference, id) in &g.images {
            if reference.starts_with(repository_prefix) {
                by_id.entry(id.clone()).or_default().push(reference.clone());
            }
        }
        Ok(by_id
            .into_iter()
            .map(|(id, tags)| ImageInfo {
                digests: g.digests.get(&id).cloned().unwrap_or_default(),
                id,
                tags,
            })
            .collect())
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        let mut g = self.begin(Call::RemoveImage(id.to_string()))?;
        // A tag: untag it; the image goes when no tag is left (like the engine).
        if !id.starts_with("sha256:") {
            let target = g.images.get(id).cloned();
            g.images.remove(id);
            let Some(target) = target else { return Ok(()) };
            let still_tagged = g.images.iter().any(|(r, v)| *v == target && *r != target);
            if still_tagged || g.containers.iter().any(|c| c.req.spec.image == target) {
                return Ok(());
            }
            g.images.remove(&target);
            return Ok(());
        }
        if g.containers.iter().any(|c| c.req.spec.image == id) {
            return Err(RuntimeError::Refused {
                op: "remove image",
                target: id.to_string(),
                message: "image is in use".into(),
            });
        }
        g.images.retain(|_, v| v != id);
        Ok(())
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>, RuntimeError> {
        let g = self.begin(Call::InspectVolume(name.to_string()))?;
        Ok(g.volumes.get(name).map(|labels| VolumeInfo {
            name: name.to_string(),
            node: labels.get(LABEL_NODE).cloned(),
        }))
    }

    async fn list_volumes(&self) -> Result<Vec<VolumeInfo>, RuntimeError> {
        let g = self.begin(Call::ListVolumes)?;
        Ok(g.volumes
            .iter()
            .filter(|(_, labels)| labels.get(LABEL_NODE) == Some(&self.node))
            .map(|(name, _)| VolumeInfo {
                name: name.clone(),
                node: Some(self.node.clone()),
            })
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut g = self.begin(Call::RemoveVolume(name.to_string()))?;
        let Some(labels) = g.volumes.get(name) else {
            return Ok(());
        };
        let refused = |message: String| RuntimeError::Refused {
            op: "remove volume",
            target: name.to_string(),
            message,
        };
        match labels.get(LABEL_NODE) {
            Some(node) if *node == self.node => {}
            Some(other) => return Err(refused(format!("it belongs to node `{other}`"))),
            None => return Err(refused(format!("it has no {LABEL_NODE} label"))),
        }
        // Like the engine: a volume any container mounts stays.
        if let Some(c) = g.containers.iter().find(|c| {
            c.req
                .spec
                .volumes
                .iter()
                .any(|v| !v.is_host_path() && v.source == name)
        }) {
            return Err(refused(format!("volume is in use by container {}", c.id)));
        }
        g.volumes.remove(name);
        Ok(())
    }

    fn logs(&self, id: &str, _opts: LogOptions) -> BoxStream<Result<LogChunk, RuntimeError>> {
        let chunks: Vec<Result<LogChunk, RuntimeError>> = {
            let g = self.lock();
            match g.containers.iter().find(|c| c.id == id || c.name == id) {
                None => vec![Err(RuntimeError::NoSuchContainer { id: id.to_string() })],
                Some(c) => vec![
                    Ok(LogChunk {
                        stream: LogStream::Stdout,
                        bytes: c.stdout.clone(),
                    }),
                    Ok(LogChunk {
                        stream: LogStream::Stderr,
                        bytes: c.stderr.clone(),
                    }),
                ],
            }
        };
        Box::pin(futures_util::stream::iter(chunks))
    }

    fn events(&self) -> BoxStream<Result<RuntimeEvent, RuntimeError>> {
        let rx = self.events.subscribe();
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(e) => Some((Ok(e), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((
                    Err(RuntimeError::Unreachable {
                        endpoint: "fake".into(),
                        reason: "event stream lagged".into(),
                    }),
                    rx,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use berth_core::runtime::{CreateSpec, Runtime};

    use super::*;

    /// What dockerd's own restart does to a stopped container, by policy
    /// and by how it came to stop.
    #[tokio::test]
    async fn an_engine_restart_honours_each_restart_policy() {
        let rt = FakeRuntime::new("n");
        rt.add_image("sha256:one", "sha256:one");
        let mut ids = Vec::new();
        for (name, restart) in [
            ("always", RestartPolicy::Always),
            ("unless", RestartPolicy::UnlessStopped),
            ("exited", RestartPolicy::UnlessStopped),
            ("never", RestartPolicy::Never),
        ] {
            let req = CreateRequest {
                name: name.to_string(),
                spec: CreateSpec {
                    image: "sha256:one".into(),
                    restart,
                    ..Default::default()
                },
                labels: BTreeMap::new(),
            };
            let id = rt.create(&req).await.expect("create");
            rt.start(&id).await.expect("start");
            ids.push(id);
        }
        for id in &ids[..2] {
            rt.stop(id).await.expect("stop");
        }
        rt.exit("exited", 1, "", "");
        rt.stop(&ids[3]).await.expect("stop");
        rt.restart_engine();
        let running = |name: &str| {
            rt.container_by_name(name).expect("there").state == ContainerState::Running
        };
        assert!(running("always"), "always: even when stopped on purpose");
        assert!(
            !running("unless"),
            "unless-stopped: not when stopped on purpose"
        );
        assert!(running("exited"), "unless-stopped: after exiting by itself");
        assert!(!running("never"));
    }
}
