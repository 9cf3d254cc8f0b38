//! Hooks (`hooks:` in a service spec): the pure decisions. When a phase
//! applies to a deployment, which hook runs next, and what a finished or
//! timed out hook means for the deployment. The loop (`event_loop/hooks.rs`
//! in berth-agent) runs them; nothing here waits or runs anything.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{DeployAction, Deployment};
use crate::spec::{Hook, HookKind, HookPhase, Kind, OnTimeout};

/// What a record shows while one of its hooks runs or waits
/// (status WAITING_HOOK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HookWait {
    pub phase: Option<HookPhase>,
    /// The hook's place in its phase's list, from 0.
    pub index: usize,
    /// The hook in one line (`breakpoint`, `exec /demo drain`).
    pub hook: String,
    /// Unix milliseconds: when it started running or waiting.
    pub since_ms: u64,
    /// A breakpoint: only `berthctl hook clear` releases it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub breakpoint: bool,
}

/// Whether `pre_update` runs before `record`'s deploy, which
/// `replaces_existing` (stops or sets aside a container the service has).
/// It runs for a spec change, a manual rollback and a recreate by config
/// change; never for a first create (nothing to replace), a policy-only
/// change or a no-op (both replace nothing), an automatic rollback (its
/// record is made applied: the container set aside is swapped back), or a
/// deployment that already reached the engine or ended.
pub fn pre_update_applies(record: &Deployment, replaces_existing: bool) -> bool {
    record.spec.kind == Kind::Service
        && !record.spec.hooks.pre_update.is_empty()
        && replaces_existing
        && !record.applied
        && !record.status.is_terminal()
        && matches!(
            record.action,
            DeployAction::Update | DeployAction::Rollback | DeployAction::Reconfigure
        )
}

/// The next hook of a phase to run, from `from` on: `(index, hook)`.
/// Once the phase's breakpoints were cleared, breakpoints are passed over
/// (a clear releases every breakpoint of the phase). `None`: the phase is
/// done.
pub fn next_hook(hooks: &[Hook], from: usize, cleared: bool) -> Option<(usize, &Hook)> {
    hooks
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, h)| !(cleared && matches!(h.kind, HookKind::Breakpoint {})))
}

/// What a hook's end means for its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookVerdict {
    /// Go on with the next hook, or the deployment.
    Proceed,
    /// The deployment fails with this reason; the old container is untouched.
    Abort(String),
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookEnd {
    /// An exec hook's command exited with this code; `stderr` is its tail.
    Exited { code: i64, stderr: String },
    /// It could not run (the engine refused the exec, no container).
    Error(String),
    /// It did not end within its timeout.
    TimedOut(Duration),
    /// A breakpoint was cleared.
    Cleared,
}

/// The verdict for `hook` (of `phase`) ending as `end`.
pub fn verdict(phase: HookPhase, hook: &Hook, end: &HookEnd) -> HookVerdict {
    let what = format!("{phase} hook `{}`", hook.describe());
    match end {
        HookEnd::Cleared | HookEnd::Exited { code: 0, .. } => HookVerdict::Proceed,
        HookEnd::Exited { code, stderr } => {
            let tail = tail(stderr, 2000);
            HookVerdict::Abort(if tail.is_empty() {
                format!("{what} exited with code {code}")
            } else {
                format!("{what} exited with code {code}: {tail}")
            })
        }
        HookEnd::Error(e) => HookVerdict::Abort(format!("{what} could not run: {e}")),
        HookEnd::TimedOut(after) => match hook.on_timeout {
            OnTimeout::Proceed => HookVerdict::Proceed,
            OnTimeout::Abort => HookVerdict::Abort(format!(
                "{what} timed out after {} (on_timeout: abort)",
                crate::units::format_duration(*after)
            )),
        },
    }
}

/// The last `max` bytes of `text` (trailing whitespace dropped), on a char
/// boundary.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim_end();
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    &text[cut..]
}

