//! Taking over a TripleO node's container files: paunch's
//! container-startup-config (`{name: config}` per step), the step tree of
//! tripleo_container_manage (`step_N/<name>.json`) and Heat `docker-cmd`
//! deployments become berth service specs, with paunch's meaning kept.
//!
//! Pure: the caller reads the files and hands in their text (and a way to
//! look up the importing shell's environment); this module converts, orders
//! and renders. It never drops a key silently: anything without a berth
//! equivalent is a [`Problem`] in the warnings, naming file, container and
//! key. Every spec it returns has been rendered and read back by berth's own
//! parser, so what `berthctl import` writes is what `berthctl check` reads.

mod heat;
mod order;
mod paunch;
mod render;

use std::collections::BTreeMap;

pub use render::render;

use crate::parse::{Node, Value, parse_services, parse_tree};
use crate::spec::ServiceSpec;

/// One input file: the name messages show it by, and its text.
#[derive(Debug, Clone)]
pub struct Input {
    pub file: String,
    pub text: String,
}

/// `--image-map FROM=TO`: an image reference replaced as the specs are
/// written (`*=TO` replaces every image), e.g. to stand a locally built
/// image in for a registry's on a test node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMap(Vec<(String, String)>);

impl ImageMap {
    /// Reads `FROM=TO` entries; the first matching entry wins.
    pub fn parse(entries: &[String]) -> Result<ImageMap, String> {
        let mut out = Vec::new();
        for e in entries {
            match e.split_once('=') {
                Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                    out.push((from.to_string(), to.to_string()));
                }
                _ => {
                    return Err(format!(
                        "--image-map {e:?}: expected FROM=TO, e.g. \
                         quay.io/tripleomaster/openstack-keystone:current-tripleo=berth-demo:latest \
                         (or *=berth-demo:latest for every image)"
                    ));
                }
            }
        }
        Ok(ImageMap(out))
    }

    fn apply(&self, image: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(from, _)| from == "*" || from == image)
            .map(|(_, to)| to.as_str())
    }
}

/// What the conversion may consult beyond the files.
pub struct Options<'a> {
    pub image_map: &'a ImageMap,
    /// The importing shell's environment: paunch passes an `environment`
    /// entry without a value (`["TRIPLEO_MINOR_UPDATE"]`, `{K: ''}`)
    /// through from the shell that runs it.
    pub host_env: &'a dyn Fn(&str) -> Option<String>,
}

/// A warning or an error, with where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    /// The container (mapping key) it is about; empty for the file itself.
    pub container: String,
    /// The container's key it is about (`volumes[2]`, `environment.FOO`).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.container.is_empty() {
            write!(f, ": container {}", self.container)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one import (never empty), in input order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ImportErrors(pub Vec<Problem>);

/// One imported service and what the operator should know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub spec: ServiceSpec,
    /// The input file it came from.
    pub file: String,
    /// Its step: paunch's, or for Heat the deployment's place in the file
    /// (deployments run one after another).
    pub step: u32,
    /// The Heat deployment it came from (name or id).
    pub deployment: Option<String>,
    /// Its keys without a berth equivalent, values taken from the shell, ...
    pub warnings: Vec<Problem>,
    /// What berth does natively that the file did by hand (a dropped
    /// `TRIPLEO_CONFIG_HASH`, a watched puppet-generated mount).
    pub notes: Vec<String>,
}

impl Imported {
    /// The service file berth writes for it: a header saying where it came
    /// from and every warning as a comment, then the spec.
    pub fn file_text(&self, command: &str) -> String {
        let mut out = format!(
            "# Imported by `berthctl import {command}` from {} (container {}{}).\n",
            self.file,
            self.spec.name,
            match &self.deployment {
                Some(d) => format!(" of deployment {}", one_line(d)),
                None => format!(", step {}", self.step),
            }
        );
        for n in &self.notes {
            out.push_str(&format!("# note: {}\n", one_line(n)));
        }
        for w in &self.warnings {
            let key = if w.key.is_empty() {
                String::new()
            } else {
                format!("{}: ", w.key)
            };
            out.push_str(&format!("# warning: {key}{}\n", one_line(&w.message)));
        }
        out.push_str(&render(&self.spec));
        out
    }
}

/// A comment stays one line whatever a file's text holds.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The result of one import: the services in start order (step, then
/// `start_order`, then name) and the warnings about the files themselves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Import {
    pub services: Vec<Imported>,
    pub warnings: Vec<Problem>,
}

/// A container found in a file, before conversion.
struct Found<'n> {
    name: String,
    node: &'n Node,
    file: String,
    step: u32,
    /// The Heat deployment it came from, and its inputs.
    deployment: Option<String>,
    inputs: BTreeMap<String, String>,
}

