//! Jobs: the engine calls a plan needs, run outside the loop. Each job
//! reports back what it did, step by step, so the loop can record and emit it.
//! A job never touches the loop's state or the store: its `Done` message is
//! all the loop learns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::files::Files;
use berth_core::plan::Action;
use berth_core::reconfig::ConfigState;
use berth_core::record::{Outputs, cap_output};
use berth_core::runtime::{CreateRequest, Runtime, RuntimeError};
use berth_core::spec::{ConfigMount, ImageSource, OnChange, PullPolicy, SourceKind, env_file};

use crate::Env;

/// How long an `exec_in` task's command may run (paunch waits forever; a
/// hung bootstrap should fail its deployment, not hold the service).
pub(crate) const EXEC_TASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// One thing an executor did to a container.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub verb: &'static str,
    pub container: String,
    pub reason: String,
}

pub(crate) enum Job {
    /// A service's planned actions, in order.
    Actions {
        service: String,
        actions: Vec<Action>,
        /// For `Deploy`: the create call (canonical name, spec, labels).
        create: Option<Box<CreateRequest>>,
        /// For a task: its outputs dir, emptied before the task is created.
        outputs_dir: Option<PathBuf>,
    },
    Restart {
        service: String,
        container: String,
        name: String,
        /// For a RECONFIGURE record: its generation.
        reconfigure: Option<u64>,
    },
    /// Read a service's config sources.
    ReadConfig {
        service: String,
        /// The record the reading is compared against.
        generation: u64,
        mounts: Vec<ConfigMount>,
        previous: Vec<ConfigState>,
        forced: bool,
    },
    /// Reload a service in place: signals and execs, in order.
    Reload {
        service: String,
        generation: u64,
        container: String,
        steps: Vec<OnChange>,
    },
    /// Read a finished task's logs and outputs.
    Collect {
        service: String,
        container: String,
        exit_code: Option<i64>,
        outputs: Vec<String>,
        outputs_dir: Option<PathBuf>,
    },
    /// Run an `exec_in` task's command in its service's container.
    ExecTask {
        service: String,
        generation: u64,
        container: String,
        argv: Vec<String>,
        options: berth_core::runtime::ExecOptions,
    },
    /// List this node's containers.
    List,
    /// Remove the images berth built for `service` that no record in its
    /// history refers to any more.
    ImageGc {
        service: String,
        keep: std::collections::BTreeSet<String>,
    },
    /// Remove pulled images a prune found prunable (image, why), by id,
    /// never forced (`event_loop/prune.rs`).
    PruneImages {
        candidates: Vec<(berth_core::images::PulledImage, String)>,
    },
    /// Resolve the image of a deployment recorded while the engine was away.
    ResolveRecord {
        service: String,
        generation: u64,
        image: ImageSource,
        /// `pull:` as it applies to this resolution.
        pull: PullPolicy,
    },
    /// Remove a deleted service's named volumes (`delete --volumes`).
    RemoveVolumes(crate::event_loop::volumes::Request),
    /// Run a hook that is not a breakpoint: an exec in a container or on
    /// the host, or an http hook (`crate::hook_job`).
    Hook(crate::hook_job::Request),
    /// Resolve the images (and read the config sources and env files) of
    /// a pending apply.
    Resolve {
        apply_id: u64,
        /// Each service's image and its `pull:` as this apply applies it
        /// (`always` only where the apply names the service anew).
        images: Vec<(String, ImageSource, PullPolicy)>,
        configs: Vec<Vec<ConfigMount>>,
        /// Each service's `env_file` paths.
        env_files: Vec<Vec<String>>,
    },
}

impl Job {
    /// Jobs that act on containers: they take a permit and count as in
    /// flight until their [`Done`] comes back.
    pub(crate) fn is_container_job(&self) -> bool {
        matches!(
            self,
            Job::Actions { .. } | Job::Restart { .. } | Job::Reload { .. }
        )
    }
}

impl Done {
    /// The answer of a job for which [`Job::is_container_job`] holds.
    pub(crate) fn is_container_job(&self) -> bool {
        matches!(
            self,
            Done::Actions { .. } | Done::Restart { .. } | Done::Reloaded { .. }
        )
    }
}

/// A config source as read, with what kind of path it is.
pub(crate) type ConfigRead = (ConfigState, Option<SourceKind>);

