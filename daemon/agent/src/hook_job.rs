//! The hook job: runs one hook that is not a breakpoint under its timeout,
//! off the loop, and reports how it ended. Decides nothing: what the end
//! means is `berth_core::hooks::verdict`, on the loop.
//!
//! - `exec` with `where: container`: [`Runtime::exec`] in the container.
//!   Past the timeout the wait is given up (the engine has no way to stop
//!   an exec: the process may run on in the container).
//! - `exec` with `where: host`: a transient systemd unit
//!   ([`HostUnits::run_transient`]) named
//!   `hook_unit_name(service, "<phase>-<index>", deployment id)`, its
//!   stdout and stderr in a file under `<state_dir>/hooks`, killed by
//!   systemd at the timeout (result `timeout`). Before starting it, the job
//!   asks systemd for that unit: finished (berthd restarted after starting
//!   it) → that result; still running → waited for; unknown → started. So
//!   a berthd restart never runs a host hook twice for the same deployment
//!   and index while systemd still has its unit. Once the result is read
//!   the unit is cleaned up (systemd forgets it, its output file goes).
//! - `http`: the deployment (secrets redacted) POSTed through
//!   [`Env::http`], "not yet" answers and unreachable endpoints asked again
//!   with backoff until the timeout (the rules: `berth_core::hook_http`).
//!   Nothing reported holds the URL's query or user info.
//!
//! The loop keeps a [`JobHandle`] to each job it starts. When the
//! deployment the hook runs for is over (a newer one superseded it, or a
//! delete), the loop cancels the job and stops waiting for it; the job
//! then stops at once: an http hook asks no more (a request under way is
//! dropped), a host hook's transient unit is stopped and forgotten
//! ([`HostUnits::cleanup_transient`]), and a container exec is abandoned
//! (the engine cannot stop an exec: it may run on in the container). Its
//! outcome, [`HookEnd::Cancelled`], changes nothing. A handle dropped
//! without a cancel (berthd stopping) cancels nothing: a host hook's unit
//! runs on for the next berthd to re-attach to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_core::heat::redact_url;
use berth_core::hook_http::{
    Answer, HookHttp, HookHttpError, HookRequest, backoff, body_excerpt, classify, scrub,
};
use berth_core::hooks::{HookEnd, tail};
use berth_core::host::{
    ExitStatus, HostError, HostUnits, TransientResult, TransientSpec, hook_unit_name,
};
use berth_core::record::{Outputs, cap_output};
use berth_core::runtime::{ExecOptions, Runtime};
use berth_core::spec::{Hook, HookKind, HookPhase, HookPlace};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Env;

/// The loop's hold on a running hook job: which job it is, and how to
/// stop it.
#[derive(Debug)]
pub(crate) struct JobHandle {
    /// Unique in this process: the job's [`Outcome`] carries it.
    pub id: u64,
    cancel: watch::Sender<Option<String>>,
}

/// The job's side of [`JobHandle`]: a cancel signal.
#[derive(Debug, Clone)]
pub(crate) struct Cancel(watch::Receiver<Option<String>>);

impl JobHandle {
    /// A handle for a new job, and the job's cancel signal.
    pub(crate) fn new() -> (JobHandle, Cancel) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (tx, rx) = watch::channel(None);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        (JobHandle { id, cancel: tx }, Cancel(rx))
    }

    /// Tells the job to stop, saying why (see the module docs).
    pub(crate) fn cancel(&self, why: &str) {
        // A job already ended has dropped its side: nothing to stop.
        let _ = self.cancel.send(Some(why.to_string()));
    }
}

impl Cancel {
    /// Once cancelled, why. Never when the handle went away without a
    /// cancel (berthd stopping: what runs is left to the next berthd).
    async fn cancelled(&mut self) -> String {
        let why = self
            .0
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|why| why.clone());
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }
}

/// One hook to run.
pub(crate) struct Request {
    pub service: String,
    /// The deployment it runs for (a newer one makes the answer stale).
    pub generation: u64,
    /// That deployment's id (host hooks name their unit after it).
    pub deployment_id: String,
    pub phase: HookPhase,
    pub index: usize,
    pub hook: Hook,
    /// The container an exec with `where: container` runs in (the old one
    /// for `pre_update` and `pre_delete`, the new one for `post_update`);
    /// `None` when there is none.
    pub container: Option<String>,
    /// The deployment as an http hook POSTs it (secrets redacted).
    pub body: serde_json::Value,
    /// Where a host hook's output file goes (`AgentConfig::hooks_dir`, an
    /// absolute path berthd made 0700).
    pub hooks_dir: PathBuf,
    /// The loop's [`JobHandle::id`] for this job.
    pub job: u64,
    /// Set when the deployment is over: the job stops.
    pub cancel: Cancel,
}

