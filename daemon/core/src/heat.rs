//! Heat software-deployment documents, the pure half of berth's Heat
//! compatibility: reading documents and server metadata, turning a
//! `group: berth` document into service specs, the `deploy_*` inputs, the
//! signal transport heat-config-notify would use, and the signal body.
//! Nothing here does I/O: signals come out as *plans* of requests
//! ([`SignalPlan`], [`HttpRequest`]).
//!
//! What is read, and how strictly:
//! - A document is a map. `id`, `name`, `group`, `creation_time`,
//!   `updated_time` are strings when present (`null` reads as absent); a
//!   missing `group` is Heat's `Heat::Ungrouped`. `inputs` and `outputs` are
//!   lists (absent or `null`: empty), `options` a map (absent or `null`:
//!   empty). `config` is kept as it is. Keys berth does not know (Heat adds
//!   some between versions) are ignored, at the top and in inputs/outputs.
//! - An input is `{name, value}` with optional `type`, `description`
//!   (strings or `null`) and `hidden` / `secret` (`true`, `false` or
//!   `null`); `default`, `replace_on_change` and other keys are ignored. A
//!   missing `value` is an error (heat-config-notify fails on it too),
//!   input names are non-empty and unique.
//! - An output is `{name}` with optional `error_output` (a boolean or
//!   `null`), `type`, `description`.
//! - Server metadata is a map whose `deployments` is a list. A missing or
//!   non-list `deployments` is an error, never an empty set: an empty set
//!   would tell the caller to delete every pulled service.
//!
//! For `group: berth` (also `group: component` whose config for the current
//! `deploy_action` has `tool: berth`, as heat-config resolves components),
//! `config` is one berth spec, a list of them, `{services: [...]}`, or a
//! JSON/YAML string of any of these; each goes through the strict spec
//! parser and errors are re-pathed under `config` (`config[1].image`).
//! Every input that is not one of the known `deploy_*` inputs reaches every
//! service as env `BERTH_INPUT_<NAME>` (ASCII-uppercased, any other
//! character `_`). Two inputs naming the same variable, or a spec that sets
//! that variable itself, is an error. Values: strings as they are, `null`
//! empty, anything else as compact JSON.
//!
//! Secret inputs ([`HeatInput::is_secret`]) are those the document marks
//! `"hidden": true` (the word HOT uses for a parameter whose value is never
//! shown) or `"secret": true`, and those whose name looks like a
//! credential ([`is_secret_input_name`]). A secret input's value becomes a
//! secret env value: it reaches the container, and every view (records,
//! history, the API, `berthctl show`, events, logs, `Debug`) shows
//! `<redacted>` instead.

pub mod outbox;
mod signal;

pub use signal::{
    DEPLOY_INPUTS, DeployInputs, HeatSignal, HttpMethod, HttpRequest, KeystoneError,
    MAX_SIGNAL_BYTES, Secret, ServiceOutcome, Signal, SignalPlan, SignalTransport, SignalUrl,
    UrlSignal, compose_signal, is_permanent_refusal, orchestration_endpoint, redact_url,
    signal_backoff,
};

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::parse::{self, ParseError, ParseErrors};
use crate::spec::{EnvValue, ServiceSpec};

/// The group berth acts on.
pub const BERTH_GROUP: &str = "berth";
/// The group Heat gives a config that names none.
pub const UNGROUPED: &str = "Heat::Ungrouped";
/// Prefix of the env variables that carry a document's inputs.
pub const INPUT_ENV_PREFIX: &str = "BERTH_INPUT_";

/// A problem in a Heat document. `path` names the field
/// (`deployments[2].inputs[3].value`); empty means the document itself.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeatError {
    #[error("{}: expected {expected}, got {got}", show(path))]
    WrongType {
        path: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("{}: missing; expected {expected}", show(path))]
    Missing {
        path: String,
        expected: &'static str,
    },
    #[error("{}: {message}", show(path))]
    Invalid { path: String, message: String },
    #[error(
        "{}: input name {name:?} is also used by {first}; input names must be unique",
        show(path)
    )]
    DuplicateInput {
        path: String,
        name: String,
        first: String,
    },
    #[error(
        "{}: input {name:?} becomes env {var}, which {other} also sets",
        show(path)
    )]
    EnvCollision {
        path: String,
        name: String,
        var: String,
        other: String,
    },
    /// The berth specs in `config` failed the spec parser; each error's
    /// `field` is re-pathed under `config`.
    #[error("{0}")]
    Config(ParseErrors),
}