/// `import paunch FILE...`: each file is one step's `{name: config}` map
/// (JSON or YAML), or a step mapping `{step_N: {name: config}}`. A file's
/// step is the `step_N` in its name when it has one, else its position
/// among the arguments (1-based).
pub fn paunch_files(inputs: &[Input], opts: &Options<'_>) -> Result<Import, ImportErrors> {
    let mut errors = Vec::new();
    let trees = read_trees(inputs, &mut errors);
    let mut found = Vec::new();
    let mut file_warnings = Vec::new();
    for (i, (input, tree)) in trees.iter().enumerate() {
        let Some(root) = tree else { continue };
        let default_step = step_in(&input.file).unwrap_or(i as u32 + 1);
        let Value::Map(entries) = &root.value else {
            errors.push(file_problem(
                input,
                root,
                format!(
                    "expected a map of containers, {{name: {{image: ...}}}} (got {})",
                    root.describe()
                ),
            ));
            continue;
        };
        if !entries.is_empty() && entries.iter().all(|e| step_key(&e.key).is_some()) {
            for e in entries {
                let step = step_key(&e.key).unwrap_or(default_step);
                containers_of(input, &e.value, step, &mut found, &mut errors);
            }
        } else if is_container(root) {
            errors.push(file_problem(
                input,
                root,
                "this is one container's config, not a map of them: import it with \
                 `berthctl import tripleo FILE` (the name comes from the file name), or \
                 put it under its name"
                    .to_string(),
            ));
        } else {
            containers_of(input, root, default_step, &mut found, &mut errors);
        }
        if entries.is_empty() {
            file_warnings.push(file_problem(input, root, "no containers".to_string()));
        }
    }
    finish(found, file_warnings, errors, opts)
}

/// `import tripleo DIR`: the caller lists DIR's `*.json` files by their
/// path under DIR (`step_1/haproxy.json`). tripleo_container_manage's
/// layout: one container per file, named after the file (`hashed-<name>`
/// is the same container with TRIPLEO_CONFIG_HASH injected and wins over
/// `<name>`), its step from the folder. A single file given on its own is
/// one container too (its step from its folder when that is `step_N`,
/// else 1).
pub fn tripleo_files(inputs: &[Input], opts: &Options<'_>) -> Result<Import, ImportErrors> {
    let mut errors = Vec::new();
    let mut file_warnings = Vec::new();
    let trees = read_trees(inputs, &mut errors);
    // (step, name) -> (hashed?, index)
    let mut chosen: BTreeMap<(u32, String), (bool, usize)> = BTreeMap::new();
    for (i, (input, tree)) in trees.iter().enumerate() {
        let Some(root) = tree else { continue };
        let path = std::path::Path::new(&input.file);
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let folder = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|f| f.to_str());
        let step = match folder.and_then(step_key) {
            Some(s) => s,
            None if inputs.len() == 1 => 1,
            None => {
                file_warnings.push(file_problem(
                    input,
                    root,
                    "not under a step_N folder; skipped (tripleo_container_manage reads \
                     step_N/<name>.json)"
                        .to_string(),
                ));
                continue;
            }
        };
        if !is_container(root) {
            errors.push(file_problem(
                input,
                root,
                format!(
                    "expected one container's config, {{image: ..., ...}} (got {}); a map of \
                     containers is imported with `berthctl import paunch FILE`",
                    root.describe()
                ),
            ));
            continue;
        }
        let (hashed, name) = match stem.strip_prefix("hashed-") {
            Some(n) => (true, n.to_string()),
            None => (false, stem.to_string()),
        };
        match chosen.get(&(step, name.clone())) {
            Some((true, _)) if !hashed => continue,
            _ => {
                chosen.insert((step, name), (hashed, i));
            }
        }
    }
    let mut found = Vec::new();
    for ((step, name), (_, i)) in chosen {
        let (input, tree) = &trees[i];
        if let Some(node) = tree {
            found.push(Found {
                name,
                node,
                file: input.file.clone(),
                step,
                deployment: None,
                inputs: BTreeMap::new(),
            });
        }
    }
    finish(found, file_warnings, errors, opts)
}

/// `import heat FILE`: a deployment, a list of them, server metadata
/// (`{deployments: [...]}`) or the API's `{metadata: [...]}`. The
/// `docker-cmd` deployments' containers become services carrying the
/// deployment's inputs; every other deployment is a warning.
pub fn heat_file(input: &Input, opts: &Options<'_>) -> Result<Import, ImportErrors> {
    let mut errors = Vec::new();
    let trees = read_trees(std::slice::from_ref(input), &mut errors);
    let mut found = Vec::new();
    let mut file_warnings = Vec::new();
    if let Some((input, Some(root))) = trees.first() {
        heat::containers(input, root, &mut found, &mut file_warnings, &mut errors);
        if found.is_empty() && errors.is_empty() {
            errors.push(file_problem(
                input,
                root,
                "no docker-cmd deployment with containers in this file; berth imports the \
                 docker-cmd group (other groups are run by their own hooks)"
                    .to_string(),
            ));
        }
    }
    finish(found, file_warnings, errors, opts)
}

