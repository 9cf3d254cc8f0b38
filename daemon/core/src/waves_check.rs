//! What a set of specs says about its own `depends_on` and `inputs`
//! references, before any node is asked (pure): `condition: healthy` on a
//! service without a healthcheck, and an input `from` a service that is not
//! a task declaring that output.
//!
//! Only references to a service whose spec is at hand are judged; one to any
//! other service may be on the node, which berthd knows and judges (with the
//! rest: services that exist nowhere, cycles; see [`crate::waves`]).
//! `berthctl check` runs [`check_refs`] over the files it reads.

use crate::spec::{Condition, InputSource, Kind, ServiceSpec};

/// One reference a spec makes that the referenced spec cannot satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProblem {
    /// The service whose spec makes the reference.
    pub service: String,
    /// Its field: `depends_on[1].condition`, `inputs.schema.from`.
    pub field: String,
    /// What is wrong, and the fix.
    pub message: String,
}

impl std::fmt::Display for RefProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.service, self.field, self.message)
    }
}

/// Every problem of every spec in `specs`, judging references among them.
pub fn check_refs(specs: &[ServiceSpec]) -> Vec<RefProblem> {
    let lookup = |name: &str| specs.iter().find(|s| s.name == name);
    specs.iter().flat_map(|s| spec_refs(s, lookup)).collect()
}

/// The problems of `spec`'s references to the services `lookup` knows
/// (`None`: not judged here).
pub fn spec_refs<'a>(
    spec: &ServiceSpec,
    lookup: impl Fn(&str) -> Option<&'a ServiceSpec>,
) -> Vec<RefProblem> {
    let mut out = Vec::new();
    let mut problem = |field: String, message: String| {
        out.push(RefProblem {
            service: spec.name.clone(),
            field,
            message,
        });
    };
    for (i, d) in spec.depends_on.iter().enumerate() {
        if d.condition != Condition::Healthy {
            continue;
        }
        if lookup(&d.service).is_some_and(|dep| dep.healthcheck.is_none()) {
            problem(
                format!("depends_on[{i}].condition"),
                format!(
                    "healthy, but {0} has no healthcheck; give {0} a healthcheck or use condition: started",
                    d.service
                ),
            );
        }
    }
    for (name, input) in &spec.inputs {
        let InputSource::From { from } = input else {
            continue;
        };
        let Some(source) = lookup(&from.service) else {
            continue;
        };
        let message = if source.kind != Kind::Task {
            format!(
                "{} is a service; only a task (kind: task) has outputs to take; \
                 make it a task that declares {:?} in its outputs, or give the value itself",
                from.service, from.output
            )
        } else if !source.outputs.contains(&from.output) {
            let declared = if source.outputs.is_empty() {
                "none".to_string()
            } else {
                source.outputs.join(", ")
            };
            format!(
                "{} declares no output {:?} (its outputs: {declared}); add it to {}'s outputs or fix the name",
                from.service, from.output, from.service
            )
        } else {
            continue;
        };
        problem(format!("inputs.{name}.from"), message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_services;

    fn specs(text: &str) -> Vec<ServiceSpec> {
        parse_services("t.yaml", text).expect("valid specs")
    }

    fn fields(problems: &[RefProblem]) -> Vec<(&str, &str)> {
        problems
            .iter()
            .map(|p| (p.service.as_str(), p.field.as_str()))
            .collect()
    }

    #[test]
    fn healthy_needs_a_healthcheck_on_a_service_at_hand() {
        let all = specs(
            "services:
  - name: web
    image: demo
    depends_on:
      - api
      - {service: db, condition: healthy}
      - {service: cache, condition: healthy}
      - {service: elsewhere, condition: healthy}
      - {service: queue, condition: completed}
  - {name: api, image: demo}
  - {name: db, image: demo}
  - {name: cache, image: demo, healthcheck: {exec: [/demo, health]}}
  - {name: queue, image: demo}
",
        );
        let problems = check_refs(&all);
        // api is only `started`, cache has a healthcheck, `elsewhere` is
        // not at hand (berthd judges it), queue is `completed`.
        assert_eq!(fields(&problems), [("web", "depends_on[1].condition")]);
        assert_eq!(
            problems[0].to_string(),
            "web: depends_on[1].condition: healthy, but db has no healthcheck; \
             give db a healthcheck or use condition: started"
        );
    }

    #[test]
    fn from_needs_a_task_declaring_the_output() {
        let all = specs(
            "services:
  - name: web
    image: demo
    inputs:
      a: {from: migrate.outputs.version}
      b: {from: migrate.outputs.verison}
      c: {from: api.outputs.version}
      d: {from: seed.outputs.rows}
      e: {from: elsewhere.outputs.x}
      f: plain
  - {name: migrate, image: demo, kind: task, outputs: [version, schema]}
  - {name: api, image: demo}
  - {name: seed, image: demo, kind: task}
",
        );
        let problems = check_refs(&all);
        assert_eq!(
            fields(&problems),
            [
                ("web", "inputs.b.from"),
                ("web", "inputs.c.from"),
                ("web", "inputs.d.from"),
            ]
        );
        assert_eq!(
            problems[0].message,
            "migrate declares no output \"verison\" (its outputs: version, schema); \
             add it to migrate's outputs or fix the name"
        );
        assert!(
            problems[1]
                .message
                .starts_with("api is a service; only a task (kind: task) has outputs"),
            "{problems:?}"
        );
        assert!(
            problems[2].message.contains("(its outputs: none)"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_lookup_beyond_the_set_judges_those_too() {
        let web = &specs(
            "name: web\nimage: demo\ndepends_on: [{service: db, condition: healthy}]\n\
             inputs: {v: {from: job.outputs.v}}\n",
        )[0];
        let node = specs(
            "services:\n  - {name: db, image: demo}\n  - {name: job, image: demo, kind: task, outputs: [v]}\n",
        );
        let on_node = |name: &str| node.iter().find(|s| s.name == name);
        assert_eq!(
            fields(&spec_refs(web, on_node)),
            [("web", "depends_on[0].condition")]
        );
        assert!(spec_refs(web, |_| None).is_empty());
    }
}
