use std::time::Duration;

use super::*;
use crate::spec::{
    Condition, Dependency, DesiredState, ImageSource, InputSource, Kind, Network, OnChange,
};

fn input(file: &str, text: &str) -> Input {
    Input {
        file: file.to_string(),
        text: text.to_string(),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn opts<'a>(map: &'a ImageMap, env: &'a dyn Fn(&str) -> Option<String>) -> Options<'a> {
    Options {
        image_map: map,
        host_env: env,
    }
}

fn paunch(files: &[Input]) -> Result<Import, ImportErrors> {
    paunch_files(files, &opts(&ImageMap::default(), &no_env))
}

fn service<'a>(import: &'a Import, name: &str) -> &'a Imported {
    import
        .services
        .iter()
        .find(|s| s.spec.name == name)
        .unwrap_or_else(|| panic!("no service {name} in {:?}", names(import)))
}

fn names(import: &Import) -> Vec<&str> {
    import
        .services
        .iter()
        .map(|s| s.spec.name.as_str())
        .collect()
}

/// A step file in TripleO's Wallaby shape, with the values paunch meets.
const STEP_3: &str = r#"{
  "keystone_db_sync": {
    "image": "quay.io/tripleomaster/openstack-keystone:current-tripleo",
    "net": "host",
    "user": "root",
    "detach": false,
    "volumes": [
      "/etc/hosts:/etc/hosts:ro",
      "",
      "/var/lib/config-data/puppet-generated/keystone:/var/lib/kolla/config_files/src:ro",
      "/var/log/containers/keystone:/var/log/keystone:z",
      "/run/netns:/run/netns:shared,z"
    ],
    "environment": {
      "KOLLA_BOOTSTRAP": true,
      "KOLLA_CONFIG_STRATEGY": "COPY_ALWAYS",
      "DB_MAX_TIMEOUT": 60,
      "TRIPLEO_CONFIG_HASH": "0123abcd"
    },
    "command": ["/usr/bin/bootstrap_host_exec", "keystone", "/usr/local/bin/kolla_start"],
    "start_order": 0,
    "config_volume": "keystone"
  },
  "keystone": {
    "image": "quay.io/tripleomaster/openstack-keystone:current-tripleo",
    "net": "host",
    "privileged": false,
    "restart": "always",
    "healthcheck": {"test": "/openstack/healthcheck"},
    "check_interval": "15",
    "stop_grace_period": "1m30s",
    "ulimit": ["nofile=131072", "nproc=1024:2048"],
    "security_opt": "label=disable",
    "cpuset_cpus": "all",
    "depends_on": ["tripleo_keystone_db_sync.service", "openvswitch"],
    "start_order": 2
  },
  "keystone_cron": {
    "image": "quay.io/tripleomaster/openstack-keystone:current-tripleo",
    "command": "/usr/bin/cron -n  -x proc",
    "environment": ["KOLLA_CONFIG_STRATEGY=COPY_ALWAYS", "TRIPLEO_MINOR_UPDATE"],
    "restart": "unless-stopped",
    "mem_limit": "512m",
    "pids_limit": 1024,
    "cpu_shares": 512,
    "start_order": 2
  },
  "keystone_bootstrap": {
    "action": "exec",
    "start_order": 3,
    "user": "root",
    "environment": {"OS_BOOTSTRAP_PASSWORD": "pw"},
    "exit_codes": [0, 1],
    "volumes": ["/a:/a"],
    "command": ["keystone", "/usr/bin/bootstrap_host_exec", "keystone", "keystone-manage", "bootstrap"]
  }
}"#;