/// Parses every input; a file that does not parse is an error.
fn read_trees<'i>(
    inputs: &'i [Input],
    errors: &mut Vec<Problem>,
) -> Vec<(&'i Input, Option<Node>)> {
    inputs
        .iter()
        .map(|input| {
            let mut parse_errors = Vec::new();
            let tree = parse_tree(&input.file, &input.text, &mut parse_errors);
            errors.extend(parse_errors.into_iter().map(|e| Problem {
                file: e.file,
                line: e.line,
                column: e.column,
                container: String::new(),
                key: e.field,
                message: e.message,
            }));
            (input, tree)
        })
        .collect()
}

/// The containers of a `{name: config}` map.
fn containers_of<'n>(
    input: &Input,
    map: &'n Node,
    step: u32,
    found: &mut Vec<Found<'n>>,
    errors: &mut Vec<Problem>,
) {
    let Value::Map(entries) = &map.value else {
        errors.push(file_problem(
            input,
            map,
            format!(
                "expected a map of containers, {{name: {{image: ...}}}} (got {})",
                map.describe()
            ),
        ));
        return;
    };
    for e in entries {
        found.push(Found {
            name: e.key.clone(),
            node: &e.value,
            file: input.file.clone(),
            step,
            deployment: None,
            inputs: BTreeMap::new(),
        });
    }
}

/// Whether a map is one container's config rather than a map of them: it
/// has a scalar `image` or `action`.
fn is_container(node: &Node) -> bool {
    ["image", "action"]
        .iter()
        .any(|k| node.get(k).is_some_and(|e| e.value.text().is_some()))
}

/// `step_3` -> 3.
fn step_key(s: &str) -> Option<u32> {
    s.strip_prefix("step_").and_then(|n| n.parse().ok())
}

/// The `step_N` in a file name (`keystone-step_3.json`), if any.
fn step_in(file: &str) -> Option<u32> {
    let name = std::path::Path::new(file).file_stem()?.to_str()?;
    let at = name.rfind("step_")?;
    let digits: String = name[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn file_problem(input: &Input, node: &Node, message: String) -> Problem {
    Problem {
        file: input.file.clone(),
        line: node.line,
        column: node.column,
        container: String::new(),
        key: String::new(),
        message,
    }
}

/// Converts, checks names, orders, and reads each result back.
fn finish(
    found: Vec<Found<'_>>,
    file_warnings: Vec<Problem>,
    mut errors: Vec<Problem>,
    opts: &Options<'_>,
) -> Result<Import, ImportErrors> {
    let mut converted: Vec<paunch::Converted> = Vec::new();
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for f in &found {
        if let Some((file, line)) = seen.get(&f.name) {
            errors.push(Problem {
                file: f.file.clone(),
                line: f.node.line,
                column: f.node.column,
                container: f.name.clone(),
                key: String::new(),
                message: format!(
                    "a second container named {} (the first is in {file}, line {line}); berth \
                     keeps one service per name",
                    f.name
                ),
            });
            continue;
        }
        seen.insert(f.name.clone(), (f.file.clone(), f.node.line));
        if let Some(c) = paunch::convert(f, opts, &mut errors) {
            converted.push(c);
        }
    }
    let mut services = order::order(converted);
    for s in &mut services {
        read_back(s, &mut errors);
    }
    if services.is_empty() && errors.is_empty() {
        // Why nothing came out is in the warnings: they become the errors.
        errors = file_warnings;
        errors.push(Problem {
            file: found.first().map(|f| f.file.clone()).unwrap_or_default(),
            line: 0,
            column: 0,
            container: String::new(),
            key: String::new(),
            message: "nothing to import".to_string(),
        });
        return Err(ImportErrors(errors));
    }
    if errors.is_empty() {
        Ok(Import {
            services,
            warnings: file_warnings,
        })
    } else {
        Err(ImportErrors(errors))
    }
}

/// Renders the spec and reads it back with berth's parser: an import that
/// berth would refuse is an error here, naming the container; one that
/// reads back differently is a bug in the importer, reported as one.
fn read_back(s: &Imported, errors: &mut Vec<Problem>) {
    let text = s.file_text("check");
    let problem = |message: String| Problem {
        file: s.file.clone(),
        line: 0,
        column: 0,
        container: s.spec.name.clone(),
        key: String::new(),
        message,
    };
    match parse_services(&format!("{}.yaml", s.spec.name), &text) {
        Ok(specs) if specs.len() == 1 && specs[0] == s.spec => {}
        Ok(_) => errors.push(problem(
            "berth reads the written spec back differently (a bug in berthctl import; please \
             report it with this file)"
                .to_string(),
        )),
        Err(e) => {
            for p in e.0 {
                errors.push(problem(format!(
                    "the converted spec is not valid for berth: {}: {}",
                    p.field, p.message
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests;
