//! `outbox` (the upstream signals berthd still has to deliver) and `push`
//! (a Heat software-deployment document, as an orchestrator sends it).

use std::path::PathBuf;

use berth_core::dto::DocumentStatus;
use berth_core::heat::outbox::{EntryState, OutboxView};
use clap::{Args, Subcommand};
use hyper::Method;

use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{self, format_age, table};

#[derive(Debug, Clone, Subcommand)]
pub enum OutboxCmd {
    /// Every signal waiting to be delivered, and the dead letters.
    ///
    /// A signal is written to the outbox before it is sent and removed only
    /// after the receiver answered 2xx; failures are retried with backoff
    /// (1 s to 60 s). A permanent refusal (4xx other than 408/429) makes it a
    /// dead letter, which stays until retried or dropped.
    ///
    /// Examples:
    ///   berthctl outbox list
    ///   berthctl outbox list --json
    #[command(verbatim_doc_comment)]
    List,
    /// Put a dead letter back in the queue, to be sent now.
    ///
    /// Examples:
    ///   berthctl outbox retry 7
    #[command(verbatim_doc_comment)]
    Retry(SeqArgs),
    /// Drop an entry: it is never sent.
    ///
    /// Examples:
    ///   berthctl outbox drop 7
    #[command(verbatim_doc_comment)]
    Drop(SeqArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SeqArgs {
    /// The entry's sequence number (`berthctl outbox list`).
    #[arg(value_name = "SEQ")]
    pub seq: u64,
}

#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// A Heat software-deployment document (JSON): id, group: berth, config,
    /// inputs, outputs.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub async fn cmd_outbox(ctx: &Ctx, cmd: &OutboxCmd) -> CliResult {
    match cmd {
        OutboxCmd::List => {
            let entries: Vec<OutboxView> = ctx.client.get("/v1/outbox").await?;
            if ctx.json {
                return output::json(&entries);
            }
            output::text(render_outbox(&entries, output::now_ms()))
        }
        OutboxCmd::Retry(a) => {
            let e: OutboxView = ctx
                .client
                .json(Method::POST, &format!("/v1/outbox/{}/retry", a.seq), None)
                .await?;
            if ctx.json {
                return output::json(&e);
            }
            output::line(format!(
                "outbox entry {} ({}) is pending again",
                e.seq, e.deployment_id
            ))
        }
        OutboxCmd::Drop(a) => {
            let v: serde_json::Value = ctx
                .client
                .json(Method::DELETE, &format!("/v1/outbox/{}", a.seq), None)
                .await?;
            if ctx.json {
                return output::json(&v);
            }
            output::line(format!(
                "outbox entry {} dropped; it will not be sent",
                a.seq
            ))
        }
    }
}

pub fn render_outbox(entries: &[OutboxView], now_ms: u64) -> String {
    if entries.is_empty() {
        return "the outbox is empty: every signal was delivered\n".to_string();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                match e.state {
                    EntryState::Pending => "pending".to_string(),
                    EntryState::Dead => "DEAD".to_string(),
                },
                e.deployment_id.clone(),
                e.attempts.to_string(),
                format_age(now_ms, e.created_ms),
                e.target.clone(),
                e.last_error.clone().unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    table(
        &[
            "SEQ",
            "STATE",
            "DEPLOYMENT",
            "ATTEMPTS",
            "AGE",
            "TARGET",
            "LAST ERROR",
        ],
        &rows,
    )
}

pub async fn cmd_push(ctx: &Ctx, args: &PushArgs) -> CliResult {
    let text = std::fs::read(&args.file)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let doc: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| CliError::usage(format!("{}: not JSON: {e}", args.file.display())))?;
    let status: DocumentStatus = ctx.client.post("/v1/deployments", &doc).await?;
    if ctx.json {
        return output::json(&status);
    }
    let mut out = if status.unchanged {
        format!(
            "document {} was accepted before; nothing applied\n",
            status.doc_id
        )
    } else {
        format!(
            "document {}: {} service(s){}\n",
            status.doc_id,
            status.services.len(),
            if status.delete { ", DELETE" } else { "" }
        )
    };
    for d in &status.deployments {
        out.push_str(&format!(
            "  {}: deployment {} is {}\n",
            d.service, d.id, d.status
        ));
    }
    out.push_str(
        "its signal is queued when every deployment ends and sent from the outbox (berthctl outbox list)\n",
    );
    output::text(out)
}
