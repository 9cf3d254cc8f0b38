//! Taking over containers another tool started (paunch, tripleo_ansible's
//! tripleo_container_manage, Heat's docker-cmd hook): the read-only part.
//! For each such container, does it match what its config says (it can be
//! adopted as it is), how does it differ, or why can berth not tell?
//!
//! Pure: the runtime hands in each container as the engine shows it
//! ([`ForeignContainer`], with what its image itself defines, so that what
//! the engine filled in is not taken for a difference), and the container's
//! config comes from its `config_data` label, converted by
//! [`crate::import`] exactly as `berthctl import` converts it. Both sides
//! become a [`CreateSpec`] normalized the same way, compared field by field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::hash::create_spec;
use crate::heat::is_secret_input_name;
use crate::import::{ImageMap, Input, Options, paunch_files};
use crate::runtime::CreateSpec;
use crate::spec::{Healthcheck, ImageSource, Network, Volume};

/// paunch's and tripleo_container_manage's labels on the containers they start.
pub const LABEL_CONFIG_ID: &str = "config_id";
pub const LABEL_CONTAINER_NAME: &str = "container_name";
pub const LABEL_MANAGED_BY: &str = "managed_by";
pub const LABEL_CONFIG_DATA: &str = "config_data";

/// TripleO's config-hash variable (injected by the tool, not part of the
/// container's own config): never a difference.
const CONFIG_HASH_ENV: &str = "TRIPLEO_CONFIG_HASH";

/// Which tool's containers to look at (`--from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdoptFrom {
    /// `managed_by=paunch`, and the paunch-era TripleO form `tripleo-<Role>`.
    Paunch,
    /// `managed_by=tripleo_ansible` (tripleo_container_manage).
    Tripleo,
    /// `managed_by=docker-cmd` (Heat's docker-cmd hook).
    DockerCmd,
}

impl AdoptFrom {
    pub const ALL: [AdoptFrom; 3] = [AdoptFrom::Paunch, AdoptFrom::Tripleo, AdoptFrom::DockerCmd];

    pub fn parse(s: &str) -> Option<AdoptFrom> {
        match s {
            "paunch" => Some(AdoptFrom::Paunch),
            "tripleo" => Some(AdoptFrom::Tripleo),
            "docker-cmd" => Some(AdoptFrom::DockerCmd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdoptFrom::Paunch => "paunch",
            AdoptFrom::Tripleo => "tripleo",
            AdoptFrom::DockerCmd => "docker-cmd",
        }
    }

    /// Whether a `managed_by` label value is this tool's.
    pub fn manages(self, managed_by: &str) -> bool {
        match self {
            AdoptFrom::Paunch => {
                managed_by == "paunch"
                    || managed_by
                        .strip_prefix("tripleo-")
                        .is_some_and(|role| !role.is_empty())
            }
            AdoptFrom::Tripleo => managed_by == "tripleo_ansible",
            AdoptFrom::DockerCmd => managed_by == "docker-cmd",
        }
    }

    /// The tool a `managed_by` value names, if any of these.
    pub fn of(managed_by: &str) -> Option<AdoptFrom> {
        AdoptFrom::ALL.into_iter().find(|f| f.manages(managed_by))
    }
}

/// What the container's image itself defines: the engine copies it into
/// the container's config where the create did not say otherwise.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageDefaults {
    pub env: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_signal: Option<String>,
}

/// A container berth did not create, as the engine shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignContainer {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 as the engine gives it.
    pub started_at: Option<String>,
    pub running: bool,
    /// Its create-relevant config read back from the engine; `image` is the
    /// reference it was created from (the engine's `Config.Image`), not an id.
    /// Config binds do not appear: every bind is in `volumes`.
    pub create: CreateSpec,
    pub image: ImageDefaults,
}

