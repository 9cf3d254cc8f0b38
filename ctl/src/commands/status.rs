//! `status`, `show`, `history`: reading what berthd knows.

use berth_core::dto::{NodeInfo, ServiceDetail, ServiceStatus};
use berth_core::record::Deployment;
use berth_core::spec::{DesiredState, Kind};
use clap::Args;
use serde::Serialize;

use crate::Ctx;
use crate::error::CliResult;
use crate::output::{self, format_age, format_time, serde_name, short_hash, truncate};

#[derive(Debug, Clone, Args)]
pub struct NameArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,

    /// Show at most N deployments (berthd's default when not given).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

/// `status --json`: both answers.
#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    node: &'a NodeInfo,
    services: &'a [ServiceStatus],
}

pub async fn cmd_status(ctx: &Ctx) -> CliResult {
    let node: NodeInfo = ctx.client.get("/v1/node").await?;
    let services: Vec<ServiceStatus> = ctx.client.get("/v1/services").await?;
    if ctx.json {
        return output::json(&StatusJson {
            node: &node,
            services: &services,
        });
    }
    output::text(render_status(&node, &services, output::now_ms()))
}

/// The node header and the service table.
pub fn render_status(node: &NodeInfo, services: &[ServiceStatus], now_ms: u64) -> String {
    let mut out = String::new();
    let engine = if node.engine.reachable {
        "reachable"
    } else {
        "UNREACHABLE"
    };
    let mut header = format!(
        "node {}  berthd {}  engine {engine}",
        node.node_id, node.version
    );
    if !node.engine.detail.is_empty() {
        header.push_str(&format!(" ({})", node.engine.detail));
    }
    out.push_str(&header);
    out.push('\n');
    out.push_str(&node.summary.line());
    out.push('\n');
    let o = &node.outbox;
    if o.depth > 0 || o.dead > 0 || o.unreadable > 0 {
        out.push_str(&format!(
            "upstream signals: {} waiting (oldest {}), {} dead, {} unreadable (berthctl outbox list)\n",
            o.depth,
            berth_core::units::format_duration(std::time::Duration::from_millis(o.oldest_age_ms - o.oldest_age_ms % 1000)),
            o.dead,
            o.unreadable
        ));
    }
    for w in &node.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    if services.is_empty() {
        out.push_str("no services (berthctl apply FILE creates one)\n");
        return out;
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = services.iter().map(|s| status_row(s, now_ms)).collect();
    out.push_str(&output::table(
        &[
            "SERVICE", "STATE", "HEALTH", "RESTARTS", "GEN", "STATUS", "UPDATED", "IMAGE", "NOTES",
        ],
        &rows,
    ));
    out
}

fn status_row(s: &ServiceStatus, now_ms: u64) -> Vec<String> {
    let dash = || "-".to_string();
    let (state, health, restarts) = match &s.container {
        Some(c) => (
            serde_name(&c.state),
            c.health.as_ref().map(serde_name).unwrap_or_else(dash),
            c.restart_count.to_string(),
        ),
        None => ("missing".to_string(), dash(), dash()),
    };
    let (generation, status, updated) = match &s.current {
        Some(d) => (
            d.generation.to_string(),
            d.status.to_string(),
            format_age(now_ms, d.updated_at_ms),
        ),
        None => (dash(), dash(), dash()),
    };
    vec![
        s.name.clone(),
        state,
        health,
        restarts,
        generation,
        status,
        updated,
        if s.image.is_empty() {
            dash()
        } else {
            s.image.clone()
        },
        notes(s).join(", "),
    ]
}

/// Flags worth an operator's eye.
fn notes(s: &ServiceStatus) -> Vec<String> {
    let mut notes = Vec::new();
    if s.held {
        notes.push("held".to_string());
    }
    if s.crash_loop {
        notes.push("crash-loop".to_string());
    }
    if s.desired_state == DesiredState::Stopped {
        notes.push("stopped".to_string());
    }
    if s.kind == Kind::Task {
        notes.push("task".to_string());
    }
    if let Some(e) = &s.unreadable {
        notes.push(format!("unreadable: {e}"));
    }
    notes
}

pub async fn cmd_show(ctx: &Ctx, args: &NameArgs) -> CliResult {
    let detail: ServiceDetail = ctx
        .client
        .get(&format!("/v1/services/{}", args.name))
        .await?;
    if ctx.json {
        return output::json(&detail);
    }
    output::text(render_show(&detail, output::now_ms()))
}

/// `key  value` lines, keys padded to one width.
fn kv(out: &mut String, indent: &str, pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        out.push_str(&format!("{indent}{k:<width$}  {v}\n"));
    }
}

