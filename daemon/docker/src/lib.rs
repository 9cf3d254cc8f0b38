//! `DockerRuntime`: berth's [`Runtime`] over the Docker Engine API (bollard).
//!
//! - The client is built lazily and the API version negotiated on first use
//!   (the engine may be older than bollard's default, or not up yet when
//!   berthd starts); until that succeeds every call fails fast with
//!   [`RuntimeError::Unreachable`].
//! - Only containers carrying `io.berth.node=<node id>` are listed or watched,
//!   and every mutating call checks its target first and refuses one without
//!   that label: a name by an inspect every time, a full id by an inspect
//!   unless berth created or listed that id already (`owned`). The mutation
//!   then addresses the container by its full id, so a name re-pointed in
//!   between cannot redirect it.

pub mod auth;
mod cache;
mod config;
mod context;
mod error;
mod foreign;
mod owned;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_core::pull_progress::PullTally;
use berth_core::runtime::{
    BoxStream, ContainerState, CreateRequest, ExecOptions, ExecOutput, Health, ImageInfo,
    LABEL_CONFIG_HASH, LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SPEC_HASH, LogChunk,
    LogOptions, LogStream, ObservedContainer, PullCause, PullProgress, RuntimeError, RuntimeEvent,
    VolumeInfo, image_registry, pull_parts,
};
use berth_core::spec::RestartPolicy;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerInspectResponse, ContainerUpdateBody, EventMessage, ExecConfig, HealthStatusEnum,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    EventsOptionsBuilder, ImportImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder,
    RenameContainerOptionsBuilder, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use bollard::{API_DEFAULT_VERSION, Docker, body_try_stream};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::io::AsyncReadExt;

pub use berth_core::runtime::Runtime;
pub use config::container_config;

use crate::error::{Failure, chain};

/// Answering `/version` (the first call on a fresh client).
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only calls: list, inspect.
const QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Mutating calls that do not wait on the workload: create, start, remove, rename.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// On top of a container's own stop timeout, for stop and restart.
const STOP_MARGIN: Duration = Duration::from_secs(30);
/// The engine's default stop timeout when a container sets none.
const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;
/// Until the response headers of a build or a load (the body may be uploaded
/// and unpacked first).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The default [`ImagesOptions::pull_timeout`].
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The default [`ImagesOptions::max_concurrent_pulls`].
pub const DEFAULT_MAX_CONCURRENT_PULLS: usize = 3;
/// A pull whose engine sends no progress line for this long has stalled
/// (a registry that stopped sending mid-blob): it fails.
const PULL_IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Until the response headers of a log or event stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Containers inspected at once by `list`.
const LIST_CONCURRENCY: usize = 8;
/// Lines of build output kept for an error message.
const BUILD_TAIL_LINES: usize = 20;
/// Chunk size when streaming an image tarball to the engine.
const LOAD_CHUNK: usize = 256 * 1024;

/// A file's content as a stream for a request body, `LOAD_CHUNK` at a time.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = bytes::BytesMut::with_capacity(LOAD_CHUNK);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    })
}
/// A reload command run in a container (`on_change: {exec: ...}`) gets this long.
const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// Appends to an exec's captured output, up to the record's cap.
fn append_capped(buf: &mut Vec<u8>, bytes: &[u8]) {
    let room = berth_core::record::OUTPUT_CAP.saturating_sub(buf.len());
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// The Docker Engine, as berth's [`Runtime`].
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
    pulls: Arc<Pulls>,
}

/// How the runtime pulls (berthd's `[images]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesOptions {
    /// The docker/podman auth file to take registry credentials from,
    /// read again at each pull; `None`: pulls send no credentials.
    pub auth_file: Option<PathBuf>,
    /// Pulls running at once; more wait for a slot (at least 1).
    pub max_concurrent_pulls: usize,
    /// A whole pull, from its request to the end of its progress stream.
    /// bollard's per-request timeout covers only the response headers,
    /// which the engine sends before it has pulled anything: `pull` bounds
    /// the stream itself with this and [`PULL_IDLE_TIMEOUT`].
    pub pull_timeout: Duration,
}

impl Default for ImagesOptions {
    fn default() -> Self {
        ImagesOptions {
            auth_file: None,
            max_concurrent_pulls: DEFAULT_MAX_CONCURRENT_PULLS,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
        }
    }
}

/// The pull settings, shared by the runtime's clones.
#[derive(Debug)]
struct Pulls {
    /// `[images] auth_file`; SIGHUP may replace it.
    auth_file: Mutex<Option<PathBuf>>,
    /// One permit per pull running.
    slots: tokio::sync::Semaphore,
    timeout: Duration,
}

impl Pulls {
    fn new(o: ImagesOptions) -> Pulls {
        Pulls {
            auth_file: Mutex::new(o.auth_file),
            slots: tokio::sync::Semaphore::new(o.max_concurrent_pulls.max(1)),
            timeout: o.pull_timeout,
        }
    }

    fn auth_file(&self) -> Option<PathBuf> {
        self.auth_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a pull sent the registry, for a refusal's message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SentAuth {
    /// No `[images] auth_file` is set.
    NoFile,
    /// The file has no credentials for the registry.
    NoEntry(PathBuf),
    /// The file's credentials for the registry were sent.
    Sent(PathBuf),
}

impl SentAuth {
    /// Appended to the engine's words when the registry refused the pull.
    /// Names the file and the registry, never a credential.
    fn refused(&self, registry: &str) -> String {
        match self {
            SentAuth::NoFile => {
                "; berth sent no credentials: berthd's config sets no [images] auth_file"
                    .to_string()
            }
            SentAuth::NoEntry(path) => format!(
                "; berth sent no credentials: the [images] auth_file {} has no entry for \
                 {registry}",
                path.display()
            ),
            SentAuth::Sent(path) => format!(
                "; berth sent the credentials for {registry} from the [images] auth_file {}, \
                 and the registry refused them",
                path.display()
            ),
        }
    }
}

#[derive(Debug)]
struct Inner {
    /// As given, for messages.
    endpoint: String,
    target: Target,
    node_id: String,
    /// Set once the version is negotiated.
    client: Mutex<Option<Docker>>,
    /// Inspect results kept while an events stream can invalidate them.
    cache: Arc<Mutex<cache::InspectCache>>,
    /// Full ids known to carry this node's label (no inspect before acting).
    owned: Mutex<owned::OwnedIds>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Unix(String),
    Http(String),
}

fn parse_endpoint(endpoint: &str) -> Option<Target> {
    let e = endpoint.trim();
    if let Some(path) = e.strip_prefix("unix://") {
        return (!path.is_empty()).then(|| Target::Unix(path.to_string()));
    }
    if e.starts_with('/') {
        return Some(Target::Unix(e.to_string()));
    }
    for scheme in ["tcp://", "http://"] {
        if let Some(addr) = e.strip_prefix(scheme) {
            let addr = addr.trim_end_matches('/');
            return (!addr.is_empty()).then(|| Target::Http(format!("http://{addr}")));
        }
    }
    None
}

impl DockerRuntime {
    /// A runtime for the engine at `endpoint` (`unix:///path`, a bare socket
    /// path, `tcp://host:port` or `http://host:port`) acting for `node_id`.
    ///
    /// Does no I/O: the engine is first contacted (and the API version
    /// negotiated) by the first call, so berthd can start before the engine.
    pub fn connect(endpoint: &str, node_id: &str) -> Result<Self, RuntimeError> {
        let target = parse_endpoint(endpoint).ok_or_else(|| RuntimeError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: "not an engine endpoint: expected unix:///path/to/docker.sock, \
                     /path/to/docker.sock, tcp://host:port or http://host:port"
                .to_string(),
        })?;
        if node_id.is_empty() {
            return Err(RuntimeError::Refused {
                op: "connect to",
                target: endpoint.to_string(),
                message: "the node id is empty; berth needs one to tell its containers apart"
                    .to_string(),
            });
        }
        Ok(DockerRuntime {
            inner: Arc::new(Inner {
                endpoint: endpoint.to_string(),
                target,
                node_id: node_id.to_string(),
                client: Mutex::new(None),
                cache: Arc::new(Mutex::new(cache::InspectCache::default())),
                owned: Mutex::new(owned::OwnedIds::default()),
            }),
            pulls: Arc::new(Pulls::new(ImagesOptions::default())),
        })
    }

