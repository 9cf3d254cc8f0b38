//! Node policy (`[policy]` in berthd.toml; the README's Security section): what a spec pushed by an
//! orchestrator may ask of this node. Pure: nothing is read here. Host paths
//! are compared twice, as text (components, after removing `.` and resolving
//! `..`) and as where they lead on the host now, which the caller's
//! [`HostPathResolver`] says (the API, upstream and the agent resolve with
//! the filesystem at their boundary): a symlink under an allowed path that
//! leads out of it is refused. The agent asks again right before every
//! container create ([`NodePolicy::check_create`]).
//!
//! Root on the Unix socket and spec_dir are trusted; the API applies this
//! to specs arriving over TCP and from other members of `socket_group`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::runtime::CreateSpec;
use crate::spec::{HookKind, HookPhase, HookPlace, ImageSource, Network, ServiceSpec};

pub mod signal_hosts;

/// `[policy]` in `berthd.toml`. The default refuses everything optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodePolicy {
    pub allow_privileged: bool,
    pub allow_host_network: bool,
    /// Absolute host paths under which volumes, `build.context` and `load`
    /// may point. Empty: no host path at all.
    pub allowed_host_paths: Vec<String>,
    /// Hosts (`name` or `name:port`) signals may go to. Empty: any host
    /// but internal ones (loopback, link-local, cloud metadata; see
    /// [`signal_hosts`]), which only a listing allows.
    pub allowed_signal_hosts: Vec<String>,
    /// Capabilities `cap_add` may name beyond the engine's default set
    /// ([`DEFAULT_CAPABILITIES`]) while `allow_privileged` is false; with
    /// or without `CAP_`, any case.
    pub allowed_capabilities: Vec<String>,
    /// Named volumes a pushed spec may mount. Empty: none (any existing
    /// volume of the engine could otherwise be mounted, another service's
    /// data included).
    pub allowed_volumes: Vec<String>,
    /// Exec hooks with `where: host` (commands run as root on the host, as
    /// transient systemd units).
    pub allow_host_hooks: bool,
    /// URL prefixes an http hook's URL must start with (compared as text,
    /// after the scheme and host are lowercased). Empty: no http hooks.
    pub allowed_hook_urls: Vec<String>,
    /// Not a `[policy]` key: berthd's `prefix`, so that `container:NAME`
    /// in `pid`/`ipc`/`network` can be matched to this node's services
    /// (their containers are named `<prefix><service>`).
    pub container_prefix: String,
}

/// One refusal: the rule (the `[policy]` key that forbids it) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} (node policy: {rule})")]
pub struct PolicyViolation {
    /// The `[policy]` key, e.g. `allow_privileged`, `allowed_host_paths`.
    pub rule: &'static str,
    /// The field path in the request, e.g. `services[0].volumes[1]`.
    pub field: String,
    pub message: String,
}

/// The capabilities Docker gives every container: `cap_add` may always
/// name these (adding one that is already there changes nothing).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// How deep a chain of `container:NAME` joins is followed.
const MAX_JOIN_DEPTH: usize = 8;

/// Where a host path leads on this host now. Implemented at the boundary
/// with the filesystem (`berth_sources::hostpath::FsResolver`); core only
/// compares what it answers.
pub trait HostPathResolver {
    /// `path` (absolute) with every symlink followed. A path that does not
    /// exist yet: its deepest existing ancestor resolved, the rest appended
    /// (the engine creates the rest under it). `Err`: why it cannot be
    /// resolved (the path is then refused).
    fn resolve(&self, path: &str) -> Result<PathBuf, String>;
}

/// What the policy needs to know beyond the spec itself.
pub struct NodeContext<'a> {
    pub host_paths: &'a dyn HostPathResolver,
    /// This node's services by name: the current records, overlaid with
    /// the specs of the same request.
    pub services: &'a BTreeMap<String, ServiceSpec>,
}