fn show(path: &str) -> &str {
    if path.is_empty() { "document" } else { path }
}

/// `base.key`, or `key` at the root.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

fn nth(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn wrong(path: String, expected: &'static str, v: &Value) -> HeatError {
    HeatError::WrongType {
        path,
        expected,
        got: kind(v),
    }
}

/// A string field that may be absent or `null`.
fn opt_string(
    map: &Map<String, Value>,
    base: &str,
    key: &str,
) -> Result<Option<String>, HeatError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong(join(base, key), "a string", v)),
    }
}

/// A boolean field that may be absent or `null` (false).
fn opt_bool(map: &Map<String, Value>, base: &str, key: &str) -> Result<bool, HeatError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(wrong(join(base, key), "true or false", v)),
    }
}

/// One input of a document.
#[derive(Clone, PartialEq)]
pub struct HeatInput {
    pub name: String,
    /// Heat's `type` (`String`, `Number`, `Json`, ...), not checked.
    pub input_type: Option<String>,
    pub value: Value,
    pub description: Option<String>,
    /// The document marked it `"hidden": true` or `"secret": true`.
    pub hidden: bool,
}

impl HeatInput {
    /// Whether this input's value must never be shown: marked hidden or
    /// secret, or named like a credential.
    pub fn is_secret(&self) -> bool {
        self.hidden || is_secret_input_name(&self.name)
    }

    /// The value as an env string: strings as they are, `null` empty,
    /// anything else compact JSON.
    pub fn value_text(&self) -> String {
        value_text(&self.value)
    }
}

impl fmt::Debug for HeatInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("HeatInput");
        d.field("name", &self.name).field("type", &self.input_type);
        if self.is_secret() {
            d.field("value", &crate::REDACTED);
        } else {
            d.field("value", &self.value);
        }
        d.finish_non_exhaustive()
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Substrings that make any name secret, wherever they appear
/// (`db_pass`, `DBPASSWORD`, `passphrase`, `api_secret`, `authtoken`,
/// `ssh_private_key`, `rabbit_cookie`). A false positive only hides a value
/// from output; it never changes what runs.
const SECRET_SUBSTRINGS: &[&str] = &[
    "pass",
    "secret",
    "token",
    "credential",
    "private",
    "privkey",
    "signature",
    "cookie",
];

/// Words that make a name secret when they are a whole word of it (words
/// are split at `_`, `-`, `.`, other punctuation and lower-to-upper case
/// changes): short ones that as substrings would hide `keystone_url`,
/// `author`, `concert`, `signal` or `design`. A word *ending* in `key` or
/// `keys` (`sshkey`, `apikey`) counts too.
const SECRET_WORDS: &[&str] = &[
    "pw", "pwd", "psk", "key", "keys", "auth", "cert", "certs", "sig", "dsn",
];

/// Credentials, by name: `deploy_password` and the signed
/// `deploy_signal_id`; the other known `deploy_*` inputs are not (their
/// values are ids, names and the Keystone URL). Any other name is secret
/// when its lowercase form contains one of [`SECRET_SUBSTRINGS`], or one
/// of its words is one of [`SECRET_WORDS`] or ends in `key`/`keys`, or
/// starts with `auth` (`authkey`, `authentication`) but not `author`.
pub fn is_secret_input_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n == "deploy_password" || n == "deploy_signal_id" {
        return true;
    }
    if DEPLOY_INPUTS.contains(&n.as_str()) {
        return false;
    }
    if SECRET_SUBSTRINGS.iter().any(|w| n.contains(w)) {
        return true;
    }
    words(name).iter().any(|w| {
        SECRET_WORDS.contains(&w.as_str())
            || w.ends_with("key")
            || w.ends_with("keys")
            || (w.starts_with("auth") && !w.starts_with("author"))
    })
}

