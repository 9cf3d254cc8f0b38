//! The validated service spec: what an operator declares for one service.
//!
//! Operator input never reaches these types through serde: it goes through
//! [`crate::parse`], which keeps positions and names the field on every error.
//! The serde derives here are for records and API DTOs, which are read
//! tolerantly (unknown fields ignored, missing fields defaulted).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{duration_serde, opt_duration_serde};

pub mod env_file;

/// A service name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// One service, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ServiceSpec {
    pub name: String,
    /// None (an empty reference) only for an `exec_in` task.
    #[serde(skip_serializing_if = "ImageSource::is_none")]
    pub image: ImageSource,
    /// When a reference `image` is pulled from its registry. A policy
    /// field: not in the spec hash (the image id it resolves to is).
    #[serde(skip_serializing_if = "PullPolicy::is_default")]
    pub pull: PullPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Host files in Docker's env-file format (absolute once berthctl
    /// resolved them), read by berthd at each apply ([`env_file`]); their
    /// values are secrets: they reach the container's env, under `env`'s
    /// own entries (later files win over earlier ones), and only a digest
    /// of them is kept (`Deployment::env_file_digest`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Other services of this node whose containers' volumes this one
    /// mounts too: `SERVICE`, `SERVICE:ro` or `SERVICE:rw` (Docker's
    /// `--volumes-from`, with berth service names). Each is also an implicit
    /// `depends_on` (`started`, [`crate::waves::dependencies`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(skip_serializing_if = "Network::is_default")]
    pub network: Network,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    /// `host` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// `host`, `private`, `shareable` or `container:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// `host`: the host's UTS namespace (its hostname).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// The container's hostname (not with `uts: host`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `NAME:IP` lines added to the container's `/etc/hosts`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Supplementary groups of the container's user: names or ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// A pseudo-terminal for the container's process.
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    /// Keep the container's stdin open.
    #[serde(skip_serializing_if = "is_false")]
    pub interactive: bool,
    #[serde(skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_serde")]
    pub stop_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `None` means the kind's default: `always` for services, `never` for tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    #[serde(skip_serializing_if = "DesiredState::is_default")]
    pub state: DesiredState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Kind::is_default")]
    pub kind: Kind,
    /// A task that runs its `command` in another service's running
    /// container (`docker exec`) instead of a container of its own, as
    /// paunch's `action: exec`: no image, run when its spec changes and
    /// again when that service gets a new container. An implicit
    /// `depends_on` (`started`, [`crate::waves::dependencies`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_in: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// A task's exit codes that count as success (empty: only 0), as
    /// paunch's `exit_codes`. A policy field: not in the spec hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<i64>,
    #[serde(skip_serializing_if = "UpdatePolicy::is_default")]
    pub update: UpdatePolicy,
    /// Configuration sources: mounted read-only, watched, re-applied on change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigMount>,
    /// Host (systemd) units that must be active before the container is
    /// started; berth waits for them, it never starts them. Full unit names
    /// (see [`normalize_unit_name`]). A policy field: not in the spec hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_units: Vec<String>,
    /// As `after_units`, and while one of them is not active (stopped,
    /// failed) the container is stopped; it is started again once they all
    /// are. A policy field: not in the spec hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires_units: Vec<String>,
    /// Hooks around updates and deletes (`kind: service` only; see
    /// [`crate::hooks`]). A policy field: not in the spec hash.
    #[serde(skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// Services whose state this one's deployments wait for (see
    /// [`crate::waves`]). A policy field: not in the spec hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Values the container gets as env `BERTH_INPUT_<NAME>` and as files
    /// under `/berth/inputs/`: plain, or another task's declared output.
    /// What they resolve to is in the record (`Deployment::inputs`) and,
    /// through the env, in the spec hash.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, InputSource>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A host unit name as written in `after_units` / `requires_units`, made
/// full: a name without any `.` gets `.service` appended (as `systemctl`
/// does: `postgresql` means `postgresql.service`); a name with a `.` must
/// end in a unit type (`.service`, `.mount`, `.target`, ...), so a typo like
/// `db.servce` is refused rather than silently watched as
/// `db.servce.service`. Then checked the way systemd checks unit names.
pub fn normalize_unit_name(name: &str) -> Result<String, String> {
    let full = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    crate::host::validate_unit_name(&full).map_err(|e| format!("{e}, e.g. postgresql.service"))?;
    Ok(full)
}

