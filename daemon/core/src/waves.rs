//! Ordered waves on one node: `depends_on` and `inputs` (pure).
//!
//! A deployment whose spec has `depends_on` or `inputs` waits (PENDING,
//! `Deployment::waiting`) until [`readiness`] says every dependency holds
//! and every input has a value; the loop then resolves its inputs into the
//! record and lets it run. A `from` input (`SERVICE.outputs.NAME`) is a
//! dependency on that task being COMPLETE, unless `depends_on` names the
//! service itself. Conditions are judged on each dependency's *newest*
//! deployment, so within one apply a dependent waits for the new run of its
//! dependency, not the old one; one already on the node counts.
//!
//! [`check`] refuses a set of specs before anything runs: a dependency or an
//! output that exists nowhere, `healthy` on a service without a
//! healthcheck (those two judged by [`crate::waves_check`], which
//! `berthctl check` runs on files alone), and cycles (named whole). It also gives the order the
//! apply's records are made in, dependencies first, so a dependent's check
//! sees its dependency's new record.
//!
//! [`stale_inputs`] finds dependents whose recorded input no longer matches
//! the output it came from: each gets a new deployment.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::{DeployAction, Deployment, Status};
use crate::spec::{Condition, InputSource, Kind, OutputRef, ServiceSpec};

/// What a dependent needs to know of one service on the node.
#[derive(Debug, Clone, Copy)]
pub struct DepView<'a> {
    /// Its newest deployment (its spec is the newest spec).
    pub newest: &'a Deployment,
    /// Its container (of the record that runs) is running.
    pub running: bool,
    /// Its container's healthcheck passes.
    pub healthy: bool,
}

/// Whether a waiting deployment may run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every dependency holds: the inputs resolved to these values.
    Ready(BTreeMap<String, String>),
    /// Not yet; the reason names the dependency and what it waits for.
    Waiting(String),
}

/// Every dependency of `spec`: `depends_on` as written, then a `completed`
/// one for each service a `from` input names that `depends_on` does not,
/// then a `started` one for each service `volumes_from` names that neither
/// does (its container must exist before this one is created from it).
pub fn dependencies(spec: &ServiceSpec) -> Vec<(String, Condition)> {
    let mut out: Vec<(String, Condition)> = spec
        .depends_on
        .iter()
        .map(|d| (d.service.clone(), d.condition))
        .collect();
    for r in output_refs(spec) {
        if !out.iter().any(|(s, _)| *s == r.service) {
            out.push((r.service.clone(), Condition::Completed));
        }
    }
    for service in spec.volumes_from_services().chain(spec.exec_in.as_deref()) {
        if !out.iter().any(|(s, _)| s == service) {
            out.push((service.to_string(), Condition::Started));
        }
    }
    out
}

/// The outputs `spec`'s inputs are taken from, in input-name order.
pub fn output_refs(spec: &ServiceSpec) -> impl Iterator<Item = &OutputRef> {
    spec.inputs.values().filter_map(|i| match i {
        InputSource::From { from } => Some(from),
        InputSource::Value(_) => None,
    })
}

/// Whether the deployment of `spec` may run, judged from `lookup` (the
/// node's services by name; `None`: not on the node, or deleted).
pub fn readiness<'a>(
    spec: &ServiceSpec,
    lookup: impl Fn(&str) -> Option<DepView<'a>>,
) -> Readiness {
    for (service, condition) in dependencies(spec) {
        let Some(dep) = lookup(&service) else {
            return Readiness::Waiting(format!(
                "waiting for {service} ({condition}): it is not on this node"
            ));
        };
        if let Some(why) = unmet(&service, condition, &dep) {
            return Readiness::Waiting(why);
        }
    }
    let mut inputs = BTreeMap::new();
    for (name, input) in &spec.inputs {
        let value = match input {
            InputSource::Value(v) => v.clone(),
            InputSource::From { from } => {
                let Some(dep) = lookup(&from.service) else {
                    return Readiness::Waiting(format!(
                        "waiting for {from}: {} is not on this node",
                        from.service
                    ));
                };
                match output_value(from, dep.newest) {
                    Ok(v) => v,
                    Err(why) => return Readiness::Waiting(format!("inputs.{name}: {why}")),
                }
            }
        };
        inputs.insert(name.clone(), value);
    }
    Readiness::Ready(inputs)
}

