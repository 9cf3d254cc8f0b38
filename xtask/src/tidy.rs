//! `cargo xtask tidy`: the architecture rules a machine can check. It runs
//! as a test too (`cargo test -p xtask`), and `cargo xtask test` runs it
//! first.
//!
//! **Crate edges**, over the dependency graph `cargo metadata` resolves
//! ([`RULES`]; a forbidden crate reached through any path fails, named with
//! the shortest path to it):
//!
//! - berth-core, the pure core (specs, records, hash, plan), reaches no
//!   async runtime, Docker client, HTTP stack, D-Bus, file watcher or
//!   syscall crate. Only its normal dependencies count: its tests may
//!   use what they like, it never ships in berthd.
//! - berth-agent, the loop, reaches the engine, the store, systemd, the
//!   config watcher, the host's files and upstream only through core's seam
//!   traits (its `Env`): no adapter crate nor the libraries behind them.
//!   Its dev-dependencies count too: the loop tests run on berth-fakes, and
//!   an adapter in them would let a test lean on the real thing.
//! - berth-api reaches no berth-docker, berth-store, berth-upstream or
//!   bollard: handlers translate for the loop's `Handle` (and for
//!   `UpstreamApi`, a seam berthd adapts). Dev-dependencies count: its
//!   tests run on berth-fakes.
//! - berthctl reaches no berth-agent, berth-docker or berth-store: it is a
//!   client of the API. Dev-dependencies count: its tests answer it with a
//!   stub server, never a loop.
//! - berth-docker reaches no berth-store: the engine adapter knows
//!   containers, not how records are kept. Dev-dependencies count: its
//!   engine tests' harness (berth-tests) runs berthd as a process and links
//!   no store either.
//!
//! Caveat: `cargo metadata` resolves features for the whole workspace at
//! once, so an optional dependency of one of core's dependencies that
//! another member switches on shows up here too. That errs on the strict
//! side.
//!
//! **Core's source** ([`core_src`]): parsed with `syn`, `use` aliases,
//! groups and globs resolved; `std::fs`, `std::net` (but its address
//! types), `std::process`, `SystemTime::now` and `Instant::now` fail it
//! outside `#[cfg(test)]` code.
//!
//! **The loop tests** ([`agent_tests`]): every `#[tokio::test]` under
//! `daemon/agent/tests` has `start_paused = true`, and none of them calls
//! `std::thread::sleep`.
//!
//! **clippy.toml** ([`clippy_conf`]) still bans `std::env::set_var` and
//! `remove_var` (clippy enforces it; tidy keeps the ban from being dropped).

mod agent_tests;
mod clippy_conf;
mod core_src;
mod resolve;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A package whose dependency closure is policed.
pub struct Rule {
    pub package: &'static str,
    /// What the closure must not contain.
    pub forbidden: &'static [&'static str],
    /// The package's own dev-dependencies count too (and what they pull in).
    pub with_dev: bool,
    /// Why, for the error message.
    pub why: &'static str,
}

/// The packages whose dependency closure is policed.
pub const RULES: &[Rule] = &[
    Rule {
        package: "berth-core",
        forbidden: &[
            "tokio",
            "bollard",
            "hyper",
            "axum",
            "reqwest",
            "zbus",
            "zbus_systemd",
            "notify",
            "mio",
            "async-std",
            "smol",
            "tower",
            "hyper-util",
            "rustix",
            "nix",
            "socket2",
            "inotify",
        ],
        with_dev: false,
        why: "berth-core must stay free of async runtimes, the Docker client, HTTP stacks, \
              D-Bus, file watchers and syscall crates",
    },
    Rule {
        package: "berth-agent",
        forbidden: &[
            "berth-watch",
            "berth-sources",
            "berth-docker",
            "berth-store",
            "berth-systemd",
            "berth-upstream",
            "zbus",
            "notify",
            "bollard",
        ],
        with_dev: true,
        why: "berth-agent reaches every adapter through core's seam traits in its Env; \
              its tests use berth-fakes",
    },
    Rule {
        package: "berth-api",
        forbidden: &["berth-docker", "berth-store", "berth-upstream", "bollard"],
        with_dev: true,
        why: "the API translates requests for the loop's Handle (and UpstreamApi, a seam \
              berthd adapts); it drives no engine or store itself, and its tests use berth-fakes",
    },
    Rule {
        package: "berthctl",
        forbidden: &["berth-agent", "berth-docker", "berth-store"],
        with_dev: true,
        why: "berthctl is a client of the API: it neither runs the loop nor reads the engine \
              or the state dir itself, and its tests answer it with a stub server",
    },
    Rule {
        package: "berth-docker",
        forbidden: &["berth-store"],
        with_dev: true,
        why: "the engine adapter knows containers, not how records are kept; its engine tests' \
              harness runs berthd as a process",
    },
];

