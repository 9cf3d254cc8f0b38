//! The spec hash: the identity of a container.
//!
//! `v1:` + sha256 over the sorted-key JSON of the [`CreateSpec`], in which every
//! field equal to its default is omitted. A release that adds a field with a
//! default therefore hashes existing specs exactly as before, and no container
//! is recreated by an upgrade of berth. Policy fields (update, hooks, ...)
//! never reach the create call and so are not in it. Which `ServiceSpec`
//! field is which is listed and checked in `tests/spec_hash_fields.rs`: a
//! new field does not compile until it is classified there.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::heat::input_env_name;
use crate::runtime::{CreateSpec, InputFiles, OUTPUTS_MOUNT};
use crate::spec::{InputSource, ServiceSpec};

pub const SPEC_HASH_VERSION: &str = "v1";

/// The create call a spec makes, with its image resolved to `image_id`.
/// `outputs_dir` is the host directory for a task's declared outputs.
pub fn create_spec(spec: &ServiceSpec, image_id: &str, outputs_dir: Option<&str>) -> CreateSpec {
    CreateSpec {
        image: image_id.to_string(),
        command: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .chain(spec.inputs.iter().filter_map(|(name, input)| match input {
                InputSource::Value(v) => Some((input_env_name(name), v.clone())),
                InputSource::From { .. } => None,
            }))
            .collect::<BTreeMap<_, _>>(),
        env_file: spec.env_file.clone(),
        env_file_digest: None,
        user: spec.user.clone(),
        volumes: spec.volumes.clone(),
        volumes_from: spec.volumes_from.clone(),
        volumes_from_containers: Vec::new(),
        exec_in: spec.exec_in.clone(),
        network: spec.network.clone(),
        ports: spec.ports.clone(),
        privileged: spec.privileged,
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        security_opt: spec.security_opt.clone(),
        ulimits: spec.ulimits.clone(),
        pid: spec.pid.clone(),
        ipc: spec.ipc.clone(),
        uts: spec.uts.clone(),
        hostname: spec.hostname.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        group_add: spec.group_add.clone(),
        tty: spec.tty,
        interactive: spec.interactive,
        resources: spec.resources.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout,
        logging: spec.logging.clone(),
        restart: spec.effective_restart(),
        healthcheck: spec.healthcheck.clone(),
        inputs: None,
        outputs_dir: if spec.outputs.is_empty() {
            None
        } else {
            outputs_dir.map(|d| d.to_string())
        },
        config: spec
            .config
            .iter()
            .map(|m| crate::runtime::ConfigBind {
                source: m.source.clone(),
                target: m.target.clone(),
            })
            .collect(),
    }
}

/// `create` with a deployment's resolved inputs (`Deployment::inputs`):
/// each as env `BERTH_INPUT_<NAME>` (over an env entry of that name), and
/// as a file in `inputs_dir` (the host directory to mount).
pub fn with_inputs(
    mut create: CreateSpec,
    inputs: &BTreeMap<String, String>,
    inputs_dir: &str,
) -> CreateSpec {
    for (name, value) in inputs {
        create.env.insert(input_env_name(name), value.clone());
    }
    if !inputs.is_empty() {
        create.inputs = Some(InputFiles {
            dir: inputs_dir.to_string(),
            values: inputs.clone(),
        });
    }
    create
}

/// `v1:<sha256 hex>` of the canonical form of `create`.
pub fn spec_hash(create: &CreateSpec) -> String {
    // Through `Value` so that every object's keys are sorted (serde_json's map
    // is a BTreeMap without the preserve_order feature, which nothing here enables).
    let value = serde_json::to_value(create).unwrap_or(serde_json::Value::Null);
    let canonical = value.to_string();
    format!("{SPEC_HASH_VERSION}:{}", sha256_hex(canonical.as_bytes()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The mount target of the outputs dir, for implementations.
pub fn outputs_mount() -> &'static str {
    OUTPUTS_MOUNT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EnvValue, ImageSource, UpdatePolicy};

    fn base() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            image: ImageSource::Ref("berth-demo:latest".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_omitted_so_the_hash_is_stable() {
        let create = create_spec(&base(), "sha256:abc", None);
        let json = serde_json::to_string(&create).expect("serializes");
        assert_eq!(json, r#"{"image":"sha256:abc"}"#);
        // Pinned: changing the canonical form silently would recreate every
        // container on upgrade. Bump SPEC_HASH_VERSION instead.
        assert_eq!(
            spec_hash(&create),
            format!("v1:{}", sha256_hex(br#"{"image":"sha256:abc"}"#))
        );
    }

    /// `logging` without a tag hashes as it did before `tag` existed;
    /// a tag is another container.
    #[test]
    fn logging_rotation_hashes_as_before_tag_existed() {
        use crate::spec::Logging;
        let mut spec = base();
        spec.logging = Some(Logging {
            max_size: Some(1024),
            max_files: Some(3),
            tag: None,
        });
        let create = create_spec(&spec, "sha256:abc", None);
        assert_eq!(
            serde_json::to_string(&create).expect("serializes"),
            r#"{"image":"sha256:abc","logging":{"max_size":1024,"max_files":3}}"#
        );
        let before = spec_hash(&create);
        if let Some(l) = spec.logging.as_mut() {
            l.tag = Some("web".into());
        }
        assert_ne!(spec_hash(&create_spec(&spec, "sha256:abc", None)), before);
    }

    #[test]
    fn policy_fields_do_not_change_the_hash() {
        let a = base();
        let mut b = base();
        b.update = UpdatePolicy {
            settle: std::time::Duration::from_secs(9),
            ..Default::default()
        };
        assert_eq!(
            spec_hash(&create_spec(&a, "sha256:x", None)),
            spec_hash(&create_spec(&b, "sha256:x", None))
        );
    }

    #[test]
    fn create_fields_change_the_hash() {
        let a = base();
        let mut b = base();
        b.env.insert("A".into(), EnvValue::plain("1"));
        let h = |s: &ServiceSpec, img: &str| spec_hash(&create_spec(s, img, None));
        assert_ne!(h(&a, "sha256:x"), h(&b, "sha256:x"));
        assert_ne!(h(&a, "sha256:x"), h(&a, "sha256:y"));
        // Only the secret flag differs: the same container.
        let mut c = b.clone();
        c.env.insert(
            "A".into(),
            EnvValue {
                value: "1".into(),
                secret: true,
            },
        );
        assert_eq!(h(&b, "sha256:x"), h(&c, "sha256:x"));
    }
}
