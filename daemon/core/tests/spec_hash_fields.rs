//! Every field of [`ServiceSpec`] classified by what the spec hash makes of
//! it, and checked: changing a hashed field changes the hash (a new
//! container), changing any other field does not (a record, no container
//! touched). The fields a spec field holds are classified as well where
//! the create call takes only some of them ([`EnvValue`], [`ConfigMount`]);
//! a struct that reaches the create call whole or not at all (`Resources`,
//! `Healthcheck`, `UpdatePolicy`, ...) goes with its field.
//!
//! # Classifying a new field
//!
//! A field added to `ServiceSpec` (or `EnvValue`, `ConfigMount`) does not
//! compile until it is given a value in [`other`] and a class in
//! [`service_spec_fields`] (or [`env_value_fields`],
//! [`config_mount_fields`]). To choose the class, ask whether the field
//! reaches the engine's create call, that is whether `hash::create_spec`
//! copies it into `CreateSpec` (everything there is hashed):
//!
//! - It does: [`Class::Hashed`]. Changing it replaces the container, so a
//!   field whose default is omitted from the JSON (`skip_serializing_if`
//!   in `CreateSpec`) keeps every existing spec's hash, and no container is
//!   recreated by the upgrade that adds it.
//! - Only through something it implies (the image as its resolved id, the
//!   kind as the default restart policy): [`Class::HashedAs`], with two
//!   values that differ and hash alike.
//! - It does not, and it changes how berth acts rather than what the
//!   container is (rollout, desired state, ordering against host units,
//!   how a config change is applied): [`Class::Policy`]. Changing it makes
//!   a record and touches no container; ARCHITECTURE.md ("The spec hash")
//!   lists the policy fields.
//! - It says which service the spec is: [`Class::ServiceKey`].
//!
//! A field that should replace the container must reach `CreateSpec`;
//! classifying it `Hashed` without that fails the check below, as does
//! `Policy` for a field that does reach it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_core::hash::{create_spec, sha256_hex, spec_hash};
use berth_core::spec::{
    BuildSpec, Condition, ConfigMount, Dependency, DesiredState, EnvValue, Healthcheck, Hook,
    HookKind, HookPlace, Hooks, ImageSource, InputSource, Kind, Logging, Network, OnChange,
    OnTimeout, OutputRef, PortMapping, PullPolicy, Resources, RestartPolicy, RollbackPolicy,
    ServiceSpec, Ulimit, UpdatePolicy, Volume,
};

/// A change to a spec.
type Change = Box<dyn Fn(&mut ServiceSpec)>;

/// What the spec hash makes of a field.
enum Class {
    /// Copied into the create call: every change changes the hash.
    Hashed,
    /// Reaches the create call only as `through`: a change that alters
    /// that changes the hash; the two specs `alike` makes from [`base`]
    /// differ in this field only and hash the same.
    HashedAs {
        through: &'static str,
        alike: [Change; 2],
    },
    /// Never reaches the create call: no change changes the hash.
    Policy,
    /// Which service the spec is (a spec with another name is another
    /// service); not in the hash.
    ServiceKey,
}

/// A field, its class, and a change to it (applied to [`base`]).
struct Field {
    name: &'static str,
    class: Class,
    change: Change,
}

fn field(name: &'static str, class: Class, change: impl Fn(&mut ServiceSpec) + 'static) -> Field {
    Field {
        name,
        class,
        change: Box::new(change),
    }
}

fn change(f: impl Fn(&mut ServiceSpec) + 'static) -> Change {
    Box::new(f)
}

/// The spec every change is made to: defaults but for the name, the image,
/// one env value and one config source.
fn base() -> ServiceSpec {
    ServiceSpec {
        name: "web".into(),
        image: ImageSource::Ref("demo:1".into()),
        env: BTreeMap::from([("MODE".into(), EnvValue::plain("dev"))]),
        config: vec![ConfigMount {
            source: "/etc/web".into(),
            target: "/config".into(),
            on_change: OnChange::Restart,
        }],
        ..ServiceSpec::default()
    }
}

