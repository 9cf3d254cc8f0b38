//! The container runtime seam: what berth asks of an engine, in berth's words.
//!
//! The real implementation (bollard) lives in `berth-docker`, the fake in
//! `berth-fakes`. Every implementation only ever lists and touches containers
//! carrying its own node label.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};

pub use crate::pull_progress::PullProgress;
use crate::spec::{
    Healthcheck, Logging, Network, PortMapping, Resources, RestartPolicy, Ulimit, Volume,
};

pub const LABEL_NODE: &str = "io.berth.node";
pub const LABEL_SERVICE: &str = "io.berth.service";
pub const LABEL_SPEC_HASH: &str = "io.berth.spec-hash";
pub const LABEL_GENERATION: &str = "io.berth.generation";
pub const LABEL_DEPLOYMENT: &str = "io.berth.deployment";
pub const LABEL_KIND: &str = "io.berth.kind";
/// The hash of the config sources whose `on_change` is `recreate`: part of
/// the container's identity (absent when there are none).
pub const LABEL_CONFIG_HASH: &str = "io.berth.config-hash";
/// `repository@sha256:...` the container's image was pulled as (absent for
/// a built or loaded image): how its image is had again, never by its tag,
/// when the engine no longer has it (pruned) and a rollback or a
/// recreate needs it.
pub const LABEL_IMAGE_DIGEST: &str = "io.berth.image-digest";

/// Where a task's declared outputs are mounted inside its container.
pub const OUTPUTS_MOUNT: &str = "/berth/outputs";
/// A deployment's inputs as files: `dir` (one per generation, so a
/// container set aside keeps its own) holds one file per input, written
/// before the create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputFiles {
    pub dir: String,
    pub values: BTreeMap<String, String>,
}

/// Where a container finds its resolved inputs, one file per input.
pub const INPUTS_MOUNT: &str = "/berth/inputs";

/// Everything that reaches the engine's create call. The spec hash is computed
/// over this (see [`crate::hash`]), so a field here that is not in the hash, or
/// the reverse, is a bug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CreateSpec {
    /// The resolved image id (`sha256:...`), never a tag: a re-pointed tag
    /// must not change a running service behind the operator's back.
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Values resolved; secrets included (the hash is one-way). Not the
    /// env files' values: the deploy job adds those (under these) right
    /// before the create, after reading the files again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The spec's `env_file` paths, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<String>,
    /// [`crate::spec::env_file::digest`] of the values the files held when
    /// the deployment was applied (`Deployment::env_file_digest`): their
    /// content in the hash, never their values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The service whose container an exec task runs in (no container of
    /// its own is ever created from this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_in: Option<String>,
    /// `volumes_from` as the spec has it: `SERVICE[:ro|:rw]`, berth service
    /// names (in the hash: which services, not which of their containers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// The same entries with each service replaced by the id of its
    /// container now (`ID[:ro|:rw]`), filled in by the loop right before
    /// the create; what the engine is given. Not in the hash: a service's
    /// container id changes with each of its updates, and this container
    /// keeps the volumes it was given.
    #[serde(skip)]
    pub volumes_from_containers: Vec<String>,
    #[serde(skip_serializing_if = "Network::is_default")]
    pub network: Network,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "crate::units::opt_duration_serde"
    )]
    pub stop_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(skip_serializing_if = "RestartPolicy::is_always")]
    pub restart: RestartPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Host directory mounted at [`OUTPUTS_MOUNT`] (tasks with declared outputs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs_dir: Option<String>,
    /// A deployment's resolved inputs as files, mounted read-only at
    /// [`INPUTS_MOUNT`]. Not in the spec hash: their values are, as env.
    #[serde(skip)]
    pub inputs: Option<InputFiles>,
    /// Config sources, bind-mounted read-only with the Mounts API (a missing
    /// source is an error, never a directory created for it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigBind>,
}

/// A read-only bind mount of a config source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigBind {
    pub source: String,
    pub target: String,
}

/// How a command runs in a container (`docker exec --user --env
/// --privileged`); the default runs it as the container's own user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOptions {
    pub user: Option<String>,
    /// `KEY=VALUE`, added to the container's environment for the command.
    pub env: Vec<String>,
    pub privileged: bool,
}

/// What a command run in a container (`docker exec`) produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Removing,
}

