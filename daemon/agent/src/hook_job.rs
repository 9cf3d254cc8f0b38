//! The exec hook job: runs a hook's command in a container under its
//! timeout, off the loop, and reports how it ended. Decides nothing: what
//! the end means is `berth_core::hooks::verdict`, on the loop.

use std::time::Duration;

use berth_core::hooks::HookEnd;
use berth_core::record::{Outputs, cap_output};
use berth_core::runtime::Runtime;
use berth_core::spec::HookPhase;

/// One exec hook to run.
pub(crate) struct Request {
    pub service: String,
    /// The deployment it runs for (a newer one makes the answer stale).
    pub generation: u64,
    pub phase: HookPhase,
    pub index: usize,
    /// The container it runs in (the old one, for `pre_update`).
    pub container: String,
    pub argv: Vec<String>,
    pub timeout: Option<Duration>,
}

/// How it ended, and what it printed.
pub(crate) struct Outcome {
    pub service: String,
    pub generation: u64,
    pub phase: HookPhase,
    pub index: usize,
    pub end: HookEnd,
    pub outputs: Outputs,
}

impl Request {
    /// Runs the command; past the timeout the wait is given up (the engine
    /// has no way to stop an exec: the process may run on in the container).
    pub(crate) async fn run<R: Runtime>(self, runtime: &R) -> Outcome {
        let exec = runtime.exec(&self.container, &self.argv);
        let result = match self.timeout {
            Some(t) => tokio::time::timeout(t, exec).await.map_err(|_| t),
            None => Ok(exec.await),
        };
        let mut outputs = Outputs::default();
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
        Outcome {
            service: self.service,
            generation: self.generation,
            phase: self.phase,
            index: self.index,
            end,
            outputs,
        }
    }
}
