//! paunch's own expectations as a check on what berth asks the engine for.
//!
//! paunch's unit tests and heat-agents' docker-cmd hook tests pair a
//! container config with the exact `docker run` / `podman run` argv paunch
//! builds for it (`../shared/corpus/paunch/test_builder_*.extracted.json`,
//! `../shared/corpus/heat/heat-agents_test_hook_docker_cmd.extracted.json`).
//! For each of those, the config is imported with `berth_core::import`, the
//! spec goes through the daemon's own path to the engine
//! (`container::create_request` for a record, then
//! `berth_docker::container_config`), and the create body is compared, field
//! by field, with the argv parsed into the same fields.
//!
//! Nothing is left out silently: a difference that is berth's choice is in
//! [`SEMANTIC_CHOICES`] with its reason; a key the importer does not convert
//! yet is in [`NOT_YET_IMPORTED`] (and the importer must have warned about
//! it); a known importer bug is in [`KNOWN_IMPORTER_BUGS`]. Each entry must
//! be needed: one that no comparison uses fails the test.
//!
//! Without the corpus, [`the_projects_own_config_gives_paunchs_argv`] checks
//! the parser and the comparison on a config written for this test, with the
//! argv derived from paunch's behaviour as the corpus README documents it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_core::container::{RecordDirs, create_request};
use berth_core::import::{ImageMap, Import, Input, Options, heat_file, paunch_files};
use berth_core::record::Deployment;
use berth_core::runtime::INPUTS_MOUNT;
use berth_core::spec::{ImageSource, ServiceSpec};
use berth_core::waves::{Readiness, readiness};
use berth_docker::container_config;
use bollard::models::{ContainerCreateBody, RestartPolicyNameEnum};
use serde_json::Value as Json;

/// A difference between paunch's argv and berth's create that is berth's
/// choice, not a bug. `flags`: argv flags that map to no field of the
/// create body and are accounted for by this entry. `warned`: the config key
/// the importer must have warned "not imported" about for this entry to
/// apply.
struct Choice {
    id: &'static str,
    flags: &'static [&'static str],
    warned: Option<&'static str>,
    why: &'static str,
}

/// Every difference berth makes on purpose. Each entry is used by the
/// corpus comparison (the test fails on one that is not).
const SEMANTIC_CHOICES: &[Choice] = &[
    Choice {
        id: "name",
        flags: &["--name"],
        warned: None,
        why: "engine-run mechanics: berth names the container <prefix><service> itself; \
              paunch's `<name>-<8 random>` and rename do not apply",
    },
    Choice {
        id: "detach",
        flags: &["--detach"],
        warned: None,
        why: "engine-run mechanics: how the CLI returns at once; berth creates and starts \
              through the API and waits for a task (detach: false) itself",
    },
    Choice {
        id: "labels",
        flags: &["--label"],
        warned: None,
        why: "labels aside (the issue): paunch's config_id/container_name/managed_by/\
              config_data and docker-cmd's deploy_* labels are their idempotency \
              bookkeeping; berth labels its containers io.berth.*",
    },
    Choice {
        id: "conmon-pidfile",
        flags: &["--conmon-pidfile"],
        warned: None,
        why: "podman's conmon bookkeeping for paunch's tripleo_<name>.service unit; berth \
              talks to the engine's API and supervises the container itself",
    },
    Choice {
        id: "rm",
        flags: &[],
        warned: Some("remove"),
        why: "engine-run mechanics: berth keeps a task's container until its next run, for \
              `berthctl logs` (the importer warns about `remove`)",
    },
    Choice {
        id: "memory-swap",
        flags: &[],
        warned: Some("memswap_limit"),
        why: "berth sets no swap limit, the engine's default applies (the importer warns)",
    },
    Choice {
        id: "memory-swappiness",
        flags: &[],
        warned: Some("mem_swappiness"),
        why: "berth sets no swappiness, the engine's default applies (the importer warns)",
    },
    Choice {
        id: "uts-host-hostname",
        flags: &[],
        warned: None,
        why: "hostname with uts: host: the engine refuses that create (docker: \"conflicting \
              options: hostname and the UTS mode\", podman likewise), and berth refuses it \
              at import; the record is compared without its hostname",
    },
    Choice {
        id: "cpuset-affinity",
        flags: &[],
        warned: None,
        why: "no cpuset_cpus key: paunch passes --cpuset-cpus=<its own CPU affinity at run \
              time> (0,1,2,3 in its tests); berth pins nothing, so every CPU, as the engine's \
              default",
    },
    Choice {
        id: "exec-target-by-service",
        flags: &[],
        warned: None,
        why: "an exec's target: paunch execs in the container's actual name, `<name>-<8 random>` \
              while a unique name is in use; berth's exec_in names the service and finds its \
              container in place when the task runs",
    },
    Choice {
        id: "env-file-read-by-berth",
        flags: &[],
        warned: None,
        why: "env_file: paunch hands the engine --env-file paths to read; berthd reads the \
              same files at apply (the spec lists them, in order) and gives the engine their \
              values as env, kept secret, with a digest in the spec hash",
    },
    Choice {
        id: "log-driver-named",
        flags: &[],
        warned: None,
        why: "log_tag: paunch passes --log-opt tag=... and leaves the driver to the engine's \
              default (json-file on a stock engine); berth names json-file with its options, \
              so a node whose engine defaults to another driver still gets the tag",
    },
    Choice {
        id: "podman-restart-by-systemd",
        flags: &[],
        warned: None,
        why: "restart with podman: paunch passes no --restart but creates the container and \
              starts it through the tripleo_<name>.service unit it writes (Restart=always); \
              berth gives the engine the policy itself",
    },
    Choice {
        id: "healthcheck-defaults",
        flags: &[],
        warned: None,
        why: "a healthcheck without interval/timeout/retries: paunch leaves them to the \
              engine (30s, 30s, 3); berth writes those values into the create",
    },
    Choice {
        id: "stop-timeout-rounded",
        flags: &[],
        warned: None,
        why: "the engine's StopTimeout is whole seconds; paunch writes a fraction (which \
              docker's CLI refuses), berth rounds it up so a grace period never shrinks",
    },
    Choice {
        id: "inputs-env",
        flags: &[],
        warned: None,
        why: "a Heat deployment's inputs (deploy_stack_id, deploy_resource_name): docker-cmd \
              only labels the container with them; berth gives them to it as \
              BERTH_INPUT_<NAME> env",
    },
    Choice {
        id: "inputs-mount",
        flags: &[],
        warned: None,
        why: "... and as files, mounted read-only at /berth/inputs",
    },
];

/// Keys the importer does not convert yet: it warns "not imported: ..." for
/// them, and the comparison leaves out only these flags, only for a
/// container that has the key. THIS LIST MUST SHRINK as support lands: a
/// key the importer stops warning about fails the test until it is removed
/// here (its flags are then compared like any other). `action` is an
/// `action: exec` entry: its whole `exec` argv.
const NOT_YET_IMPORTED: &[(&str, &[&str])] = &[];

/// `(record, container, field, report)`: a difference that is a bug in
/// `berth_core::import`, left visible here until it is fixed (the test fails
/// once the field agrees, so the entry goes with the fix).
const KNOWN_IMPORTER_BUGS: &[(&str, &str, &str, &str)] = &[];

