//! One paunch container config to a berth spec, key by key, with paunch's
//! meaning (paunch's builder and tripleo_container_manage, read for what
//! each key does, not copied).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Found, Imported, Options, Problem};
use crate::parse::{Node, Scalar, Value};
use crate::spec::{
    ConfigMount, DesiredState, EnvValue, Healthcheck, ImageSource, InputSource, Kind, Logging,
    Network, OnChange, RestartPolicy, ServiceSpec, Ulimit, Volume, valid_service_name,
};
use crate::units::parse_size;

/// TripleO's config-hash variable: injected so a changed config recreates
/// the container. berth hashes watched config sources itself.
const CONFIG_HASH_ENV: &str = "TRIPLEO_CONFIG_HASH";
/// Where puppet writes each service's generated config on a TripleO node.
const PUPPET_GENERATED: &str = "/var/lib/config-data/puppet-generated/";

/// Keys berth has no equivalent for, with what to do instead.
const NO_EQUIVALENT: &[(&str, &str)] = &[
    (
        "config_volume",
        "TripleO's puppet bookkeeping; berth watches the puppet-generated mount's content instead",
    ),
    (
        "remove",
        "berth keeps each task's container until its next run, for `berthctl logs`",
    ),
    (
        "systemd_exec_flags",
        "berth runs the container itself, not through a tripleo_<name>.service unit",
    ),
    (
        "mem_swappiness",
        "berth sets no swappiness; the engine's default applies",
    ),
    (
        "memswap_limit",
        "berth sets no swap limit; the engine's default applies",
    ),
];

/// What an `action: exec` entry may carry: what `docker exec` takes, and
/// what orders and judges it.
const EXEC_KEYS: &[&str] = &[
    "action",
    "command",
    "user",
    "privileged",
    "environment",
    "exit_codes",
    "start_order",
    "depends_on",
    "name",
];

/// A converted container, before ordering.
pub(super) struct Converted {
    pub imported: Imported,
    pub start_order: i64,
    /// `depends_on` entries: systemd unit names, as paunch reads them.
    pub units: Vec<String>,
    /// Its container keeps running (not a task, not `state: stopped`).
    pub runs: bool,
}

/// Reads typed values off one container's map, recording problems.
struct Cx<'a, 'e> {
    found: &'a Found<'a>,
    errors: &'e mut Vec<Problem>,
    warnings: Vec<Problem>,
    notes: Vec<String>,
}

impl Cx<'_, '_> {
    fn problem(&self, node: &Node, key: &str, message: String) -> Problem {
        Problem {
            file: self.found.file.clone(),
            line: node.line,
            column: node.column,
            container: self.found.name.clone(),
            key: key.to_string(),
            message,
        }
    }
    fn error(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        let p = self.problem(node, key, message.into());
        self.errors.push(p);
    }
    fn warn(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        let p = self.problem(node, key, message.into());
        self.warnings.push(p);
    }

    fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match node.scalar() {
            Some(Scalar::Str(s)) => Some(s.to_string()),
            Some(_) => node.text().map(str::to_string),
            None => {
                self.error(
                    node,
                    key,
                    format!("expected a string (got {})", node.describe()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: &Node, key: &str) -> Option<bool> {
        match node.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            _ => {
                self.error(
                    node,
                    key,
                    format!("expected true or false (got {})", node.describe()),
                );
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, key: &str) -> Option<i64> {
        match node.scalar() {
            Some(Scalar::Int(n)) => Some(n),
            Some(Scalar::Str(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.error(
                    node,
                    key,
                    format!("expected an integer (got {})", node.describe()),
                );
                None
            }
        }
    }

    /// A list of strings, or one string taken as a one-item list (paunch's
    /// `security_opt`, `env_file`).
    fn strings(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.string(item, &format!("{key}[{i}]"))?);
                }
                Some(out)
            }
            Value::Scalar { .. } => self.string(node, key).map(|s| vec![s]),
            _ => {
                self.error(
                    node,
                    key,
                    format!("expected a list of strings (got {})", node.describe()),
                );
                None
            }
        }
    }
}

/// Converts one container; `None` when it cannot be (errors recorded).
pub(super) fn convert(
    found: &Found<'_>,
    opts: &Options<'_>,
    errors: &mut Vec<Problem>,
) -> Option<Converted> {
    let mut cx = Cx {
        found,
        errors,
        warnings: Vec::new(),
        notes: Vec::new(),
    };
    let before = cx.errors.len();
    let node = found.node;
    let Value::Map(entries) = &node.value else {
        cx.error(
            node,
            "",
            format!(
                "expected a container's config, {{image: ..., ...}} (got {})",
                node.describe()
            ),
        );
        return None;
    };
    if !valid_service_name(&found.name) {
        cx.error(
            node,
            "",
            format!(
                "{:?} is not a berth service name (lowercase letters, digits, `_` and `-`, \
                 starting with a letter or digit, at most 63 characters); rename the container",
                found.name
            ),
        );
    }
    let mut exec = false;
    if let Some(action) = node.get("action") {
        let what = action.value.text().unwrap_or_default();
        exec = what == "exec";
        if !exec && what != "run" {
            cx.error(
                &action.value,
                "action",
                format!("unknown action {what:?}; paunch knows run and exec"),
            );
            return None;
        }
    }

    let mut spec = ServiceSpec {
        name: found.name.clone(),
        ..ServiceSpec::default()
    };
    let mut start_order = 0;
    let mut units = Vec::new();
    let mut detach = true;
    let mut check_interval: Option<Duration> = None;
    for e in entries {
        let v = &e.value;
        let key = e.key.as_str();
        // A warning about a whole key points at the key.
        let at_key = Node {
            value: Value::Null,
            line: e.line,
            column: e.column,
        };
        if v.value == Value::Null {
            continue;
        }
        if exec && !EXEC_KEYS.contains(&key) {
            cx.warn(
                &at_key,
                key,
                "not imported: an `action: exec` runs in its container's environment, which \
                 has its own",
            );
            continue;
        }
        match key {
            "image" => {
                if let Some(image) = cx.string(v, key) {
                    let image = match opts.image_map.apply(&image) {
                        Some(to) => {
                            cx.notes
                                .push(format!("image {image} replaced by {to} (--image-map)"));
                            to.to_string()
                        }
                        None => image,
                    };
                    spec.image = ImageSource::Ref(image);
                }
            }
            "command" => spec.command = command(&mut cx, v),
            "environment" => environment(&mut cx, v, opts, &mut spec.env),
            "user" => spec.user = cx.string(v, key),
            "volumes" => volumes(&mut cx, v, &mut spec),
            "net" => {
                spec.network = match cx.string(v, key).as_deref() {
                    Some("host") => Network::Host,
                    Some("none") => Network::None,
                    Some("bridge" | "default") => Network::Bridge,
                    Some(other) => Network::Named(other.to_string()),
                    None => Network::Bridge,
                }
            }
            "pid" => spec.pid = cx.string(v, key),
            "ipc" => spec.ipc = cx.string(v, key),
            "uts" => spec.uts = cx.string(v, key),
            "hostname" => spec.hostname = cx.string(v, key),
            "privileged" => spec.privileged = cx.boolean(v, key).unwrap_or_default(),
            "tty" => spec.tty = cx.boolean(v, key).unwrap_or_default(),
            "interactive" => spec.interactive = cx.boolean(v, key).unwrap_or_default(),
            "cap_add" => spec.cap_add = cx.strings(v, key).unwrap_or_default(),
            "cap_drop" => spec.cap_drop = cx.strings(v, key).unwrap_or_default(),
            "security_opt" => spec.security_opt = cx.strings(v, key).unwrap_or_default(),
            "extra_hosts" => spec.extra_hosts = cx.strings(v, key).unwrap_or_default(),
            "group_add" => spec.group_add = cx.strings(v, key).unwrap_or_default(),
            // Container names are service names here: the importer names
            // each service after its container.
            "volumes_from" => spec.volumes_from = cx.strings(v, key).unwrap_or_default(),
            "env_file" => {
                let files = cx.strings(v, key).unwrap_or_default();
                for f in files.iter().filter(|f| !f.starts_with('/')) {
                    cx.warn(
                        v,
                        key,
                        format!(
                            "{f} is relative: berth reads it relative to the written service \
                             file's directory; make it absolute if it lives elsewhere"
                        ),
                    );
                }
                spec.env_file = files;
            }
            "log_tag" => {
                spec.logging = cx.string(v, key).map(|tag| Logging {
                    max_size: None,
                    max_files: None,
                    tag: Some(tag),
                })
            }
            "ulimit" => spec.ulimits = ulimits(&mut cx, v),
            "restart" => {
                spec.restart = match cx.string(v, key).as_deref() {
                    Some("always") => Some(RestartPolicy::Always),
                    Some("unless-stopped") => Some(RestartPolicy::UnlessStopped),
                    Some("on-failure") => Some(RestartPolicy::OnFailure),
                    Some("no") => Some(RestartPolicy::Never),
                    Some(other) => {
                        cx.error(
                            v,
                            key,
                            format!(
                                "unknown restart policy {other:?}; known: always, unless-stopped, \
                                 on-failure, no"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
            "state" => match cx.string(v, key).as_deref() {
                Some("stopped") => spec.state = DesiredState::Stopped,
                Some("running" | "started") => {}
                Some(other) => cx.error(
                    v,
                    key,
                    format!("unknown state {other:?}; known: running, stopped"),
                ),
                None => {}
            },
            "detach" => detach = cx.boolean(v, key).unwrap_or(true),
            "exit_codes" => spec.exit_codes = exit_codes(&mut cx, v),
            "start_order" => start_order = cx.integer(v, key).unwrap_or_default(),
            "depends_on" => units = cx.strings(v, key).unwrap_or_default(),
            "healthcheck" => spec.healthcheck = healthcheck(&mut cx, v),
            "check_interval" => check_interval = seconds(&mut cx, v, key),
            "stop_grace_period" => spec.stop_timeout = seconds(&mut cx, v, key),
            "cpu_shares" => spec.resources.cpu_shares = cx.integer(v, key),
            "cpuset_cpus" => match cx.string(v, key) {
                // paunch: "all" means no pinning at all.
                Some(s) if s == "all" => {}
                other => spec.resources.cpuset_cpus = other,
            },
            "mem_limit" => {
                if let Some(s) = cx.string(v, key) {
                    match docker_size(&s) {
                        Some(bytes) => spec.resources.memory = Some(bytes),
                        None => cx.error(v, key, format!("{s:?} is not a size like 512m or 2g")),
                    }
                }
            }
            "pids_limit" => spec.resources.pids = cx.integer(v, key),
            "action" => {}
            "name" => cx.warn(
                &at_key,
                key,
                "ignored, as the docker-cmd hook ignores it: the container is named after its key",
            ),
            _ => match NO_EQUIVALENT.iter().find(|(k, _)| *k == key) {
                Some((_, why)) => cx.warn(&at_key, key, format!("not imported: {why}")),
                None => cx.warn(
                    &at_key,
                    key,
                    "not imported: not a paunch key berth knows (paunch ignores unknown keys too)",
                ),
            },
        }
    }
    if exec {
        // `command[0]` names the container to exec in, the rest is what runs.
        let mut argv = spec.command.take().unwrap_or_default().into_iter();
        match argv.next() {
            Some(target) if valid_service_name(&target) => {
                spec.command = Some(argv.collect());
                if spec.command.as_ref().is_some_and(Vec::is_empty) {
                    cx.error(
                        node,
                        "command",
                        format!("an exec names its container ({target}) but no command to run"),
                    );
                }
                spec.exec_in = Some(target);
                spec.kind = Kind::Task;
            }
            Some(target) => cx.error(
                node,
                "command",
                format!(
                    "an exec runs in container {target:?}, which is not a berth service name; \
                     rename that container"
                ),
            ),
            None => cx.error(
                node,
                "command",
                "an exec needs a command: the container's name, then what to run in it",
            ),
        }
    } else if matches!(spec.image, ImageSource::Ref(ref r) if r.is_empty()) {
        cx.error(
            node,
            "image",
            "no image: paunch needs one for every container it runs",
        );
    }
    if let Some(interval) = check_interval {
        match &mut spec.healthcheck {
            Some(h) => h.interval = interval,
            None => cx.warn(
                node,
                "check_interval",
                "not imported: there is no healthcheck to run at this interval",
            ),
        }
    }
    if exec {
        // A task already; it has no container, so no restart policy.
    } else if !detach {
        spec.kind = Kind::Task;
    } else if spec.restart.is_none() {
        // paunch leaves a container without `restart` to docker run's
        // default, `no`; berth's default for a service is `always`.
        spec.restart = Some(RestartPolicy::Never);
    }
    if detach && !exec && !spec.exit_codes.is_empty() {
        cx.warn(
            node,
            "exit_codes",
            "not imported: exit codes are judged only for detach: false containers (tasks)",
        );
        spec.exit_codes.clear();
    }
    if exec && !found.inputs.is_empty() {
        cx.notes.push(
            "the deployment's inputs are not given to this exec: it runs in its container's \
             environment"
                .to_string(),
        );
    } else {
        for (name, value) in &found.inputs {
            spec.inputs
                .insert(name.clone(), InputSource::Value(value.clone()));
        }
    }
    if cx.errors.len() > before {
        return None;
    }
    let runs = spec.kind == Kind::Service && spec.state == DesiredState::Running;
    Some(Converted {
        imported: Imported {
            spec,
            file: found.file.clone(),
            step: found.step,
            deployment: found.deployment.clone(),
            warnings: cx.warnings,
            notes: cx.notes,
        },
        start_order,
        units,
        runs,
    })
}

/// `command`: a list as it is, a string split on whitespace with no shell
/// quoting (as paunch does).
fn command(cx: &mut Cx<'_, '_>, v: &Node) -> Option<Vec<String>> {
    match &v.value {
        Value::Scalar { .. } => {
            let s = cx.string(v, "command")?;
            Some(s.split_whitespace().map(str::to_string).collect())
        }
        _ => cx.strings(v, "command"),
    }
}

/// `environment`: a map (values written as paunch writes them: Python's
/// `True`/`False`, numbers as written) or a list of `K=V`. An entry with no
/// value takes the importing shell's.
fn environment(
    cx: &mut Cx<'_, '_>,
    v: &Node,
    opts: &Options<'_>,
    env: &mut BTreeMap<String, EnvValue>,
) {
    let mut pairs: Vec<(String, Option<String>, &Node)> = Vec::new();
    match &v.value {
        Value::Map(entries) => {
            for e in entries {
                let value = match e.value.scalar() {
                    Some(Scalar::Bool(true)) => Some("True".to_string()),
                    Some(Scalar::Bool(false)) => Some("False".to_string()),
                    Some(Scalar::Str("")) => None,
                    Some(_) => e.value.text().map(str::to_string),
                    None if e.value.value == Value::Null => None,
                    None => {
                        cx.error(
                            &e.value,
                            &format!("environment.{}", e.key),
                            format!("expected a string (got {})", e.value.describe()),
                        );
                        continue;
                    }
                };
                pairs.push((e.key.clone(), value, &e.value));
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let Some(text) = cx.string(item, &format!("environment[{i}]")) else {
                    continue;
                };
                match text.split_once('=') {
                    Some((k, val)) => pairs.push((k.to_string(), Some(val.to_string()), item)),
                    None => pairs.push((text, None, item)),
                }
            }
        }
        _ => {
            cx.error(
                v,
                "environment",
                format!("expected a map or a list of K=V (got {})", v.describe()),
            );
            return;
        }
    }
    for (key, value, node) in pairs {
        let path = format!("environment.{key}");
        if key == CONFIG_HASH_ENV {
            cx.notes.push(format!(
                "{CONFIG_HASH_ENV} dropped: berth hashes the watched config sources itself"
            ));
            continue;
        }
        let value = match value {
            Some(v) => v,
            None => match (opts.host_env)(&key) {
                Some(from_shell) => {
                    cx.warn(
                        node,
                        &path,
                        "no value in the file: took the importing shell's, as paunch would \
                         (check it is what this node needs)",
                    );
                    from_shell
                }
                None => {
                    cx.warn(
                        node,
                        &path,
                        "no value in the file and none in the importing shell: left out, as \
                         paunch would leave it unset",
                    );
                    continue;
                }
            },
        };
        if crate::heat::is_secret_input_name(&key) {
            cx.notes.push(format!(
                "env {key} marked secret (its name says so): berth never shows its value"
            ));
            env.insert(
                key,
                EnvValue {
                    value,
                    secret: true,
                },
            );
        } else {
            env.insert(key, EnvValue::plain(value));
        }
    }
}

/// `volumes`: empty entries skipped (Heat's `if` leaves `''`); a
/// puppet-generated config mount becomes a watched `config:` source.
fn volumes(cx: &mut Cx<'_, '_>, v: &Node, spec: &mut ServiceSpec) {
    let Value::Seq(items) = &v.value else {
        cx.error(
            v,
            "volumes",
            format!("expected a list of volumes (got {})", v.describe()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let key = format!("volumes[{i}]");
        let Some(text) = cx.string(item, &key) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let volume = match Volume::parse(&text) {
            Ok(vol) => vol,
            Err(e) => {
                cx.error(item, &key, e);
                continue;
            }
        };
        let generated = volume.source.starts_with(PUPPET_GENERATED);
        if generated && volume.read_only && volume.relabel.is_some() {
            // A config source is mounted read-only as it is: an SELinux
            // relabel would be lost, so the volume stays a volume.
            cx.warn(
                item,
                &key,
                "kept as a plain volume, not watched: berth's config sources take no SELinux                  relabel (`z`/`Z`) yet, so a change to its content restarts nothing",
            );
            spec.volumes.push(volume);
        } else if generated && volume.read_only && volume.propagation.is_none() {
            cx.notes.push(format!(
                "{} is watched as a config source: a change to its content restarts the \
                 container",
                volume.source
            ));
            spec.config.push(ConfigMount {
                source: volume.source,
                target: volume.target,
                on_change: OnChange::Restart,
            });
        } else {
            spec.volumes.push(volume);
        }
    }
}

/// `ulimit: ["nofile=131072", "nproc=1024:2048"]`.
fn ulimits(cx: &mut Cx<'_, '_>, v: &Node) -> BTreeMap<String, Ulimit> {
    let mut out = BTreeMap::new();
    let Some(items) = cx.strings(v, "ulimit") else {
        return out;
    };
    for item in items {
        let parsed = item.split_once('=').and_then(|(name, limits)| {
            let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
            Some((
                name.to_string(),
                Ulimit {
                    soft: soft.trim().parse().ok()?,
                    hard: hard.trim().parse().ok()?,
                },
            ))
        });
        match parsed {
            Some((name, limit)) => {
                out.insert(name, limit);
            }
            None => cx.error(
                v,
                "ulimit",
                format!("{item:?}: expected NAME=LIMIT or NAME=SOFT:HARD, e.g. nofile=131072"),
            ),
        }
    }
    out
}

/// `exit_codes: [0, 2]`.
fn exit_codes(cx: &mut Cx<'_, '_>, v: &Node) -> Vec<i64> {
    let Value::Seq(items) = &v.value else {
        cx.error(
            v,
            "exit_codes",
            format!("expected a list of integers (got {})", v.describe()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(n) = cx.integer(item, &format!("exit_codes[{i}]"))
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// `healthcheck: {test: "...", interval, timeout, retries}`. Docker's
/// defaults (30s, 30s, 3) where the file gives none, as paunch's docker
/// builder leaves them to the engine.
fn healthcheck(cx: &mut Cx<'_, '_>, v: &Node) -> Option<Healthcheck> {
    let Value::Map(entries) = &v.value else {
        cx.error(
            v,
            "healthcheck",
            format!("expected a map with test: (got {})", v.describe()),
        );
        return None;
    };
    let mut check = Healthcheck {
        exec: Vec::new(),
        test: None,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
        retries: 3,
        start_period: None,
    };
    for e in entries {
        let key = format!("healthcheck.{}", e.key);
        match e.key.as_str() {
            "test" => match &e.value.value {
                Value::Seq(_) => {
                    let items = cx.strings(&e.value, &key)?;
                    check.exec = match items.first().map(String::as_str) {
                        Some("CMD") => items[1..].to_vec(),
                        Some("CMD-SHELL") => {
                            check.test = Some(items[1..].join(" "));
                            Vec::new()
                        }
                        _ => items,
                    };
                }
                _ => check.test = cx.string(&e.value, &key),
            },
            "interval" => check.interval = seconds(cx, &e.value, &key)?,
            "timeout" => check.timeout = seconds(cx, &e.value, &key)?,
            "retries" => {
                check.retries = cx
                    .integer(&e.value, &key)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)?
            }
            "start_period" => check.start_period = seconds(cx, &e.value, &key),
            other => cx.warn(
                &e.value,
                &key,
                format!("not imported: unknown healthcheck key {other:?}"),
            ),
        }
    }
    if check.exec.is_empty() && check.test.as_deref().is_none_or(|t| t.trim().is_empty()) {
        cx.error(v, "healthcheck.test", "no check command");
        return None;
    }
    Some(check)
}

/// A duration as paunch takes it: seconds as a number (`60`, `123.5`,
/// `"15"`), or Go's form (`"2.5s"`, `"1m30s"`, `"1h1m1s1ms1us"`). berth
/// keeps milliseconds; finer parts are rounded, with a warning.
fn seconds(cx: &mut Cx<'_, '_>, v: &Node, key: &str) -> Option<Duration> {
    let text = v.text().unwrap_or_default().trim().to_string();
    let parsed = match v.scalar() {
        Some(Scalar::Int(_) | Scalar::Float(_)) => text.parse::<f64>().ok().map(|s| s * 1e9),
        Some(Scalar::Str(_)) => go_duration_nanos(&text),
        _ => None,
    };
    let Some(nanos) = parsed.filter(|n| n.is_finite() && *n >= 0.0 && *n < 1e18) else {
        cx.error(
            v,
            key,
            format!(
                "expected seconds (60, 2.5) or a duration like 1m30s (got {})",
                v.describe()
            ),
        );
        return None;
    };
    let ms = (nanos / 1e6).round();
    if (ms * 1e6 - nanos).abs() >= 1.0 {
        cx.warn(
            v,
            key,
            format!("{text} rounded to {ms} ms (berth keeps durations in milliseconds)"),
        );
    }
    Some(Duration::from_millis(ms as u64))
}

/// Go's `time.ParseDuration` (which paunch mirrors), in nanoseconds; a bare
/// number is seconds.
fn go_duration_nanos(s: &str) -> Option<f64> {
    if let Ok(secs) = s.parse::<f64>() {
        return Some(secs * 1e9);
    }
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += number * scale;
    }
    Some(total)
}

/// Docker's `--memory` sizes: a number of bytes with an optional `b`, `k`,
/// `m` or `g` (powers of 1024).
fn docker_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let (digits, mult) = match lower.chars().last()? {
        'b' => (&lower[..lower.len() - 1], 1u64),
        'k' => (&lower[..lower.len() - 1], 1 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        _ => return parse_size(s).ok(),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}
