//! Config changes: what a service's config sources looked like, whether they
//! changed, and what to do about it. Pure: berthd reads the files (see the
//! `berth-watch` crate) and passes the result in.
//!
//! The baseline is the newest record's [`ConfigState`] list: what the
//! service was last given. A change is decided per source, then the service
//! reacts once, with the strongest reaction among the changed sources
//! (`recreate` > `restart` > `signal`/`exec` > `none`): a new container sees
//! every change, a restart re-resolves every mount.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::confighash::changed_files;
use crate::hash::sha256_hex;
use crate::spec::{ConfigMount, OnChange, ServiceSpec};

/// One config source as it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ConfigState {
    pub source: String,
    pub target: String,
    /// The content hash; `None` when it could not be read (then `error` says why
    /// and the last good `files` are kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Relative path → digest of mode and content, to name changed files.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// `dev:ino` of the source as a bind mount resolves it (symlinks
    /// followed). Another value means the path now names another file or
    /// directory, which a running container cannot see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Why the source could not be read: the path and the OS error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ConfigState {
    /// A source that could not be read, keeping what was known of it.
    pub fn unreadable(mount: &ConfigMount, previous: Option<&ConfigState>, error: String) -> Self {
        ConfigState {
            source: mount.source.clone(),
            target: mount.target.clone(),
            hash: None,
            files: previous.map(|p| p.files.clone()).unwrap_or_default(),
            root: previous.and_then(|p| p.root.clone()),
            error: Some(error),
        }
    }
}

/// One source's part of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SourceChange {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_hash: Option<String>,
    /// Relative paths added, removed or modified.
    pub files: Vec<String>,
    /// The path now names another file or directory (replaced, or back after
    /// being missing): only a restart or a new container sees it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
}

/// What a RECONFIGURE record says about its cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ConfigChange {
    /// The service's combined config hash before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_hash: Option<String>,
    pub sources: Vec<SourceChange>,
    /// What was done: `restart`, `recreate`, `signal SIGHUP`, `exec ...`, `none`.
    pub reaction: String,
    /// The reaction in machine form, so an interrupted reconfigure can be
    /// resumed after a restart of berthd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ReactionPlan>,
    /// Asked for by an operator (`berthctl reconfigure`), not seen in the files.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

impl ConfigChange {
    /// Every changed file as `source/relative-path`.
    pub fn files(&self) -> Vec<String> {
        self.sources
            .iter()
            .flat_map(|s| {
                s.files
                    .iter()
                    .map(move |f| format!("{}/{f}", s.source.trim_end_matches('/')))
            })
            .collect()
    }
}

/// [`Reaction`] as stored in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionPlan {
    None,
    InPlace(Vec<OnChange>),
    Restart,
    Recreate,
}

impl From<&Reaction> for ReactionPlan {
    fn from(r: &Reaction) -> Self {
        match r {
            Reaction::None => ReactionPlan::None,
            Reaction::InPlace(s) => ReactionPlan::InPlace(s.clone()),
            Reaction::Restart => ReactionPlan::Restart,
            Reaction::Recreate => ReactionPlan::Recreate,
        }
    }
}

impl From<&ReactionPlan> for Reaction {
    fn from(r: &ReactionPlan) -> Self {
        match r {
            ReactionPlan::None => Reaction::None,
            ReactionPlan::InPlace(s) => Reaction::InPlace(s.clone()),
            ReactionPlan::Restart => Reaction::Restart,
            ReactionPlan::Recreate => Reaction::Recreate,
        }
    }
}

/// How the service reacts to a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Record only.
    None,
    /// Reload in place, in this order (each changed source's signal or exec,
    /// duplicates dropped).
    InPlace(Vec<OnChange>),
    Restart,
    Recreate,
}

impl Reaction {
    pub fn describe(&self) -> String {
        match self {
            Reaction::None => "none".into(),
            Reaction::Restart => "restart".into(),
            Reaction::Recreate => "recreate".into(),
            Reaction::InPlace(steps) => steps
                .iter()
                .map(OnChange::describe)
                .collect::<Vec<_>>()
                .join(", then "),
        }
    }
}

/// The outcome of comparing fresh reads with the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do (a `touch`, an identical rewrite, or an unreadable
    /// source already recorded as such).
    Unchanged,
    /// A source became unreadable (or its error changed): record it FAILED,
    /// leave the container as it is.
    Unreadable { errors: Vec<String> },
    Changed {
        change: ConfigChange,
        reaction: Reaction,
    },
}

/// The service's combined config hash: over each source's path, target and
/// hash, in spec order. `None` when it has no config or a source is unreadable.
pub fn combined_hash(states: &[ConfigState]) -> Option<String> {
    if states.is_empty() {
        return None;
    }
    let mut text = String::new();
    for s in states {
        text.push_str(&s.source);
        text.push('\0');
        text.push_str(&s.target);
        text.push('\0');
        text.push_str(s.hash.as_deref()?);
        text.push('\n');
    }
    Some(format!("sha256:{}", sha256_hex(text.as_bytes())))
}

