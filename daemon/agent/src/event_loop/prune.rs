//! Pruning the images berth pulled, and `berthctl images`.
//!
//! berth notes every image it pulls in the store's pulled-images list: a
//! resolve that pulled (`images::Resolved::pulled`, from an apply or a
//! record resolved after the engine came back), and a deploy that pulled a
//! pruned image again by its recorded digest (the swap's `pulled` step).
//! When a deployment of a service whose image is a reference ends, when a
//! job removed a container (an updated service's old one goes after its
//! deployment ended), and on `berthctl images prune`, the pulled images that
//! no record of the current and last `keep_previous` generations of any
//! service names and no container of berth's runs
//! (`berth_core::images::prune_verdicts`) are removed, never forced: by id,
//! or, when every tag the engine has for one is a reference berth pulled it
//! by, by untagging each. The engine refuses an image any container uses,
//! or one another tag names; such an image simply stays (logged at debug).
//! Every removal is an event and a log line naming the image, its reference
//! and why it was prunable; a removed image leaves the pulled list.
//!
//! Never removed: an image berth did not pull (built, loaded, or in the
//! engine before berth needed it), and anything at all while berth cannot
//! read the pulled list or a kept generation's record (it could not tell
//! what is kept).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_core::event::EventKind;
use berth_core::images::{
    Holders, ImageOrigin, ImageRow, ImagesResponse, PruneResponse, PrunedImage, PulledImage,
    Verdict, prune_verdicts,
};
use berth_core::runtime::{ImageInfo, LABEL_IMAGE_DIGEST, Runtime, RuntimeError};
use berth_core::spec::ImageSource;
use berth_core::store::Store;

use super::Agent;
use crate::jobs::Job;
use crate::{Env, Reply};

/// The loop's side of pruning: one prune job at a time.
#[derive(Default)]
pub(crate) struct Pruning {
    running: bool,
    /// Another prune was asked for while one ran: run it after.
    again: bool,
    /// `berthctl images prune` callers waiting for the running job (and,
    /// with `again`, for the next one).
    replies: Vec<Reply<PruneResponse>>,
    next_replies: Vec<Reply<PruneResponse>>,
}

/// What a prune job did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Removed: the image and why it was prunable.
    pub removed: Vec<(PulledImage, String)>,
    /// Prunable, but the engine would not remove it: the image and why.
    pub kept: Vec<(PulledImage, String)>,
    /// No longer in the engine (removed outside berth): forgotten.
    pub gone: Vec<String>,
    pub problems: Vec<String>,
}

