//! Running a plan's container actions, and the swap a deploy is: create
//! the new container, set the live one aside (or, for a rollback, keep it
//! until the new one started and then remove it), put the new one in its
//! place and start it. Called by jobs (`crate::jobs`), off the loop; it
//! touches no loop state and no store, and decides nothing `plan()` did not:
//! what is kept aside, swapped back or removed later is `plan()`'s, from
//! names, labels and restart policies alone, so berthd killed between any
//! two of these calls is repaired by the next plan.

use std::path::PathBuf;
use std::sync::Arc;

use berth_core::plan::{Action, Aside, ContainerRef, Reason};
use berth_core::runtime::{
    CreateRequest, LABEL_GENERATION, LABEL_IMAGE_DIGEST, Runtime, RuntimeError,
};
use berth_core::spec::{RestartPolicy, env_file};

use crate::Env;
use crate::jobs::Step;

fn step(steps: &mut Vec<Step>, verb: &'static str, container: &str, reason: impl Into<String>) {
    steps.push(Step {
        verb,
        container: container.to_string(),
        reason: reason.into(),
    });
}

/// Runs one action; returns (deployed, started).
pub(crate) async fn run_action<E: Env>(
    env: &Arc<E>,
    action: &Action,
    create: Option<&CreateRequest>,
    outputs_dir: Option<&PathBuf>,
    steps: &mut Vec<Step>,
    events: &crate::jobs::JobEvents,
) -> Result<(bool, bool), RuntimeError> {
    let runtime = env.runtime();
    match action {
        Action::Deploy {
            replace,
            set_aside,
            start,
            reason,
            ..
        } => {
            let Some(create) = create else {
                return Err(RuntimeError::Refused {
                    op: "create",
                    target: action.service().to_string(),
                    message: "no resolved image for the current record".into(),
                });
            };
            if let Some(dir) = outputs_dir {
                crate::outputs::prepare(env, dir).await?;
            }
            if let Some(inputs) = &create.spec.inputs {
                crate::outputs::write_inputs(env, inputs).await?;
            }
            let with_env_files;
            let create = if create.spec.env_file.is_empty() {
                create
            } else {
                with_env_files = env_files_added(env, action.service(), create).await?;
                &with_env_files
            };
            ensure_image(runtime, action.service(), create, steps, events).await?;
            let swap = Swap {
                create,
                replace,
                set_aside: set_aside.as_ref(),
                start: *start,
                reason: &reason.to_string(),
            };
            swap.run(runtime, steps).await?;
            Ok((true, *start))
        }
        Action::Start {
            container, reason, ..
        } => {
            runtime.start(&container.id).await?;
            step(steps, "started", &container.name, reason.to_string());
            Ok((false, true))
        }
        Action::Stop {
            container, reason, ..
        } => {
            runtime.stop(&container.id).await?;
            step(steps, "stopped", &container.name, reason.to_string());
            Ok((false, false))
        }
        Action::Rename {
            container,
            to,
            reason,
            ..
        } => {
            runtime.rename(&container.id, to).await?;
            step(
                steps,
                "renamed",
                &format!("{} -> {to}", container.name),
                reason.to_string(),
            );
            Ok((false, false))
        }
        Action::Remove {
            container, reason, ..
        } => {
            runtime.remove(&container.id).await?;
            step(steps, "removed", &container.name, reason.to_string());
            Ok((false, false))
        }
        Action::SetRestart {
            container,
            policy,
            reason,
            ..
        } => {
            set_policy(runtime, container, *policy, &reason.to_string(), steps).await?;
            Ok((false, false))
        }
    }
}

/// The image `create` is made from (by its id) is in the engine: one
/// pruned since is pulled again by the digest it was pulled as (its
/// record's, in the create's labels), never by its tag, which may name
/// another image by now. A rollback to a pruned image works so. Built and
/// loaded images carry no digest: nothing to do for them here.
async fn ensure_image<R: Runtime>(
    runtime: &R,
    service: &str,
    create: &CreateRequest,
    steps: &mut Vec<Step>,
    events: &crate::jobs::JobEvents,
) -> Result<(), RuntimeError> {
    let id = &create.spec.image;
    let Some(digest) = create.labels.get(LABEL_IMAGE_DIGEST) else {
        return Ok(());
    };
    if id.is_empty() || runtime.inspect_image(id).await?.is_some() {
        return Ok(());
    }
    tracing::info!(
        container = create.name,
        image = id,
        digest,
        "the image is no longer in the engine; pulling it again by its digest"
    );
    crate::images::pull_reporting(runtime, service, digest, events).await?;
    step(
        steps,
        "pulled",
        digest,
        format!("its image {id} was no longer in the engine"),
    );
    match runtime.inspect_image(id).await? {
        Some(_) => Ok(()),
        None => Err(RuntimeError::Pull {
            registry: berth_core::runtime::image_registry(digest).to_string(),
            reference: digest.clone(),
            cause: berth_core::runtime::PullCause::Other,
            message: format!(
                "pulled by its digest, but the engine has no image {id} afterwards (the \
                 registry's image by that digest is another one: another platform?)"
            ),
        }),
    }
}

