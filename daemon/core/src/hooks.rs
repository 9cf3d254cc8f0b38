//! Hooks (`hooks:` in a service spec): the pure decisions. When a phase
//! applies to a deployment, which hook runs next, and what a finished or
//! timed out hook means for the deployment. The loop (`event_loop/hooks.rs`
//! in berth-agent) runs them; nothing here waits or runs anything.
//!
//! A deployment's progress through a phase is on its record (the `hook`
//! field while it is WAITING_HOOK, and `pre_update_passed`), never only in
//! memory: a berthd restarted meanwhile resumes at the hook the record
//! names (a cleared breakpoint is not waited at again, one still waiting
//! still waits, a hook that was running runs again).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::reconfig::ReactionPlan;
use crate::record::{DeployAction, Deployment, Status};
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
    /// The phase's breakpoints were cleared: those left are passed over
    /// (also by a berthd restarted before the next hook started).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cleared: bool,
}

impl HookWait {
    /// Waiting at (or running) hook `index` of `phase`, since `since_ms`.
    pub fn at(phase: HookPhase, index: usize, hook: &Hook, since_ms: u64, cleared: bool) -> Self {
        HookWait {
            phase: Some(phase),
            index,
            hook: hook.describe(),
            since_ms,
            breakpoint: matches!(hook.kind, HookKind::Breakpoint {}),
            cleared,
        }
    }
}

/// The first hook a deployment entering `phase` waits at: `None` when the
/// phase has no hook.
pub fn first_wait(record: &Deployment, phase: HookPhase, since_ms: u64) -> Option<HookWait> {
    let (index, hook) = next_hook(record.spec.hooks.phase(phase), 0, false)?;
    Some(HookWait::at(phase, index, hook, since_ms, false))
}

/// The hook `record` waits at in `phase`, when it is WAITING_HOOK there.
pub fn waiting_in(record: &Deployment, phase: HookPhase) -> Option<&HookWait> {
    record
        .hook
        .as_ref()
        .filter(|h| record.status == Status::WaitingHook && h.phase == Some(phase))
}

/// The phase `record` is WAITING_HOOK in.
pub fn waiting_phase(record: &Deployment) -> Option<HookPhase> {
    HookPhase::ALL
        .into_iter()
        .find(|p| waiting_in(record, *p).is_some())
}

/// Whether `record`'s deploy is an update that hooks run around, at its
/// `pre_update` point: `pre_update` runs before it (when it has any) and
/// `post_update` after it (once COMPLETE). It is such an update when it
/// `replaces_existing` (stops, sets aside or replaces a container the
/// service has): a spec change, a manual rollback, a recreate by config
/// change, or a restart by one (`config_change.plan` is restart: the
/// caller passes whether the service has a container). Never a first create
/// (nothing to replace), a policy-only change or a no-op (both replace
/// nothing), an automatic rollback (its record is made applied: the
/// container set aside is swapped back), a deployment that already reached
/// the engine or ended, or one past that point already.
pub fn update_hooks_apply(record: &Deployment, replaces_existing: bool) -> bool {
    let hooks = &record.spec.hooks;
    let has_hooks = !hooks.pre_update.is_empty() || !hooks.post_update.is_empty();
    record.spec.kind == Kind::Service
        && has_hooks
        && replaces_existing
        && !record.applied
        && !record.pre_update_passed
        && !record.status.is_terminal()
        && matches!(
            record.action,
            DeployAction::Update | DeployAction::Rollback | DeployAction::Reconfigure
        )
}

/// Whether `pre_update` hooks run before `record`'s deploy (see
/// [`update_hooks_apply`]).
pub fn pre_update_applies(record: &Deployment, replaces_existing: bool) -> bool {
    !record.spec.hooks.pre_update.is_empty() && update_hooks_apply(record, replaces_existing)
}

/// Whether `record`, judged COMPLETE, runs `post_update` hooks before it
/// is: an update past its `pre_update` point ([`update_hooks_apply`]) that
/// reached the engine.
pub fn post_update_applies(record: &Deployment) -> bool {
    record.spec.kind == Kind::Service
        && !record.spec.hooks.post_update.is_empty()
        && record.pre_update_passed
        && record.applied
        && !record.status.is_terminal()
}