/// A service's env files as read at an apply: the digest of their values
/// (`None`: it has none), or why they cannot be used (naming the file and
/// line). The values never leave the job.
pub(crate) type EnvFileRead = Result<Option<String>, String>;

/// What a job tells the loop while it runs (a pull's progress, as
/// `image_pull` events): sent on the channel its [`Done`] comes back on, so
/// the loop emits them before it learns the job ended.
#[derive(Clone)]
pub(crate) struct JobEvents(tokio::sync::mpsc::UnboundedSender<Done>);

impl JobEvents {
    pub(crate) fn new(tx: tokio::sync::mpsc::UnboundedSender<Done>) -> JobEvents {
        JobEvents(tx)
    }

    /// Events nobody hears (unit tests of a job alone).
    #[cfg(test)]
    pub(crate) fn unheard() -> JobEvents {
        JobEvents(tokio::sync::mpsc::unbounded_channel().0)
    }

    pub(crate) fn send(&self, kind: berth_core::event::EventKind) {
        // The loop gone: nobody is left to tell.
        let _ = self.0.send(Done::Event(kind));
    }
}

pub(crate) enum Done {
    /// An event a running job reports (not its end).
    Event(berth_core::event::EventKind),
    Listed(Result<Vec<berth_core::runtime::ObservedContainer>, RuntimeError>),
    VolumesRemoved(crate::event_loop::volumes::Outcome),
    Hook(crate::hook_job::Outcome),
    ImagesCollected {
        service: String,
        removed: Vec<String>,
        errors: Vec<String>,
    },
    ResolvedRecord {
        service: String,
        generation: u64,
        result: Result<crate::images::Resolved, RuntimeError>,
    },
    ImagesPruned(crate::event_loop::prune::Outcome),
    Actions {
        service: String,
        steps: Vec<Step>,
        /// A `Deploy` created and swapped in a container.
        deployed: bool,
        /// A container was started (by Deploy or Start).
        started: bool,
        error: Option<RuntimeError>,
    },
    Restart {
        service: String,
        name: String,
        reconfigure: Option<u64>,
        error: Option<RuntimeError>,
    },
    ConfigRead {
        service: String,
        generation: u64,
        reads: Vec<ConfigRead>,
        forced: bool,
    },
    Reloaded {
        service: String,
        generation: u64,
        outputs: Outputs,
        error: Option<String>,
        /// The error is the engine being unreachable (try again later).
        unreachable: bool,
    },
    Collected {
        service: String,
        outputs: Outputs,
    },
    ExecTaskRan {
        service: String,
        generation: u64,
        /// What the command did, or why it could not run.
        result: Result<berth_core::runtime::ExecOutput, String>,
        /// The error is the engine being unreachable (run it again later).
        unreachable: bool,
    },
    Resolved {
        apply_id: u64,
        results: Vec<Result<crate::images::Resolved, RuntimeError>>,
        configs: Vec<Vec<ConfigRead>>,
        env_files: Vec<EnvFileRead>,
    },
}