impl ServiceSpec {
    /// Whether a task that exited with `code` succeeded: `code` is in
    /// `exit_codes`, or 0 when none are listed.
    pub fn task_succeeded(&self, code: i64) -> bool {
        if self.exit_codes.is_empty() {
            code == 0
        } else {
            self.exit_codes.contains(&code)
        }
    }

    /// The restart policy in force, with the kind's default applied.
    pub fn effective_restart(&self) -> RestartPolicy {
        self.restart.unwrap_or(match self.kind {
            Kind::Service => RestartPolicy::Always,
            Kind::Task => RestartPolicy::Never,
        })
    }

    /// Makes relative `build.context`, `load`, `config[].source` and `env_file` paths absolute against
    /// `base` (the spec file's directory). `build.dockerfile` stays as it is:
    /// like Docker's, it is a path inside the context. Pure path arithmetic:
    /// nothing is read.
    pub fn resolve_relative_paths(&mut self, base: &std::path::Path) {
        let abs = |p: &mut String| {
            if !p.is_empty() && !p.starts_with('/') {
                *p = relative_to(base, p).to_string_lossy().into_owned();
            }
        };
        match &mut self.image {
            ImageSource::Ref(_) => {}
            ImageSource::Build { build } => abs(&mut build.context),
            ImageSource::Load { load } => abs(load),
        }
        for m in &mut self.config {
            abs(&mut m.source);
        }
        for p in &mut self.env_file {
            abs(p);
        }
    }

    /// The services `volumes_from` names (each entry without its `:ro` /
    /// `:rw`), in order.
    pub fn volumes_from_services(&self) -> impl Iterator<Item = &str> {
        self.volumes_from
            .iter()
            .map(|v| v.split_once(':').map_or(v.as_str(), |(s, _)| s))
    }

    /// Every host unit the service orders against (`requires_units` first),
    /// each once.
    pub fn host_units(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for u in self.requires_units.iter().chain(&self.after_units) {
            if !out.contains(u) {
                out.push(u.clone());
            }
        }
        out
    }

    /// A copy with every secret replaced, for output that leaves the
    /// daemon: secret env values, and the query and user info of http
    /// hook URLs (where a hook endpoint's token lives).
    pub fn redacted(&self) -> ServiceSpec {
        let mut spec = self.clone();
        for value in spec.env.values_mut() {
            if value.secret {
                value.value = crate::REDACTED.to_string();
            }
        }
        for hook in spec
            .hooks
            .pre_update
            .iter_mut()
            .chain(&mut spec.hooks.post_update)
            .chain(&mut spec.hooks.pre_delete)
        {
            if let HookKind::Http(url) = &mut hook.kind {
                *url = crate::heat::redact_url(url);
            }
        }
        spec
    }
}

/// Where the image comes from: a reference the engine has, or pulls from its
/// registry when it has not (`pull: missing`), or an image berth builds or loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSource {
    Ref(String),
    Build { build: BuildSpec },
    Load { load: String },
}

impl ImageSource {
    /// No image: an `exec_in` task's (it runs in another service's
    /// container).
    pub fn is_none(&self) -> bool {
        matches!(self, ImageSource::Ref(r) if r.is_empty())
    }
}

impl Default for ImageSource {
    fn default() -> Self {
        ImageSource::Ref(String::new())
    }
}