pub fn render_show(detail: &ServiceDetail, now_ms: u64) -> String {
    let s = &detail.status;
    let mut out = String::new();
    let mut pairs = vec![
        ("service", s.name.clone()),
        ("owner", s.owner.clone()),
        (
            "kind",
            format!(
                "{}, desired {}",
                serde_name(&s.kind),
                serde_name(&s.desired_state)
            ),
        ),
        ("image", s.image.clone()),
    ];
    let container = match &s.container {
        Some(c) => {
            let mut v = format!("{} {}", c.name, serde_name(&c.state));
            if let Some(h) = &c.health {
                v.push_str(&format!(", {}", serde_name(h)));
            }
            v.push_str(&format!(", {} restarts", c.restart_count));
            if let Some(code) = c.exit_code {
                v.push_str(&format!(", exit code {code}"));
            }
            if let Some(t) = &c.started_at {
                v.push_str(&format!(", started {t}"));
            }
            v
        }
        None => "missing".to_string(),
    };
    pairs.push(("container", container));
    pairs.push((
        "converged",
        if s.converged { "yes" } else { "no" }.to_string(),
    ));
    let notes = notes(s);
    if !notes.is_empty() {
        pairs.push(("notes", notes.join(", ")));
    }
    kv(&mut out, "", &pairs);
    out.push_str(&render_config(s, now_ms));

    let Some(d) = &detail.current else {
        out.push_str("\nno current deployment\n");
        return out;
    };
    out.push_str(&format!("\ndeployment {}\n", d.id));
    out.push_str(&render_deployment(d, now_ms));

    let spec = serde_json::to_value(&d.spec).unwrap_or(serde_json::Value::Null);
    out.push_str("\nspec:\n");
    out.push_str(&output::yamlish(&spec, 2));

    if !d.inputs.is_empty() {
        out.push_str("\ninputs:\n");
        for (k, v) in &d.inputs {
            push_block(&mut out, k, v);
        }
    }

    let o = &d.outputs;
    if o.deploy_stdout.is_some()
        || o.deploy_stderr.is_some()
        || o.deploy_status_code.is_some()
        || !o.declared.is_empty()
    {
        out.push_str("\noutputs:\n");
        if let Some(code) = o.deploy_status_code {
            out.push_str(&format!("  deploy_status_code: {code}\n"));
        }
        if let Some(t) = &o.deploy_stdout {
            push_block(&mut out, "deploy_stdout", t);
        }
        if let Some(t) = &o.deploy_stderr {
            push_block(&mut out, "deploy_stderr", t);
        }
        for (k, v) in &o.declared {
            push_block(&mut out, k, v);
        }
    }
    out
}