    /// This runtime pulling as `o` says (`[images]`): with the auth file's
    /// credentials, at most `max_concurrent_pulls` at once, each bounded by
    /// `pull_timeout`. Set it before cloning the runtime: clones made
    /// before keep the old settings.
    pub fn with_images(mut self, o: ImagesOptions) -> Self {
        self.pulls = Arc::new(Pulls::new(o));
        self
    }

    /// Replaces the auth file (SIGHUP) for every clone; the next pull reads it.
    pub fn set_auth_file(&self, path: Option<PathBuf>) {
        *self
            .pulls
            .auth_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = path;
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Contacts the engine (if not done yet) and returns the API version in
    /// use, e.g. `1.41`.
    pub async fn api_version(&self) -> Result<String, RuntimeError> {
        let docker = self.inner.client().await?;
        let v = docker.client_version();
        Ok(format!("{}.{}", v.major_version, v.minor_version))
    }
}

impl Inner {
    fn unreachable(&self, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }

    /// The default mapping: unreachable stays unreachable, anything else is
    /// the engine refusing `op` on `target`.
    fn fail(&self, op: &'static str, target: &str, f: Failure) -> RuntimeError {
        match f {
            Failure::Unreachable(reason) => self.unreachable(reason),
            other => RuntimeError::Refused {
                op,
                target: target.to_string(),
                message: other.message().to_string(),
            },
        }
    }

    fn new_client(&self) -> Result<Docker, bollard::errors::Error> {
        let secs = CALL_TIMEOUT.as_secs();
        match &self.target {
            Target::Unix(path) => Docker::connect_with_unix(path, secs, API_DEFAULT_VERSION),
            Target::Http(addr) => Docker::connect_with_http(addr, secs, API_DEFAULT_VERSION),
        }
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, cache::InspectCache> {
        cache::lock(&self.cache)
    }

    fn owned_lock(&self) -> std::sync::MutexGuard<'_, owned::OwnedIds> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The negotiated client, contacting the engine first if need be.
    async fn client(&self) -> Result<Docker, RuntimeError> {
        if let Some(docker) = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Ok(docker.clone());
        }
        let fresh = self
            .new_client()
            .map_err(|e| self.unreachable(Failure::from(e).message().to_string()))?;
        // The negotiated version lives behind an Arc shared by clones, so the
        // short-timeout clone negotiates for `fresh` too.
        let probe = fresh.clone().with_timeout(NEGOTIATE_TIMEOUT);
        match tokio::time::timeout(NEGOTIATE_TIMEOUT, probe.negotiate_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let reason = match Failure::from(e) {
                    Failure::Unreachable(r) => r,
                    other => format!("cannot negotiate the API version: {}", other.message()),
                };
                return Err(self.unreachable(reason));
            }
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no answer to /version within {}s",
                    NEGOTIATE_TIMEOUT.as_secs()
                )));
            }
        }
        let v = fresh.client_version();
        tracing::debug!(endpoint = %self.endpoint, api = %format!("{}.{}", v.major_version, v.minor_version), "engine API version negotiated");
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
        Ok(fresh)
    }

    fn node_filter(&self) -> String {
        format!("{LABEL_NODE}={}", self.node_id)
    }

    /// Every container (stopped ones too) carrying `label` (`KEY` or
    /// `KEY=VALUE`), as the engine lists them, and the client it asked.
    pub(crate) async fn list_labelled(
        &self,
        label: String,
    ) -> Result<(Docker, Vec<bollard::models::ContainerSummary>), RuntimeError> {
        let docker = self.client().await?.with_timeout(QUERY_TIMEOUT);
        let filters = HashMap::from([("label", vec![label])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.fail("list", "containers", e.into()))?;
        Ok((docker, summaries))
    }

    /// Inspects `id` and refuses unless it carries this node's label. A full
    /// id already known to be ours (see [`owned`]) needs no inspect.
    async fn ensure_ours(
        &self,
        docker: &Docker,
        op: &'static str,
        id: &str,
    ) -> Result<OwnedContainer, RuntimeError> {
        if !valid_container_ref(id) {
            return Err(RuntimeError::Refused {
                op,
                target: id.to_string(),
                message: "not a container name or id".to_string(),
            });
        }
        if let Some(stop_timeout) = self.owned_lock().get(id) {
            return Ok(OwnedContainer {
                id: id.to_string(),
                stop_timeout,
            });
        }
        let c = docker
            .clone()
            .with_timeout(QUERY_TIMEOUT)
            .inspect_container(id, None)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.status() == Some(404) => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => self.fail(op, id, f),
            })?;
        let c = check_owner(c, &self.node_id, op, id)?;
        self.owned_lock().insert(&c.id, c.stop_timeout);
        Ok(c)
    }
}

/// What a mutating call needs of the container it checked.
struct OwnedContainer {
    id: String,
    stop_timeout: Option<i64>,
}

fn check_owner(
    c: ContainerInspectResponse,
    node_id: &str,
    op: &'static str,
    asked: &str,
) -> Result<OwnedContainer, RuntimeError> {
    let name = c
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let config = c.config.unwrap_or_default();
    let owner = config
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_NODE))
        .map(String::as_str);
    let full_id = c.id.unwrap_or_default();
    if owner != Some(node_id) || full_id.is_empty() {
        let whose = match owner {
            Some(other) => format!("it belongs to berth node `{other}`"),
            None => format!("it does not carry the {LABEL_NODE} label"),
        };
        return Err(RuntimeError::Refused {
            op,
            target: asked.to_string(),
            message: format!(
                "container `{name}` ({}) is not this node's ({whose}); \
                 berth never touches containers it did not create",
                short_id(&full_id)
            ),
        });
    }
    Ok(OwnedContainer {
        id: full_id,
        stop_timeout: config.stop_timeout,
    })
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// A container name or id as the engine accepts them. Anything else (a `/`,
/// `..`, `?`) could make the request URL address another endpoint.
fn valid_container_ref(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 255
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A volume name goes into the engine's URL path (`/volumes/{name}`): only
/// the engine's own name rule (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) is let through,
/// so a name like `../containers/ID` cannot reach another endpoint.
fn check_volume_name(op: &'static str, name: &str) -> Result<(), RuntimeError> {
    if valid_container_ref(name) {
        return Ok(());
    }
    Err(RuntimeError::Refused {
        op,
        target: name.to_string(),
        message: "not a valid volume name (letters, digits, `_`, `.`, `-`, \
                  starting with a letter or digit)"
            .to_string(),
    })
}

fn volume_info(v: bollard::models::Volume) -> VolumeInfo {
    VolumeInfo {
        node: v.labels.get(LABEL_NODE).cloned(),
        name: v.name,
    }
}

/// An image reference or id (`name[:tag]`, `name@sha256:..`, `sha256:..`).
fn valid_image_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'/' | b'@')
        })
        && s.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// A container as berth reports it, from the engine's inspect.