/// The values the env files `paths` hold, read through [`Files`] off the
/// async workers and merged in order (a later file wins). The error names
/// the file and the line, never a value.
pub(crate) async fn read_env_files<E: Env>(
    env: &Arc<E>,
    paths: Vec<String>,
) -> Result<BTreeMap<String, String>, String> {
    let env = env.clone();
    let read = tokio::task::spawn_blocking(move || {
        env_file::read_all(&paths, |p| {
            env.files()
                .read_env_file(Path::new(p))
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
    })
    .await;
    match read {
        Ok(values) => values,
        Err(e) => Err(format!("reading env files failed: {e}")),
    }
}

/// Reads every mount's source through [`Files`] off the async workers
/// (file I/O blocks).
pub(crate) async fn read_config<E: Env>(
    env: &Arc<E>,
    mounts: Vec<ConfigMount>,
    previous: Vec<ConfigState>,
) -> Vec<ConfigRead> {
    if mounts.is_empty() {
        return Vec::new();
    }
    let n = mounts.len();
    let env = env.clone();
    let read = tokio::task::spawn_blocking(move || {
        mounts
            .iter()
            .map(|m| {
                let prev = previous
                    .iter()
                    .find(|p| p.source == m.source && p.target == m.target);
                env.files().read_config(m, prev)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match read {
        Ok(reads) => reads,
        // The blocking task panicked or was cancelled: report it per source.
        Err(e) => (0..n)
            .map(|_| {
                (
                    ConfigState {
                        error: Some(format!("reading config sources failed: {e}")),
                        ..Default::default()
                    },
                    None,
                )
            })
            .collect(),
    }
}

pub(crate) async fn run<E: Env>(env: &Arc<E>, job: Job, events: &JobEvents) -> Done {
    let runtime = env.runtime();
    match job {
        Job::List => Done::Listed(runtime.list().await),
        Job::ExecTask {
            service,
            generation,
            container,
            argv,
            options,
        } => {
            let ran =
                tokio::time::timeout(EXEC_TASK_TIMEOUT, runtime.exec(&container, &argv, &options))
                    .await;
            let (result, unreachable) = match ran {
                Ok(Ok(out)) => (Ok(out), false),
                Ok(Err(e)) => (
                    Err(format!("`{}` could not run: {e}", argv.join(" "))),
                    e.is_unreachable(),
                ),
                Err(_) => (
                    Err(format!(
                        "`{}` did not end within {} s",
                        argv.join(" "),
                        EXEC_TASK_TIMEOUT.as_secs()
                    )),
                    false,
                ),
            };
            Done::ExecTaskRan {
                service,
                generation,
                result,
                unreachable,
            }
        }
        Job::RemoveVolumes(req) => Done::VolumesRemoved(req.run(runtime).await),
        Job::PruneImages { candidates } => {
            Done::ImagesPruned(crate::event_loop::prune::run(runtime, candidates).await)
        }
        Job::Hook(req) => Done::Hook(req.run(env.as_ref()).await),
        Job::ImageGc { service, keep } => {
            let prefix = format!("{}:", crate::images::build_repository(&service));
            let mut removed = Vec::new();
            let mut errors = Vec::new();
            match runtime.list_images(&prefix).await {
                Err(e) => errors.push(e.to_string()),
                Ok(images) => {
                    for image in images.into_iter().filter(|i| !keep.contains(&i.id)) {
                        for tag in image.tags {
                            match runtime.remove_image(&tag).await {
                                Ok(()) => removed.push(tag),
                                Err(e) => errors.push(e.to_string()),
                            }
                        }
                    }
                }
            }
            Done::ImagesCollected {
                service,
                removed,
                errors,
            }
        }
        Job::ResolveRecord {
            service,
            generation,
            image,
            pull,
        } => {
            let result = crate::images::resolve(env, &service, &image, pull, events).await;
            Done::ResolvedRecord {
                service,
                generation,
                result,
            }
        }
        Job::Actions {
            service,
            actions,
            create,
            outputs_dir,
        } => {
            let mut steps = Vec::new();
            let mut deployed = false;
            let mut started = false;
            let mut error = None;
            for action in &actions {
                let r = crate::swap::run_action(
                    env,
                    action,
                    create.as_deref(),
                    outputs_dir.as_ref(),
                    &mut steps,
                    events,
                )
                .await;
                match r {
                    Ok((d, s)) => {
                        deployed |= d;
                        started |= s;
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            Done::Actions {
                service,
                steps,
                deployed,
                started,
                error,
            }
        }
        Job::Restart {
            service,
            container,
            name,
            reconfigure,
        } => {
            let error = runtime.restart(&container).await.err();
            Done::Restart {
                service,
                name,
                reconfigure,
                error,
            }
        }
        Job::ReadConfig {
            service,
            generation,
            mounts,
            previous,
            forced,
        } => Done::ConfigRead {
            service,
            generation,
            reads: read_config(env, mounts, previous).await,
            forced,
        },
        Job::Reload {
            service,
            generation,
            container,
            steps,
        } => {
            let (outputs, error, unreachable) = reload(runtime, &container, &steps).await;
            Done::Reloaded {
                service,
                generation,
                outputs,
                error,
                unreachable,
            }
        }
        Job::Collect {
            service,
            container,
            exit_code,
            outputs,
            outputs_dir,
        } => {
            let collected =
                crate::outputs::collect(env, &container, exit_code, &outputs, outputs_dir).await;
            Done::Collected {
                service,
                outputs: collected,
            }
        }
        Job::Resolve {
            apply_id,
            images,
            configs,
            env_files,
        } => {
            // Each distinct image once: 200 services on one tag cost one inspect.
            type Key = (ImageSource, String, PullPolicy);
            let mut cache: Vec<(Key, Result<crate::images::Resolved, RuntimeError>)> = Vec::new();
            let mut results = Vec::with_capacity(images.len());
            for (service, image, pull) in images {
                // Builds are tagged per service, so the cache key includes it for them.
                let key_service = match &image {
                    ImageSource::Build { .. } => service.clone(),
                    _ => String::new(),
                };
                let key = (image, key_service, pull);
                if let Some((_, r)) = cache.iter().find(|(k, _)| *k == key) {
                    results.push(r.clone());
                    continue;
                }
                let r = crate::images::resolve(env, &service, &key.0, pull, events).await;
                cache.push((key, r.clone()));
                results.push(r);
            }
            let mut reads = Vec::with_capacity(configs.len());
            for mounts in configs {
                reads.push(read_config(env, mounts, Vec::new()).await);
            }
            let mut env_reads = Vec::with_capacity(env_files.len());
            for paths in env_files {
                env_reads.push(if paths.is_empty() {
                    Ok(None)
                } else {
                    read_env_files(env, paths)
                        .await
                        .map(|values| Some(env_file::digest(&values)))
                });
            }
            Done::Resolved {
                apply_id,
                results,
                configs: reads,
                env_files: env_reads,
            }
        }
    }
}

/// Runs a reload's signals and execs in order; the first failure stops it.
/// Execs' output becomes the record's outputs, kept on failure too.
async fn reload<R: Runtime>(
    runtime: &R,
    container: &str,
    steps: &[OnChange],
) -> (Outputs, Option<String>, bool) {
    let mut outputs = Outputs::default();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut error = None;
    let mut unreachable = false;
    for step in steps {
        match step {
            OnChange::Signal(sig) => {
                if let Err(e) = runtime.kill(container, sig).await {
                    unreachable = e.is_unreachable();
                    error = Some(format!("sending {sig} failed: {e}"));
                }
            }
            OnChange::Exec(argv) => match runtime
                .exec(
                    container,
                    argv,
                    &berth_core::runtime::ExecOptions::default(),
                )
                .await
            {
                Err(e) => {
                    unreachable = e.is_unreachable();
                    error = Some(format!("`{}` could not run: {e}", argv.join(" ")));
                }
                Ok(out) => {
                    stdout.push_str(&out.stdout);
                    stderr.push_str(&out.stderr);
                    outputs.deploy_status_code = Some(out.exit_code);
                    if out.exit_code != 0 {
                        let text = out.stderr.trim_end();
                        let mut cut = text.len().saturating_sub(2000);
                        while !text.is_char_boundary(cut) {
                            cut += 1;
                        }
                        let tail = &text[cut..];
                        error = Some(format!(
                            "`{}` exited with code {}{}",
                            argv.join(" "),
                            out.exit_code,
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!(": {tail}")
                            }
                        ));
                    }
                }
            },
            OnChange::Restart | OnChange::Recreate | OnChange::None => {}
        }
        if error.is_some() {
            break;
        }
    }
    if !stdout.is_empty() {
        outputs.deploy_stdout = Some(cap_output(stdout));
    }
    if !stderr.is_empty() {
        outputs.deploy_stderr = Some(cap_output(stderr));
    }
    (outputs, error, unreachable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seams;
    use berth_fakes::{FakeRuntime, MemStore};

    /// Every job reports back with a `Done` of the same kind, so the loop's
    /// count of container jobs in flight goes back down (a leak there made
    /// every later list wait the busy interval).
    #[tokio::test]
    async fn container_jobs_and_their_answers_agree() {
        let env = Arc::new(Seams {
            runtime: FakeRuntime::new("n1"),
            store: MemStore::new(),
        });
        let jobs = vec![
            Job::List,
            Job::Actions {
                service: "s".into(),
                actions: vec![],
                create: None,
                outputs_dir: None,
            },
            Job::Restart {
                service: "s".into(),
                container: "nope".into(),
                name: "nope".into(),
                reconfigure: None,
            },
            Job::Reload {
                service: "s".into(),
                generation: 1,
                container: "nope".into(),
                steps: vec![OnChange::Signal("SIGHUP".into())],
            },
            Job::ReadConfig {
                service: "s".into(),
                generation: 1,
                mounts: vec![],
                previous: vec![],
                forced: false,
            },
            Job::Resolve {
                apply_id: 1,
                images: vec![],
                configs: vec![],
                env_files: vec![],
            },
        ];
        for job in jobs {
            let kind = job.is_container_job();
            let done = run(&env, job, &JobEvents::unheard()).await;
            assert_eq!(done.is_container_job(), kind);
        }
    }
}
