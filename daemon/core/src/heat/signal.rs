//! The `deploy_*` inputs, the signal transport, and the signal itself, as
//! heat-config-notify does them; plans only, no I/O.
//!
//! Transport: `deploy_signal_transport` decides when present (and must
//! name one of Heat's five). Without it, the transport is inferred the way
//! heat-config-notify acts: `deploy_signal_id` → a signed URL (PUT when
//! `deploy_signal_verb` is `PUT`, which is Heat's TEMP_URL_SIGNAL, else
//! POST, CFN_SIGNAL); else `deploy_queue_id` → ZAQAR_SIGNAL; else
//! `deploy_auth_url` → HEAT_SIGNAL; else nothing to send. heat-config-notify
//! would also fire a second transport when a document carries inputs for
//! two; Heat never generates that, and berth sends one signal per document.
//! `deploy_signal_verb` picks the method for either signed-URL transport;
//! it must be `POST` or `PUT` (any case).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{HeatError, HeatInput, HeatOutput, join, nth};

/// The inputs Heat derives (`_build_derived_inputs`); they configure
/// berth and are not passed to services as env.
pub const DEPLOY_INPUTS: &[&str] = &[
    "deploy_server_id",
    "deploy_action",
    "deploy_stack_id",
    "deploy_resource_name",
    "deploy_signal_transport",
    "deploy_signal_id",
    "deploy_signal_verb",
    "deploy_auth_url",
    "deploy_username",
    "deploy_user_id",
    "deploy_password",
    "deploy_project_id",
    "deploy_region_name",
    "deploy_queue_id",
];

/// A value that must never be shown: `Debug` prints `<redacted>` and there
/// is no `Display`. It serializes as the plain value, because the outbox
/// must keep what it needs to send; serialize only into that store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::REDACTED)
    }
}

/// A URL whose query (a signature) and user info are secret. `Debug` and
/// [`SignalUrl::redacted`] show it without them. Serializes in full (see
/// [`Secret`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignalUrl(String);

impl SignalUrl {
    pub fn new(s: impl Into<String>) -> Self {
        SignalUrl(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SignalUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// The URL for display: query and fragment replaced by `<redacted>` (EC2
/// and Swift TempURL signatures live there), user info likewise.
pub fn redact_url(url: &str) -> String {
    let (head, had_query) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], true),
        None => (url, false),
    };
    let head = match head.find("://") {
        Some(s) => {
            let after = &head[s + 3..];
            let host_end = after.find('/').unwrap_or(after.len());
            match after[..host_end].rfind('@') {
                Some(at) => format!("{}{}@{}", &head[..s + 3], crate::REDACTED, &after[at + 1..]),
                None => head.to_string(),
            }
        }
        None => head.to_string(),
    };
    if had_query {
        format!("{head}?{}", crate::REDACTED)
    } else {
        head
    }
}

/// Heat's signal transports (`deploy_signal_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SignalTransport {
    CfnSignal,
    TempUrlSignal,
    HeatSignal,
    ZaqarSignal,
    NoSignal,
}