fn observe(c: ContainerInspectResponse) -> Option<ObservedContainer> {
    let id = c.id?;
    let name = c
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let labels = c.config.and_then(|cfg| cfg.labels).unwrap_or_default();
    let st = c.state.unwrap_or_default();
    let state = match st.status {
        Some(s) if !s.as_ref().is_empty() => ContainerState::parse(s.as_ref()),
        _ if st.running == Some(true) => ContainerState::Running,
        _ => ContainerState::Exited,
    };
    let exit_code = match state {
        ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting => st.exit_code,
        _ => None,
    };
    let health = st.health.and_then(|h| h.status).and_then(|s| match s {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    });
    let started_at = st
        .started_at
        .filter(|s| !s.is_empty() && !s.starts_with("0001-01-01"));
    let restart_policy = c
        .host_config
        .and_then(|h| h.restart_policy)
        .and_then(|p| p.name)
        .map(config::restart_policy_of);
    Some(ObservedContainer {
        id,
        name,
        service: labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        spec_hash: labels.get(LABEL_SPEC_HASH).cloned(),
        generation: labels.get(LABEL_GENERATION).and_then(|g| g.parse().ok()),
        config_hash: labels.get(LABEL_CONFIG_HASH).cloned(),
        state,
        exit_code,
        health,
        restart_count: c
            .restart_count
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        started_at,
        restart_policy,
    })
}

/// An engine event about one of this node's containers; `None` for events
/// berth has no use for (health probes' `exec_*`, events without an actor).
fn runtime_event(ev: EventMessage) -> Option<RuntimeEvent> {
    let action = ev.action?;
    if action.starts_with("exec_") {
        return None;
    }
    let actor = ev.actor?;
    let container_id = actor.id?;
    let attrs = actor.attributes.unwrap_or_default();
    let exit_code = if action == "die" {
        attrs.get("exitCode").and_then(|c| c.parse().ok())
    } else {
        None
    };
    Some(RuntimeEvent {
        container_id,
        service: attrs.get(LABEL_SERVICE).cloned().unwrap_or_default(),
        action,
        exit_code,
    })
}

/// `Loaded image: X` / `Loaded image ID: sha256:..` lines of a load's output.
fn loaded_refs(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix("Loaded image ID: ")
                .or_else(|| line.strip_prefix("Loaded image: "))
                .map(|r| r.trim().to_string())
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Ends `s` right after its first error.
fn end_after_error<T: Send + 'static>(
    s: impl Stream<Item = Result<T, RuntimeError>> + Send + 'static,
) -> BoxStream<Result<T, RuntimeError>> {
    let mut failed = false;
    Box::pin(s.take_while(move |item| {
        let go = !failed;
        failed = item.is_err();
        futures_util::future::ready(go)
    }))
}

fn push_tail(tail: &mut VecDeque<String>, text: &str) {
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if tail.len() == BUILD_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }
}

impl Runtime for DockerRuntime {
    async fn list_foreign(&self) -> Result<Vec<berth_core::adopt::ForeignContainer>, RuntimeError> {
        self.inner.list_foreign().await
    }