/// The lowercase words of a name: split at every character that is not an
/// ASCII letter or digit, and where a lowercase letter or digit is
/// followed by an uppercase one (`sshKey` → `ssh`, `key`).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One declared output of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatOutput {
    pub name: String,
    /// A non-empty value of this output marks the deployment FAILED.
    pub error_output: bool,
    pub output_type: Option<String>,
    pub description: Option<String>,
}

/// A Heat software-deployment document (or a derived config, which lacks
/// `id` and `creation_time`). `Debug` never prints `config` or secret inputs.
#[derive(Clone, PartialEq)]
pub struct HeatDocument {
    pub id: Option<String>,
    pub name: Option<String>,
    /// [`UNGROUPED`] when the document names none.
    pub group: String,
    /// As sent; `Null` when absent.
    pub config: Value,
    pub inputs: Vec<HeatInput>,
    pub outputs: Vec<HeatOutput>,
    pub options: Map<String, Value>,
    pub creation_time: Option<String>,
    pub updated_time: Option<String>,
    /// Where the document sits in what was parsed (`deployments[2]`), the
    /// prefix of every error path; empty for a lone document.
    pub path: String,
}

impl fmt::Debug for HeatDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeatDocument")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("group", &self.group)
            .field("config", &format_args!("<{}>", kind(&self.config)))
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("creation_time", &self.creation_time)
            .finish_non_exhaustive()
    }
}

/// `sha256:<hex>` of the document's canonical JSON (keys sorted), for
/// "same id, same body" checks (`POST /v1/deployments` is idempotent by id
/// and refuses the same id with another body).
pub fn document_hash(value: &Value) -> String {
    // serde_json's map is a BTreeMap here (no preserve_order), so
    // `to_string` writes every object's keys sorted.
    format!(
        "sha256:{}",
        crate::hash::sha256_hex(value.to_string().as_bytes())
    )
}

/// Reads one document (an API body, or what a hook reads on stdin).
pub fn parse_document(value: &Value) -> Result<HeatDocument, HeatError> {
    parse_document_at(value, "")
}

/// Server metadata as os-collect-config fetches it: `{"deployments": [...],
/// ...}` (other keys ignored). The outer error is for metadata that cannot
/// be read at all; each entry is parsed on its own. A caller must not treat
/// a failed entry as absent (it may be berth's).
pub fn parse_metadata(value: &Value) -> Result<Vec<Result<HeatDocument, HeatError>>, HeatError> {
    let Value::Object(map) = value else {
        return Err(wrong(
            String::new(),
            "server metadata: a map with `deployments`",
            value,
        ));
    };
    match map.get("deployments") {
        None => Err(HeatError::Missing {
            path: "deployments".into(),
            expected: "a list of deployment documents",
        }),
        Some(list) => parse_list_at(list, "deployments"),
    }
}

/// The bare list heat-config reads (`metadata["deployments"]`).
pub fn parse_deployment_list(
    value: &Value,
) -> Result<Vec<Result<HeatDocument, HeatError>>, HeatError> {
    parse_list_at(value, "")
}

fn parse_list_at(
    value: &Value,
    path: &str,
) -> Result<Vec<Result<HeatDocument, HeatError>>, HeatError> {
    let Value::Array(items) = value else {
        return Err(wrong(
            path.to_string(),
            "a list of deployment documents",
            value,
        ));
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_document_at(v, &nth(path, i)))
        .collect())
}

