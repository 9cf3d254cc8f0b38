//! Containers other tools started (paunch, tripleo_ansible, docker-cmd),
//! read back for `berthctl adopt --check`: the reverse of [`crate::config`],
//! an inspect turned into the [`CreateSpec`] that would make it, with what
//! its image defines beside it. Read-only: list and inspect, nothing else.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_core::adopt::{AdoptFrom, ForeignContainer, ImageDefaults, LABEL_MANAGED_BY};
use berth_core::runtime::{CreateSpec, LABEL_NODE, RuntimeError};
use berth_core::spec::{Healthcheck, Logging, Network, PortMapping, Resources, Ulimit, Volume};
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, HealthConfig, HostConfig, MountType, PortMap};

use crate::error::Failure;
use crate::{Inner, config};

impl Inner {
    /// Every container with a `managed_by` label of those tools and without
    /// an `io.berth.node` label (any node's), inspected.
    pub(crate) async fn list_foreign(&self) -> Result<Vec<ForeignContainer>, RuntimeError> {
        let (docker, summaries) = self.list_labelled(LABEL_MANAGED_BY.to_string()).await?;
        let mut out = Vec::new();
        for s in summaries {
            let labels = s.labels.unwrap_or_default();
            let tools = labels
                .get(LABEL_MANAGED_BY)
                .is_some_and(|m| AdoptFrom::of(m).is_some());
            let Some(id) = s.id.filter(|_| tools && !labels.contains_key(LABEL_NODE)) else {
                continue;
            };
            let c = match docker.inspect_container(&id, None).await {
                Ok(c) => c,
                // Removed between the list and the inspect.
                Err(e) => match Failure::from(e) {
                    f if f.status() == Some(404) => continue,
                    f => return Err(self.fail("inspect", &id, f)),
                },
            };
            let image = image_defaults(&docker, c.image.as_deref()).await;
            if let Some(f) = foreign(c, image) {
                out.push(f);
            }
        }
        Ok(out)
    }
}

/// What the container's image defines (nothing when the engine no longer
/// has it: then every filled-in value counts as the container's own).
async fn image_defaults(docker: &Docker, image_id: Option<&str>) -> ImageDefaults {
    let Some(id) = image_id.filter(|i| !i.is_empty()) else {
        return ImageDefaults::default();
    };
    let Ok(image) = docker.inspect_image(id).await else {
        return ImageDefaults::default();
    };
    let Some(cfg) = image.config else {
        return ImageDefaults::default();
    };
    ImageDefaults {
        env: env_map(cfg.env.unwrap_or_default()),
        cmd: cfg.cmd,
        entrypoint: cfg.entrypoint,
        user: cfg.user.filter(|u| !u.is_empty()),
        healthcheck: cfg.healthcheck.and_then(healthcheck),
        stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
    }
}

/// The inspect as berth's words; `None` without an id.
pub(crate) fn foreign(
    c: ContainerInspectResponse,
    image: ImageDefaults,
) -> Option<ForeignContainer> {
    let id = c.id?;
    let name = c
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let cfg = c.config.unwrap_or_default();
    let host = c.host_config.unwrap_or_default();
    let state = c.state.unwrap_or_default();
    let labels: BTreeMap<String, String> = cfg.labels.unwrap_or_default().into_iter().collect();
    let create = CreateSpec {
        image: cfg.image.unwrap_or_default(),
        command: cfg.cmd,
        entrypoint: cfg.entrypoint,
        env: env_map(cfg.env.unwrap_or_default()),
        user: cfg.user.filter(|u| !u.is_empty()),
        volumes: volumes(&host),
        volumes_from: host.volumes_from.clone().unwrap_or_default(),
        network: network(host.network_mode.as_deref()),
        ports: ports(host.port_bindings.as_ref()),
        privileged: host.privileged.unwrap_or(false),
        cap_add: host.cap_add.clone().unwrap_or_default(),
        cap_drop: host.cap_drop.clone().unwrap_or_default(),
        security_opt: host.security_opt.clone().unwrap_or_default(),
        ulimits: host
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| {
                Some((
                    u.name?,
                    Ulimit {
                        soft: u.soft?,
                        hard: u.hard?,
                    },
                ))
            })
            .collect(),
        pid: host.pid_mode.clone().filter(|m| !m.is_empty()),
        ipc: host.ipc_mode.clone().filter(|m| !m.is_empty()),
        uts: host.uts_mode.clone().filter(|m| !m.is_empty()),
        hostname: cfg.hostname.filter(|h| !h.is_empty()),
        extra_hosts: host.extra_hosts.clone().unwrap_or_default(),
        group_add: host.group_add.clone().unwrap_or_default(),
        tty: cfg.tty.unwrap_or(false),
        interactive: cfg.open_stdin.unwrap_or(false),
        resources: Resources {
            memory: positive(host.memory),
            nano_cpus: positive(host.nano_cpus),
            pids: host.pids_limit.filter(|n| *n > 0),
            cpu_shares: host.cpu_shares.filter(|n| *n > 0),
            cpuset_cpus: host.cpuset_cpus.clone().filter(|s| !s.is_empty()),
        },
        stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: cfg
            .stop_timeout
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        logging: logging(&host),
        restart: host
            .restart_policy
            .as_ref()
            .and_then(|p| p.name)
            .map(config::restart_policy_of)
            .unwrap_or(berth_core::spec::RestartPolicy::Never),
        healthcheck: cfg.healthcheck.and_then(healthcheck),
        ..CreateSpec::default()
    };
    Some(ForeignContainer {
        id,
        name,
        labels,
        started_at: state
            .started_at
            .filter(|s| !s.is_empty() && !s.starts_with("0001-01-01")),
        running: state.running == Some(true),
        create,
        image,
    })
}