    async fn list(&self) -> Result<Vec<ObservedContainer>, RuntimeError> {
        let inner = &self.inner;
        let (docker, summaries) = inner.list_labelled(inner.node_filter()).await?;
        let ticket = cache::ListTicket::begin(&inner.cache);
        let mut cached = Vec::new();
        let mut to_inspect = Vec::new();
        let mut listed = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            listed.push(id.clone());
            let state = s.state.map(|st| st.to_string());
            match inner.cache_lock().get(&id, state.as_deref()) {
                Some(o) => cached.push(o),
                None => to_inspect.push(id),
            }
        }
        let inspected: Vec<_> = stream::iter(to_inspect)
            .map(|id| {
                let docker = docker.clone();
                async move {
                    let res = docker.inspect_container(&id, None).await;
                    (id, res)
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::with_capacity(inspected.len());
        for (id, res) in inspected {
            match res {
                Ok(c) => {
                    let ours = c
                        .config
                        .as_ref()
                        .and_then(|cfg| cfg.labels.as_ref())
                        .and_then(|l| l.get(LABEL_NODE))
                        .is_some_and(|n| *n == inner.node_id);
                    if ours {
                        let stop_timeout = c.config.as_ref().and_then(|cfg| cfg.stop_timeout);
                        inner.owned_lock().insert(&id, stop_timeout);
                    }
                    if let Some(o) = observe(c).filter(|_| ours) {
                        out.push(o);
                    }
                }
                Err(e) => match Failure::from(e) {
                    // Removed between the list and the inspect.
                    f if f.status() == Some(404) => {}
                    f => return Err(inner.fail("inspect", &id, f)),
                },
            }
        }
        inner.cache_lock().fill(ticket.epoch(), &listed, &out);
        inner.owned_lock().retain_listed(&listed);
        out.extend(cached);
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let inner = &self.inner;
        if !valid_image_ref(reference) {
            return Err(RuntimeError::Refused {
                op: "inspect image",
                target: reference.to_string(),
                message: "not an image reference".to_string(),
            });
        }
        let docker = inner.client().await?.with_timeout(QUERY_TIMEOUT);
        match docker.inspect_image(reference).await {
            Ok(img) => Ok(Some(ImageInfo {
                id: img.id.unwrap_or_default(),
                tags: img.repo_tags.unwrap_or_default(),
                digests: img.repo_digests.unwrap_or_default(),
            })),
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => Ok(None),
                f => Err(inner.fail("inspect image", reference, f)),
            },
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError> {
        let inner = &self.inner;
        if !valid_container_ref(&req.name) {
            return Err(RuntimeError::Refused {
                op: "create",
                target: req.name.clone(),
                message: "not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)".to_string(),
            });
        }
        if let Some(message) = config::unresolved_volumes_from(req) {
            return Err(RuntimeError::Refused {
                op: "create",
                target: req.name.clone(),
                message,
            });
        }
        let docker = inner.client().await?;
        ensure_volumes(inner, &docker, req).await?;
        let body = container_config(req, &inner.node_id);
        let body_stop_timeout = body.stop_timeout;
        let opts = CreateContainerOptionsBuilder::default()
            .name(&req.name)
            .build();
        match docker.create_container(Some(opts), body).await {
            Ok(resp) => {
                for w in resp.warnings.iter().filter(|w| !w.is_empty()) {
                    tracing::warn!(container = %req.name, warning = %w, "engine warning on create");
                }
                // Created with this node's label: ours for its whole life.
                inner.owned_lock().insert(&resp.id, body_stop_timeout);
                Ok(resp.id)
            }
            Err(e) => Err(match Failure::from(e) {
                f if f.status() == Some(404)
                    && f.message().to_ascii_lowercase().contains("no such image") =>
                {
                    RuntimeError::ImageNotFound {
                        image: req.spec.image.clone(),
                    }
                }
                f if f.status() == Some(409) => RuntimeError::NameConflict {
                    name: req.name.clone(),
                },
                f => inner.fail("create", &req.name, f),
            }),
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "start", id).await?;
        // 304 (already running) is a success to bollard.
        docker
            .start_container(&c.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => inner.fail("start", id, f),
            })
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "stop", id).await?;
        // No `t`: the engine uses the container's own StopTimeout / signal.
        docker
            .with_timeout(stop_call_timeout(c.stop_timeout))
            .stop_container(&c.id, None::<StopContainerOptions>)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => inner.fail("stop", id, f),
            })
    }

    async fn restart(&self, id: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "restart", id).await?;
        docker
            .with_timeout(stop_call_timeout(c.stop_timeout))
            .restart_container(&c.id, None::<RestartContainerOptions>)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => inner.fail("restart", id, f),
            })
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "signal", id).await?;
        let opts = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        docker
            .with_timeout(QUERY_TIMEOUT)
            .kill_container(&c.id, Some(opts))
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => inner.fail("signal", id, f),
            })
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        options: &ExecOptions,
    ) -> Result<ExecOutput, RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "exec in", id).await?;
        let fail = |f: Failure| match f {
            f if f.is_no_such_container() => RuntimeError::NoSuchContainer { id: id.to_string() },
            f => inner.fail("exec in", id, f),
        };
        let created = docker
            .clone()
            .with_timeout(QUERY_TIMEOUT)
            .create_exec(
                &c.id,
                ExecConfig {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: options.user.clone(),
                    env: (!options.env.is_empty()).then(|| options.env.clone()),
                    privileged: options.privileged.then_some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| fail(Failure::from(e)))?;
        let run = async {
            let started = docker
                .start_exec(&created.id, None::<StartExecOptions>)
                .await
                .map_err(|e| fail(Failure::from(e)))?;
            let mut out = ExecOutput::default();
            if let StartExecResults::Attached { mut output, .. } = started {
                let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
                while let Some(item) = output.next().await {
                    match item.map_err(|e| fail(Failure::from(e)))? {
                        LogOutput::StdErr { message } => append_capped(&mut stderr, &message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            append_capped(&mut stdout, &message)
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
                out.stdout = String::from_utf8_lossy(&stdout).into_owned();
                out.stderr = String::from_utf8_lossy(&stderr).into_owned();
            }
            let inspected = docker
                .clone()
                .with_timeout(QUERY_TIMEOUT)
                .inspect_exec(&created.id)
                .await
                .map_err(|e| fail(Failure::from(e)))?;
            out.exit_code = inspected.exit_code.unwrap_or(-1);
            Ok(out)
        };
        match tokio::time::timeout(EXEC_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Refused {
                op: "exec in",
                target: id.to_string(),
                message: format!(
                    "`{}` did not finish within {}s",
                    argv.join(" "),
                    EXEC_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = match inner.ensure_ours(&docker, "remove", id).await {
            Ok(c) => c,
            Err(RuntimeError::NoSuchContainer { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let removed = docker.remove_container(&c.id, Some(opts)).await;
        inner.owned_lock().remove(&c.id);
        match removed {
            Ok(()) => Ok(()),
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => Ok(()),
                f => Err(inner.fail("remove", id, f)),
            },
        }
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        if !valid_container_ref(new_name) {
            return Err(RuntimeError::Refused {
                op: "rename",
                target: id.to_string(),
                message: format!("`{new_name}` is not a valid container name"),
            });
        }
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "rename", id).await?;
        let opts = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        docker
            .rename_container(&c.id, opts)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f if f.status() == Some(409) => RuntimeError::NameConflict {
                    name: new_name.to_string(),
                },
                f => inner.fail("rename", id, f),
            })
    }

    async fn set_restart_policy(
        &self,
        id: &str,
        policy: RestartPolicy,
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?;
        let c = inner.ensure_ours(&docker, "update", id).await?;
        let body = ContainerUpdateBody {
            restart_policy: Some(config::restart_policy(policy)),
            ..Default::default()
        };
        let updated = docker
            .with_timeout(QUERY_TIMEOUT)
            .update_container(&c.id, body)
            .await
            .map_err(|e| match Failure::from(e) {
                f if f.is_no_such_container() => {
                    RuntimeError::NoSuchContainer { id: id.to_string() }
                }
                f => inner.fail("update", id, f),
            });
        // The engine's `update` event will say so too; a list that runs
        // before it arrives must not see the old policy.
        inner.cache_lock().invalidate(&c.id);
        updated
    }

    async fn build(
        &self,
        context: &str,
        dockerfile: Option<&str>,
        tag: &str,
    ) -> Result<String, RuntimeError> {
        let inner = &self.inner;
        let build_err = |message: String| RuntimeError::Build {
            tag: tag.to_string(),
            context: context.to_string(),
            message,
        };
        if !valid_image_ref(tag) {
            return Err(build_err(format!("`{tag}` is not a valid image tag")));
        }
        let ctx = PathBuf::from(context);
        let df = dockerfile.map(str::to_string);
        let (dockerfile, tar) = tokio::task::spawn_blocking(move || {
            let dockerfile = context::dockerfile_in_context(&ctx, df.as_deref())?;
            let ignore = context::read_ignore(&ctx, &dockerfile)?;
            // Spooled to an unnamed temp file and streamed from there: a
            // context can be far larger than berthd's memory should grow.
            let spool = tempfile::tempfile().map_err(|e| {
                format!(
                    "cannot create a temp file for the build context: {}",
                    chain(&e)
                )
            })?;
            let mut tar = context::tar_context(&ctx, &ignore, spool)?;
            std::io::Seek::seek(&mut tar, std::io::SeekFrom::Start(0)).map_err(|e| {
                format!("cannot rewind the build context's temp file: {}", chain(&e))
            })?;
            Ok::<_, String>((dockerfile, tar))
        })
        .await
        .map_err(|e| build_err(format!("tarring the context panicked: {e}")))?
        .map_err(build_err)?;

        let docker = inner.client().await?.with_timeout(BUILD_TIMEOUT);
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile(&dockerfile)
            .t(tag)
            .rm(true)
            // A failed step's container goes too, not only successful ones.
            .forcerm(true)
            .build();
        let mut tail: VecDeque<String> = VecDeque::new();
        {
            let body = body_try_stream(file_chunks(tokio::fs::File::from_std(tar)));
            let mut output = docker.build_image(opts, None, Some(body));
            while let Some(item) = output.next().await {
                match item {
                    Ok(info) => {
                        if let Some(s) = info.stream.as_deref() {
                            tracing::debug!(tag, "build: {}", s.trim_end());
                            push_tail(&mut tail, s);
                        }
                        if let Some(s) = info.status.as_deref() {
                            push_tail(&mut tail, s);
                        }
                    }
                    Err(e) => {
                        return Err(match Failure::from(e) {
                            Failure::Unreachable(r) => inner.unreachable(r),
                            f => {
                                let mut message = f.message().to_string();
                                if !tail.is_empty() {
                                    message.push_str("\nlast build output:\n");
                                    message.push_str(&Vec::from(tail).join("\n"));
                                }
                                build_err(message)
                            }
                        });
                    }
                }
            }
        }
        match self.inspect_image(tag).await? {
            Some(img) if !img.id.is_empty() => Ok(img.id),
            _ => Err(build_err(format!(
                "the engine reported success but there is no image {tag} afterwards"
            ))),
        }
    }

    async fn pull_with_progress(
        &self,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let registry = image_registry(reference).to_string();
        let pull_err = |cause: PullCause, message: String| RuntimeError::Pull {
            registry: registry.clone(),
            reference: reference.to_string(),
            cause,
            message,
        };
        if !valid_image_ref(reference) {
            return Err(pull_err(
                PullCause::Other,
                "not an image reference".to_string(),
            ));
        }
        // Read at each pull: a rotated file counts at once; a missing or
        // broken one fails the pull, naming the file.
        let (credentials, sent) = match self.pulls.auth_file() {
            None => (None, SentAuth::NoFile),
            Some(path) => {
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || auth::AuthFile::read(&path)).await
                };
                let file = match read {
                    Ok(Ok(file)) => file,
                    Ok(Err(e)) => return Err(pull_err(PullCause::AuthFile, e.to_string())),
                    Err(e) => {
                        return Err(pull_err(
                            PullCause::AuthFile,
                            format!("reading {} failed: {e}", path.display()),
                        ));
                    }
                };
                match file.for_registry(&registry) {
                    Some(a) => (Some(a.to_docker(&registry)), SentAuth::Sent(path)),
                    None => (None, SentAuth::NoEntry(path)),
                }
            }
        };
        let timeout = self.pulls.timeout;
        let _slot = match self.pulls.slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                tracing::info!(
                    reference,
                    "waiting for a pull slot ([images] max_concurrent_pulls)"
                );
                self.pulls.slots.acquire().await.map_err(|_| {
                    pull_err(PullCause::Other, "the runtime is shutting down".to_string())
                })?
            }
        };
        // Bounds only the wait for the response headers; the stream is
        // bounded by `drain_pull`.
        let docker = inner.client().await?.with_timeout(timeout);
        let (repository, tag) = pull_parts(reference);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repository)
            .tag(tag)
            .build();
        let output = docker.create_image(Some(opts), None, credentials);
        let last_status = drain_pull(
            output,
            reference,
            timeout,
            PULL_IDLE_TIMEOUT,
            progress,
            |e: bollard::errors::Error| match Failure::from(e) {
                Failure::Unreachable(r) => inner.unreachable(r),
                f => {
                    let mut message = f.message().to_string();
                    let cause = error::pull_cause(f.status(), &message);
                    if cause == PullCause::Unauthorized {
                        message.push_str(&sent.refused(&registry));
                    }
                    pull_err(cause, message)
                }
            },
        )
        .await?;
        tracing::debug!(reference, status = %last_status, "pulled");
        Ok(())
    }

    async fn load(&self, path: &str) -> Result<Vec<String>, RuntimeError> {
        let inner = &self.inner;
        let load_err = |message: String| RuntimeError::Load {
            path: path.to_string(),
            message,
        };
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| load_err(format!("cannot open it: {}", chain(&e))))?;
        let docker = inner.client().await?.with_timeout(BUILD_TIMEOUT);

        // Streamed: an image tarball can be large.
        let opts = ImportImageOptionsBuilder::default().quiet(false).build();
        let mut output = docker.import_image(opts, body_try_stream(file_chunks(file)), None);
        let mut text = String::new();
        while let Some(item) = output.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream.as_deref() {
                        text.push_str(s);
                        if !s.ends_with('\n') {
                            text.push('\n');
                        }
                    }
                }
                Err(e) => {
                    return Err(match Failure::from(e) {
                        Failure::Unreachable(r) => inner.unreachable(r),
                        f => load_err(f.message().to_string()),
                    });
                }
            }
        }
        let refs = loaded_refs(&text);
        if refs.is_empty() {
            return Err(load_err(format!(
                "the engine reported no loaded image (output: {})",
                text.trim()
            )));
        }
        Ok(refs)
    }

    async fn list_images(&self, repository_prefix: &str) -> Result<Vec<ImageInfo>, RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?.with_timeout(QUERY_TIMEOUT);
        let images = docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|e| inner.fail("list", "images", e.into()))?;
        Ok(images
            .into_iter()
            .filter_map(|img| {
                let tags: Vec<String> = img
                    .repo_tags
                    .into_iter()
                    .filter(|t| t.starts_with(repository_prefix))
                    .collect();
                (!tags.is_empty()).then_some(ImageInfo {
                    id: img.id,
                    tags,
                    digests: img.repo_digests,
                })
            })
            .collect())
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        if !valid_image_ref(id) {
            return Err(RuntimeError::Refused {
                op: "remove image",
                target: id.to_string(),
                message: "not an image reference".to_string(),
            });
        }
        let docker = inner.client().await?;
        let opts = RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        match docker.remove_image(id, Some(opts), None).await {
            Ok(_) => Ok(()),
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => Ok(()),
                f => Err(inner.fail("remove image", id, f)),
            },
        }
    }

    async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeInfo>, RuntimeError> {
        let inner = &self.inner;
        check_volume_name("inspect volume", name)?;
        let docker = inner.client().await?.with_timeout(QUERY_TIMEOUT);
        match docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(volume_info(v))),
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => Ok(None),
                f => Err(inner.fail("inspect volume", name, f)),
            },
        }
    }

    async fn list_volumes(&self) -> Result<Vec<VolumeInfo>, RuntimeError> {
        let inner = &self.inner;
        let docker = inner.client().await?.with_timeout(QUERY_TIMEOUT);
        let filters = HashMap::from([("label", vec![inner.node_filter()])]);
        let opts = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let listed = docker
            .list_volumes(Some(opts))
            .await
            .map_err(|e| inner.fail("list", "volumes", e.into()))?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_info)
            // The engine filtered already; checked again all the same.
            .filter(|v| v.node.as_deref() == Some(inner.node_id.as_str()))
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let Some(volume) = self.inspect_volume(name).await? else {
            return Ok(());
        };
        if volume.node.as_deref() != Some(inner.node_id.as_str()) {
            return Err(RuntimeError::Refused {
                op: "remove volume",
                target: name.to_string(),
                message: match volume.node {
                    None => format!("it has no {LABEL_NODE} label: berth did not create it"),
                    Some(other) => format!("it belongs to node `{other}`, not this one"),
                },
            });
        }
        let docker = inner.client().await?;
        // Never forced: a volume a container still uses stays (409).
        let opts = RemoveVolumeOptionsBuilder::default().force(false).build();
        match docker.remove_volume(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => Ok(()),
                f => Err(inner.fail("remove volume", name, f)),
            },
        }
    }

    fn logs(&self, id: &str, opts: LogOptions) -> BoxStream<Result<LogChunk, RuntimeError>> {
        let inner = self.inner.clone();
        let id = id.to_string();
        let s = stream::once(async move {
            let docker = match inner.client().await {
                Ok(d) => d.with_timeout(STREAM_TIMEOUT),
                Err(e) => return stream::iter([Err(e)]).boxed(),
            };
            let tail = opts
                .tail
                .map_or_else(|| "all".to_string(), |n| n.to_string());
            let options = LogsOptionsBuilder::default()
                .follow(opts.follow)
                .stdout(true)
                .stderr(true)
                .tail(&tail)
                .build();
            docker
                .logs(&id, Some(options))
                .map(move |item| match item {
                    Ok(LogOutput::StdErr { message }) => Ok(LogChunk {
                        stream: LogStream::Stderr,
                        bytes: message.to_vec(),
                    }),
                    Ok(
                        LogOutput::StdOut { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message },
                    ) => Ok(LogChunk {
                        stream: LogStream::Stdout,
                        bytes: message.to_vec(),
                    }),
                    Err(e) => Err(match Failure::from(e) {
                        f if f.is_no_such_container() => {
                            RuntimeError::NoSuchContainer { id: id.clone() }
                        }
                        f => inner.fail("read the logs of", &id, f),
                    }),
                })
                .boxed()
        })
        .flatten();
        end_after_error(s)
    }

    fn events(&self) -> BoxStream<Result<RuntimeEvent, RuntimeError>> {
        let inner = self.inner.clone();
        let s = stream::once(async move {
            let docker = match inner.client().await {
                Ok(d) => d.with_timeout(STREAM_TIMEOUT),
                Err(e) => return stream::iter([Err(e)]).boxed(),
            };
            let filters = HashMap::from([
                ("type", vec!["container".to_string()]),
                ("label", vec![inner.node_filter()]),
            ]);
            let opts = EventsOptionsBuilder::default().filters(&filters).build();
            inner.cache_lock().stream_opened();
            let guard = cache::StreamGuard(inner.cache.clone());
            docker
                .events(Some(opts))
                .filter_map(move |item| {
                    let _registered = &guard;
                    let out = match item {
                        Ok(ev) => {
                            if let Some(id) = ev.actor.as_ref().and_then(|a| a.id.as_deref()) {
                                inner.cache_lock().invalidate(id);
                                if ev.action.as_deref() == Some("destroy") {
                                    inner.owned_lock().remove(id);
                                }
                            }
                            runtime_event(ev).map(Ok)
                        }
                        Err(e) => {
                            let reason = match Failure::from(e) {
                                Failure::Unreachable(r) => r,
                                f => format!("the event stream failed: {}", f.message()),
                            };
                            Some(Err(inner.unreachable(reason)))
                        }
                    };
                    futures_util::future::ready(out)
                })
                .boxed()
        })
        .flatten();
        end_after_error(s)
    }
}