/// A spec whose every field differs from [`base`]'s. No `..`: a new field
/// needs a value here.
fn other() -> ServiceSpec {
    ServiceSpec {
        name: "api".into(),
        image: ImageSource::Build {
            build: BuildSpec {
                context: "/src/api".into(),
                dockerfile: Some("Dockerfile.api".into()),
            },
        },
        command: Some(vec!["serve".into()]),
        entrypoint: Some(vec!["/bin/api".into()]),
        env: BTreeMap::from([("MODE".into(), EnvValue::plain("prod"))]),
        env_file: vec!["/etc/berth/api.env".into()],
        user: Some("1000:1000".into()),
        volumes: vec![Volume::parse("/srv/api:/data:ro").expect("volume")],
        volumes_from: vec!["db:ro".into()],
        network: Network::Host,
        ports: vec![PortMapping::parse("8080:80").expect("port")],
        privileged: true,
        cap_add: vec!["NET_ADMIN".into()],
        cap_drop: vec!["ALL".into()],
        security_opt: vec!["no-new-privileges".into()],
        ulimits: BTreeMap::from([(
            "nofile".into(),
            Ulimit {
                soft: 1024,
                hard: 2048,
            },
        )]),
        pid: Some("host".into()),
        ipc: Some("private".into()),
        uts: Some("host".into()),
        hostname: Some("api-1".into()),
        extra_hosts: vec!["db.internal:10.0.0.5".into()],
        group_add: vec!["wheel".into()],
        tty: true,
        interactive: true,
        resources: Resources {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids: Some(100),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-3".into()),
        },
        stop_signal: Some("SIGINT".into()),
        stop_timeout: Some(Duration::from_secs(30)),
        logging: Some(Logging {
            max_size: Some(1 << 20),
            max_files: Some(3),
            tag: Some("api".into()),
        }),
        restart: Some(RestartPolicy::OnFailure),
        state: DesiredState::Stopped,
        healthcheck: Some(Healthcheck {
            test: None,
            exec: vec!["/bin/api".into(), "health".into()],
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            retries: 3,
            start_period: None,
        }),
        kind: Kind::Task,
        exec_in: Some("keystone".into()),
        outputs: vec!["result".into()],
        exit_codes: vec![0, 2],
        pull: PullPolicy::Always,
        update: UpdatePolicy {
            settle: Duration::from_secs(9),
            health_timeout: Duration::from_secs(90),
            rollback: RollbackPolicy::None,
        },
        config: vec![ConfigMount {
            source: "/etc/api".into(),
            target: "/config".into(),
            on_change: OnChange::Recreate,
        }],
        after_units: vec!["network-online.target".into()],
        requires_units: vec!["postgresql.service".into()],
        hooks: Hooks {
            pre_update: vec![Hook {
                kind: HookKind::Exec(vec!["/demo".into(), "drain".into()]),
                place: HookPlace::Container,
                timeout: Some(Duration::from_secs(30)),
                on_timeout: OnTimeout::Proceed,
            }],
            ..Default::default()
        },
        depends_on: vec![Dependency {
            service: "db".into(),
            condition: Condition::Healthy,
        }],
        inputs: BTreeMap::from([("release".into(), InputSource::Value("2026.2".into()))]),
    }
}

/// A `from` input: resolved when the deployment runs (into the record), so
/// the spec's own create call has none of it.
fn from_input(r: &str) -> InputSource {
    InputSource::From {
        from: OutputRef::parse(r).expect("an output ref"),
    }
}