#[test]
fn a_tripleo_step_keeps_paunchs_meaning() {
    let import = paunch(&[input("keystone-step_3.json", STEP_3)]).expect("imports");
    // Start order.
    assert_eq!(
        names(&import),
        [
            "keystone_db_sync",
            "keystone",
            "keystone_cron",
            "keystone_bootstrap"
        ]
    );

    let sync = service(&import, "keystone_db_sync");
    assert_eq!(sync.step, 3, "the step comes from the file name");
    assert_eq!(sync.spec.kind, Kind::Task, "detach: false is a task");
    assert_eq!(sync.spec.network, Network::Host);
    assert_eq!(sync.spec.user.as_deref(), Some("root"));
    // Python's str() of a bool, an int as written, the config hash dropped.
    let env: Vec<(&str, &str)> = sync
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("DB_MAX_TIMEOUT", "60"),
            ("KOLLA_BOOTSTRAP", "True"),
            ("KOLLA_CONFIG_STRATEGY", "COPY_ALWAYS")
        ]
    );
    assert!(sync.notes.iter().any(|n| n.contains("TRIPLEO_CONFIG_HASH")));
    // The empty volume skipped, the puppet-generated one watched instead.
    let volumes: Vec<String> = sync
        .spec
        .volumes
        .iter()
        .map(|v| String::from(v.clone()))
        .collect();
    assert_eq!(
        volumes,
        [
            "/etc/hosts:/etc/hosts:ro",
            "/var/log/containers/keystone:/var/log/keystone:rw,z",
            "/run/netns:/run/netns:rw,shared,z",
        ]
    );
    assert_eq!(sync.spec.config.len(), 1);
    assert_eq!(
        sync.spec.config[0].source,
        "/var/lib/config-data/puppet-generated/keystone"
    );
    assert_eq!(sync.spec.config[0].on_change, OnChange::Restart);
    assert!(
        sync.warnings.iter().any(|w| w.key == "config_volume"),
        "a key without an equivalent is a warning: {:?}",
        sync.warnings
    );

    let keystone = service(&import, "keystone");
    let check = keystone.spec.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(check.test.as_deref(), Some("/openstack/healthcheck"));
    assert_eq!(check.interval, Duration::from_secs(15), "check_interval");
    assert_eq!(keystone.spec.stop_timeout, Some(Duration::from_secs(90)));
    assert_eq!(keystone.spec.ulimits["nofile"].soft, 131072);
    assert_eq!(keystone.spec.ulimits["nproc"].hard, 2048);
    assert_eq!(keystone.spec.security_opt, ["label=disable"]);
    assert_eq!(
        keystone.spec.resources.cpuset_cpus, None,
        "cpuset_cpus: all"
    );
    // The db sync (a task) finished, from the earlier start_order group.
    assert_eq!(
        keystone.spec.depends_on,
        [Dependency {
            service: "keystone_db_sync".into(),
            condition: Condition::Completed
        }]
    );
    assert_eq!(keystone.spec.after_units, ["openvswitch.service"]);

    let cron = service(&import, "keystone_cron");
    assert_eq!(
        cron.spec.command.as_deref(),
        Some(&["/usr/bin/cron", "-n", "-x", "proc"].map(String::from)[..]),
        "a string command splits on whitespace, no shell"
    );
    assert!(!cron.spec.env.contains_key("TRIPLEO_MINOR_UPDATE"));
    assert!(
        cron.warnings
            .iter()
            .any(|w| w.key == "environment.TRIPLEO_MINOR_UPDATE"),
        "{:?}",
        cron.warnings
    );
    assert_eq!(cron.spec.resources.memory, Some(512 << 20));
    assert_eq!(cron.spec.resources.pids, Some(1024));
    assert_eq!(cron.spec.resources.cpu_shares, Some(512));
    assert_eq!(
        cron.spec.restart,
        Some(crate::spec::RestartPolicy::UnlessStopped)
    );

    // `action: exec`: a task that runs in keystone's container, after the
    // group before it; what docker exec does not take is a warning.
    let exec = service(&import, "keystone_bootstrap");
    assert_eq!(exec.spec.exec_in.as_deref(), Some("keystone"));
    assert_eq!(exec.spec.kind, Kind::Task);
    assert!(exec.spec.image.is_none());
    assert_eq!(
        exec.spec.command.as_deref(),
        Some(
            &[
                "/usr/bin/bootstrap_host_exec",
                "keystone",
                "keystone-manage",
                "bootstrap"
            ]
            .map(String::from)[..]
        )
    );
    assert_eq!(exec.spec.user.as_deref(), Some("root"));
    assert_eq!(exec.spec.exit_codes, [0, 1]);
    assert!(exec.spec.env["OS_BOOTSTRAP_PASSWORD"].secret);
    assert_eq!(exec.spec.restart, None, "no container, no restart policy");
    let deps: Vec<&str> = exec
        .spec
        .depends_on
        .iter()
        .map(|d| d.service.as_str())
        .collect();
    assert_eq!(deps, ["keystone", "keystone_cron"], "the group before it");
    assert!(
        exec.warnings.iter().any(|w| w.key == "volumes"),
        "{:?}",
        exec.warnings
    );
}