/// `create` with its env files' values in its env (under the entries it
/// has: `env:` and inputs win), read again now: only when they still hold
/// what the deployment was applied with (its digest, in its spec hash)
/// is the container made, so its label never lies about its env.
async fn env_files_added<E: Env>(
    env: &Arc<E>,
    service: &str,
    create: &CreateRequest,
) -> Result<CreateRequest, RuntimeError> {
    let refused = |message: String| RuntimeError::HostFile {
        message: format!("{service}: {message}; the container was not created"),
    };
    let values = crate::jobs::read_env_files(env, create.spec.env_file.clone())
        .await
        .map_err(refused)?;
    if create.spec.env_file_digest.as_deref() != Some(env_file::digest(&values).as_str()) {
        return Err(refused(format!(
            "env_file {} changed since this deployment was applied (its spec hash was made from \
             the values they held then); apply the spec again to take the new content",
            create.spec.env_file.join(", ")
        )));
    }
    let mut filled = create.clone();
    env_file::merge_under(&mut filled.spec.env, values);
    Ok(filled)
}

async fn set_policy<R: Runtime>(
    runtime: &R,
    container: &ContainerRef,
    policy: RestartPolicy,
    reason: &str,
    steps: &mut Vec<Step>,
) -> Result<(), RuntimeError> {
    runtime.set_restart_policy(&container.id, policy).await?;
    step(
        steps,
        "set restart policy",
        &format!("{}: {}", container.name, policy.engine_name()),
        reason,
    );
    Ok(())
}

/// One create-then-swap.
struct Swap<'a> {
    create: &'a CreateRequest,
    /// Containers that go once the new one exists.
    replace: &'a [ContainerRef],
    /// The live container kept aside while the deployment is judged.
    set_aside: Option<&'a Aside>,
    start: bool,
    reason: &'a str,
}

impl Swap<'_> {
    /// The new container exists before the old one is touched, so a
    /// missing image or a spec the engine refuses leaves the old one
    /// running. With `set_aside`, the old one then gets restart policy
    /// `no` (before the stop: a dockerd restart must never find it
    /// stopped with `always`), is stopped and renamed aside; it stays until
    /// `plan()` removes it (the deployment completed) or swaps it back (it
    /// failed, or the new one did not start). Without, it is stopped and
    /// renamed out of the way, and removed once the new one runs.
    async fn run<R: Runtime>(
        &self,
        runtime: &R,
        steps: &mut Vec<Step>,
    ) -> Result<(), RuntimeError> {
        let (create, reason) = (self.create, self.reason);
        let canonical = create.name.clone();
        if self.replace.is_empty() && self.set_aside.is_none() {
            let id = runtime.create(create).await?;
            step(steps, "created", &canonical, reason);
            if self.start {
                runtime.start(&id).await?;
                step(steps, "started", &canonical, reason);
            }
            return Ok(());
        }
        let generation = create
            .labels
            .get(LABEL_GENERATION)
            .cloned()
            .unwrap_or_default();
        let next_name = format!("{canonical}.next-g{generation}");
        // A leftover of an interrupted deploy of this same generation holds the
        // name the new container needs: it goes before the create.
        let (in_the_way, replace): (Vec<&ContainerRef>, Vec<&ContainerRef>) =
            self.replace.iter().partition(|old| old.name == next_name);
        for old in in_the_way {
            runtime.remove(&old.id).await?;
            step(steps, "removed", &old.name, "superseded");
        }
        let mut next = create.clone();
        next.name = next_name.clone();
        let new_id = runtime.create(&next).await?;
        step(steps, "created", &next_name, reason);

        // Other leftovers of an interrupted swap go next; without an aside,
        // the live one is kept until the new one has started.
        let mut live = None;
        for old in replace {
            if self.set_aside.is_none() && old.name == canonical && live.is_none() {
                live = Some(old);
            } else {
                runtime.remove(&old.id).await?;
                step(steps, "removed", &old.name, "superseded");
            }
        }
        if let Some(aside) = self.set_aside {
            let why = match generation.parse() {
                Ok(generation) => Reason::SetAside { generation }.to_string(),
                Err(_) => "set aside while the new container is judged".to_string(),
            };
            let old = &aside.container;
            set_policy(runtime, old, RestartPolicy::Never, &why, steps).await?;
            runtime.stop(&old.id).await?;
            step(steps, "stopped", &old.name, &why);
            if old.name != aside.to {
                runtime.rename(&old.id, &aside.to).await?;
                step(
                    steps,
                    "renamed",
                    &format!("{} -> {}", old.name, aside.to),
                    &why,
                );
            }
        }
        let old_name = format!("{canonical}.old-g{generation}");
        if let Some(old) = live {
            runtime.stop(&old.id).await?;
            step(steps, "stopped", &old.name, "replaced by the new container");
            runtime.rename(&old.id, &old_name).await?;
        }
        runtime.rename(&new_id, &canonical).await?;
        if self.start {
            if let Err(e) = runtime.start(&new_id).await {
                // Without an aside, put the old container back the way it
                // was. An aside one is swapped back by the plan once the
                // deployment has failed (its policy restored too).
                if let Some(old) = live {
                    let _ = runtime.remove(&new_id).await;
                    let _ = runtime.rename(&old.id, &canonical).await;
                    let _ = runtime.start(&old.id).await;
                    step(
                        steps,
                        "restored",
                        &canonical,
                        "the new container did not start",
                    );
                }
                return Err(e);
            }
            step(steps, "started", &canonical, reason);
        }
        if let Some(old) = live {
            runtime.remove(&old.id).await?;
            step(steps, "removed", &old_name, "replaced");
        }
        Ok(())
    }
}