/// Corpus records with a container config that are not compared, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "TestBaseBuilder.test_apply_failed_pull",
        "the image pull fails, so paunch runs nothing: its argvs are inspect and pull only",
    ),
    (
        "TestBaseBuilder.test_durations",
        "no argv in its assertions: `result` holds one --stop-timeout flag per container of \
         image-less configs; compared by the_durations_record_gives_paunchs_stop_timeouts",
    ),
    (
        "TestBaseBuilder.test_cont_exec_args",
        "paunch's exec builder called directly on a run config with no image and no \
         `action: exec`: an exec into a running container, not a create (exec entries are \
         NOT_YET_IMPORTED)",
    ),
];

/// Engine operations paunch and docker-cmd run around their creates
/// (existence checks, pulls, listing, cleanup): not a create, so not
/// compared; berth does its own.
const ENGINE_OPERATIONS: &[&str] = &["inspect", "pull", "ps", "stop", "rm", "rename", "start"];

/// The heat-agents records take their deployment on stdin; which one each
/// test feeds (tests/test_hook_docker_cmd.py: `self.data` or
/// `self.data_exit_code`).
const HEAT_RECORD_DATA: &[(&str, &str)] = &[
    (
        "HookDockerCmdTest.test_hook",
        "heat-agents_hook-docker-cmd_data.json",
    ),
    (
        "HookDockerCmdTest.test_hook_exit_codes",
        "heat-agents_hook-docker-cmd_data_exit_code.json",
    ),
    (
        "HookDockerCmdTest.test_hook_failed",
        "heat-agents_hook-docker-cmd_data.json",
    ),
    (
        "HookDockerCmdTest.test_hook_unique_names",
        "heat-agents_hook-docker-cmd_data.json",
    ),
];

const PAUNCH_FILES: &[&str] = &[
    "paunch/test_builder_base.extracted.json",
    "paunch/test_builder_compose1.extracted.json",
    "paunch/test_builder_podman.extracted.json",
];
const HEAT_FILE: &str = "heat/heat-agents_test_hook_docker_cmd.extracted.json";

/// The shell paunch (and docker's CLI) would run from: an `--env=NAME`
/// without a value takes its value from here, as the importer's does.
const HOST_ENV: &[(&str, &str)] = &[
    ("SINGLE", "from-the-shell"),
    ("TRIPLEO_MINOR_UPDATE", "false"),
];

fn host_env(name: &str) -> Option<String> {
    HOST_ENV
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Docker's healthcheck defaults, which the engine applies to a check
/// given without them.
const DOCKER_HEALTH_INTERVAL_NS: i64 = 30_000_000_000;
const DOCKER_HEALTH_TIMEOUT_NS: i64 = 30_000_000_000;
const DOCKER_HEALTH_RETRIES: i64 = 3;

/// The fields both sides are compared on.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields {
    image: String,
    command: Vec<String>,
    entrypoint: Vec<String>,
    env: BTreeMap<String, String>,
    env_files: Vec<String>,
    /// `source:target:options`, options sorted, `rw` when neither given.
    volumes: BTreeSet<String>,
    volumes_from: Vec<String>,
    net: String,
    pid: Option<String>,
    ipc: Option<String>,
    uts: Option<String>,
    user: Option<String>,
    hostname: Option<String>,
    privileged: bool,
    cap_add: BTreeSet<String>,
    cap_drop: BTreeSet<String>,
    security_opt: Vec<String>,
    ulimits: BTreeMap<String, (i64, i64)>,
    healthcheck: Option<Health>,
    restart: String,
    stop_timeout: Option<f64>,
    stop_signal: Option<String>,
    extra_hosts: Vec<String>,
    group_add: Vec<String>,
    tty: bool,
    interactive: bool,
    auto_remove: bool,
    cpu_shares: Option<i64>,
    cpuset_cpus: Option<String>,
    memory: Option<i64>,
    memory_swap: Option<i64>,
    memory_swappiness: Option<i64>,
    pids_limit: Option<i64>,
    nano_cpus: Option<i64>,
    log_driver: Option<String>,
    log_opts: BTreeMap<String, String>,
    ports: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Health {
    test: Vec<String>,
    interval_ns: Option<i64>,
    timeout_ns: Option<i64>,
    retries: Option<i64>,
}

/// Each field that differs: `(name, paunch's, berth's)`.
fn differences(want: &Fields, got: &Fields) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    macro_rules! cmp {
        ($($f:ident),* $(,)?) => {$(
            if want.$f != got.$f {
                out.push((stringify!($f), format!("{:?}", want.$f), format!("{:?}", got.$f)));
            }
        )*};
    }
    cmp!(
        image,
        command,
        entrypoint,
        env,
        env_files,
        volumes,
        volumes_from,
        net,
        pid,
        ipc,
        uts,
        user,
        hostname,
        privileged,
        cap_add,
        cap_drop,
        security_opt,
        ulimits,
        healthcheck,
        restart,
        stop_timeout,
        stop_signal,
        extra_hosts,
        group_add,
        tty,
        interactive,
        auto_remove,
        cpu_shares,
        cpuset_cpus,
        memory,
        memory_swap,
        memory_swappiness,
        pids_limit,
        nano_cpus,
        log_driver,
        log_opts,
        ports,
    );
    out
}

/// A `run`/`create` argv (after the subcommand) parsed into [`Fields`], and
/// what in it is no create field.
#[derive(Debug, Default)]
struct Run {
    /// `docker` or `podman`.
    tool: String,
    fields: Fields,
    name: Option<String>,
    labels: Vec<String>,
    /// Flags accounted for by a [`SEMANTIC_CHOICES`] entry's `flags`.
    mechanics: BTreeSet<&'static str>,
}

impl Run {
    /// The container it creates: its `container_name` label, else its
    /// `--name`.
    fn container(&self) -> Option<&str> {
        self.labels
            .iter()
            .find_map(|l| l.strip_prefix("container_name="))
            .or(self.name.as_deref())
    }
}

/// Flags taking a value (`--flag=V` or `--flag V`).
const VALUE_FLAGS: &[&str] = &[
    "--name",
    "--label",
    "--env",
    "--env-file",
    "--net",
    "--network",
    "--ipc",
    "--pid",
    "--uts",
    "--user",
    "--volume",
    "--volumes-from",
    "--cap-add",
    "--cap-drop",
    "--ulimit",
    "--health-cmd",
    "--health-interval",
    "--health-timeout",
    "--health-retries",
    "--restart",
    "--stop-timeout",
    "--security-opt",
    "--cpuset-cpus",
    "--cpu-shares",
    "--memory",
    "--memory-swap",
    "--memory-swappiness",
    "--pids-limit",
    "--hostname",
    "--add-host",
    "--group-add",
    "--log-opt",
    "--log-driver",
    "--conmon-pidfile",
];
/// Flags that are true alone, or `=true`/`=false`.
const BOOL_FLAGS: &[&str] = &["--detach", "--privileged", "--tty", "--interactive", "--rm"];

