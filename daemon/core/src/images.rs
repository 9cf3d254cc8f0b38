//! Images berth knows: the ones it pulled (kept in the state dir, so that
//! pruning removes only those), the records that name an image, and which of
//! the pulled ones may be pruned, decided here without I/O
//! ([`prune_verdicts`]). What `berthctl images` and `berthctl images prune`
//! show ([`ImagesResponse`], [`PruneResponse`]).
//!
//! The rule (issue 18): berth prunes only an image it pulled itself, never
//! one a record of the last `keep_previous` generations of any service (and
//! its current one) names, never one a container uses (the engine refuses
//! that, and berth never forces).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// An image the engine pulled because berth asked it to (the image was
/// missing when a deployment resolved its reference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledImage {
    /// The image id (`sha256:...`).
    pub id: String,
    /// The references berth pulled it by, oldest first.
    pub references: Vec<String>,
    /// `repository@sha256:...` the reference resolved to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The service whose deployment pulled it (first).
    pub service: String,
    /// When it was (last) pulled, Unix milliseconds.
    pub pulled_at_ms: u64,
}

impl PulledImage {
    /// The reference to name it by in messages: the newest one it was
    /// pulled by, else its id.
    pub fn reference(&self) -> &str {
        self.references.last().map_or(self.id.as_str(), |r| r)
    }
}

/// Merges a new pull of `image` into `list` (one entry per image id): a
/// reference not yet noted is added, the time and service moved on.
pub fn note_pulled(list: &mut Vec<PulledImage>, image: PulledImage) {
    match list.iter_mut().find(|p| p.id == image.id) {
        Some(known) => {
            for r in image.references {
                if !known.references.contains(&r) {
                    known.references.push(r);
                }
            }
            if image.digest.is_some() {
                known.digest = image.digest;
            }
            known.pulled_at_ms = known.pulled_at_ms.max(image.pulled_at_ms);
        }
        None => list.push(image),
    }
}

/// A record that names an image: service and generation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordRef {
    pub service: String,
    pub generation: u64,
}

/// What keeps an image: the records within the kept generations that name
/// it, and the services whose container runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    /// image id → records (of the current and last `keep_previous`
    /// generations of each service) naming it.
    pub records: BTreeMap<String, BTreeSet<RecordRef>>,
    /// image id → services whose container runs it.
    pub containers: BTreeMap<String, BTreeSet<String>>,
}

impl Holders {
    pub fn add_record(&mut self, image_id: &str, service: &str, generation: u64) {
        if image_id.is_empty() {
            return;
        }
        self.records
            .entry(image_id.to_string())
            .or_default()
            .insert(RecordRef {
                service: service.to_string(),
                generation,
            });
    }

    pub fn add_container(&mut self, image_id: &str, service: &str) {
        if image_id.is_empty() {
            return;
        }
        self.containers
            .entry(image_id.to_string())
            .or_default()
            .insert(service.to_string());
    }
}

/// Whether a pulled image may be pruned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub image: PulledImage,
    pub prunable: bool,
    pub why: String,
}