impl SignalTransport {
    pub const ALL: [SignalTransport; 5] = [
        SignalTransport::CfnSignal,
        SignalTransport::TempUrlSignal,
        SignalTransport::HeatSignal,
        SignalTransport::ZaqarSignal,
        SignalTransport::NoSignal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalTransport::CfnSignal => "CFN_SIGNAL",
            SignalTransport::TempUrlSignal => "TEMP_URL_SIGNAL",
            SignalTransport::HeatSignal => "HEAT_SIGNAL",
            SignalTransport::ZaqarSignal => "ZAQAR_SIGNAL",
            SignalTransport::NoSignal => "NO_SIGNAL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

/// The `deploy_*` inputs of a document, typed. All are optional (derived
/// configs and hand-written documents carry only some). `Debug` redacts the
/// password and the signal URL's signature.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeployInputs {
    pub server_id: Option<String>,
    /// `CREATE`, `UPDATE`, `DELETE`, `SUSPEND`, `RESUME` from Heat.
    pub action: Option<String>,
    pub stack_id: Option<String>,
    pub resource_name: Option<String>,
    pub signal_transport: Option<String>,
    pub signal_id: Option<SignalUrl>,
    pub signal_verb: Option<String>,
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Option<Secret>,
    pub project_id: Option<String>,
    pub region_name: Option<String>,
    pub queue_id: Option<String>,
    /// Input name → its path (`inputs[4]`), for errors; plus `""` → the
    /// inputs list's own path.
    paths: BTreeMap<String, String>,
}

impl DeployInputs {
    /// Reads the `deploy_*` inputs; each must be a string or `null`.
    pub fn from_inputs(inputs: &[HeatInput], path: &str) -> Result<DeployInputs, HeatError> {
        let mut d = DeployInputs::default();
        d.paths.insert(String::new(), path.to_string());
        for (i, input) in inputs.iter().enumerate() {
            if !DEPLOY_INPUTS.contains(&input.name.as_str()) {
                continue;
            }
            let at = nth(path, i);
            let value = match &input.value {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                v => {
                    return Err(HeatError::WrongType {
                        path: join(&at, "value"),
                        expected: "a string (deploy_* inputs are strings)",
                        got: super::kind(v),
                    });
                }
            };
            d.paths.insert(input.name.clone(), at);
            match input.name.as_str() {
                "deploy_server_id" => d.server_id = value,
                "deploy_action" => d.action = value,
                "deploy_stack_id" => d.stack_id = value,
                "deploy_resource_name" => d.resource_name = value,
                "deploy_signal_transport" => d.signal_transport = value,
                "deploy_signal_id" => d.signal_id = value.map(SignalUrl),
                "deploy_signal_verb" => d.signal_verb = value,
                "deploy_auth_url" => d.auth_url = value,
                "deploy_username" => d.username = value,
                "deploy_user_id" => d.user_id = value,
                "deploy_password" => d.password = value.map(Secret),
                "deploy_project_id" => d.project_id = value,
                "deploy_region_name" => d.region_name = value,
                "deploy_queue_id" => d.queue_id = value,
                _ => {}
            }
        }
        Ok(d)
    }

    /// `deploy_action: DELETE`: the services named by the document go away.
    pub fn is_delete(&self) -> bool {
        self.action.as_deref() == Some("DELETE")
    }

    fn path_of(&self, name: &str) -> String {
        match self.paths.get(name) {
            Some(p) => join(p, "value"),
            None => self.paths.get("").cloned().unwrap_or_default(),
        }
    }

    fn need<'a>(
        &self,
        v: &'a Option<String>,
        name: &str,
        transport: SignalTransport,
    ) -> Result<&'a str, HeatError> {
        match v.as_deref() {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(HeatError::Invalid {
                path: self.path_of(name),
                message: format!("{} needs a non-empty `{name}` input", transport.as_str()),
            }),
        }
    }

    /// The transport in force: the input when present, else inferred.
    pub fn transport(&self) -> Result<SignalTransport, HeatError> {
        if let Some(t) = &self.signal_transport {
            return SignalTransport::parse(t).ok_or_else(|| HeatError::Invalid {
                path: self.path_of("deploy_signal_transport"),
                message: format!(
                    "unknown signal transport {t:?}; expected one of {}",
                    SignalTransport::ALL.map(SignalTransport::as_str).join(", ")
                ),
            });
        }
        Ok(if self.signal_id.is_some() {
            match self.method(HttpMethod::Post)? {
                HttpMethod::Put => SignalTransport::TempUrlSignal,
                HttpMethod::Post => SignalTransport::CfnSignal,
            }
        } else if self.queue_id.is_some() {
            SignalTransport::ZaqarSignal
        } else if self.auth_url.is_some() {
            SignalTransport::HeatSignal
        } else {
            SignalTransport::NoSignal
        })
    }

    fn method(&self, default: HttpMethod) -> Result<HttpMethod, HeatError> {
        match self.signal_verb.as_deref() {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("POST") => Ok(HttpMethod::Post),
            Some(v) if v.eq_ignore_ascii_case("PUT") => Ok(HttpMethod::Put),
            Some(v) => Err(HeatError::Invalid {
                path: self.path_of("deploy_signal_verb"),
                message: format!("{v:?}; expected POST or PUT"),
            }),
        }
    }

    /// What to do to signal this document's outcome.
    pub fn signal_plan(&self) -> Result<SignalPlan, HeatError> {
        let transport = self.transport()?;
        Ok(match transport {
            SignalTransport::NoSignal => SignalPlan::None,
            SignalTransport::CfnSignal | SignalTransport::TempUrlSignal => {
                let default = if transport == SignalTransport::CfnSignal {
                    HttpMethod::Post
                } else {
                    HttpMethod::Put
                };
                let url = self.signal_id.clone().map(|u| u.0);
                self.need(&url, "deploy_signal_id", transport)?;
                SignalPlan::Url(UrlSignal {
                    transport,
                    method: self.method(default)?,
                    url: SignalUrl(url.unwrap_or_default()),
                })
            }
            SignalTransport::HeatSignal => {
                let t = transport;
                let auth_url = self.need(&self.auth_url, "deploy_auth_url", t)?.into();
                let user_id = self.need(&self.user_id, "deploy_user_id", t)?.into();
                let password = self.password.clone().map(|p| p.0);
                let password = Secret(self.need(&password, "deploy_password", t)?.into());
                SignalPlan::Heat(HeatSignal {
                    auth_url,
                    user_id,
                    password,
                    project_id: self.need(&self.project_id, "deploy_project_id", t)?.into(),
                    region_name: self.region_name.clone().filter(|r| !r.is_empty()),
                    stack_id: self.need(&self.stack_id, "deploy_stack_id", t)?.into(),
                    resource_name: self
                        .need(&self.resource_name, "deploy_resource_name", t)?
                        .into(),
                })
            }
            SignalTransport::ZaqarSignal => SignalPlan::Unsupported {
                transport,
                reason: "berth does not signal through Zaqar queues; the deployment's \
                         outcome is recorded but not sent"
                    .into(),
            },
        })
    }
}

