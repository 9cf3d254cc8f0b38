//! The test tiers of `cargo xtask test TIER`: which test binaries each runs
//! and what each needs from outside the repo.
//!
//! Every test binary of the workspace (from `cargo metadata`) falls in
//! exactly one tier, by the rule in [`tier_of`]; a new test file lands in a
//! tier without anyone listing it. The guard that keeps the rule honest is a
//! test below: a test file that asks for the engine or systemd
//! (`berth_prereq::require!`) must not sit in a tier that promises to need
//! neither.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Context, Result};
use berth_prereq::Need;
use clap::ValueEnum;
use serde_json::Value;

/// One slice of the test run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Tier {
    /// berth-core (unit, property and corpus tests) and the repo's own
    /// rules (xtask, berth-prereq). Needs no engine and no systemd.
    Core,
    /// The event loop against the recording fakes, and every adapter's
    /// in-process tests (API router, store, watcher, upstream, systemd
    /// parsing, berthctl). Needs no engine and no systemd.
    Loop,
    /// Against the real Docker engine: the runtime adapter and the
    /// integration tests that run berthd and berthctl, then schemathesis.
    Engine,
    /// Against a real `systemd --user` (and the engine): tests/tests/systemd*.
    System,
    /// Faulty applies: berthd SIGKILLed, the engine cut off (8 rounds).
    Chaos,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        f.write_str(&name)
    }
}

impl Tier {
    /// What this tier needs from outside the repo (checked before it runs;
    /// in CI a missing one fails the run).
    pub fn needs(self) -> &'static [Need] {
        match self {
            Tier::Core => &[Need::Corpus],
            Tier::Loop => &[],
            Tier::Engine => &[Need::Engine, Need::Busybox, Need::Registry],
            Tier::System => &[Need::Engine, Need::Busybox, Need::Systemd],
            Tier::Chaos => &[Need::Engine],
        }
    }

    /// Whether the tier runs berthd/berthctl binaries or the demo image.
    pub fn needs_binaries(self) -> bool {
        matches!(self, Tier::Engine | Tier::System | Tier::Chaos)
    }

    /// Whether its tests are run by nextest / cargo test (chaos is not).
    pub fn has_test_binaries(self) -> bool {
        !matches!(self, Tier::Chaos)
    }
}

/// A test binary as nextest names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binary {
    pub package: String,
    /// `lib`, `bin` or `test`.
    pub kind: String,
    pub name: String,
    /// The target's root source file.
    pub src: String,
}

impl Binary {
    /// nextest's binary id: `pkg` for a library's unit tests, `pkg::name`
    /// for an integration test, `pkg::bin/name` for a binary's.
    pub fn id(&self) -> String {
        match self.kind.as_str() {
            "lib" | "proc-macro" => self.package.clone(),
            "bin" => format!("{}::bin/{}", self.package, self.name),
            _ => format!("{}::{}", self.package, self.name),
        }
    }
}

/// The rule: where a test binary belongs.
pub fn tier_of(b: &Binary) -> Tier {
    match (b.package.as_str(), b.kind.as_str()) {
        ("berth-core" | "xtask" | "berth-prereq", _) => Tier::Core,
        ("berth-tests", "test") if b.name.starts_with("systemd") => Tier::System,
        ("berth-tests", "test") | ("berth-docker", "test") => Tier::Engine,
        _ => Tier::Loop,
    }
}