/// `path` (relative) taken from `base`: `.` components dropped, `..` kept
/// (with symlinks it cannot be resolved by text alone).
pub fn relative_to(base: &std::path::Path, path: &str) -> std::path::PathBuf {
    let mut out = base.to_path_buf();
    for c in std::path::Path::new(path).components() {
        if c != std::path::Component::CurDir {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// Absolute after berthctl resolved it against the spec file's directory.
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EnvValueRepr", into = "EnvValueRepr")]
pub struct EnvValue {
    pub value: String,
    pub secret: bool,
}

impl EnvValue {
    pub fn plain(value: impl Into<String>) -> Self {
        EnvValue {
            value: value.into(),
            secret: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum EnvValueRepr {
    Plain(String),
    Marked {
        value: String,
        #[serde(default)]
        secret: bool,
    },
}

impl From<EnvValueRepr> for EnvValue {
    fn from(r: EnvValueRepr) -> Self {
        match r {
            EnvValueRepr::Plain(value) => EnvValue {
                value,
                secret: false,
            },
            EnvValueRepr::Marked { value, secret } => EnvValue { value, secret },
        }
    }
}

impl From<EnvValue> for EnvValueRepr {
    fn from(v: EnvValue) -> Self {
        if v.secret {
            EnvValueRepr::Marked {
                value: v.value,
                secret: true,
            }
        } else {
            EnvValueRepr::Plain(v.value)
        }
    }
}

/// `HOST:CONTAINER[:OPTIONS]`; HOST is an absolute path or a named volume.
/// OPTIONS, comma-separated, each at most once: `ro` or `rw`, `z` or `Z`
/// (SELinux relabel), and for a host path one mount propagation
/// (`shared`, `slave`, `private`, `rshared`, `rslave`, `rprivate`).
///
/// Written back (records, the spec hash) as `HOST:CONTAINER:ro|rw`
/// followed by `,PROPAGATION` and `,z|Z` when set, in that order: a volume
/// without options reads exactly as before they existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Volume {
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// `z` / `Z`: the engine relabels the content for SELinux.
    pub relabel: Option<Relabel>,
    /// Mount propagation of a host path.
    pub propagation: Option<Propagation>,
}

/// A volume's SELinux relabel option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relabel {
    /// `z`: a label shared by every container that mounts the content.
    Shared,
    /// `Z`: a label private to this container.
    Private,
}

impl Relabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Relabel::Shared => "z",
            Relabel::Private => "Z",
        }
    }
}

/// A bind mount's propagation, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Shared,
    Slave,
    Private,
    RShared,
    RSlave,
    RPrivate,
}

impl Propagation {
    pub const ALL: [Propagation; 6] = [
        Propagation::Shared,
        Propagation::Slave,
        Propagation::Private,
        Propagation::RShared,
        Propagation::RSlave,
        Propagation::RPrivate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Shared => "shared",
            Propagation::Slave => "slave",
            Propagation::Private => "private",
            Propagation::RShared => "rshared",
            Propagation::RSlave => "rslave",
            Propagation::RPrivate => "rprivate",
        }
    }
}

/// Every volume option, in the order messages list them.
pub const VOLUME_OPTIONS: &str = "ro, rw, z, Z, shared, slave, private, rshared, rslave, rprivate";

