//! `CreateRequest` → the engine's create body. Pure: no engine, no I/O.

use std::collections::HashMap;
use std::time::Duration;

use berth_core::runtime::{CreateRequest, INPUTS_MOUNT, LABEL_NODE, OUTPUTS_MOUNT};
use berth_core::spec::{Healthcheck, Logging, PortMapping, RestartPolicy, Volume};
use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, HostConfigLogConfig, Mount, MountType,
    PortBinding, PortMap, ResourcesUlimits, RestartPolicy as EngineRestartPolicy,
    RestartPolicyNameEnum,
};

/// The create body for `req` on node `node_id`: the request's labels plus
/// this node's label (which wins over a request label of the same key).
pub fn container_config(req: &CreateRequest, node_id: &str) -> ContainerCreateBody {
    let spec = &req.spec;

    let mut labels: HashMap<String, String> = req
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_NODE.to_string(), node_id.to_string());

    // BTreeMap iteration: already sorted by key.
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let mut binds: Vec<String> = spec.volumes.iter().map(bind).collect();
    if let Some(dir) = &spec.outputs_dir {
        binds.push(format!("{dir}:{OUTPUTS_MOUNT}:rw"));
    }

    // Config sources (and the inputs dir) go through the Mounts API, not
    // `binds`: for a bind whose source is missing, `binds` silently creates
    // a directory, Mounts refuses the create.
    let inputs = spec.inputs.as_ref().map(|i| (i.dir.as_str(), INPUTS_MOUNT));
    let mounts: Vec<Mount> = spec
        .config
        .iter()
        .map(|c| (c.source.as_str(), c.target.as_str()))
        .chain(inputs)
        .map(|(source, target)| Mount {
            typ: Some(MountType::BIND),
            source: Some(source.to_string()),
            target: Some(target.to_string()),
            read_only: Some(true),
            ..Default::default()
        })
        .collect();

    let (exposed_ports, port_bindings) = ports(&spec.ports);

    let ulimits: Vec<ResourcesUlimits> = spec
        .ulimits
        .iter()
        .map(|(name, u)| ResourcesUlimits {
            name: Some(name.clone()),
            soft: Some(u.soft),
            hard: Some(u.hard),
        })
        .collect();

    let host_config = HostConfig {
        binds: non_empty(binds),
        mounts: non_empty(mounts),
        network_mode: Some(spec.network.as_mode().to_string()),
        port_bindings,
        privileged: Some(spec.privileged),
        cap_add: non_empty(spec.cap_add.clone()),
        cap_drop: non_empty(spec.cap_drop.clone()),
        security_opt: non_empty(spec.security_opt.clone()),
        ulimits: non_empty(ulimits),
        pid_mode: spec.pid.clone(),
        ipc_mode: spec.ipc.clone(),
        uts_mode: spec.uts.clone(),
        // The containers the loop resolved the services to; a request it
        // did not resolve is refused before this ([`unresolved_volumes_from`]).
        volumes_from: non_empty(spec.volumes_from_containers.clone()),
        extra_hosts: non_empty(spec.extra_hosts.clone()),
        group_add: non_empty(spec.group_add.clone()),
        memory: spec.resources.memory.map(saturating_i64),
        nano_cpus: spec.resources.nano_cpus.map(saturating_i64),
        pids_limit: spec.resources.pids,
        cpu_shares: spec.resources.cpu_shares,
        cpuset_cpus: spec.resources.cpuset_cpus.clone(),
        restart_policy: Some(restart_policy(spec.restart)),
        log_config: spec.logging.as_ref().map(log_config),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: non_empty(env),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        // Left out when false: the engine's default.
        tty: spec.tty.then_some(true),
        open_stdin: spec.interactive.then_some(true),
        labels: Some(labels),
        exposed_ports,
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout.map(stop_timeout_secs),
        healthcheck: spec.healthcheck.as_ref().map(healthcheck),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// Why `req` cannot be created as it is: its `volumes_from` services
/// were not (all) resolved to containers, so the container would lack
/// mounts its spec asks for.
pub fn unresolved_volumes_from(req: &CreateRequest) -> Option<String> {
    let spec = &req.spec;
    (spec.volumes_from.len() != spec.volumes_from_containers.len()).then(|| {
        format!(
            "volumes_from {:?} was not resolved to the services' containers ({} of {})",
            spec.volumes_from,
            spec.volumes_from_containers.len(),
            spec.volumes_from.len()
        )
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v) }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Whole seconds, rounded up: a 500 ms grace period must not become "kill at once".
fn stop_timeout_secs(d: Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    saturating_i64(secs)
}

/// `source:target:OPTIONS`; the source is a host path or a named volume,
/// OPTIONS `ro` or `rw`, then the propagation and SELinux relabel options
/// when set (`rw,shared,z`), as the engine's `Binds` take them.
fn bind(v: &Volume) -> String {
    format!("{}:{}:{}", v.source, v.target, v.options())
}

fn ports(ports: &[PortMapping]) -> (Option<Vec<String>>, Option<PortMap>) {
    if ports.is_empty() {
        return (None, None);
    }
    let mut exposed: Vec<String> = Vec::new();
    let mut map: PortMap = HashMap::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        let binding = PortBinding {
            host_ip: Some(p.host_ip.clone().unwrap_or_default()),
            // Empty: the engine picks a free host port.
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        map.entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    (Some(exposed), Some(map))
}

/// berth's name for an engine restart policy (every one the engine has).
pub fn restart_policy_of(name: RestartPolicyNameEnum) -> RestartPolicy {
    match name {
        RestartPolicyNameEnum::ALWAYS => RestartPolicy::Always,
        RestartPolicyNameEnum::ON_FAILURE => RestartPolicy::OnFailure,
        RestartPolicyNameEnum::NO | RestartPolicyNameEnum::EMPTY => RestartPolicy::Never,
        RestartPolicyNameEnum::UNLESS_STOPPED => RestartPolicy::UnlessStopped,
    }
}

pub fn restart_policy(r: RestartPolicy) -> EngineRestartPolicy {
    let name = match r {
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
        RestartPolicy::Never => RestartPolicyNameEnum::NO,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    EngineRestartPolicy {
        name: Some(name),
        maximum_retry_count: None,
    }
}

fn log_config(l: &Logging) -> HostConfigLogConfig {
    let mut config = HashMap::new();
    if let (Some(size), Some(files)) = (l.max_size, l.max_files) {
        // A bare number is bytes to the json-file driver.
        config.insert("max-size".to_string(), size.to_string());
        config.insert("max-file".to_string(), files.to_string());
    }
    if let Some(tag) = &l.tag {
        config.insert("tag".to_string(), tag.clone());
    }
    HostConfigLogConfig {
        typ: Some("json-file".to_string()),
        config: Some(config),
    }
}

fn healthcheck(h: &Healthcheck) -> HealthConfig {
    let test = match &h.test {
        Some(shell) => vec!["CMD-SHELL".to_string(), shell.clone()],
        None => std::iter::once("CMD".to_string())
            .chain(h.exec.iter().cloned())
            .collect(),
    };
    HealthConfig {
        test: Some(test),
        interval: Some(nanos(h.interval)),
        timeout: Some(nanos(h.timeout)),
        retries: Some(i64::from(h.retries)),
        start_period: h.start_period.map(nanos),
        start_interval: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_core::runtime::{CreateSpec, LABEL_SERVICE};
    use berth_core::spec::{Network, Protocol, Resources, Ulimit};

    use super::*;

    fn req(spec: CreateSpec) -> CreateRequest {
        CreateRequest {
            name: "berth-web".to_string(),
            spec,
            labels: BTreeMap::from([(LABEL_SERVICE.to_string(), "web".to_string())]),
        }
    }

    fn full_spec() -> CreateSpec {
        CreateSpec {
            image: "sha256:abc".to_string(),
            command: Some(vec!["serve".to_string(), "--port=80".to_string()]),
            entrypoint: Some(vec!["/bin/app".to_string()]),
            env: BTreeMap::from([
                ("ZED".to_string(), "last".to_string()),
                ("ALPHA".to_string(), "a=b".to_string()),
                ("MID".to_string(), String::new()),
            ]),
            // The deploy job puts the files' values in `env`; the paths
            // and the digest are for the hash only.
            env_file: vec!["/etc/berth/web.env".to_string()],
            env_file_digest: Some("sha256:abc".to_string()),
            user: Some("1000:1000".to_string()),
            volumes: vec![
                Volume::parse("/srv/data:/data").expect("volume"),
                Volume::parse("cache:/cache:ro").expect("volume"),
                Volume::parse("/run/netns:/run/netns:z,shared").expect("volume"),
                Volume::parse("/etc/app:/etc/app:Z,ro,rslave").expect("volume"),
            ],
            volumes_from: vec!["db:ro".to_string(), "logs".to_string()],
            volumes_from_containers: vec!["c0001:ro".to_string(), "c0002".to_string()],
            exec_in: None,
            network: Network::Named("backend".to_string()),
            ports: vec![
                PortMapping::parse("8080:80").expect("port"),
                PortMapping::parse("127.0.0.1:8081:80").expect("port"),
                PortMapping::parse("53/udp").expect("port"),
            ],
            privileged: true,
            cap_add: vec!["NET_ADMIN".to_string()],
            cap_drop: vec!["MKNOD".to_string()],
            security_opt: vec!["no-new-privileges".to_string()],
            ulimits: BTreeMap::from([(
                "nofile".to_string(),
                Ulimit {
                    soft: 1024,
                    hard: 4096,
                },
            )]),
            pid: Some("host".to_string()),
            ipc: Some("private".to_string()),
            uts: Some("host".to_string()),
            // Not a spec the parser takes (hostname with uts: host), but
            // each field's mapping shows.
            hostname: Some("db-1".to_string()),
            extra_hosts: vec!["db.internal:10.0.0.5".to_string()],
            group_add: vec!["wheel".to_string(), "1001".to_string()],
            tty: true,
            interactive: true,
            resources: Resources {
                memory: Some(256 * 1024 * 1024),
                nano_cpus: Some(1_500_000_000),
                pids: Some(100),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0-3,6".to_string()),
            },
            stop_signal: Some("SIGINT".to_string()),
            stop_timeout: Some(Duration::from_millis(2500)),
            logging: Some(Logging {
                max_size: Some(10 * 1024 * 1024),
                max_files: Some(3),
                tag: Some("nova_api".to_string()),
            }),
            restart: RestartPolicy::OnFailure,
            healthcheck: Some(Healthcheck {
                test: None,
                exec: vec![
                    "curl".to_string(),
                    "-f".to_string(),
                    "http://localhost/".to_string(),
                ],
                interval: Duration::from_secs(5),
                timeout: Duration::from_millis(1500),
                retries: 3,
                start_period: Some(Duration::from_secs(10)),
            }),
            outputs_dir: Some("/var/lib/berth/outputs/job".to_string()),
            config: vec![berth_core::runtime::ConfigBind {
                source: "/etc/berth/web".to_string(),
                target: "/etc/web".to_string(),
            }],
            inputs: Some(berth_core::runtime::InputFiles {
                dir: "/var/lib/berth/inputs/web/g3".to_string(),
                values: BTreeMap::from([("release".to_string(), "2026.2".to_string())]),
            }),
        }
    }

    #[test]
    fn maps_every_field() {
        let body = container_config(&req(full_spec()), "node-1");
        assert_eq!(body.image.as_deref(), Some("sha256:abc"));
        assert_eq!(
            body.cmd,
            Some(vec!["serve".to_string(), "--port=80".to_string()])
        );
        assert_eq!(body.entrypoint, Some(vec!["/bin/app".to_string()]));
        assert_eq!(
            body.env,
            Some(vec![
                "ALPHA=a=b".to_string(),
                "MID=".to_string(),
                "ZED=last".to_string()
            ])
        );
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        let mounts = body
            .host_config
            .as_ref()
            .and_then(|h| h.mounts.as_ref())
            .expect("config mounts");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].source.as_deref(), Some("/etc/berth/web"));
        assert_eq!(mounts[0].target.as_deref(), Some("/etc/web"));
        assert_eq!(
            mounts[0].read_only,
            Some(true),
            "config is mounted read-only"
        );
        assert_eq!(
            (
                mounts[1].source.as_deref(),
                mounts[1].target.as_deref(),
                mounts[1].read_only
            ),
            (
                Some("/var/lib/berth/inputs/web/g3"),
                Some(INPUTS_MOUNT),
                Some(true)
            ),
            "the inputs dir is mounted read-only, refused by the engine if missing"
        );
        let labels = body.labels.as_ref().expect("labels");
        assert_eq!(labels.get(LABEL_NODE).map(String::as_str), Some("node-1"));
        assert_eq!(labels.get(LABEL_SERVICE).map(String::as_str), Some("web"));
        assert_eq!(labels.len(), 2);
        assert_eq!(body.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(body.stop_timeout, Some(3), "2.5 s rounds up to 3 s");
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".to_string(), "53/udp".to_string()])
        );

        let hc = body.healthcheck.as_ref().expect("healthcheck");
        assert_eq!(
            hc.test,
            Some(vec![
                "CMD".to_string(),
                "curl".to_string(),
                "-f".to_string(),
                "http://localhost/".to_string()
            ])
        );
        assert_eq!(hc.interval, Some(5_000_000_000));
        assert_eq!(hc.timeout, Some(1_500_000_000));
        assert_eq!(hc.start_period, Some(10_000_000_000));
        assert_eq!(hc.retries, Some(3));

        let host = body.host_config.as_ref().expect("host config");
        assert_eq!(
            host.binds,
            Some(vec![
                "/srv/data:/data:rw".to_string(),
                "cache:/cache:ro".to_string(),
                // Propagation and relabel as Docker's Binds take them.
                "/run/netns:/run/netns:rw,shared,z".to_string(),
                "/etc/app:/etc/app:ro,rslave,Z".to_string(),
                format!("/var/lib/berth/outputs/job:{OUTPUTS_MOUNT}:rw"),
            ])
        );
        assert_eq!(host.network_mode.as_deref(), Some("backend"));
        let pb = host.port_bindings.as_ref().expect("port bindings");
        assert_eq!(
            pb.get("80/tcp"),
            Some(&Some(vec![
                PortBinding {
                    host_ip: Some(String::new()),
                    host_port: Some("8080".to_string())
                },
                PortBinding {
                    host_ip: Some("127.0.0.1".to_string()),
                    host_port: Some("8081".to_string())
                },
            ]))
        );
        assert_eq!(
            pb.get("53/udp"),
            Some(&Some(vec![PortBinding {
                host_ip: Some(String::new()),
                host_port: Some(String::new())
            }]))
        );
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["MKNOD".to_string()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_string()])
        );
        assert_eq!(
            host.ulimits,
            Some(vec![ResourcesUlimits {
                name: Some("nofile".to_string()),
                soft: Some(1024),
                hard: Some(4096)
            }])
        );
        assert_eq!(host.pid_mode.as_deref(), Some("host"));
        assert_eq!(host.ipc_mode.as_deref(), Some("private"));
        assert_eq!(host.memory, Some(256 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.pids_limit, Some(100));
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.cpuset_cpus.as_deref(), Some("0-3,6"));
        assert_eq!(host.uts_mode.as_deref(), Some("host"));
        assert_eq!(
            host.extra_hosts,
            Some(vec!["db.internal:10.0.0.5".to_string()])
        );
        // The containers, not the service names.
        assert_eq!(
            host.volumes_from,
            Some(vec!["c0001:ro".to_string(), "c0002".to_string()])
        );
        assert_eq!(
            host.group_add,
            Some(vec!["wheel".to_string(), "1001".to_string()])
        );
        assert_eq!(body.hostname.as_deref(), Some("db-1"));
        assert_eq!(body.tty, Some(true));
        assert_eq!(body.open_stdin, Some(true));
        assert_eq!(
            host.restart_policy,
            Some(EngineRestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: None
            })
        );
        let log = host.log_config.as_ref().expect("log config");
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let cfg = log.config.as_ref().expect("log options");
        assert_eq!(cfg.get("max-size").map(String::as_str), Some("10485760"));
        assert_eq!(cfg.get("max-file").map(String::as_str), Some("3"));
        assert_eq!(cfg.get("tag").map(String::as_str), Some("nova_api"));
    }

    #[test]
    fn a_shell_string_healthcheck_is_cmd_shell() {
        let mut spec = full_spec();
        if let Some(h) = spec.healthcheck.as_mut() {
            h.exec.clear();
            h.test = Some("/openstack/healthcheck 5672".to_string());
        }
        let body = container_config(&req(spec), "n");
        let hc = body.healthcheck.expect("healthcheck");
        assert_eq!(
            hc.test,
            Some(vec![
                "CMD-SHELL".to_string(),
                "/openstack/healthcheck 5672".to_string()
            ])
        );
        assert_eq!(hc.interval, Some(5_000_000_000));
    }

    #[test]
    fn minimal_spec_leaves_engine_defaults_alone() {
        let spec = CreateSpec {
            image: "sha256:abc".to_string(),
            ..Default::default()
        };
        let body = container_config(&req(spec), "n");
        assert_eq!(body.cmd, None);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.env, None);
        assert_eq!(body.user, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.healthcheck, None);
        assert_eq!(body.stop_signal, None);
        assert_eq!(body.stop_timeout, None);
        let host = body.host_config.expect("host config");
        assert_eq!(host.binds, None);
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.ulimits, None);
        assert_eq!(host.memory, None);
        assert_eq!(host.nano_cpus, None);
        assert_eq!(host.pids_limit, None);
        assert_eq!(host.cpu_shares, None);
        assert_eq!(host.cpuset_cpus, None);
        assert_eq!(host.uts_mode, None);
        assert_eq!(host.extra_hosts, None);
        assert_eq!(host.volumes_from, None);
        assert_eq!(host.group_add, None);
        assert_eq!(body.hostname, None);
        assert_eq!(body.tty, None);
        assert_eq!(body.open_stdin, None);
        assert_eq!(
            host.log_config, None,
            "the engine's default log driver stays"
        );
        assert_eq!(
            host.restart_policy.and_then(|r| r.name),
            Some(RestartPolicyNameEnum::ALWAYS)
        );
    }

    /// A tag alone (paunch's `log_tag`) is the json-file driver with that
    /// tag and no rotation; rotation alone has no tag.
    #[test]
    fn a_log_tag_with_or_without_rotation() {
        let with = |logging: Logging| {
            let spec = CreateSpec {
                logging: Some(logging),
                ..Default::default()
            };
            let host = container_config(&req(spec), "n")
                .host_config
                .expect("host config");
            let log = host.log_config.expect("log config");
            assert_eq!(log.typ.as_deref(), Some("json-file"));
            let mut keys: Vec<(String, String)> =
                log.config.expect("options").into_iter().collect();
            keys.sort();
            keys
        };
        let tag_only = Logging {
            max_size: None,
            max_files: None,
            tag: Some("{{.Name}}".to_string()),
        };
        assert_eq!(
            with(tag_only),
            [("tag".to_string(), "{{.Name}}".to_string())]
        );
        let rotation = Logging {
            max_size: Some(1024),
            max_files: Some(2),
            tag: None,
        };
        assert_eq!(
            with(rotation),
            [
                ("max-file".to_string(), "2".to_string()),
                ("max-size".to_string(), "1024".to_string())
            ]
        );
    }

    #[test]
    fn volumes_from_must_be_resolved_to_containers() {
        assert_eq!(unresolved_volumes_from(&req(full_spec())), None);
        assert_eq!(unresolved_volumes_from(&req(CreateSpec::default())), None);
        let mut spec = full_spec();
        spec.volumes_from_containers.clear();
        let why = unresolved_volumes_from(&req(spec)).expect("refused");
        assert!(
            why.contains(r#"volumes_from ["db:ro", "logs"] was not resolved"#),
            "{why}"
        );
    }

    #[test]
    fn restart_policy_names() {
        for (policy, name) in [
            (RestartPolicy::Always, "always"),
            (RestartPolicy::OnFailure, "on-failure"),
            (RestartPolicy::Never, "no"),
            (RestartPolicy::UnlessStopped, "unless-stopped"),
        ] {
            let spec = CreateSpec {
                restart: policy,
                ..Default::default()
            };
            let body = container_config(&req(spec), "n");
            let json = serde_json::to_value(&body).expect("serialize");
            assert_eq!(json["HostConfig"]["RestartPolicy"]["Name"], name);
            assert_eq!(policy.engine_name(), name);
            // And read back from an inspect as the same policy.
            let engine = restart_policy(policy).name.expect("named");
            assert_eq!(restart_policy_of(engine), policy);
        }
        assert_eq!(
            restart_policy_of(RestartPolicyNameEnum::EMPTY),
            RestartPolicy::Never
        );
    }

    #[test]
    fn node_label_wins_over_a_request_label() {
        let mut r = req(CreateSpec::default());
        r.labels
            .insert(LABEL_NODE.to_string(), "someone-else".to_string());
        let body = container_config(&r, "me");
        assert_eq!(
            body.labels
                .expect("labels")
                .get(LABEL_NODE)
                .map(String::as_str),
            Some("me")
        );
    }

    #[test]
    fn serialized_body_uses_engine_field_names() {
        let body = container_config(&req(full_spec()), "node-1");
        let json = serde_json::to_value(&body).expect("serialize");
        assert_eq!(json["ExposedPorts"]["80/tcp"], serde_json::json!({}));
        assert_eq!(json["Healthcheck"]["Test"][0], "CMD");
        assert_eq!(json["HostConfig"]["NanoCpus"], 1_500_000_000_i64);
        assert_eq!(json["HostConfig"]["PidsLimit"], 100);
        assert_eq!(json["HostConfig"]["LogConfig"]["Type"], "json-file");
        assert_eq!(json["HostConfig"]["Ulimits"][0]["Name"], "nofile");
        assert_eq!(json["StopTimeout"], 3);
        assert_eq!(
            json["HostConfig"]["PortBindings"]["80/tcp"][1]["HostIp"],
            "127.0.0.1"
        );
    }

    #[test]
    fn protocol_is_part_of_the_port_key() {
        let ports = vec![PortMapping {
            host_ip: None,
            host_port: Some(5353),
            container_port: 53,
            protocol: Protocol::Udp,
        }];
        let (exposed, map) = super::ports(&ports);
        assert_eq!(exposed, Some(vec!["53/udp".to_string()]));
        assert!(map.expect("map").contains_key("53/udp"));
    }

    #[test]
    fn sub_second_stop_timeout_is_not_zero() {
        assert_eq!(stop_timeout_secs(Duration::from_millis(1)), 1);
        assert_eq!(stop_timeout_secs(Duration::from_secs(0)), 0);
        assert_eq!(stop_timeout_secs(Duration::from_secs(30)), 30);
    }
}
