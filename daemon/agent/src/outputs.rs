//! A task's outputs after it exited: its logs, and the declared outputs it
//! wrote, read through [`Files`] (`Env::files`: the real reader treats them
//! as hostile input, see `berth_sources::outputs`) on a blocking thread
//! under a timeout, so nothing in the dir can stall the runtime's workers.
//! Runs inside jobs, never on the loop, as do [`prepare`] (the outputs dir
//! emptied before a task's create) and [`write_inputs`] (a deployment's
//! input files written before its create), both by the Deploy job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_core::files::Files;
use berth_core::record::{OUTPUT_CAP, Outputs, cap_output};
use berth_core::runtime::{LogOptions, LogStream, Runtime, RuntimeError};
use futures_util::StreamExt;

use crate::Env;

/// Empties (or creates) a task's outputs dir through [`Files`], off the
/// async workers.
pub(crate) async fn prepare<E: Env>(env: &Arc<E>, dir: &Path) -> Result<(), RuntimeError> {
    let owned = dir.to_path_buf();
    off_the_workers(
        env,
        "prepare outputs dir",
        dir.display().to_string(),
        move |f| f.prepare_outputs(&owned),
    )
    .await
}

/// Writes a deployment's inputs into their dir through [`Files`], off the
/// async workers, before its container is created.
pub(crate) async fn write_inputs<E: Env>(
    env: &Arc<E>,
    inputs: &berth_core::runtime::InputFiles,
) -> Result<(), RuntimeError> {
    let owned = inputs.clone();
    off_the_workers(env, "write inputs", inputs.dir.clone(), move |f| {
        f.write_inputs(Path::new(&owned.dir), &owned.values)
    })
    .await
}

/// One [`Files`] call on a blocking thread; its error (or the thread's) is
/// `op` refused on `target`.
async fn off_the_workers<E: Env>(
    env: &Arc<E>,
    op: &'static str,
    target: String,
    call: impl FnOnce(&E::Files) -> std::io::Result<()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let refused = |message: String| RuntimeError::Refused {
        op,
        target: target.clone(),
        message,
    };
    let env = env.clone();
    match tokio::task::spawn_blocking(move || call(env.files())).await {
        Ok(result) => result.map_err(|e| refused(e.to_string())),
        Err(e) => Err(refused(format!("{op} failed: {e}"))),
    }
}

pub(crate) async fn collect<E: Env>(
    env: &Arc<E>,
    container: &str,
    exit_code: Option<i64>,
    outputs: &[String],
    outputs_dir: Option<PathBuf>,
) -> Outputs {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut logs = env.runtime().logs(container, LogOptions::default());
    let mut log_error = None;
    // What is kept of each stream: the cap (`cap_output` cuts there and
    // says so) and a few bytes to end a char cut there. Not all of it: a
    // task printing gigabytes must not grow berthd with them.
    let keep = OUTPUT_CAP + 4;
    let take = |buf: &mut Vec<u8>, bytes: &[u8]| {
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    };
    while let Some(chunk) = logs.next().await {
        match chunk {
            Ok(c) => match c.stream {
                LogStream::Stdout => take(&mut stdout, &c.bytes),
                LogStream::Stderr => take(&mut stderr, &c.bytes),
            },
            Err(e) => {
                log_error = Some(e.to_string());
                break;
            }
        }
    }
    let mut deploy_stderr = String::from_utf8_lossy(&stderr).into_owned();
    if let Some(e) = log_error {
        deploy_stderr.push_str(&format!("\n[berth: reading logs failed: {e}]"));
    }
    let declared = match outputs_dir {
        Some(dir) if !outputs.is_empty() => {
            let env = env.clone();
            read_outputs_with(
                dir,
                outputs.to_vec(),
                OUTPUTS_READ_TIMEOUT,
                move |dir: &Path, names: &[String]| env.files().read_outputs(dir, names),
            )
            .await
        }
        _ => BTreeMap::new(),
    };
    Outputs {
        deploy_stdout: Some(cap_output(String::from_utf8_lossy(&stdout).into_owned())),
        deploy_stderr: Some(cap_output(deploy_stderr)),
        deploy_status_code: exit_code,
        declared,
    }
}