/// Why `dep` does not meet `condition` yet; `None` when it does.
fn unmet(service: &str, condition: Condition, dep: &DepView<'_>) -> Option<String> {
    let newest = dep.newest;
    let status = newest.status;
    let waiting = |what: &str| Some(format!("waiting for {service} to be {condition}: {what}"));
    if newest.action == DeployAction::Delete {
        return waiting(&format!("it is being deleted ({})", newest.id));
    }
    if !status.is_terminal() {
        return waiting(&format!("its deployment {} is {status}", newest.id));
    }
    let failed = matches!(status, Status::Failed | Status::RolledBack);
    match condition {
        Condition::Ended => None,
        Condition::Completed if status == Status::Complete => None,
        Condition::Completed => waiting(&format!(
            "its deployment {} is {status}{}; this one runs once it completes (fix it and apply again)",
            newest.id,
            reason_suffix(newest)
        )),
        Condition::Started if newest.spec.kind == Kind::Task => {
            if status == Status::Complete {
                None
            } else {
                waiting(&format!(
                    "the task's deployment {} is {status}{}",
                    newest.id,
                    reason_suffix(newest)
                ))
            }
        }
        Condition::Started if dep.running => None,
        Condition::Healthy if dep.running && dep.healthy => None,
        Condition::Started | Condition::Healthy => {
            let state = if !dep.running {
                "its container is not running"
            } else {
                "its healthcheck does not pass yet"
            };
            if failed {
                waiting(&format!(
                    "{state} and its deployment {} is {status}{}",
                    newest.id,
                    reason_suffix(newest)
                ))
            } else {
                waiting(state)
            }
        }
    }
}

fn reason_suffix(d: &Deployment) -> String {
    if d.status_reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", crate::hooks::tail(&d.status_reason, 200))
    }
}

/// The value of `from` in `newest` (the source's newest deployment): its
/// declared output minus one trailing newline, once it is COMPLETE.
fn output_value(from: &OutputRef, newest: &Deployment) -> Result<String, String> {
    if newest.status != Status::Complete || newest.action == DeployAction::Delete {
        return Err(format!(
            "waiting for {from}: {}'s deployment {} is {}",
            from.service, newest.id, newest.status
        ));
    }
    let Some(text) = newest.outputs.declared.get(&from.output) else {
        return Err(format!(
            "{from}: {} COMPLETE without writing the output {:?} (it writes /berth/outputs/{}); fix the task and apply it again",
            newest.id, from.output, from.output
        ));
    };
    if let Some(problem) = output_problem(&from.output, text) {
        return Err(format!("{from}: {} {problem}", newest.id));
    }
    Ok(text.strip_suffix('\n').unwrap_or(text).to_string())
}

/// A declared output that berth could not read whole carries a note instead
/// of (or after) its text: such a value is never handed on as an input.
pub fn output_problem(name: &str, text: &str) -> Option<&'static str> {
    let note = format!("[berth: output {name} ");
    if text.starts_with(&note) {
        Some("has an output berth refused to read (see that deployment's outputs)")
    } else if text.contains(&format!("\n{note}truncated at")) {
        Some("has an output cut at the size cap; an input takes only a whole one")
    } else {
        None
    }
}

/// Dependents whose recorded inputs no longer match the outputs they were
/// taken from: `(input name, new value)` for each input that moved. Only a
/// deployment that resolved its inputs and ended counts (one still waiting
/// resolves them when it runs), and not a rollback: it restored an older
/// deployment on purpose, inputs and all, and a new apply moves it on.
pub fn stale_inputs<'a>(
    dependent: &Deployment,
    lookup: impl Fn(&str) -> Option<&'a Deployment>,
) -> Vec<(String, String)> {
    if dependent.waiting
        || !dependent.status.is_terminal()
        || matches!(
            dependent.action,
            DeployAction::Delete | DeployAction::Rollback
        )
    {
        return Vec::new();
    }
    let mut moved = Vec::new();
    for (name, input) in &dependent.spec.inputs {
        let InputSource::From { from } = input else {
            continue;
        };
        let Some(had) = dependent.inputs.get(name) else {
            continue;
        };
        let Some(source) = lookup(&from.service) else {
            continue;
        };
        if let Ok(now) = output_value(from, source)
            && now != *had
        {
            moved.push((name.clone(), now));
        }
    }
    moved
}