fn parse_run(args: &[String]) -> Result<Run, String> {
    let mut run = Run::default();
    run.fields.net = "bridge".to_string(); // docker run's default network
    run.fields.restart = "no".to_string(); // docker run's default policy
    let mut health = Health::default();
    let mut has_health = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with("--") {
            run.fields.image = arg.clone();
            run.fields.command = args[i..].to_vec();
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        if BOOL_FLAGS.contains(&flag) {
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => return Err(format!("{flag}={other}: not true or false")),
            };
            match flag {
                "--detach" => {
                    run.mechanics.insert("--detach");
                }
                "--privileged" => run.fields.privileged = on,
                "--tty" => run.fields.tty = on,
                "--interactive" => run.fields.interactive = on,
                _ => run.fields.auto_remove = on,
            }
            continue;
        }
        if !VALUE_FLAGS.contains(&flag) {
            return Err(format!(
                "unknown flag {arg:?}: teach parse_run what it means"
            ));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .ok_or_else(|| format!("{flag} without a value"))?
                    .clone();
                i += 1;
                v
            }
        };
        let f = &mut run.fields;
        match flag {
            "--name" => {
                run.mechanics.insert("--name");
                run.name = Some(value);
            }
            "--label" => {
                run.mechanics.insert("--label");
                run.labels.push(value);
            }
            "--conmon-pidfile" => {
                run.mechanics.insert("--conmon-pidfile");
            }
            "--env" => match value.split_once('=') {
                Some((k, v)) => {
                    f.env.insert(k.to_string(), v.to_string());
                }
                // docker's CLI: the client's value, or nothing.
                None => {
                    if let Some(v) = host_env(&value) {
                        f.env.insert(value, v);
                    }
                }
            },
            "--env-file" => f.env_files.push(value),
            "--net" | "--network" => f.net = value,
            "--ipc" => f.ipc = Some(value),
            "--pid" => f.pid = Some(value),
            "--uts" => f.uts = Some(value),
            "--user" => f.user = Some(value),
            "--hostname" => f.hostname = Some(value),
            "--volume" => {
                f.volumes.insert(norm_volume(&value)?);
            }
            "--volumes-from" => f.volumes_from.push(value),
            "--cap-add" => {
                f.cap_add.insert(value);
            }
            "--cap-drop" => {
                f.cap_drop.insert(value);
            }
            "--ulimit" => {
                let (name, limits) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--ulimit={value}: no ="))?;
                let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
                let num = |s: &str| {
                    s.parse::<i64>()
                        .map_err(|e| format!("--ulimit={value}: {e}"))
                };
                f.ulimits.insert(name.to_string(), (num(soft)?, num(hard)?));
            }
            "--health-cmd" => {
                has_health = true;
                // docker's CLI: a shell command.
                health.test = vec!["CMD-SHELL".to_string(), value];
            }
            "--health-interval" => health.interval_ns = Some(go_duration_ns(&value)?),
            "--health-timeout" => health.timeout_ns = Some(go_duration_ns(&value)?),
            "--health-retries" => {
                health.retries = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--restart" => f.restart = value,
            "--stop-timeout" => {
                f.stop_timeout = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--security-opt" => f.security_opt.push(value),
            "--cpuset-cpus" => f.cpuset_cpus = Some(value),
            "--cpu-shares" => {
                f.cpu_shares = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--memory" => f.memory = Some(docker_bytes(&value)?),
            "--memory-swap" => f.memory_swap = Some(docker_bytes(&value)?),
            "--memory-swappiness" => {
                f.memory_swappiness = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--pids-limit" => {
                f.pids_limit = Some(value.parse().map_err(|e| format!("{arg}: {e}"))?)
            }
            "--add-host" => f.extra_hosts.push(value),
            "--group-add" => f.group_add.push(value),
            "--log-driver" => f.log_driver = Some(value),
            "--log-opt" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--log-opt={value}: no ="))?;
                f.log_opts.insert(k.to_string(), v.to_string());
            }
            other => return Err(format!("{other}: listed in VALUE_FLAGS but not parsed")),
        }
    }
    if run.fields.image.is_empty() {
        return Err("no image in the argv".to_string());
    }
    if has_health {
        run.fields.healthcheck = Some(health);
    } else if health != Health::default() {
        return Err("--health-* options without --health-cmd".to_string());
    }
    Ok(run)
}

/// `source:target[:options]` with options sorted and docker's default `rw`
/// made explicit.
fn norm_volume(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => return Err(format!("volume {v:?}: expected SOURCE:TARGET[:OPTIONS]")),
    };
    let mut set: BTreeSet<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
    if !set.contains("ro") && !set.contains("rw") {
        set.insert("rw");
    }
    Ok(format!(
        "{source}:{target}:{}",
        set.into_iter().collect::<Vec<_>>().join(",")
    ))
}

/// Go's duration syntax (`30s`, `1m30s`, `1.5h`), as docker's CLI reads
/// `--health-*`, in nanoseconds.
fn go_duration_ns(s: &str) -> Result<i64, String> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err("empty duration".to_string());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?}: no unit"))?;
        let number: f64 = rest[..n]
            .parse()
            .map_err(|e| format!("duration {s:?}: {e}"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" => 1e3,
            "ns" => 1.0,
            other => return Err(format!("duration {s:?}: unit {other:?}")),
        };
        rest = &rest[u..];
        total += number * scale;
    }
    Ok(total.round() as i64)
}

/// docker's CLI sizes (`--memory=1G`): a number with an optional unit
/// b, k, m, g, t (powers of 1024), case-insensitive, an optional trailing
/// `b`.
fn docker_bytes(s: &str) -> Result<i64, String> {
    let lower = s.to_ascii_lowercase();
    let trimmed = lower
        .strip_suffix('b')
        .filter(|t| t.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&lower);
    let (digits, unit) = match trimmed
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
    {
        Some((at, _)) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        _ => return Err(format!("size {s:?}: unit {unit:?}")),
    };
    let n: f64 = digits.parse().map_err(|e| format!("size {s:?}: {e}"))?;
    Ok((n * mult) as i64)
}