/// How a document's outcome goes back to Heat. Serializable for the
/// outbox, secrets included: show it with [`SignalPlan::redacted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalPlan {
    /// NO_SIGNAL.
    None,
    /// CFN_SIGNAL or TEMP_URL_SIGNAL: one request to a signed URL.
    Url(UrlSignal),
    /// HEAT_SIGNAL: a Keystone token, then the orchestration API.
    Heat(HeatSignal),
    /// ZAQAR_SIGNAL: never silently dropped; the caller reports this.
    Unsupported {
        transport: SignalTransport,
        reason: String,
    },
}

impl SignalPlan {
    pub fn transport(&self) -> SignalTransport {
        match self {
            SignalPlan::None => SignalTransport::NoSignal,
            SignalPlan::Url(u) => u.transport,
            SignalPlan::Heat(_) => SignalTransport::HeatSignal,
            SignalPlan::Unsupported { transport, .. } => *transport,
        }
    }

    /// For display: `CFN_SIGNAL POST http://host/v1/signal/...?<redacted>`.
    pub fn redacted(&self) -> String {
        match self {
            SignalPlan::None => "NO_SIGNAL".into(),
            SignalPlan::Url(u) => format!(
                "{} {} {}",
                u.transport.as_str(),
                u.method.as_str(),
                u.url.redacted()
            ),
            SignalPlan::Heat(h) => format!(
                "HEAT_SIGNAL via {} (user {}, project {}) to stacks/{}/resources/{}/signal",
                redact_url(&h.auth_url),
                h.user_id,
                h.project_id,
                h.stack_id,
                h.resource_name
            ),
            SignalPlan::Unsupported { transport, .. } => {
                format!("{} (unsupported)", transport.as_str())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlSignal {
    pub transport: SignalTransport,
    pub method: HttpMethod,
    pub url: SignalUrl,
}

impl UrlSignal {
    /// The one request: the JSON body to the signed URL.
    pub fn request(&self, body: &Value) -> HttpRequest {
        HttpRequest {
            method: self.method,
            url: self.url.clone(),
            headers: vec![("Content-Type".into(), Secret::new("application/json"))],
            body: body.to_string(),
            body_is_secret: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatSignal {
    /// Keystone v3 root; the token request goes to `{auth_url}/auth/tokens`
    /// (as keystoneclient's v3 client does with it).
    pub auth_url: String,
    pub user_id: String,
    pub password: Secret,
    pub project_id: String,
    pub region_name: Option<String>,
    /// `stack_name/stack_id` as Heat gives it.
    pub stack_id: String,
    pub resource_name: String,
}

impl HeatSignal {
    /// Step 1: a project-scoped token by password. The response carries
    /// the token in `X-Subject-Token` and the catalog in its body (read it
    /// with [`orchestration_endpoint`]).
    pub fn token_request(&self) -> HttpRequest {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "id": self.user_id, "password": self.password.expose()}}},
            "scope": {"project": {"id": self.project_id}},
        }});
        HttpRequest {
            method: HttpMethod::Post,
            url: SignalUrl::new(format!(
                "{}/auth/tokens",
                self.auth_url.trim_end_matches('/')
            )),
            headers: vec![("Content-Type".into(), Secret::new("application/json"))],
            body: body.to_string(),
            body_is_secret: true,
        }
    }

    /// Step 2: `POST {endpoint}/stacks/{stack}/resources/{resource}/signal`
    /// with the token; the stack path keeps its `/`, the resource name is
    /// percent-encoded whole (as heatclient quotes them).
    pub fn signal_request(&self, endpoint: &str, token: &Secret, body: &Value) -> HttpRequest {
        let url = format!(
            "{}/stacks/{}/resources/{}/signal",
            endpoint.trim_end_matches('/'),
            percent_encode(&self.stack_id, true),
            percent_encode(&self.resource_name, false)
        );
        HttpRequest {
            method: HttpMethod::Post,
            url: SignalUrl::new(url),
            headers: vec![
                ("Content-Type".into(), Secret::new("application/json")),
                ("X-Auth-Token".into(), token.clone()),
            ],
            body: body.to_string(),
            body_is_secret: false,
        }
    }
}

fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One HTTP request to make. Header values are [`Secret`] (a token is one);
/// `Debug` shows the URL redacted and a secret body as its length.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: SignalUrl,
    pub headers: Vec<(String, Secret)>,
    pub body: String,
    pub body_is_secret: bool,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        let mut d = f.debug_struct("HttpRequest");
        d.field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names);
        if self.body_is_secret {
            d.field(
                "body",
                &format_args!("<{} bytes, redacted>", self.body.len()),
            );
        } else {
            d.field("body", &self.body);
        }
        d.finish()
    }
}