impl Volume {
    pub fn parse(s: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, options) = match parts.as_slice() {
            [source, target] => (*source, *target, None),
            [source, target, options] => (*source, *target, Some(*options)),
            _ => {
                return Err(format!(
                    "`{s}` is not HOST:CONTAINER[:OPTIONS] (e.g. /srv/web:/data:rw or \
                     /srv/web:/data:ro,z)"
                ));
            }
        };
        if source.is_empty() || target.is_empty() {
            return Err(format!("`{s}`: both HOST and CONTAINER must be non-empty"));
        }
        if !target.starts_with('/') {
            return Err(format!(
                "`{s}`: the container path `{target}` must be absolute"
            ));
        }
        let mut volume = Volume {
            source: source.to_string(),
            target: target.to_string(),
            read_only: false,
            relabel: None,
            propagation: None,
        };
        let Some(options) = options else {
            return Ok(volume);
        };
        // The option that set each group, to name both in a conflict.
        let (mut mode, mut label, mut propagation): (Option<&str>, Option<&str>, Option<&str>) =
            (None, None, None);
        for option in options.split(',') {
            let (slot, group) = match option {
                "ro" | "rw" => (&mut mode, "`ro` or `rw`"),
                "z" | "Z" => (&mut label, "`z` or `Z`"),
                p if Propagation::ALL.iter().any(|x| x.as_str() == p) => {
                    (&mut propagation, "propagation")
                }
                "" => {
                    return Err(format!(
                        "`{s}`: an empty option; give options separated by single commas, \
                         e.g. ro,z (valid options: {VOLUME_OPTIONS})"
                    ));
                }
                other => {
                    return Err(format!(
                        "`{s}`: unknown option `{other}`; valid options: {VOLUME_OPTIONS} \
                         (combine with commas, e.g. ro,z or shared,z)"
                    ));
                }
            };
            if let Some(first) = slot {
                return Err(format!(
                    "`{s}`: `{first}` and `{option}` both set the {group} option; keep one"
                ));
            }
            *slot = Some(option);
        }
        volume.read_only = mode == Some("ro");
        volume.relabel = label.map(|l| {
            if l == "z" {
                Relabel::Shared
            } else {
                Relabel::Private
            }
        });
        volume.propagation = Propagation::ALL
            .into_iter()
            .find(|p| Some(p.as_str()) == propagation);
        if let Some(p) = volume.propagation
            && !volume.is_host_path()
        {
            return Err(format!(
                "`{s}`: propagation `{}` applies to a host path only (a bind mount), not to \
                 the named volume `{source}`; remove it, or mount an absolute host path",
                p.as_str()
            ));
        }
        Ok(volume)
    }

    /// A host path (absolute) rather than a named volume.
    pub fn is_host_path(&self) -> bool {
        self.source.starts_with('/')
    }

    /// The options as the engine's bind string takes them: `ro` or `rw`,
    /// then the propagation and the relabel option when set (`rw,shared,z`).
    pub fn options(&self) -> String {
        let mut out = String::from(if self.read_only { "ro" } else { "rw" });
        for extra in [
            self.propagation.map(Propagation::as_str),
            self.relabel.map(Relabel::as_str),
        ]
        .into_iter()
        .flatten()
        {
            out.push(',');
            out.push_str(extra);
        }
        out
    }
}

impl TryFrom<String> for Volume {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Volume::parse(&s)
    }
}

impl From<Volume> for String {
    fn from(v: Volume) -> String {
        format!("{}:{}:{}", v.source, v.target, v.options())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Bridge,
    Host,
    None,
    #[serde(untagged)]
    Named(String),
}

impl Network {
    pub fn is_default(&self) -> bool {
        *self == Network::Bridge
    }
    pub fn as_mode(&self) -> &str {
        match self {
            Network::Bridge => "bridge",
            Network::Host => "host",
            Network::None => "none",
            Network::Named(n) => n,
        }
    }
}

/// `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]`, or `CONTAINER_PORT[/proto]`
/// for an engine-chosen host port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortMapping {
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl PortMapping {
    pub fn parse(s: &str) -> Result<PortMapping, String> {
        let hint = "expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], e.g. 8080:80";
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((_, other)) => return Err(format!("`{s}`: protocol `{other}`; {hint}")),
            None => (s, Protocol::Tcp),
        };
        let port = |p: &str| -> Result<u16, String> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("`{s}`: `{p}` is not a port (1-65535); {hint}")),
                Ok(n) => Ok(n),
            }
        };
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [c] => (None, None, port(c)?),
            [c, h] => (None, Some(port(h)?), port(c)?),
            [c, h, ip] => (Some((*ip).to_string()), Some(port(h)?), port(c)?),
            _ => return Err(format!("`{s}`: {hint}")),
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
    }
}

impl TryFrom<String> for PortMapping {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PortMapping::parse(&s)
    }
}