/// The create body in the same fields.
fn body_fields(body: &ContainerCreateBody) -> Fields {
    let host = body.host_config.clone().unwrap_or_default();
    let mut volumes = BTreeSet::new();
    for b in host.binds.unwrap_or_default() {
        volumes.insert(norm_volume(&b).unwrap_or(b));
    }
    for m in host.mounts.unwrap_or_default() {
        let mode = if m.read_only == Some(true) {
            "ro"
        } else {
            "rw"
        };
        volumes.insert(format!(
            "{}:{}:{mode}",
            m.source.unwrap_or_default(),
            m.target.unwrap_or_default()
        ));
    }
    let restart = match host.restart_policy.and_then(|r| r.name) {
        None | Some(RestartPolicyNameEnum::EMPTY) => "no".to_string(),
        Some(name) => name.to_string(),
    };
    let log = host.log_config.unwrap_or_default();
    Fields {
        image: body.image.clone().unwrap_or_default(),
        command: body.cmd.clone().unwrap_or_default(),
        entrypoint: body.entrypoint.clone().unwrap_or_default(),
        env: body
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect(),
        env_files: Vec::new(), // the engine has none: a CLI feature
        volumes,
        volumes_from: host.volumes_from.unwrap_or_default(),
        net: host.network_mode.unwrap_or_else(|| "bridge".to_string()),
        pid: host.pid_mode,
        ipc: host.ipc_mode,
        uts: host.uts_mode,
        user: body.user.clone(),
        hostname: body.hostname.clone(),
        privileged: host.privileged.unwrap_or(false),
        cap_add: host.cap_add.unwrap_or_default().into_iter().collect(),
        cap_drop: host.cap_drop.unwrap_or_default().into_iter().collect(),
        security_opt: host.security_opt.unwrap_or_default(),
        ulimits: host
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                (
                    u.name.unwrap_or_default(),
                    (u.soft.unwrap_or(-1), u.hard.unwrap_or(-1)),
                )
            })
            .collect(),
        healthcheck: body.healthcheck.clone().map(|h| Health {
            test: h.test.unwrap_or_default(),
            interval_ns: h.interval,
            timeout_ns: h.timeout,
            retries: h.retries,
        }),
        restart,
        stop_timeout: body.stop_timeout.map(|s| s as f64),
        stop_signal: body.stop_signal.clone(),
        extra_hosts: host.extra_hosts.unwrap_or_default(),
        group_add: host.group_add.unwrap_or_default(),
        tty: body.tty.unwrap_or(false),
        interactive: body.open_stdin.unwrap_or(false),
        auto_remove: host.auto_remove.unwrap_or(false),
        cpu_shares: host.cpu_shares,
        cpuset_cpus: host.cpuset_cpus,
        memory: host.memory,
        memory_swap: host.memory_swap,
        memory_swappiness: host.memory_swappiness,
        pids_limit: host.pids_limit,
        nano_cpus: host.nano_cpus,
        log_driver: log.typ,
        log_opts: log.config.unwrap_or_default().into_iter().collect(),
        ports: body.exposed_ports.clone().unwrap_or_default(),
    }
}

/// The create body the daemon would send for an imported spec: a record
/// of it (inputs resolved as the wave logic resolves them once its
/// dependencies hold), `container::create_request`, then
/// `container_config`. The image ref stands in for the id the engine
/// resolves it to before the create.
fn create_body(spec: &ServiceSpec) -> Result<ContainerCreateBody, String> {
    let ImageSource::Ref(image) = &spec.image else {
        return Err(format!("{}: an imported spec with no image ref", spec.name));
    };
    let unblocked = ServiceSpec {
        depends_on: Vec::new(),
        volumes_from: Vec::new(),
        ..spec.clone()
    };
    let inputs = match readiness(&unblocked, |_| None) {
        Readiness::Ready(inputs) => inputs,
        Readiness::Waiting(why) => return Err(format!("{}: inputs wait: {why}", spec.name)),
    };
    let record = Deployment {
        id: format!("{}-1", spec.name),
        service: spec.name.clone(),
        generation: 1,
        spec: spec.clone(),
        image_id: Some(image.clone()),
        inputs,
        ..Default::default()
    };
    let outputs = format!("/var/lib/berth/outputs/{}", spec.name);
    let inputs_dir = format!("/var/lib/berth/inputs/{}/g1", spec.name);
    let dirs = RecordDirs {
        outputs: &outputs,
        inputs: &inputs_dir,
    };
    let mut req = create_request(&record, "berth-", &dirs)
        .ok_or_else(|| format!("{}: no create request", spec.name))?;
    // The loop gives the engine each `volumes_from` service's container in
    // place (reconcile.rs, volumes_from_containers); here each container
    // is named after its service, as paunch names them, mode kept.
    req.spec.volumes_from_containers = req.spec.volumes_from.clone();
    Ok(container_config(&req, "paunch-argv-test"))
}

/// What the comparisons found, over one test.
#[derive(Default)]
struct Tally {
    used: BTreeSet<&'static str>,
    known_bugs_hit: BTreeSet<(String, String, String)>,
    /// `record: container` of each create compared.
    compared: Vec<String>,
    /// `record: container` of each `exec` compared with berth's exec task.
    execs: Vec<String>,
    failures: Vec<String>,
}

impl Tally {
    fn use_choice(&mut self, id: &'static str) {
        assert!(
            SEMANTIC_CHOICES.iter().any(|c| c.id == id),
            "no SEMANTIC_CHOICES entry {id}"
        );
        self.used.insert(id);
    }

    fn fail(&mut self, record: &str, container: &str, message: String) {
        self.failures
            .push(format!("{record}: container {container}: {message}"));
    }