/// Checks a set of specs about to be applied against each other and the
/// node (`node`: the newest spec of each service on it that is not
/// deleted), before anything runs. `Ok`: the order to record them in
/// (indices into `apply`, dependencies first, else as given). `Err`: every
/// problem, one line each, naming the service, the field and the fix.
pub fn check(
    apply: &[ServiceSpec],
    node: &BTreeMap<&str, &ServiceSpec>,
) -> Result<Vec<usize>, Vec<String>> {
    let index: BTreeMap<&str, usize> = apply
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let spec_of = |name: &str| -> Option<&ServiceSpec> {
        index
            .get(name)
            .map(|&i| &apply[i])
            .or_else(|| node.get(name).copied())
    };
    let mut problems = Vec::new();
    for spec in apply {
        let missing = |field: String, name: &str| {
            format!(
                "{}: {field}: {name} is neither in this apply nor on this node; apply it first or with this one",
                spec.name
            )
        };
        for (i, d) in spec.depends_on.iter().enumerate() {
            if spec_of(&d.service).is_none() {
                problems.push(missing(format!("depends_on[{i}]"), &d.service));
            }
        }
        for (name, input) in &spec.inputs {
            if let InputSource::From { from } = input
                && spec_of(&from.service).is_none()
            {
                problems.push(missing(format!("inputs.{name}.from"), &from.service));
            }
        }
        for (i, service) in spec.volumes_from_services().enumerate() {
            if spec_of(service).is_none() {
                problems.push(missing(format!("volumes_from[{i}]"), service));
            }
        }
        // What the services named must have (a healthcheck, the output).
        problems.extend(
            crate::waves_check::spec_refs(spec, spec_of)
                .iter()
                .map(ToString::to_string),
        );
    }
    // Cycles over everything known: the apply's specs replace the node's.
    let mut graph: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (&name, spec) in node {
        if !index.contains_key(name) {
            graph.insert(name, dependencies(spec).into_iter().map(|d| d.0).collect());
        }
    }
    for spec in apply {
        graph.insert(
            &spec.name,
            dependencies(spec).into_iter().map(|d| d.0).collect(),
        );
    }
    let mut seen_cycles = BTreeSet::new();
    for spec in apply {
        if let Some(cycle) = cycle_through(&graph, &spec.name) {
            let mut key = cycle.clone();
            key.sort();
            if seen_cycles.insert(key) {
                let mut shown = cycle.clone();
                shown.push(cycle[0].clone());
                problems.push(format!(
                    "a dependency cycle: {}; remove one of these depends_on, inputs or volumes_from",
                    shown.join(" → ")
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(order(&apply.iter().collect::<Vec<_>>(), &index))
}

/// `specs`' indices with each after those of its dependencies among them,
/// otherwise in the order given; a cycle (which [`check`] refuses) is cut
/// somewhere rather than looped on.
pub fn dependency_order(specs: &[&ServiceSpec]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = specs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    order(specs, &index)
}

/// A cycle that `start` is on, listed from `start`; `None` if there is none.
fn cycle_through(graph: &BTreeMap<&str, Vec<String>>, start: &str) -> Option<Vec<String>> {
    // Depth-first from `start`, looking for a way back to it.
    fn walk(
        graph: &BTreeMap<&str, Vec<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        visited: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if visited.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, visited) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut visited = BTreeSet::from([start.to_string()]);
    walk(graph, start, start, &mut path, &mut visited).then_some(path)
}

/// `groups` (e.g. the Heat documents of one metadata pull, each applied
/// on its own) in an order that applies each after the groups holding its
/// services' dependencies, otherwise as given.
pub fn group_order(groups: &[&[ServiceSpec]]) -> Vec<usize> {
    let owner: Vec<usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, specs)| specs.iter().map(move |_| g))
        .collect();
    let flat: Vec<&ServiceSpec> = groups.iter().flat_map(|g| g.iter()).collect();
    let mut out: Vec<usize> = Vec::with_capacity(groups.len());
    for i in dependency_order(&flat) {
        if !out.contains(&owner[i]) {
            out.push(owner[i]);
        }
    }
    // Groups without services keep their place at the end.
    out.extend((0..groups.len()).filter(|g| groups[*g].is_empty()));
    out
}

/// The apply's indices with each spec after those of its dependencies that
/// are in the apply too, otherwise stable (a cycle is cut where it is met:
/// each index is visited once).
fn order(apply: &[&ServiceSpec], index: &BTreeMap<&str, usize>) -> Vec<usize> {
    fn visit(
        i: usize,
        apply: &[&ServiceSpec],
        index: &BTreeMap<&str, usize>,
        done: &mut Vec<bool>,
        out: &mut Vec<usize>,
    ) {
        if done[i] {
            return;
        }
        done[i] = true;
        for (dep, _) in dependencies(apply[i]) {
            if let Some(&j) = index.get(dep.as_str()) {
                visit(j, apply, index, done, out);
            }
        }
        out.push(i);
    }
    let mut done = vec![false; apply.len()];
    let mut out = Vec::with_capacity(apply.len());
    for i in 0..apply.len() {
        visit(i, apply, index, &mut done, &mut out);
    }
    out
}

#[cfg(test)]
mod tests;