/// How long a stop or restart may take: the container's own timeout (the
/// engine's default if unset) plus a margin; a negative timeout waits forever.
fn stop_call_timeout(stop_timeout: Option<i64>) -> Duration {
    match stop_timeout {
        Some(t) if t < 0 => Duration::from_secs(24 * 60 * 60),
        Some(t) => Duration::from_secs(u64::try_from(t).unwrap_or(0)) + STOP_MARGIN,
        None => Duration::from_secs(DEFAULT_STOP_TIMEOUT_SECS) + STOP_MARGIN,
    }
}

/// The named volumes `req` mounts: one that does not exist yet is made here,
/// labelled with this node (`io.berth.node`), where the engine would make it
/// unlabelled at create; one that exists is used as it is (whether a pushed
/// spec may name it is the node policy's `allowed_volumes`). Two creates of
/// the same new volume at once are fine: the engine answers the second with
/// the volume the first made.
async fn ensure_volumes(
    inner: &Inner,
    docker: &Docker,
    req: &CreateRequest,
) -> Result<(), RuntimeError> {
    // A name the engine would not take as a volume is left to its create
    // to refuse (and never goes into a URL path here).
    let named = req
        .spec
        .volumes
        .iter()
        .filter(|v| !v.is_host_path() && valid_container_ref(&v.source));
    for v in named {
        match docker.inspect_volume(&v.source).await {
            Ok(_) => continue,
            Err(e) => match Failure::from(e) {
                f if f.status() == Some(404) => {}
                f => return Err(inner.fail("inspect volume", &v.source, f)),
            },
        }
        let labels = HashMap::from([(LABEL_NODE.to_string(), inner.node_id.clone())]);
        let create = bollard::models::VolumeCreateRequest {
            name: Some(v.source.clone()),
            labels: Some(labels),
            ..Default::default()
        };
        docker
            .create_volume(create)
            .await
            .map_err(|e| inner.fail("create volume", &v.source, Failure::from(e)))?;
        tracing::info!(volume = %v.source, container = %req.name, "created a named volume for this node");
    }
    Ok(())
}