    fn assert_clean(&self) {
        assert!(
            self.failures.is_empty(),
            "{} difference(s):\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn choice_for_warning(key: &str) -> Option<&'static Choice> {
    SEMANTIC_CHOICES.iter().find(|c| c.warned == Some(key))
}

/// Compares the create of the container `run` makes (imported into
/// `prepared` from `config`, its `{name: config}` map) with `run`.
fn compare_create(
    t: &mut Tally,
    record: &str,
    prepared: &Prepared,
    config: &serde_json::Map<String, Json>,
    run: Run,
) {
    let Some(container) = run
        .container()
        .map(str::to_string)
        .or_else(|| (config.len() == 1).then(|| config.keys().next().cloned())?)
    else {
        t.fail(record, "?", "an argv naming no container".to_string());
        return;
    };
    let Some(keys) = config.get(&container).and_then(Json::as_object) else {
        t.fail(record, &container, "not in the record's config".to_string());
        return;
    };
    let import = &prepared.import;
    let Some(imported) = import.services.iter().find(|s| s.spec.name == container) else {
        t.fail(record, &container, "not imported".to_string());
        return;
    };
    let spec = &imported.spec;

    // Every "not imported" warning is accounted for.
    let warned: BTreeSet<&str> = imported
        .warnings
        .iter()
        .filter(|w| w.message.starts_with("not imported"))
        .map(|w| w.key.as_str())
        .collect();
    for key in &warned {
        let pending = NOT_YET_IMPORTED.iter().any(|(k, _)| k == key);
        if !pending && choice_for_warning(key).is_none() {
            t.fail(
                record,
                &container,
                format!(
                    "the importer did not import `{key}`, which is neither in \
                     NOT_YET_IMPORTED nor a SEMANTIC_CHOICES entry"
                ),
            );
        }
    }
    for (key, _) in NOT_YET_IMPORTED {
        if keys.contains_key(*key) && !warned.contains(key) {
            t.fail(
                record,
                &container,
                format!(
                    "`{key}` was imported with no warning: support landed, so remove it from \
                     NOT_YET_IMPORTED and compare its flags"
                ),
            );
        }
    }

    let body = match create_body(spec) {
        Ok(b) => b,
        Err(e) => {
            t.fail(record, &container, e);
            return;
        }
    };
    let mut got = body_fields(&body);
    let run_tool = run.tool;
    let mut want = run.fields;
    for flag in &run.mechanics {
        match SEMANTIC_CHOICES.iter().find(|c| c.flags.contains(flag)) {
            Some(c) => t.use_choice(c.id),
            None => t.fail(
                record,
                &container,
                format!("{flag}: no SEMANTIC_CHOICES entry"),
            ),
        }
    }

    // Env files are read by berthd at apply: the engine gets their values
    // in the env, never a file to read.
    if keys.contains_key("env_file") && !want.env_files.is_empty() {
        let imported: Vec<String> = spec.env_file.clone();
        if imported == want.env_files {
            t.use_choice("env-file-read-by-berth");
            want.env_files.clear();
        }
    }
    // Choices tied to a key the importer warned about.
    let mut by_warning = |t: &mut Tally, key: &str, clear: &mut dyn FnMut(&mut Fields)| {
        if warned.contains(key) {
            let c = choice_for_warning(key).expect("a choice for the key");
            t.use_choice(c.id);
            clear(&mut want);
        }
    };
    by_warning(t, "remove", &mut |f| f.auto_remove = false);
    by_warning(t, "memswap_limit", &mut |f| f.memory_swap = None);
    by_warning(t, "mem_swappiness", &mut |f| f.memory_swappiness = None);

    if prepared.hostname_dropped.contains(&container)
        && want.hostname.is_some()
        && got.hostname.is_none()
    {
        t.use_choice("uts-host-hostname");
        want.hostname = None;
    }
    if !keys.contains_key("cpuset_cpus") && want.cpuset_cpus.is_some() && got.cpuset_cpus.is_none()
    {
        t.use_choice("cpuset-affinity");
        want.cpuset_cpus = None;
    }
    if run_tool == "podman" && keys.contains_key("restart") && want.restart == "no" {
        t.use_choice("podman-restart-by-systemd");
        want.restart = got.restart.clone();
    }
    if keys.contains_key("log_tag") && want.log_driver.is_none() && got.log_driver.is_some() {
        t.use_choice("log-driver-named");
        want.log_driver = got.log_driver.clone();
    }
    if let Some(h) = &mut want.healthcheck
        && (h.interval_ns.is_none() || h.timeout_ns.is_none() || h.retries.is_none())
    {
        t.use_choice("healthcheck-defaults");
        h.interval_ns.get_or_insert(DOCKER_HEALTH_INTERVAL_NS);
        h.timeout_ns.get_or_insert(DOCKER_HEALTH_TIMEOUT_NS);
        h.retries.get_or_insert(DOCKER_HEALTH_RETRIES);
    }
    if let (Some(w), Some(g)) = (want.stop_timeout, got.stop_timeout)
        && w.fract() != 0.0
        && g == w.ceil()
    {
        t.use_choice("stop-timeout-rounded");
        want.stop_timeout = Some(g);
    }
    if !spec.inputs.is_empty() {
        for name in spec.inputs.keys() {
            let env = format!(
                "BERTH_INPUT_{}",
                name.to_ascii_uppercase().replace('-', "_")
            );
            if got.env.remove(&env).is_some() {
                t.use_choice("inputs-env");
            }
        }
        let suffix = format!(":{INPUTS_MOUNT}:ro");
        let before = got.volumes.len();
        got.volumes.retain(|v| !v.ends_with(&suffix));
        if got.volumes.len() < before {
            t.use_choice("inputs-mount");
        }
    }

    for (field, paunch, berth) in differences(&want, &got) {
        let known = KNOWN_IMPORTER_BUGS
            .iter()
            .any(|(r, c, f, _)| *r == record && *c == container && *f == field);
        if known {
            t.known_bugs_hit
                .insert((record.to_string(), container.clone(), field.to_string()));
        } else {
            t.fail(
                record,
                &container,
                format!("{field}: paunch's argv gives {paunch}, berth's create gives {berth}"),
            );
        }
    }
    t.compared.push(format!("{record}: {container}"));
}

/// An `exec` argv (after `exec`): the `action: exec` entry it runs must
/// have become an `exec_in` task running the same command in the same
/// container.
fn account_exec(
    t: &mut Tally,
    record: &str,
    import: &Import,
    config: &serde_json::Map<String, Json>,
    args: &[String],
) {
    // `exec [flags] TARGET ARGS...`: paunch's exec entries carry no flags
    // in these records.
    let Some(args_after_target) = args.get(1..) else {
        t.fail(record, "?", "an exec with no target".to_string());
        return;
    };
    let entry = config.iter().find(|(_, c)| {
        c.get("action").and_then(Json::as_str) == Some("exec")
            && c.get("command")
                .and_then(Json::as_array)
                .is_some_and(|cmd| {
                    cmd.iter().skip(1).map(Json::as_str).collect::<Vec<_>>()
                        == args_after_target
                            .iter()
                            .map(|a| Some(a.as_str()))
                            .collect::<Vec<_>>()
                })
    });
    let Some((name, _)) = entry else {
        t.fail(
            record,
            "?",
            format!("exec {args:?}: no `action: exec` entry runs it"),
        );
        return;
    };
    // berth's exec task: in the container named first, the rest as its
    // command, with no user, env or privilege of its own (paunch's exec
    // entries in these records carry none: no exec flags).
    let Some(task) = import.services.iter().find(|s| s.spec.name == *name) else {
        t.fail(
            record,
            name,
            "the `action: exec` entry was not imported".to_string(),
        );
        return;
    };
    let spec = &task.spec;
    let target = &args[0];
    // paunch execs in the container's actual name, which may carry its
    // `-<8 random>` suffix; berth names the service and finds its
    // container when the task runs.
    let unsuffixed = target
        .rsplit_once('-')
        .filter(|(_, tail)| {
            tail.len() == 8
                && tail
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        .map(|(base, _)| base);
    if unsuffixed.is_some() && spec.exec_in.as_deref() == unsuffixed {
        t.use_choice("exec-target-by-service");
    } else if spec.exec_in.as_deref() != Some(target.as_str()) {
        t.fail(
            record,
            name,
            format!(
                "exec target: paunch's argv gives {target}, berth's task {:?}",
                spec.exec_in
            ),
        );
    }
    if spec.command.as_deref() != Some(args_after_target) {
        t.fail(
            record,
            name,
            format!(
                "exec command: paunch's argv gives {args_after_target:?}, berth's task {:?}",
                spec.command
            ),
        );
    }
    if spec.user.is_some() || spec.privileged || !spec.env.is_empty() {
        t.fail(
            record,
            name,
            "exec flags: paunch's argv has none, berth's task has a user, env or privilege"
                .to_string(),
        );
    }
    if spec.kind != berth_core::spec::Kind::Task || !spec.image.is_none() {
        t.fail(
            record,
            name,
            "an `action: exec` entry must be a task with no image".to_string(),
        );
    }
    t.execs.push(format!("{record}: {name}"));
}

/// What one argv asks the engine for.
enum Call {
    Create(Vec<String>),
    Exec(Vec<String>),
    Operation,
}

/// `docker|podman SUB ...`, or paunch's `container_run_args` on `[tool]`
/// (flags right after the tool).
fn classify(argv: &[String]) -> Result<Call, String> {
    let Some(sub) = argv.get(1) else {
        return Err(format!("{argv:?}: no subcommand"));
    };
    Ok(match sub.as_str() {
        "run" | "create" => Call::Create(argv[2..].to_vec()),
        "exec" => Call::Exec(argv[2..].to_vec()),
        s if s.starts_with("--") => Call::Create(argv[1..].to_vec()),
        s if ENGINE_OPERATIONS.contains(&s) => Call::Operation,
        s => return Err(format!("{argv:?}: unknown subcommand {s}")),
    })
}

/// Every argv in a record's assertions: a JSON list of strings starting
/// with `docker`/`podman`, or (heat-agents) Python list source starting
/// with `self.fake_tool_path`, the hook's docker.
fn argvs(v: &Json, out: &mut Vec<Vec<String>>) {
    match v {
        Json::Array(items) => {
            let strings: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect();
            match strings {
                Some(s) if matches!(s.first().map(String::as_str), Some("docker" | "podman")) => {
                    out.push(s)
                }
                _ => items.iter().for_each(|i| argvs(i, out)),
            }
        }
        Json::Object(map) => match map.get("__source__").and_then(Json::as_str) {
            Some(src) => {
                if let Some(mut list) = python_list(src)
                    && list.first().map(String::as_str) == Some("{self.fake_tool_path}")
                {
                    list[0] = "docker".to_string();
                    out.push(list);
                }
            }
            None => map.values().for_each(|i| argvs(i, out)),
        },
        _ => {}
    }
}

/// A Python list literal of string literals (adjacent ones concatenated,
/// as Python does) and names (kept as `{name}`); `None` for anything else.
fn python_list(src: &str) -> Option<Vec<String>> {
    let inner = src.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut chars = inner.chars().peekable();
    let mut out = Vec::new();
    let mut item: Option<String> = None;
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek().copied() {
            None => {
                out.extend(item.take());
                return Some(out);
            }
            Some(',') => {
                chars.next();
                out.push(item.take()?);
            }
            Some(q @ ('\'' | '"')) => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        c if c == q => break,
                        '\\' => s.push(match chars.next()? {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        }),
                        c => s.push(c),
                    }
                }
                item.get_or_insert_with(String::new).push_str(&s);
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                if item.is_some() {
                    return None;
                }
                let mut name = String::new();
                while let Some(c) = chars.next_if(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                {
                    name.push(c);
                }
                item = Some(format!("{{{name}}}"));
            }
            Some(_) => return None,
        }
    }
}

fn options<'a>(image_map: &'a ImageMap) -> Options<'a> {
    Options {
        image_map,
        host_env: &host_env,
    }
}

