//! What berth asks the engine to create for a record: the create call's
//! spec and the labels that tie the container to its service, spec hash,
//! generation and deployment. Pure: the loop passes the name prefix and the
//! outputs directory in.

use std::collections::BTreeMap;

use crate::hash::create_spec;
use crate::record::Deployment;
use crate::runtime::{
    CreateRequest, LABEL_CONFIG_HASH, LABEL_DEPLOYMENT, LABEL_GENERATION, LABEL_KIND,
    LABEL_SERVICE, LABEL_SPEC_HASH,
};
use crate::spec::Kind;

/// The labels a record's container carries (the node label is the
/// runtime's to add: it owns the node's identity).
pub fn labels(record: &Deployment) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SERVICE.to_string(), record.service.clone());
    labels.insert(LABEL_SPEC_HASH.to_string(), record.spec_hash.clone());
    labels.insert(LABEL_GENERATION.to_string(), record.generation.to_string());
    labels.insert(LABEL_DEPLOYMENT.to_string(), record.id.clone());
    let kind = match record.spec.kind {
        Kind::Service => "service",
        Kind::Task => "task",
    };
    labels.insert(LABEL_KIND.to_string(), kind.to_string());
    if let Some(identity) = &record.config_identity {
        labels.insert(LABEL_CONFIG_HASH.to_string(), identity.clone());
    }
    labels
}

/// The create call for `record`, named `<prefix><service>`, with the task
/// outputs directory `outputs_dir` mounted; `None` while its image was never
/// resolved (nothing can be created then).
pub fn create_request(
    record: &Deployment,
    prefix: &str,
    outputs_dir: &str,
) -> Option<CreateRequest> {
    let image_id = record.image_id.as_deref()?;
    Some(CreateRequest {
        name: format!("{prefix}{}", record.service),
        spec: create_spec(&record.spec, image_id, Some(outputs_dir)),
        labels: labels(record),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ServiceSpec;

    fn record(kind: Kind, identity: Option<&str>) -> Deployment {
        Deployment {
            id: "web-3".into(),
            service: "web".into(),
            generation: 3,
            spec_hash: "h3".into(),
            image_id: Some("sha256:abc".into()),
            config_identity: identity.map(str::to_string),
            spec: ServiceSpec {
                name: "web".into(),
                kind,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn labels_name_the_service_spec_generation_deployment_and_kind() {
        let want = |kind: &str| {
            [
                ("io.berth.service", "web"),
                ("io.berth.spec-hash", "h3"),
                ("io.berth.generation", "3"),
                ("io.berth.deployment", "web-3"),
                ("io.berth.kind", kind),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter()
            .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(labels(&record(Kind::Service, None)), want("service"));
        assert_eq!(labels(&record(Kind::Task, None)), want("task"));
        let mut with_identity = want("service");
        with_identity.insert("io.berth.config-hash".into(), "cfg1".into());
        assert_eq!(labels(&record(Kind::Service, Some("cfg1"))), with_identity);
    }

    #[test]
    fn the_create_request_is_named_by_prefix_and_needs_a_resolved_image() {
        let r = record(Kind::Service, None);
        let req = create_request(&r, "berth-", "/var/lib/berth/outputs/web").expect("resolved");
        assert_eq!(req.name, "berth-web");
        assert_eq!(req.labels, labels(&r));
        assert_eq!(
            req.spec,
            create_spec(&r.spec, "sha256:abc", Some("/var/lib/berth/outputs/web"))
        );
        let mut unresolved = r;
        unresolved.image_id = None;
        assert_eq!(create_request(&unresolved, "berth-", "/o"), None);
    }
}
