//! `events`: berthd's event log, once or followed (server-sent events).

use berth_core::dto::EventsResponse;
use berth_core::event::Event;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{self, format_time};
use crate::sse;

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Keep printing new events until interrupted.
    #[arg(short, long)]
    pub follow: bool,

    /// Only events after sequence number SEQ (default: every event berthd
    /// still keeps).
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
}

/// `SEQ  TIME  summary`.
pub fn event_line(e: &Event) -> String {
    format!("{}  {}  {}", e.seq, format_time(e.at_ms), e.kind.summary())
}

fn missed_warning(since: u64) {
    output::warn(format!(
        "berthd no longer keeps some events after {since}: events were missed; \
         `berthctl status` shows the current state"
    ));
}

pub async fn cmd_events(ctx: &Ctx, args: &EventsArgs) -> CliResult {
    let since = args.since.unwrap_or(0);
    if !args.follow {
        let resp: EventsResponse = ctx.client.get(&format!("/v1/events?since={since}")).await?;
        // Without --since the operator asked for whatever is kept: no warning.
        if resp.reset && args.since.is_some() {
            missed_warning(since);
        }
        if ctx.json {
            return output::json(&resp);
        }
        for e in &resp.events {
            output::line(event_line(e))?;
        }
        return Ok(());
    }

    let path = format!("/v1/events?since={since}&follow=true");
    let resp = ctx.client.send_ok(Method::GET, &path, None).await?;
    let mut body = resp.into_body();
    let mut parser = sse::Parser::default();
    let mut last = since;
    // Without --since the operator asked for whatever is kept: a reset at the
    // start of the stream is expected, a later one is not.
    let mut warn_on_reset = args.since.is_some();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| CliError::failed(format!("the event stream from berthd broke: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        for msg in parser.push(data) {
            let reset = msg.event.as_deref() == Some("reset");
            if reset && warn_on_reset {
                missed_warning(last);
            }
            warn_on_reset = true;
            if msg.data.trim().is_empty() {
                continue;
            }
            let event: Event = match serde_json::from_str(&msg.data) {
                Ok(e) => e,
                Err(e) => {
                    if !reset {
                        output::warn(format!("skipping an event berthctl cannot read: {e}"));
                    }
                    continue;
                }
            };
            last = last.max(event.seq);
            if ctx.json {
                output::json_line(&event)?;
            } else {
                output::line(event_line(&event))?;
            }
        }
    }
    Err(CliError::failed(format!(
        "berthd ended the event stream (last event seen: {last})"
    ))
    .with_hint(format!(
        "resume with `berthctl events -f --since {last}` once berthd is back"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::event::EventKind;

    #[test]
    fn lines() {
        let e = Event {
            seq: 42,
            at_ms: 1_709_210_096_000,
            kind: EventKind::ServiceDeleted {
                service: "web".into(),
            },
        };
        assert_eq!(event_line(&e), "42  2024-02-29 12:34:56Z  web: deleted");
    }
}