/// An import, and what berth refused that the test took out to compare
/// the rest.
struct Prepared {
    import: Import,
    /// Containers whose `hostname` was taken out: berth refuses it with
    /// `uts: host` (SEMANTIC_CHOICES `uts-host-hostname`).
    hostname_dropped: BTreeSet<String>,
}

/// What berth's check says of a hostname with `uts: host`.
const UTS_HOSTNAME_REFUSAL: &str = "a hostname cannot be set with uts: host";

fn import_map(file: &str, config: &Json) -> Result<Prepared, String> {
    let no_map = ImageMap::default();
    let import = |config: &Json| {
        let input = Input {
            file: file.to_string(),
            text: serde_json::to_string_pretty(config).map_err(|e| (e.to_string(), Vec::new()))?,
        };
        paunch_files(&[input], &options(&no_map)).map_err(|e| (e.to_string(), e.0))
    };
    match import(config) {
        Ok(import) => Ok(Prepared {
            import,
            hostname_dropped: BTreeSet::new(),
        }),
        Err((text, problems)) => {
            if problems.is_empty()
                || !problems
                    .iter()
                    .all(|p| p.message.contains(UTS_HOSTNAME_REFUSAL))
            {
                return Err(text);
            }
            let dropped: BTreeSet<String> = problems.iter().map(|p| p.container.clone()).collect();
            let mut config = config.clone();
            for name in &dropped {
                if let Some(c) = config.get_mut(name).and_then(Json::as_object_mut) {
                    c.remove("hostname");
                }
            }
            let import = import(&config).map_err(|(text, _)| text)?;
            Ok(Prepared {
                import,
                hostname_dropped: dropped,
            })
        }
    }
}

/// A docker-cmd deployment. One of `action: exec` entries only is an
/// error to the importer ("nothing to import", its exec warnings as the
/// reasons): an import of no services, those warnings kept.
fn import_heat(file: &str, deployment: &Json) -> Result<Prepared, String> {
    let no_map = ImageMap::default();
    let input = Input {
        file: file.to_string(),
        text: deployment.to_string(),
    };
    let import = match heat_file(&input, &options(&no_map)) {
        Ok(import) => import,
        Err(e) => {
            let exec_only = e.0.iter().all(|p| {
                p.message == "nothing to import"
                    || (p.key == "action" && p.message.starts_with("not imported"))
            });
            if !exec_only {
                return Err(e.to_string());
            }
            Import {
                services: Vec::new(),
                warnings: e.0,
            }
        }
    };
    Ok(Prepared {
        import,
        hostname_dropped: BTreeSet::new(),
    })
}

/// Compares every create and accounts for every exec of one record.
fn compare_record(
    t: &mut Tally,
    record: &str,
    prepared: &Prepared,
    config: &serde_json::Map<String, Json>,
    argv_list: &[Vec<String>],
) {
    for argv in argv_list {
        match classify(argv) {
            Ok(Call::Create(args)) => match parse_run(&args) {
                Ok(mut run) => {
                    run.tool = argv[0].clone();
                    compare_create(t, record, prepared, config, run)
                }
                Err(e) => t.fail(record, "?", format!("argv {argv:?}: {e}")),
            },
            Ok(Call::Exec(args)) => account_exec(t, record, &prepared.import, config, &args),
            Ok(Call::Operation) => {}
            Err(e) => t.fail(record, "?", e),
        }
    }
}

fn has_create_or_exec(argv_list: &[Vec<String>]) -> bool {
    argv_list
        .iter()
        .any(|a| matches!(classify(a), Ok(Call::Create(_) | Call::Exec(_)) | Err(_)))
}

