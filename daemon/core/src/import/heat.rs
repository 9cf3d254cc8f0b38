//! The containers of Heat `docker-cmd` deployments, in whichever envelope
//! the file holds them: one deployment (as a hook reads it), a list (as
//! 55-heat-config reads `deployments`), server metadata
//! (`{deployments: [...]}`) or the API's `{metadata: [...]}`.

use std::collections::BTreeMap;

use super::{Found, Input, Problem, file_problem};
use crate::heat::DEPLOY_INPUTS;
use crate::parse::{Node, Value};
use crate::spec::valid_output_name;

/// The group whose config is a paunch container map.
const DOCKER_CMD: &str = "docker-cmd";
/// The `deploy_*` inputs a container is given: which stack, resource,
/// server and action it belongs to. Every other of Heat's
/// ([`DEPLOY_INPUTS`]) is the signal transport's setting or credential,
/// never written into a spec file.
const IDENTITY: &[&str] = &[
    "deploy_server_id",
    "deploy_action",
    "deploy_stack_id",
    "deploy_resource_name",
];

/// Collects the containers of every docker-cmd deployment in the file.
/// Deployments run one after another, as heat-config runs them: each one's
/// containers form the next step.
pub(super) fn containers<'n>(
    input: &Input,
    root: &'n Node,
    found: &mut Vec<Found<'n>>,
    warnings: &mut Vec<Problem>,
    errors: &mut Vec<Problem>,
) {
    let list: Vec<&Node> = match &root.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(_) if root.get("group").is_some() || root.get("config").is_some() => {
            vec![root]
        }
        Value::Map(_) => {
            match root
                .get("deployments")
                .or_else(|| root.get("metadata"))
                .map(|e| (e.key.as_str(), &e.value))
            {
                Some((
                    _,
                    Node {
                        value: Value::Seq(items),
                        ..
                    },
                )) => items.iter().collect(),
                Some((key, other)) => {
                    warnings.push(file_problem(
                        input,
                        other,
                        format!(
                            "`{key}` is {}, not a list of deployments: ignored, as \
                             os-collect-config ignores it",
                            other.describe()
                        ),
                    ));
                    Vec::new()
                }
                None => {
                    errors.push(file_problem(
                        input,
                        root,
                        "expected a Heat deployment ({group: docker-cmd, config: ...}), a list \
                         of them, or server metadata ({deployments: [...]})"
                            .to_string(),
                    ));
                    Vec::new()
                }
            }
        }
        _ => {
            errors.push(file_problem(
                input,
                root,
                format!(
                    "expected a Heat deployment or a list of them (got {})",
                    root.describe()
                ),
            ));
            Vec::new()
        }
    };
    let mut step = 0;
    for (i, d) in list.into_iter().enumerate() {
        let name = ["name", "id"]
            .iter()
            .find_map(|k| d.get(k).and_then(|e| e.value.text()))
            .map_or_else(|| format!("deployments[{i}]"), str::to_string);
        let group = d.get("group").and_then(|e| e.value.text());
        if group != Some(DOCKER_CMD) {
            let why = match group {
                Some(g) => format!("group {g:?}"),
                None => "no group".to_string(),
            };
            warnings.push(file_problem(
                input,
                d,
                format!("deployment {name}: {why}: not imported (berth imports {DOCKER_CMD})"),
            ));
            continue;
        }
        // Heat writes `''` (or nothing) when a deployment has no config.
        let config = d
            .get("config")
            .map(|e| &e.value)
            .filter(|c| !matches!(&c.value, Value::Null) && c.text().is_none_or(|t| !t.is_empty()));
        let Some(config) = config else {
            warnings.push(file_problem(
                input,
                d,
                format!("deployment {name}: no config: nothing to import"),
            ));
            continue;
        };
        let Value::Map(entries) = &config.value else {
            errors.push(file_problem(
                input,
                config,
                format!(
                    "deployment {name}: a docker-cmd config is a map of containers (got {})",
                    config.describe()
                ),
            ));
            continue;
        };
        step += 1;
        let inputs = deployment_inputs(input, &name, d, warnings);
        for e in entries {
            found.push(Found {
                name: e.key.clone(),
                node: &e.value,
                file: input.file.clone(),
                step,
                deployment: Some(name.clone()),
                inputs: inputs.clone(),
            });
        }
    }
}

/// The deployment's `inputs` as berth inputs: names berth can carry, values
/// as text (a dict or list JSON-encoded, as heat-config encodes it), and
/// never the transport's credentials.
fn deployment_inputs(
    input: &Input,
    deployment: &str,
    d: &Node,
    warnings: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(Node {
        value: Value::Seq(items),
        ..
    }) = d.get("inputs").map(|e| &e.value)
    else {
        return out;
    };
    let mut left_out = Vec::new();
    for item in items {
        let Some(name) = item.get("name").and_then(|e| e.value.text()) else {
            warnings.push(file_problem(
                input,
                item,
                format!("deployment {deployment}: an input without a name: ignored"),
            ));
            continue;
        };
        if DEPLOY_INPUTS.contains(&name) && !IDENTITY.contains(&name) {
            left_out.push(name.to_string());
            continue;
        }
        if crate::heat::is_secret_input_name(name) {
            warnings.push(file_problem(
                input,
                item,
                format!(
                    "deployment {deployment}: input {name:?} not imported: its name says it is \
                     a secret, and berth's inputs have no secret marking yet (give it to the \
                     service as env with `secret: true`)"
                ),
            ));
            continue;
        }
        if !valid_output_name(name) {
            warnings.push(file_problem(
                input,
                item,
                format!(
                    "deployment {deployment}: input {name:?} not imported: berth input names \
                     are lowercase letters, digits, `_` and `-`"
                ),
            ));
            continue;
        }
        let value = match item.get("value").map(|e| &e.value) {
            None => String::new(),
            Some(v) => match &v.value {
                Value::Scalar { text, .. } => text.clone(),
                Value::Null => String::new(),
                _ => v.to_json().to_string(),
            },
        };
        out.insert(name.to_string(), value);
    }
    if !left_out.is_empty() {
        warnings.push(file_problem(
            input,
            d,
            format!(
                "deployment {deployment}: inputs {} not imported: they are the signal \
                 transport's settings and credentials, which berthd.toml's [upstream] holds",
                left_out.join(", ")
            ),
        ));
    }
    out
}