/// Every test binary of the workspace's members.
pub fn binaries(metadata: &Value) -> Result<Vec<Binary>> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata has no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for pkg in metadata["packages"].as_array().into_iter().flatten() {
        let Some(id) = pkg["id"].as_str() else {
            continue;
        };
        if !members.contains(id) {
            continue;
        }
        let package = pkg["name"].as_str().unwrap_or_default().to_owned();
        for t in pkg["targets"].as_array().into_iter().flatten() {
            let kinds: Vec<&str> = t["kind"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let Some(kind) = ["lib", "proc-macro", "bin", "test"]
                .into_iter()
                .find(|k| kinds.contains(k))
            else {
                continue; // benches, examples, build scripts
            };
            if t["test"].as_bool() == Some(false) {
                continue; // `test = false`: nextest lists no binary
            }
            out.push(Binary {
                package: package.clone(),
                kind: kind.to_owned(),
                name: t["name"].as_str().unwrap_or_default().to_owned(),
                src: t["src_path"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// What nextest runs for `tier`: the packages to build and a filter
/// expression naming exactly the tier's binaries.
pub fn selection(all: &[Binary], tier: Tier) -> (Vec<String>, String) {
    let mine: Vec<&Binary> = all.iter().filter(|b| tier_of(b) == tier).collect();
    let packages: BTreeSet<String> = mine.iter().map(|b| b.package.clone()).collect();
    let filter = mine
        .iter()
        .map(|b| format!("binary_id(={})", b.id()))
        .collect::<Vec<_>>()
        .join(" | ");
    (packages.into_iter().collect(), filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Vec<Binary> {
        let root = crate::workspace_root();
        let meta = crate::tidy::cargo_metadata(&root).expect("cargo metadata");
        binaries(&meta).expect("binaries")
    }

    fn find<'a>(all: &'a [Binary], id: &str) -> &'a Binary {
        all.iter()
            .find(|b| b.id() == id)
            .unwrap_or_else(|| panic!("no test binary {id}"))
    }

    #[test]
    fn known_binaries_land_in_their_tiers() {
        let all = workspace();
        assert_eq!(tier_of(find(&all, "berth-core")), Tier::Core);
        assert_eq!(tier_of(find(&all, "berth-core::heat_corpus")), Tier::Core);
        assert_eq!(tier_of(find(&all, "berth-agent::loop")), Tier::Loop);
        assert_eq!(tier_of(find(&all, "berth-api::tcp_flood")), Tier::Loop);
        assert_eq!(tier_of(find(&all, "berth-docker::engine")), Tier::Engine);
        assert_eq!(tier_of(find(&all, "berth-tests::engine")), Tier::Engine);
        assert_eq!(tier_of(find(&all, "berth-tests::systemd")), Tier::System);
        assert_eq!(
            tier_of(find(&all, "berth-tests::systemd_dbus")),
            Tier::System
        );
    }

    /// A tier that promises no engine and no systemd holds no test file
    /// that asks for them: a new engine test put in the wrong crate shows
    /// up here, not as a mysterious failure on a machine without Docker.
    #[test]
    fn tiers_without_engine_hold_no_test_that_requires_one() {
        let mut checked = 0;
        for b in workspace() {
            let tier = tier_of(&b);
            if b.kind != "test" {
                continue;
            }
            let text = std::fs::read_to_string(&b.src)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", b.src));
            let asks = |need: &str| {
                text.match_indices("require!(").any(|(at, _)| {
                    text[at..]
                        .split(')')
                        .next()
                        .is_some_and(|a| a.contains(need))
                })
            };
            let engine = asks("Engine") || asks("DemoImage") || asks("Busybox") || asks("Registry");
            let systemd = asks("Systemd");
            checked += 1;
            match tier {
                Tier::Core | Tier::Loop => assert!(
                    !engine && !systemd,
                    "{} ({}) is in the {tier} tier, which needs no engine or systemd, \
                     but it calls require!: move it to berth-tests or berth-docker, \
                     or change tiers::tier_of",
                    b.id(),
                    b.src
                ),
                Tier::Engine => assert!(
                    !systemd,
                    "{} needs systemd: name it systemd*.rs so it lands in the system tier",
                    b.id()
                ),
                Tier::System | Tier::Chaos => {}
            }
        }
        assert!(checked > 10, "only {checked} test files were checked");
    }

    #[test]
    fn every_tier_with_tests_selects_some_and_none_overlap() {
        let all = workspace();
        let mut seen = BTreeSet::new();
        for tier in Tier::value_variants() {
            let (packages, filter) = selection(&all, *tier);
            if !tier.has_test_binaries() {
                assert!(filter.is_empty(), "{tier} has test binaries: {filter}");
                continue;
            }
            assert!(!packages.is_empty(), "{tier} selects no package");
            for id in filter.split(" | ") {
                assert!(seen.insert(id.to_owned()), "{id} is in two tiers");
            }
        }
        assert_eq!(seen.len(), all.len(), "some binary is in no tier");
    }

    #[test]
    fn binary_ids_follow_nextest() {
        let b = |kind: &str, name: &str| Binary {
            package: "p-q".into(),
            kind: kind.into(),
            name: name.into(),
            src: String::new(),
        };
        assert_eq!(b("lib", "p_q").id(), "p-q");
        assert_eq!(b("bin", "berthd").id(), "p-q::bin/berthd");
        assert_eq!(b("test", "loop").id(), "p-q::loop");
    }
}