/// Every field of `ServiceSpec`, classified; each change sets the field to
/// [`other`]'s value. The destructuring has no `..` on purpose: a new field
/// does not compile until it is classified here (see the module docs).
fn service_spec_fields() -> Vec<Field> {
    use Class::{Hashed, HashedAs, Policy, ServiceKey};
    let ServiceSpec {
        name,
        image,
        pull,
        command,
        entrypoint,
        env,
        env_file,
        user,
        volumes,
        volumes_from,
        network,
        ports,
        privileged,
        cap_add,
        cap_drop,
        security_opt,
        ulimits,
        pid,
        ipc,
        uts,
        hostname,
        extra_hosts,
        group_add,
        tty,
        interactive,
        resources,
        stop_signal,
        stop_timeout,
        logging,
        restart,
        state,
        healthcheck,
        kind,
        exec_in,
        outputs,
        exit_codes,
        update,
        config,
        after_units,
        requires_units,
        hooks,
        depends_on,
        inputs,
    } = other();
    vec![
        field("name", ServiceKey, move |s| s.name = name.clone()),
        field(
            "image",
            HashedAs {
                through: "the image id it resolves to",
                alike: [
                    change(|_| {}),
                    change(|s| s.image = ImageSource::Ref("demo:latest".into())),
                ],
            },
            move |s| s.image = image.clone(),
        ),
        field("command", Hashed, move |s| s.command = command.clone()),
        field("entrypoint", Hashed, move |s| {
            s.entrypoint = entrypoint.clone()
        }),
        field("env", Hashed, move |s| s.env = env.clone()),
        // Its paths; the values the files hold enter as their digest
        // (Deployment::env_file_digest, read at the apply), never as text.
        field("env_file", Hashed, move |s| s.env_file = env_file.clone()),
        field("user", Hashed, move |s| s.user = user.clone()),
        field("volumes", Hashed, move |s| s.volumes = volumes.clone()),
        // As service names: which container of the service it was created
        // from is not in the hash.
        field("volumes_from", Hashed, move |s| {
            s.volumes_from = volumes_from.clone()
        }),
        field("network", Hashed, move |s| s.network = network.clone()),
        field("ports", Hashed, move |s| s.ports = ports.clone()),
        field("privileged", Hashed, move |s| s.privileged = privileged),
        field("cap_add", Hashed, move |s| s.cap_add = cap_add.clone()),
        field("cap_drop", Hashed, move |s| s.cap_drop = cap_drop.clone()),
        field("security_opt", Hashed, move |s| {
            s.security_opt = security_opt.clone()
        }),
        field("ulimits", Hashed, move |s| s.ulimits = ulimits.clone()),
        field("pid", Hashed, move |s| s.pid = pid.clone()),
        field("ipc", Hashed, move |s| s.ipc = ipc.clone()),
        field("uts", Hashed, move |s| s.uts = uts.clone()),
        field("hostname", Hashed, move |s| s.hostname = hostname.clone()),
        field("extra_hosts", Hashed, move |s| {
            s.extra_hosts = extra_hosts.clone()
        }),
        field("group_add", Hashed, move |s| {
            s.group_add = group_add.clone()
        }),
        field("tty", Hashed, move |s| s.tty = tty),
        field("interactive", Hashed, move |s| s.interactive = interactive),
        field("resources", Hashed, move |s| {
            s.resources = resources.clone()
        }),
        field("stop_signal", Hashed, move |s| {
            s.stop_signal = stop_signal.clone()
        }),
        field("stop_timeout", Hashed, move |s| {
            s.stop_timeout = stop_timeout
        }),
        field("logging", Hashed, move |s| s.logging = logging.clone()),
        field("restart", Hashed, move |s| s.restart = restart),
        field("state", Policy, move |s| s.state = state),
        field("healthcheck", Hashed, move |s| {
            s.healthcheck = healthcheck.clone()
        }),
        field(
            "kind",
            HashedAs {
                through: "the default restart policy (always for a service, never for a task)",
                alike: [
                    change(|s| s.restart = Some(RestartPolicy::OnFailure)),
                    change(|s| {
                        s.restart = Some(RestartPolicy::OnFailure);
                        s.kind = Kind::Task;
                    }),
                ],
            },
            move |s| s.kind = kind,
        ),
        field("exec_in", Hashed, move |s| s.exec_in = exec_in.clone()),
        field(
            "outputs",
            HashedAs {
                through: "whether the outputs dir is mounted (any declared output)",
                alike: [
                    change(|s| s.outputs = vec!["result".into()]),
                    change(|s| s.outputs = vec!["result".into(), "log".into()]),
                ],
            },
            move |s| s.outputs = outputs.clone(),
        ),
        // How a task's exit is judged, not what its container is.
        field("pull", Policy, move |s| s.pull = pull),
        field("exit_codes", Policy, move |s| {
            s.exit_codes = exit_codes.clone()
        }),
        field("update", Policy, move |s| s.update = update.clone()),
        field("config", Hashed, move |s| s.config = config.clone()),
        field("after_units", Policy, move |s| {
            s.after_units = after_units.clone()
        }),
        field("requires_units", Policy, move |s| {
            s.requires_units = requires_units.clone()
        }),
        // What runs around an update, not what the container is.
        field("hooks", Policy, move |s| s.hooks = hooks.clone()),
        // Which deployments wait for which, not what the container is.
        field("depends_on", Policy, move |s| {
            s.depends_on = depends_on.clone()
        }),
        field(
            "inputs",
            HashedAs {
                through: "the values they resolve to, as env BERTH_INPUT_<NAME> (a `from` \
                          input's at run time, through Deployment::inputs)",
                alike: [
                    change(|s| {
                        s.inputs = BTreeMap::from([("v".into(), from_input("a.outputs.o"))])
                    }),
                    change(|s| {
                        s.inputs = BTreeMap::from([("v".into(), from_input("b.outputs.p"))])
                    }),
                ],
            },
            move |s| s.inputs = inputs.clone(),
        ),
    ]
}

/// The fields of an env value (of `MODE` in [`base`]). No `..`, as above.
fn env_value_fields() -> Vec<Field> {
    use Class::{Hashed, Policy};
    let EnvValue { value, secret } = EnvValue {
        value: "prod".into(),
        secret: true,
    };
    fn mode(s: &mut ServiceSpec) -> &mut EnvValue {
        s.env.get_mut("MODE").expect("base() has MODE")
    }
    vec![
        field("env.*.value", Hashed, move |s| {
            mode(s).value = value.clone()
        }),
        // How the value is shown (redacted), not what the container gets.
        field("env.*.secret", Policy, move |s| mode(s).secret = secret),
    ]
}