impl ContainerState {
    pub fn parse(s: &str) -> ContainerState {
        match s {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "restarting" => ContainerState::Restarting,
            "paused" => ContainerState::Paused,
            "removing" => ContainerState::Removing,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Exited,
        }
    }
    pub fn is_up(self) -> bool {
        matches!(self, ContainerState::Running | ContainerState::Restarting)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A container as the engine reports it (only berth's own, by node label).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// The `io.berth.service` label.
    pub service: String,
    /// The `io.berth.spec-hash` label.
    pub spec_hash: Option<String>,
    /// The `io.berth.generation` label (informational only: plan never compares it).
    pub generation: Option<u64>,
    /// The `io.berth.config-hash` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    pub state: ContainerState,
    pub exit_code: Option<i64>,
    pub health: Option<Health>,
    pub restart_count: u64,
    /// RFC 3339 as the engine gives it.
    pub started_at: Option<String>,
    /// The engine's restart policy for it now (`None`: not reported, or
    /// one berth never sets). berth sets `no` on a container it puts
    /// aside during an update, so a restarted engine cannot run it beside
    /// its successor; `plan()` restores the spec's when it comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// A create call: the name, the spec, and the labels berth adds.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: String,
    pub spec: CreateSpec,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    /// `repository@sha256:...` for each repository the image was pulled
    /// from (or pushed to): the engine's `RepoDigests`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
}

/// A named volume as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// Its `io.berth.node` label: `None` for a volume berth did not make
    /// (made by hand, by another tool, or by the engine itself at a create
    /// before berth labelled the volumes it makes).
    pub node: Option<String>,
}

/// Something happened to one of berth's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub service: String,
    /// The engine's action: `start`, `die`, `destroy`, `health_status: healthy`, ...
    pub action: String,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stream: LogStream,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Last N lines; `None` for all.
    pub tail: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("the container engine at {endpoint} is unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("no such container {id}")]
    NoSuchContainer { id: String },
    #[error(
        "image `{image}` is not present in the engine; \
         provide it one of three ways: `docker load -i FILE.tar` (or `image: {{load: FILE.tar}}`), \
         `image: {{build: {{context: DIR}}}}` in the spec, or build it locally with `docker build -t {image} DIR`"
    )]
    ImageNotFound { image: String },
    /// The engine does not have `image` and its spec says `pull: never`.
    #[error(
        "image `{image}` is not in the engine and the spec says `pull: never`: \
         load it (`docker load -i FILE.tar`), pull it by hand (`docker pull {image}`), \
         or set `pull: missing`"
    )]
    PullForbidden { image: String },
    /// Pulling `reference` (an image the engine did not have) failed.
    #[error(
        "image `{reference}` is not in the engine and pulling it from {registry} failed: {cause}: {message}{}",
        cause.advice(registry)
    )]
    Pull {
        /// Where the engine pulls it from (`docker.io` for an unqualified name).
        registry: String,
        reference: String,
        cause: PullCause,
        /// The engine's own words.
        message: String,
    },
    #[error("a container named {name} already exists")]
    NameConflict { name: String },
    #[error("engine refused to {op} {target}: {message}")]
    Refused {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error("building image {tag} from {context} failed: {message}")]
    Build {
        tag: String,
        context: String,
        message: String,
    },
    #[error("loading images from {path} failed: {message}")]
    Load { path: String, message: String },
    /// A host file the create needs is not as the deployment recorded it
    /// (an `env_file` unreadable, or changed since the apply); the
    /// message names the file, never a value in it.
    #[error("{message}")]
    HostFile { message: String },
}

impl RuntimeError {
    /// True when the engine could not be reached (retry with backoff, resync later).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RuntimeError::Unreachable { .. })
    }

    /// True for a pull that may well work later: the registry the
    /// reference names was unreachable or failed (5xx). The deployment
    /// retries it with backoff instead of failing. An unqualified name
    /// (Docker Hub, which an offline node never reaches) is not: it fails
    /// at once, as a typo or an image never provided would.
    pub fn is_transient_pull(&self) -> bool {
        matches!(
            self,
            RuntimeError::Pull { registry, cause: PullCause::Unreachable | PullCause::ServerError, .. }
                if registry != "docker.io"
        )
    }
}

/// Why a pull failed, as far as berth tells causes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullCause {
    /// No such repository, tag or digest (`manifest unknown`, 404).
    NotFound,
    /// The registry refused the engine (401/403, `denied`).
    Unauthorized,
    /// The registry answered plain HTTP to the engine's HTTPS.
    PlainHttp,
    /// Any other TLS failure (an untrusted certificate, a bad handshake).
    Tls,
    /// The registry could not be reached (refused, no such host, timeout).
    Unreachable,
    /// The registry answered with a server error (5xx): it is there but
    /// failing, which usually passes.
    ServerError,
    /// The engine's disk is full.
    DiskFull,
    /// berth's registry auth file (berthd's `[images] auth_file`) could not
    /// be read or used; nothing was asked of the registry.
    AuthFile,
    /// Anything else the engine said.
    Other,
}