/// Reads the progress stream of a pull of `reference` to its end; returns
/// the last status the engine reported. Each line that moves the layers
/// or bytes pulled so far tells `progress` the new sums. An item that is an error ends it
/// with `failed`'s error. No item for `idle`, or the stream not over after
/// `total` (from the start of this call), fails it as
/// [`PullCause::Unreachable`]: the engine waits on a connected registry
/// for good, so one that stalls mid-blob would hang the pull, and the
/// apply waiting on it, forever.
async fn drain_pull<S, E>(
    output: S,
    reference: &str,
    total: Duration,
    idle: Duration,
    progress: &(dyn Fn(PullProgress) + Send + Sync),
    mut failed: impl FnMut(E) -> RuntimeError,
) -> Result<String, RuntimeError>
where
    S: Stream<Item = Result<bollard::models::CreateImageInfo, E>>,
{
    let drain = async {
        let mut output = std::pin::pin!(output);
        let mut last_status = String::new();
        let mut tally = PullTally::new(reference);
        loop {
            match tokio::time::timeout(idle, output.next()).await {
                Ok(Some(Ok(info))) => {
                    if let Some(s) = info.status {
                        let detail = info.progress_detail.as_ref();
                        let (current, total) =
                            (detail.and_then(|d| d.current), detail.and_then(|d| d.total));
                        if tally.observe(info.id.as_deref(), &s, current, total) {
                            progress(tally.progress());
                        }
                        last_status = s;
                    }
                }
                Ok(Some(Err(e))) => return Err(failed(e)),
                Ok(None) => return Ok(last_status),
                Err(_) => {
                    let last = if last_status.is_empty() {
                        String::new()
                    } else {
                        format!(" (last: {last_status})")
                    };
                    return Err(timed_out(
                        reference,
                        format!(
                            "no progress for {} s{last}: the registry stopped sending; \
                             the pull was given up",
                            idle.as_secs()
                        ),
                    ));
                }
            }
        }
    };
    tokio::time::timeout(total, drain)
        .await
        .unwrap_or_else(|_| {
            Err(timed_out(
                reference,
                format!(
                    "the pull took longer than {} s and was given up",
                    total.as_secs()
                ),
            ))
        })
}

