//! The operator verbs on one service: rollback, restart, reconfigure, stop,
//! start, hold, release, delete.

use berth_core::dto::{RollbackRequest, VerbResponse};
use clap::Args;
use hyper::Method;

use super::WaitArgs;
use crate::Ctx;
use crate::error::CliResult;
use crate::output;
use crate::wait;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Rollback(Option<u64>),
    Restart,
    Reconfigure,
    Stop,
    Start,
    Delete,
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
    let mut response: VerbResponse = match verb {
        Verb::Delete => ctx.client.json(Method::DELETE, &base, None).await?,
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
    // `--json` prints the same VerbResponse, its deployment as it ended.
    response.deployment = finished.first().cloned();
    if ctx.json {
        output::json(&response)?;
    }
    wait::outcome(&finished, opts.timeout)
}