pub fn cargo_metadata(root: &Path) -> Result<Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let out = Command::new(&cargo)
        .arg("metadata")
        .arg("--format-version")
        .arg("1")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} metadata", cargo.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata output")
}

/// For each forbidden package reachable from `package` over normal
/// dependencies (and, `with_dev`, over `package`'s own dev-dependencies and
/// then their normal dependencies), one shortest path `[package, .., forbidden]`.
pub fn forbidden_paths(
    metadata: &Value,
    package: &str,
    forbidden: &[&str],
    with_dev: bool,
) -> Result<Vec<Vec<String>>> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .context("metadata: no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let members: HashSet<&str> = metadata["workspace_members"]
        .as_array()
        .context("metadata: no workspace_members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let start = members
        .iter()
        .copied()
        .find(|id| names.get(id) == Some(&package))
        .with_context(|| format!("{package} is not a workspace member"))?;

    // id -> ids of its normal (non-dev, non-build) dependencies; for the
    // start package with `with_dev`, its dev-dependencies too (a dev
    // dependency's own dev-dependencies are never built, so only here).
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .context("metadata: no resolve graph")?
    {
        let id = node["id"].as_str().context("metadata: node without id")?;
        let dev_too = with_dev && id == start;
        let deps = node["deps"]
            .as_array()
            .map(|deps| {
                deps.iter()
                    .filter(|d| {
                        d["dep_kinds"].as_array().is_some_and(|ks| {
                            ks.iter()
                                .any(|k| k["kind"].is_null() || (dev_too && k["kind"] == "dev"))
                        })
                    })
                    .filter_map(|d| d["pkg"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(id, deps);
    }

    // Breadth-first, so each reported path is a shortest one.
    let mut parent: HashMap<&str, &str> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    let mut found: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    while let Some(id) = queue.pop_front() {
        let name = names.get(id).copied().unwrap_or(id);
        if id != start && forbidden.contains(&name) {
            if !found.contains_key(name) {
                let mut path = vec![name.to_string()];
                let mut cur = id;
                while let Some(&p) = parent.get(cur) {
                    path.push(names.get(p).copied().unwrap_or(p).to_string());
                    cur = p;
                }
                path.reverse();
                found.insert(name, path);
            }
            // Don't look inside a forbidden package: its own deps are its business.
            continue;
        }
        for &dep in graph.get(id).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(dep) {
                parent.insert(dep, id);
                queue.push_back(dep);
            }
        }
    }
    Ok(found.into_values().collect())
}

/// All rule violations, as `a -> b -> c` strings, each with its rule.
pub fn violations(metadata: &Value) -> Result<Vec<(String, &'static Rule)>> {
    let mut out = Vec::new();
    for rule in RULES {
        for path in forbidden_paths(metadata, rule.package, rule.forbidden, rule.with_dev)? {
            out.push((path.join(" -> "), rule));
        }
    }
    Ok(out)
}

/// Everything tidy found wrong, one line each (empty: all rules hold).
pub struct Report {
    pub problems: Vec<String>,
    /// What was checked, for the "ok" lines.
    pub checked: Vec<String>,
}

/// Checks every rule on the workspace at `root`.
pub fn check(root: &Path) -> Result<Report> {
    let metadata = cargo_metadata(root)?;
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    for (path, rule) in violations(&metadata)? {
        problems.push(format!("forbidden dependency: {path} ({})", rule.why));
    }
    for rule in RULES {
        checked.push(format!(
            "{} {} none of {}",
            rule.package,
            if rule.with_dev {
                "(with its dev-dependencies) depends on"
            } else {
                "depends on"
            },
            rule.forbidden.join(", ")
        ));
    }
    let (found, files) = core_src::check(root)?;
    problems.extend(found.iter().map(ToString::to_string));
    checked.push(format!(
        "{} ({files} files) names none of std::fs, std::net, \
         std::process, SystemTime::now, Instant::now outside #[cfg(test)]",
        core_src::CORE_SRC
    ));
    problems.extend(clippy_conf::check(root)?);
    checked.push(format!(
        "clippy.toml bans {}",
        clippy_conf::BANNED_METHODS
            .iter()
            .map(|(path, _)| *path)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let (found, tests) = agent_tests::check(root)?;
    problems.extend(found.iter().map(ToString::to_string));
    checked.push(format!(
        "{}: all {tests} #[tokio::test]s start paused, and no file calls std::thread::sleep",
        agent_tests::AGENT_TESTS
    ));
    Ok(Report { problems, checked })
}

/// `cargo xtask tidy`.
pub fn run(root: &Path) -> Result<()> {
    let report = check(root)?;
    if !report.problems.is_empty() {
        for p in &report.problems {
            eprintln!("tidy: {p}");
        }
        bail!(
            "{} architecture rule{} broken (each line above names the place, the rule and why)",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        );
    }
    for c in &report.checked {
        println!("tidy: ok: {c}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(pkg: &str, kinds: &[Option<&str>]) -> Value {
        json!({
            "name": pkg,
            "pkg": pkg,
            "dep_kinds": kinds.iter().map(|k| json!({"kind": k, "target": null})).collect::<Vec<_>>(),
        })
    }

    fn meta(edges: &[(&str, Vec<Value>)]) -> Value {
        json!({
            "packages": edges.iter().map(|(n, _)| json!({"id": n, "name": n})).collect::<Vec<_>>(),
            "workspace_members": ["core"],
            "resolve": {
                "nodes": edges.iter().map(|(n, deps)| json!({"id": n, "deps": deps})).collect::<Vec<_>>(),
            },
        })
    }

    #[test]
    fn finds_shortest_transitive_path_over_normal_deps_only() {
        let m = meta(&[
            (
                "core",
                vec![
                    dep("a", &[None]),
                    dep("b", &[None]),
                    dep("devonly", &[Some("dev")]),
                    dep("buildonly", &[Some("build")]),
                    dep("both", &[Some("dev"), None]),
                ],
            ),
            ("a", vec![dep("c", &[None])]),
            ("b", vec![dep("tokio", &[None])]),
            ("c", vec![dep("tokio", &[None]), dep("hyper", &[None])]),
            ("devonly", vec![dep("axum", &[None])]),
            ("buildonly", vec![dep("mio", &[None])]),
            ("both", vec![]),
            ("tokio", vec![dep("mio", &[None])]),
            ("hyper", vec![]),
            ("axum", vec![]),
            ("mio", vec![]),
        ]);
        let paths = forbidden_paths(&m, "core", &["tokio", "hyper", "axum", "mio"], false)
            .expect("well-formed metadata");
        assert_eq!(
            paths,
            vec![
                vec!["core".to_string(), "a".into(), "c".into(), "hyper".into()],
                vec!["core".to_string(), "b".into(), "tokio".into()],
            ]
        );
    }

    #[test]
    fn clean_graph_and_unknown_package() {
        let m = meta(&[("core", vec![dep("a", &[None])]), ("a", vec![])]);
        assert!(
            forbidden_paths(&m, "core", &["tokio"], false)
                .expect("ok")
                .is_empty()
        );
        assert!(forbidden_paths(&m, "nope", &["tokio"], false).is_err());
    }

    /// With dev-dependencies: the package's own count, and what they pull in
    /// over normal edges; a dev-dependency's dev-dependencies do not.
    #[test]
    fn with_dev_follows_the_packages_own_dev_dependencies_only() {
        let m = meta(&[
            (
                "core",
                vec![dep("fakes", &[Some("dev")]), dep("lib", &[None])],
            ),
            (
                "fakes",
                vec![dep("adapter", &[None]), dep("tool", &[Some("dev")])],
            ),
            ("lib", vec![dep("helper", &[Some("dev")])]),
            ("adapter", vec![]),
            ("tool", vec![]),
            ("helper", vec![]),
        ]);
        let forbidden = ["adapter", "tool", "helper"];
        assert!(
            forbidden_paths(&m, "core", &forbidden, false)
                .expect("ok")
                .is_empty(),
            "dev edges are not followed without with_dev"
        );
        assert_eq!(
            forbidden_paths(&m, "core", &forbidden, true).expect("ok"),
            vec![vec!["core".to_string(), "fakes".into(), "adapter".into()]]
        );
    }

    /// The agent's rule names every adapter crate, the host files' one
    /// (berth-sources, reached through `Env::files`) included: a crate left
    /// off the list could come back under the loop unseen.
    #[test]
    fn the_agent_rule_forbids_every_adapter_crate() {
        let Some(rule) = RULES.iter().find(|r| r.package == "berth-agent") else {
            panic!("no rule for berth-agent");
        };
        assert!(rule.with_dev, "the agent's tests count too");
        for adapter in [
            "berth-watch",
            "berth-sources",
            "berth-docker",
            "berth-store",
            "berth-systemd",
            "berth-upstream",
        ] {
            assert!(
                rule.forbidden.contains(&adapter),
                "{adapter} is not forbidden"
            );
        }
    }

    /// A workspace of every policed package, with no dependencies but
    /// `package -> middle -> banned` (`dev`: the first edge is a
    /// dev-dependency).
    fn one_edge(package: &str, banned: &str, dev: bool) -> Value {
        let mut names: Vec<&str> = RULES.iter().map(|r| r.package).collect();
        names.extend(["middle", banned]);
        names.sort_unstable();
        names.dedup();
        let kind = if dev { Some("dev") } else { None };
        json!({
            "packages": names.iter().map(|n| json!({"id": n, "name": n})).collect::<Vec<_>>(),
            "workspace_members": RULES.iter().map(|r| r.package).collect::<Vec<_>>(),
            "resolve": {
                "nodes": names.iter().map(|n| {
                    let deps = match *n {
                        n if n == package => vec![dep("middle", &[kind])],
                        "middle" => vec![dep(banned, &[None])],
                        _ => vec![],
                    };
                    json!({"id": n, "deps": deps})
                }).collect::<Vec<_>>(),
            },
        })
    }

    /// One fixture per banned crate edge: the package reaching the crate,
    /// transitively, fails tidy with that path and that rule; through a
    /// dev-dependency only where the rule counts them.
    #[test]
    fn every_banned_edge_fails() {
        for rule in RULES {
            for &banned in rule.forbidden {
                let want = vec![(
                    format!("{} -> middle -> {banned}", rule.package),
                    rule.package,
                )];
                let got = |m: &Value| {
                    violations(m)
                        .expect("well-formed metadata")
                        .into_iter()
                        .map(|(path, r)| (path, r.package))
                        .collect::<Vec<_>>()
                };
                assert_eq!(got(&one_edge(rule.package, banned, false)), want);
                let dev = got(&one_edge(rule.package, banned, true));
                if rule.with_dev {
                    assert_eq!(dev, want, "{}'s dev-dependencies count", rule.package);
                } else {
                    assert_eq!(dev, [], "{}'s dev-dependencies do not count", rule.package);
                }
            }
        }
        // And a graph with none of them passes.
        assert!(
            violations(&one_edge("berth-core", "serde", false))
                .expect("well-formed metadata")
                .is_empty()
        );
    }

    /// Issue 14's crate edges, each a rule.
    #[test]
    fn the_architecture_edges_are_rules() {
        for (package, banned) in [
            (
                "berth-api",
                &["berth-docker", "berth-store", "berth-upstream", "bollard"][..],
            ),
            ("berthctl", &["berth-agent", "berth-docker", "berth-store"]),
            ("berth-docker", &["berth-store"]),
            (
                "berth-core",
                &["tokio", "bollard", "hyper", "axum", "zbus", "notify"],
            ),
        ] {
            let Some(rule) = RULES.iter().find(|r| r.package == package) else {
                panic!("no rule for {package}");
            };
            for b in banned {
                assert!(rule.forbidden.contains(b), "{package} may reach {b}");
            }
        }
    }

    /// The real invariants, on the real workspace: `cargo test -p xtask`
    /// runs them (every rule's).
    #[test]
    fn no_policed_package_has_forbidden_dependencies() {
        let root = crate::workspace_root();
        let metadata = cargo_metadata(&root).expect("cargo metadata");
        let v = violations(&metadata).expect("well-formed metadata");
        let paths: Vec<&str> = v.iter().map(|(p, _)| p.as_str()).collect();
        assert!(
            v.is_empty(),
            "forbidden dependencies:\n{}",
            paths.join("\n")
        );
    }
}