/// How it ended, and what it printed.
pub(crate) struct Outcome {
    /// The job's [`JobHandle::id`].
    pub job: u64,
    pub service: String,
    pub generation: u64,
    pub phase: HookPhase,
    pub index: usize,
    pub end: HookEnd,
    pub outputs: Outputs,
}

/// The first wait between two looks at a host hook's unit...
const POLL_FIRST: Duration = Duration::from_millis(100);
/// ...doubling up to this.
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long systemd may be unreachable before a host hook has started:
/// longer, and the hook fails with the bus's error (a blip is waited out,
/// a node without systemd is told soon).
const START_PATIENCE: Duration = Duration::from_secs(30);
/// Past a host hook's timeout, how long systemd gets to kill it and
/// report (its stop grace is 10 s) before the job gives up on it.
const REAP_MARGIN: Duration = Duration::from_secs(60);
/// The most of a failed host hook's output its end (and so the
/// deployment's reason) quotes; the whole output is in the record.
const TAIL: usize = 2000;

/// The output file of host hook unit `unit` for hook `index` of `phase`:
/// readable, and unique per unit (the unit name escapes with `\`, which a
/// path given to systemd had better not hold).
fn output_file(phase: HookPhase, index: usize, unit: &str) -> String {
    let hash = berth_core::hash::sha256_hex(unit.as_bytes());
    format!("{phase}-{index}-{}.out", &hash[..16])
}

impl Request {
    /// Runs the hook; see the module docs.
    pub(crate) async fn run<E: Env>(self, env: &E) -> Outcome {
        let timeout = self.hook.effective_timeout();
        let work = async {
            match (&self.hook.kind, self.hook.place) {
                (HookKind::Exec(argv), HookPlace::Container) => {
                    self.in_container(env.runtime(), argv, timeout).await
                }
                (HookKind::Exec(argv), HookPlace::Host) => {
                    self.on_host(env.host(), argv, timeout).await
                }
                (HookKind::Http(url), _) => self.http(env.http(), url, timeout).await,
                (HookKind::Breakpoint {}, _) => (
                    HookEnd::Error("a breakpoint waits to be cleared, it is not run".into()),
                    Outputs::default(),
                ),
            }
        };
        let mut cancel = self.cancel.clone();
        // The work is dropped as soon as the cancel comes (an http request
        // under way with it), before the host unit is stopped.
        let ended = tokio::select! {
            biased;
            why = cancel.cancelled() => Err(why),
            ended = work => Ok(ended),
        };
        let (end, outputs) = match ended {
            Ok(ended) => ended,
            Err(why) => (self.stop(env, &why).await, Outputs::default()),
        };
        Outcome {
            job: self.job,
            service: self.service,
            generation: self.generation,
            phase: self.phase,
            index: self.index,
            end,
            outputs,
        }
    }

    /// The job was cancelled (`why`) while its hook ran: a host hook's
    /// unit is stopped and forgotten; the rest is only let go.
    async fn stop<E: Env>(&self, env: &E, why: &str) -> HookEnd {
        let hook = self.hook.describe();
        match (&self.hook.kind, self.hook.place) {
            (HookKind::Exec(_), HookPlace::Host) => {
                let (unit, output) = self.host_unit();
                // Idempotent: a unit not started yet, or already gone, is fine.
                match env.host().cleanup_transient(&unit, &output).await {
                    Ok(()) => tracing::info!(
                        service = self.service,
                        unit,
                        why,
                        "host hook stopped: its deployment is over"
                    ),
                    Err(e) => tracing::warn!(
                        service = self.service,
                        unit,
                        why,
                        error = %e,
                        "cannot stop the host hook's unit: systemd stops it at its timeout"
                    ),
                }
            }
            (HookKind::Exec(_), HookPlace::Container) => tracing::warn!(
                service = self.service,
                container = self.container.as_deref().unwrap_or(""),
                hook,
                why,
                "no longer waiting for a container exec hook: its deployment is over; \
                 the engine cannot stop an exec, so it may run on in the container"
            ),
            _ => tracing::info!(
                service = self.service,
                hook,
                why,
                "hook stopped: its deployment is over"
            ),
        }
        HookEnd::Cancelled(why.to_string())
    }

    /// A host hook's transient unit and its output file.
    fn host_unit(&self) -> (String, String) {
        let unit = hook_unit_name(
            &self.service,
            &format!("{}-{}", self.phase, self.index),
            &self.deployment_id,
        );
        let output = self
            .hooks_dir
            .join(output_file(self.phase, self.index, &unit))
            .to_string_lossy()
            .into_owned();
        (unit, output)
    }

