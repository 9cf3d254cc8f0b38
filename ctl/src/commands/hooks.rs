//! `hook list` (every deployment on the node waiting on a hook) and `hook
//! clear` (release the breakpoints of one phase of a waiting deployment).

use berth_core::dto::{ServiceStatus, VerbResponse};
use berth_core::hooks::HookWait;
use berth_core::spec::HookPhase;
use clap::{Args, Subcommand};
use hyper::Method;
use serde::Serialize;

use crate::Ctx;
use crate::error::CliResult;
use crate::output::{self, format_age, table};

#[derive(Debug, Clone, Subcommand)]
pub enum HookCmd {
    /// Every deployment on this node waiting on a hook (WAITING_HOOK): the
    /// service, the deployment, the phase, the hook and since when.
    ///
    /// A breakpoint waits until `berthctl hook clear`; an exec hook is
    /// running and ends by itself (or at its timeout).
    ///
    /// Examples:
    ///   berthctl hook list
    ///   berthctl hook list --json
    #[command(verbatim_doc_comment)]
    List,
    /// Release every breakpoint of PHASE of SERVICE's waiting deployment;
    /// the deployment goes on with its next hook, or with the update.
    ///
    /// Over the TCP API this needs an admin token.
    ///
    /// Examples:
    ///   berthctl hook clear web pre_update
    ///   berthctl hook clear web post_update
    ///   berthctl hook clear web pre_delete
    #[command(verbatim_doc_comment)]
    Clear(ClearArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ClearArgs {
    /// The service whose deployment waits.
    #[arg(value_name = "SERVICE", value_parser = super::service_name)]
    pub service: String,
    /// The hook phase: pre_update, post_update or pre_delete.
    #[arg(value_name = "PHASE", value_parser = parse_phase)]
    pub phase: HookPhase,
}

fn parse_phase(s: &str) -> Result<HookPhase, String> {
    HookPhase::parse(s)
        .ok_or_else(|| format!("no hook phase {s:?}; phases: pre_update, post_update, pre_delete"))
}

/// One waiting hook, as `hook list --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Waiting {
    pub service: String,
    pub deployment: String,
    pub generation: u64,
    #[serde(flatten)]
    pub hook: HookWait,
}

/// The waiting hooks among `services`, by service name.
pub fn waiting(services: &[ServiceStatus]) -> Vec<Waiting> {
    let mut out: Vec<Waiting> = services
        .iter()
        .filter_map(|s| {
            let d = s.current.as_ref()?;
            let hook = d.hook.clone()?;
            Some(Waiting {
                service: s.name.clone(),
                deployment: d.id.clone(),
                generation: d.generation,
                hook,
            })
        })
        .collect();
    out.sort_by(|a, b| a.service.cmp(&b.service));
    out
}

fn render(list: &[Waiting], now_ms: u64) -> String {
    if list.is_empty() {
        return "no deployment waits on a hook\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let phase = w.hook.phase.map(HookPhase::as_str).unwrap_or("-");
            let clear = if w.hook.breakpoint && !w.hook.cleared {
                format!("berthctl hook clear {} {phase}", w.service)
            } else {
                "(running)".into()
            };
            vec![
                w.service.clone(),
                w.deployment.clone(),
                phase.to_string(),
                format!("#{} {}", w.hook.index + 1, w.hook.hook),
                format_age(now_ms, w.hook.since_ms),
                clear,
            ]
        })
        .collect();
    table(
        &[
            "SERVICE",
            "DEPLOYMENT",
            "PHASE",
            "HOOK",
            "WAITING",
            "TO GO ON",
        ],
        &rows,
    )
}

pub async fn cmd_hook(ctx: &Ctx, cmd: &HookCmd) -> CliResult {
    match cmd {
        HookCmd::List => {
            let services: Vec<ServiceStatus> = ctx.client.get("/v1/services").await?;
            let list = waiting(&services);
            if ctx.json {
                return output::json(&list);
            }
            output::text(render(&list, output::now_ms()))
        }
        HookCmd::Clear(a) => {
            let path = format!(
                "/v1/services/{}/hooks/{}/clear",
                a.service,
                a.phase.as_str()
            );
            let r: VerbResponse = ctx.client.json(Method::POST, &path, None).await?;
            if ctx.json {
                return output::json(&r);
            }
            if r.message.is_empty() {
                return output::line(format!(
                    "{}: {} breakpoints cleared",
                    a.service,
                    a.phase.as_str()
                ));
            }
            output::line(r.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::dto::DeploymentSummary;

    fn svc(name: &str, hook: Option<HookWait>) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            current: Some(DeploymentSummary {
                id: format!("{name}-2"),
                generation: 2,
                hook,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn wait(breakpoint: bool) -> HookWait {
        HookWait {
            phase: Some(HookPhase::PreUpdate),
            index: 0,
            hook: if breakpoint {
                "breakpoint".into()
            } else {
                "exec /demo drain".into()
            },
            since_ms: 1_000,
            breakpoint,
            ..Default::default()
        }
    }

    #[test]
    fn only_waiting_deployments_are_listed_by_service() {
        let list = waiting(&[
            svc("web", Some(wait(true))),
            svc("api", None),
            svc("db", Some(wait(false))),
        ]);
        let names: Vec<&str> = list.iter().map(|w| w.service.as_str()).collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(list[1].deployment, "web-2");
    }

    #[test]
    fn a_breakpoint_names_the_command_that_clears_it() {
        let text = render(&waiting(&[svc("web", Some(wait(true)))]), 61_000);
        assert!(
            text.contains("berthctl hook clear web pre_update"),
            "{text}"
        );
        assert!(text.contains("#1 breakpoint"), "{text}");
        let text = render(&waiting(&[svc("db", Some(wait(false)))]), 61_000);
        assert!(text.contains("(running)"), "{text}");
        assert_eq!(render(&[], 0), "no deployment waits on a hook\n");
    }

    #[test]
    fn json_flattens_the_hook() {
        let v = serde_json::to_value(waiting(&[svc("web", Some(wait(true)))])).unwrap();
        assert_eq!(v[0]["service"], "web");
        assert_eq!(v[0]["phase"], "pre_update");
        assert_eq!(v[0]["breakpoint"], true);
    }
}