impl std::fmt::Display for PullCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullCause::NotFound => {
                "not found (no such repository, tag or digest: manifest unknown)"
            }
            PullCause::Unauthorized => {
                "authentication failed (401/403: the registry needs credentials or refused them)"
            }
            PullCause::PlainHttp => "TLS failed: the registry speaks plain HTTP",
            PullCause::Tls => "TLS failed",
            PullCause::Unreachable => "the registry is unreachable",
            PullCause::ServerError => "the registry failed (a 5xx server error)",
            PullCause::DiskFull => "the engine's disk is full",
            PullCause::AuthFile => "the registry auth file cannot be used",
            PullCause::Other => "the engine refused the pull",
        })
    }
}

impl PullCause {
    /// What to do about it, after the engine's message (empty when the
    /// message says all there is).
    pub fn advice(self, registry: &str) -> String {
        const PROVIDE: &str = "; or provide the image on the node: `docker load -i FILE.tar` \
             (or `image: {load: FILE.tar}`), `image: {build: {context: DIR}}` in the spec, \
             or `docker build -t REF DIR`";
        match self {
            PullCause::NotFound | PullCause::Unreachable => PROVIDE.to_string(),
            PullCause::PlainHttp => format!(
                " (the engine uses plain HTTP only for registries on 127.0.0.0/8 and those \
                 listed in its `insecure-registries` (/etc/docker/daemon.json): add {registry} \
                 there and restart the engine, or serve the registry over TLS)"
            ),
            PullCause::Tls => format!(
                " (the engine does not trust {registry}'s certificate: install its CA under \
                 /etc/docker/certs.d/{registry}/ca.crt; a plain-HTTP registry must be listed \
                 in the engine's `insecure-registries`)"
            ),
            // The message says what was sent (no auth file, no entry, or
            // the entry's credentials refused).
            PullCause::Unauthorized => format!(
                " (berth pulls with the credentials for {registry} in the docker/podman auth \
                 file berthd's `[images] auth_file` names; `docker --config DIR login {registry}` \
                 writes DIR/config.json{PROVIDE})"
            ),
            PullCause::ServerError
            | PullCause::DiskFull
            | PullCause::AuthFile
            | PullCause::Other => String::new(),
        }
    }
}

/// The registry an image reference is pulled from, as the engine decides
/// it: the first path component when it has a `.` or a `:` or is
/// `localhost`, else `docker.io`.
pub fn image_registry(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The repository of a reference: without its tag and digest.
pub fn image_repository(reference: &str) -> &str {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    }
}

/// A reference split for a pull: the repository and the tag or digest
/// (`latest` when it names neither: a pull without one would fetch every tag).
pub fn pull_parts(reference: &str) -> (&str, &str) {
    if let Some((_, digest)) = reference.split_once('@') {
        // `name:tag@digest` pulls by the digest (the engine ignores the tag).
        return (image_repository(reference), digest);
    }
    let repository = image_repository(reference);
    match reference[repository.len()..].strip_prefix(':') {
        Some(tag) if !tag.is_empty() => (repository, tag),
        _ => (repository, "latest"),
    }
}