impl ForeignContainer {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
    pub fn managed_by(&self) -> Option<&str> {
        self.label(LABEL_MANAGED_BY)
    }
    /// The name its config knows it by: `container_name`, else its own.
    pub fn container_name(&self) -> &str {
        self.label(LABEL_CONTAINER_NAME).unwrap_or(&self.name)
    }
}

/// One field whose config and container disagree. Values are the fields'
/// JSON forms in a berth spec (`null`: not set, the engine's default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// `image`, `volumes`, `env.FOO`, ...
    pub field: String,
    pub config_says: Json,
    pub container_has: Json,
}

/// What adopting a container would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It matches its config: taken over as it is.
    Adopt,
    /// It does not: left alone (or replaced, once `--replace` exists).
    Differs { diffs: Vec<FieldDiff> },
    /// Its config cannot be read or converted.
    Unreadable { reason: String },
    /// Its config is not on the container (docker-cmd): it needs the
    /// metadata document, which this version does not read yet.
    NeedsMetadata { reason: String },
}

/// One container in an adopt report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdoptEntry {
    pub id: String,
    pub name: String,
    pub managed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    pub container_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub running: bool,
    /// The systemd unit tripleo_container_manage would run it under
    /// (`tripleo_<container_name>.service`); whether it does is not checked.
    pub systemd_unit: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the config says that the conversion left out (the importer's
    /// warnings: keys berth has no field for), so the verdict did not
    /// compare them: `KEY: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_compared: Vec<String>,
}

/// `POST /v1/adopt`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdoptReport {
    pub from: AdoptFrom,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<String>,
    /// Nothing was changed: `--check`.
    pub check: bool,
    pub containers: Vec<AdoptEntry>,
}

/// The report for `from`'s containers (those with `config_id`, when
/// given) among `containers`, by name.
pub fn report(
    containers: &[ForeignContainer],
    from: AdoptFrom,
    config_id: Option<&str>,
) -> AdoptReport {
    let mut chosen: Vec<&ForeignContainer> = containers
        .iter()
        .filter(|c| c.managed_by().is_some_and(|m| from.manages(m)))
        .filter(|c| config_id.is_none_or(|id| c.label(LABEL_CONFIG_ID) == Some(id)))
        .collect();
    chosen.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    AdoptReport {
        from,
        config_id: config_id.map(str::to_string),
        check: true,
        containers: chosen.into_iter().map(check).collect(),
    }
}

/// The verdict for one container.
pub fn check(c: &ForeignContainer) -> AdoptEntry {
    let managed_by = c.managed_by().unwrap_or_default().to_string();
    let mut not_compared = Vec::new();
    let verdict = match (AdoptFrom::of(&managed_by), c.label(LABEL_CONFIG_DATA)) {
        (Some(AdoptFrom::DockerCmd), None) => Verdict::NeedsMetadata {
            reason: "docker-cmd sets no config_data label: its config is the Heat metadata \
                     document whose id is its config_id, which `adopt` does not read yet \
                     (--metadata, not yet)"
                .to_string(),
        },
        (_, None) => Verdict::Unreadable {
            reason: format!("no {LABEL_CONFIG_DATA} label: nothing says what it should be"),
        },
        (_, Some(data)) => match config_converted(c.container_name(), data) {
            Err(reason) => Verdict::Unreadable { reason },
            Ok((config, left_out)) => {
                not_compared = left_out;
                let diffs = compare(&config, c);
                if diffs.is_empty() {
                    Verdict::Adopt
                } else {
                    Verdict::Differs { diffs }
                }
            }
        },
    };
    AdoptEntry {
        id: c.id.clone(),
        name: c.name.clone(),
        managed_by,
        config_id: c.label(LABEL_CONFIG_ID).map(str::to_string),
        container_name: c.container_name().to_string(),
        started_at: c.started_at.clone(),
        running: c.running,
        systemd_unit: format!("tripleo_{}.service", c.container_name()),
        verdict,
        not_compared,
    }
}

/// The create call berth would make from one container's `config_data`
/// (paunch's JSON), its image left as the reference the config names.
pub fn config_create(name: &str, config_data: &str) -> Result<CreateSpec, String> {
    config_converted(name, config_data).map(|(create, _)| create)
}