impl From<PortMapping> for String {
    fn from(p: PortMapping) -> String {
        let mut s = String::new();
        if let Some(ip) = &p.host_ip {
            s.push_str(ip);
            s.push(':');
        }
        if let Some(h) = p.host_port {
            s.push_str(&h.to_string());
            s.push(':');
        }
        s.push_str(&p.container_port.to_string());
        s.push('/');
        s.push_str(p.protocol.as_str());
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPUs in billionths (Docker's NanoCpus), so the value hashes exactly.
    /// Written as `cpus` (a number of CPUs), as operators write it.
    #[serde(
        rename = "cpus",
        skip_serializing_if = "Option::is_none",
        with = "nano_cpus_serde"
    )]
    pub nano_cpus: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// The relative CPU weight (Docker's `--cpu-shares`, 2 to 262144).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// The CPUs the container may run on, e.g. `0-3,6`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// `logging`: the json-file driver's rotation (`max_size` and `max_files`,
/// both or neither) and its `tag` (paunch's `log_tag`). A field left out
/// is left out of the record and the spec hash: rotation alone reads and
/// hashes as it did before `tag` existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    /// Bytes per file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_files: Option<u32>,
    /// The driver's `tag` log option: how its lines are tagged (text, or a
    /// Docker template such as `{{.Name}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `pull:`: when the engine pulls a reference image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Only when the engine does not have the reference (a tag the engine
    /// has is used as it is, even if the registry's has moved).
    #[default]
    Missing,
    /// On every apply that names the service (`berthctl apply`, an API
    /// apply, a new Heat document, a spec file whose service changed),
    /// so a moved tag is picked up; never on a resync, a berthd restart or
    /// a Heat document seen before.
    Always,
    /// Never: the engine must have it (loaded or pulled by hand).
    Never,
}

impl PullPolicy {
    pub fn is_default(&self) -> bool {
        *self == PullPolicy::Missing
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
    /// As `always`, but a container stopped on purpose stays stopped when
    /// the engine itself restarts (paunch's `unless-stopped`).
    UnlessStopped,
}

impl RestartPolicy {
    pub fn is_always(&self) -> bool {
        *self == RestartPolicy::Always
    }
    /// The engine's name for it.
    pub fn engine_name(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "no",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

impl DesiredState {
    pub fn is_default(&self) -> bool {
        *self == DesiredState::Running
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// The check's command, run directly (Docker's `CMD` form); empty when
    /// `test` is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<String>,
    /// The check as one shell string (Docker's `CMD-SHELL`: `/bin/sh -c`
    /// in the container, which must have a shell), as TripleO writes it:
    /// `test: "/openstack/healthcheck 5672"`. Exactly one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(with = "duration_serde")]
    pub interval: Duration,
    #[serde(with = "duration_serde")]
    pub timeout: Duration,
    pub retries: u32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_serde"
    )]
    pub start_period: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Service,
    Task,
}

impl Kind {
    pub fn is_default(&self) -> bool {
        *self == Kind::Service
    }
}

/// How berth judges and rolls out an update. Outside the spec hash: changing it
/// makes a record and touches no container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpdatePolicy {
    /// How long a new container must keep running before the deployment is COMPLETE.
    #[serde(with = "duration_serde")]
    pub settle: Duration,
    /// With a healthcheck: how long it may take to become healthy.
    #[serde(with = "duration_serde")]
    pub health_timeout: Duration,
    /// What a failed update does: swap the previous container back (`auto`)
    /// or leave the deployment FAILED (`none`).
    #[serde(skip_serializing_if = "RollbackPolicy::is_auto")]
    pub rollback: RollbackPolicy,
}

/// `update.rollback`: what happens when an update fails its health gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RollbackPolicy {
    /// The container set aside by the update is swapped back and started
    /// (a ROLLBACK record); the failed record becomes ROLLED_BACK.
    #[default]
    Auto,
    /// The failed record stays FAILED and its container stays in place.
    None,
}

impl RollbackPolicy {
    pub fn is_auto(&self) -> bool {
        *self == RollbackPolicy::Auto
    }
}

pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            settle: DEFAULT_SETTLE,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            rollback: RollbackPolicy::Auto,
        }
    }
}

impl UpdatePolicy {
    pub fn is_default(&self) -> bool {
        *self == UpdatePolicy::default()
    }
}

mod nano_cpus_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_f64(*n as f64 / 1e9),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(|c| (c * 1e9).round() as u64))
    }
}

/// One configuration source of a service: a host file or directory mounted
/// read-only at `target`, whose *content* is watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMount {
    /// Absolute host path (file or directory; may be a symlink).
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub on_change: OnChange,
}

