//! Resolving a spec's image to an image id: inspect a reference (pulling it
//! through the engine when the engine does not have it), build a
//! context (tagged by the hash of its content, so an unchanged context is never
//! rebuilt), or load a tarball. The context is hashed by [`Files`]
//! (`Env::files`), off the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::event::EventKind;
use berth_core::files::Files;
use berth_core::runtime::{PullProgress, Runtime, RuntimeError, image_registry, repo_digest_for};
use berth_core::spec::{ImageSource, PullPolicy};
use tokio::time::Instant;

use crate::Env;
use crate::jobs::JobEvents;

/// A pull's progress reaches the loop (as `image_pull` events) at most
/// this often: a 2 GB pull must not flood the event log and ring.
pub(crate) const PULL_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Pulls `reference` for `service`, telling the loop how it goes: an
/// `image_pull` event at its start, at most one per
/// [`PULL_PROGRESS_EVERY`] while the engine reports progress, and one at
/// its end (`done`, and `failed` when it failed), whatever the outcome.
pub(crate) async fn pull_reporting<R: Runtime>(
    runtime: &R,
    service: &str,
    reference: &str,
    events: &JobEvents,
) -> Result<(), RuntimeError> {
    struct Throttle {
        sent_at: Instant,
        latest: PullProgress,
    }
    let event = |p: &PullProgress, done: bool, failed: bool| EventKind::ImagePull {
        service: service.to_string(),
        reference: reference.to_string(),
        layers_done: p.layers_done,
        layers_total: p.layers_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        done,
        failed,
    };
    let start = PullProgress {
        reference: reference.to_string(),
        ..PullProgress::default()
    };
    events.send(event(&start, false, false));
    let throttle = Mutex::new(Throttle {
        sent_at: Instant::now(),
        latest: start,
    });
    let result = runtime
        .pull_with_progress(reference, &|p| {
            let mut t = throttle.lock().unwrap_or_else(|e| e.into_inner());
            t.latest = p;
            if t.sent_at.elapsed() >= PULL_PROGRESS_EVERY {
                t.sent_at = Instant::now();
                events.send(event(&t.latest, false, false));
            }
        })
        .await;
    let last = throttle.into_inner().unwrap_or_else(|e| e.into_inner());
    events.send(event(&last.latest, true, result.is_err()));
    result
}

/// The tag berth gives an image it builds for `service` from a context whose
/// content hashes to `hash`.
pub fn build_tag(service: &str, hash: &str) -> String {
    format!(
        "{}:{}",
        build_repository(service),
        &hash[..hash.len().min(16)]
    )
}

/// The repository of the images berth builds for `service`.
pub fn build_repository(service: &str) -> String {
    format!("berth-build/{service}")
}

/// What a spec's image resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The image id (`sha256:...`): what the container is created from.
    pub id: String,
    /// `repository@sha256:...` for a reference whose image the engine
    /// pulled (now or before); `None` for a built or loaded image.
    pub digest: Option<String>,
    /// The engine pulled the image for this resolve (it was missing): berth
    /// notes it as an image it pulled, one pruning may remove later.
    pub pulled: bool,
}

impl Resolved {
    fn built(id: String) -> Resolved {
        Resolved {
            id,
            digest: None,
            pulled: false,
        }
    }
}

/// Resolves `image` for `service` to an image id, here, before the
/// deployment touches any container: an image that cannot be had fails
/// (or, from a registry that is away, holds) the deployment with the old
/// container still running. A reference is pulled as `pull` says:
/// `Missing` when the engine does not have it, `Always` first of all (so a
/// tag moved in the registry is followed), `Never` not at all. The caller
/// decides when `always` applies (an apply naming the service, not a
/// resync): it passes `Missing` otherwise.
pub(crate) async fn resolve<E: Env>(
    env: &Arc<E>,
    service: &str,
    image: &ImageSource,
    pull: PullPolicy,
    events: &JobEvents,
) -> Result<Resolved, RuntimeError> {
    let runtime = env.runtime();
    match image {
        // An `exec_in` task (the parser allows no other spec without an
        // image): it runs in another service's container, from no image.
        ImageSource::Ref(reference) if reference.is_empty() => Ok(Resolved {
            id: String::new(),
            digest: None,
            pulled: false,
        }),
        ImageSource::Ref(reference) => {
            let had = runtime.inspect_image(reference).await?;
            let why = match (pull, &had) {
                (PullPolicy::Always, _) => "pull: always",
                (_, Some(info)) => {
                    return Ok(Resolved {
                        digest: repo_digest_for(reference, &info.digests),
                        id: info.id.clone(),
                        pulled: false,
                    });
                }
                (PullPolicy::Never, None) => {
                    return Err(RuntimeError::PullForbidden {
                        image: reference.clone(),
                    });
                }
                (PullPolicy::Missing, None) => "not in the engine",
            };
            let registry = image_registry(reference);
            tracing::info!(service, reference, registry, "pulling image ({why})");
            pull_reporting(runtime, service, reference, events).await?;
            let info =
                runtime
                    .inspect_image(reference)
                    .await?
                    .ok_or_else(|| RuntimeError::Pull {
                        registry: registry.to_string(),
                        reference: reference.clone(),
                        cause: berth_core::runtime::PullCause::Other,
                        message: "the engine reported the pull done but has no such image"
                            .to_string(),
                    })?;
            // Berth's when the pull brought an image the engine did not
            // have under this reference (a tag pulled again unchanged stays
            // whoever's it was).
            let pulled = had.as_ref().is_none_or(|h| h.id != info.id);
            if let Some(had) = had.filter(|_| pulled) {
                tracing::info!(
                    service,
                    reference,
                    from = had.id,
                    to = info.id,
                    "the tag moved in the registry (pull: always)"
                );
            }
            Ok(Resolved {
                digest: repo_digest_for(reference, &info.digests),
                id: info.id,
                pulled,
            })
        }
        ImageSource::Build { build } => {
            let context = build.context.clone();
            let dockerfile = build.dockerfile.clone();
            let hash = tokio::task::spawn_blocking({
                let context = context.clone();
                let env = env.clone();
                move || {
                    env.files()
                        .context_hash(Path::new(&context), dockerfile.as_deref())
                }
            })
            .await
            .map_err(|e| RuntimeError::Build {
                tag: service.to_string(),
                context: context.clone(),
                message: format!("hashing the context panicked: {e}"),
            })?
            .map_err(|e| RuntimeError::Build {
                tag: service.to_string(),
                context: context.clone(),
                message: format!("cannot read the build context: {e}"),
            })?;
            let tag = build_tag(service, &hash);
            if let Some(info) = runtime.inspect_image(&tag).await? {
                return Ok(Resolved::built(info.id));
            }
            tracing::info!(service, %tag, context = %context, "building image (context changed or never built)");
            runtime
                .build(&context, build.dockerfile.as_deref(), &tag)
                .await
                .map(Resolved::built)
        }
        ImageSource::Load { load } => {
            let refs = runtime.load(load).await?;
            let Some(first) = refs.first() else {
                return Err(RuntimeError::Load {
                    path: load.clone(),
                    message: "the tarball contained no image".into(),
                });
            };
            match runtime.inspect_image(first).await? {
                Some(info) => Ok(Resolved::built(info.id)),
                None => Err(RuntimeError::Load {
                    path: load.clone(),
                    message: format!("loaded `{first}` but the engine cannot find it"),
                }),
            }
        }
    }
}