/// [`config_create`], and what the conversion left out (the importer's
/// warnings, as `KEY: why`): what a comparison with it cannot see.
pub fn config_converted(
    name: &str,
    config_data: &str,
) -> Result<(CreateSpec, Vec<String>), String> {
    let value: Json = serde_json::from_str(config_data)
        .map_err(|e| format!("{LABEL_CONFIG_DATA} is not JSON: {e}"))?;
    if !value.is_object() {
        return Err(format!(
            "{LABEL_CONFIG_DATA} is not a container's config (a JSON object), it is {}",
            json_kind(&value)
        ));
    }
    let mut one = serde_json::Map::new();
    one.insert(name.to_string(), value);
    let input = Input {
        file: format!("{LABEL_CONFIG_DATA} of {name}"),
        text: Json::Object(one).to_string(),
    };
    let map = ImageMap::default();
    let no_env = |_: &str| None;
    let opts = Options {
        image_map: &map,
        host_env: &no_env,
    };
    let import = paunch_files(&[input], &opts).map_err(|e| e.to_string())?;
    let [imported] = import.services.as_slice() else {
        return Err(format!(
            "{LABEL_CONFIG_DATA} converted to {} services, expected one",
            import.services.len()
        ));
    };
    let spec = &imported.spec;
    if spec.exec_in.is_some() {
        return Err(format!(
            "{LABEL_CONFIG_DATA} is an `action: exec` entry, which makes no container of its own"
        ));
    }
    let image = match &spec.image {
        ImageSource::Ref(r) => r.clone(),
        _ => return Err("the config names no image reference".to_string()),
    };
    let left_out = import
        .warnings
        .iter()
        .chain(&imported.warnings)
        .map(|w| {
            if w.key.is_empty() {
                w.message.clone()
            } else {
                format!("{}: {}", w.key, w.message)
            }
        })
        .collect();
    Ok((normalize_config(create_spec(spec, &image, None)), left_out))
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// The config's side: what berth computes for its own bookkeeping out, the
/// config binds (read-only) among the volumes, as the engine shows them.
fn normalize_config(mut c: CreateSpec) -> CreateSpec {
    c.env.remove(CONFIG_HASH_ENV);
    for bind in std::mem::take(&mut c.config) {
        c.volumes.push(Volume {
            source: bind.source,
            target: bind.target,
            read_only: true,
            relabel: None,
            propagation: None,
        });
    }
    c.volumes.sort_by_key(|v| String::from(v.clone()));
    c.ports.sort_by_key(|p| String::from(p.clone()));
    c.env_file.clear();
    c.env_file_digest = None;
    c.outputs_dir = None;
    c.inputs = None;
    c
}

/// The container's side, given what its config sets: what the engine filled
/// in from the image or its own defaults, where the config leaves the field
/// unset, is the config's "unset".
fn normalize_container(c: &ForeignContainer, config: &CreateSpec) -> CreateSpec {
    let mut out = c.create.clone();
    let image = &c.image;
    out.env.remove(CONFIG_HASH_ENV);
    out.env.retain(|k, v| {
        config.env.contains_key(k) || image.env.get(k).is_none_or(|image_value| image_value != v)
    });
    if config.command.is_none() && (out.command == image.cmd || out.command == Some(Vec::new())) {
        out.command = None;
    }
    if config.entrypoint.is_none()
        && (out.entrypoint == image.entrypoint || out.entrypoint == Some(Vec::new()))
    {
        out.entrypoint = None;
    }
    if config.user.is_none()
        && (out.user == image.user || out.user.as_deref().is_some_and(str::is_empty))
    {
        out.user = None;
    }
    if config.healthcheck.is_none() && out.healthcheck == image.healthcheck {
        out.healthcheck = None;
    }
    if config.stop_signal.is_none() && out.stop_signal == image.stop_signal {
        out.stop_signal = None;
    }
    if config.hostname.is_none() {
        // The engine names a container's host after its short id, or
        // after the host with the host's network or UTS namespace.
        let short_id = c.id.get(..12).unwrap_or(&c.id);
        let host_ns = out.network == Network::Host || out.uts.as_deref() == Some("host");
        if host_ns
            || out
                .hostname
                .as_deref()
                .is_none_or(|h| h == short_id || h.is_empty())
        {
            out.hostname = None;
        }
    }
    if config.ipc.is_none()
        && out
            .ipc
            .as_deref()
            .is_some_and(|m| matches!(m, "" | "private" | "shareable"))
    {
        out.ipc = None;
    }
    for mode in [&mut out.pid, &mut out.uts] {
        if mode.as_deref() == Some("") {
            *mode = None;
        }
    }
    // The engine's own log options (daemon.json `log-opts`) land in every
    // container created without any: an option the config leaves unset
    // cannot be told from them, so it is the engine's.
    if let Some(l) = &mut out.logging {
        let want = config.logging.as_ref();
        if want.is_none_or(|w| w.max_size.is_none()) {
            l.max_size = None;
        }
        if want.is_none_or(|w| w.max_files.is_none()) {
            l.max_files = None;
        }
        if want.is_none_or(|w| w.tag.is_none()) {
            l.tag = None;
        }
        if l.max_size.is_none() && l.max_files.is_none() && l.tag.is_none() {
            out.logging = None;
        }
    }
    out.volumes.sort_by_key(|v| String::from(v.clone()));
    out.ports.sort_by_key(|p| String::from(p.clone()));
    out.config.clear();
    out.env_file.clear();
    out.env_file_digest = None;
    out.outputs_dir = None;
    out.inputs = None;
    out.exec_in = None;
    out
}

/// Every field in which `c` differs from `config` (empty: it matches).
pub fn compare(config: &CreateSpec, c: &ForeignContainer) -> Vec<FieldDiff> {
    let container = normalize_container(c, config);
    let (Json::Object(mut want), Json::Object(mut have)) = (
        serde_json::to_value(config).unwrap_or(Json::Null),
        serde_json::to_value(&container).unwrap_or(Json::Null),
    ) else {
        return vec![FieldDiff {
            field: "(all)".to_string(),
            config_says: Json::Null,
            container_has: Json::Null,
        }];
    };
    let mut diffs = Vec::new();
    // Env per variable, secret-looking values hidden.
    let want_env = want.remove("env");
    let have_env = have.remove("env");
    let (empty_a, empty_b) = (serde_json::Map::new(), serde_json::Map::new());
    let want_env = want_env
        .as_ref()
        .and_then(Json::as_object)
        .unwrap_or(&empty_a);
    let have_env = have_env
        .as_ref()
        .and_then(Json::as_object)
        .unwrap_or(&empty_b);
    let mut keys: Vec<&String> = want_env.keys().chain(have_env.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (a, b) = (want_env.get(k), have_env.get(k));
        if a != b {
            let shown = |v: Option<&Json>| match v {
                None => Json::Null,
                Some(_) if is_secret_input_name(k) => Json::String("(hidden)".to_string()),
                Some(v) => v.clone(),
            };
            diffs.push(FieldDiff {
                field: format!("env.{k}"),
                config_says: shown(a),
                container_has: shown(b),
            });
        }
    }
    let mut fields: Vec<&String> = want.keys().chain(have.keys()).collect();
    fields.sort();
    fields.dedup();
    for f in fields {
        let (a, b) = (want.get(f), have.get(f));
        if a != b {
            diffs.push(FieldDiff {
                field: f.clone(),
                config_says: a.cloned().unwrap_or(Json::Null),
                container_has: b.cloned().unwrap_or(Json::Null),
            });
        }
    }
    diffs.sort_by(|a, b| a.field.cmp(&b.field));
    diffs
}

#[cfg(test)]
mod tests;
