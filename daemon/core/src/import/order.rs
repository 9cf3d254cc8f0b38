//! paunch's start order as berth `depends_on`: steps run in order, and
//! within a step containers start by `start_order`; a `detach: false`
//! container (a task) must have finished before the next group starts.
//! A container's systemd-unit `depends_on` names another imported
//! container's unit (`tripleo_<name>.service`) or a host unit.

use super::paunch::Converted;
use super::{Imported, Problem};
use crate::spec::{Condition, Dependency, Kind, normalize_unit_name};

/// The unit paunch and tripleo_container_manage give container NAME.
const UNIT_PREFIX: &str = "tripleo_";

/// Orders the containers (step, `start_order`, name) and writes each one's
/// dependencies: every container that keeps running or finishes (a task)
/// in the nearest earlier group. A stopped container is ordered but waited
/// for by nobody (it never starts).
pub(super) fn order(mut converted: Vec<Converted>) -> Vec<Imported> {
    converted.sort_by(|a, b| {
        (a.imported.step, a.start_order, &a.imported.spec.name).cmp(&(
            b.imported.step,
            b.start_order,
            &b.imported.spec.name,
        ))
    });
    let key = |c: &Converted| (c.imported.step, c.start_order);
    let names: Vec<String> = converted
        .iter()
        .map(|c| c.imported.spec.name.clone())
        .collect();
    // The index where each container's group starts.
    let mut group_start = vec![0; converted.len()];
    for i in 1..converted.len() {
        group_start[i] = if key(&converted[i]) == key(&converted[i - 1]) {
            group_start[i - 1]
        } else {
            i
        };
    }
    let waited_for = |c: &Converted| c.runs || c.imported.spec.kind == Kind::Task;
    let mut deps: Vec<Vec<Dependency>> = vec![Vec::new(); converted.len()];
    for i in 0..converted.len() {
        // The nearest earlier group with a member to wait for.
        let mut end = group_start[i];
        while end > 0 {
            let start = group_start[end - 1];
            let members: Vec<Dependency> = converted[start..end]
                .iter()
                .filter(|c| waited_for(c))
                .map(dependency_on)
                .collect();
            if !members.is_empty() {
                deps[i] = members;
                break;
            }
            end = start;
        }
    }
    let mut out = Vec::with_capacity(converted.len());
    for (i, c) in converted.into_iter().enumerate() {
        let mut imported = c.imported;
        let mut depends_on = std::mem::take(&mut deps[i]);
        for unit in &c.units {
            let full = match normalize_unit_name(unit) {
                Ok(u) => u,
                Err(e) => {
                    imported.warnings.push(unit_warning(&imported, unit, e));
                    continue;
                }
            };
            let container = full
                .strip_prefix(UNIT_PREFIX)
                .and_then(|u| u.strip_suffix(".service"));
            match container.and_then(|n| names.iter().position(|m| m == n)) {
                Some(j) if group_start[j] < group_start[i] => {
                    if !depends_on.iter().any(|d| d.service == names[j]) {
                        depends_on.push(Dependency {
                            service: names[j].clone(),
                            condition: Condition::Started,
                        });
                    }
                }
                Some(_) => imported.warnings.push(unit_warning(
                    &imported,
                    unit,
                    "names a container that starts in the same or a later group (step, \
                     start_order); paunch only adds a Wants=, berth would wait forever, so the \
                     steps decide the order"
                        .to_string(),
                )),
                None => {
                    if !imported.spec.after_units.contains(&full) {
                        imported.spec.after_units.push(full);
                    }
                }
            }
        }
        imported.spec.depends_on = depends_on;
        out.push(imported);
    }
    out
}

fn dependency_on(c: &Converted) -> Dependency {
    Dependency {
        service: c.imported.spec.name.clone(),
        condition: if c.imported.spec.kind == Kind::Task {
            Condition::Completed
        } else {
            Condition::Started
        },
    }
}

fn unit_warning(imported: &Imported, unit: &str, message: String) -> Problem {
    Problem {
        file: imported.file.clone(),
        line: 0,
        column: 0,
        container: imported.spec.name.clone(),
        key: format!("depends_on {unit:?}"),
        message,
    }
}