/// The config sources, their hash as last read, and the last change.
fn render_config(s: &berth_core::dto::ServiceStatus, now_ms: u64) -> String {
    let mut out = String::new();
    if s.config.is_empty() {
        return out;
    }
    out.push_str(
        "
config sources:
",
    );
    for c in &s.config {
        let state = match (&c.error, &c.hash) {
            (Some(e), _) => format!("UNREADABLE: {e}"),
            (None, Some(h)) => format!("hash {}", short_hash(h)),
            (None, None) => "not read yet".to_string(),
        };
        out.push_str(&format!(
            "  {} -> {}  (on_change: {})  {state}\n",
            c.source, c.target, c.on_change
        ));
    }
    if let Some(last) = &s.last_config_change {
        let ch = &last.change;
        let mut line = format!(
            "last change: {} {} ({} ago): {} -> {}, {}",
            last.deployment,
            last.status,
            format_age(now_ms, last.at_ms),
            ch.old_hash.as_deref().map_or("-".into(), short_hash),
            ch.new_hash.as_deref().map_or("-".into(), short_hash),
            ch.reaction
        );
        if ch.forced {
            line.push_str(" (forced)");
        }
        if !last.status_reason.is_empty() {
            line.push_str(&format!("; {}", last.status_reason));
        }
        out.push_str(&format!("  {line}\n"));
        let files = ch.files();
        if !files.is_empty() {
            let shown: Vec<&str> = files.iter().take(10).map(String::as_str).collect();
            let more = files.len().saturating_sub(shown.len());
            out.push_str(&format!(
                "  changed files: {}{}\n",
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    out
}

/// `  name: text`, or a multi-line text indented under `  name:`.
fn push_block(out: &mut String, name: &str, text: &str) {
    if text.is_empty() || !text.contains('\n') {
        out.push_str(&format!("  {name}: {text}\n"));
    } else {
        out.push_str(&format!("  {name}:\n"));
        for l in text.lines() {
            out.push_str(&format!("    {l}\n"));
        }
    }
}

fn render_deployment(d: &Deployment, now_ms: u64) -> String {
    let mut out = String::new();
    let status = if d.status_reason.is_empty() {
        d.status.to_string()
    } else {
        format!("{}: {}", d.status, d.status_reason)
    };
    let mut pairs = vec![
        ("generation", d.generation.to_string()),
        ("action", d.action.to_string()),
        ("status", status),
        ("actor", d.actor.clone()),
        ("source", d.source.describe()),
        ("spec hash", d.spec_hash.clone()),
    ];
    if let Some(id) = &d.image_id {
        pairs.push(("image id", id.clone()));
    }
    if let Some(digest) = &d.image_digest {
        pairs.push(("image digest", digest.clone()));
    }
    if let Some(h) = &d.config_hash {
        pairs.push(("config hash", h.clone()));
    }
    if let Some(g) = d.rollback_of {
        pairs.push(("rollback of", format!("generation {g}")));
    }
    let when = |ms: u64| {
        if ms == 0 {
            "-".to_string()
        } else {
            format!("{} ({} ago)", format_time(ms), format_age(now_ms, ms))
        }
    };
    pairs.push(("created", when(d.created_at_ms)));
    pairs.push(("updated", when(d.updated_at_ms)));
    kv(&mut out, "  ", &pairs);
    out
}

pub async fn cmd_history(ctx: &Ctx, args: &HistoryArgs) -> CliResult {
    let mut path = format!("/v1/services/{}/deployments", args.name);
    if let Some(n) = args.limit {
        path.push_str(&format!("?limit={n}"));
    }
    let records: Vec<Deployment> = ctx.client.get(&path).await?;
    if ctx.json {
        return output::json(&records);
    }
    output::text(render_history(&records))
}

/// `repository@sha256:0123456789ab` from a `repository@sha256:...` digest.
fn short_digest(digest: &str) -> String {
    match digest.split_once('@') {
        Some((repository, hash)) => format!("{repository}@{}", short_hash(hash)),
        None => short_hash(digest),
    }
}

pub fn render_history(records: &[Deployment]) -> String {
    if records.is_empty() {
        return "no deployments\n".to_string();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|d| {
            vec![
                d.generation.to_string(),
                d.action.to_string(),
                d.status.to_string(),
                if d.status_reason.is_empty() {
                    "-".to_string()
                } else {
                    truncate(&d.status_reason, 48)
                },
                d.actor.clone(),
                format_time(d.created_at_ms),
                short_hash(&d.spec_hash),
                d.image_id.as_deref().map_or("-".to_string(), short_hash),
                d.image_digest
                    .as_deref()
                    .map_or("-".to_string(), short_digest),
            ]
        })
        .collect();
    output::table(
        &[
            "GEN",
            "ACTION",
            "STATUS",
            "REASON",
            "ACTOR",
            "CREATED",
            "SPEC HASH",
            "IMAGE",
            "DIGEST",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::dto::{ContainerStatus, DeploymentSummary, EngineStatus, Summary};
    use berth_core::record::{DeployAction, Status};
    use berth_core::runtime::{ContainerState, Health};

    fn web() -> ServiceStatus {
        ServiceStatus {
            name: "web".into(),
            owner: "api".into(),
            image: "nginx:1".into(),
            current: Some(DeploymentSummary {
                id: "web-3".into(),
                generation: 3,
                action: DeployAction::Update,
                status: Status::Complete,
                updated_at_ms: 1_000_000 - 120_000,
                ..DeploymentSummary::default()
            }),
            container: Some(ContainerStatus {
                id: "abc".into(),
                name: "berth-web".into(),
                state: ContainerState::Running,
                health: Some(Health::Healthy),
                restart_count: 2,
                exit_code: None,
                started_at: None,
                spec_hash: None,
            }),
            converged: true,
            ..ServiceStatus::default()
        }
    }

    #[test]
    fn status_table() {
        let node = NodeInfo {
            node_id: "n1".into(),
            version: "0.1.0".into(),
            engine: EngineStatus {
                reachable: true,
                detail: "unix:///var/run/docker.sock".into(),
            },
            summary: Summary {
                services: 2,
                converged: 1,
                held: 1,
                ..Summary::default()
            },
            ..NodeInfo::default()
        };
        let api = ServiceStatus {
            name: "api".into(),
            held: true,
            crash_loop: true,
            unreadable: Some("bad json".into()),
            ..ServiceStatus::default()
        };
        let text = render_status(&node, &[web(), api], 1_000_000);
        let expected = "\
node n1  berthd 0.1.0  engine reachable (unix:///var/run/docker.sock)
2 services: 1 converged, 1 held

SERVICE  STATE    HEALTH   RESTARTS  GEN  STATUS    UPDATED  IMAGE    NOTES
web      running  healthy  2         3    COMPLETE  2m       nginx:1
api      missing  -        -         -    -         -        -        held, crash-loop, unreadable: bad json
";
        assert_eq!(text, expected);
    }

    #[test]
    fn show_prints_record_spec_and_outputs() {
        let mut d = Deployment {
            id: "web-3".into(),
            service: "web".into(),
            generation: 3,
            status: Status::Failed,
            status_reason: "exited with 1".into(),
            actor: "uid:0".into(),
            spec_hash: "sha256:abc".into(),
            ..Deployment::default()
        };
        d.spec.name = "web".into();
        d.outputs.deploy_status_code = Some(1);
        d.outputs.deploy_stderr = Some("line one\nline two\n".into());
        d.inputs.insert("release".into(), "2026.2".into());
        let text = render_show(
            &ServiceDetail {
                status: web(),
                current: Some(d),
            },
            1_000_000,
        );
        for want in [
            "service    web\n",
            "container  berth-web running, healthy, 2 restarts\n",
            "deployment web-3\n",
            "  status      FAILED: exited with 1\n",
            "  source      api\n",
            "  created     -\n",
            "spec:\n  name: web\n",
            "  deploy_status_code: 1\n",
            "  deploy_stderr:\n    line one\n    line two\n",
            "inputs:\n  release: 2026.2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn history_table() {
        let records = vec![Deployment {
            generation: 2,
            action: DeployAction::Rollback,
            status: Status::Complete,
            actor: "uid:0".into(),
            created_at_ms: 1_709_210_096_000,
            spec_hash: "sha256:0123456789abcdef".into(),
            ..Deployment::default()
        }];
        assert_eq!(
            render_history(&records),
            "\
GEN  ACTION    STATUS    REASON  ACTOR  CREATED               SPEC HASH     IMAGE  DIGEST
2    ROLLBACK  COMPLETE  -       uid:0  2024-02-29 12:34:56Z  0123456789ab  -      -
"
        );
    }

    /// The image a record resolved to, and the digest of a pulled one,
    /// in both views.
    #[test]
    fn image_id_and_digest_are_shown() {
        let d = Deployment {
            generation: 3,
            action: DeployAction::Update,
            status: Status::Complete,
            actor: "uid:0".into(),
            created_at_ms: 1_709_210_096_000,
            spec_hash: "sha256:0123456789abcdef".into(),
            image_id: Some("sha256:aaaabbbbccccdddd".into()),
            image_digest: Some("127.0.0.1:5000/web@sha256:eeeeffff00001111".into()),
            ..Deployment::default()
        };
        assert_eq!(
            render_history(std::slice::from_ref(&d)),
            "\
GEN  ACTION  STATUS    REASON  ACTOR  CREATED               SPEC HASH     IMAGE         DIGEST
3    UPDATE  COMPLETE  -       uid:0  2024-02-29 12:34:56Z  0123456789ab  aaaabbbbcccc  127.0.0.1:5000/web@eeeeffff0000
"
        );
        let shown = render_deployment(&d, 1_709_210_096_000);
        assert!(
            shown.contains("  image id      sha256:aaaabbbbccccdddd\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  image digest  127.0.0.1:5000/web@sha256:eeeeffff00001111\n"),
            "{shown}"
        );
    }
}