/// A Keystone token response without what HEAT_SIGNAL needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoneError {
    #[error("the token response has no `token.catalog` list")]
    NoCatalog,
    #[error("the catalog has no public {service_type} endpoint{}", region_suffix(.region))]
    NoEndpoint {
        service_type: String,
        region: Option<String>,
    },
}

fn region_suffix(region: &Option<String>) -> String {
    region
        .as_ref()
        .map(|r| format!(" in region {r:?}"))
        .unwrap_or_default()
}

/// The public `orchestration` endpoint from a Keystone v3 token response
/// body, in `region` when given (matched against `region_id` or `region`).
pub fn orchestration_endpoint(
    token_body: &Value,
    region: Option<&str>,
) -> Result<String, KeystoneError> {
    let catalog = token_body
        .pointer("/token/catalog")
        .and_then(Value::as_array)
        .ok_or(KeystoneError::NoCatalog)?;
    catalog
        .iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("orchestration"))
        .filter_map(|s| s.get("endpoints").and_then(Value::as_array))
        .flatten()
        .find(|e| {
            e.get("interface").and_then(Value::as_str) == Some("public")
                && region.is_none_or(|r| {
                    e.get("region_id").and_then(Value::as_str) == Some(r)
                        || e.get("region").and_then(Value::as_str) == Some(r)
                })
        })
        .and_then(|e| e.get("url").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| KeystoneError::NoEndpoint {
            service_type: "orchestration".into(),
            region: region.map(str::to_string),
        })
}

/// What one service of a document produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceOutcome {
    pub service: String,
    pub status_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub outputs: BTreeMap<String, String>,
}

/// heat-config-notify trims signals to this (Heat refuses bodies over
/// 1 MiB); berth trims the start of stdout and stderr to fit.
pub const MAX_SIGNAL_BYTES: usize = 950_000;

/// One document's signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// `{deploy_stdout, deploy_stderr, deploy_status_code, <outputs>}`.
    pub body: Value,
    /// What Heat will conclude: a non-zero status or a non-empty
    /// `error_output` output.
    pub failed: bool,
    /// Why it failed, in Heat's `key : value, ...` style; empty otherwise.
    pub status_reason: String,
    /// `<document id>:<32 hex of sha256(body)>`: the same outcome always
    /// gets the same key, however often it is sent.
    pub idempotency_key: String,
}