/// For each pulled image: prunable or not, and why. An image a kept record
/// names, or a container runs, is kept; the rest is prunable (the engine
/// may still refuse: a container berth does not manage may use it).
pub fn prune_verdicts(
    pulled: &[PulledImage],
    holders: &Holders,
    keep_previous: usize,
) -> Vec<Verdict> {
    pulled
        .iter()
        .map(|p| {
            let records = holders.records.get(&p.id);
            let containers = holders.containers.get(&p.id);
            let (prunable, why) = if let Some(c) = containers.filter(|c| !c.is_empty()) {
                (
                    false,
                    format!(
                        "in use by {}",
                        c.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                )
            } else if let Some(r) = records.filter(|r| !r.is_empty()) {
                (
                    false,
                    format!(
                        "named by {} (within the current and {keep_previous} previous generation(s) kept)",
                        r.iter()
                            .map(|r| format!("{}-{}", r.service, r.generation))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            } else {
                (
                    true,
                    format!(
                        "pulled by berth, no container of berth's uses it and no record of the current and {keep_previous} previous generation(s) of any service names it"
                    ),
                )
            };
            Verdict {
                image: p.clone(),
                prunable,
                why,
            }
        })
        .collect()
}

/// Where berth knows an image from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageOrigin {
    /// berth pulled it: pruning may remove it.
    Pulled,
    /// berth built it (`berth-build/<service>:<hash>`): collected when no
    /// record of its service's history uses it.
    Built,
    /// A record names it, but berth neither pulled nor built it (loaded,
    /// or in the engine before berth needed it): never removed by berth.
    Other,
}

/// One image in `berthctl images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRow {
    /// The image id (`sha256:...`).
    pub id: String,
    /// Its tags in the engine (and, for a pulled image the engine no
    /// longer tags, the references berth pulled it by).
    pub references: Vec<String>,
    /// `repository@sha256:...` when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub origin: ImageOrigin,
    /// The engine has it now (false: removed outside berth).
    pub present: bool,
    /// Services whose container runs it.
    pub used_by: Vec<String>,
    /// Records of the kept generations naming it.
    pub records: Vec<RecordRef>,
    pub prunable: bool,
    /// Why it is (or is not) prunable.
    pub why: String,
}

/// `GET /v1/images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagesResponse {
    /// `[images] keep_previous`: generations kept besides the current one.
    pub keep_previous: usize,
    pub images: Vec<ImageRow>,
    /// What berth could not read (the pulled-images file, a history):
    /// nothing is prunable while it cannot tell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One image a prune removed, or left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedImage {
    pub id: String,
    pub reference: String,
    /// Why it was prunable (removed), or why it stayed.
    pub reason: String,
}

/// `POST /v1/images/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneResponse {
    pub dry_run: bool,
    /// Removed (with `dry_run`: would be removed).
    pub removed: Vec<PrunedImage>,
    /// Prunable, but the engine refused to remove it (a container uses
    /// it, another tag names it): left as is.
    pub kept: Vec<PrunedImage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pulled(id: &str, reference: &str) -> PulledImage {
        PulledImage {
            id: id.into(),
            references: vec![reference.into()],
            digest: None,
            service: "web".into(),
            pulled_at_ms: 1,
        }
    }

    #[test]
    fn only_an_image_no_kept_record_or_container_holds_is_prunable() {
        let list = vec![
            pulled("sha256:a", "reg/web:1"),
            pulled("sha256:b", "reg/web:2"),
            pulled("sha256:c", "reg/web:3"),
        ];
        let mut h = Holders::default();
        h.add_record("sha256:b", "web", 2);
        h.add_record("sha256:c", "web", 3);
        h.add_container("sha256:c", "web");
        let v = prune_verdicts(&list, &h, 1);
        assert!(v[0].prunable, "{:?}", v[0]);
        assert!(v[0].why.contains("pulled by berth"), "{}", v[0].why);
        assert!(!v[1].prunable);
        assert!(v[1].why.contains("named by web-2"), "{}", v[1].why);
        assert!(!v[2].prunable);
        assert!(v[2].why.contains("in use by web"), "{}", v[2].why);
    }

    #[test]
    fn a_record_of_another_service_keeps_an_image() {
        let list = vec![pulled("sha256:a", "reg/web:1")];
        let mut h = Holders::default();
        h.add_record("sha256:a", "api", 7);
        let v = prune_verdicts(&list, &h, 2);
        assert!(!v[0].prunable);
        assert!(v[0].why.contains("api-7"), "{}", v[0].why);
    }

    #[test]
    fn a_second_pull_of_the_same_image_adds_its_reference_once() {
        let mut list = vec![pulled("sha256:a", "reg/web:1")];
        let mut again = pulled("sha256:a", "reg/web:latest");
        again.pulled_at_ms = 5;
        note_pulled(&mut list, again.clone());
        note_pulled(&mut list, again);
        note_pulled(&mut list, pulled("sha256:b", "reg/web:2"));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].references, ["reg/web:1", "reg/web:latest"]);
        assert_eq!(list[0].pulled_at_ms, 5);
        assert_eq!(list[0].reference(), "reg/web:latest");
    }

    #[test]
    fn empty_ids_are_never_held() {
        let mut h = Holders::default();
        h.add_record("", "task", 1);
        h.add_container("", "task");
        assert_eq!(h, Holders::default());
    }
}