fn read_json(path: &Path) -> Json {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn records(doc: &Json) -> &[Json] {
    doc.get("records")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn test_name(rec: &Json) -> &str {
    rec.get("test").and_then(Json::as_str).unwrap_or("?")
}

/// Every paunch and docker-cmd record with a config and paunch's argv for
/// it, compared.
#[test]
fn each_paunch_argv_matches_berths_create() {
    let Some(corpus) = berth_prereq::corpus("") else {
        return;
    };
    let mut t = Tally::default();
    let mut skipped_seen = BTreeSet::new();
    let mut records_compared = Vec::new();

    for file in PAUNCH_FILES {
        let doc = read_json(&corpus.join(file));
        for rec in records(&doc) {
            let test = test_name(rec);
            let mut list = Vec::new();
            argvs(rec.get("assertions").unwrap_or(&Json::Null), &mut list);
            let config = rec.pointer("/assignments/config").and_then(Json::as_object);
            let skip = SKIPPED.iter().find(|(name, _)| *name == test);
            match (config, has_create_or_exec(&list), skip) {
                (_, _, Some(_)) => {
                    skipped_seen.insert(test.to_string());
                }
                (Some(config), true, None) => {
                    let record = format!("{file}: {test}");
                    match import_map(&record, &Json::Object(config.clone())) {
                        Ok(import) => compare_record(&mut t, &record, &import, config, &list),
                        Err(e) => t.fail(&record, "*", format!("import failed: {e}")),
                    }
                    records_compared.push(record);
                }
                (Some(_), false, None) => t.fail(
                    &format!("{file}: {test}"),
                    "*",
                    "a config without a create argv: compare it or add it to SKIPPED".to_string(),
                ),
                (None, true, None) => t.fail(
                    &format!("{file}: {test}"),
                    "*",
                    "a create argv without a config".to_string(),
                ),
                // Neither: a test of something else (labels, volume checks).
                (None, false, None) => {}
            }
        }
    }

    let heat_dir = corpus.join("heat");
    let doc = read_json(&corpus.join(HEAT_FILE));
    for rec in records(&doc) {
        let test = test_name(rec);
        let mut list = Vec::new();
        argvs(rec.get("assertions").unwrap_or(&Json::Null), &mut list);
        let Some((_, data)) = HEAT_RECORD_DATA.iter().find(|(name, _)| *name == test) else {
            if has_create_or_exec(&list) {
                t.fail(
                    test,
                    "*",
                    "a create or exec argv, but no HEAT_RECORD_DATA entry".to_string(),
                );
            }
            continue;
        };
        let record = format!("{HEAT_FILE}: {test}");
        let deployment = read_json(&heat_dir.join(data));
        let Some(config) = deployment.get("config").and_then(Json::as_object) else {
            t.fail(&record, "*", format!("{data} has no config map"));
            continue;
        };
        match import_heat(data, &deployment) {
            Ok(import) => compare_record(&mut t, &record, &import, config, &list),
            Err(e) => t.fail(&record, "*", format!("import failed: {e}")),
        }
        records_compared.push(record);
    }

    // The project's own fixture too, so every table entry is needed by
    // the two together.
    compare_fixture(&mut t, FIXTURE_ARGVS);
    t.assert_clean();

    // Counts: a change that silently skips records or argvs fails here.
    assert_eq!(
        records_compared.len(),
        14,
        "records compared: {records_compared:#?}"
    );
    // 14 paunch creates (base 8, compose1 3, podman 3), 6 docker-cmd
    // creates, and the fixture's 2.
    assert_eq!(t.compared.len(), 22, "creates compared: {:#?}", t.compared);
    // test_apply, test_apply_idempotency, and the four docker-cmd hook
    // records' `web-ls`.
    assert_eq!(t.execs.len(), 6, "execs accounted: {:#?}", t.execs);
    let skipped: BTreeSet<String> = SKIPPED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        skipped_seen, skipped,
        "a SKIPPED record is no longer in the corpus"
    );
    let unused: Vec<(&str, &str)> = SEMANTIC_CHOICES
        .iter()
        .filter(|c| !t.used.contains(c.id))
        .map(|c| (c.id, c.why))
        .collect();
    assert!(
        unused.is_empty(),
        "SEMANTIC_CHOICES entries no comparison needs (remove them): {unused:?}"
    );
    assert_known_bugs_all_hit(&t);
}

fn assert_known_bugs_all_hit(t: &Tally) {
    for (record, container, field, report) in KNOWN_IMPORTER_BUGS {
        assert!(
            t.known_bugs_hit.contains(&(
                record.to_string(),
                container.to_string(),
                field.to_string()
            )),
            "KNOWN_IMPORTER_BUGS {record}/{container}/{field} no longer differs: fixed? \
             remove the entry ({report})"
        );
    }
}

/// paunch's `test_durations`: its configs carry only `stop_grace_period`
/// (paunch's test builds the args of image-less configs and checks one
/// flag), so each gets an image here; the rest of the create is not what
/// the record asserts.
#[test]
fn the_durations_record_gives_paunchs_stop_timeouts() {
    let Some(corpus) = berth_prereq::corpus("") else {
        return;
    };
    let doc = read_json(&corpus.join("paunch/test_builder_base.extracted.json"));
    let rec = records(&doc)
        .iter()
        .find(|r| test_name(r) == "TestBaseBuilder.test_durations")
        .expect("the test_durations record");
    let mut config = rec
        .pointer("/assignments/config")
        .and_then(Json::as_object)
        .cloned()
        .expect("its config");
    let result = rec
        .pointer("/assignments/result")
        .and_then(Json::as_object)
        .expect("its result");
    for c in config.values_mut() {
        if let Some(c) = c.as_object_mut() {
            c.insert("image".into(), Json::from("centos:7"));
        }
    }
    let import = import_map("test_durations", &Json::Object(config.clone())).expect("imports");
    let mut t = Tally::default();
    for (name, flag) in result {
        let flag = flag.as_str().expect("a flag");
        let run = parse_run(&[flag.to_string(), "centos:7".to_string()]).expect("parses");
        let spec = &import
            .import
            .services
            .iter()
            .find(|s| s.spec.name == *name)
            .expect("imported")
            .spec;
        let got = body_fields(&create_body(spec).expect("a create")).stop_timeout;
        let mut want = run.fields.stop_timeout;
        if let (Some(w), Some(g)) = (want, got)
            && w.fract() != 0.0
            && g == w.ceil()
        {
            t.use_choice("stop-timeout-rounded");
            want = Some(g);
        }
        assert_eq!(want, got, "test_durations: container {name}: {flag}");
        t.compared.push(name.clone());
    }
    assert_eq!(t.compared.len(), 9, "{:?}", t.compared);
    assert!(t.used.contains("stop-timeout-rounded"));
}

/// The project's own config: paunch keys the corpus comparison covers,
/// written for this test.
const FIXTURE_CONFIG: &str = r#"{
  "fixture_api": {
    "start_order": 1,
    "image": "registry.example/berth/api:1.4",
    "command": "/usr/bin/api-server --port 8080  --verbose",
    "environment": {"KOLLA_BOOTSTRAP": true, "API_WORKERS": 4, "LOG_LEVEL": "info", "SINGLE": ""},
    "volumes": ["/etc/api:/etc/api:ro", "/var/log/api:/var/log/api:z", "", "api_data:/var/lib/api"],
    "ulimit": ["nofile=131072", "nproc=1024:2048"],
    "healthcheck": {"test": "/openstack/healthcheck 8080"},
    "restart": "unless-stopped",
    "stop_grace_period": "1m30s",
    "net": "host",
    "user": "api",
    "cpuset_cpus": "0-1",
    "cap_add": ["NET_ADMIN"],
    "security_opt": "label=disable"
  },
  "fixture_db_upgrade": {
    "start_order": 0,
    "detach": false,
    "image": "registry.example/berth/db:10.5",
    "command": ["bash", "-ec", "mysql_upgrade  --force\necho done"],
    "environment": ["DB_HOST=db.internal", "TRIPLEO_MINOR_UPDATE"],
    "env_file": "/etc/db-upgrade.env",
    "user": "root",
    "remove": true,
    "volumes": ["/var/lib/config-data/puppet-generated/db/root:/root:rw"],
    "stop_grace_period": 2.5
  }
}"#;

