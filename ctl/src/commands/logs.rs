//! `logs`: a service's container output, streamed.

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output;

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The service.
    #[arg(value_name = "NAME", value_parser = super::service_name)]
    pub name: String,

    /// Keep printing new output until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Start with the last N lines (default: all).
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
}

pub async fn cmd_logs(ctx: &Ctx, args: &LogsArgs) -> CliResult {
    let mut path = format!("/v1/services/{}/logs?follow={}", args.name, args.follow);
    if let Some(n) = args.tail {
        path.push_str(&format!("&tail={n}"));
    }
    let resp = ctx.client.send_ok(Method::GET, &path, None).await?;
    let mut body = resp.into_body();
    let mut lines = LineSplitter::default();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| CliError::failed(format!("the log stream from berthd broke: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if ctx.json {
            for l in lines.push(data) {
                output::json_line(&l)?;
            }
        } else {
            output::bytes(data)?;
        }
    }
    if ctx.json
        && let Some(rest) = lines.finish()
    {
        output::json_line(&rest)?;
    }
    Ok(())
}

/// Cuts a byte stream into lines (without their `\n`), for `--json`.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            out.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        out
    }

    /// What is left after the last newline.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            None
        } else {
            let rest = String::from_utf8_lossy(&self.buf).into_owned();
            self.buf.clear();
            Some(rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\nworld\npar"), ["hello", "world"]);
        assert_eq!(s.finish().as_deref(), Some("par"));
        assert_eq!(s.finish(), None);
    }
}