fn parse_document_at(value: &Value, base: &str) -> Result<HeatDocument, HeatError> {
    let Value::Object(map) = value else {
        return Err(wrong(
            base.to_string(),
            "a deployment document (a map)",
            value,
        ));
    };
    let group = opt_string(map, base, "group")?.unwrap_or_else(|| UNGROUPED.to_string());
    if group.is_empty() {
        return Err(HeatError::Invalid {
            path: join(base, "group"),
            message: "empty; name the group (e.g. \"berth\") or leave it out".into(),
        });
    }
    let options = match map.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => return Err(wrong(join(base, "options"), "a map or null", v)),
    };
    Ok(HeatDocument {
        id: opt_string(map, base, "id")?,
        name: opt_string(map, base, "name")?,
        group,
        config: map.get("config").cloned().unwrap_or(Value::Null),
        inputs: parse_inputs(map.get("inputs"), &join(base, "inputs"))?,
        outputs: parse_outputs(map.get("outputs"), &join(base, "outputs"))?,
        options,
        creation_time: opt_string(map, base, "creation_time")?,
        updated_time: opt_string(map, base, "updated_time")?,
        path: base.to_string(),
    })
}

/// A list of `{name, value, ...}` (also the shape of `heat_*_inputs.json`).
pub fn parse_inputs(value: Option<&Value>, path: &str) -> Result<Vec<HeatInput>, HeatError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => return Err(wrong(path.to_string(), "a list of inputs", v)),
    };
    let mut inputs: Vec<HeatInput> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = nth(path, i);
        let Value::Object(map) = item else {
            return Err(wrong(at, "an input: {name, value}", item));
        };
        let name = required_name(map, &at)?;
        if let Some(j) = inputs.iter().position(|x| x.name == name) {
            return Err(HeatError::DuplicateInput {
                path: join(&at, "name"),
                name,
                first: nth(path, j),
            });
        }
        let Some(value) = map.get("value") else {
            return Err(HeatError::Missing {
                path: join(&at, "value"),
                expected: "the input's value (any JSON value)",
            });
        };
        let hidden = opt_bool(map, &at, "hidden")? || opt_bool(map, &at, "secret")?;
        inputs.push(HeatInput {
            name,
            input_type: opt_string(map, &at, "type")?,
            value: value.clone(),
            description: opt_string(map, &at, "description")?,
            hidden,
        });
    }
    Ok(inputs)
}

fn required_name(map: &Map<String, Value>, at: &str) -> Result<String, HeatError> {
    match opt_string(map, at, "name")? {
        None => Err(HeatError::Missing {
            path: join(at, "name"),
            expected: "a non-empty string",
        }),
        Some(n) if n.is_empty() => Err(HeatError::Invalid {
            path: join(at, "name"),
            message: "empty; expected a non-empty string".into(),
        }),
        Some(n) => Ok(n),
    }
}

fn parse_outputs(value: Option<&Value>, path: &str) -> Result<Vec<HeatOutput>, HeatError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => return Err(wrong(path.to_string(), "a list of outputs", v)),
    };
    let mut outputs: Vec<HeatOutput> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = nth(path, i);
        let Value::Object(map) = item else {
            return Err(wrong(at, "an output: {name, error_output?}", item));
        };
        let name = required_name(map, &at)?;
        if let Some(j) = outputs.iter().position(|x| x.name == name) {
            return Err(HeatError::Invalid {
                path: join(&at, "name"),
                message: format!(
                    "output name {name:?} is also used by {}; output names must be unique",
                    nth(path, j)
                ),
            });
        }
        let error_output = match map.get("error_output") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(wrong(join(&at, "error_output"), "true or false", v)),
        };
        outputs.push(HeatOutput {
            name,
            error_output,
            output_type: opt_string(map, &at, "type")?,
            description: opt_string(map, &at, "description")?,
        });
    }
    Ok(outputs)
}

/// What a document is to berth.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    Berth(Box<BerthDeployment>),
    /// Another agent's (script, puppet, docker-cmd, ...): left alone, never
    /// signalled; over the API, a 422 naming the group.
    NotOurs(NotOurs),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOurs {
    pub id: Option<String>,
    pub name: Option<String>,
    /// The document's group (`component` stays `component` unless its
    /// config for this action is berth's).
    pub group: String,
}

/// A `group: berth` document, validated: specs with the inputs as env.
#[derive(Clone, PartialEq)]
pub struct BerthDeployment {
    pub id: String,
    pub name: Option<String>,
    pub services: Vec<ServiceSpec>,
    pub inputs: DeployInputs,
    pub outputs: Vec<HeatOutput>,
    pub creation_time: Option<String>,
}