/// What a content change of a config source does to the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnChange {
    /// Restart the container (it keeps its identity; mounts are re-resolved).
    #[default]
    Restart,
    /// A new container, create-then-swap; the config hash is part of its identity.
    Recreate,
    /// Send a signal to the container's main process.
    Signal(String),
    /// Run a command in the container; non-zero exit fails the reconfigure.
    Exec(Vec<String>),
    /// Only record the change.
    None,
}

impl OnChange {
    /// How strong the reaction is: when several sources change at once the
    /// strongest one wins (a new container sees every change).
    pub fn strength(&self) -> u8 {
        match self {
            OnChange::None => 0,
            OnChange::Signal(_) | OnChange::Exec(_) => 1,
            OnChange::Restart => 2,
            OnChange::Recreate => 3,
        }
    }

    /// Whether the reaction reloads in place (the container keeps running and
    /// its mounts are not re-resolved).
    pub fn in_place(&self) -> bool {
        matches!(self, OnChange::Signal(_) | OnChange::Exec(_))
    }

    pub fn describe(&self) -> String {
        match self {
            OnChange::Restart => "restart".into(),
            OnChange::Recreate => "recreate".into(),
            OnChange::Signal(s) => format!("signal {s}"),
            OnChange::Exec(argv) => format!("exec {}", argv.join(" ")),
            OnChange::None => "none".into(),
        }
    }
}

/// What a config source turned out to be on the host (read by whoever may do
/// I/O: `berthctl check`, berthd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Directory,
    File,
    /// The source path itself is a symlink (to a file or a directory).
    Symlink,
}

/// The one combination berth refuses: an in-place reload (`signal`/`exec`)
/// of a source whose bind mount would keep showing the old content. A bind
/// mount of a file pins its inode, so a new file renamed into place (what
/// editors and config tools do) is invisible; a symlinked source is resolved
/// once, when the container starts. Returns the message, naming the fix.
pub fn config_source_problem(mount: &ConfigMount, kind: SourceKind) -> Option<String> {
    if !mount.on_change.in_place() {
        return None;
    }
    let what = match kind {
        SourceKind::Directory => return None,
        SourceKind::File => "a file",
        SourceKind::Symlink => "a symlink",
    };
    Some(format!(
        "source {} is {what}, and on_change: {} reloads in place: the container would keep \
         seeing the old content after the file is replaced (a bind mount pins the file it \
         was given). Mount the directory that holds it instead (source: its parent \
         directory, target: a directory), or use on_change: restart or recreate",
        mount.source,
        mount.on_change.describe()
    ))
}

/// `hooks:` of a service: what runs, or waits, around its updates and
/// deletes. Each phase runs its hooks in order; the first that aborts stops
/// the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Hooks {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_update: Vec<Hook>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_update: Vec<Hook>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pre_delete: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre_update.is_empty() && self.post_update.is_empty() && self.pre_delete.is_empty()
    }

    pub fn phase(&self, phase: HookPhase) -> &[Hook] {
        match phase {
            HookPhase::PreUpdate => &self.pre_update,
            HookPhase::PostUpdate => &self.post_update,
            HookPhase::PreDelete => &self.pre_delete,
        }
    }
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPhase {
    PreUpdate,
    PostUpdate,
    PreDelete,
}

impl HookPhase {
    pub const ALL: [HookPhase; 3] = [
        HookPhase::PreUpdate,
        HookPhase::PostUpdate,
        HookPhase::PreDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreUpdate => "pre_update",
            HookPhase::PostUpdate => "post_update",
            HookPhase::PreDelete => "pre_delete",
        }
    }

    pub fn parse(s: &str) -> Option<HookPhase> {
        HookPhase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for HookPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook: what it does, where, how long it may take, and what its
/// timeout means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    #[serde(flatten)]
    pub kind: HookKind,
    /// Where an exec hook runs (`where:`); breakpoints and http hooks run
    /// nowhere and keep the default.
    #[serde(
        default,
        rename = "where",
        skip_serializing_if = "HookPlace::is_container"
    )]
    pub place: HookPlace,
    /// `None`: the kind's default ([`Hook::effective_timeout`]).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_duration_serde"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "OnTimeout::is_abort")]
    pub on_timeout: OnTimeout,
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// Waits until cleared (`berthctl hook clear SERVICE PHASE`).
    Breakpoint {},
    /// Runs a command ([`HookPlace`] says where): exit 0 proceeds,
    /// anything else aborts.
    Exec(Vec<String>),
    /// POSTs the deployment (secrets redacted) to this URL: 2xx proceeds,
    /// 409 or 423 means "not yet" (asked again, with backoff), anything
    /// else aborts.
    Http(String),
}