fn positive(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0)
}

fn env_map(entries: Vec<String>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect()
}

/// `Binds` as given, and bind or volume `Mounts`, as berth volumes.
fn volumes(host: &HostConfig) -> Vec<Volume> {
    let mut out: Vec<Volume> = host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| Volume::parse(b).ok())
        .collect();
    for m in host.mounts.iter().flatten() {
        if !matches!(m.typ, Some(MountType::BIND | MountType::VOLUME)) {
            continue;
        }
        if let (Some(source), Some(target)) = (m.source.clone(), m.target.clone()) {
            out.push(Volume {
                source,
                target,
                read_only: m.read_only.unwrap_or(false),
                relabel: None,
                propagation: None,
            });
        }
    }
    out
}

fn network(mode: Option<&str>) -> Network {
    match mode {
        None | Some("" | "default" | "bridge") => Network::Bridge,
        Some("host") => Network::Host,
        Some("none") => Network::None,
        Some(other) => Network::Named(other.to_string()),
    }
}

fn ports(map: Option<&PortMap>) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for (key, bindings) in map.into_iter().flatten() {
        for b in bindings.iter().flatten() {
            let host_ip = b.host_ip.as_deref().unwrap_or_default();
            let host_port = b.host_port.as_deref().unwrap_or_default();
            let text = match (host_ip.is_empty(), host_port.is_empty()) {
                (_, true) => key.clone(),
                (true, false) => format!("{host_port}:{key}"),
                (false, false) => format!("{host_ip}:{host_port}:{key}"),
            };
            if let Ok(p) = PortMapping::try_from(text) {
                out.push(p);
            }
        }
    }
    out
}

/// The json-file driver's options berth sets; `None` for the engine's
/// default (no options).
fn logging(host: &HostConfig) -> Option<Logging> {
    let opts = host.log_config.as_ref()?.config.as_ref()?;
    if opts.is_empty() {
        return None;
    }
    Some(Logging {
        max_size: opts.get("max-size").and_then(|s| s.parse().ok()),
        max_files: opts.get("max-file").and_then(|s| s.parse().ok()),
        tag: opts.get("tag").cloned(),
    })
}

/// The engine's healthcheck as berth's, its zero values the engine's
/// defaults (30s, 30s, 3 retries); `NONE` or no test is none.
fn healthcheck(h: HealthConfig) -> Option<Healthcheck> {
    let test = h.test?;
    let (kind, rest) = test.split_first()?;
    let (exec, shell) = match kind.as_str() {
        "CMD" => (rest.to_vec(), None),
        "CMD-SHELL" => (Vec::new(), Some(rest.join(" "))),
        _ => return None,
    };
    let nanos = |n: Option<i64>, default: Duration| match n.and_then(|n| u64::try_from(n).ok()) {
        Some(n) if n > 0 => Duration::from_nanos(n),
        _ => default,
    };
    Some(Healthcheck {
        exec,
        test: shell,
        interval: nanos(h.interval, Duration::from_secs(30)),
        timeout: nanos(h.timeout, Duration::from_secs(30)),
        retries: h
            .retries
            .and_then(|r| u32::try_from(r).ok())
            .filter(|r| *r > 0)
            .unwrap_or(3),
        start_period: h
            .start_period
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Duration::from_nanos),
    })
}

#[cfg(test)]
mod tests {
    use berth_core::runtime::CreateRequest;
    use berth_core::spec::RestartPolicy;
    use bollard::models::{ContainerConfig, ContainerState};

    use super::*;