/// A capability name as Docker compares them: upper case, no `CAP_`.
fn cap_name(cap: &str) -> String {
    let up = cap.trim().to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// `security_opt` entries that only take privilege away.
fn harmless_security_opt(opt: &str) -> bool {
    let opt = opt.trim();
    if matches!(
        opt,
        "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true"
    ) {
        return true;
    }
    // A named AppArmor profile confines; `unconfined` does not.
    opt.strip_prefix("apparmor=")
        .or_else(|| opt.strip_prefix("apparmor:"))
        .is_some_and(|p| !p.is_empty() && p != "unconfined")
}

impl NodePolicy {
    /// Every violation in `spec`; `field` prefixes the field paths (e.g.
    /// `services[0]`, or empty for a bare spec).
    pub fn check_spec(
        &self,
        spec: &ServiceSpec,
        field: &str,
        node: &NodeContext<'_>,
    ) -> Vec<PolicyViolation> {
        let at = |f: &str| {
            if field.is_empty() {
                f.to_string()
            } else {
                format!("{field}.{f}")
            }
        };
        let mut out = Vec::new();
        self.check_privilege(spec, &at, &mut out);
        self.check_joins(spec, &at, node, &mut out);
        if !self.allow_host_network && spec.network == Network::Host {
            out.push(PolicyViolation {
                rule: "allow_host_network",
                field: at("network"),
                message: "the host network is not allowed on this node".into(),
            });
        }
        self.check_volumes(spec, &at, node.host_paths, &mut out);
        self.check_volumes_from(spec, &at, node, &mut out);
        self.check_exec_in(spec, &at, node, &mut out);
        // berthd reads an env file itself and hands its values to the
        // container: a host file like any other.
        for (i, path) in spec.env_file.iter().enumerate() {
            self.check_host_path(
                path,
                at(&format!("env_file[{i}]")),
                node.host_paths,
                &mut out,
            );
        }
        match &spec.image {
            ImageSource::Ref(_) => {}
            ImageSource::Build { build } => self.check_host_path(
                &build.context,
                at("image.build.context"),
                node.host_paths,
                &mut out,
            ),
            ImageSource::Load { load } => {
                self.check_host_path(load, at("image.load"), node.host_paths, &mut out)
            }
        }
        self.check_hooks(spec, &at, &mut out);
        out
    }

    /// What `spec` mounts from the host and the engine: volumes (host
    /// paths and named volumes) and config sources.
    fn check_volumes(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        host_paths: &dyn HostPathResolver,
        out: &mut Vec<PolicyViolation>,
    ) {
        for (i, v) in spec.volumes.iter().enumerate() {
            let field = at(&format!("volumes[{i}]"));
            if v.is_host_path() {
                self.check_host_path(&v.source, field, host_paths, out);
            } else if !self.allowed_volumes.iter().any(|a| a == &v.source) {
                out.push(PolicyViolation {
                    rule: "allowed_volumes",
                    field,
                    message: if self.allowed_volumes.is_empty() {
                        format!(
                            "named volume `{}` is not allowed: this node allows no named volumes in pushed specs",
                            v.source
                        )
                    } else {
                        format!(
                            "named volume `{}` is not one of the allowed volumes ({})",
                            v.source,
                            self.allowed_volumes.join(", ")
                        )
                    },
                });
            }
        }
        for (i, c) in spec.config.iter().enumerate() {
            self.check_host_path(
                &c.source,
                at(&format!("config[{i}].source")),
                host_paths,
                out,
            );
        }
    }

    /// `volumes_from`: only a service of this node whose own mounts
    /// (volumes, config sources, and what it takes from others in turn)
    /// this policy would allow in a pushed spec: a container gets every
    /// mount of the one it takes volumes from.
    fn check_volumes_from(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        node: &NodeContext<'_>,
        out: &mut Vec<PolicyViolation>,
    ) {
        for (i, (entry, service)) in spec
            .volumes_from
            .iter()
            .zip(spec.volumes_from_services())
            .enumerate()
        {
            let mut seen = BTreeSet::from([spec.name.clone()]);
            if let Err((rule, why)) = self.volumes_takeable(service, node, 0, &mut seen) {
                out.push(PolicyViolation {
                    rule,
                    field: at(&format!("volumes_from[{i}]")),
                    message: format!("`{entry}` is not allowed on this node: {why}"),
                });
            }
        }
    }

    /// `exec_in`: only a service of this node that would itself pass this
    /// policy: the command runs inside its container, with everything that
    /// container may do (privileges, host mounts, namespaces).
    fn check_exec_in(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        node: &NodeContext<'_>,
        out: &mut Vec<PolicyViolation>,
    ) {
        let Some(service) = spec.exec_in.as_deref() else {
            return;
        };
        let Some(target) = node.services.get(service) else {
            out.push(PolicyViolation {
                rule: "allow_privileged",
                field: at("exec_in"),
                message: format!("{service} is not one of this node's services"),
            });
            return;
        };
        // Its own exec_in is not followed: an exec task has no container
        // to exec in.
        let target = ServiceSpec {
            exec_in: None,
            ..target.clone()
        };
        if let Some(v) = self.check_spec(&target, "", node).first() {
            out.push(PolicyViolation {
                rule: v.rule,
                field: at("exec_in"),
                message: format!(
                    "`{service}` is not allowed on this node: the command would run in its \
                     container, whose `{}` this node's policy refuses",
                    v.field
                ),
            });
        }
    }

    /// Whether a container may take the volumes of service `service`'s.
    fn volumes_takeable(
        &self,
        service: &str,
        node: &NodeContext<'_>,
        depth: usize,
        seen: &mut BTreeSet<String>,
    ) -> Result<(), (&'static str, String)> {
        let Some(target) = node.services.get(service) else {
            return Err((
                "allowed_volumes",
                format!("{service} is not one of this node's services"),
            ));
        };
        if depth >= MAX_JOIN_DEPTH || !seen.insert(service.to_string()) {
            return Err((
                "allowed_volumes",
                format!("service {service} is part of a loop or a too long chain of volumes_from"),
            ));
        }
        let mut found = Vec::new();
        self.check_volumes(target, &|f| f.to_string(), node.host_paths, &mut found);
        if let Some(v) = found.first() {
            return Err((
                v.rule,
                format!(
                    "it takes the volumes of service {service}, whose `{}` this node's policy refuses",
                    v.field
                ),
            ));
        }
        for next in target.volumes_from_services() {
            self.volumes_takeable(next, node, depth + 1, seen)
                .map_err(|(rule, why)| {
                    (rule, format!("{service} takes volumes from {next}: {why}"))
                })?;
        }
        Ok(())
    }

    /// Host hooks need `allow_host_hooks`; an http hook's URL must start
    /// with one of `allowed_hook_urls`.
    fn check_hooks(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        out: &mut Vec<PolicyViolation>,
    ) {
        for phase in HookPhase::ALL {
            for (i, hook) in spec.hooks.phase(phase).iter().enumerate() {
                let field = |f: &str| at(&format!("hooks.{phase}[{i}].{f}"));
                match &hook.kind {
                    HookKind::Exec(_) if hook.place == HookPlace::Host && !self.allow_host_hooks => {
                        out.push(PolicyViolation {
                            rule: "allow_host_hooks",
                            field: field("where"),
                            message: "hooks that run on the host are not allowed on this node"
                                .into(),
                        })
                    }
                    HookKind::Http(url) if !hook_url_allowed(&self.allowed_hook_urls, url) => {
                        out.push(PolicyViolation {
                            rule: "allowed_hook_urls",
                            field: field("http"),
                            message: if self.allowed_hook_urls.is_empty() {
                                format!(
                                    "http hook {} is not allowed: this node allows no http hooks in pushed specs",
                                    crate::heat::redact_url(url)
                                )
                            } else {
                                format!(
                                    "http hook {} does not start with an allowed prefix ({})",
                                    crate::heat::redact_url(url),
                                    self.allowed_hook_urls.join(", ")
                                )
                            },
                        })
                    }
                    _ => {}
                }
            }
        }
    }

    /// Right before a container is created: every host path of `spec`
    /// (volumes, config sources, env files) that lies under `allowed_host_paths` by
    /// its text must still lead there. A symlink planted after the spec
    /// was accepted (by a container that mounts the allowed directory) is
    /// caught here. Paths outside the allowed ones by text are not
    /// checked: pushed specs cannot have them (the text is checked when
    /// they arrive) and the local operator's are trusted.
    pub fn check_create(
        &self,
        spec: &CreateSpec,
        resolver: &dyn HostPathResolver,
    ) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        let paths = spec
            .volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_host_path())
            .map(|(i, v)| (format!("volumes[{i}]"), v.source.as_str()))
            .chain(
                spec.config
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("config[{i}].source"), c.source.as_str())),
            )
            .chain(
                spec.env_file
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (format!("env_file[{i}]"), p.as_str())),
            );
        for (field, path) in paths {
            if self.host_path_allowed(path).is_ok()
                && let Err(message) = self.host_path_resolves_inside(path, resolver)
            {
                out.push(PolicyViolation {
                    rule: "allowed_host_paths",
                    field,
                    message,
                });
            }
        }
        out
    }

    /// `privileged`, host pid/ipc/uts, shared mount propagation,
    /// capabilities beyond the allowed ones and `security_opt` beyond the
    /// harmless ones: `allow_privileged`.
    fn check_privilege(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        out: &mut Vec<PolicyViolation>,
    ) {
        if self.allow_privileged {
            return;
        }
        let mut refuse = |f: String, message: String| {
            out.push(PolicyViolation {
                rule: "allow_privileged",
                field: f,
                message,
            });
        };
        if spec.privileged {
            refuse(
                at("privileged"),
                "privileged mode is not allowed on this node".into(),
            );
        }
        if spec.pid.as_deref() == Some("host") {
            refuse(
                at("pid"),
                "the host's pid namespace is not allowed on this node".into(),
            );
        }
        if spec.ipc.as_deref() == Some("host") {
            refuse(
                at("ipc"),
                "the host's ipc namespace is not allowed on this node".into(),
            );
        }
        if spec.uts.as_deref() == Some("host") {
            refuse(
                at("uts"),
                "the host's uts namespace (setting the host's hostname) is not allowed on this node".into(),
            );
        }
        for (i, v) in spec.volumes.iter().enumerate() {
            if matches!(
                v.propagation,
                Some(crate::spec::Propagation::Shared | crate::spec::Propagation::RShared)
            ) {
                refuse(
                    at(&format!("volumes[{i}]")),
                    "shared mount propagation (mounts made in the container appear on the host) is not allowed on this node; use slave or private".into(),
                );
            }
        }
        for (i, cap) in spec.cap_add.iter().enumerate() {
            let name = cap_name(cap);
            let allowed = DEFAULT_CAPABILITIES.contains(&name.as_str())
                || self
                    .allowed_capabilities
                    .iter()
                    .any(|a| cap_name(a) == name);
            if !allowed {
                refuse(
                    at(&format!("cap_add[{i}]")),
                    format!(
                        "capability {cap} is not allowed on this node (beyond the engine's defaults, [policy] allowed_capabilities lists the ones that are)"
                    ),
                );
            }
        }
        for (i, opt) in spec.security_opt.iter().enumerate() {
            if !harmless_security_opt(opt) {
                refuse(
                    at(&format!("security_opt[{i}]")),
                    format!(
                        "`{opt}` is not allowed on this node (only no-new-privileges and a named apparmor profile are)"
                    ),
                );
            }
        }
    }

    /// `pid`, `ipc` and `network` of `container:NAME`: only a service of
    /// this node that would itself pass this policy's privilege and host
    /// network rules (followed through its own joins).
    fn check_joins(
        &self,
        spec: &ServiceSpec,
        at: &dyn Fn(&str) -> String,
        node: &NodeContext<'_>,
        out: &mut Vec<PolicyViolation>,
    ) {
        for (key, value) in joins(spec) {
            let network = key == "network";
            let checked = !self.allow_privileged || (network && !self.allow_host_network);
            let Some(name) = value.strip_prefix("container:") else {
                continue;
            };
            if !checked {
                continue;
            }
            let mut seen = BTreeSet::new();
            if let Err((rule, why)) = self.joinable(name, network, node, 0, &mut seen) {
                out.push(PolicyViolation {
                    rule,
                    field: at(key),
                    message: format!("`{value}` is not allowed on this node: {why}"),
                });
            }
        }
    }

    /// Whether a container may join the namespaces of container `name`.
    fn joinable(
        &self,
        name: &str,
        network: bool,
        node: &NodeContext<'_>,
        depth: usize,
        seen: &mut BTreeSet<String>,
    ) -> Result<(), (&'static str, String)> {
        let unknown_rule = if !self.allow_privileged {
            "allow_privileged"
        } else {
            "allow_host_network"
        };
        let service = name.strip_prefix(self.container_prefix.as_str());
        let Some((service, target)) =
            service.and_then(|s| node.services.get(s).map(|spec| (s, spec)))
        else {
            return Err((
                unknown_rule,
                format!(
                    "`{name}` is not one of this node's services (their containers are named {}<service>)",
                    self.container_prefix
                ),
            ));
        };
        if depth >= MAX_JOIN_DEPTH || !seen.insert(service.to_string()) {
            return Err((
                unknown_rule,
                format!(
                    "service {service} is part of a loop or a too long chain of container: joins"
                ),
            ));
        }
        let mut found = Vec::new();
        self.check_privilege(target, &|f| f.to_string(), &mut found);
        if network && !self.allow_host_network && target.network == Network::Host {
            found.push(PolicyViolation {
                rule: "allow_host_network",
                field: "network".into(),
                message: "the host network".into(),
            });
        }
        if let Some(v) = found.first() {
            return Err((
                v.rule,
                format!(
                    "it joins service {service}, whose `{}` this node's policy refuses",
                    v.field
                ),
            ));
        }
        for (key, value) in joins(target) {
            if let Some(next) = value.strip_prefix("container:") {
                // Joining a container that joined another: the namespaces
                // are that other's.
                self.joinable(next, network || key == "network", node, depth + 1, seen)
                    .map_err(|(rule, why)| (rule, format!("{service} joins {next}: {why}")))?;
            }
        }
        Ok(())
    }

    fn check_host_path(
        &self,
        path: &str,
        field: String,
        resolver: &dyn HostPathResolver,
        out: &mut Vec<PolicyViolation>,
    ) {
        let verdict = self
            .host_path_allowed(path)
            .and_then(|()| self.host_path_resolves_inside(path, resolver));
        if let Err(message) = verdict {
            out.push(PolicyViolation {
                rule: "allowed_host_paths",
                field,
                message,
            });
        }
    }

    /// Whether `path` lies under one of `allowed_host_paths` by its text
    /// (components, after normalising). A relative path is refused: it
    /// would resolve against berthd's working directory. Where it leads is
    /// [`NodePolicy::host_path_resolves_inside`]'s question.
    pub fn host_path_allowed(&self, path: &str) -> Result<(), String> {
        let Some(p) = normalize(path) else {
            return Err(format!(
                "host path `{path}` must be absolute to be checked against allowed_host_paths"
            ));
        };
        let ok = self
            .allowed_host_paths
            .iter()
            .filter_map(|a| normalize(a))
            .any(|allowed| p.starts_with(&allowed));
        if ok {
            Ok(())
        } else if self.allowed_host_paths.is_empty() {
            Err(format!(
                "host path `{path}` is not allowed: this node allows no host paths"
            ))
        } else {
            Err(format!(
                "host path `{}` is outside the allowed host paths ({})",
                p.display(),
                self.allowed_host_paths.join(", ")
            ))
        }
    }

    /// Whether `path` leads, once `resolver` followed its symlinks, under
    /// one of `allowed_host_paths` (themselves resolved the same way). The
    /// path is resolved as written and after normalising (`a/b/..` is `a`
    /// to an engine that cleans paths, but where `b` leads to the kernel):
    /// both must stay inside.
    pub fn host_path_resolves_inside(
        &self,
        path: &str,
        resolver: &dyn HostPathResolver,
    ) -> Result<(), String> {
        let allowed: Vec<PathBuf> = self
            .allowed_host_paths
            .iter()
            .filter_map(|a| normalize(a))
            .filter_map(|a| resolver.resolve(&a.to_string_lossy()).ok())
            .collect();
        let mut forms = vec![path.to_string()];
        if let Some(n) = normalize(path) {
            let n = n.to_string_lossy().into_owned();
            if n != path {
                forms.push(n);
            }
        }
        for form in forms {
            let real = resolver.resolve(&form).map_err(|e| {
                format!("host path `{path}` cannot be resolved to check it against allowed_host_paths: {e}")
            })?;
            if !allowed.iter().any(|a| real.starts_with(a)) {
                return Err(format!(
                    "host path `{path}` leads to `{}` (through a symlink), outside the allowed host paths ({})",
                    real.display(),
                    self.allowed_host_paths.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Whether an upstream signal may go to `url`: never to an internal
    /// target (loopback, link-local, cloud metadata, unspecified) unless
    /// `allowed_signal_hosts` lists its host; with `allowed_signal_hosts`
    /// non-empty, only to a listed host (or `host:port`, case-insensitive).
    /// See [`signal_hosts`] (and [`signal_hosts::check_resolved`] for
    /// what a name resolves to).
    pub fn check_signal_url(&self, url: &str, field: &str) -> Result<(), PolicyViolation> {
        signal_hosts::check_url(&self.allowed_signal_hosts, url, field)
    }
}

/// Whether `url` starts with one of `allowed` (scheme and host compared
/// without case). A prefix that ends in the host (`https://ci.example`)
/// matches only that host, not `https://ci.example.evil/`: the URL must go
/// on with `/`, `?`, `#` or `:` there, or end.
pub fn hook_url_allowed(allowed: &[String], url: &str) -> bool {
    let url = lower_origin(url);
    allowed.iter().any(|prefix| {
        let prefix = lower_origin(prefix);
        match url.strip_prefix(prefix.as_str()) {
            None => false,
            Some(rest) => {
                prefix.ends_with('/')
                    || rest.is_empty()
                    || rest.starts_with(['/', '?', '#'])
                    || (rest.starts_with(':') && !origin_has_port(&prefix))
            }
        }
    })
}

/// `url` with its scheme and host (everything before the path) lowercased.
fn lower_origin(url: &str) -> String {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    format!("{}{}", url[..end].to_ascii_lowercase(), &url[end..])
}

/// A prefix with no path whose authority names a port already.
fn origin_has_port(prefix: &str) -> bool {
    let start = prefix.find("://").map(|i| i + 3).unwrap_or(0);
    let authority = &prefix[start..];
    authority
        .rsplit('@')
        .next()
        .is_some_and(|h| h.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')))
}

/// An absolute path with `.` removed and `..` resolved lexically (never above
/// `/`); `None` for a relative or empty path.
fn normalize(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// The namespaces `spec` may share with another container, as `(field, value)`.
fn joins(spec: &ServiceSpec) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    if let Some(p) = spec.pid.as_deref() {
        out.push(("pid", p));
    }
    if let Some(i) = spec.ipc.as_deref() {
        out.push(("ipc", i));
    }
    if let Network::Named(n) = &spec.network {
        out.push(("network", n.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BuildSpec, ConfigMount, OnChange, Volume};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: ImageSource::Ref("demo:1".into()),
            ..ServiceSpec::default()
        }
    }

    fn policy(paths: &[&str]) -> NodePolicy {
        NodePolicy {
            allowed_host_paths: paths.iter().map(|s| s.to_string()).collect(),
            ..NodePolicy::default()
        }
    }

    fn rules(v: &[PolicyViolation]) -> Vec<(&'static str, String)> {
        v.iter().map(|v| (v.rule, v.field.clone())).collect()
    }

    /// Resolves by text, with `links` (path prefix -> where it leads) as
    /// the only symlinks on the "host".
    struct Links(Vec<(&'static str, &'static str)>);

    impl HostPathResolver for Links {
        fn resolve(&self, path: &str) -> Result<PathBuf, String> {
            let mut p = normalize(path).ok_or("relative")?;
            for (link, to) in &self.0 {
                if let Ok(rest) = p.strip_prefix(link) {
                    p = Path::new(to).join(rest);
                }
            }
            Ok(p)
        }
    }

    const NO_LINKS: Links = Links(Vec::new());

    fn check(p: &NodePolicy, s: &ServiceSpec, field: &str) -> Vec<PolicyViolation> {
        check_with(p, s, field, &NO_LINKS, &BTreeMap::new())
    }

    fn check_with(
        p: &NodePolicy,
        s: &ServiceSpec,
        field: &str,
        links: &Links,
        services: &BTreeMap<String, ServiceSpec>,
    ) -> Vec<PolicyViolation> {
        p.check_spec(
            s,
            field,
            &NodeContext {
                host_paths: links,
                services,
            },
        )
    }

    #[test]
    fn hooks_need_the_policy_that_allows_them() {
        use crate::spec::{Hook, HookKind, HookPlace, OnTimeout};
        let hook = |kind, place| Hook {
            kind,
            place,
            timeout: None,
            on_timeout: OnTimeout::Abort,
        };
        let mut s = spec();
        s.hooks.pre_update = vec![
            hook(HookKind::Breakpoint {}, HookPlace::Container),
            hook(HookKind::Exec(vec!["/drain".into()]), HookPlace::Container),
            hook(HookKind::Exec(vec!["/drain".into()]), HookPlace::Host),
        ];
        s.hooks.post_update = vec![hook(
            HookKind::Http("https://ci.example/hook?sig=s3cret".into()),
            HookPlace::Container,
        )];
        let v = check(&NodePolicy::default(), &s, "services[0]");
        assert_eq!(
            rules(&v),
            [
                (
                    "allow_host_hooks",
                    "services[0].hooks.pre_update[2].where".to_string()
                ),
                (
                    "allowed_hook_urls",
                    "services[0].hooks.post_update[0].http".to_string()
                ),
            ]
        );
        assert!(
            v.iter().all(|v| !v.message.contains("s3cret")),
            "a hook URL's query never shows: {v:?}"
        );
        let open = NodePolicy {
            allow_host_hooks: true,
            allowed_hook_urls: vec!["https://CI.example/".into()],
            ..NodePolicy::default()
        };
        assert!(check(&open, &s, "").is_empty());
    }

    #[test]
    fn hook_url_prefixes_match_whole_hosts() {
        let allowed = |prefixes: &[&str], url: &str| {
            let p: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
            hook_url_allowed(&p, url)
        };
        // (allowed prefixes, url, allowed)
        let table: &[(&[&str], &str, bool)] = &[
            (&[], "https://ci.example/hook", false),
            (&["https://ci.example"], "https://ci.example/hook", true),
            (&["https://ci.example"], "https://ci.example", true),
            (&["https://ci.example"], "https://ci.example:8443/x", true),
            (&["https://ci.example"], "https://ci.example.evil/x", false),
            (&["https://ci.example"], "https://ci.example@evil/x", false),
            (
                &["https://ci.example:8443"],
                "https://ci.example:84431/",
                false,
            ),
            (
                &["https://ci.example/hooks/"],
                "https://ci.example/hooks/a",
                true,
            ),
            (
                &["https://ci.example/hooks/"],
                "https://ci.example/other",
                false,
            ),
            (&["https://ci.example/"], "HTTPS://CI.EXAMPLE/x", true),
            (&["https://ci.example/"], "http://ci.example/x", false),
            (&["https://a/", "https://b/"], "https://b/x", true),
        ];
        for (prefixes, url, want) in table {
            assert_eq!(allowed(prefixes, url), *want, "{prefixes:?} {url}");
        }
    }

    /// `volumes_from` takes every mount of another service's container:
    /// only one whose own mounts (and what it takes in turn) pass.
    #[test]
    fn volumes_from_needs_a_service_whose_mounts_pass() {
        let p = NodePolicy {
            allowed_host_paths: vec!["/srv".into()],
            allowed_volumes: vec!["data".into()],
            ..NodePolicy::default()
        };
        let with = |name: &str, volumes: &[&str], from: &[&str]| ServiceSpec {
            name: name.into(),
            volumes: volumes
                .iter()
                .map(|v| Volume::parse(v).expect("volume"))
                .collect(),
            volumes_from: from.iter().map(|f| f.to_string()).collect(),
            ..spec()
        };
        let services: BTreeMap<String, ServiceSpec> = [
            with("ok", &["/srv/a:/a", "data:/d"], &[]),
            with("etc", &["/etc:/host-etc"], &[]),
            with("named", &["secrets:/s"], &[]),
            with("chain", &["/srv/b:/b"], &["etc"]),
            with("loop-a", &[], &["loop-b"]),
            with("loop-b", &[], &["loop-a"]),
        ]
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
        let at = |from: &[&str]| check_with(&p, &with("web", &[], from), "s", &NO_LINKS, &services);
        assert!(at(&["ok", "ok:ro"]).is_empty());
        let v = at(&["etc:ro", "named", "chain", "nosuch", "loop-a"]);
        assert_eq!(
            rules(&v),
            [
                ("allowed_host_paths", "s.volumes_from[0]".to_string()),
                ("allowed_volumes", "s.volumes_from[1]".to_string()),
                ("allowed_host_paths", "s.volumes_from[2]".to_string()),
                ("allowed_volumes", "s.volumes_from[3]".to_string()),
                ("allowed_volumes", "s.volumes_from[4]".to_string()),
            ]
        );
        let said: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(
            said[0].contains("`etc:ro` is not allowed on this node: it takes the volumes of service etc, whose `volumes[0]` this node's policy refuses"),
            "{}",
            said[0]
        );
        assert!(
            said[2].contains("chain takes volumes from etc: it takes the volumes of service etc"),
            "{}",
            said[2]
        );
        assert!(
            said[3].contains("nosuch is not one of this node's services"),
            "{}",
            said[3]
        );
        assert!(said[4].contains("part of a loop"), "{}", said[4]);
    }

    #[test]
    fn exec_in_needs_a_service_that_would_pass_itself() {
        let p = NodePolicy::default();
        let services: BTreeMap<String, ServiceSpec> = [
            ServiceSpec {
                name: "plain".into(),
                ..spec()
            },
            ServiceSpec {
                name: "root".into(),
                privileged: true,
                ..spec()
            },
        ]
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
        let exec = |target: &str| ServiceSpec {
            name: "t".into(),
            kind: crate::spec::Kind::Task,
            exec_in: Some(target.into()),
            ..spec()
        };
        assert!(check_with(&p, &exec("plain"), "s", &NO_LINKS, &services).is_empty());
        let v = check_with(&p, &exec("root"), "s", &NO_LINKS, &services);
        assert_eq!(rules(&v), [("allow_privileged", "s.exec_in".to_string())]);
        assert!(
            v[0].to_string()
                .contains("would run in its container, whose `privileged`"),
            "{}",
            v[0]
        );
        let v = check_with(&p, &exec("nosuch"), "s", &NO_LINKS, &services);
        assert_eq!(rules(&v), [("allow_privileged", "s.exec_in".to_string())]);
        // A privileged exec is judged like any privileged spec.
        let privileged = ServiceSpec {
            privileged: true,
            ..exec("plain")
        };
        assert_eq!(
            rules(&check_with(&p, &privileged, "s", &NO_LINKS, &services)),
            [("allow_privileged", "s.privileged".to_string())]
        );
    }

    /// berthd reads an env file and hands its values to the container: a
    /// pushed spec may name only one under `allowed_host_paths`.
    #[test]
    fn env_files_are_host_paths() {
        let p = policy(&["/srv/berth"]);
        let mut s = spec();
        s.env_file = vec!["/srv/berth/web.env".into(), "/etc/shadow".into()];
        let v = check(&p, &s, "services[0]");
        assert_eq!(
            rules(&v),
            [("allowed_host_paths", "services[0].env_file[1]".to_string())]
        );
        assert!(v[0].message.contains("/etc/shadow"), "{}", v[0]);
    }

    #[test]
    fn a_plain_spec_passes_the_strictest_policy() {
        assert!(check(&NodePolicy::default(), &spec(), "").is_empty());
    }

    #[test]
    fn privileged_and_host_network_are_refused_unless_allowed() {
        type Edit = fn(&mut ServiceSpec);
        let cases: Vec<(&str, Edit, &str, &str)> = vec![
            (
                "privileged",
                |s| s.privileged = true,
                "allow_privileged",
                "privileged",
            ),
            (
                "pid host",
                |s| s.pid = Some("host".into()),
                "allow_privileged",
                "pid",
            ),
            (
                "ipc host",
                |s| s.ipc = Some("host".into()),
                "allow_privileged",
                "ipc",
            ),
            (
                "uts host",
                |s| s.uts = Some("host".into()),
                "allow_privileged",
                "uts",
            ),
            (
                "rshared propagation",
                |s| {
                    s.volumes = vec![
                        crate::spec::Volume::parse("/srv/a:/a:rslave").expect("volume"),
                        crate::spec::Volume::parse("/srv/b:/b:rshared,z").expect("volume"),
                    ]
                },
                "allow_privileged",
                "volumes[1]",
            ),
            (
                "cap ALL",
                |s| s.cap_add = vec!["NET_RAW".into(), "all".into()],
                "allow_privileged",
                "cap_add[1]",
            ),
            (
                "cap SYS_ADMIN",
                |s| s.cap_add = vec!["SYS_ADMIN".into()],
                "allow_privileged",
                "cap_add[0]",
            ),
            (
                "seccomp unconfined",
                |s| s.security_opt = vec!["seccomp=unconfined".into()],
                "allow_privileged",
                "security_opt[0]",
            ),
            (
                "host network",
                |s| s.network = Network::Host,
                "allow_host_network",
                "network",
            ),
        ];
        for (what, edit, rule, field) in cases {
            let mut s = spec();
            edit(&mut s);
            // Host paths under /srv are allowed: only the rule tested refuses.
            let closed = NodePolicy {
                allowed_host_paths: vec!["/srv".into()],
                ..NodePolicy::default()
            };
            let v = check(&closed, &s, "services[2]");
            assert_eq!(
                rules(&v),
                vec![(rule, format!("services[2].{field}"))],
                "{what}"
            );
            assert!(v[0].to_string().contains(rule), "{what}: {}", v[0]);
            let open = NodePolicy {
                allow_privileged: true,
                allow_host_network: true,
                ..closed
            };
            assert!(check(&open, &s, "").is_empty(), "{what} when allowed");
        }
        // Harmless neighbours pass.
        let mut s = spec();
        s.network = Network::Named("backend".into());
        s.pid = Some("container:db".into());
        s.cap_add = vec!["NET_BIND_SERVICE".into()];
        s.security_opt = vec!["no-new-privileges".into()];
        let node = BTreeMap::from([("db".to_string(), spec())]);
        assert!(check_with(&NodePolicy::default(), &s, "", &NO_LINKS, &node).is_empty());
    }

    #[test]
    fn capabilities_beyond_the_engine_defaults_are_refused_unless_listed() {
        // The attack's capabilities, however written.
        for cap in [
            "SYS_MODULE",
            "DAC_READ_SEARCH",
            "SYS_RAWIO",
            "SYS_PTRACE",
            "BPF",
            "NET_ADMIN",
            "cap_sys_module",
            "Cap_Sys_Ptrace",
            " bpf ",
            "SYS_ADMIN",
            "ALL",
            "NOT_A_CAP",
        ] {
            let mut s = spec();
            s.cap_add = vec!["CHOWN".into(), cap.into()];
            let v = check(&NodePolicy::default(), &s, "");
            assert_eq!(
                rules(&v),
                vec![("allow_privileged", "cap_add[1]".to_string())],
                "{cap}"
            );
            assert!(v[0].message.contains("allowed_capabilities"), "{}", v[0]);
        }
        // Every default capability, with or without CAP_, any case.
        for cap in DEFAULT_CAPABILITIES {
            for written in [
                cap.to_string(),
                format!("CAP_{cap}"),
                cap.to_ascii_lowercase(),
                format!("cap_{}", cap.to_ascii_lowercase()),
            ] {
                let mut s = spec();
                s.cap_add = vec![written.clone()];
                assert!(
                    check(&NodePolicy::default(), &s, "").is_empty(),
                    "{written}"
                );
            }
        }
        // allowed_capabilities adds exactly what it names.
        let p = NodePolicy {
            allowed_capabilities: vec!["cap_net_admin".into()],
            ..NodePolicy::default()
        };
        let mut s = spec();
        s.cap_add = vec!["NET_ADMIN".into(), "CAP_NET_ADMIN".into()];
        assert!(check(&p, &s, "").is_empty());
        s.cap_add = vec!["NET_ADMIN".into(), "SYS_MODULE".into()];
        assert_eq!(
            rules(&check(&p, &s, "")),
            vec![("allow_privileged", "cap_add[1]".to_string())]
        );
        // allow_privileged lets anything through.
        let open = NodePolicy {
            allow_privileged: true,
            ..NodePolicy::default()
        };
        assert!(check(&open, &s, "").is_empty());
    }

    #[test]
    fn security_opt_is_limited_to_what_takes_privilege_away() {
        for (opt, ok) in [
            ("no-new-privileges", true),
            ("no-new-privileges=true", true),
            ("no-new-privileges:true", true),
            ("apparmor=docker-default", true),
            ("apparmor:my-profile", true),
            ("no-new-privileges=false", false),
            ("no-new-privileges:false", false),
            ("apparmor=unconfined", false),
            ("apparmor:unconfined", false),
            ("apparmor=", false),
            ("seccomp=unconfined", false),
            ("seccomp=/srv/berth/profile.json", false),
            ("seccomp:{\"defaultAction\":\"SCMP_ACT_ALLOW\"}", false),
            ("label=disable", false),
            ("label:disable", false),
            ("label=type:spc_t", false),
            ("systempaths=unconfined", false),
            ("anything-else", false),
        ] {
            let mut s = spec();
            s.security_opt = vec![opt.into()];
            let v = check(&NodePolicy::default(), &s, "services[1]");
            if ok {
                assert!(v.is_empty(), "{opt}: {v:?}");
            } else {
                assert_eq!(
                    rules(&v),
                    vec![(
                        "allow_privileged",
                        "services[1].security_opt[0]".to_string()
                    )],
                    "{opt}"
                );
            }
            let open = NodePolicy {
                allow_privileged: true,
                ..NodePolicy::default()
            };
            assert!(check(&open, &s, "").is_empty(), "{opt} when allowed");
        }
    }

    #[test]
    fn container_namespaces_only_of_this_nodes_unprivileged_services() {
        let p = NodePolicy {
            container_prefix: "berth-".into(),
            ..NodePolicy::default()
        };
        let with = |edit: fn(&mut ServiceSpec)| {
            let mut s = spec();
            edit(&mut s);
            s
        };
        let node = BTreeMap::from([
            ("plain".to_string(), spec()),
            ("hostpid".to_string(), with(|s| s.pid = Some("host".into()))),
            ("hostipc".to_string(), with(|s| s.ipc = Some("host".into()))),
            ("priv".to_string(), with(|s| s.privileged = true)),
            (
                "ptrace".to_string(),
                with(|s| s.cap_add = vec!["SYS_PTRACE".into()]),
            ),
            (
                "seccomp".to_string(),
                with(|s| s.security_opt = vec!["seccomp=unconfined".into()]),
            ),
            ("hostnet".to_string(), with(|s| s.network = Network::Host)),
            (
                "chain".to_string(),
                with(|s| s.pid = Some("container:berth-hostpid".into())),
            ),
            (
                "loop-a".to_string(),
                with(|s| s.pid = Some("container:berth-loop-b".into())),
            ),
            (
                "loop-b".to_string(),
                with(|s| s.pid = Some("container:berth-loop-a".into())),
            ),
        ]);
        for (value, ok) in [
            ("container:berth-plain", true),
            ("container:berth-hostnet", true),
            ("container:berth-hostpid", false),
            ("container:berth-hostipc", false),
            ("container:berth-priv", false),
            ("container:berth-ptrace", false),
            ("container:berth-seccomp", false),
            ("container:berth-chain", false),
            ("container:berth-loop-a", false),
            // Not a service of this node: a host container (dockerd's
            // sidecar on the host pid namespace), a name without the
            // prefix, an id.
            ("container:dockerd-helper", false),
            ("container:plain", false),
            ("container:berth-nosuch", false),
            (
                "container:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                false,
            ),
            ("private", true),
            ("shareable", true),
        ] {
            for key in ["pid", "ipc"] {
                let mut s = spec();
                if key == "pid" {
                    s.pid = Some(value.into());
                } else {
                    s.ipc = Some(value.into());
                }
                let v = check_with(&p, &s, "services[0]", &NO_LINKS, &node);
                if ok {
                    assert!(v.is_empty(), "{key} {value}: {v:?}");
                } else {
                    assert_eq!(
                        rules(&v),
                        vec![("allow_privileged", format!("services[0].{key}"))],
                        "{key} {value}"
                    );
                    assert!(v[0].message.contains(value), "{}", v[0]);
                }
            }
        }
        // The network namespace of a host-network service is the host's.
        let mut s = spec();
        s.network = Network::Named("container:berth-hostnet".into());
        let v = check_with(&p, &s, "", &NO_LINKS, &node);
        assert_eq!(
            rules(&v),
            vec![("allow_host_network", "network".to_string())]
        );
        s.network = Network::Named("container:berth-plain".into());
        assert!(check_with(&p, &s, "", &NO_LINKS, &node).is_empty());
        // allow_privileged: joins are the operator's choice.
        let open = NodePolicy {
            allow_privileged: true,
            ..p.clone()
        };
        let mut s = spec();
        s.pid = Some("container:dockerd-helper".into());
        assert!(check_with(&open, &s, "", &NO_LINKS, &node).is_empty());
    }

    #[test]
    fn a_symlink_under_an_allowed_path_that_leads_out_is_refused() {
        let p = policy(&["/srv/berth"]);
        let links = Links(vec![
            ("/srv/berth/rootlink", "/"),
            ("/srv/berth/etclink", "/etc"),
            ("/srv/berth/inside", "/srv/berth/data"),
        ]);
        for (source, ok) in [
            ("/srv/berth/rootlink", false),
            ("/srv/berth/rootlink/etc", false),
            ("/srv/berth/etclink", false),
            ("/srv/berth/inside", true),
            ("/srv/berth/inside/x", true),
            ("/srv/berth/plain", true),
        ] {
            let mut s = spec();
            s.volumes = vec![Volume::parse(&format!("{source}:/host")).expect("volume")];
            let v = check_with(&p, &s, "", &links, &BTreeMap::new());
            if ok {
                assert!(v.is_empty(), "{source}: {v:?}");
            } else {
                assert_eq!(
                    rules(&v),
                    vec![("allowed_host_paths", "volumes[0]".to_string())],
                    "{source}"
                );
                assert!(v[0].message.contains("leads to"), "{}", v[0]);
            }
        }
        // An allowed path that is itself a symlink is compared resolved.
        let moved = Links(vec![("/srv/berth", "/data/berth")]);
        let mut s = spec();
        s.volumes = vec![Volume::parse("/srv/berth/x:/x").expect("volume")];
        assert!(check_with(&p, &s, "", &moved, &BTreeMap::new()).is_empty());
        // A path that cannot be resolved is refused.
        struct Broken;
        impl HostPathResolver for Broken {
            fn resolve(&self, _: &str) -> Result<PathBuf, String> {
                Err("permission denied".into())
            }
        }
        let v = p.check_spec(
            &s,
            "",
            &NodeContext {
                host_paths: &Broken,
                services: &BTreeMap::new(),
            },
        );
        assert_eq!(
            rules(&v),
            vec![("allowed_host_paths", "volumes[0]".to_string())]
        );
    }

    #[test]
    fn at_create_paths_under_the_allowed_ones_must_still_lead_there() {
        let p = policy(&["/srv/berth"]);
        let create = CreateSpec {
            volumes: vec![
                Volume::parse("/srv/berth/d:/host").expect("volume"),
                Volume::parse("/etc:/etc:ro").expect("volume"),
                Volume::parse("appdata:/cache").expect("volume"),
            ],
            config: vec![crate::runtime::ConfigBind {
                source: "/srv/berth/conf".into(),
                target: "/etc/app".into(),
            }],
            env_file: vec!["/srv/berth/app.env".into()],
            ..CreateSpec::default()
        };
        assert!(p.check_create(&create, &NO_LINKS).is_empty());
        // Planted after the spec was accepted.
        let planted = Links(vec![
            ("/srv/berth/d", "/"),
            ("/srv/berth/conf", "/etc/shadow"),
            ("/srv/berth/app.env", "/root/.aws/credentials"),
        ]);
        let v = p.check_create(&create, &planted);
        assert_eq!(
            rules(&v),
            vec![
                ("allowed_host_paths", "volumes[0]".to_string()),
                ("allowed_host_paths", "config[0].source".to_string()),
                ("allowed_host_paths", "env_file[0]".to_string()),
            ]
        );
        // The local operator's paths outside allowed_host_paths are theirs.
        assert!(policy(&[]).check_create(&create, &planted).is_empty());
    }

    #[test]
    fn named_volumes_only_when_listed() {
        let mut s = spec();
        s.volumes = vec![
            Volume::parse("appdata:/cache").expect("volume"),
            Volume::parse("pgdata:/var/lib/postgresql").expect("volume"),
        ];
        let v = check(&NodePolicy::default(), &s, "");
        assert_eq!(
            rules(&v),
            vec![
                ("allowed_volumes", "volumes[0]".to_string()),
                ("allowed_volumes", "volumes[1]".to_string()),
            ]
        );
        let p = NodePolicy {
            allowed_volumes: vec!["appdata".into()],
            ..NodePolicy::default()
        };
        assert_eq!(
            rules(&check(&p, &s, "")),
            vec![("allowed_volumes", "volumes[1]".to_string())]
        );
    }

    #[test]
    fn host_paths_are_compared_by_component_after_normalising() {
        let p = policy(&["/srv/berth", "/var/lib/app/"]);
        for (path, ok) in [
            ("/srv/berth", true),
            ("/srv/berth/", true),
            ("/srv/berth/web/data", true),
            ("/srv/berth/./web", true),
            ("/srv/berth/web/../db", true),
            ("/var/lib/app", true),
            ("/var/lib/app/x", true),
            ("/srv/berthx", false),
            ("/srv/berth-other/a", false),
            ("/srv/berth/../etc", false),
            ("/srv/berth/../../../../etc/shadow", false),
            ("/srv", false),
            ("/", false),
            ("/etc", false),
            ("relative/path", false),
            ("./srv/berth", false),
            ("", false),
        ] {
            assert_eq!(p.host_path_allowed(path).is_ok(), ok, "{path}");
        }
        assert!(policy(&[]).host_path_allowed("/srv/berth").is_err());
        // An allowed path written with `..` is normalised too.
        assert!(
            policy(&["/srv/x/../berth"])
                .host_path_allowed("/srv/berth/a")
                .is_ok()
        );
    }

    #[test]
    fn volumes_build_and_load_are_checked() {
        let mut p = policy(&["/srv/berth"]);
        p.allowed_volumes = vec!["appdata".into()];
        let mut s = spec();
        s.volumes = vec![
            Volume::parse("/srv/berth/data:/data").expect("volume"),
            Volume::parse("appdata:/cache").expect("volume"),
            Volume::parse("/etc:/host-etc:ro").expect("volume"),
            Volume::parse("/srv/berth/../../etc:/x").expect("volume"),
        ];
        assert_eq!(
            rules(&check(&p, &s, "")),
            vec![
                ("allowed_host_paths", "volumes[2]".to_string()),
                ("allowed_host_paths", "volumes[3]".to_string()),
            ]
        );

        let mut s = spec();
        s.image = ImageSource::Build {
            build: BuildSpec {
                context: "/home/me/app".into(),
                dockerfile: None,
            },
        };
        assert_eq!(
            rules(&check(&p, &s, "")),
            vec![("allowed_host_paths", "image.build.context".to_string())]
        );
        s.image = ImageSource::Build {
            build: BuildSpec {
                context: "/srv/berth/app".into(),
                dockerfile: Some("../../Dockerfile".into()),
            },
        };
        assert!(check(&p, &s, "").is_empty());
        s.image = ImageSource::Load {
            load: "images/app.tar".into(),
        };
        assert_eq!(
            rules(&check(&p, &s, "")),
            vec![("allowed_host_paths", "image.load".to_string())]
        );
        s.image = ImageSource::Load {
            load: "/srv/berth/app.tar".into(),
        };
        assert!(check(&p, &s, "").is_empty());

        let mut s = spec();
        s.config = vec![
            ConfigMount {
                source: "/srv/berth/web/conf".into(),
                target: "/etc/web".into(),
                on_change: OnChange::Restart,
            },
            ConfigMount {
                source: "/etc/ssh".into(),
                target: "/etc/ssh".into(),
                on_change: OnChange::None,
            },
        ];
        assert_eq!(
            rules(&check(&p, &s, "services[0]")),
            vec![(
                "allowed_host_paths",
                "services[0].config[1].source".to_string()
            )]
        );
    }

    #[test]
    fn every_violation_is_reported() {
        let mut s = spec();
        s.privileged = true;
        s.network = Network::Host;
        s.volumes = vec![Volume::parse("/:/host").expect("volume")];
        let v = check(&NodePolicy::default(), &s, "");
        assert_eq!(
            rules(&v),
            vec![
                ("allow_privileged", "privileged".to_string()),
                ("allow_host_network", "network".to_string()),
                ("allowed_host_paths", "volumes[0]".to_string()),
            ]
        );
    }

    #[test]
    fn signal_hosts() {
        let any = NodePolicy::default();
        assert!(any.check_signal_url("http://anything/x", "u").is_ok());
        let p = NodePolicy {
            allowed_signal_hosts: vec!["heat.example".into(), "10.0.0.1:8000".into()],
            ..NodePolicy::default()
        };
        for (url, ok) in [
            ("https://heat.example/v1/signal?sig=x", true),
            ("https://HEAT.example:443/x", true),
            ("http://user:pw@heat.example:8004/x", true),
            ("http://10.0.0.1:8000/x", true),
            ("http://10.0.0.1:8001/x", false),
            ("http://10.0.0.1/x", false),
            ("http://heat.example.evil/x", false),
            ("http://evil/x?h=heat.example", false),
            ("http://evil#@heat.example", false),
            ("http://[::1]:8000/x", false),
            ("not a url", false),
            ("http:///x", false),
            ("http://heat.example:notaport/x", false),
        ] {
            let r = p.check_signal_url(url, "deploy_signal_id");
            assert_eq!(r.is_ok(), ok, "{url}: {r:?}");
            if let Err(v) = r {
                assert_eq!(v.rule, "allowed_signal_hosts");
                assert_eq!(v.field, "deploy_signal_id");
            }
        }
        let v6 = NodePolicy {
            allowed_signal_hosts: vec!["::1".into()],
            ..NodePolicy::default()
        };
        assert!(v6.check_signal_url("http://[::1]:8000/x", "u").is_ok());
    }
}
