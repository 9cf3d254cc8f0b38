//! `adopt --from TOOL --check`: which of the containers paunch,
//! tripleo_ansible or the docker-cmd hook started match their config (and
//! could be taken over as they are), and how the others differ. Only the
//! check exists yet; berthd answers it (`POST /v1/adopt`) and changes
//! nothing.

use berth_core::adopt::{AdoptEntry, AdoptReport, Verdict};
use clap::Args;
use serde_json::json;

use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{self, short_hash};

#[derive(Debug, Clone, Args)]
pub struct AdoptArgs {
    /// Whose containers: paunch (label managed_by=paunch, or tripleo-<Role>
    /// as paunch-era TripleO set it), tripleo (managed_by=tripleo_ansible:
    /// tripleo_container_manage) or docker-cmd (Heat's docker-cmd hook).
    #[arg(long, value_name = "TOOL", value_parser = ["paunch", "tripleo", "docker-cmd"])]
    pub from: String,

    /// Only the containers whose config_id label is ID (a paunch/TripleO
    /// step's config id, e.g. tripleo_step4).
    #[arg(long, value_name = "ID")]
    pub config_id: Option<String>,

    /// Report only: what would be adopted, what differs and how. Changes
    /// nothing. Required for now: taking containers over is not
    /// implemented yet.
    #[arg(long)]
    pub check: bool,
}

pub async fn cmd_adopt(ctx: &Ctx, a: &AdoptArgs) -> CliResult {
    if !a.check {
        return Err(CliError::usage(format!(
            "taking containers over is not implemented yet; only the report is: \
             `berthctl adopt --from {} --check` says which containers would be adopted as they \
             are and how the others differ, and changes nothing",
            a.from
        )));
    }
    let mut body = json!({"from": a.from, "check": true});
    if let Some(id) = &a.config_id {
        body["config_id"] = json!(id);
    }
    let r: AdoptReport = ctx.client.post("/v1/adopt", &body).await?;
    if ctx.json {
        return output::json(&r);
    }
    output::text(render(&r))
}

/// The plain report: a block per container, then a summary.
pub fn render(r: &AdoptReport) -> String {
    let mut out = String::new();
    let (mut adopt, mut differs, mut other) = (0, 0, 0);
    for e in &r.containers {
        out.push_str(&entry(e));
        match e.verdict {
            Verdict::Adopt => adopt += 1,
            Verdict::Differs { .. } => differs += 1,
            Verdict::Unreadable { .. } | Verdict::NeedsMetadata { .. } => other += 1,
        }
    }
    let scope = match &r.config_id {
        Some(id) => format!("{} with config_id {id}", r.from.as_str()),
        None => r.from.as_str().to_string(),
    };
    if r.containers.is_empty() {
        out.push_str(&format!(
            "No container of {scope} (a managed_by label of that tool and no berth label).\n"
        ));
    } else {
        out.push_str(&format!(
            "{}: {adopt} would be adopted as they are, {differs} differ (left alone), {other} \
             cannot be judged. Nothing was changed (--check).\n",
            super::plural(r.containers.len(), "container", "containers")
        ));
    }
    out
}

fn entry(e: &AdoptEntry) -> String {
    let mut out = format!(
        "{}  {}  managed_by={}  config_id={}{}\n",
        e.name,
        short_hash(&e.id),
        e.managed_by,
        e.config_id.as_deref().unwrap_or("-"),
        if e.running { "" } else { "  (not running)" }
    );
    match &e.verdict {
        Verdict::Adopt => out.push_str("  would adopt: it matches its config field by field\n"),
        Verdict::Differs { diffs } => {
            out.push_str(&format!(
                "  differs from its config in {} (left alone; replacing it, --replace, is not \
                 implemented yet):\n",
                super::plural(diffs.len(), "field", "fields")
            ));
            for d in diffs {
                out.push_str(&format!(
                    "    {}: config says {}, container has {}\n",
                    d.field,
                    shown(&d.config_says),
                    shown(&d.container_has)
                ));
            }
        }
        Verdict::Unreadable { reason } => {
            out.push_str(&format!("  cannot be judged: {}\n", one_line(reason)));
        }
        Verdict::NeedsMetadata { reason } => {
            out.push_str(&format!("  cannot be judged yet: {}\n", one_line(reason)));
        }
    }
    if !e.not_compared.is_empty() {
        out.push_str("  not compared (berth has no field for it; check it by hand):\n");
        for what in &e.not_compared {
            out.push_str(&format!("    {}\n", one_line(what)));
        }
    }
    out.push_str(&format!(
        "  if {unit} manages it (systemctl status {unit}), stop and disable the unit and its \
         healthcheck timer before a take-over: berth will not fight a unit that restarts the \
         container\n",
        unit = e.systemd_unit
    ));
    out
}

/// A value as JSON text; `null` (unset) said in words.
fn shown(v: &serde_json::Value) -> String {
    if v.is_null() {
        "nothing (unset: the engine's default)".to_string()
    } else {
        v.to_string()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use berth_core::adopt::{AdoptFrom, FieldDiff};

    use super::*;

    fn e(name: &str, verdict: Verdict) -> AdoptEntry {
        AdoptEntry {
            id: format!("{name}0123456789abcdef"),
            name: name.to_string(),
            managed_by: "paunch".to_string(),
            config_id: Some("step1".to_string()),
            container_name: name.to_string(),
            started_at: None,
            running: true,
            systemd_unit: format!("tripleo_{name}.service"),
            verdict,
            not_compared: Vec::new(),
        }
    }

    #[test]
    fn the_report_says_each_verdict_and_the_differing_fields() {
        let r = AdoptReport {
            from: AdoptFrom::Paunch,
            config_id: Some("step1".into()),
            check: true,
            containers: vec![
                AdoptEntry {
                    not_compared: vec![
                        "mem_swappiness: berth sets no swappiness; the engine's default applies"
                            .into(),
                    ],
                    ..e("keystone", Verdict::Adopt)
                },
                e(
                    "nova",
                    Verdict::Differs {
                        diffs: vec![FieldDiff {
                            field: "env.A".into(),
                            config_says: json!("1"),
                            container_has: serde_json::Value::Null,
                        }],
                    },
                ),
                e(
                    "heat",
                    Verdict::Unreadable {
                        reason: "config_data is not JSON".into(),
                    },
                ),
            ],
        };
        let text = render(&r);
        for part in [
            "keystone  keystone0123  managed_by=paunch  config_id=step1\n  would adopt",
            "differs from its config in 1 field",
            "    env.A: config says \"1\", container has nothing (unset: the engine's default)\n",
            "cannot be judged: config_data is not JSON",
            "  not compared (berth has no field for it; check it by hand):\n    mem_swappiness: \
             berth sets no swappiness; the engine's default applies\n",
            "if tripleo_nova.service manages it",
            "3 containers: 1 would be adopted as they are, 1 differ (left alone), 1 cannot be \
             judged. Nothing was changed (--check).",
        ] {
            assert!(text.contains(part), "{part:?} in:\n{text}");
        }
        let empty = AdoptReport {
            containers: Vec::new(),
            ..r
        };
        assert!(render(&empty).contains("No container of paunch with config_id step1"));
    }
}