/// `sha256:0123456789ab` → `0123456789ab`.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// The engine's refusal to remove an image that is used or otherwise
/// named (HTTP 409: a container uses it, another repository tags it):
/// the image stays, which is no error.
fn in_use(e: &RuntimeError) -> bool {
    match e {
        RuntimeError::Refused { message, .. } => {
            let m = message.to_ascii_lowercase();
            [
                "conflict",
                "in use",
                "being used",
                "must be forced",
                "is using",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// Removes each prunable image by id (never forced).
pub(crate) async fn run<R: Runtime>(
    runtime: &R,
    candidates: Vec<(PulledImage, String)>,
) -> Outcome {
    let mut out = Outcome::default();
    for (image, why) in candidates {
        let info = match runtime.inspect_image(&image.id).await {
            Err(e) => {
                out.problems
                    .push(format!("cannot inspect image {}: {e}", image.reference()));
                continue;
            }
            Ok(None) => {
                out.gone.push(image.id.clone());
                continue;
            }
            Ok(Some(info)) => info,
        };
        match remove(runtime, &image, &info).await {
            Ok(()) => out.removed.push((image, why)),
            Err(e) if in_use(&e) => {
                tracing::debug!(
                    image = image.id,
                    reference = image.reference(),
                    error = %e,
                    "a prunable image stays: the engine will not remove it unforced"
                );
                out.kept.push((image, format!("the engine keeps it: {e}")));
            }
            Err(e) => {
                out.problems
                    .push(format!("cannot remove image {}: {e}", image.reference()));
                out.kept.push((image, e.to_string()));
            }
        }
    }
    out
}

/// Removes `image`, never forced: by id; or, when the engine tags it under
/// several references, all of them ones berth pulled it by (the engine
/// refuses to remove such an image by id unforced), by untagging each (the
/// last untag removes the image). A tag berth did not pull keeps it.
async fn remove<R: Runtime>(
    runtime: &R,
    image: &PulledImage,
    info: &ImageInfo,
) -> Result<(), RuntimeError> {
    let all_berths = info.tags.len() > 1 && info.tags.iter().all(|t| image.references.contains(t));
    if all_berths {
        for tag in &info.tags {
            runtime.remove_image(tag).await?;
        }
        if runtime.inspect_image(&image.id).await?.is_none() {
            return Ok(());
        }
    }
    runtime.remove_image(&image.id).await
}

fn pruned(image: &PulledImage, reason: &str) -> PrunedImage {
    PrunedImage {
        id: image.id.clone(),
        reference: image.reference().to_string(),
        reason: reason.to_string(),
    }
}

/// What the loop knows about images, read without the engine.
struct Known {
    pulled: Vec<PulledImage>,
    holders: Holders,
    /// What could not be read: nothing is prunable then.
    problems: Vec<String>,
}

impl<E: Env> Agent<E> {
    /// Notes the images an apply's resolve pulled (their services'
    /// references, from the pending apply).
    pub(super) fn note_apply_pulls(
        &mut self,
        apply_id: u64,
        results: &[Result<crate::images::Resolved, RuntimeError>],
    ) {
        let Some(pending) = self.pending.get(&apply_id) else {
            return;
        };
        let pulls: Vec<(String, String, crate::images::Resolved)> = pending
            .req
            .services
            .iter()
            .zip(results)
            .filter_map(|(spec, r)| match (r, &spec.image) {
                (Ok(r), ImageSource::Ref(reference)) if r.pulled => {
                    Some((spec.name.clone(), reference.clone(), r.clone()))
                }
                _ => None,
            })
            .collect();
        for (service, reference, resolved) in pulls {
            self.note_pull(&service, &reference, &resolved);
        }
    }

    /// Notes the image a record's resolve (one recorded while the engine
    /// was away) pulled.
    pub(super) fn note_record_pull(
        &mut self,
        service: &str,
        generation: u64,
        result: &Result<crate::images::Resolved, RuntimeError>,
    ) {
        let Ok(resolved) = result else { return };
        if !resolved.pulled {
            return;
        }
        let image = self.services.get(service).and_then(|svc| {
            [&svc.current, &svc.target]
                .into_iter()
                .find(|d| d.generation == generation)
                .map(|d| d.spec.image.clone())
        });
        if let Some(ImageSource::Ref(reference)) = image {
            self.note_pull(service, &reference, resolved);
        }
    }

    /// Notes the image a deploy pulled again by its recorded digest
    /// (`reference`, `repo@sha256:...`) because it was no longer in the
    /// engine (pruned since, e.g. before a rollback to it).
    pub(super) fn note_swap_pull(&mut self, service: &str, reference: &str) {
        let id = self.services.get(service).and_then(|svc| {
            svc.create
                .as_ref()
                .filter(|c| c.labels.get(LABEL_IMAGE_DIGEST).map(String::as_str) == Some(reference))
                .map(|c| c.spec.image.clone())
        });
        let Some(id) = id else { return };
        let resolved = crate::images::Resolved {
            id,
            digest: Some(reference.to_string()),
            pulled: true,
        };
        self.note_pull(service, reference, &resolved);
    }

    fn note_pull(&mut self, service: &str, reference: &str, resolved: &crate::images::Resolved) {
        if resolved.id.is_empty() {
            return;
        }
        let image = PulledImage {
            id: resolved.id.clone(),
            references: vec![reference.to_string()],
            digest: resolved.digest.clone(),
            service: service.to_string(),
            pulled_at_ms: self.env.now_ms(),
        };
        match self.env.store().note_pulled(&image) {
            Ok(()) => tracing::info!(
                service,
                reference,
                image = resolved.id,
                "noted a pulled image (pruning may remove it once no kept record names it)"
            ),
            Err(e) => tracing::error!(
                service,
                reference,
                image = resolved.id,
                error = %e,
                "cannot note a pulled image; pruning will never remove it"
            ),
        }
    }

    /// The pulled list, and which records and containers hold images.
    fn known_images(&self) -> Known {
        let store = self.env.store();
        let mut problems = Vec::new();
        let pulled = store.pulled_images().unwrap_or_else(|e| {
            problems.push(e.to_string());
            Vec::new()
        });
        let mut holders = Holders::default();
        for (name, (path, error)) in &self.unreadable {
            problems.push(format!("{name}'s record cannot be read ({path}: {error})"));
        }
        let back = u64::try_from(self.cfg.keep_previous).unwrap_or(u64::MAX);
        for (name, svc) in &self.services {
            // The kept generations one by one: a record that cannot be read
            // is a problem (a history read would skip it, and the image it
            // names would look unkept); one pruned from the history names
            // nothing any more.
            let newest = svc.current.generation;
            for generation in newest.saturating_sub(back).max(1)..newest {
                match store.record(name, generation) {
                    Ok(Some(d)) => {
                        if let Some(id) = &d.image_id {
                            holders.add_record(id, name, d.generation);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => problems.push(format!(
                        "cannot read generation {generation} of {name}: {e}"
                    )),
                }
            }
            for d in [&svc.current, &svc.target] {
                if let Some(id) = &d.image_id {
                    holders.add_record(id, name, d.generation);
                }
            }
            let container = self.container_of(name);
            for d in [&svc.current, &svc.target] {
                if let (Some(c), Some(id)) = (container, &d.image_id)
                    && crate::state::made_from(d, c)
                {
                    holders.add_container(id, name);
                }
            }
        }
        Known {
            pulled,
            holders,
            problems,
        }
    }

    /// Verdicts on every pulled image; none prunable while something could
    /// not be read.
    fn verdicts(&self, known: &Known) -> Vec<Verdict> {
        let mut verdicts = prune_verdicts(&known.pulled, &known.holders, self.cfg.keep_previous);
        if !known.problems.is_empty() {
            for v in verdicts.iter_mut().filter(|v| v.prunable) {
                v.prunable = false;
                v.why = format!(
                    "nothing is pruned while berth cannot read what it keeps: {}",
                    known.problems.join("; ")
                );
            }
        }
        verdicts
    }

    /// After a deployment of a service with a reference image ended: prune
    /// what may be pruned.
    pub(super) fn prune_after_deployment(&mut self, image: &ImageSource) {
        if matches!(image, ImageSource::Ref(r) if !r.is_empty()) && self.a_pulled_image_left_use() {
            self.prune_images(None);
        }
    }

    /// After a job removed a container (one set aside during an update is
    /// removed once its successor is judged, after the deployment ended):
    /// the image it ran may be prunable only now.
    pub(super) fn prune_after_removal(&mut self) {
        if self.a_pulled_image_left_use() {
            self.prune_images(None);
        }
    }

    /// Whether some pulled image is no service's current or target image
    /// any more: only then may a prune find something, so only then are
    /// the services' histories read (a cold apply of many services reads
    /// none of them).
    fn a_pulled_image_left_use(&self) -> bool {
        let pulled = match self.env.store().pulled_images() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pulled-images list; nothing is pruned");
                return false;
            }
        };
        let in_use: BTreeSet<&str> = self
            .services
            .values()
            .flat_map(|s| [&s.current, &s.target])
            .filter_map(|d| d.image_id.as_deref())
            .collect();
        pulled.iter().any(|p| !in_use.contains(p.id.as_str()))
    }

    /// `berthctl images prune`: with `dry_run`, says what a prune would
    /// remove; else prunes (after the running prune, if one runs) and
    /// answers with what it removed.
    pub(super) fn request_prune(
        &mut self,
        dry_run: bool,
        actor: &str,
        reply: Reply<PruneResponse>,
    ) {
        if dry_run {
            let known = self.known_images();
            let verdicts = self.verdicts(&known);
            let removed = verdicts
                .iter()
                .filter(|v| v.prunable)
                .map(|v| pruned(&v.image, &v.why))
                .collect();
            let _ = reply.send(Ok(PruneResponse {
                dry_run: true,
                removed,
                kept: Vec::new(),
                problems: known.problems,
            }));
            return;
        }
        tracing::info!(actor, "pruning pulled images on request");
        self.prune_images(Some(reply));
    }

    fn prune_images(&mut self, reply: Option<Reply<PruneResponse>>) {
        if self.pruning.running {
            self.pruning.again = true;
            self.pruning.next_replies.extend(reply);
            return;
        }
        self.pruning.replies.extend(reply);
        let known = self.known_images();
        for p in &known.problems {
            tracing::warn!(problem = p, "pruning pulled images: nothing is pruned");
        }
        let candidates: Vec<(PulledImage, String)> = self
            .verdicts(&known)
            .into_iter()
            .filter(|v| v.prunable)
            .map(|v| (v.image, v.why))
            .collect();
        if candidates.is_empty() {
            let problems = known.problems;
            for r in std::mem::take(&mut self.pruning.replies) {
                let _ = r.send(Ok(PruneResponse {
                    problems: problems.clone(),
                    ..Default::default()
                }));
            }
            return;
        }
        self.pruning.running = true;
        self.spawn(Job::PruneImages { candidates });
    }

    /// A prune job's outcome: events, log lines, the pulled list, replies.
    pub(super) fn images_pruned(&mut self, out: Outcome) {
        self.pruning.running = false;
        for (image, why) in &out.removed {
            tracing::info!(
                image = image.id,
                reference = image.reference(),
                reason = why,
                "pruned a pulled image"
            );
            self.emit(EventKind::ContainerAction {
                service: image.service.clone(),
                action: "pruned image".into(),
                container: format!("{} ({})", image.reference(), short_id(&image.id)),
                reason: why.clone(),
            });
        }
        for p in &out.problems {
            tracing::warn!(problem = p, "pruning pulled images");
        }
        let forget: Vec<String> = out
            .removed
            .iter()
            .map(|(i, _)| i.id.clone())
            .chain(out.gone.iter().cloned())
            .collect();
        let mut problems = out.problems;
        if !forget.is_empty()
            && let Err(e) = self.env.store().forget_pulled(&forget)
        {
            tracing::error!(error = %e, "cannot update the pulled-images list after a prune");
            problems.push(e.to_string());
        }
        let response = PruneResponse {
            dry_run: false,
            removed: out.removed.iter().map(|(i, w)| pruned(i, w)).collect(),
            kept: out.kept.iter().map(|(i, w)| pruned(i, w)).collect(),
            problems,
        };
        for r in std::mem::take(&mut self.pruning.replies) {
            let _ = r.send(Ok(response.clone()));
        }
        if std::mem::take(&mut self.pruning.again) {
            let waiting = std::mem::take(&mut self.pruning.next_replies);
            self.pruning.replies.extend(waiting);
            // `prune_images` takes the replies it finds (none waiting is
            // fine: an automatic prune).
            self.prune_images(None);
        }
    }

    /// `berthctl images`: every image berth knows, with who uses it and
    /// whether it is prunable. The engine is asked off the loop.
    pub(super) fn list_images(&mut self, reply: Reply<ImagesResponse>) {
        let known = self.known_images();
        let verdicts = self.verdicts(&known);
        let query = ListQuery {
            keep_previous: self.cfg.keep_previous,
            verdicts,
            holders: known.holders,
            problems: known.problems,
        };
        let env = Arc::clone(&self.env);
        tokio::spawn(async move {
            let response = query.run(env.runtime()).await;
            let _ = reply.send(response.map_err(crate::AgentError::from));
        });
    }
}

/// What `berthctl images` needs from the engine, and what the loop knew.
struct ListQuery {
    keep_previous: usize,
    verdicts: Vec<Verdict>,
    holders: Holders,
    problems: Vec<String>,
}

impl ListQuery {
    async fn run<R: Runtime>(self, runtime: &R) -> Result<ImagesResponse, RuntimeError> {
        let built = runtime.list_images("berth-build/").await?;
        let mut rows: BTreeMap<String, ImageRow> = BTreeMap::new();
        let row = |id: &str, origin: ImageOrigin, prunable: bool, why: String| ImageRow {
            id: id.to_string(),
            references: Vec::new(),
            digest: None,
            origin,
            present: false,
            used_by: Vec::new(),
            records: Vec::new(),
            prunable,
            why,
        };
        for v in &self.verdicts {
            let mut r = row(&v.image.id, ImageOrigin::Pulled, v.prunable, v.why.clone());
            r.references = v.image.references.clone();
            r.digest = v.image.digest.clone();
            rows.insert(v.image.id.clone(), r);
        }
        for b in &built {
            rows.entry(b.id.clone()).or_insert_with(|| {
                row(
                    &b.id,
                    ImageOrigin::Built,
                    false,
                    "built by berth: removed when no record of its service's history uses it"
                        .into(),
                )
            });
        }
        for id in self.holders.records.keys() {
            rows.entry(id.clone()).or_insert_with(|| {
                row(
                    id,
                    ImageOrigin::Other,
                    false,
                    "not pulled by berth (loaded, or in the engine before berth needed it): berth never removes it"
                        .into(),
                )
            });
        }
        for (id, r) in rows.iter_mut() {
            if let Some(info) = runtime.inspect_image(id).await? {
                r.present = true;
                for t in info.tags.into_iter().filter(|t| t != id) {
                    if !r.references.contains(&t) {
                        r.references.push(t);
                    }
                }
                if r.digest.is_none() {
                    r.digest = info.digests.into_iter().next();
                }
            } else if r.origin == ImageOrigin::Pulled {
                r.prunable = false;
                r.why =
                    "no longer in the engine (removed outside berth); the next prune forgets it"
                        .into();
            }
            if let Some(s) = self.holders.containers.get(id) {
                r.used_by = s.iter().cloned().collect();
            }
            if let Some(recs) = self.holders.records.get(id) {
                r.records = recs.iter().cloned().collect();
            }
        }
        Ok(ImagesResponse {
            keep_previous: self.keep_previous,
            images: rows.into_values().collect(),
            problems: self.problems,
        })
    }
}