/// The entry of `digests` (an image's `RepoDigests`) for `reference`'s
/// repository: the digest the reference resolved to when it was pulled.
/// Docker Hub names compare in both their short and full forms.
pub fn repo_digest_for(reference: &str, digests: &[String]) -> Option<String> {
    fn familiar(repository: &str) -> &str {
        let r = repository.strip_prefix("docker.io/").unwrap_or(repository);
        r.strip_prefix("library/").unwrap_or(r)
    }
    let wanted = familiar(image_repository(reference));
    digests
        .iter()
        .find(|d| {
            d.split_once('@')
                .is_some_and(|(repo, digest)| familiar(repo) == wanted && digest.contains(':'))
        })
        .cloned()
}

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// The container engine, as berth needs it.
pub trait Runtime: Send + Sync + 'static {
    /// Every container carrying this node's label, stopped ones included.
    fn list(&self) -> impl Future<Output = Result<Vec<ObservedContainer>, RuntimeError>> + Send;
    /// `None` when the engine has no such image.
    fn inspect_image(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, RuntimeError>> + Send;
    /// Creates (does not start) a container; returns its id. The node label is
    /// added by the implementation.
    fn create(
        &self,
        req: &CreateRequest,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Stops with the container's own stop signal and timeout.
    fn stop(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn restart(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Sends `signal` (e.g. `SIGHUP`) to the container's main process.
    fn kill(&self, id: &str, signal: &str)
    -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Runs `argv` in the running container and waits for it (output capped
    /// by the implementation at [`crate::record::OUTPUT_CAP`] per stream).
    fn exec(
        &self,
        id: &str,
        argv: &[String],
        options: &ExecOptions,
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;
    /// Removes a container (forcefully: it is killed if running).
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn rename(
        &self,
        id: &str,
        new_name: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Changes the restart policy of an existing container (Docker's
    /// container update): `Never` while it is set aside, the spec's again
    /// when it is swapped back.
    fn set_restart_policy(
        &self,
        id: &str,
        policy: RestartPolicy,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Builds `context` (a directory) into an image tagged `tag`; returns its id.
    fn build(
        &self,
        context: &str,
        dockerfile: Option<&str>,
        tag: &str,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    /// Pulls `reference` from its registry (with the credentials the
    /// runtime was configured with, and the engine's settings); the image
    /// is then in the engine under that reference. It tells `progress` how
    /// far it has come as the engine reports it (layers and bytes so far,
    /// each call the sums anew); a runtime that cannot tell says nothing.
    /// Failures are [`RuntimeError::Pull`] (or `Unreachable`: the engine).
    fn pull_with_progress(
        &self,
        reference: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// [`Runtime::pull_with_progress`] with nobody listening.
    fn pull(&self, reference: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        self.pull_with_progress(reference, &|_| {})
    }
    /// Containers another tool started (no `io.berth.node` label; a
    /// `managed_by` label of paunch, tripleo_ansible, a paunch-era
    /// `tripleo-<Role>` or docker-cmd), stopped ones included, read back
    /// with what their images define. Read-only: nothing is changed, and
    /// none of them becomes berth's by being listed. A runtime that cannot
    /// read containers back refuses.
    fn list_foreign(
        &self,
    ) -> impl Future<Output = Result<Vec<crate::adopt::ForeignContainer>, RuntimeError>> + Send
    {
        async {
            Err(RuntimeError::Refused {
                op: "list",
                target: "containers other tools started".to_string(),
                message: "this runtime cannot read foreign containers back".to_string(),
            })
        }
    }
    /// Loads a `docker save` tarball; returns the references it brought.
    fn load(&self, path: &str) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Images with a tag starting with `repository_prefix` (e.g. `berth-build/web:`).
    fn list_images(
        &self,
        repository_prefix: &str,
    ) -> impl Future<Output = Result<Vec<ImageInfo>, RuntimeError>> + Send;
    /// Removes an image berth built (never forcefully: an image in use stays).
    fn remove_image(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The named volume `name`; `None` when the engine has no such volume.
    fn inspect_volume(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<VolumeInfo>, RuntimeError>> + Send;
    /// Every named volume carrying this node's label.
    fn list_volumes(&self) -> impl Future<Output = Result<Vec<VolumeInfo>, RuntimeError>> + Send;
    /// Removes a named volume that carries this node's label, never
    /// forcefully: one a container still uses stays ([`RuntimeError::Refused`]),
    /// and so does one without this node's label. A missing one is `Ok`.
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Logs of a container, stdout and stderr told apart.
    fn logs(&self, id: &str, opts: LogOptions) -> BoxStream<Result<LogChunk, RuntimeError>>;
    /// Events about this node's containers. The stream ends when the engine
    /// goes away; the caller then resyncs with [`Runtime::list`].
    fn events(&self) -> BoxStream<Result<RuntimeEvent, RuntimeError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_as_the_engine_names_them() {
        assert_eq!(image_registry("nginx:1"), "docker.io");
        assert_eq!(image_registry("library/nginx"), "docker.io");
        assert_eq!(image_registry("ns/name:tag"), "docker.io");
        assert_eq!(image_registry("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000");
        assert_eq!(
            image_registry("undercloud.ctlplane:8787/tripleo/nova:1"),
            "undercloud.ctlplane:8787"
        );
        assert_eq!(
            image_registry("quay.io/prometheus/node-exporter"),
            "quay.io"
        );
        assert_eq!(image_registry("localhost/x"), "localhost");
    }

    #[test]
    fn references_split_into_repository_and_tag_or_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(pull_parts("nginx"), ("nginx", "latest"));
        assert_eq!(pull_parts("nginx:1.25"), ("nginx", "1.25"));
        assert_eq!(pull_parts("reg:5000/ns/n"), ("reg:5000/ns/n", "latest"));
        assert_eq!(pull_parts("reg:5000/ns/n:t"), ("reg:5000/ns/n", "t"));
        assert_eq!(
            pull_parts(&format!("reg:5000/ns/n@{d}")),
            ("reg:5000/ns/n", d.as_str())
        );
        assert_eq!(
            pull_parts(&format!("reg:5000/n:t@{d}")),
            ("reg:5000/n", d.as_str())
        );
        assert_eq!(image_repository(&format!("reg:5000/n:t@{d}")), "reg:5000/n");
        assert_eq!(image_repository("reg:5000/n"), "reg:5000/n");
    }

    #[test]
    fn the_digest_recorded_is_the_one_of_the_references_repository() {
        let digests = vec![
            "127.0.0.1:5000/other@sha256:111".to_string(),
            "127.0.0.1:5000/web@sha256:222".to_string(),
            "nginx@sha256:333".to_string(),
        ];
        assert_eq!(
            repo_digest_for("127.0.0.1:5000/web:1", &digests).as_deref(),
            Some("127.0.0.1:5000/web@sha256:222")
        );
        assert_eq!(
            repo_digest_for("docker.io/library/nginx:1", &digests).as_deref(),
            Some("nginx@sha256:333")
        );
        assert_eq!(repo_digest_for("127.0.0.1:5000/none:1", &digests), None);
        assert_eq!(repo_digest_for("berth-demo:latest", &[]), None);
    }

    #[test]
    fn only_a_named_registry_that_is_away_or_failing_is_retried() {
        let pull = |registry: &str, cause| RuntimeError::Pull {
            registry: registry.into(),
            reference: format!("{registry}/web:2"),
            cause,
            message: String::new(),
        };
        assert!(pull("10.0.0.1:8787", PullCause::Unreachable).is_transient_pull());
        assert!(pull("reg.example", PullCause::ServerError).is_transient_pull());
        // Docker Hub, which an offline node never reaches: a typo or an
        // image never provided fails at once.
        assert!(!pull("docker.io", PullCause::Unreachable).is_transient_pull());
        for cause in [
            PullCause::NotFound,
            PullCause::Unauthorized,
            PullCause::Tls,
            PullCause::PlainHttp,
            PullCause::DiskFull,
            PullCause::AuthFile,
            PullCause::Other,
        ] {
            assert!(!pull("10.0.0.1:8787", cause).is_transient_pull(), "{cause}");
        }
        assert!(
            !RuntimeError::Unreachable {
                endpoint: "unix:///run/docker.sock".into(),
                reason: "gone".into()
            }
            .is_transient_pull()
        );
    }

    #[test]
    fn pull_failures_name_the_registry_the_reference_and_the_cause() {
        let e = RuntimeError::Pull {
            registry: "127.0.0.1:5000".into(),
            reference: "127.0.0.1:5000/web:9".into(),
            cause: PullCause::NotFound,
            message: "manifest unknown".into(),
        };
        let text = e.to_string();
        for part in [
            "127.0.0.1:5000/web:9",
            "from 127.0.0.1:5000",
            "not found",
            "docker load",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(
            !e.is_unreachable(),
            "a registry away is not the engine away"
        );
        let e = RuntimeError::Pull {
            registry: "uc:8787".into(),
            reference: "uc:8787/x:1".into(),
            cause: PullCause::PlainHttp,
            message: "server gave HTTP response to HTTPS client".into(),
        };
        let text = e.to_string();
        assert!(text.contains("`insecure-registries`"), "{text}");
        assert!(text.contains("add uc:8787 there"), "{text}");
        let e = RuntimeError::Pull {
            registry: "ghcr.io".into(),
            reference: "ghcr.io/acme/private:1".into(),
            cause: PullCause::Unauthorized,
            message: "denied".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains(
                "authentication failed (401/403: the registry needs credentials or refused them): \
                 denied (berth pulls with the credentials for ghcr.io in the docker/podman auth \
                 file berthd's `[images] auth_file` names; `docker --config DIR login ghcr.io` \
                 writes DIR/config.json; or provide the image on the node: `docker load"
            ),
            "{text}"
        );
        assert!(!text.contains("sends no registry credentials"), "{text}");
    }
}