/// The `io.berth.config-hash` label a new container of `spec` gets: the
/// combined hash of its `recreate` sources (`None` without any, or when one
/// is unreadable).
pub fn identity(spec: &ServiceSpec, states: &[ConfigState]) -> Option<String> {
    let recreate: Vec<ConfigState> = spec
        .config
        .iter()
        .zip(states)
        .filter(|(m, _)| m.on_change == OnChange::Recreate)
        .map(|(_, s)| s.clone())
        .collect();
    combined_hash(&recreate)
}

/// The baseline entry of `mount` in `old`, matched by source and target.
fn baseline<'a>(old: &'a [ConfigState], mount: &ConfigMount) -> Option<&'a ConfigState> {
    old.iter()
        .find(|s| s.source == mount.source && s.target == mount.target)
}

/// Compares fresh reads (`new`, one per `spec.config` entry, in order) with
/// the baseline `old`. `forced`: every source counts as changed.
pub fn decide(
    spec: &ServiceSpec,
    old: &[ConfigState],
    new: &[ConfigState],
    forced: bool,
) -> Decision {
    let errors: Vec<String> = new.iter().filter_map(|s| s.error.clone()).collect();
    if !errors.is_empty() {
        // Already recorded with the same errors: nothing new (no loop).
        let known = spec.config.iter().zip(new).all(|(m, n)| {
            n.error.is_none() || baseline(old, m).and_then(|o| o.error.as_ref()) == n.error.as_ref()
        });
        return if known && !forced {
            Decision::Unchanged
        } else {
            Decision::Unreadable { errors }
        };
    }
    let mut sources = Vec::new();
    let mut reactions: Vec<OnChange> = Vec::new();
    for (mount, fresh) in spec.config.iter().zip(new) {
        let before = baseline(old, mount);
        let was_unreadable = before.is_some_and(|b| b.error.is_some());
        let replaced = was_unreadable
            || before
                .is_some_and(|b| b.root.is_some() && fresh.root.is_some() && b.root != fresh.root);
        let old_hash = before.and_then(|b| b.hash.clone());
        let changed = forced || replaced || old_hash.as_ref() != fresh.hash.as_ref();
        if !changed {
            continue;
        }
        let files = match before {
            Some(b) => changed_files(&b.files, &fresh.files),
            None => fresh.files.keys().cloned().collect(),
        };
        let mut reaction = mount.on_change.clone();
        if replaced && reaction.in_place() {
            reaction = OnChange::Restart;
        }
        reactions.push(reaction);
        sources.push(SourceChange {
            source: mount.source.clone(),
            old_hash,
            new_hash: fresh.hash.clone(),
            files,
            replaced,
        });
    }
    if sources.is_empty() {
        return Decision::Unchanged;
    }
    let strongest = reactions.iter().map(OnChange::strength).max().unwrap_or(0);
    let reaction = match strongest {
        3 => Reaction::Recreate,
        2 => Reaction::Restart,
        1 => {
            let mut steps: Vec<OnChange> = Vec::new();
            for r in reactions.into_iter().filter(OnChange::in_place) {
                if !steps.contains(&r) {
                    steps.push(r);
                }
            }
            Reaction::InPlace(steps)
        }
        _ => Reaction::None,
    };
    let old_states: Vec<ConfigState> = spec
        .config
        .iter()
        .map(|m| baseline(old, m).cloned().unwrap_or_default())
        .collect();
    let change = ConfigChange {
        old_hash: combined_hash(&old_states),
        new_hash: combined_hash(new),
        sources,
        reaction: reaction.describe(),
        plan: Some(ReactionPlan::from(&reaction)),
        forced,
    };
    Decision::Changed { change, reaction }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ImageSource;

    fn mount(source: &str, on_change: OnChange) -> ConfigMount {
        ConfigMount {
            source: source.into(),
            target: format!("/etc/{}", source.trim_start_matches('/').replace('/', "_")),
            on_change,
        }
    }

    fn spec(mounts: Vec<ConfigMount>) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: ImageSource::Ref("x".into()),
            config: mounts,
            ..Default::default()
        }
    }

    fn state(m: &ConfigMount, files: &[(&str, &str)], root: &str) -> ConfigState {
        let files: BTreeMap<String, String> = files
            .iter()
            .map(|(p, d)| (p.to_string(), d.to_string()))
            .collect();
        ConfigState {
            source: m.source.clone(),
            target: m.target.clone(),
            hash: Some(format!(
                "sha256:{}",
                sha256_hex(format!("{files:?}").as_bytes())
            )),
            files,
            root: Some(root.into()),
            error: None,
        }
    }

    #[test]
    fn identical_content_is_unchanged() {
        let s = spec(vec![mount("/a", OnChange::Restart)]);
        let old = vec![state(&s.config[0], &[("x", "1")], "1:2")];
        assert_eq!(decide(&s, &old, &old.clone(), false), Decision::Unchanged);
    }

    #[test]
    fn a_content_change_names_the_files_and_uses_the_policy() {
        let s = spec(vec![mount("/a", OnChange::Signal("SIGHUP".into()))]);
        let old = vec![state(&s.config[0], &[("x", "1"), ("y", "1")], "1:2")];
        let new = vec![state(
            &s.config[0],
            &[("x", "2"), ("y", "1"), ("z", "1")],
            "1:2",
        )];
        let Decision::Changed { change, reaction } = decide(&s, &old, &new, false) else {
            panic!("expected a change");
        };
        assert_eq!(
            reaction,
            Reaction::InPlace(vec![OnChange::Signal("SIGHUP".into())])
        );
        assert_eq!(change.sources[0].files, vec!["x", "z"]);
        assert_eq!(change.files(), vec!["/a/x", "/a/z"]);
        assert_ne!(change.old_hash, change.new_hash);
        assert_eq!(change.reaction, "signal SIGHUP");
    }

    #[test]
    fn the_strongest_reaction_among_changed_sources_wins() {
        let s = spec(vec![
            mount("/a", OnChange::Signal("SIGHUP".into())),
            mount("/b", OnChange::Recreate),
            mount("/c", OnChange::Restart),
        ]);
        let old: Vec<_> = s
            .config
            .iter()
            .map(|m| state(m, &[("f", "1")], "1:1"))
            .collect();
        let mut new = old.clone();
        new[0] = state(&s.config[0], &[("f", "2")], "1:1");
        new[2] = state(&s.config[2], &[("f", "2")], "1:1");
        let Decision::Changed { reaction, change } = decide(&s, &old, &new, false) else {
            panic!("expected a change");
        };
        // /b (recreate) did not change: a restart is enough.
        assert_eq!(reaction, Reaction::Restart);
        assert_eq!(change.sources.len(), 2);
        new[1] = state(&s.config[1], &[("f", "2")], "1:1");
        let Decision::Changed { reaction, .. } = decide(&s, &old, &new, false) else {
            panic!("expected a change");
        };
        assert_eq!(reaction, Reaction::Recreate);
    }

    #[test]
    fn a_replaced_directory_escalates_an_in_place_reload_to_restart() {
        let s = spec(vec![mount("/a", OnChange::Exec(vec!["reload".into()]))]);
        let old = vec![state(&s.config[0], &[("x", "1")], "1:2")];
        let new = vec![state(&s.config[0], &[("x", "1")], "1:3")];
        let Decision::Changed { reaction, change } = decide(&s, &old, &new, false) else {
            panic!("expected a change");
        };
        assert_eq!(reaction, Reaction::Restart);
        assert!(change.sources[0].replaced);
        assert!(change.sources[0].files.is_empty());
    }

    #[test]
    fn an_unreadable_source_is_reported_once_then_its_return_reconfigures() {
        let s = spec(vec![mount("/a", OnChange::Signal("SIGHUP".into()))]);
        let good = vec![state(&s.config[0], &[("x", "1")], "1:2")];
        let err = "config source /a: cannot stat: No such file or directory (os error 2)";
        let missing = vec![ConfigState::unreadable(
            &s.config[0],
            Some(&good[0]),
            err.into(),
        )];
        assert_eq!(
            decide(&s, &good, &missing, false),
            Decision::Unreadable {
                errors: vec![err.into()]
            }
        );
        // Recorded: the same error again is nothing new.
        assert_eq!(decide(&s, &missing, &missing, false), Decision::Unchanged);
        // Back with the very same content: the container still sees the old
        // (deleted) directory, so it is restarted.
        let Decision::Changed { reaction, change } = decide(&s, &missing, &good, false) else {
            panic!("expected a change");
        };
        assert_eq!(reaction, Reaction::Restart);
        assert!(change.sources[0].replaced);
    }

    #[test]
    fn forced_reconfigure_applies_every_policy() {
        let s = spec(vec![
            mount("/a", OnChange::Signal("SIGHUP".into())),
            mount("/b", OnChange::Exec(vec!["r".into()])),
            mount("/c", OnChange::None),
        ]);
        let old: Vec<_> = s
            .config
            .iter()
            .map(|m| state(m, &[("f", "1")], "1:1"))
            .collect();
        let Decision::Changed { reaction, change } = decide(&s, &old, &old.clone(), true) else {
            panic!("expected a change");
        };
        assert!(change.forced);
        assert_eq!(
            reaction,
            Reaction::InPlace(vec![
                OnChange::Signal("SIGHUP".into()),
                OnChange::Exec(vec!["r".into()])
            ])
        );
    }

    #[test]
    fn identity_covers_only_recreate_sources() {
        let s = spec(vec![
            mount("/a", OnChange::Restart),
            mount("/b", OnChange::Recreate),
        ]);
        let one: Vec<_> = s
            .config
            .iter()
            .map(|m| state(m, &[("f", "1")], "1:1"))
            .collect();
        let mut two = one.clone();
        two[0] = state(&s.config[0], &[("f", "2")], "1:1");
        assert_eq!(identity(&s, &one), identity(&s, &two));
        two[1] = state(&s.config[1], &[("f", "2")], "1:1");
        assert_ne!(identity(&s, &one), identity(&s, &two));
        let none = spec(vec![mount("/a", OnChange::Restart)]);
        assert_eq!(identity(&none, &one[..1]), None);
        assert_eq!(combined_hash(&[]), None);
    }
}