#[test]
fn a_value_missing_from_the_file_comes_from_the_importing_shell() {
    let env = |k: &str| (k == "TRIPLEO_MINOR_UPDATE").then(|| "true".to_string());
    let map = ImageMap::default();
    let import =
        paunch_files(&[input("keystone-step_3.json", STEP_3)], &opts(&map, &env)).expect("ok");
    let cron = service(&import, "keystone_cron");
    assert_eq!(cron.spec.env["TRIPLEO_MINOR_UPDATE"].value, "true");
    assert!(
        cron.warnings
            .iter()
            .any(|w| w.message.contains("importing shell")),
        "{:?}",
        cron.warnings
    );
}

#[test]
fn steps_order_across_files_and_tasks_gate_the_next_group() {
    let step1 = r#"{"db": {"image": "db", "start_order": 0},
                    "db_init": {"image": "db", "detach": false, "exit_codes": [0, 2], "start_order": 1}}"#;
    let step2 = r#"{"api": {"image": "api"}, "off": {"image": "x", "state": "stopped"}}"#;
    let step3 = "web:\n  image: web\n";
    let import = paunch(&[
        input("a/step_1.json", step1),
        input("b/step_2.json", step2),
        input("third.yaml", step3),
    ])
    .expect("imports");
    assert_eq!(names(&import), ["db", "db_init", "api", "off", "web"]);
    let deps = |n: &str| {
        service(&import, n)
            .spec
            .depends_on
            .iter()
            .map(|d| format!("{}:{}", d.service, d.condition))
            .collect::<Vec<_>>()
    };
    assert!(deps("db").is_empty());
    assert_eq!(deps("db_init"), ["db:started"]);
    assert_eq!(deps("api"), ["db_init:completed"]);
    assert_eq!(deps("off"), ["db_init:completed"]);
    // A stopped container is waited for by nobody; the third file is step 3
    // by its position.
    assert_eq!(deps("web"), ["api:started"]);
    assert_eq!(service(&import, "web").step, 3);
    assert_eq!(service(&import, "off").spec.state, DesiredState::Stopped);
    assert_eq!(service(&import, "db_init").spec.exit_codes, [0, 2]);
}

