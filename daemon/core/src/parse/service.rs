//! Step two for one service: a map node to a [`ServiceSpec`], every problem
//! reported with its field path.

use std::collections::BTreeMap;
use std::time::Duration;

use super::read::{Ctx, Field, optional, suggest};
use super::tree::{Node, Scalar, Value};
use crate::spec::env_file::valid_env_name;
use crate::spec::{
    BuildSpec, Condition, ConfigMount, DEFAULT_HEALTH_TIMEOUT, DEFAULT_SETTLE, Dependency,
    DesiredState, EnvValue, Healthcheck, Hook, HookKind, HookPlace, Hooks, ImageSource,
    InputSource, Kind, Logging, Network, OnChange, OnTimeout, OutputRef, PortMapping, PullPolicy,
    Resources, RestartPolicy, RollbackPolicy, ServiceSpec, Ulimit, UpdatePolicy, Volume,
    normalize_unit_name, valid_output_name, valid_service_name,
};

/// Every field a service may have, in the order messages list them.
pub const SERVICE_FIELDS: &[&str] = &[
    "name",
    "image",
    "pull",
    "command",
    "entrypoint",
    "env",
    "env_file",
    "user",
    "volumes",
    "volumes_from",
    "network",
    "ports",
    "privileged",
    "cap_add",
    "cap_drop",
    "security_opt",
    "ulimits",
    "pid",
    "ipc",
    "uts",
    "hostname",
    "extra_hosts",
    "group_add",
    "tty",
    "interactive",
    "resources",
    "stop_signal",
    "stop_timeout",
    "logging",
    "restart",
    "state",
    "kind",
    "exec_in",
    "healthcheck",
    "outputs",
    "exit_codes",
    "inputs",
    "update",
    "config",
    "depends_on",
    "after_units",
    "requires_units",
    "hooks",
];

/// Fields of later berth versions, refused with a message saying so (none
/// at the moment: a field announced before it works goes here).
pub const NOT_YET_FIELDS: &[&str] = &[];

const LIST_HINT: &str = r#"; use a list, e.g. ["/demo", "serve"]"#;
const NAME_RULE: &str = "a service name: lowercase letters, digits, `_` and `-`, \
                         starting with a letter or digit, at most 63 characters";

const RESTART: &[(&str, RestartPolicy)] = &[
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
    ("unless-stopped", RestartPolicy::UnlessStopped),
];
/// `update.rollback`.
const ROLLBACK: &[(&str, RollbackPolicy)] = &[
    ("auto", RollbackPolicy::Auto),
    ("none", RollbackPolicy::None),
];
const PULL: &[(&str, PullPolicy)] = &[
    ("missing", PullPolicy::Missing),
    ("always", PullPolicy::Always),
    ("never", PullPolicy::Never),
];
const STATE: &[(&str, DesiredState)] = &[
    ("running", DesiredState::Running),
    ("stopped", DesiredState::Stopped),
];
const KIND: &[(&str, Kind)] = &[("service", Kind::Service), ("task", Kind::Task)];