    /// What the engine shows for a container made from `spec` (the create
    /// body read back), which must read back as the same spec.
    fn read_back(spec: CreateSpec) -> CreateSpec {
        let req = CreateRequest {
            name: "web".into(),
            spec,
            labels: BTreeMap::from([(LABEL_MANAGED_BY.to_string(), "paunch".to_string())]),
        };
        let body = config::container_config(&req, "n1");
        let c = ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/web".into()),
            config: Some(ContainerConfig {
                image: body.image,
                cmd: body.cmd,
                entrypoint: body.entrypoint,
                env: body.env,
                user: body.user,
                hostname: body.hostname,
                tty: body.tty,
                open_stdin: body.open_stdin,
                labels: body.labels,
                stop_signal: body.stop_signal,
                stop_timeout: body.stop_timeout,
                healthcheck: body.healthcheck,
                ..Default::default()
            }),
            host_config: body.host_config,
            state: Some(ContainerState {
                running: Some(true),
                started_at: Some("2026-12-04T10:00:00Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = foreign(c, ImageDefaults::default()).expect("an id");
        assert_eq!(f.name, "web");
        assert!(f.running);
        assert_eq!(f.started_at.as_deref(), Some("2026-12-04T10:00:00Z"));
        f.create
    }

    #[test]
    fn an_inspect_reads_back_as_the_create_that_made_it() {
        let spec = CreateSpec {
            image: "berth-demo:latest".into(),
            command: Some(vec!["serve".into()]),
            entrypoint: Some(vec!["/demo".into()]),
            env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())]),
            user: Some("root".into()),
            volumes: vec![
                Volume::parse("/srv/a:/a:ro").expect("v"),
                Volume::parse("data:/data").expect("v"),
            ],
            volumes_from_containers: vec!["other:ro".into()],
            network: Network::Host,
            ports: vec![
                PortMapping::try_from("127.0.0.1:8080:80".to_string()).expect("p"),
                PortMapping::try_from("9000:9000/udp".to_string()).expect("p"),
            ],
            privileged: true,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            security_opt: vec!["label=disable".into()],
            ulimits: BTreeMap::from([(
                "nofile".into(),
                Ulimit {
                    soft: 1024,
                    hard: 2048,
                },
            )]),
            pid: Some("host".into()),
            ipc: Some("host".into()),
            hostname: Some("web-1".into()),
            extra_hosts: vec!["db:10.0.0.5".into()],
            group_add: vec!["wheel".into()],
            tty: true,
            interactive: true,
            resources: Resources {
                memory: Some(256 << 20),
                nano_cpus: Some(500_000_000),
                pids: Some(512),
                cpu_shares: Some(512),
                cpuset_cpus: Some("0-1".into()),
            },
            stop_signal: Some("SIGQUIT".into()),
            stop_timeout: Some(Duration::from_secs(20)),
            logging: Some(Logging {
                max_size: Some(1024),
                max_files: Some(3),
                tag: Some("web".into()),
            }),
            restart: RestartPolicy::UnlessStopped,
            healthcheck: Some(Healthcheck {
                exec: Vec::new(),
                test: Some("/openstack/healthcheck 5672".into()),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                retries: 4,
                start_period: Some(Duration::from_secs(1)),
            }),
            ..Default::default()
        };
        let mut got = read_back(spec.clone());
        // The engine names the containers it mounts from, not berth services.
        assert_eq!(got.volumes_from, ["other:ro"]);
        got.volumes_from.clear();
        let mut want = spec;
        want.volumes_from_containers.clear();
        got.ports.sort_by_key(|p| String::from(p.clone()));
        want.ports.sort_by_key(|p| String::from(p.clone()));
        assert_eq!(got, want);
    }

    #[test]
    fn engine_defaults_read_back_as_unset() {
        let spec = CreateSpec {
            image: "berth-demo:latest".into(),
            restart: RestartPolicy::Never,
            ..Default::default()
        };
        assert_eq!(read_back(spec.clone()), spec);
        let mut host = HostConfig {
            network_mode: Some("default".into()),
            ipc_mode: Some(String::new()),
            memory: Some(0),
            pids_limit: Some(0),
            ..Default::default()
        };
        host.log_config = Some(bollard::models::HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(std::collections::HashMap::new()),
        });
        let c = ContainerInspectResponse {
            id: Some("abc".into()),
            host_config: Some(host),
            ..Default::default()
        };
        let f = foreign(c, ImageDefaults::default()).expect("an id");
        assert_eq!(f.create.network, Network::Bridge);
        assert_eq!(f.create.ipc, None);
        assert!(f.create.resources.is_empty());
        assert_eq!(f.create.logging, None);
        assert!(!f.running);
    }

    #[test]
    fn a_healthcheck_with_zero_values_has_the_engines_defaults() {
        let h = healthcheck(HealthConfig {
            test: Some(vec!["CMD".into(), "/demo".into(), "health".into()]),
            ..Default::default()
        })
        .expect("a check");
        assert_eq!(h.exec, ["/demo", "health"]);
        assert_eq!(h.interval, Duration::from_secs(30));
        assert_eq!(h.timeout, Duration::from_secs(30));
        assert_eq!(h.retries, 3);
        assert_eq!(
            healthcheck(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            None
        );
    }
}
