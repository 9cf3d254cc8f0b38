//! `cargo xtask tidy`: architecture invariants checked against `cargo metadata`.
//!
//! berth-core is the pure core (specs, records, hash, plan): it must not pull
//! in an async runtime, the Docker client, HTTP stacks, D-Bus or file watchers,
//! not even transitively. Only normal dependencies count (dev and build
//! dependencies are fine).
//!
//! berth-agent is the loop: it reaches the engine, the store, systemd, the
//! config watcher, the host's files and upstream only through core's seam
//! traits (its `Env`),
//! so it must not depend on an adapter crate or the libraries behind them,
//! not even transitively, and its tests neither: its dev-dependencies (the
//! fakes) count too.
//!
//! Caveat: `cargo metadata` resolves features for the whole workspace at once,
//! so an optional dependency of one of core's dependencies that another member
//! switches on shows up here too. That errs on the strict side.

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
        ],
        with_dev: false,
        why: "berth-core must stay free of async runtimes, the Docker client, HTTP stacks, \
              D-Bus and file watchers",
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

/// `cargo xtask tidy`.
pub fn run(root: &Path) -> Result<()> {
    let metadata = cargo_metadata(root)?;
    let v = violations(&metadata)?;
    if !v.is_empty() {
        for (path, rule) in &v {
            eprintln!("tidy: forbidden dependency: {path} ({})", rule.why);
        }
        bail!(
            "{} forbidden dependenc{}: remove them from the Cargo.toml the path starts at",
            v.len(),
            if v.len() == 1 { "y" } else { "ies" }
        );
    }
    for rule in RULES {
        println!(
            "tidy: ok: {} {} none of {}",
            rule.package,
            if rule.with_dev {
                "(with its dev-dependencies) depends on"
            } else {
                "depends on"
            },
            rule.forbidden.join(", ")
        );
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

    /// The real invariants, on the real workspace: `cargo test -p xtask`
    /// runs them (berth-core's and berth-agent's).
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