#[test]
fn a_step_mapping_file_and_a_tripleo_tree_import_the_same_containers() {
    let mapping = r#"{"step_1": {"haproxy": {"image": "haproxy"}},
                      "step_2": {"mysql": {"image": "mysql"}}}"#;
    let from_mapping = paunch(&[input("container-configs.json", mapping)]).expect("mapping");
    let tree = [
        input("step_1/haproxy.json", r#"{"image": "haproxy"}"#),
        input("step_2/mysql.json", r#"{"image": "old"}"#),
        input(
            "step_2/hashed-mysql.json",
            r#"{"image": "mysql", "environment": {"TRIPLEO_CONFIG_HASH": "x"}}"#,
        ),
    ];
    let from_tree =
        tripleo_files(&tree, &opts(&ImageMap::default(), &no_env)).expect("tree imports");
    let specs = |i: &Import| {
        i.services
            .iter()
            .map(|s| s.spec.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        specs(&from_mapping),
        specs(&from_tree),
        "hashed-<name> wins, its hash dropped"
    );
    assert_eq!(
        service(&from_tree, "mysql").spec.depends_on[0].service,
        "haproxy"
    );
}

#[test]
fn the_image_map_stands_a_local_image_in() {
    let map = ImageMap::parse(&["*=berth-demo:latest".to_string()]).expect("parses");
    let import = paunch_files(
        &[input("keystone-step_3.json", STEP_3)],
        &opts(&map, &no_env),
    )
    .expect("ok");
    for s in import.services.iter().filter(|s| s.spec.exec_in.is_none()) {
        assert_eq!(s.spec.image, ImageSource::Ref("berth-demo:latest".into()));
    }
    assert!(ImageMap::parse(&["no-equals".to_string()]).is_err());
    let exact = ImageMap::parse(&["a=b".to_string()]).expect("parses");
    assert_eq!(exact.apply("a"), Some("b"));
    assert_eq!(exact.apply("c"), None);
}

#[test]
fn heat_docker_cmd_deployments_become_services_with_their_inputs() {
    let doc = r##"{
      "deployments": [
        {"name": "script-one", "group": "script", "config": "#!/bin/sh\necho hi"},
        {"inputs": [{"name": "foo", "value": "bar"}]},
        {"name": "empty", "group": "docker-cmd", "config": ""},
        {"name": "containers", "group": "docker-cmd", "id": "abc",
         "inputs": [
           {"name": "deploy_stack_id", "value": "the_stack"},
           {"name": "deploy_password", "value": "hunter2"},
           {"name": "settings", "value": {"a": 1}}
         ],
         "config": {
           "db": {"name": "x", "image": "xxx", "environment": ["foo=bar"], "start_order": 0},
           "web": {"image": "yyy", "start_order": 1, "command": "/bin/webserver start"}
         }}
      ]
    }"##;
    let map = ImageMap::default();
    let import = heat_file(&input("metadata.json", doc), &opts(&map, &no_env)).expect("imports");
    assert_eq!(names(&import), ["db", "web"]);
    let db = service(&import, "db");
    assert_eq!(
        db.spec.inputs.get("deploy_stack_id"),
        Some(&InputSource::Value("the_stack".into()))
    );
    assert_eq!(
        db.spec.inputs.get("settings"),
        Some(&InputSource::Value(r#"{"a":1}"#.into()))
    );
    assert!(
        !db.spec.inputs.contains_key("deploy_password"),
        "a transport credential never lands in a spec file"
    );
    assert!(db.warnings.iter().any(|w| w.key == "name"));
    assert_eq!(service(&import, "web").spec.depends_on[0].service, "db");
    let text: String = import.warnings.iter().map(|w| format!("{w}\n")).collect();
    assert!(text.contains("script-one: group \"script\""), "{text}");
    assert!(text.contains("no group"), "{text}");
    assert!(text.contains("deployment empty: no config"), "{text}");
    assert!(text.contains("deploy_password"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    for s in &import.services {
        assert!(!s.file_text("heat").contains("hunter2"));
    }
}

#[test]
fn a_metadata_map_of_deployments_is_ignored_not_fatal() {
    let doc = r#"{"deployments": {"not": "a list"}, "old-style": true}"#;
    let map = ImageMap::default();
    let err = heat_file(&input("imposter.json", doc), &opts(&map, &no_env))
        .expect_err("nothing to import");
    assert!(
        err.to_string().contains("no docker-cmd deployment"),
        "{err}"
    );
}

#[test]
fn bad_input_names_file_container_and_key() {
    let cases = [
        (r#"{"Web": {"image": "x"}}"#, "not a berth service name"),
        (r#"{"web": {"net": "host"}}"#, "no image"),
        (
            r#"{"web": {"image": "x", "volumes": ["relative:/x:bogus"]}}"#,
            "volumes[0]",
        ),
        (
            r#"{"web": {"image": "x", "ulimit": ["nofile"]}}"#,
            "NAME=LIMIT",
        ),
        (
            r#"{"web": {"image": "x", "stop_grace_period": "soon"}}"#,
            "stop_grace_period",
        ),
        (
            r#"{"web": {"image": "x", "ulimit": ["nofiles=3"]}}"#,
            "unknown ulimit",
        ),
        (r#"["web"]"#, "expected a map of containers"),
        (r#"{"image": "x"}"#, "import tripleo"),
    ];
    for (text, expected) in cases {
        let err = paunch(&[input("step_1.json", text)]).expect_err(text);
        let shown = err.to_string();
        assert!(shown.starts_with("step_1.json"), "{shown}");
        assert!(shown.contains(expected), "{text}: {shown}");
    }
    let twice = paunch(&[
        input("step_1.json", r#"{"web": {"image": "x"}}"#),
        input("step_2.json", r#"{"web": {"image": "y"}}"#),
    ])
    .expect_err("one name twice");
    assert!(twice.to_string().contains("a second container named web"));
}

#[test]
fn writing_twice_gives_the_same_bytes_and_berth_reads_them_back() {
    let a = paunch(&[input("keystone-step_3.json", STEP_3)]).expect("ok");
    let b = paunch(&[input("keystone-step_3.json", STEP_3)]).expect("ok");
    for (x, y) in a.services.iter().zip(&b.services) {
        let text = x.file_text("paunch");
        assert_eq!(text, y.file_text("paunch"));
        let back = parse_services("x.yaml", &text).expect("berth reads it");
        assert_eq!(back, std::slice::from_ref(&x.spec));
    }
}

#[test]
fn rendering_quotes_what_yaml_would_read_otherwise() {
    let spec = ServiceSpec {
        name: "web".into(),
        image: ImageSource::Ref("x".into()),
        command: Some(
            [
                "true",
                "1000",
                "a: b",
                "#x",
                "- y",
                "",
                "multi\nline",
                "null",
                "/ok/path",
                "é",
                "0x1F",
                "http://h/x",
                "tab\there",
            ]
            .map(String::from)
            .to_vec(),
        ),
        user: Some("1000".into()),
        ..ServiceSpec::default()
    };
    let text = render(&spec);
    let back = parse_services("x.yaml", &text).expect(&text);
    assert_eq!(back, [spec], "{text}");
}

#[test]
fn only_a_plain_read_only_puppet_generated_mount_becomes_a_watched_source() {
    let file = r#"{"db": {"image": "x", "restart": "always", "volumes": [
        "/var/lib/config-data/puppet-generated/mysql/root:/root:rw",
        "/var/lib/config-data/puppet-generated/mysql:/var/lib/kolla/config_files/src:ro,z",
        "/var/lib/config-data/puppet-generated/mysql/etc:/etc/mysql:ro"
    ]}}"#;
    let import = paunch(&[input("step_1.json", file)]).expect("imports");
    let db = service(&import, "db");
    let volumes: Vec<String> = db
        .spec
        .volumes
        .iter()
        .map(|v| String::from(v.clone()))
        .collect();
    assert_eq!(
        volumes,
        [
            "/var/lib/config-data/puppet-generated/mysql/root:/root:rw",
            "/var/lib/config-data/puppet-generated/mysql:/var/lib/kolla/config_files/src:ro,z",
        ],
        "a writable mount stays writable, a relabelled one keeps its relabel"
    );
    assert!(
        db.warnings
            .iter()
            .any(|w| w.key == "volumes[1]" && w.message.contains("not watched"))
    );
    assert_eq!(db.spec.config.len(), 1);
    assert_eq!(db.spec.config[0].target, "/etc/mysql");
}

#[test]
fn a_container_without_restart_keeps_docker_runs_default() {
    let import = paunch(&[input("step_1.json", r#"{"web": {"image": "x"}}"#)]).expect("ok");
    assert_eq!(
        service(&import, "web").spec.restart,
        Some(crate::spec::RestartPolicy::Never),
        "paunch leaves it to docker run's `no`"
    );
}

#[test]
fn a_value_whose_name_says_secret_is_kept_secret() {
    let file = r#"{"db": {"image": "x", "restart": "always", "environment": {
        "DB_ROOT_PASSWORD": "Jd8fK3nP0sLq5wXz", "KOLLA_CONFIG_STRATEGY": "COPY_ALWAYS",
        "SSH_PRIVATE_KEY": "k", "KEYSTONE_URL": "http://ks"}}}"#;
    let import = paunch(&[input("step_1.json", file)]).expect("imports");
    let db = service(&import, "db");
    let secret = |k: &str| db.spec.env[k].secret;
    assert!(secret("DB_ROOT_PASSWORD") && secret("SSH_PRIVATE_KEY"));
    assert!(!secret("KOLLA_CONFIG_STRATEGY") && !secret("KEYSTONE_URL"));
    let text = db.file_text("paunch");
    assert!(text.contains("secret: true"), "{text}");
    // Berth's own view of the spec never shows it.
    assert!(!format!("{:?}", db.spec.redacted()).contains("Jd8fK3nP0sLq5wXz"));

    let doc = r#"{"group": "docker-cmd", "name": "d", "inputs": [
        {"name": "admin_password", "value": "hunter2"}, {"name": "region", "value": "r1"}],
        "config": {"web": {"image": "x"}}}"#;
    let map = ImageMap::default();
    let heat = heat_file(&input("d.json", doc), &opts(&map, &no_env)).expect("imports");
    let web = service(&heat, "web");
    assert!(!web.spec.inputs.contains_key("admin_password"));
    assert!(web.spec.inputs.contains_key("region"));
    assert!(!web.file_text("heat").contains("hunter2"));
    assert!(
        heat.warnings
            .iter()
            .any(|w| w.message.contains("admin_password"))
    );
}