impl fmt::Debug for BerthDeployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let services: Vec<ServiceSpec> = self.services.iter().map(ServiceSpec::redacted).collect();
        f.debug_struct("BerthDeployment")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("services", &services)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("creation_time", &self.creation_time)
            .finish()
    }
}

impl HeatDocument {
    /// The `deploy_*` inputs, typed.
    pub fn deploy_inputs(&self) -> Result<DeployInputs, HeatError> {
        DeployInputs::from_inputs(&self.inputs, &join(&self.path, "inputs"))
    }

    /// Whether berth acts on this document (without validating it).
    pub fn is_berth(&self) -> bool {
        matches!(self.effective(), Ok(Some((BERTH_GROUP, _, _))))
    }

    /// The group and config heat-config would hand to a hook: for
    /// `component`, the first of `config.configs` whose `actions` holds
    /// `deploy_action` (its `tool` is the group); `None` when no component
    /// config applies to this action (heat-config skips the document).
    fn effective(&self) -> Result<Option<(&str, &Value, String)>, HeatError> {
        let config_path = join(&self.path, "config");
        if self.group != "component" {
            return Ok(Some((&self.group, &self.config, config_path)));
        }
        let action = self
            .inputs
            .iter()
            .find(|i| i.name == "deploy_action")
            .and_then(|i| i.value.as_str());
        let configs_path = join(&config_path, "configs");
        let configs = match &self.config {
            Value::Object(m) => match m.get("configs") {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Array(c)) => c,
                Some(v) => return Err(wrong(configs_path, "a list of component configs", v)),
            },
            Value::Null => return Ok(None),
            v => return Err(wrong(config_path, "a map with `configs`", v)),
        };
        for (i, c) in configs.iter().enumerate() {
            let at = nth(&configs_path, i);
            let Value::Object(m) = c else {
                return Err(wrong(at, "a component config: {actions, config, tool}", c));
            };
            let applies = match m.get("actions") {
                Some(Value::Array(a)) => action.is_some_and(|act| a.iter().any(|x| x == act)),
                Some(v) => return Err(wrong(join(&at, "actions"), "a list of actions", v)),
                None => false,
            };
            if applies {
                let tool = match m.get("tool") {
                    Some(Value::String(t)) => t.as_str(),
                    Some(v) => return Err(wrong(join(&at, "tool"), "a string", v)),
                    None => UNGROUPED,
                };
                let config = m.get("config").unwrap_or(&Value::Null);
                return Ok(Some((tool, config, join(&at, "config"))));
            }
        }
        Ok(None)
    }

    fn not_ours(&self) -> Classified {
        Classified::NotOurs(NotOurs {
            id: self.id.clone(),
            name: self.name.clone(),
            group: self.group.clone(),
        })
    }

    /// Berth's or not; for berth's, the validated deployment. A berth
    /// document needs an `id` (signals and idempotency are keyed by it).
    pub fn classify(&self) -> Result<Classified, HeatError> {
        let Some((group, config, config_path)) = self.effective()? else {
            return Ok(self.not_ours());
        };
        if group != BERTH_GROUP {
            return Ok(self.not_ours());
        }
        let Some(id) = self.id.clone().filter(|id| !id.is_empty()) else {
            return Err(HeatError::Missing {
                path: join(&self.path, "id"),
                expected: "the deployment's id (a non-empty string); berth keys signals by it",
            });
        };
        let inputs = self.deploy_inputs()?;
        let label = format!("deployment {id}");
        let mut services = berth_specs(&label, config, &config_path)?;
        let env = self.input_env()?;
        inject_env(&mut services, &env, config, &config_path)?;
        Ok(Classified::Berth(Box::new(BerthDeployment {
            id,
            name: self.name.clone(),
            services,
            inputs,
            outputs: self.outputs.clone(),
            creation_time: self.creation_time.clone(),
        })))
    }

    /// The env every service gets: `BERTH_INPUT_<NAME>` for each input that
    /// is not a known `deploy_*` input. Errors on two inputs naming the same
    /// variable (`a-b` and `a_b`).
    pub fn input_env(&self) -> Result<BTreeMap<String, (EnvValue, String)>, HeatError> {
        let base = join(&self.path, "inputs");
        let mut env: BTreeMap<String, (EnvValue, String)> = BTreeMap::new();
        for (i, input) in self.inputs.iter().enumerate() {
            if DEPLOY_INPUTS.contains(&input.name.as_str()) {
                continue;
            }
            let at = nth(&base, i);
            let var = input_env_name(&input.name);
            if let Some((_, other)) = env.get(&var) {
                return Err(HeatError::EnvCollision {
                    path: join(&at, "name"),
                    name: input.name.clone(),
                    var,
                    other: other.clone(),
                });
            }
            let value = EnvValue {
                value: input.value_text(),
                secret: input.is_secret(),
            };
            env.insert(var, (value, at));
        }
        Ok(env)
    }

    /// A copy for output that leaves the daemon: secret input values are
    /// `<redacted>`, a signal URL shows no signature, `config` is left out
    /// (foreign configs may hold anything; berth specs are shown through
    /// their own `redacted()`).
    pub fn redacted(&self) -> Value {
        let inputs: Vec<Value> = self
            .inputs
            .iter()
            .map(|i| {
                let value = if i.name == "deploy_signal_id" {
                    Value::String(redact_url(&i.value_text()))
                } else if i.is_secret() {
                    Value::String(crate::REDACTED.into())
                } else {
                    i.value.clone()
                };
                let mut m = Map::new();
                m.insert("name".into(), i.name.clone().into());
                if let Some(t) = &i.input_type {
                    m.insert("type".into(), t.clone().into());
                }
                m.insert("value".into(), value);
                Value::Object(m)
            })
            .collect();
        let outputs: Vec<Value> = self
            .outputs
            .iter()
            .map(|o| serde_json::json!({"name": o.name, "error_output": o.error_output}))
            .collect();
        let mut m = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        };
        put("id", &self.id);
        put("name", &self.name);
        put("creation_time", &self.creation_time);
        put("updated_time", &self.updated_time);
        m.insert("group".into(), self.group.clone().into());
        m.insert("inputs".into(), Value::Array(inputs));
        m.insert("outputs".into(), Value::Array(outputs));
        Value::Object(m)
    }
}