/// Reads one service; `None` if anything in it was wrong (all of it reported).
pub(super) fn service(cx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<ServiceSpec> {
    let before = cx.errors.len();
    let f = cx.map(Field { node, path }, SERVICE_FIELDS, NOT_YET_FIELDS)?;
    let mut spec = ServiceSpec::default();

    match f.get("name") {
        Some(name) => {
            spec.name = cx
                .string(name, NAME_RULE)
                .and_then(|n| service_name(cx, name, n))
                .unwrap_or_default();
        }
        None => cx.missing(&f, "name", "the service's name, e.g. name: web"),
    }
    match (f.get("image"), f.get("exec_in")) {
        (Some(image_field), None) => spec.image = image(cx, image_field).unwrap_or_default(),
        (Some(image_field), Some(_)) => cx.invalid(
            image_field,
            "an exec_in task runs in that service's container and has no image; remove image",
        ),
        (None, Some(_)) => {}
        (None, None) => cx.missing(&f, "image", "e.g. image: berth-demo:latest"),
    }
    if let Some(p) = f.get("pull") {
        spec.pull = cx.choice(p, PULL).unwrap_or_default();
        let what = match &spec.image {
            ImageSource::Build { .. } => Some("a built image is never pulled"),
            ImageSource::Load { .. } => Some("a loaded image is never pulled"),
            ImageSource::Ref(_) => None,
        };
        if let Some(what) = what {
            cx.invalid(
                p,
                format!("pull applies to an image reference; {what}: remove pull"),
            );
        }
    }
    spec.command = f.get("command").and_then(|c| cx.argv(c, LIST_HINT));
    spec.entrypoint = f.get("entrypoint").and_then(|c| cx.argv(c, LIST_HINT));
    if let Some(env_field) = f.get("env") {
        spec.env = env(cx, env_field).unwrap_or_default();
    }
    if let Some(e) = f.get("env_file") {
        spec.env_file = env_file(cx, e).unwrap_or_default();
    }
    spec.user = f
        .get("user")
        .and_then(|u| cx.string(u, "a user like 1000, 1000:1000 or nobody"));
    if let Some(v) = f.get("volumes") {
        spec.volumes = cx
            .parsed_list(
                v,
                "a volume",
                r#", e.g. ["/srv/web:/data:rw"]"#,
                Volume::parse,
            )
            .unwrap_or_default();
    }
    if let Some(v) = f.get("volumes_from") {
        spec.volumes_from = volumes_from(cx, v, &spec.name).unwrap_or_default();
    }
    if let Some(n) = f.get("network") {
        spec.network = network(cx, n).unwrap_or_default();
    }
    if let Some(p) = f.get("ports") {
        spec.ports = cx
            .parsed_list(
                p,
                "a port mapping",
                r#", e.g. ["8080:80"]"#,
                PortMapping::parse,
            )
            .unwrap_or_default();
    }
    if let Some(p) = f.get("privileged") {
        spec.privileged = cx.boolean(p).unwrap_or_default();
    }
    for (key, list) in [
        ("cap_add", &mut spec.cap_add),
        ("cap_drop", &mut spec.cap_drop),
        ("security_opt", &mut spec.security_opt),
    ] {
        if let Some(l) = f.get(key) {
            *list = cx.strings(l, "a string", "").unwrap_or_default();
        }
    }
    if let Some(u) = f.get("ulimits") {
        spec.ulimits = ulimits(cx, u).unwrap_or_default();
    }
    spec.pid = f.get("pid").and_then(|p| namespace(cx, p, &["host"]));
    spec.ipc = f
        .get("ipc")
        .and_then(|p| namespace(cx, p, &["host", "private", "shareable"]));
    spec.uts = f
        .get("uts")
        .and_then(|u| cx.choice(u, &[("host", "host")]))
        .map(str::to_string);
    if let Some(h) = f.get("hostname") {
        spec.hostname = hostname(cx, h);
        if spec.uts.is_some() {
            cx.invalid(
                h,
                "a hostname cannot be set with uts: host (the container has the host's \
                 hostname); remove one of them",
            );
        }
    }
    if let Some(h) = f.get("extra_hosts") {
        spec.extra_hosts = cx
            .parsed_list(
                h,
                "a NAME:IP entry",
                r#", e.g. ["db.internal:10.0.0.5"]"#,
                extra_host,
            )
            .unwrap_or_default();
    }
    if let Some(g) = f.get("group_add") {
        spec.group_add = cx
            .parsed_list(g, "a group", r#", e.g. ["wheel", "1001"]"#, group)
            .unwrap_or_default();
    }
    for (key, flag) in [
        ("tty", &mut spec.tty),
        ("interactive", &mut spec.interactive),
    ] {
        if let Some(b) = f.get(key) {
            *flag = cx.boolean(b).unwrap_or_default();
        }
    }
    if let Some(r) = f.get("resources") {
        spec.resources = resources(cx, r).unwrap_or_default();
    }
    spec.stop_signal = f.get("stop_signal").and_then(|s| signal(cx, s));
    spec.stop_timeout = f.get("stop_timeout").and_then(|t| cx.duration(t));
    spec.logging = f.get("logging").and_then(|l| logging(cx, l));
    spec.restart = f.get("restart").and_then(|r| cx.choice(r, RESTART));
    if let Some(s) = f.get("state") {
        spec.state = cx.choice(s, STATE).unwrap_or_default();
    }
    let kind = match f.get("kind") {
        Some(k) => cx.choice(k, KIND),
        None => Some(Kind::Service),
    };
    spec.kind = kind.unwrap_or_default();
    if let Some(e) = f.get("exec_in") {
        spec.exec_in = exec_in(cx, &f, e, &spec.name, kind);
    }
    spec.healthcheck = f.get("healthcheck").and_then(|h| healthcheck(cx, h));
    if let Some(o) = f.get("outputs") {
        spec.outputs = outputs(cx, o).unwrap_or_default();
        if kind == Some(Kind::Service) {
            cx.invalid(o, "\"outputs\" is only allowed with kind: task");
        }
    }
    if let Some(e) = f.get("exit_codes") {
        spec.exit_codes = exit_codes(cx, e).unwrap_or_default();
        if kind != Some(Kind::Task) {
            cx.invalid(
                e,
                "\"exit_codes\" is only allowed with kind: task (a service is judged by running, not by its exit)",
            );
        }
    }
    if let Some(u) = f.get("update") {
        spec.update = update(cx, u).unwrap_or_default();
    }
    if let Some(c) = f.get("config") {
        spec.config = config(cx, c).unwrap_or_default();
        let volume_targets = spec.volumes.iter().map(|v| v.target.as_str());
        if let Some(t) = volume_targets
            .into_iter()
            .find(|t| spec.config.iter().any(|m| m.target == *t))
        {
            cx.invalid(
                c,
                format!("target {t} is also a volume's target; each path in the container is mounted once"),
            );
        }
    }

    for (key, list) in [
        ("after_units", &mut spec.after_units),
        ("requires_units", &mut spec.requires_units),
    ] {
        if let Some(l) = f.get(key) {
            *list = units(cx, l).unwrap_or_default();
        }
    }

    if let Some(h) = f.get("hooks") {
        spec.hooks = hooks(cx, h).unwrap_or_default();
        if kind == Some(Kind::Task) {
            cx.invalid(h, "\"hooks\" is only allowed with kind: service");
        }
    }

    if let Some(d) = f.get("depends_on") {
        spec.depends_on = depends_on(cx, d, &spec.name).unwrap_or_default();
    }
    if let Some(i) = f.get("inputs") {
        spec.inputs = inputs(cx, i, &spec.name, &spec.env).unwrap_or_default();
    }

    (cx.errors.len() == before).then_some(spec)
}

/// The fields an `exec_in` task may have besides its name and kind: what
/// `docker exec` takes, and what orders and judges it.
const EXEC_FIELDS: &[&str] = &[
    "name",
    "kind",
    "exec_in",
    "command",
    "user",
    "privileged",
    "env",
    "exit_codes",
    "depends_on",
    "after_units",
    "requires_units",
    "update",
];

/// `exec_in: SERVICE`: a task (`kind: task`) with a `command` that runs in
/// SERVICE's container; the fields that shape a container of its own are
/// refused (it has none).
fn exec_in(
    cx: &mut Ctx<'_>,
    f: &super::read::Fields<'_>,
    e: Field<'_>,
    own: &str,
    kind: Option<Kind>,
) -> Option<String> {
    let target = cx
        .string(e, NAME_RULE)
        .and_then(|n| service_name(cx, e, n))?;
    if target == own {
        cx.invalid(
            e,
            format!("{own:?} cannot exec in its own container; name another service"),
        );
        return None;
    }
    if kind != Some(Kind::Task) {
        cx.invalid(e, "exec_in is only allowed with kind: task (it runs once, in another service's container)");
    }
    if f.get("command").is_none() {
        cx.missing(
            f,
            "command",
            r#"what to run in the container, e.g. command: ["keystone-manage", "bootstrap"]"#,
        );
    }
    for key in SERVICE_FIELDS
        .iter()
        .filter(|k| !EXEC_FIELDS.contains(k) && **k != "image")
    {
        if let Some(other) = f.get(key) {
            cx.invalid(
                other,
                format!(
                    "\"{key}\" is not allowed with exec_in: the command runs in {target}'s \
                     container, which has its own; allowed: {}",
                    EXEC_FIELDS.join(", ")
                ),
            );
        }
    }
    Some(target)
}

/// `after_units` / `requires_units`: systemd unit names, made full (see
/// [`normalize_unit_name`]); a name listed twice counts once.
fn units(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<String>> {
    let names = cx.parsed_list(
        f,
        "a systemd unit name",
        r#", e.g. ["postgresql.service", "srv-data.mount"]"#,
        normalize_unit_name,
    )?;
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Some(out)
}

fn service_name(cx: &mut Ctx<'_>, f: Field<'_>, name: String) -> Option<String> {
    if valid_service_name(&name) {
        Some(name)
    } else {
        cx.expected(f, NAME_RULE);
        None
    }
}

const IMAGE_FORMS: &str = r#"an image reference like "berth-demo:latest", {build: {context: DIR, dockerfile: FILE}} or {load: FILE.tar}"#;

fn image(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<ImageSource> {
    if !matches!(f.node.value, Value::Map(_)) {
        let reference = cx.string(f, IMAGE_FORMS)?;
        if reference.chars().any(char::is_whitespace) {
            cx.expected(
                f,
                "an image reference without spaces, like berth-demo:latest",
            );
            return None;
        }
        return Some(ImageSource::Ref(reference));
    }
    let before = cx.errors.len();
    let m = cx.map(f, &["build", "load"], &[])?;
    let unknown_keys_reported = cx.errors.len() > before;
    match (m.get("build"), m.get("load")) {
        (Some(build), None) => {
            let b = cx.map(build, &["context", "dockerfile"], &[])?;
            let dockerfile = b
                .get("dockerfile")
                .map(|d| cx.string(d, "a path to a Dockerfile"));
            let context = match b.get("context") {
                Some(c) => cx.string(c, "a directory path"),
                None => {
                    cx.missing(&b, "context", "the build directory, e.g. context: ./web");
                    None
                }
            };
            Some(ImageSource::Build {
                build: BuildSpec {
                    context: context?,
                    dockerfile: optional(dockerfile)?,
                },
            })
        }
        (None, Some(load)) => cx
            .string(load, "a path to an image archive, e.g. images/web.tar")
            .map(|load| ImageSource::Load { load }),
        (Some(_), Some(_)) => {
            cx.invalid(f, "give either `build:` or `load:`, not both");
            None
        }
        (None, None) => {
            if !unknown_keys_reported {
                cx.expected(f, IMAGE_FORMS);
            }
            None
        }
    }
}

fn env(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<BTreeMap<String, EnvValue>> {
    let entries = cx.entries(f, "a map of NAME: value")?;
    let mut env = BTreeMap::new();
    let mut ok = true;
    for (entry, path) in entries {
        let value = Field {
            node: &entry.value,
            path: &path,
        };
        if !valid_env_name(&entry.key) {
            let message = format!(
                "{:?} is not a variable name: letters, digits and `_`, not starting with a digit",
                entry.key
            );
            cx.error(&path, entry.line, entry.column, message);
            ok = false;
        }
        match env_value(cx, value) {
            Some(v) => {
                env.insert(entry.key.clone(), v);
            }
            None => ok = false,
        }
    }
    ok.then_some(env)
}

const ENV_FILE_PATH: &str = "a host path without `..`: absolute, or relative to the spec file, \
                             e.g. /etc/berth/web.env";

/// `env_file`: one path or a list of them, each once.
fn env_file(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<String>> {
    if !matches!(f.node.value, Value::Seq(_)) {
        let path = env_file_path(cx, f)?;
        return Some(vec![path]);
    }
    let items = cx.list(f, r#", e.g. ["/etc/berth/web.env"]"#)?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        match env_file_path(cx, item) {
            Some(p) if out.contains(&p) => {
                cx.invalid(item, format!("{p} is listed twice; list each file once"));
                ok = false;
            }
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn env_file_path(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    let p = cx.string(f, ENV_FILE_PATH)?;
    if p.split('/').any(|c| c == "..") || p.ends_with('/') || p.contains('\0') {
        cx.expected(f, ENV_FILE_PATH);
        return None;
    }
    Some(p)
}

const ENV_VALUE: &str = r#"a string, number or boolean, or {value: "...", secret: true}"#;

fn env_value(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<EnvValue> {
    match (&f.node.value, f.node.scalar()) {
        (Value::Map(_), _) => {
            let m = cx.map(f, &["value", "secret"], &[])?;
            let secret = m.get("secret").map(|s| cx.boolean(s));
            let value = match m.get("value") {
                Some(v) => env_text(cx, v),
                None => {
                    cx.missing(&m, "value", r#"e.g. {value: "s3cret", secret: true}"#);
                    None
                }
            };
            Some(EnvValue {
                value: value?,
                secret: secret.unwrap_or(Some(false))?,
            })
        }
        (_, Some(_)) => env_text(cx, f).map(EnvValue::plain),
        _ => {
            let got = f.node.describe();
            let hint = if f.node.value == Value::Null {
                r#"; write "" for an empty value"#
            } else {
                ""
            };
            cx.invalid(f, format!("expected {ENV_VALUE} (got {got}){hint}"));
            None
        }
    }
}

/// Any scalar, as written (`true`, `8080` and `""` included).
fn env_text(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    match f.node.text() {
        Some(text) => Some(text.to_string()),
        None => {
            cx.expected(f, ENV_VALUE);
            None
        }
    }
}

fn network(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Network> {
    const WHAT: &str = r#"bridge, host, none or a network name like "backend""#;
    let name = cx.string(f, WHAT)?;
    Some(match name.as_str() {
        "bridge" => Network::Bridge,
        "host" => Network::Host,
        "none" => Network::None,
        other if valid_object_name(other) => Network::Named(name),
        _ => {
            cx.expected(f, WHAT);
            return None;
        }
    })
}

const VOLUMES_FROM_EXAMPLE: &str = r#", e.g. ["db"] or ["db:ro"]"#;

/// `volumes_from`: `SERVICE`, `SERVICE:ro` or `SERVICE:rw`, each a service
/// of this node (berth service names, not container names), never the
/// service itself, each service once.
fn volumes_from(cx: &mut Ctx<'_>, f: Field<'_>, own: &str) -> Option<Vec<String>> {
    let items = cx.list(f, VOLUMES_FROM_EXAMPLE)?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        let Some(text) = cx.string(item, "SERVICE, SERVICE:ro or SERVICE:rw") else {
            ok = false;
            continue;
        };
        let (service, mode) = match text.split_once(':') {
            Some((service, mode)) => (service, Some(mode)),
            None => (text.as_str(), None),
        };
        let problem = if !valid_service_name(service) {
            Some(format!(
                "`{text}`: `{service}` is not {NAME_RULE} (volumes_from names a berth \
                 service of this node, not a container){VOLUMES_FROM_EXAMPLE}"
            ))
        } else if mode.is_some_and(|m| m != "ro" && m != "rw") {
            Some(format!(
                "`{text}`: `{}` is not a mode; write SERVICE, SERVICE:ro or SERVICE:rw",
                mode.unwrap_or_default()
            ))
        } else if service == own {
            Some(format!(
                "`{text}`: a service cannot take volumes from itself; name another service"
            ))
        } else if out.iter().any(|o| o.split(':').next() == Some(service)) {
            Some(format!(
                "`{text}`: {service} is listed twice; list each service once"
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                cx.invalid(item, message);
                ok = false;
            }
            None => out.push(text),
        }
    }
    ok.then_some(out)
}

/// A Docker object name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_object_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `pid` and `ipc`: one of `modes`, or `container:NAME`.
fn namespace(cx: &mut Ctx<'_>, f: Field<'_>, modes: &[&str]) -> Option<String> {
    let what = format!("{} or container:NAME", modes.join(", "));
    let mode = cx.string(f, &what)?;
    let valid = modes.contains(&mode.as_str())
        || mode
            .strip_prefix("container:")
            .is_some_and(valid_object_name);
    if valid {
        Some(mode)
    } else {
        cx.expected(f, &what);
        None
    }
}

/// The names Docker accepts in `--ulimit`.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

fn ulimits(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<BTreeMap<String, Ulimit>> {
    let entries = cx.entries(
        f,
        "a map like {nofile: 1024} or {nofile: {soft: 1024, hard: 4096}}",
    )?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (entry, path) in entries {
        let value = Field {
            node: &entry.value,
            path: &path,
        };
        if !ULIMITS.contains(&entry.key.as_str()) {
            let mut message = format!("unknown ulimit {:?}; ", entry.key);
            if let Some(best) = suggest(&entry.key, ULIMITS) {
                message.push_str(&format!("did you mean {best:?}? "));
            }
            message.push_str(&format!("known ulimits: {}", ULIMITS.join(", ")));
            cx.error(&path, entry.line, entry.column, message);
            ok = false;
        }
        match ulimit(cx, value) {
            Some(u) => {
                out.insert(entry.key.clone(), u);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An integer (soft = hard) or `{soft, hard}`; -1 means unlimited.
fn ulimit(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Ulimit> {
    if !matches!(f.node.value, Value::Map(_)) {
        let n = cx.integer(f, -1, i64::MAX)?;
        return Some(Ulimit { soft: n, hard: n });
    }
    let m = cx.map(f, &["soft", "hard"], &[])?;
    let mut limit = |key: &str| match m.get(key) {
        Some(v) => cx.integer(v, -1, i64::MAX),
        None => {
            cx.missing(&m, key, "an integer, or -1 for unlimited");
            None
        }
    };
    let (soft, hard) = (limit("soft"), limit("hard"));
    let (soft, hard) = (soft?, hard?);
    let unlimited = |n: i64| n == -1;
    if unlimited(hard) || (!unlimited(soft) && soft <= hard) {
        Some(Ulimit { soft, hard })
    } else {
        cx.invalid(f, format!("soft ({soft}) must not exceed hard ({hard})"));
        None
    }
}

fn resources(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Resources> {
    let m = cx.map(
        f,
        &["memory", "cpus", "pids", "cpu_shares", "cpuset_cpus"],
        &[],
    )?;
    let memory = m.get("memory").map(|v| cx.size(v));
    let nano_cpus = m.get("cpus").map(|v| cpus(cx, v));
    let pids = m.get("pids").map(|v| cx.integer(v, 1, i64::MAX));
    // Docker's own bounds for --cpu-shares.
    let cpu_shares = m.get("cpu_shares").map(|v| cx.integer(v, 2, 262_144));
    let cpuset_cpus = m.get("cpuset_cpus").map(|v| cpuset(cx, v));
    Some(Resources {
        memory: optional(memory)?,
        nano_cpus: optional(nano_cpus)?,
        pids: optional(pids)?,
        cpu_shares: optional(cpu_shares)?,
        cpuset_cpus: optional(cpuset_cpus)?,
    })
}

/// `resources.cpuset_cpus`: CPU numbers and ranges, `0-3,6`.
fn cpuset(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    const WHAT: &str = "CPU numbers and ranges like 0-3,6";
    let text = cx.string(f, WHAT)?;
    if text == "all" {
        cx.invalid(
            f,
            "\"all\" is not a CPU list; leave cpuset_cpus out to run on every CPU",
        );
        return None;
    }
    let number = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
    };
    let valid = text.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => matches!((number(a), number(b)), (Some(a), Some(b)) if a <= b),
        None => number(part).is_some(),
    });
    if valid {
        Some(text)
    } else {
        cx.expected(f, WHAT);
        None
    }
}

/// A hostname: dot-separated labels of letters, digits and `-` (not at a
/// label's ends), at most 64 characters (Linux's limit).
fn valid_hostname(name: &str) -> bool {
    name.len() <= 64
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

const HOSTNAME_RULE: &str = "a hostname: letters, digits, `-` and `.`, at most 64 characters, \
                             e.g. db-1.internal";

fn hostname(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    let name = cx.string(f, HOSTNAME_RULE)?;
    if valid_hostname(&name) {
        Some(name)
    } else {
        cx.expected(f, HOSTNAME_RULE);
        None
    }
}

/// One `extra_hosts` entry: `NAME:IP`, the IP an address (v4 or v6) or
/// `host-gateway` (the engine puts in the host's address).
fn extra_host(s: &str) -> Result<String, String> {
    let hint = "expected NAME:IP, e.g. db.internal:10.0.0.5 or gw:host-gateway";
    let Some((name, ip)) = s.split_once(':') else {
        return Err(format!("`{s}`: {hint}"));
    };
    if !valid_hostname(name) {
        return Err(format!("`{s}`: `{name}` is not {HOSTNAME_RULE}"));
    }
    if ip != "host-gateway" && ip.parse::<core::net::IpAddr>().is_err() {
        return Err(format!("`{s}`: `{ip}` is not an IP address; {hint}"));
    }
    Ok(s.to_string())
}

/// One `group_add` entry: a group name or a numeric id.
fn group(s: &str) -> Result<String, String> {
    let mut bytes = s.bytes();
    let valid = (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        || (bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')));
    if valid && s.len() <= 32 {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a group name (letters, digits, `_`, `-`, `.`, starting with a \
             letter or `_`) or a numeric id, e.g. wheel or 1001"
        ))
    }
}

/// CPUs as Docker's NanoCpus: `0.5` → 500_000_000.
fn cpus(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<u64> {
    let cpus = match f.node.scalar() {
        Some(Scalar::Int(n)) => n as f64,
        Some(Scalar::Float(x)) => x,
        _ => f64::NAN,
    };
    let nanos = (cpus * 1e9).round();
    if cpus.is_finite() && (1.0..=1e15).contains(&nanos) {
        // In range and integral, so the cast is exact.
        Some(nanos as u64)
    } else {
        cx.expected(f, "a number of CPUs greater than 0, like 0.5 or 2");
        None
    }
}

/// Linux signal numbers, for `stop_signal: 15` and to validate names.
const SIGNALS: &[(&str, i64)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// `SIGTERM`, `TERM`, `sigterm` or `15`, stored as `SIGTERM`.
fn signal(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    const WHAT: &str = "a signal like SIGTERM, TERM or 15";
    let found = match f.node.scalar() {
        Some(Scalar::Int(n)) => SIGNALS.iter().find(|(_, num)| *num == n),
        Some(Scalar::Str(s)) => {
            let upper = s.to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            SIGNALS.iter().find(|(name, _)| *name == bare)
        }
        _ => None,
    };
    match found {
        Some((name, _)) => Some(format!("SIG{name}")),
        None => {
            cx.expected(f, WHAT);
            None
        }
    }
}

fn logging(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Logging> {
    let m = cx.map(f, &["max_size", "max_files", "tag"], &[])?;
    let max_size = m.get("max_size").map(|v| cx.size(v));
    let max_files = m.get("max_files").map(|v| cx.count(v));
    let tag = m.get("tag").map(|v| log_tag(cx, v));
    let needs = "rotation needs both max_size (e.g. 10Mi) and max_files (e.g. 3)";
    match (m.get("max_size"), m.get("max_files"), m.get("tag")) {
        (Some(_), None, _) => cx.missing(&m, "max_files", needs),
        (None, Some(_), _) => cx.missing(&m, "max_size", needs),
        (None, None, None) => {
            cx.invalid(
                f,
                "logging needs rotation (max_size: 10Mi, max_files: 3), a tag (tag: nova_api), \
                 or both; or leave logging out for the engine's default",
            );
            return None;
        }
        _ => {}
    }
    if max_size.is_some() != max_files.is_some() {
        return None;
    }
    Some(Logging {
        max_size: optional(max_size)?,
        max_files: optional(max_files)?,
        tag: optional(tag)?,
    })
}

/// `logging.tag`: text for the json-file driver's `tag` option, without
/// control characters (a line break would split the log lines it tags).
fn log_tag(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<String> {
    const WHAT: &str = "a log tag, e.g. nova_api or {{.Name}}";
    let tag = cx.string(f, WHAT)?;
    if let Some(c) = tag.chars().find(|c| c.is_control()) {
        cx.invalid(
            f,
            format!(
                "the log tag holds the control character {c:?}; use printable text, e.g. nova_api"
            ),
        );
        return None;
    }
    if tag.trim().is_empty() {
        cx.expected(f, WHAT);
        return None;
    }
    Some(tag)
}

fn healthcheck(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Healthcheck> {
    let m = cx.map(
        f,
        &[
            "exec",
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
        ],
        &[],
    )?;
    // Exactly one of `exec` (a command list) and `test` (a shell string).
    let command: Option<(Vec<String>, Option<String>)> = match (m.get("exec"), m.get("test")) {
        (Some(_), Some(t)) => {
            cx.invalid(
                t,
                "give exec (a command list, run directly) or test (a shell string), not both",
            );
            None
        }
        (Some(e), None) => cx
            .strings(e, "a string", LIST_HINT)
            .and_then(|exec| {
                if exec.is_empty() {
                    cx.expected(e, r#"a non-empty command list, e.g. ["/demo", "health"]"#);
                    None
                } else {
                    Some(exec)
                }
            })
            .map(|exec| (exec, None)),
        (None, Some(t)) => cx
            .string(
                t,
                r#"a shell command, e.g. test: "/openstack/healthcheck 5672""#,
            )
            .and_then(|test| {
                if test.trim().is_empty() {
                    cx.expected(
                        t,
                        r#"a non-empty shell command, e.g. "/openstack/healthcheck""#,
                    );
                    None
                } else {
                    Some((Vec::new(), Some(test)))
                }
            }),
        (None, None) => {
            cx.missing(
                &m,
                "exec",
                r#"the check's command, e.g. exec: ["/demo", "health"] (or a shell string: test: "/openstack/healthcheck")"#,
            );
            None
        }
    };
    let interval = m.get("interval").map(|v| cx.duration(v));
    let timeout = m.get("timeout").map(|v| cx.duration(v));
    let retries = m.get("retries").map(|v| cx.count(v));
    let start_period = m.get("start_period").map(|v| cx.duration(v));
    let (exec, test) = command?;
    Some(Healthcheck {
        exec,
        test,
        interval: interval.unwrap_or(Some(Duration::from_secs(5)))?,
        timeout: timeout.unwrap_or(Some(Duration::from_secs(2)))?,
        retries: retries.unwrap_or(Some(3))?,
        start_period: optional(start_period)?,
    })
}

/// `exit_codes`: the codes a task may exit with and succeed, 0-255, each once.
fn exit_codes(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<i64>> {
    let items = cx.list(f, ", e.g. [0, 2]")?;
    let mut out: Vec<i64> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        match cx.integer(item, 0, 255) {
            Some(code) if out.contains(&code) => {
                cx.invalid(item, format!("duplicate exit code {code}"));
                ok = false;
            }
            Some(code) => out.push(code),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn outputs(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<String>> {
    const WHAT: &str = "an output name: lowercase letters, digits, `_` and `-`";
    let items = cx.list(f, r#", e.g. ["result"]"#)?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        let Some(name) = cx.string(item, WHAT) else {
            ok = false;
            continue;
        };
        if !valid_output_name(&name) {
            cx.expected(item, WHAT);
            ok = false;
        } else if out.contains(&name) {
            cx.invalid(item, format!("duplicate output {name:?}"));
            ok = false;
        } else {
            out.push(name);
        }
    }
    ok.then_some(out)
}

const DEPENDS_ON_EXAMPLE: &str = "e.g. [db] or [{service: db, condition: healthy}]";

/// `depends_on`: the services this one waits for, each once, never itself.
fn depends_on(cx: &mut Ctx<'_>, f: Field<'_>, own: &str) -> Option<Vec<Dependency>> {
    let items = cx.list(f, &format!(", {DEPENDS_ON_EXAMPLE}"))?;
    let mut out: Vec<Dependency> = Vec::with_capacity(items.len());
    // The path each service was first listed at.
    let mut listed: Vec<&str> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        let Some(d) = dependency(cx, item) else {
            ok = false;
            continue;
        };
        if d.service == own {
            cx.invalid(
                item,
                format!(
                    "{own:?} cannot depend on itself; remove this entry (depends_on names other services)"
                ),
            );
            ok = false;
        } else if let Some(i) = out.iter().position(|o| o.service == d.service) {
            cx.invalid(
                item,
                format!(
                    "{:?} is already listed at {}; list each service once, with the condition it needs",
                    d.service, listed[i]
                ),
            );
            ok = false;
        } else {
            out.push(d);
            listed.push(path);
        }
    }
    ok.then_some(out)
}

/// One `depends_on` entry: `db` (condition started), or `{service: db,
/// condition: healthy}`.
fn dependency(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Dependency> {
    if !matches!(f.node.value, Value::Map(_)) {
        let name = cx.string(
            f,
            "a service name like db, or {service: db, condition: healthy}",
        )?;
        return Some(Dependency {
            service: service_name(cx, f, name)?,
            condition: Condition::Started,
        });
    }
    let m = cx.map(f, &["service", "condition"], &[])?;
    let service = match m.get("service") {
        Some(s) => cx.string(s, NAME_RULE).and_then(|n| service_name(cx, s, n)),
        None => {
            cx.missing(
                &m,
                "service",
                "the service to wait for, e.g. {service: db, condition: healthy}",
            );
            None
        }
    };
    let conditions = Condition::ALL.map(|c| (c.as_str(), c));
    let condition = match m.get("condition") {
        Some(c) => cx.choice(c, &conditions),
        None => Some(Condition::Started),
    };
    Some(Dependency {
        service: service?,
        condition: condition?,
    })
}

const INPUTS_EXAMPLE: &str = "e.g. {region: eu-west, schema: {from: db-migrate.outputs.version}}";
const INPUT_VALUE: &str = "a string, number or boolean, or {from: SERVICE.outputs.NAME}";
const FROM_EXAMPLE: &str = "e.g. {from: db-migrate.outputs.version}";

/// `inputs`: `NAME: value` or `NAME: {from: SERVICE.outputs.NAME}`. Each
/// reaches the container as env `BERTH_INPUT_<NAME>`, so two names for
/// one variable, or `env` setting it too, are refused.
fn inputs(
    cx: &mut Ctx<'_>,
    f: Field<'_>,
    own: &str,
    env: &BTreeMap<String, EnvValue>,
) -> Option<BTreeMap<String, InputSource>> {
    let entries = cx.entries(f, &format!("a map of NAME: value, {INPUTS_EXAMPLE}"))?;
    let mut out = BTreeMap::new();
    // Env variable → the input that names it.
    let mut vars: BTreeMap<String, &str> = BTreeMap::new();
    let mut ok = true;
    for (entry, path) in entries {
        let value = Field {
            node: &entry.value,
            path: &path,
        };
        let name = entry.key.as_str();
        let problem = if !valid_output_name(name) {
            Some(format!(
                "{name:?} is not an input name: lowercase letters, digits, `_` and `-`, \
                 e.g. schema_version"
            ))
        } else {
            let var = crate::heat::input_env_name(name);
            if let Some(other) = vars.get(&var) {
                Some(format!(
                    "{name:?} and {other:?} are both the env variable {var}; rename one"
                ))
            } else if env.contains_key(&var) {
                Some(format!(
                    "env sets {var} too, which this input sets; remove it from env"
                ))
            } else {
                vars.insert(var, name);
                None
            }
        };
        if let Some(message) = problem {
            cx.error(&path, entry.line, entry.column, message);
            ok = false;
        }
        match input_value(cx, value, own) {
            Some(v) => {
                out.insert(entry.key.clone(), v);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One input's value: any scalar as written (as in `env`), or `{from:
/// SERVICE.outputs.NAME}` naming another service.
fn input_value(cx: &mut Ctx<'_>, f: Field<'_>, own: &str) -> Option<InputSource> {
    match &f.node.value {
        Value::Map(_) => {
            let m = cx.map(f, &["from"], &[])?;
            let Some(from) = m.get("from") else {
                cx.missing(&m, "from", &format!("a task's output, {FROM_EXAMPLE}"));
                return None;
            };
            let text = cx.string(from, &format!("SERVICE.outputs.NAME, {FROM_EXAMPLE}"))?;
            let Some(output) = OutputRef::parse(&text) else {
                cx.invalid(from, output_ref_problem(&text));
                return None;
            };
            if output.service == own {
                cx.invalid(
                    from,
                    format!(
                        "{own:?} cannot take an input from its own outputs; name another task's \
                         output, {FROM_EXAMPLE}"
                    ),
                );
                return None;
            }
            Some(InputSource::From { from: output })
        }
        Value::Scalar { text, .. } => Some(InputSource::Value(text.clone())),
        Value::Seq(_) | Value::Null => {
            let got = f.node.describe();
            let hint = if f.node.value == Value::Null {
                r#"; write "" for an empty value"#
            } else {
                ""
            };
            cx.invalid(f, format!("expected {INPUT_VALUE} (got {got}){hint}"));
            None
        }
    }
}

/// Why `text` is not `SERVICE.outputs.NAME`, part by part.
fn output_ref_problem(text: &str) -> String {
    let what = match text.split_once(".outputs.") {
        None => "it is not of the form SERVICE.outputs.NAME".to_string(),
        Some((service, _)) if !valid_service_name(service) => {
            format!("{service:?} is not {NAME_RULE}")
        }
        Some((_, output)) => {
            format!("{output:?} is not an output name: lowercase letters, digits, `_` and `-`")
        }
    };
    format!("{text:?}: {what}; {FROM_EXAMPLE}")
}

fn update(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<UpdatePolicy> {
    let m = cx.map(f, &["settle", "health_timeout", "rollback"], &[])?;
    let settle = m.get("settle").map(|v| cx.duration(v));
    let health_timeout = m.get("health_timeout").map(|v| cx.duration(v));
    let rollback = m.get("rollback").map(|v| cx.choice(v, ROLLBACK));
    Some(UpdatePolicy {
        settle: settle.unwrap_or(Some(DEFAULT_SETTLE))?,
        health_timeout: health_timeout.unwrap_or(Some(DEFAULT_HEALTH_TIMEOUT))?,
        rollback: rollback.unwrap_or(Some(RollbackPolicy::Auto))?,
    })
}

const CONFIG_EXAMPLE: &str =
    "e.g. {source: /etc/berth/config/web, target: /etc/demo, on_change: {signal: SIGHUP}}";

fn config(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<ConfigMount>> {
    let items = cx.list(f, &format!(", {CONFIG_EXAMPLE}"))?;
    let mut out: Vec<ConfigMount> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        let item = Field { node, path };
        match config_mount(cx, item) {
            Some(m) => {
                if out.iter().any(|o| o.target == m.target) {
                    cx.invalid(
                        item,
                        format!(
                            "target {} is mounted twice; each config source needs its own target",
                            m.target
                        ),
                    );
                    ok = false;
                } else {
                    out.push(m);
                }
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn config_mount(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<ConfigMount> {
    let m = cx.map(f, &["source", "target", "on_change"], &[])?;
    let mut path = |key: &str, relative_ok: bool, what: &str| -> Option<String> {
        let Some(v) = m.get(key) else {
            cx.missing(&m, key, what);
            return None;
        };
        let p = cx.string(v, what)?;
        if (!relative_ok && !p.starts_with('/')) || p.split('/').any(|c| c == "..") {
            cx.expected(v, what);
            return None;
        }
        Some(p)
    };
    // A relative source is resolved against the spec file's directory (by
    // berthctl and for spec_dir files); berthd refuses one over the API.
    let source = path(
        "source",
        true,
        "a host path without `..` (a file or directory): absolute, or relative to the spec file, e.g. /etc/berth/config/web",
    );
    let target = path(
        "target",
        false,
        "an absolute path in the container without `..`, e.g. /etc/demo",
    );
    if let Some(t) = &target
        && t == "/"
    {
        if let Some(v) = m.get("target") {
            cx.invalid(v, "target / would hide the whole container filesystem");
        }
        return None;
    }
    let on_change = match m.get("on_change") {
        Some(v) => on_change(cx, v),
        None => Some(OnChange::default()),
    };
    Some(ConfigMount {
        source: source?,
        target: target?,
        on_change: on_change?,
    })
}

fn on_change(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<OnChange> {
    const WHAT: &str = "restart, recreate, none, {signal: SIGHUP} or {exec: [\"cmd\", \"arg\"]}";
    if let Some(Scalar::Str(s)) = f.node.scalar() {
        return match s {
            "restart" => Some(OnChange::Restart),
            "recreate" => Some(OnChange::Recreate),
            "none" => Some(OnChange::None),
            _ => {
                cx.expected(f, WHAT);
                None
            }
        };
    }
    let Value::Map(entries) = &f.node.value else {
        cx.expected(f, WHAT);
        return None;
    };
    if entries.len() != 1 {
        cx.expected(f, WHAT);
        return None;
    }
    let m = cx.map(f, &["signal", "exec"], &[])?;
    if let Some(s) = m.get("signal") {
        return signal(cx, s).map(OnChange::Signal);
    }
    let e = m.get("exec")?;
    let argv = cx.strings(e, "a string", LIST_HINT)?;
    if argv.is_empty() {
        cx.expected(e, r#"a non-empty command list, e.g. ["/demo", "reload"]"#);
        return None;
    }
    Some(OnChange::Exec(argv))
}

/// Hook phases this version runs; the others are refused as not yet.
const HOOK_PHASES: &[&str] = &["pre_update", "post_update", "pre_delete"];
const HOOK_EXAMPLE: &str = r#"e.g. {breakpoint: {}}, {exec: ["/demo", "drain"], timeout: 30s} or {http: "https://ci.example/hook"}"#;
const ON_TIMEOUT: &[(&str, OnTimeout)] =
    &[("abort", OnTimeout::Abort), ("proceed", OnTimeout::Proceed)];
const HOOK_PLACES: &[(&str, HookPlace)] = &[
    ("container", HookPlace::Container),
    ("host", HookPlace::Host),
];

/// `hooks`: a map of phases, each a list of hooks.
fn hooks(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Hooks> {
    let m = cx.map(f, HOOK_PHASES, &[])?;
    let mut out = Hooks::default();
    let mut ok = true;
    for (phase, slot) in [
        ("pre_update", &mut out.pre_update),
        ("post_update", &mut out.post_update),
        ("pre_delete", &mut out.pre_delete),
    ] {
        if let Some(list) = m.get(phase) {
            match hook_list(cx, list) {
                Some(h) => *slot = h,
                None => ok = false,
            }
        }
    }
    ok.then_some(out)
}

fn hook_list(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Vec<Hook>> {
    let items = cx.list(f, &format!(", {HOOK_EXAMPLE}"))?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (node, path) in &items {
        match hook(cx, Field { node, path }) {
            Some(h) => out.push(h),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One hook: exactly one of `breakpoint`, `exec` or `http`, and `where`
/// (exec only), `timeout`, `on_timeout`.
fn hook(cx: &mut Ctx<'_>, f: Field<'_>) -> Option<Hook> {
    let m = cx.map(
        f,
        &[
            "breakpoint",
            "exec",
            "http",
            "where",
            "timeout",
            "on_timeout",
        ],
        &[],
    )?;
    let given: Vec<(&str, Field<'_>)> = ["breakpoint", "exec", "http"]
        .into_iter()
        .filter_map(|k| m.get(k).map(|f| (k, f)))
        .collect();
    let kind = match given.as_slice() {
        [] => {
            cx.invalid(
                f,
                format!("a hook needs one of breakpoint, exec or http; {HOOK_EXAMPLE}"),
            );
            None
        }
        [_, _, ..] => {
            cx.invalid(
                f,
                format!("a hook is one of breakpoint, exec or http, not several; {HOOK_EXAMPLE}"),
            );
            None
        }
        [(key, one)] => {
            let one = *one;
            match *key {
                "breakpoint" => {
                    // `breakpoint: {}`: a map with no fields (each one is named).
                    let empty = match &one.node.value {
                        Value::Map(e) => {
                            cx.map(one, &[], &[]);
                            e.is_empty()
                        }
                        _ => {
                            cx.expected(one, "an empty map: breakpoint: {}");
                            false
                        }
                    };
                    empty.then_some(HookKind::Breakpoint {})
                }
                "exec" => cx.strings(one, "a string", LIST_HINT).and_then(|argv| {
                    if argv.is_empty() {
                        cx.expected(one, r#"a non-empty command list, e.g. ["/demo", "drain"]"#);
                        None
                    } else {
                        Some(HookKind::Exec(argv))
                    }
                }),
                _ => cx.string(one, "an http(s) URL").and_then(|url| {
                    if hook_url_ok(&url) {
                        Some(HookKind::Http(url))
                    } else {
                        cx.invalid(
                            one,
                            "expected an http:// or https:// URL with a host, e.g. https://ci.example/hook",
                        );
                        None
                    }
                }),
            }
        }
    };
    let place = match m.get("where") {
        None => Some(HookPlace::Container),
        Some(w) if !matches!(kind, Some(HookKind::Exec(_))) && kind.is_some() => {
            cx.invalid(
                w,
                "\"where\" is for exec hooks: a breakpoint or an http hook runs nowhere",
            );
            None
        }
        Some(w) => cx.choice(w, HOOK_PLACES),
    };
    let timeout = m.get("timeout").map(|v| cx.duration(v));
    let on_timeout = m.get("on_timeout").map(|v| cx.choice(v, ON_TIMEOUT));
    Some(Hook {
        kind: kind?,
        place: place?,
        timeout: optional(timeout)?,
        on_timeout: on_timeout.unwrap_or(Some(OnTimeout::Abort))?,
    })
}

/// An http hook's URL: `http://` or `https://`, a host, no whitespace.
fn hook_url_ok(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = host.rsplit('@').next().unwrap_or("");
            !host.is_empty() && !url.chars().any(char::is_whitespace)
        }
        None => false,
    }
}