/// Whether a delete of a service whose current deployment is `record`
/// runs `pre_delete` hooks first: a service with such hooks and a
/// container (`has_container`; with none, nothing runs to be drained).
pub fn pre_delete_applies(record: &Deployment, has_container: bool) -> bool {
    record.spec.kind == Kind::Service && !record.spec.hooks.pre_delete.is_empty() && has_container
}

/// A RECONFIGURE whose reaction is to restart the container.
pub fn restarts_by_config(record: &Deployment) -> bool {
    record.action == DeployAction::Reconfigure
        && record
            .config_change
            .as_ref()
            .is_some_and(|c| c.plan == Some(ReactionPlan::Restart))
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
    /// An http hook's endpoint answered with `status`, which decides
    /// (`crate::hook_http::classify`: 2xx proceeds, anything else but
    /// 409/423 aborts); `body` is an excerpt of its answer, the URL's
    /// secrets scrubbed.
    Answered { status: u16, body: String },
    /// It could not run (the engine refused the exec, no container, the
    /// endpoint unreachable).
    Error(String),
    /// It did not end within its timeout.
    TimedOut(Duration),
    /// A breakpoint was cleared.
    Cleared,
    /// Stopped by berth before it ended, for this reason: the deployment
    /// it ran for is over (superseded by a newer one, or a delete). Its
    /// end changes nothing; should it be judged, it aborts.
    Cancelled(String),
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
        HookEnd::Answered { status, body } => match crate::hook_http::classify(*status) {
            crate::hook_http::Answer::Proceed => HookVerdict::Proceed,
            // A "not yet" is asked again until the timeout, never an end:
            // one reported as such did not proceed.
            crate::hook_http::Answer::NotYet | crate::hook_http::Answer::Abort => {
                let body = tail(body, 2000);
                HookVerdict::Abort(if body.is_empty() {
                    format!("{what} answered HTTP {status}")
                } else {
                    format!("{what} answered HTTP {status}: {body}")
                })
            }
        },
        HookEnd::Error(e) => HookVerdict::Abort(format!("{what} could not run: {e}")),
        HookEnd::Cancelled(why) => HookVerdict::Abort(format!("{what} was stopped: {why}")),
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
/// boundary: what a failed hook's reason quotes of its output.
pub fn tail(text: &str, max: usize) -> &str {
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
    fn the_pre_update_point_is_passed_once_and_post_update_follows_it() {
        use DeployAction::*;
        let mut post_only = record(Update, false, Status::Pending, Kind::Service);
        post_only.spec.hooks = Hooks {
            post_update: vec![exec("/ready")],
            ..Default::default()
        };
        assert!(update_hooks_apply(&post_only, true), "post_update alone");
        assert!(!pre_update_applies(&post_only, true), "no pre_update hook");
        assert!(!update_hooks_apply(&post_only, false), "replaces nothing");
        let mut none = post_only.clone();
        none.spec.hooks = Hooks::default();
        assert!(!update_hooks_apply(&none, true), "no hooks at all");
        // Past the point: never again, and post_update once it ran.
        let mut passed = post_only.clone();
        passed.pre_update_passed = true;
        assert!(!update_hooks_apply(&passed, true));
        assert!(!post_update_applies(&passed), "not on the engine yet");
        passed.applied = true;
        passed.status = Status::InProgress;
        assert!(post_update_applies(&passed));
        passed.status = Status::Complete;
        assert!(!post_update_applies(&passed), "ended");
        // Applied at its commit (policy-only, automatic rollback): never
        // past the point, so no post_update.
        let mut policy = post_only.clone();
        policy.applied = true;
        policy.status = Status::InProgress;
        assert!(!update_hooks_apply(&policy, true));
        assert!(!post_update_applies(&policy));
        let mut both = record(Update, false, Status::Pending, Kind::Service);
        both.pre_update_passed = true;
        assert!(!pre_update_applies(&both, true), "its pre_update proceeded");
    }

    #[test]
    fn pre_delete_needs_hooks_and_a_container() {
        let mut r = record(DeployAction::Update, true, Status::Complete, Kind::Service);
        assert!(!pre_delete_applies(&r, true), "no pre_delete hook");
        r.spec.hooks.pre_delete = vec![bp()];
        assert!(pre_delete_applies(&r, true));
        assert!(!pre_delete_applies(&r, false), "nothing runs to drain");
        r.spec.kind = Kind::Task;
        assert!(!pre_delete_applies(&r, true));
    }

    #[test]
    fn a_restart_by_config_is_known_by_its_plan() {
        use crate::reconfig::ConfigChange;
        let mut r = record(
            DeployAction::Reconfigure,
            false,
            Status::InProgress,
            Kind::Service,
        );
        assert!(!restarts_by_config(&r));
        for (plan, want) in [
            (ReactionPlan::Restart, true),
            (ReactionPlan::Recreate, false),
            (ReactionPlan::None, false),
        ] {
            r.config_change = Some(ConfigChange {
                plan: Some(plan),
                ..Default::default()
            });
            assert_eq!(restarts_by_config(&r), want);
        }
        r.action = DeployAction::Update;
        assert!(!restarts_by_config(&r));
    }

    #[test]
    fn waiting_is_by_status_and_phase() {
        let mut r = record(
            DeployAction::Update,
            false,
            Status::InProgress,
            Kind::Service,
        );
        r.spec.hooks.pre_update = vec![exec("a"), bp()];
        let w = first_wait(&r, HookPhase::PreUpdate, 7).expect("a first hook");
        assert_eq!(
            (
                w.index,
                w.hook.as_str(),
                w.since_ms,
                w.breakpoint,
                w.cleared
            ),
            (0, "exec a", 7, false, false)
        );
        assert_eq!(first_wait(&r, HookPhase::PostUpdate, 7), None);
        r.hook = Some(w);
        assert_eq!(waiting_phase(&r), None, "not WAITING_HOOK");
        r.status = Status::WaitingHook;
        assert_eq!(waiting_phase(&r), Some(HookPhase::PreUpdate));
        assert!(waiting_in(&r, HookPhase::PostUpdate).is_none());
    }

    #[test]
    fn a_hook_wait_from_before_progress_was_kept_still_loads() {
        let old = r#"{"phase":"pre_update","index":1,"hook":"breakpoint","since_ms":5,"breakpoint":true}"#;
        let w: HookWait = serde_json::from_str(old).expect("loads");
        assert_eq!((w.index, w.breakpoint, w.cleared), (1, true, false));
        let back = serde_json::to_string(&w).expect("json");
        assert_eq!(back, old, "nothing new written while not cleared");
        let d: Deployment = serde_json::from_str(r#"{"status":"WAITING_HOOK"}"#).expect("loads");
        assert!(!d.pre_update_passed);
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
    fn http_verdicts_name_the_redacted_url_and_the_status() {
        let p = HookPhase::PreUpdate;
        let h = Hook {
            kind: HookKind::Http("https://bob:pw@ci/x?token=s3cret".into()),
            ..exec("unused")
        };
        let answered = |status: u16, body: &str| HookEnd::Answered {
            status,
            body: body.into(),
        };
        assert_eq!(verdict(p, &h, &answered(200, "ok")), HookVerdict::Proceed);
        assert_eq!(verdict(p, &h, &answered(204, "")), HookVerdict::Proceed);
        assert_eq!(
            verdict(p, &h, &answered(500, "cannot drain\n")),
            HookVerdict::Abort(
                "pre_update hook `http https://<redacted>@ci/x?<redacted>` answered HTTP 500: \
                 cannot drain"
                    .into()
            )
        );
        assert_eq!(
            verdict(HookPhase::PreDelete, &h, &answered(403, "")),
            HookVerdict::Abort(
                "pre_delete hook `http https://<redacted>@ci/x?<redacted>` answered HTTP 403"
                    .into()
            )
        );
        // A "not yet" as an end did not proceed.
        let HookVerdict::Abort(why) = verdict(p, &h, &answered(423, "")) else {
            panic!("423 as an end aborts");
        };
        assert!(why.ends_with("answered HTTP 423"), "{why}");
        let HookVerdict::Abort(why) = verdict(
            p,
            &h,
            &HookEnd::Cancelled("superseded by generation 3".into()),
        ) else {
            panic!("a stopped hook does not proceed");
        };
        assert!(
            why.ends_with("was stopped: superseded by generation 3"),
            "{why}"
        );
        assert!(!why.contains("s3cret") && !why.contains("pw@"), "{why}");
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