/// `BERTH_INPUT_` + the name ASCII-uppercased, any other character `_`.
pub fn input_env_name(name: &str) -> String {
    let mut var = String::with_capacity(INPUT_ENV_PREFIX.len() + name.len());
    var.push_str(INPUT_ENV_PREFIX);
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

/// The path of the `i`th service of `config` (whose shape it follows).
fn service_path(config: &Value, config_path: &str, i: usize, name: &str) -> String {
    match config {
        Value::Array(_) => nth(config_path, i),
        Value::Object(m) if m.contains_key("services") => nth(&join(config_path, "services"), i),
        Value::Object(_) => config_path.to_string(),
        _ => format!("{config_path} (service {name:?})"),
    }
}

fn inject_env(
    services: &mut [ServiceSpec],
    env: &BTreeMap<String, (EnvValue, String)>,
    config: &Value,
    config_path: &str,
) -> Result<(), HeatError> {
    for (si, spec) in services.iter_mut().enumerate() {
        for (var, (value, at)) in env {
            if spec.env.contains_key(var) {
                let service = service_path(config, config_path, si, &spec.name);
                return Err(HeatError::Invalid {
                    path: join(&join(&service, "env"), var),
                    message: format!(
                        "also set by input {at} (every input becomes {INPUT_ENV_PREFIX}<NAME>); \
                         rename one of them"
                    ),
                });
            }
            spec.env.insert(var.clone(), value.clone());
        }
    }
    Ok(())
}

/// The services of a berth `config`, validated by the strict spec parser.
/// Error paths: `config[i].field` for a list, `config.field` for one spec,
/// and for a string the path inside it with its line and column.
fn berth_specs(label: &str, config: &Value, path: &str) -> Result<Vec<ServiceSpec>, HeatError> {
    const ACCEPTED: &str = "a berth spec, a list of them, or a JSON/YAML string of either";
    let services = match config {
        Value::Object(_) => {
            let text = config.to_string();
            parse::parse_services(label, &text).map_err(|e| repath(e, path, true))?
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(HeatError::Invalid {
                    path: path.to_string(),
                    message: format!("an empty list; expected {ACCEPTED}"),
                });
            }
            let mut errors = Vec::new();
            let mut services = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match parse::parse_service_json_value(label, item) {
                    Ok(s) => services.push(s),
                    Err(e) => errors.extend(repath(e, &nth(path, i), true).into_errors()),
                }
            }
            if !errors.is_empty() {
                return Err(HeatError::Config(ParseErrors(errors)));
            }
            services
        }
        Value::String(text) => specs_from_text(label, text, path)?,
        other => return Err(wrong(path.to_string(), ACCEPTED, other)),
    };
    // Names must be unique across the document (a list is checked here; a
    // `services:` map or string is checked by the parser too).
    for (i, s) in services.iter().enumerate() {
        if let Some(j) = services[..i].iter().position(|t| t.name == s.name) {
            return Err(HeatError::Invalid {
                path: join(&nth(path, i), "name"),
                message: format!(
                    "duplicate service name {:?} (also {}); a document names each service once",
                    s.name,
                    nth(path, j)
                ),
            });
        }
    }
    Ok(services)
}