/// The message of a deployment waiting on a hook, for its status reason.
pub fn waiting_reason(service: &str, wait: &HookWait) -> String {
    let phase = wait.phase.map(HookPhase::as_str).unwrap_or("?");
    if wait.breakpoint {
        format!(
            "waiting at {phase} hook {} (breakpoint): clear it with `berthctl hook clear {service} {phase}`",
            wait.index + 1
        )
    } else {
        format!("running {phase} hook {} ({})", wait.index + 1, wait.hook)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Status;
    use crate::spec::{HookPlace, Hooks, ServiceSpec};

    fn bp() -> Hook {
        Hook {
            kind: HookKind::Breakpoint {},
            place: HookPlace::Container,
            timeout: None,
            on_timeout: OnTimeout::Abort,
        }
    }
    fn exec(cmd: &str) -> Hook {
        Hook {
            kind: HookKind::Exec(vec![cmd.into()]),
            place: HookPlace::Container,
            timeout: None,
            on_timeout: OnTimeout::Abort,
        }
    }

    fn record(action: DeployAction, applied: bool, status: Status, kind: Kind) -> Deployment {
        Deployment {
            action,
            applied,
            status,
            spec: ServiceSpec {
                kind,
                hooks: Hooks {
                    pre_update: vec![bp()],
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn pre_update_applies_table() {
        use DeployAction::*;
        use Status::*;
        // (action, applied, status, kind, replaces an existing container, applies)
        let table = [
            (Update, false, Pending, Kind::Service, true, true),
            (Update, false, InProgress, Kind::Service, true, true),
            (Update, false, WaitingHook, Kind::Service, true, true),
            // a manual rollback (an automatic one is made applied)
            (Rollback, false, Pending, Kind::Service, true, true),
            (Rollback, true, InProgress, Kind::Service, true, false),
            (Reconfigure, false, InProgress, Kind::Service, true, true),
            // first create: nothing to replace
            (Create, false, Pending, Kind::Service, false, false),
            (Create, false, Pending, Kind::Service, true, false),
            // policy-only change: applied at once, nothing replaced
            (Update, true, InProgress, Kind::Service, false, false),
            // a no-op replaces nothing
            (Update, false, Pending, Kind::Service, false, false),
            // tasks have no hooks
            (Update, false, Pending, Kind::Task, true, false),
            // ended
            (Update, false, Failed, Kind::Service, true, false),
            (Delete, false, Pending, Kind::Service, true, false),
            (Stop, false, Pending, Kind::Service, true, false),
            (Start, false, Pending, Kind::Service, true, false),
        ];
        for (i, (action, applied, status, kind, replaces, want)) in table.into_iter().enumerate() {
            let r = record(action, applied, status, kind);
            assert_eq!(pre_update_applies(&r, replaces), want, "row {i}");
        }
        let mut none = record(Update, false, Pending, Kind::Service);
        none.spec.hooks.pre_update.clear();
        assert!(!pre_update_applies(&none, true), "no hooks");
    }

    #[test]
    fn next_hook_skips_cleared_breakpoints_only() {
        let hooks = [bp(), exec("a"), bp(), exec("b")];
        assert_eq!(next_hook(&hooks, 0, false).map(|h| h.0), Some(0));
        assert_eq!(next_hook(&hooks, 1, false).map(|h| h.0), Some(1));
        assert_eq!(next_hook(&hooks, 2, false).map(|h| h.0), Some(2));
        assert_eq!(next_hook(&hooks, 0, true).map(|h| h.0), Some(1));
        assert_eq!(next_hook(&hooks, 2, true).map(|h| h.0), Some(3));
        assert_eq!(next_hook(&hooks, 4, false), None);
        assert_eq!(next_hook(&[bp(), bp()], 0, true), None);
    }

    #[test]
    fn verdicts() {
        let p = HookPhase::PreUpdate;
        let e = exec("/drain");
        assert_eq!(
            verdict(
                p,
                &e,
                &HookEnd::Exited {
                    code: 0,
                    stderr: "x".into()
                }
            ),
            HookVerdict::Proceed
        );
        assert_eq!(
            verdict(
                p,
                &e,
                &HookEnd::Exited {
                    code: 3,
                    stderr: "busy\n".into()
                }
            ),
            HookVerdict::Abort("pre_update hook `exec /drain` exited with code 3: busy".into())
        );
        assert_eq!(verdict(p, &bp(), &HookEnd::Cleared), HookVerdict::Proceed);
        let HookVerdict::Abort(why) = verdict(p, &e, &HookEnd::Error("no such container".into()))
        else {
            panic!("an exec that could not run aborts");
        };
        assert!(why.contains("could not run: no such container"), "{why}");
        let t = HookEnd::TimedOut(Duration::from_secs(300));
        let HookVerdict::Abort(why) = verdict(p, &e, &t) else {
            panic!("on_timeout defaults to abort");
        };
        assert!(why.contains("timed out after 5m"), "{why}");
        let proceed = Hook {
            on_timeout: OnTimeout::Proceed,
            ..e.clone()
        };
        assert_eq!(verdict(p, &proceed, &t), HookVerdict::Proceed);
    }

    #[test]
    fn long_output_keeps_its_tail() {
        let stderr = format!("{}END", "é".repeat(3000));
        let HookVerdict::Abort(why) = verdict(
            HookPhase::PreUpdate,
            &exec("x"),
            &HookEnd::Exited { code: 1, stderr },
        ) else {
            panic!("non-zero aborts");
        };
        assert!(why.ends_with("END") && why.len() < 2100, "{}", why.len());
    }

    #[test]
    fn default_timeouts() {
        assert_eq!(bp().effective_timeout(), None);
        assert_eq!(
            exec("x").effective_timeout(),
            Some(Duration::from_secs(300))
        );
        let short = Hook {
            timeout: Some(Duration::from_secs(1)),
            ..bp()
        };
        assert_eq!(short.effective_timeout(), Some(Duration::from_secs(1)));
    }
}
