//! Deployment records: what a service was told, and what became of it.
//!
//! Records are stored on disk and must survive upgrades and downgrades: every
//! field has a default and unknown fields are ignored when reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::ServiceSpec;

/// Bumped when the stored form changes incompatibly; readers accept any
/// version and default what they do not know.
pub const RECORD_SCHEMA_VERSION: u32 = 1;

/// Each of `deploy_stdout`, `deploy_stderr` and every declared output is cut
/// to this many bytes.
pub const OUTPUT_CAP: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    #[default]
    Pending,
    InProgress,
    WaitingHook,
    Complete,
    Failed,
    RolledBack,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Complete | Status::Failed | Status::RolledBack)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::InProgress => "IN_PROGRESS",
            Status::WaitingHook => "WAITING_HOOK",
            Status::Complete => "COMPLETE",
            Status::Failed => "FAILED",
            Status::RolledBack => "ROLLED_BACK",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeployAction {
    #[default]
    Create,
    Update,
    Delete,
    Rollback,
    Reconfigure,
    Stop,
    Start,
}

impl DeployAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployAction::Create => "CREATE",
            DeployAction::Update => "UPDATE",
            DeployAction::Delete => "DELETE",
            DeployAction::Rollback => "ROLLBACK",
            DeployAction::Reconfigure => "RECONFIGURE",
            DeployAction::Stop => "STOP",
            DeployAction::Start => "START",
        }
    }
}

impl std::fmt::Display for DeployAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who owns a service: only the owner may change it without `--force`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A file in the spec drop-in directory; `content_hash` is the sha256 of
    /// the file as last applied, so it is re-applied only when it changed.
    SpecDir { path: String, content_hash: String },
    /// `berthctl` or the API.
    #[default]
    Api,
    /// The Heat-style metadata pull.
    Pull,
}

impl Source {
    /// Two sources are the same owner (a spec_dir file owns by path).
    pub fn same_owner(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::SpecDir { path: a, .. }, Source::SpecDir { path: b, .. }) => a == b,
            (Source::Api, Source::Api) | (Source::Pull, Source::Pull) => true,
            _ => false,
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Source::SpecDir { path, .. } => format!("spec_dir file {path}"),
            Source::Api => "api".to_string(),
            Source::Pull => "pull".to_string(),
        }
    }
}

/// What a deployment produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Outputs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_stderr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_status_code: Option<i64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub declared: BTreeMap<String, String>,
}

/// Cut `s` to at most [`OUTPUT_CAP`] bytes on a char boundary, marking the cut.
pub fn cap_output(mut s: String) -> String {
    if s.len() > OUTPUT_CAP {
        let mut cut = OUTPUT_CAP;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[berth: output truncated at 1 MiB]");
    }
    s
}

/// One deployment of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Deployment {
    pub schema_version: u32,
    /// `<service>-<generation>`: unique on this node, stable across restarts.
    pub id: String,
    pub service: String,
    /// Monotonic per service, starting at 1.
    pub generation: u64,
    pub action: DeployAction,
    pub source: Source,
    /// Who asked: `uid:0`, a token name, `spec_dir`, `berthd`.
    pub actor: String,
    pub spec: ServiceSpec,
    /// The image id the spec's image resolved to when this record was made.
    /// Reconcile uses it, so a re-pointed tag is picked up only by a new apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// `repository@sha256:...`: the digest the spec's image reference
    /// resolved to (the image's `RepoDigests` entry for that repository),
    /// when the engine knows one (a pulled image; not a built or loaded one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// An `exec_in` task: the id of the container it ran in (a new
    /// container of that service runs it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_container: Option<String>,
    pub spec_hash: String,
    /// The combined hash of the config sources this record gave the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Each config source as read for this record (the baseline for the
    /// next change).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<crate::reconfig::ConfigState>,
    /// The `io.berth.config-hash` label its container carries (`recreate`
    /// sources only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_identity: Option<String>,
    /// For RECONFIGURE: what changed and what was done about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_change: Option<crate::reconfig::ConfigChange>,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_reason: String,
    pub outputs: Outputs,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The record's container was created (or it needed none): its spec is
    /// what runs. False for a deployment that failed before reaching the engine.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
    /// For ROLLBACK: the generation whose spec this record restores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// While WAITING_HOOK: the hook that runs or waits, and since when
    /// (with the phase's progress, so a restarted berthd resumes there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<crate::hooks::HookWait>,
    /// An update with hooks went past its `pre_update` point: it stops or
    /// replaces the running container, and its `pre_update` hooks (if it
    /// has any) proceeded. Written before it acts on the engine, so they
    /// never run twice; its `post_update` hooks run once it is judged
    /// COMPLETE ([`crate::hooks::post_update_applies`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pre_update_passed: bool,
    /// The spec's `inputs` as resolved for this deployment (plain values and
    /// the outputs they were taken from), set when it left the wait below.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
    /// PENDING until its `depends_on` hold and its inputs resolve
    /// ([`crate::waves`]); meanwhile the record before it stays the target
    /// and nothing of this one reaches the engine.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
    /// With `env_file`: [`crate::spec::env_file::digest`] of the values the
    /// files held when this deployment was applied (in its spec hash); the
    /// values themselves are never recorded. `<redacted>` outside the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file_digest: Option<String>,
}

