//! What berth asks the engine to create for a record: the create call's
//! spec and the labels that tie the container to its service, spec hash,
//! generation and deployment. Pure: the loop passes the name prefix and the
//! outputs directory in.

use std::collections::BTreeMap;

use crate::hash::{create_spec, with_inputs};
use crate::record::Deployment;
use crate::runtime::{
    CreateRequest, CreateSpec, LABEL_CONFIG_HASH, LABEL_DEPLOYMENT, LABEL_GENERATION,
    LABEL_IMAGE_DIGEST, LABEL_KIND, LABEL_SERVICE, LABEL_SPEC_HASH,
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
    if let Some(digest) = &record.image_digest {
        labels.insert(LABEL_IMAGE_DIGEST.to_string(), digest.clone());
    }
    labels
}

/// The create call for `record`, named `<prefix><service>`, with its
/// directories mounted; `None` while its image was never resolved (nothing
/// can be created then).
pub fn create_request(
    record: &Deployment,
    prefix: &str,
    dirs: &RecordDirs<'_>,
) -> Option<CreateRequest> {
    let image_id = record.image_id.as_deref()?;
    Some(CreateRequest {
        name: format!("{prefix}{}", record.service),
        spec: record_create_spec(record, image_id, dirs),
        labels: labels(record),
    })
}

/// The host directories a record's container mounts: the service's task
/// outputs dir, and this generation's inputs dir.
#[derive(Debug, Clone, Copy)]
pub struct RecordDirs<'a> {
    pub outputs: &'a str,
    pub inputs: &'a str,
}

/// The create call a record makes with its image resolved to `image_id`:
/// its spec's, with the inputs the record resolved and the digest of its
/// env files' values. Its hash is the record's `spec_hash`.
pub fn record_create_spec(
    record: &Deployment,
    image_id: &str,
    dirs: &RecordDirs<'_>,
) -> CreateSpec {
    let mut create = with_inputs(
        create_spec(&record.spec, image_id, Some(dirs.outputs)),
        &record.inputs,
        dirs.inputs,
    );
    create.env_file_digest = record.env_file_digest.clone();
    create
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
        // A pulled image: the digest it is had again by.
        let mut pulled = record(Kind::Service, None);
        pulled.image_digest = Some("reg:5000/web@sha256:d1".into());
        let mut with_digest = want("service");
        with_digest.insert(
            "io.berth.image-digest".into(),
            "reg:5000/web@sha256:d1".into(),
        );
        assert_eq!(labels(&pulled), with_digest);
    }

    #[test]
    fn the_create_request_is_named_by_prefix_and_needs_a_resolved_image() {
        let r = record(Kind::Service, None);
        let req = create_request(&r, "berth-", &DIRS).expect("resolved");
        assert_eq!(req.name, "berth-web");
        assert_eq!(req.labels, labels(&r));
        assert_eq!(
            req.spec,
            create_spec(&r.spec, "sha256:abc", Some("/var/lib/berth/outputs/web"))
        );
        assert_eq!(req.spec.inputs, None, "no inputs: nothing mounted");
        let mut unresolved = r;
        unresolved.image_id = None;
        assert_eq!(create_request(&unresolved, "berth-", &DIRS), None);
    }

    const DIRS: RecordDirs<'static> = RecordDirs {
        outputs: "/var/lib/berth/outputs/web",
        inputs: "/var/lib/berth/inputs/web/g3",
    };

    #[test]
    fn resolved_inputs_reach_the_container_as_env_and_files_and_move_the_hash() {
        use crate::hash::spec_hash;
        use crate::spec::{InputSource, OutputRef};
        let mut r = record(Kind::Service, None);
        r.spec
            .inputs
            .insert("release".into(), InputSource::Value("2026.2".into()));
        r.spec.inputs.insert(
            "schema-version".into(),
            InputSource::From {
                from: OutputRef::parse("db-migrate.outputs.version").expect("a ref"),
            },
        );
        r.inputs = BTreeMap::from([
            ("release".to_string(), "2026.2".to_string()),
            ("schema-version".to_string(), "42".to_string()),
        ]);
        let req = create_request(&r, "berth-", &DIRS).expect("resolved");
        assert_eq!(req.spec.env["BERTH_INPUT_RELEASE"], "2026.2");
        assert_eq!(req.spec.env["BERTH_INPUT_SCHEMA_VERSION"], "42");
        let files = req.spec.inputs.clone().expect("files");
        assert_eq!(files.dir, "/var/lib/berth/inputs/web/g3");
        assert_eq!(files.values, r.inputs);
        // Another output value is another container; another generation's
        // dir is not.
        let mut moved = r.clone();
        moved.inputs.insert("schema-version".into(), "43".into());
        let other =
            |rec: &Deployment, dirs| spec_hash(&record_create_spec(rec, "sha256:abc", dirs));
        assert_ne!(other(&moved, &DIRS), other(&r, &DIRS));
        let later = RecordDirs {
            inputs: "/var/lib/berth/inputs/web/g4",
            ..DIRS
        };
        assert_eq!(other(&r, &later), other(&r, &DIRS));
        // The plain value alone is in the spec's own create call.
        let bare: CreateSpec = create_spec(&r.spec, "sha256:abc", None);
        assert_eq!(
            bare.env.get("BERTH_INPUT_RELEASE").map(String::as_str),
            Some("2026.2")
        );
        assert!(!bare.env.contains_key("BERTH_INPUT_SCHEMA_VERSION"));
    }
}