/// The fields of a config source (the one in [`base`]). No `..`, as above.
fn config_mount_fields() -> Vec<Field> {
    use Class::{Hashed, Policy};
    let ConfigMount {
        source,
        target,
        on_change,
    } = ConfigMount {
        source: "/etc/api".into(),
        target: "/etc/web".into(),
        on_change: OnChange::Signal("SIGHUP".into()),
    };
    fn first(s: &mut ServiceSpec) -> &mut ConfigMount {
        s.config.first_mut().expect("base() has a config source")
    }
    vec![
        field("config[].source", Hashed, move |s| {
            first(s).source = source.clone()
        }),
        field("config[].target", Hashed, move |s| {
            first(s).target = target.clone()
        }),
        // The reaction to a content change; the content is not in the spec
        // hash either (a recreating source's hash is a label of its own).
        field("config[].on_change", Policy, move |s| {
            first(s).on_change = on_change.clone()
        }),
    ]
}

/// The image id a source resolves to in these tests: `demo:1` and
/// `demo:latest` are the same image, anything else an image of its own.
fn resolve(image: &ImageSource) -> String {
    match image {
        ImageSource::Ref(r) if r == "demo:1" || r == "demo:latest" => "sha256:one".into(),
        other => {
            let text = serde_json::to_string(other).expect("image source serializes");
            format!("sha256:{}", sha256_hex(text.as_bytes()))
        }
    }
}

fn hash(spec: &ServiceSpec) -> String {
    let create = create_spec(
        spec,
        &resolve(&spec.image),
        Some("/var/lib/berth/outputs/web"),
    );
    spec_hash(&create)
}

fn changed(f: &dyn Fn(&mut ServiceSpec)) -> ServiceSpec {
    let mut spec = base();
    f(&mut spec);
    spec
}

/// What is wrong with `fields`' classes, one line each.
fn misclassified(fields: &[Field]) -> Vec<String> {
    let base_hash = hash(&base());
    let mut wrong = Vec::new();
    for f in fields {
        let spec = changed(&f.change);
        if spec == base() {
            wrong.push(format!("{}: the test's change changes nothing", f.name));
            continue;
        }
        let hashed = hash(&spec) != base_hash;
        match &f.class {
            Class::Hashed | Class::HashedAs { .. } if !hashed => wrong.push(format!(
                "{}: classified as hashed, but changing it leaves the spec hash as it was; \
                 make hash::create_spec copy it into CreateSpec, or classify it Policy",
                f.name
            )),
            Class::Policy | Class::ServiceKey if hashed => wrong.push(format!(
                "{}: classified as not hashed, but changing it changes the spec hash (and so \
                 replaces the container); classify it Hashed, or keep it out of CreateSpec",
                f.name
            )),
            _ => {}
        }
        if let Class::HashedAs { through, alike } = &f.class {
            let [a, b] = alike.each_ref().map(|c| changed(c));
            if a == b {
                wrong.push(format!("{}: the two `alike` specs are the same", f.name));
            } else if hash(&a) != hash(&b) {
                wrong.push(format!(
                    "{}: said to be hashed only as {through}, but two values alike in that \
                     hash differently",
                    f.name
                ));
            }
        }
    }
    wrong
}

#[test]
fn every_service_spec_field_is_classified_as_the_hash_treats_it() {
    let wrong = misclassified(&service_spec_fields());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn env_values_and_config_sources_are_classified_field_by_field() {
    let fields: Vec<Field> = env_value_fields()
        .into_iter()
        .chain(config_mount_fields())
        .collect();
    let wrong = misclassified(&fields);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The tables name each field once, by the name records use for it.
#[test]
fn the_tables_name_every_field_once() {
    fn keys(value: serde_json::Value) -> BTreeSet<String> {
        match value {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }
    fn names(fields: &[Field], prefix: &str) -> BTreeSet<String> {
        let names: Vec<String> = fields
            .iter()
            .map(|f| f.name.strip_prefix(prefix).unwrap_or(f.name).to_string())
            .collect();
        let set: BTreeSet<String> = names.iter().cloned().collect();
        assert_eq!(set.len(), names.len(), "a field is listed twice: {names:?}");
        set
    }
    let spec = other();
    assert_eq!(
        names(&service_spec_fields(), ""),
        keys(serde_json::to_value(&spec).expect("spec serializes"))
    );
    let env = EnvValue {
        value: "v".into(),
        secret: true,
    };
    assert_eq!(
        names(&env_value_fields(), "env.*."),
        keys(serde_json::to_value(env).expect("env value serializes"))
    );
    assert_eq!(
        names(&config_mount_fields(), "config[]."),
        keys(serde_json::to_value(&spec.config[0]).expect("config serializes"))
    );
}