/// Composes the one signal for a document from its services' outcomes, in
/// the document's service order.
/// - `deploy_status_code`: the first non-zero status in service order (the
///   earliest failure is usually the cause of later ones), else 0.
/// - `deploy_stdout`/`deploy_stderr`: every line of each service's output
///   prefixed `[service] `, services in order, each line ending in `\n`.
/// - declared outputs: the value from the first service (in order) that
///   produced it; outputs nobody produced are left out (Heat keeps its
///   previous value). An `error_output` output is sent only when non-empty:
///   Heat marks the deployment FAILED on its mere presence. Undeclared
///   outputs are not sent (Heat would drop them).
/// - trimmed to [`MAX_SIGNAL_BYTES`] by cutting the start of stdout/stderr.
pub fn compose_signal(
    document_id: &str,
    declared: &[HeatOutput],
    outcomes: &[ServiceOutcome],
) -> Signal {
    let status = outcomes
        .iter()
        .map(|o| o.status_code)
        .find(|c| *c != 0)
        .unwrap_or(0);
    let mut stdout = prefixed(outcomes.iter().map(|o| (&o.service, &o.stdout)));
    let mut stderr = prefixed(outcomes.iter().map(|o| (&o.service, &o.stderr)));
    let mut outputs = Map::new();
    let mut reasons = Vec::new();
    if status != 0 {
        reasons.push(format!(
            "deploy_status_code : Deployment exited with non-zero status code: {status}"
        ));
    }
    for d in declared {
        let Some(value) = outcomes.iter().find_map(|o| o.outputs.get(&d.name)) else {
            continue;
        };
        if d.error_output {
            if value.is_empty() {
                continue;
            }
            reasons.push(format!("{} : {value}", d.name));
        }
        outputs.insert(d.name.clone(), Value::String(value.clone()));
    }
    let build = |stdout: &str, stderr: &str| {
        let mut m = outputs.clone();
        m.insert("deploy_stdout".into(), stdout.into());
        m.insert("deploy_stderr".into(), stderr.into());
        m.insert("deploy_status_code".into(), status.into());
        Value::Object(m)
    };
    let mut body = build(&stdout, &stderr);
    for _ in 0..4 {
        let len = body.to_string().len();
        if len <= MAX_SIGNAL_BYTES {
            break;
        }
        let over = len - MAX_SIGNAL_BYTES + 64;
        let total = stdout.len() + stderr.len();
        if total == 0 {
            break;
        }
        let cut_out = over.saturating_mul(stdout.len()).div_ceil(total);
        trim_front(&mut stdout, cut_out);
        trim_front(&mut stderr, over.saturating_sub(cut_out));
        body = build(&stdout, &stderr);
    }
    let hash = crate::hash::sha256_hex(body.to_string().as_bytes());
    Signal {
        failed: !reasons.is_empty(),
        status_reason: reasons.join(", "),
        idempotency_key: format!("{document_id}:{}", &hash[..32]),
        body,
    }
}

fn prefixed<'a>(parts: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let mut out = String::new();
    for (service, text) in parts {
        for line in text.lines() {
            out.push('[');
            out.push_str(service);
            out.push_str("] ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Drops at least `n` bytes from the front (whole lines when one ends
/// within 200 bytes after the cut) and says so in a first line.
fn trim_front(s: &mut String, n: usize) {
    if n == 0 || s.is_empty() {
        return;
    }
    let rest = s.strip_prefix(TRIM_MARK).unwrap_or(s);
    let mut cut = n.min(rest.len());
    while !rest.is_char_boundary(cut) {
        cut += 1;
    }
    if let Some(nl) = rest[cut..].find('\n').filter(|nl| *nl < 200) {
        cut += nl + 1;
    }
    *s = format!("{TRIM_MARK}{}", &rest[cut..]);
}

const TRIM_MARK: &str = "[berth: earlier output trimmed]\n";

/// Retry delay after `attempts` failed sends (1 → ~1 s, doubling, at most
/// 60 s), scaled into `[d/2, d]` by `jitter` in `[0, 1]` (clamped), so
/// nodes that failed together do not retry together.
pub fn signal_backoff(attempts: u32, jitter: f64) -> Duration {
    let max = Duration::from_secs(60);
    let exp = attempts.saturating_sub(1).min(16);
    let base = Duration::from_secs(1u64 << exp).min(max);
    let j = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    base.mul_f64(1.0 - j / 2.0)
}

/// A response that will not get better by retrying: 4xx other than 408
/// (timeout) and 429 (too many requests). The entry goes to dead letters.
pub fn is_permanent_refusal(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}