/// A pull of `reference` given up: its registry did not deliver in time.
fn timed_out(reference: &str, message: String) -> RuntimeError {
    RuntimeError::Pull {
        registry: image_registry(reference).to_string(),
        reference: reference.to_string(),
        cause: PullCause::Unreachable,
        message,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        ContainerConfig, ContainerStateStatusEnum, EventActor, Health as EngineHealth,
    };

    use super::*;

    fn progress(status: &str) -> Result<bollard::models::CreateImageInfo, String> {
        Ok(bollard::models::CreateImageInfo {
            status: Some(status.to_string()),
            ..Default::default()
        })
    }

    fn engine_said(e: String) -> RuntimeError {
        RuntimeError::Refused {
            op: "pull",
            target: "test".into(),
            message: e,
        }
    }

    const STALLING: &str = "registry.example:5000/app:1";

    /// A registry that stops sending mid-blob: the engine's stream stays
    /// open with no progress, and the pull fails after the idle timeout,
    /// naming the registry and the cause, instead of hanging.
    #[tokio::test(start_paused = true)]
    async fn a_pull_whose_progress_stalls_fails_after_the_idle_timeout() {
        let stalls = stream::iter([progress("Pulling fs layer"), progress("Downloading")])
            .chain(stream::pending());
        let started = tokio::time::Instant::now();
        let pull = drain_pull(
            stalls,
            STALLING,
            DEFAULT_PULL_TIMEOUT,
            PULL_IDLE_TIMEOUT,
            &|_| {},
            engine_said,
        );
        let e = tokio::time::timeout(2 * DEFAULT_PULL_TIMEOUT, pull)
            .await
            .expect("the pull does not hang")
            .expect_err("a stalled pull fails");
        assert_eq!(started.elapsed(), PULL_IDLE_TIMEOUT);
        let RuntimeError::Pull {
            registry, cause, ..
        } = &e
        else {
            panic!("not a pull failure: {e:?}");
        };
        assert_eq!(
            (registry.as_str(), *cause),
            ("registry.example:5000", PullCause::Unreachable)
        );
        let said = e.to_string();
        assert!(
            said.contains("pulling it from registry.example:5000 failed: the registry is unreachable: no progress for 120 s (last: Downloading)"),
            "{said}"
        );
    }

    /// A pull that keeps making progress, too slowly to end: it fails once
    /// it has taken the whole pull timeout.
    #[tokio::test(start_paused = true)]
    async fn a_pull_that_never_ends_fails_after_the_pull_timeout() {
        let trickles = stream::unfold(0u64, |n| async move {
            tokio::time::sleep(PULL_IDLE_TIMEOUT / 2).await;
            Some((progress(&format!("Downloading {n}")), n + 1))
        });
        let started = tokio::time::Instant::now();
        let pull = drain_pull(
            trickles,
            STALLING,
            DEFAULT_PULL_TIMEOUT,
            PULL_IDLE_TIMEOUT,
            &|_| {},
            engine_said,
        );
        let e = tokio::time::timeout(2 * DEFAULT_PULL_TIMEOUT, pull)
            .await
            .expect("the pull does not hang")
            .expect_err("an endless pull fails");
        assert_eq!(started.elapsed(), DEFAULT_PULL_TIMEOUT);
        assert!(
            matches!(&e, RuntimeError::Pull { cause: PullCause::Unreachable, registry, .. }
                if registry == "registry.example:5000"),
            "{e:?}"
        );
        let said = e.to_string();
        assert!(said.contains("took longer than 1800 s"), "{said}");
    }

    /// A pull that ends returns the last status; the engine's error ends
    /// it with that error.
    #[tokio::test(start_paused = true)]
    async fn a_pull_ends_with_its_stream_or_its_error() {
        let ok = stream::iter([progress("Downloading"), progress("Status: Downloaded")]);
        let last = drain_pull(
            ok,
            STALLING,
            DEFAULT_PULL_TIMEOUT,
            PULL_IDLE_TIMEOUT,
            &|_| {},
            engine_said,
        )
        .await
        .expect("pulled");
        assert_eq!(last, "Status: Downloaded");
        let failing = stream::iter([progress("Downloading"), Err("manifest unknown".to_string())]);
        let e = drain_pull(
            failing,
            STALLING,
            DEFAULT_PULL_TIMEOUT,
            PULL_IDLE_TIMEOUT,
            &|_| {},
            engine_said,
        )
        .await
        .expect_err("failed");
        assert!(
            matches!(&e, RuntimeError::Refused { message, .. } if message == "manifest unknown"),
            "{e:?}"
        );
    }

    /// The engine's progress lines reach the caller as sums, one call per
    /// line that moved them (none for lines about no layer).
    #[tokio::test(start_paused = true)]
    async fn a_pulls_progress_is_told_as_layers_and_bytes() {
        fn line(
            id: &str,
            status: &str,
            current: Option<i64>,
            total: Option<i64>,
        ) -> Result<bollard::models::CreateImageInfo, String> {
            Ok(bollard::models::CreateImageInfo {
                id: Some(id.to_string()),
                status: Some(status.to_string()),
                progress_detail: Some(bollard::models::ProgressDetail { current, total }),
                ..Default::default()
            })
        }
        let lines = stream::iter([
            line("2", "Pulling from web", None, None),
            line("aaa", "Already exists", None, None),
            line("bbb", "Pulling fs layer", None, None),
            line("bbb", "Downloading", Some(4_000_000), Some(8_000_000)),
            line("bbb", "Download complete", None, None),
            line("bbb", "Pull complete", None, None),
            progress("Status: Downloaded newer image for 127.0.0.1:5000/web:2"),
        ]);
        let seen = std::sync::Mutex::new(Vec::new());
        let record = |p: PullProgress| {
            if let Ok(mut seen) = seen.lock() {
                seen.push((p.layers_done, p.layers_total, p.bytes_done, p.bytes_total));
            }
        };
        drain_pull(
            lines,
            "127.0.0.1:5000/web:2",
            DEFAULT_PULL_TIMEOUT,
            PULL_IDLE_TIMEOUT,
            &record,
            engine_said,
        )
        .await
        .expect("pulled");
        let seen = seen.into_inner().unwrap_or_default();
        assert_eq!(
            seen,
            vec![
                (1, 1, 0, 0),
                (1, 2, 0, 0),
                (1, 2, 4_000_000, 8_000_000),
                (1, 2, 8_000_000, 8_000_000),
                (2, 2, 8_000_000, 8_000_000),
            ]
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("unix:///var/run/docker.sock"),
            Some(Target::Unix("/var/run/docker.sock".to_string()))
        );
        assert_eq!(
            parse_endpoint("/run/docker.sock"),
            Some(Target::Unix("/run/docker.sock".to_string()))
        );
        assert_eq!(
            parse_endpoint("tcp://127.0.0.1:2375"),
            Some(Target::Http("http://127.0.0.1:2375".to_string()))
        );
        assert_eq!(
            parse_endpoint("http://docker:2375/"),
            Some(Target::Http("http://docker:2375".to_string()))
        );
        assert_eq!(parse_endpoint("ssh://host"), None);
        assert_eq!(parse_endpoint("unix://"), None);
        assert_eq!(parse_endpoint("docker.sock"), None);
    }

    #[test]
    fn connect_checks_its_arguments() {
        assert!(matches!(
            DockerRuntime::connect("ftp://x", "n"),
            Err(RuntimeError::Unreachable { endpoint, .. }) if endpoint == "ftp://x"
        ));
        assert!(matches!(
            DockerRuntime::connect("/var/run/docker.sock", ""),
            Err(RuntimeError::Refused { .. })
        ));
        let rt = DockerRuntime::connect("/nonexistent.sock", "node").expect("lazy connect");
        assert_eq!(rt.node_id(), "node");
        assert_eq!(rt.endpoint(), "/nonexistent.sock");
    }

    #[test]
    fn refs_are_checked_before_they_reach_a_url() {
        assert!(valid_container_ref("berth-web"));
        assert!(valid_container_ref("berth_web.next-g2"));
        assert!(valid_container_ref("0123456789abcdef"));
        assert!(!valid_container_ref(""));
        assert!(!valid_container_ref("../images/x"));
        assert!(!valid_container_ref("a/b"));
        assert!(!valid_container_ref("a?force=1"));
        assert!(!valid_container_ref("-x"));
        assert!(valid_image_ref("sha256:0123abcd"));
        assert!(valid_image_ref("registry.local:5000/team/app:v1"));
        assert!(valid_image_ref("app@sha256:0123"));
        assert!(!valid_image_ref("../containers/x"));
        assert!(!valid_image_ref("a//b"));
        assert!(!valid_image_ref("a b"));
        assert!(!valid_image_ref("a?x"));
    }

    fn inspected(labels: &[(&str, &str)]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("abc123".to_string()),
            name: Some("/berth-web".to_string()),
            restart_count: Some(2),
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                stop_timeout: Some(3),
                ..Default::default()
            }),
            state: Some(bollard::models::ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                running: Some(true),
                exit_code: Some(0),
                started_at: Some("2024-05-01T10:00:00.123Z".to_string()),
                health: Some(EngineHealth {
                    status: Some(HealthStatusEnum::HEALTHY),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn observes_a_running_container() {
        let c = inspected(&[
            (LABEL_NODE, "n1"),
            (LABEL_SERVICE, "web"),
            (LABEL_SPEC_HASH, "v1:abc"),
            (LABEL_GENERATION, "7"),
        ]);
        let o = observe(c).expect("observed");
        assert_eq!(o.id, "abc123");
        assert_eq!(o.name, "berth-web");
        assert_eq!(o.service, "web");
        assert_eq!(o.spec_hash.as_deref(), Some("v1:abc"));
        assert_eq!(o.generation, Some(7));
        assert_eq!(o.state, ContainerState::Running);
        assert_eq!(o.exit_code, None, "no exit code while running");
        assert_eq!(o.health, Some(Health::Healthy));
        assert_eq!(o.restart_count, 2);
        assert_eq!(o.started_at.as_deref(), Some("2024-05-01T10:00:00.123Z"));
    }

    #[test]
    fn observes_an_exited_never_started_container() {
        let mut c = inspected(&[(LABEL_NODE, "n1"), (LABEL_GENERATION, "x")]);
        if let Some(st) = c.state.as_mut() {
            st.status = Some(ContainerStateStatusEnum::EXITED);
            st.running = Some(false);
            st.exit_code = Some(137);
            st.started_at = Some("0001-01-01T00:00:00Z".to_string());
            st.health = None;
        }
        let o = observe(c).expect("observed");
        assert_eq!(o.state, ContainerState::Exited);
        assert_eq!(o.exit_code, Some(137));
        assert_eq!(o.health, None);
        assert_eq!(o.started_at, None);
        assert_eq!(o.generation, None, "an unparsable generation is None");
        assert_eq!(o.service, "");
    }

    #[test]
    fn owner_check() {
        let ok = check_owner(inspected(&[(LABEL_NODE, "n1")]), "n1", "stop", "berth-web")
            .map(|c| (c.id, c.stop_timeout))
            .expect("ours");
        assert_eq!(ok, ("abc123".to_string(), Some(3)));

        let other = check_owner(inspected(&[(LABEL_NODE, "n2")]), "n1", "stop", "berth-web");
        assert!(matches!(
            other,
            Err(RuntimeError::Refused { op: "stop", ref target, ref message })
                if target == "berth-web" && message.contains("berth-web") && message.contains("n2")
        ));
        let foreign = check_owner(inspected(&[]), "n1", "remove", "abc");
        assert!(matches!(
            foreign,
            Err(RuntimeError::Refused { op: "remove", ref message, .. }) if message.contains(LABEL_NODE)
        ));
    }

    #[test]
    fn events_are_mapped() {
        let ev = |action: &str, attrs: &[(&str, &str)]| EventMessage {
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some("cid".to_string()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        };
        let die =
            runtime_event(ev("die", &[(LABEL_SERVICE, "web"), ("exitCode", "137")])).expect("die");
        assert_eq!(
            die,
            RuntimeEvent {
                container_id: "cid".to_string(),
                service: "web".to_string(),
                action: "die".to_string(),
                exit_code: Some(137),
            }
        );
        let health =
            runtime_event(ev("health_status: healthy", &[(LABEL_SERVICE, "web")])).expect("health");
        assert_eq!(health.action, "health_status: healthy");
        assert_eq!(health.exit_code, None);
        assert_eq!(runtime_event(ev("exec_start: /bin/true", &[])), None);
    }

    #[test]
    fn load_output() {
        let out = "Loaded image: berth-test:1\nLoaded image ID: sha256:abc\n\nOther\n";
        assert_eq!(loaded_refs(out), vec!["berth-test:1", "sha256:abc"]);
    }

    #[test]
    fn stop_timeouts() {
        assert_eq!(stop_call_timeout(None), Duration::from_secs(40));
        assert_eq!(stop_call_timeout(Some(5)), Duration::from_secs(35));
        assert!(stop_call_timeout(Some(-1)) >= Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn stream_ends_after_first_error() {
        let s = stream::iter([
            Ok(1),
            Err(RuntimeError::NoSuchContainer { id: "x".into() }),
            Ok(2),
        ]);
        let items: Vec<_> = end_after_error(s).collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[1].is_err());
    }

    #[tokio::test]
    async fn missing_socket_is_unreachable_without_waiting() {
        let rt = DockerRuntime::connect("unix:///nonexistent/berth/docker.sock", "n")
            .expect("lazy connect");
        let started = std::time::Instant::now();
        let err = rt.list().await.expect_err("no engine");
        assert!(err.is_unreachable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut events = rt.events();
        assert!(matches!(
            events.next().await,
            Some(Err(RuntimeError::Unreachable { .. }))
        ));
        assert!(events.next().await.is_none());
    }

    fn no_engine(auth_file: Option<PathBuf>, max_concurrent_pulls: usize) -> DockerRuntime {
        DockerRuntime::connect("unix:///nonexistent/berth/docker.sock", "n")
            .expect("lazy connect")
            .with_images(ImagesOptions {
                auth_file,
                max_concurrent_pulls,
                pull_timeout: Duration::from_secs(60),
            })
    }

    /// The auth file is read at each pull, before the engine is asked: a
    /// missing, broken or credential-helper file fails the pull naming the
    /// file; a file fixed in place is used by the next pull.
    #[tokio::test]
    async fn the_auth_file_is_read_at_each_pull_and_its_problems_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("auth.json");
        let shown = path.display().to_string();
        let rt = no_engine(Some(path.clone()), 3);
        let reference = "127.0.0.1:5999/app:1";
        for (content, parts) in [
            (
                None,
                &["cannot read the registry auth file", "No such file"][..],
            ),
            (Some("{nope"), &["is not JSON"][..]),
            (
                Some(r#"{"auths": {}, "credsStore": "secretservice"}"#),
                &["credsStore", "cannot run credential helpers"][..],
            ),
        ] {
            if let Some(text) = content {
                std::fs::write(&path, text).expect("write");
            }
            let e = rt.pull(reference).await.expect_err("the file is unusable");
            assert!(
                matches!(&e, RuntimeError::Pull { cause: PullCause::AuthFile, registry, .. }
                    if registry == "127.0.0.1:5999"),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(text.contains(&shown), "{text}");
            assert!(text.contains(&format!("`{reference}`")), "{text}");
            for part in parts {
                assert!(text.contains(part), "{part}: {text}");
            }
        }
        // Fixed in place: the next pull gets past the file (to the engine,
        // which is not there).
        std::fs::write(
            &path,
            r#"{"auths": {"127.0.0.1:5999": {"username": "u", "password": "s3cret"}}}"#,
        )
        .expect("write");
        let e = rt.pull(reference).await.expect_err("no engine");
        assert!(e.is_unreachable(), "{e}");
        assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
        // SIGHUP's new path counts for every clone.
        let clone = rt.clone();
        rt.set_auth_file(Some(dir.path().join("other.json")));
        let e = clone.pull(reference).await.expect_err("missing");
        assert!(e.to_string().contains("other.json"), "{e}");
        rt.set_auth_file(None);
        assert!(
            clone
                .pull(reference)
                .await
                .expect_err("no engine")
                .is_unreachable()
        );
    }

    /// A pull waits while `max_concurrent_pulls` others run.
    #[tokio::test(start_paused = true)]
    async fn pulls_beyond_max_concurrent_pulls_wait_for_a_slot() {
        let rt = no_engine(None, 1);
        let held = rt.pulls.slots.try_acquire().expect("the one slot");
        let waiting = tokio::spawn({
            let rt = rt.clone();
            async move { rt.pull("127.0.0.1:5999/app:1").await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!waiting.is_finished(), "the pull waits for the slot");
        drop(held);
        let e = waiting
            .await
            .expect("joined")
            .expect_err("then reaches for the engine");
        assert!(e.is_unreachable(), "{e}");
        assert_eq!(rt.pulls.slots.available_permits(), 1, "the slot is back");
    }

    /// What a refusal adds names the registry and the file, never a credential.
    #[test]
    fn a_refusal_says_what_was_sent() {
        let path = PathBuf::from("/etc/berth/auth.json");
        let no_file = SentAuth::NoFile.refused("reg:5000");
        assert!(no_file.contains("sets no [images] auth_file"), "{no_file}");
        let no_entry = SentAuth::NoEntry(path.clone()).refused("reg:5000");
        assert!(
            no_entry.contains("auth_file /etc/berth/auth.json has no entry for reg:5000"),
            "{no_entry}"
        );
        let sent = SentAuth::Sent(path).refused("reg:5000");
        assert!(
            sent.contains(
                "credentials for reg:5000 from the [images] auth_file /etc/berth/auth.json"
            ) && sent.contains("refused them"),
            "{sent}"
        );
    }

    #[test]
    fn images_options_default_to_three_pulls_of_at_most_30_minutes() {
        let o = ImagesOptions::default();
        assert_eq!(o.auth_file, None);
        assert_eq!(o.max_concurrent_pulls, 3);
        assert_eq!(o.pull_timeout, Duration::from_secs(1800));
        let rt = no_engine(None, 0);
        assert_eq!(rt.pulls.slots.available_permits(), 1, "at least one slot");
    }
}