/// `where:` of an exec hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPlace {
    /// In the service's container: the old one for `pre_update` and
    /// `pre_delete`, the new one for `post_update`.
    #[default]
    Container,
    /// On the host, as a transient systemd unit (`berth-hook-*.service`).
    Host,
}

impl HookPlace {
    pub fn is_container(&self) -> bool {
        *self == HookPlace::Container
    }
}

/// The default timeout of an exec hook.
pub const DEFAULT_EXEC_HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// The default timeout of an http hook (its retries included).
pub const DEFAULT_HTTP_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

impl Hook {
    /// The timeout in force: the hook's own, else its kind's default (a
    /// breakpoint waits for ever).
    pub fn effective_timeout(&self) -> Option<Duration> {
        self.timeout.or(match self.kind {
            HookKind::Breakpoint {} => None,
            HookKind::Exec(_) => Some(DEFAULT_EXEC_HOOK_TIMEOUT),
            HookKind::Http(_) => Some(DEFAULT_HTTP_HOOK_TIMEOUT),
        })
    }

    /// One line naming the hook, e.g. `breakpoint`, `exec /demo drain`,
    /// `exec on the host /usr/bin/drain`, `http https://ci/hook?<redacted>`
    /// (an http hook's query and user info never show).
    pub fn describe(&self) -> String {
        match (&self.kind, self.place) {
            (HookKind::Breakpoint {}, _) => "breakpoint".into(),
            (HookKind::Exec(argv), HookPlace::Container) => format!("exec {}", argv.join(" ")),
            (HookKind::Exec(argv), HookPlace::Host) => {
                format!("exec on the host {}", argv.join(" "))
            }
            (HookKind::Http(url), _) => {
                format!("http {}", crate::heat::redact_url(url))
            }
        }
    }
}

/// `on_timeout`: what a hook that ran out of time does to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    #[default]
    Abort,
    Proceed,
}

impl OnTimeout {
    pub fn is_abort(&self) -> bool {
        *self == OnTimeout::Abort
    }
}

/// One `depends_on` entry: wait until `service` is in `condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    #[serde(default)]
    pub condition: Condition,
}

/// What a dependency must have reached before a dependent's deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its container runs (for a task: it ran and its newest deployment is
    /// COMPLETE, since a task's container does not stay up).
    #[default]
    Started,
    /// Its healthcheck passes (a dependency without one is refused).
    Healthy,
    /// Its newest deployment is COMPLETE.
    Completed,
    /// Its newest deployment ended: COMPLETE, FAILED or ROLLED_BACK.
    Ended,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::Started,
        Condition::Healthy,
        Condition::Completed,
        Condition::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::Completed => "completed",
            Condition::Ended => "ended",
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `inputs` entry: a plain value, or `{from: SERVICE.outputs.NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InputSource {
    Value(String),
    From { from: OutputRef },
}

/// `SERVICE.outputs.NAME`: a task's declared output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutputRef {
    pub service: String,
    pub output: String,
}

impl OutputRef {
    /// `db-migrate.outputs.version`; `None` for anything else (the parser
    /// says what is wrong).
    pub fn parse(s: &str) -> Option<OutputRef> {
        let (service, output) = s.split_once(".outputs.")?;
        (valid_service_name(service) && valid_output_name(output)).then(|| OutputRef {
            service: service.to_string(),
            output: output.to_string(),
        })
    }
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.outputs.{}", self.service, self.output)
    }
}

impl Serialize for OutputRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OutputRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutputRef::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not SERVICE.outputs.NAME")))
    }
}

/// An output (and input) name: lowercase letters, digits, `_` and `-`.
/// It names a file and, uppercased, an env variable.
pub fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
