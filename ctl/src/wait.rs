//! Waiting for deployments to finish: one long-poll loop per deployment
//! (`GET /v1/deployments/{id}?wait=...`), status lines as they change.

use std::time::Duration;

use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::units::format_duration;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{CliError, CliResult};
use crate::output;

/// How long berthd gets beyond the asked wait before we call it unresponsive.
const GRACE: Duration = Duration::from_secs(15);
/// Answers faster than this (a daemon that does not long-poll) are spaced out.
const MIN_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// Print every status change (stdout is a terminal), not only final ones.
    pub live: bool,
    /// Print nothing (`--json`).
    pub quiet: bool,
}

impl WaitOptions {
    fn poll(&self) -> Duration {
        if self.live {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        }
    }
}

/// The line for a deployment that ended: `web: COMPLETE`, `api: FAILED: why`.
pub fn final_line(d: &Deployment) -> String {
    if d.status_reason.is_empty() || d.status == Status::Complete {
        format!("{}: {}", d.service, d.status)
    } else {
        format!("{}: {}: {}", d.service, d.status, d.status_reason)
    }
}

/// Waits until every deployment is terminal or the timeout passed; returns
/// the newest copy of each, in the order given.
pub async fn wait_all(
    client: &Client,
    start: Vec<Deployment>,
    opts: WaitOptions,
) -> CliResult<Vec<Deployment>> {
    let deadline = Instant::now() + opts.timeout;
    let mut latest = start;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, CliResult<Deployment>)>();
    for (i, d) in latest.iter().enumerate() {
        if d.status.is_terminal() {
            if !opts.quiet {
                output::line(final_line(d))?;
            }
            continue;
        }
        let tx = tx.clone();
        let client = client.clone();
        let record = d.clone();
        let poll = opts.poll();
        tokio::spawn(async move {
            poll_one(&client, record, deadline, poll, |r| tx.send((i, r)).is_ok()).await;
        });
    }
    drop(tx);

    while let Some((i, r)) = rx.recv().await {
        let d = r?;
        let changed = latest[i].status != d.status;
        if !opts.quiet && changed && (opts.live || d.status.is_terminal()) {
            output::line(if d.status.is_terminal() {
                final_line(&d)
            } else {
                format!("{}: {}", d.service, d.status)
            })?;
        }
        latest[i] = d;
    }

    if !opts.quiet {
        for d in latest.iter().filter(|d| !d.status.is_terminal()) {
            output::line(format!(
                "{}: still {} after {} (deployment {})",
                d.service,
                d.status,
                format_duration(opts.timeout),
                d.id
            ))?;
        }
    }
    Ok(latest)
}

/// Long-polls one deployment until it is terminal, the deadline passed, an
/// error happened, or `send` says nobody listens any more.
async fn poll_one(
    client: &Client,
    record: Deployment,
    deadline: Instant,
    poll: Duration,
    send: impl Fn(CliResult<Deployment>) -> bool,
) {
    loop {
        let asked = Instant::now();
        if asked >= deadline {
            return;
        }
        let wait = (deadline - asked).min(poll);
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let path = format!(
            "/v1/deployments/{}?wait={}",
            record.id,
            format_duration(Duration::from_millis(wait_ms))
        );
        match client.get_within::<Deployment>(&path, wait + GRACE).await {
            Ok(d) => {
                let done = d.status.is_terminal();
                if !send(Ok(d)) || done {
                    return;
                }
            }
            // A finished delete may take its records with it.
            Err(e)
                if record.action == DeployAction::Delete
                    && e.api_kind.as_deref() == Some("not_found") =>
            {
                let mut d = record.clone();
                d.status = Status::Complete;
                send(Ok(d));
                return;
            }
            Err(e) => {
                send(Err(e));
                return;
            }
        }
        let next = asked + MIN_POLL;
        if Instant::now() < next {
            tokio::time::sleep_until(next.min(deadline)).await;
        }
    }
}

/// Exit status after waiting: an error naming what failed or is still going.
pub fn outcome(deployments: &[Deployment], timeout: Duration) -> CliResult {
    let failed: Vec<&str> = deployments
        .iter()
        .filter(|d| d.status.is_terminal() && d.status != Status::Complete)
        .map(|d| d.service.as_str())
        .collect();
    let pending: Vec<&str> = deployments
        .iter()
        .filter(|d| !d.status.is_terminal())
        .map(|d| d.service.as_str())
        .collect();
    let mut problems = Vec::new();
    if !failed.is_empty() {
        problems.push(format!("did not complete: {}", failed.join(", ")));
    }
    if !pending.is_empty() {
        problems.push(format!(
            "still in progress after {}: {}",
            format_duration(timeout),
            pending.join(", ")
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let first = failed.first().or(pending.first()).copied().unwrap_or("");
    let mut err = CliError::failed(problems.join("; "));
    if !failed.is_empty() {
        err = err.with_hint(format!(
            "`berthctl show {first}` has the reason and outputs, `berthctl logs {first}` the container's logs"
        ));
    } else {
        err = err.with_hint(format!(
            "berthd keeps going; follow it with `berthctl history {first}` or `berthctl events -f`"
        ));
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(service: &str, status: Status, reason: &str) -> Deployment {
        Deployment {
            id: format!("{service}-1"),
            service: service.into(),
            generation: 1,
            status,
            status_reason: reason.into(),
            ..Deployment::default()
        }
    }

    #[test]
    fn final_lines() {
        assert_eq!(
            final_line(&dep("web", Status::Complete, "")),
            "web: COMPLETE"
        );
        assert_eq!(
            final_line(&dep("api", Status::Failed, "exited with 3")),
            "api: FAILED: exited with 3"
        );
    }

    #[test]
    fn outcomes() {
        let t = Duration::from_secs(300);
        assert!(outcome(&[dep("web", Status::Complete, "")], t).is_ok());
        assert!(outcome(&[], t).is_ok());
        let e = outcome(
            &[
                dep("web", Status::Complete, ""),
                dep("api", Status::Failed, "x"),
                dep("db", Status::InProgress, ""),
            ],
            t,
        )
        .err();
        let e = e.as_ref().map(|e| (e.exit_code(), e.message.as_str()));
        assert_eq!(
            e,
            Some((1, "did not complete: api; still in progress after 5m: db"))
        );
        assert!(outcome(&[dep("api", Status::RolledBack, "")], t).is_err());
    }
}