/// How long reading a task's declared outputs may take. A few MiB of
/// regular files take milliseconds; this only stops a read that would never
/// end from keeping the task's record open.
const OUTPUTS_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// The declared outputs `names` found in `dir`, read by `reader` off the
/// async workers and given up after `timeout`. An output that is not there
/// is left out; one that is refused or not read holds a `[berth: ...]` note
/// instead.
async fn read_outputs_with(
    dir: PathBuf,
    names: Vec<String>,
    timeout: Duration,
    reader: impl FnOnce(&Path, &[String]) -> BTreeMap<String, String> + Send + 'static,
) -> BTreeMap<String, String> {
    let all = names.clone();
    let read = tokio::task::spawn_blocking(move || reader(&dir, &names));
    let why = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(declared)) => return declared,
        Ok(Err(e)) => format!("reading the outputs failed: {e}"),
        // The blocking thread is left to finish on its own.
        Err(_) => format!("reading the outputs took more than {timeout:?}"),
    };
    all.into_iter()
        .map(|name| {
            let note = format!("[berth: output {name} not read: {why}]");
            (name, note)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Done, Job, run};
    use crate::{HostSeams, NoHost};
    use berth_core::watch::NoWatcher;
    use berth_fakes::{FakeFiles, FakeRuntime, MemStore};

    /// The job as the loop runs it: the declared outputs the files seam
    /// reads (the real reader's refusals are notes, tested in
    /// berth-sources) reach the record as read, an output not there is left
    /// out, and the answer comes back on a multi-thread runtime whose one
    /// worker stays free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_collect_job_records_what_the_files_seam_read() {
        let files = FakeFiles::new();
        let dir = PathBuf::from("/state/outputs/t");
        let refused = "[berth: output shadow refused: a symlink (to /etc/shadow)]";
        files.set_output(&dir, "fine", "ok");
        files.set_output(&dir, "shadow", refused);
        files.set_output(&dir, "undeclared", "not asked for");
        let env = Arc::new(HostSeams {
            runtime: FakeRuntime::new("n1"),
            store: MemStore::new(),
            host: NoHost,
            watcher: NoWatcher,
            files,
        });
        let job = Job::Collect {
            service: "t".into(),
            container: "gone".into(),
            exit_code: Some(0),
            outputs: vec!["shadow".into(), "absent".into(), "fine".into()],
            outputs_dir: Some(dir),
        };
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            run(&env, job, &crate::jobs::JobEvents::unheard()),
        )
        .await
        .expect("the collect job answers");
        let Done::Collected { outputs, .. } = done else {
            panic!("not a Collected");
        };
        let want: BTreeMap<String, String> = [("fine", "ok"), ("shadow", refused)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(outputs.declared, want);
        assert_eq!(outputs.deploy_status_code, Some(0));
    }

    /// A read that does not end (a filesystem that hangs) is given up after
    /// the timeout, with a note, and meanwhile the runtime's only worker
    /// keeps serving other tasks (what /healthz and the API run on).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_read_that_does_not_end_times_out_and_the_worker_stays_free() {
        fn stalls(_: &Path, _: &[String]) -> BTreeMap<String, String> {
            std::thread::sleep(Duration::from_secs(3));
            BTreeMap::new()
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ticker = tokio::spawn(async move {
            for i in 0.. {
                if tx.send(i).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let got = read_outputs_with(
            PathBuf::from("/nonexistent"),
            vec!["a".into(), "b".into()],
            Duration::from_millis(500),
            stalls,
        )
        .await;
        assert_eq!(
            got["a"],
            "[berth: output a not read: reading the outputs took more than 500ms]"
        );
        assert!(
            got["b"].starts_with("[berth: output b not read:"),
            "{got:?}"
        );
        // The ticker ran on the one worker while the read was stalled.
        let mut ticks = 0;
        while rx.try_recv().is_ok() {
            ticks += 1;
        }
        assert!(ticks > 1, "the worker was blocked: {ticks} ticks");
        ticker.abort();
    }
}
