//! Waiting for deployments to finish: one long-poll loop per deployment
//! (`GET /v1/deployments/{id}?wait=...`), status lines as they change.
//! A deployment that waits at a breakpoint hook ends the wait too (exit 3),
//! unless `--wait-hooks`.

use std::time::Duration;

use berth_core::hooks::HookWait;
use berth_core::record::{DeployAction, Deployment, Status};
use berth_core::spec::HookPhase;
use berth_core::units::format_duration;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{CliError, CliResult};
use crate::output;

/// How long berthd gets beyond the asked wait before we call it unresponsive.
const GRACE: Duration = Duration::from_secs(15);
/// Answers faster than this (a daemon that does not long-poll) are spaced out.
const MIN_POLL: Duration = Duration::from_millis(500);
/// How often a deployment whose spec has hooks is looked at: berthd's long
/// poll answers when a deployment ends, not when it reaches WAITING_HOOK, so
/// a breakpoint is seen within this.
const HOOK_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Duration,
    /// Print every status change (stdout is a terminal), not only final ones.
    pub live: bool,
    /// Print nothing (`--json`).
    pub quiet: bool,
    /// Keep waiting through breakpoints (`--wait-hooks`); without it a
    /// deployment waiting at one is where the wait stops.
    pub wait_hooks: bool,
}

impl WaitOptions {
    fn poll(&self, record: &Deployment) -> Duration {
        let poll = if self.live {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        };
        if !self.wait_hooks && !record.spec.hooks.is_empty() {
            poll.min(HOOK_POLL)
        } else {
            poll
        }
    }
}

/// The hook `d` waits at, when it is a breakpoint: WAITING_HOOK that only
/// `berthctl hook clear` ends. An exec or http hook that runs is not one: it
/// ends by itself; nor is a breakpoint already cleared (berthd goes on).
pub fn at_breakpoint(d: &Deployment) -> Option<&HookWait> {
    if d.status != Status::WaitingHook {
        return None;
    }
    d.hook.as_ref().filter(|h| h.breakpoint && !h.cleared)
}

/// Whether waiting for `d` is over: it ended, or it waits at a breakpoint
/// and the caller does not wait through them.
pub fn settled(d: &Deployment, wait_hooks: bool) -> bool {
    d.status.is_terminal() || (!wait_hooks && at_breakpoint(d).is_some())
}

/// A deployment waiting at a breakpoint, as `apply --json` lists it: the
/// fields of `hook list --json`, and the command that lets it go on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Breakpoint {
    pub service: String,
    pub deployment: String,
    pub generation: u64,
    #[serde(flatten)]
    pub hook: HookWait,
    /// `berthctl hook clear SERVICE PHASE` (`berthctl hook list` for a
    /// hook that names no phase).
    pub clear: String,
}

/// The deployments among `deployments` that wait at a breakpoint.
pub fn breakpoints(deployments: &[Deployment]) -> Vec<Breakpoint> {
    deployments
        .iter()
        .filter_map(|d| {
            let hook = at_breakpoint(d)?;
            let clear = match hook.phase {
                Some(p) => format!("berthctl hook clear {} {}", d.service, p.as_str()),
                None => "berthctl hook list".to_string(),
            };
            Some(Breakpoint {
                service: d.service.clone(),
                deployment: d.id.clone(),
                generation: d.generation,
                hook: hook.clone(),
                clear,
            })
        })
        .collect()
}

/// `web: deployment web-4 waits at pre_update hook 1 (breakpoint); to go
/// on: berthctl hook clear web pre_update`.
fn breakpoint_line(b: &Breakpoint) -> String {
    let phase = b.hook.phase.map(HookPhase::as_str).unwrap_or("its");
    format!(
        "{}: deployment {} waits at {phase} hook {} (breakpoint); to go on: {}",
        b.service,
        b.deployment,
        b.hook.index + 1,
        b.clear
    )
}

/// The line for a deployment that ended: `web: COMPLETE`, `api: FAILED: why`.
pub fn final_line(d: &Deployment) -> String {
    if d.status_reason.is_empty() || d.status == Status::Complete {
        format!("{}: {}", d.service, d.status)
    } else {
        format!("{}: {}: {}", d.service, d.status, d.status_reason)
    }
}