    async fn in_container<R: Runtime>(
        &self,
        runtime: &R,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> (HookEnd, Outputs) {
        let mut outputs = Outputs::default();
        let Some(container) = &self.container else {
            return (
                HookEnd::Error("the service has no container to run it in".into()),
                outputs,
            );
        };
        let options = ExecOptions::default();
        let exec = runtime.exec(container, argv, &options);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, exec).await.map_err(|_| t),
            None => Ok(exec.await),
        };
        let end = match result {
            Err(after) => HookEnd::TimedOut(after),
            Ok(Err(e)) => HookEnd::Error(e.to_string()),
            Ok(Ok(out)) => {
                outputs.deploy_status_code = Some(out.exit_code);
                outputs.deploy_stdout = Some(cap_output(out.stdout));
                outputs.deploy_stderr = Some(cap_output(out.stderr.clone()));
                HookEnd::Exited {
                    code: out.exit_code,
                    stderr: out.stderr,
                }
            }
        };
        (end, outputs)
    }

    /// A host hook's transient unit: re-attached to, or started, then
    /// waited for (see the module docs).
    async fn on_host<H: HostUnits>(
        &self,
        host: &H,
        argv: &[String],
        timeout: Option<Duration>,
    ) -> (HookEnd, Outputs) {
        let (unit, output) = self.host_unit();
        let spec = TransientSpec {
            unit_name: unit.clone(),
            argv: argv.to_vec(),
            env: [
                ("BERTH_SERVICE", self.service.clone()),
                ("BERTH_DEPLOYMENT", self.deployment_id.clone()),
                ("BERTH_GENERATION", self.generation.to_string()),
                ("BERTH_HOOK_PHASE", self.phase.to_string()),
                ("BERTH_HOOK_INDEX", self.index.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            working_dir: None,
            output_path: output.clone(),
            timeout,
        };
        let start = Instant::now();
        let patience = timeout.map_or(START_PATIENCE, |t| t.min(START_PATIENCE));
        let give_up = timeout.map(|t| start + t + REAP_MARGIN);
        let error = |e: String| (HookEnd::Error(e), Outputs::default());
        // Whether the unit runs (started here or by an earlier berthd).
        let mut started = false;
        let mut delay = POLL_FIRST;
        loop {
            // systemd's error when it could not be reached this time.
            let unreachable = match host.transient_result(&unit, &output).await {
                Ok(Some(result)) => {
                    if !started {
                        tracing::info!(
                            service = self.service,
                            unit,
                            "host hook already ran: its result is used"
                        );
                    }
                    return self
                        .host_finished(host, &unit, &output, result, timeout)
                        .await;
                }
                Ok(None) => {
                    if !started {
                        tracing::info!(
                            service = self.service,
                            unit,
                            "host hook already runs: waiting for it"
                        );
                    }
                    started = true;
                    None
                }
                Err(HostError::NoSuchUnit { .. }) if !started => {
                    match host.run_transient(spec.clone()).await {
                        Ok(()) => {
                            tracing::info!(service = self.service, unit, "host hook started");
                            started = true;
                            None
                        }
                        // There since the look above: look again.
                        Err(HostError::AlreadyExists { .. }) => {
                            started = true;
                            None
                        }
                        Err(e) if e.is_unreachable() => Some(e),
                        Err(e) => return error(format!("systemd could not start {unit}: {e}")),
                    }
                }
                Err(HostError::NoSuchUnit { .. }) => {
                    return error(format!(
                        "systemd forgot {unit} before berth read its result \
                         (reset by someone, or the host rebooted)"
                    ));
                }
                Err(e) if e.is_unreachable() => Some(e),
                Err(e) => return error(e.to_string()),
            };
            let now = Instant::now();
            if let Some(e) = &unreachable {
                if !started && now >= start + patience {
                    return error(e.to_string());
                }
                if give_up.is_some_and(|g| now >= g) {
                    return error(format!(
                        "lost systemd while {unit} ran, so its result is unknown: {e}"
                    ));
                }
            } else if let Some(g) = give_up
                && now >= g
            {
                // systemd should have killed it at the timeout: stop it now.
                tracing::warn!(
                    service = self.service,
                    unit,
                    "host hook still runs past its timeout; stopping it"
                );
                if let Err(e) = host.cleanup_transient(&unit, &output).await {
                    tracing::warn!(service = self.service, unit, error = %e, "cannot clean the host hook's unit up");
                }
                return (
                    HookEnd::TimedOut(timeout.unwrap_or_default()),
                    Outputs::default(),
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_MAX);
        }
    }

    /// A host hook's unit finished: its end and output, and the unit
    /// cleaned up.
    async fn host_finished<H: HostUnits>(
        &self,
        host: &H,
        unit: &str,
        output_path: &str,
        result: TransientResult,
        timeout: Option<Duration>,
    ) -> (HookEnd, Outputs) {
        if let Err(e) = host.cleanup_transient(unit, output_path).await {
            // Left to systemd: a later look finds the same result.
            tracing::warn!(service = self.service, unit, error = %e, "cannot clean the host hook's unit up");
        }
        let mut output = result.output.clone();
        if result.output_truncated {
            output.insert_str(0, "[berth: the start of the output was dropped]\n");
        }
        let outputs = Outputs {
            deploy_stdout: Some(cap_output(output.clone())),
            deploy_status_code: Some(i64::from(result.exit.status_code())),
            ..Default::default()
        };
        let end = if result.timed_out() {
            HookEnd::TimedOut(timeout.unwrap_or_default())
        } else if result.succeeded() {
            HookEnd::Exited {
                code: 0,
                stderr: String::new(),
            }
        } else {
            let shown = tail(&output, TAIL).to_string();
            match result.exit {
                ExitStatus::Exited { code } => HookEnd::Exited {
                    code: i64::from(code),
                    stderr: with_hint(shown, code, output_path),
                },
                ExitStatus::Killed { signal, .. } => HookEnd::Exited {
                    code: i64::from(result.exit.status_code()),
                    stderr: format!("{shown}\n(killed by signal {signal})"),
                },
                ExitStatus::Unknown => HookEnd::Error(format!(
                    "systemd reports `{}` for {unit} without an exit status{}",
                    result.result,
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!(": {shown}")
                    }
                )),
            }
        };
        (end, outputs)
    }

    /// An http hook: POSTs until an answer decides, or the timeout.
    async fn http<P: HookHttp>(
        &self,
        http: &P,
        url: &str,
        timeout: Option<Duration>,
    ) -> (HookEnd, Outputs) {
        let shown = redact_url(url);
        let timeout = timeout.unwrap_or(berth_core::spec::DEFAULT_HTTP_HOOK_TIMEOUT);
        let deadline = Instant::now() + timeout;
        // Built from the redacted record (`Deployment::redacted`: secret
        // env values and every http hook's URL secrets replaced).
        // serde_json::Value always serializes.
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        let headers = vec![
            ("Berth-Hook-Phase".to_string(), self.phase.to_string()),
            ("Berth-Hook-Index".to_string(), self.index.to_string()),
            (
                "Idempotency-Key".to_string(),
                format!("{}/{}/{}", self.deployment_id, self.phase, self.index),
            ),
        ];
        let mut outputs = Outputs::default();
        // An HTTP answer came at least once (or one was too slow to come).
        let mut answered = false;
        let mut last: Option<String> = None;
        let mut attempts: u32 = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            attempts += 1;
            let req = HookRequest {
                url: url.to_string(),
                headers: headers.clone(),
                body: body.clone(),
                timeout: remaining,
            };
            match http.post(req).await {
                Ok(r) => {
                    answered = true;
                    last = None;
                    let text = scrub(&r.body, url);
                    outputs.deploy_stdout = (!text.is_empty()).then(|| cap_output(text));
                    match classify(r.status) {
                        Answer::Proceed => {
                            tracing::info!(service = self.service, url = %shown, status = r.status, "http hook proceeds");
                            return (
                                HookEnd::Answered {
                                    status: r.status,
                                    body: String::new(),
                                },
                                outputs,
                            );
                        }
                        Answer::NotYet => {
                            tracing::debug!(service = self.service, url = %shown, status = r.status, attempts, "http hook: not yet");
                        }
                        Answer::Abort => {
                            return (
                                HookEnd::Answered {
                                    status: r.status,
                                    body: body_excerpt(&r.body, 500, url),
                                },
                                outputs,
                            );
                        }
                    }
                }
                Err(e) if !e.is_retried() => {
                    return (HookEnd::Error(scrub(&e.to_string(), url)), outputs);
                }
                Err(e) => {
                    answered |= matches!(e, HookHttpError::NoAnswer(_));
                    let text = scrub(&e.to_string(), url);
                    tracing::debug!(service = self.service, url = %shown, attempts, error = text, "http hook: no answer");
                    last = Some(text);
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff(attempts).min(remaining)).await;
        }
        match last {
            Some(e) if !answered => (
                HookEnd::Error(format!(
                    "the endpoint could not be reached in {} ({attempts} attempts; the last: {e})",
                    berth_core::units::format_duration(timeout)
                )),
                outputs,
            ),
            _ => (HookEnd::TimedOut(timeout), outputs),
        }
    }
}

/// `shown` (a failed host hook's output) with what systemd's own exit
/// codes mean when the command printed nothing (it never ran).
fn with_hint(shown: String, code: i32, output_path: &str) -> String {
    if !shown.is_empty() {
        return shown;
    }
    match code {
        203 => "(systemd 203/EXEC: the program could not be executed)".into(),
        209 => format!(
            "(systemd 209/STDOUT: the output file {output_path} could not be opened; \
             does its directory exist?)"
        ),
        200 => "(systemd 200/CHDIR: the working directory is missing)".into(),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_files_are_plain_and_unique_per_unit() {
        let a = hook_unit_name("web-1", "pre_update-0", "web-g2");
        let b = hook_unit_name("web", "1-pre_update-0", "web-g2");
        assert_ne!(a, b);
        let fa = output_file(HookPhase::PreUpdate, 0, &a);
        let fb = output_file(HookPhase::PreUpdate, 0, &b);
        assert_ne!(fa, fb);
        for f in [&fa, &fb] {
            assert!(f.starts_with("pre_update-0-") && f.ends_with(".out"), "{f}");
            assert!(
                f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{f}"
            );
        }
    }

    fn host_request(job: u64, cancel: Cancel) -> Request {
        Request {
            service: "web".into(),
            generation: 2,
            deployment_id: "web-g2".into(),
            phase: HookPhase::PreUpdate,
            index: 0,
            hook: Hook {
                kind: HookKind::Exec(vec!["/usr/local/bin/drain".into()]),
                place: HookPlace::Host,
                timeout: None,
                on_timeout: berth_core::spec::OnTimeout::Abort,
            },
            container: None,
            body: serde_json::Value::Null,
            hooks_dir: PathBuf::from("/var/lib/berth/hooks"),
            job,
            cancel,
        }
    }

    fn host_env(
        host: &berth_fakes::FakeHost,
    ) -> crate::HostSeams<berth_fakes::FakeRuntime, berth_fakes::MemStore, berth_fakes::FakeHost>
    {
        crate::HostSeams {
            runtime: berth_fakes::FakeRuntime::new("n1"),
            store: berth_fakes::MemStore::new(),
            host: host.clone(),
            watcher: berth_core::watch::NoWatcher,
            files: berth_core::files::NoFiles,
        }
    }

    /// A cancel stops a host hook's unit and ends the job at once; a
    /// handle dropped without one (berthd stopping) stops nothing.
    #[tokio::test(start_paused = true)]
    async fn a_cancel_stops_a_host_hook_and_a_dropped_handle_does_not() {
        let host = berth_fakes::FakeHost::new();
        let (handle, cancel) = JobHandle::new();
        let (req, env) = (host_request(handle.id, cancel), host_env(&host));
        let job = tokio::spawn(async move { req.run(&env).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(host.running().len(), 1, "started");
        handle.cancel("superseded by generation 3");
        let o = tokio::time::timeout(Duration::from_secs(1), job)
            .await
            .expect("ends at once")
            .expect("no panic");
        assert_eq!(o.job, handle.id);
        assert_eq!(
            o.end,
            HookEnd::Cancelled("superseded by generation 3".into())
        );
        assert!(host.running().is_empty(), "{:?}", host.running());
        assert_eq!(host.cleaned().len(), 1, "stopped and forgotten");

        let host = berth_fakes::FakeHost::new();
        let (handle, cancel) = JobHandle::new();
        let (req, env) = (host_request(handle.id, cancel), host_env(&host));
        let job = tokio::spawn(async move { req.run(&env).await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(handle);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(host.running().len(), 1, "runs on for the next berthd");
        assert!(host.cleaned().is_empty());
        let unit = host.running().remove(0);
        assert!(host.exit(&unit, 0, "done\n"));
        let o = tokio::time::timeout(Duration::from_secs(10), job)
            .await
            .expect("waited for")
            .expect("no panic");
        assert_eq!(
            o.end,
            HookEnd::Exited {
                code: 0,
                stderr: String::new()
            }
        );
    }

    #[test]
    fn hints_only_when_nothing_was_printed() {
        assert!(with_hint(String::new(), 203, "/x").contains("203/EXEC"));
        assert!(with_hint(String::new(), 209, "/s/hooks/a.out").contains("/s/hooks/a.out"));
        assert_eq!(with_hint("oops".into(), 203, "/x"), "oops");
        assert_eq!(with_hint(String::new(), 3, "/x"), "");
    }
}