impl Deployment {
    pub fn make_id(service: &str, generation: u64) -> String {
        format!("{service}-{generation}")
    }

    /// Takes what makes `from`'s container: its image id (and digest), spec hash,
    /// resolved inputs and env files' digest, for a record that keeps (or
    /// restores) it. They go together: a hash without its inputs is
    /// another container.
    pub fn same_container_as(&mut self, from: &Deployment) {
        self.image_id = from.image_id.clone();
        self.image_digest = from.image_digest.clone();
        self.spec_hash = from.spec_hash.clone();
        self.inputs = from.inputs.clone();
        self.env_file_digest = from.env_file_digest.clone();
    }

    /// Whether [`Deployment::redacted`] would change anything: only then
    /// does output need a copy of its own.
    pub fn needs_redaction(&self) -> bool {
        let hooks = &self.spec.hooks;
        self.spec.env.values().any(|v| v.secret)
            || self.env_file_digest.is_some()
            || hooks
                .pre_update
                .iter()
                .chain(&hooks.post_update)
                .chain(&hooks.pre_delete)
                .any(|h| matches!(h.kind, crate::spec::HookKind::Http(_)))
    }

    /// A copy safe to show outside the daemon: secret env values, http
    /// hook URLs' query and user info, and the env files' digest (of
    /// secrets, which a guess could be checked against) replaced.
    pub fn redacted(&self) -> Deployment {
        let mut d = self.clone();
        d.spec = d.spec.redacted();
        if d.env_file_digest.is_some() {
            d.env_file_digest = Some(crate::REDACTED.to_string());
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::EnvValue;

    #[test]
    fn needs_redaction_exactly_when_redacted_differs() {
        let mut d = Deployment::default();
        d.spec
            .env
            .insert("PLAIN".into(), EnvValue::plain("visible"));
        assert!(!d.needs_redaction());
        assert_eq!(d.redacted(), d, "nothing to hide: the same record");
        d.spec.env.insert(
            "TOKEN".into(),
            EnvValue {
                value: "s3cret".into(),
                secret: true,
            },
        );
        assert!(d.needs_redaction());
        let shown = d.redacted();
        assert_ne!(shown, d);
        assert_eq!(shown.spec.env["TOKEN"].value, crate::REDACTED);
        assert_eq!(shown.spec.env["PLAIN"].value, "visible");
    }

    /// The env files' digest is of secrets: a guess could be checked
    /// against it, so it does not leave the daemon either.
    #[test]
    fn the_env_file_digest_is_redacted() {
        let mut d = Deployment::default();
        assert!(!d.needs_redaction());
        d.env_file_digest = Some("sha256:abc".into());
        assert!(d.needs_redaction());
        assert_eq!(
            d.redacted().env_file_digest.as_deref(),
            Some(crate::REDACTED)
        );
        assert_eq!(d.env_file_digest.as_deref(), Some("sha256:abc"));
    }

    #[test]
    fn http_hook_urls_are_redacted() {
        use crate::spec::{Hook, HookKind, HookPlace, OnTimeout};
        let mut d = Deployment::default();
        let hook = |kind| Hook {
            kind,
            place: HookPlace::Container,
            timeout: None,
            on_timeout: OnTimeout::Abort,
        };
        d.spec.hooks.pre_update = vec![
            hook(HookKind::Http(
                "https://a.example/x?token=first-secret".into(),
            )),
            hook(HookKind::Exec(vec!["/bin/true".into()])),
        ];
        d.spec.hooks.post_update = vec![hook(HookKind::Http(
            "https://user:pw@ci.example/hook?token=s3cret".into(),
        ))];
        assert!(d.needs_redaction());
        // Every view shows this, and an http hook POSTs it: an endpoint
        // never learns another hook's token either.
        let shown = serde_json::to_string(&d.redacted()).unwrap();
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
        assert!(!shown.contains("first-secret"), "{shown}");
        assert!(
            shown.contains("https://<redacted>@ci.example/hook?<redacted>"),
            "{shown}"
        );
        assert!(shown.contains("https://a.example/x?<redacted>"), "{shown}");
        assert!(shown.contains("/bin/true"), "{shown}");
        // The record itself keeps the URL: the hook needs it.
        assert!(serde_json::to_string(&d).unwrap().contains("s3cret"));
    }

    /// A record written before berth recorded digests reads as before,
    /// and one without a digest is written as before.
    #[test]
    fn the_image_digest_is_optional_on_disk() {
        let old = r#"{"schema_version":1,"id":"web-1","service":"web","generation":1,"image_id":"sha256:abc","spec_hash":"h"}"#;
        let d: Deployment = serde_json::from_str(old).expect("old record");
        assert_eq!(d.image_id.as_deref(), Some("sha256:abc"));
        assert_eq!(d.image_digest, None);
        assert!(
            !serde_json::to_string(&d)
                .expect("json")
                .contains("image_digest")
        );
        let mut pulled = d.clone();
        pulled.image_digest = Some("reg:5000/web@sha256:def".into());
        let text = serde_json::to_string(&pulled).expect("json");
        let back: Deployment = serde_json::from_str(&text).expect("back");
        assert_eq!(back.image_digest, pulled.image_digest);
        let mut kept = Deployment::default();
        kept.same_container_as(&pulled);
        assert_eq!(kept.image_digest, pulled.image_digest);
    }
}