/// Waits until every deployment is terminal (or, without `wait_hooks`,
/// waits at a breakpoint) or the timeout passed; returns the newest copy of
/// each, in the order given.
pub async fn wait_all(
    client: &Client,
    start: Vec<Deployment>,
    opts: WaitOptions,
) -> CliResult<Vec<Deployment>> {
    let deadline = Instant::now() + opts.timeout;
    let mut latest = start;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, CliResult<Deployment>)>();
    for (i, d) in latest.iter().enumerate() {
        if settled(d, opts.wait_hooks) {
            if !opts.quiet {
                output::line(final_line(d))?;
            }
            continue;
        }
        let tx = tx.clone();
        let client = client.clone();
        let record = d.clone();
        let poll = opts.poll(d);
        let wait_hooks = opts.wait_hooks;
        tokio::spawn(async move {
            poll_one(&client, record, deadline, poll, wait_hooks, |r| {
                tx.send((i, r)).is_ok()
            })
            .await;
        });
    }
    drop(tx);

    while let Some((i, r)) = rx.recv().await {
        let d = r?;
        // A new hook within WAITING_HOOK is a change too.
        let changed = latest[i].status != d.status || latest[i].hook != d.hook;
        // A breakpoint is shown even when not live: someone has to clear it.
        let shown = opts.live || d.status.is_terminal() || at_breakpoint(&d).is_some();
        if !opts.quiet && changed && shown {
            output::line(
                if d.status.is_terminal() || d.status == Status::WaitingHook {
                    final_line(&d)
                } else {
                    format!("{}: {}", d.service, d.status)
                },
            )?;
        }
        latest[i] = d;
    }

    if !opts.quiet {
        for d in latest.iter().filter(|d| !settled(d, opts.wait_hooks)) {
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

/// Long-polls one deployment until it is [`settled`], the deadline passed,
/// an error happened, or `send` says nobody listens any more.
async fn poll_one(
    client: &Client,
    record: Deployment,
    deadline: Instant,
    poll: Duration,
    wait_hooks: bool,
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
                let done = settled(&d, wait_hooks);
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

/// Exit status after waiting: an error naming what failed or is still
/// going (exit 1), else one naming the breakpoints that hold deployments
/// and the commands that clear them (exit 3; never with `wait_hooks`, where
/// a breakpoint still there at the timeout is still going).
pub fn outcome(deployments: &[Deployment], opts: &WaitOptions) -> CliResult {
    let timeout = opts.timeout;
    let failed: Vec<&str> = deployments
        .iter()
        .filter(|d| d.status.is_terminal() && d.status != Status::Complete)
        .map(|d| d.service.as_str())
        .collect();
    let pending: Vec<&str> = deployments
        .iter()
        .filter(|d| !settled(d, opts.wait_hooks))
        .map(|d| d.service.as_str())
        .collect();
    let held = breakpoints(deployments);
    let held_lines: Vec<String> = held.iter().map(breakpoint_line).collect();
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
        let Some(b) = held.first() else {
            return Ok(());
        };
        let names: Vec<String> = held
            .iter()
            .map(|b| match b.hook.phase {
                Some(p) => format!("{} ({})", b.service, p.as_str()),
                None => b.service.clone(),
            })
            .collect();
        return Err(
            CliError::breakpoint(format!("waiting at a breakpoint: {}", names.join(", ")))
                .with_details(held_lines)
                .with_hint(format!(
                    "berthd holds the deployment there until the clear; then follow it with \
             `berthctl history {}` or `berthctl events -f` (`--wait-hooks` waits through \
             breakpoints instead of exiting 3)",
                    b.service
                )),
        );
    }
    let first = failed.first().or(pending.first()).copied().unwrap_or("");
    let mut err = CliError::failed(problems.join("; ")).with_details(held_lines);
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

    fn opts(wait_hooks: bool) -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_secs(300),
            live: false,
            quiet: true,
            wait_hooks,
        }
    }

    /// WAITING_HOOK at pre_update hook 2: a breakpoint, or an exec that runs.
    fn waiting(service: &str, breakpoint: bool) -> Deployment {
        let mut d = dep(service, Status::WaitingHook, "waiting");
        d.hook = Some(HookWait {
            phase: Some(HookPhase::PreUpdate),
            index: 1,
            hook: if breakpoint {
                "breakpoint".into()
            } else {
                "exec /demo drain".into()
            },
            since_ms: 1_000,
            breakpoint,
            ..Default::default()
        });
        d
    }

    fn exit(r: CliResult) -> (u8, String) {
        match r {
            Ok(()) => (0, String::new()),
            Err(e) => (e.exit_code(), e.render()),
        }
    }

    #[test]
    fn outcomes() {
        let t = opts(false);
        assert!(outcome(&[dep("web", Status::Complete, "")], &t).is_ok());
        assert!(outcome(&[], &t).is_ok());
        let e = outcome(
            &[
                dep("web", Status::Complete, ""),
                dep("api", Status::Failed, "x"),
                dep("db", Status::InProgress, ""),
            ],
            &t,
        )
        .err();
        let e = e.as_ref().map(|e| (e.exit_code(), e.message.as_str()));
        assert_eq!(
            e,
            Some((1, "did not complete: api; still in progress after 5m: db"))
        );
        assert!(outcome(&[dep("api", Status::RolledBack, "")], &t).is_err());
    }

    #[test]
    fn only_a_breakpoint_settles_a_waiting_hook() {
        assert!(settled(&waiting("web", true), false));
        assert!(!settled(&waiting("web", true), true), "--wait-hooks");
        assert!(!settled(&waiting("web", false), false), "an exec runs");
        assert!(!settled(&dep("web", Status::InProgress, ""), false));
        assert!(settled(&dep("web", Status::Failed, ""), true));
        // A breakpoint hook on a record no longer WAITING_HOOK holds nothing.
        let mut d = waiting("web", true);
        d.status = Status::InProgress;
        assert!(at_breakpoint(&d).is_none());
        assert!(!settled(&d, false));
        // Cleared, not yet moved on: berthd goes on by itself.
        let mut d = waiting("web", true);
        if let Some(h) = d.hook.as_mut() {
            h.cleared = true;
        }
        assert!(at_breakpoint(&d).is_none());
        assert!(!settled(&d, false));
        // The other phases' breakpoints hold as well.
        let mut d = waiting("web", true);
        if let Some(h) = d.hook.as_mut() {
            h.phase = Some(HookPhase::PreDelete);
        }
        assert_eq!(
            breakpoints(&[d]).first().map(|b| b.clear.as_str()),
            Some("berthctl hook clear web pre_delete")
        );
    }

    #[test]
    fn a_breakpoint_exits_3_naming_the_clear_command() {
        let (code, text) = exit(outcome(
            &[dep("api", Status::Complete, ""), waiting("web", true)],
            &opts(false),
        ));
        assert_eq!(code, 3, "{text}");
        assert_eq!(
            text,
            "error: waiting at a breakpoint: web (pre_update)\n  \
             web: deployment web-1 waits at pre_update hook 2 (breakpoint); \
             to go on: berthctl hook clear web pre_update\n\
             hint: berthd holds the deployment there until the clear; then follow it with \
             `berthctl history web` or `berthctl events -f` (`--wait-hooks` waits through \
             breakpoints instead of exiting 3)\n"
        );
    }

    #[test]
    fn a_failure_or_a_timeout_outranks_a_breakpoint() {
        let (code, text) = exit(outcome(
            &[dep("api", Status::Failed, "x"), waiting("web", true)],
            &opts(false),
        ));
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("did not complete: api"), "{text}");
        assert!(
            text.contains("to go on: berthctl hook clear web pre_update"),
            "{text}"
        );
        let (code, text) = exit(outcome(
            &[waiting("db", false), waiting("web", true)],
            &opts(false),
        ));
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("still in progress after 5m: db"), "{text}");
    }

    #[test]
    fn with_wait_hooks_a_breakpoint_at_the_timeout_is_still_going() {
        let (code, text) = exit(outcome(&[waiting("web", true)], &opts(true)));
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("still in progress after 5m: web"), "{text}");
        assert!(
            text.contains("berthctl hook clear web pre_update"),
            "{text}"
        );
    }

    #[test]
    fn breakpoints_serialize_like_hook_list_with_the_command() {
        assert!(breakpoints(&[waiting("db", false)]).is_empty());
        let v = serde_json::to_value(breakpoints(&[waiting("web", true)]));
        let v = v.unwrap_or_default();
        assert_eq!(v[0]["service"], "web");
        assert_eq!(v[0]["deployment"], "web-1");
        assert_eq!(v[0]["phase"], "pre_update");
        assert_eq!(v[0]["index"], 1);
        assert_eq!(v[0]["breakpoint"], true);
        assert_eq!(v[0]["clear"], "berthctl hook clear web pre_update");
    }

    #[test]
    fn hooks_shorten_the_poll_unless_waiting_through_them() {
        let mut d = dep("web", Status::Pending, "");
        assert_eq!(opts(false).poll(&d), Duration::from_secs(30));
        d.spec.hooks.pre_update.push(berth_core::spec::Hook {
            kind: berth_core::spec::HookKind::Breakpoint {},
            place: berth_core::spec::HookPlace::Container,
            timeout: None,
            on_timeout: berth_core::spec::OnTimeout::Abort,
        });
        assert_eq!(opts(false).poll(&d), HOOK_POLL);
        assert_eq!(opts(true).poll(&d), Duration::from_secs(30));
    }
}