/// The argvs paunch's compose1 builder makes for [`FIXTURE_CONFIG`],
/// derived from its behaviour (corpus README, format notes): dict env
/// values as Python prints them (`True`), a string command split on
/// whitespace, `''` volumes skipped, `--health-cmd` then its argument,
/// `--cpuset-cpus` with its own affinity when the key is absent, no
/// `--detach` and a `--rm` for a `detach: false`, `remove: true` task, and
/// `--env=NAME` for a value left to the shell.
const FIXTURE_ARGVS: &[&[&str]] = &[
    &[
        "docker",
        "run",
        "--name",
        "fixture_db_upgrade",
        "--label",
        "config_id=fixture",
        "--label",
        "container_name=fixture_db_upgrade",
        "--env-file=/etc/db-upgrade.env",
        "--env=DB_HOST=db.internal",
        "--env=TRIPLEO_MINOR_UPDATE",
        "--rm",
        "--user=root",
        "--volume=/var/lib/config-data/puppet-generated/db/root:/root:rw",
        "--stop-timeout=2.5",
        "--cpuset-cpus=0,1,2,3",
        "registry.example/berth/db:10.5",
        "bash",
        "-ec",
        "mysql_upgrade  --force\necho done",
    ],
    &[
        "docker",
        "run",
        "--name",
        "fixture_api",
        "--label",
        "config_id=fixture",
        "--label",
        "container_name=fixture_api",
        "--detach=true",
        "--env=API_WORKERS=4",
        "--env=KOLLA_BOOTSTRAP=True",
        "--env=LOG_LEVEL=info",
        "--env=SINGLE",
        "--net=host",
        "--health-cmd",
        "/openstack/healthcheck 8080",
        "--restart=unless-stopped",
        "--user=api",
        "--ulimit=nofile=131072",
        "--ulimit=nproc=1024:2048",
        "--volume=/etc/api:/etc/api:ro",
        "--volume=/var/log/api:/var/log/api:z",
        "--volume=api_data:/var/lib/api",
        "--stop-timeout=90.0",
        "--security-opt=label=disable",
        "--cpuset-cpus=0-1",
        "--cap-add=NET_ADMIN",
        "registry.example/berth/api:1.4",
        "/usr/bin/api-server",
        "--port",
        "8080",
        "--verbose",
    ],
];

fn compare_fixture(t: &mut Tally, argvs: &[&[&str]]) {
    let config: Json = serde_json::from_str(FIXTURE_CONFIG).expect("the fixture is JSON");
    let map = config.as_object().expect("a map").clone();
    let import = import_map("fixture.json", &config).expect("the fixture imports");
    let list: Vec<Vec<String>> = argvs
        .iter()
        .map(|a| a.iter().map(|s| s.to_string()).collect())
        .collect();
    compare_record(t, "fixture", &import, &map, &list);
}

#[test]
fn the_projects_own_config_gives_paunchs_argv() {
    let mut t = Tally::default();
    compare_fixture(&mut t, FIXTURE_ARGVS);
    t.assert_clean();
    assert_eq!(
        t.compared,
        ["fixture: fixture_db_upgrade", "fixture: fixture_api"]
    );
    for id in [
        "name",
        "detach",
        "labels",
        "rm",
        "cpuset-affinity",
        "healthcheck-defaults",
        "stop-timeout-rounded",
    ] {
        assert!(t.used.contains(id), "{id} not used: {:?}", t.used);
    }
    assert_known_bugs_all_hit(&t);
}

/// The comparison fails on a difference, naming the record, the container
/// and the field.
#[test]
fn a_different_argv_is_reported_by_field() {
    let mut changed: Vec<Vec<&str>> = FIXTURE_ARGVS.iter().map(|a| a.to_vec()).collect();
    for arg in &mut changed[1] {
        match *arg {
            "--user=api" => *arg = "--user=nobody",
            "--ulimit=nproc=1024:2048" => *arg = "--ulimit=nproc=1024",
            "/openstack/healthcheck 8080" => *arg = "/openstack/healthcheck 8081",
            "--env=KOLLA_BOOTSTRAP=True" => *arg = "--env=KOLLA_BOOTSTRAP=true",
            "--volume=/etc/api:/etc/api:ro" => *arg = "--volume=/etc/api:/etc/api",
            "--restart=unless-stopped" => *arg = "--restart=always",
            "--stop-timeout=90.0" => *arg = "--stop-timeout=30",
            "--verbose" => *arg = "--quiet",
            _ => {}
        }
    }
    let refs: Vec<&[&str]> = changed.iter().map(Vec::as_slice).collect();
    let mut t = Tally::default();
    compare_fixture(&mut t, &refs);
    let fields: Vec<&str> = t
        .failures
        .iter()
        .filter_map(|f| f.strip_prefix("fixture: container fixture_api: "))
        .filter_map(|f| f.split(':').next())
        .collect();
    assert_eq!(
        fields,
        [
            "command",
            "env",
            "volumes",
            "user",
            "ulimits",
            "healthcheck",
            "restart",
            "stop_timeout"
        ],
        "{:#?}",
        t.failures
    );
    assert_eq!(t.failures.len(), 8, "{:#?}", t.failures);
}

#[test]
fn the_parsers_read_what_paunch_and_the_hook_write() {
    assert_eq!(
        python_list("[\n self.fake_tool_path,\n 'run',\n '--name', db_name,\n 'xxx'\n ''\n]"),
        Some(
            ["{self.fake_tool_path}", "run", "--name", "{db_name}", "xxx"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(python_list("[a b]"), None);
    assert_eq!(go_duration_ns("1m30s"), Ok(90_000_000_000));
    assert_eq!(go_duration_ns("10ms"), Ok(10_000_000));
    assert!(go_duration_ns("10").is_err());
    assert_eq!(docker_bytes("1G"), Ok(1 << 30));
    assert_eq!(docker_bytes("512mb"), Ok(512 << 20));
    assert_eq!(docker_bytes("4096"), Ok(4096));
    assert_eq!(norm_volume("/run:/run"), Ok("/run:/run:rw".to_string()));
    assert_eq!(norm_volume("/a:/b:z,ro"), Ok("/a:/b:ro,z".to_string()));
    let run = parse_run(
        &[
            "--privileged=false",
            "--tty",
            "--health-cmd=/bin/true",
            "--health-retries=2",
            "img",
            "a",
            "--b",
        ]
        .map(String::from),
    )
    .expect("parses");
    assert!(!run.fields.privileged && run.fields.tty);
    assert_eq!(run.fields.command, ["a", "--b"]);
    assert_eq!(
        run.fields.healthcheck,
        Some(Health {
            test: vec!["CMD-SHELL".into(), "/bin/true".into()],
            interval_ns: None,
            timeout_ns: None,
            retries: Some(2),
        })
    );
    assert!(parse_run(&["--oom-score-adj=5".to_string(), "img".to_string()]).is_err());
    assert!(parse_run(&["--detach=true".to_string()]).is_err());
}

#[test]
fn every_exclusion_says_why_once() {
    let mut ids = BTreeSet::new();
    for c in SEMANTIC_CHOICES {
        assert!(ids.insert(c.id), "{} twice", c.id);
        assert!(c.why.len() > 20, "{}: say why", c.id);
    }
    for (record, container, field, report) in KNOWN_IMPORTER_BUGS {
        assert!(report.len() > 20, "{record}/{container}/{field}: say what");
    }
    for (test, why) in SKIPPED {
        assert!(why.len() > 20, "{test}: say why");
    }
}