fn specs_from_text(label: &str, text: &str, path: &str) -> Result<Vec<ServiceSpec>, HeatError> {
    if text.trim().is_empty() {
        return Err(HeatError::Invalid {
            path: path.to_string(),
            message: "an empty string; expected a berth spec or a list of them".into(),
        });
    }
    let mut errors = Vec::new();
    let root = parse::parse_tree(label, text, &mut errors);
    if !errors.is_empty() {
        return Err(repath(ParseErrors(errors), path, false));
    }
    match root {
        Some(node) if matches!(node.value, parse::Value::Seq(_)) => {
            // A list in the string: each item through the JSON path (the
            // parser reads lists only under `services:`); no positions.
            let Value::Array(items) = node.to_json() else {
                return Ok(Vec::new());
            };
            berth_specs(label, &Value::Array(items), path)
        }
        Some(_) => parse::parse_services(label, text).map_err(|e| repath(e, path, false)),
        None => Err(HeatError::Invalid {
            path: path.to_string(),
            message: "an empty string; expected a berth spec or a list of them".into(),
        }),
    }
}

/// Puts each error's field under `path`; positions are dropped when they
/// point into a re-serialized text.
fn repath(ParseErrors(errors): ParseErrors, path: &str, drop_positions: bool) -> HeatError {
    HeatError::Config(ParseErrors(
        errors
            .into_iter()
            .map(|e| ParseError {
                field: if e.field.is_empty() {
                    path.to_string()
                } else if e.field.starts_with('[') {
                    format!("{path}{}", e.field)
                } else {
                    join(path, &e.field)
                },
                line: if drop_positions { 0 } else { e.line },
                column: if drop_positions { 0 } else { e.column },
                ..e
            })
            .collect(),
    ))
}

impl HeatError {
    fn into_errors(self) -> Vec<ParseError> {
        match self {
            HeatError::Config(ParseErrors(e)) => e,
            other => vec![ParseError {
                file: String::new(),
                field: String::new(),
                line: 0,
                column: 0,
                message: other.to_string(),
            }],
        }
    }

    /// The field path the error names.
    pub fn path(&self) -> &str {
        match self {
            HeatError::WrongType { path, .. }
            | HeatError::Missing { path, .. }
            | HeatError::Invalid { path, .. }
            | HeatError::DuplicateInput { path, .. }
            | HeatError::EnvCollision { path, .. } => path,
            HeatError::Config(ParseErrors(e)) => e.first().map(|e| e.field.as_str()).unwrap_or(""),
        }
    }
}

#[cfg(test)]
mod tests;
