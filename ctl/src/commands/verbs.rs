//! The operator verbs on one service: rollback, restart, reconfigure, stop,
//! start, hold, release, delete.

use berth_core::dto::{RollbackRequest, VerbResponse};
use clap::Args;
use hyper::Method;

use super::WaitArgs;
use crate::Ctx;
use crate::error::CliResult;
use crate::output;
use crate::progress::PullBars;
use crate::wait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Rollback(Option<u64>),
    Restart,
    Reconfigure,
    Stop,
    Start,
    /// With `--volumes` or without.
    Delete {
        volumes: bool,
    },
    Hold,
    Release,
}

#[derive(Debug, Clone, Args)]
pub struct RecordVerbArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,

    /// Also remove, once its container is gone, the named volumes it
    /// mounted that berth created for this node (label io.berth.node) and
    /// that no other service mounts. Without it every volume is kept.
    #[arg(long)]
    pub volumes: bool,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,

    /// The generation whose spec to restore (default: the one before the
    /// current one; `berthctl history NAME` lists them).
    #[arg(long, value_name = "GEN")]
    pub to: Option<u64>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

pub async fn cmd_verb(ctx: &Ctx, name: &str, verb: Verb, wait: Option<&WaitArgs>) -> CliResult {
    let base = format!("/v1/services/{name}");
    // A deployment may pull (a rollback to a pruned image): followed from
    // before the request, when the command waits.
    let bars = match wait.filter(|w| !w.no_wait) {
        Some(_) => PullBars::start(&ctx.client, [name.to_string()], ctx.json).await,
        None => None,
    };
    let mut response: VerbResponse = match verb {
        Verb::Delete { volumes: false } => ctx.client.json(Method::DELETE, &base, None).await?,
        Verb::Delete { volumes: true } => {
            ctx.client
                .json(Method::DELETE, &format!("{base}?volumes=true"), None)
                .await?
        }
        Verb::Rollback(generation) => {
            ctx.client
                .post(&format!("{base}/rollback"), &RollbackRequest { generation })
                .await?
        }
        other => {
            let action = match other {
                Verb::Restart => "restart",
                Verb::Reconfigure => "reconfigure",
                Verb::Stop => "stop",
                Verb::Start => "start",
                Verb::Hold => "hold",
                _ => "release",
            };
            ctx.client
                .json(Method::POST, &format!("{base}/{action}"), None)
                .await?
        }
    };
    if !ctx.json {
        let mut line = response.message.clone();
        if let Some(d) = &response.deployment {
            if line.is_empty() {
                line = format!("{name}: deployment {} is {}", d.id, d.status);
            } else {
                line.push_str(&format!(" (deployment {})", d.id));
            }
        }
        if !line.is_empty() {
            output::line(line)?;
        }
    }
    let Some(wait_args) = wait.filter(|w| !w.no_wait) else {
        return if ctx.json {
            output::json(&response)
        } else {
            Ok(())
        };
    };
    let Some(started) = response.deployment.clone() else {
        return if ctx.json {
            output::json(&response)
        } else {
            Ok(())
        };
    };
    let opts = wait_args.options(ctx.json);
    let finished = wait::wait_all(&ctx.client, vec![started], opts).await?;
    drop(bars);
    // `--json` prints the same VerbResponse, its deployment as it ended.
    response.deployment = finished.first().cloned();
    if ctx.json {
        output::json(&response)?;
    } else if let (Verb::Delete { volumes: true }, Some(d)) = (verb, &response.deployment)
        && d.status == berth_core::record::Status::Complete
        && !d.status_reason.is_empty()
    {
        // Which volumes were removed and which kept, and why.
        output::line(format!("{name}: {}", d.status_reason))?;
    }
    wait::outcome(&finished, &opts)
}
