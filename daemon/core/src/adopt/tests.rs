use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::runtime::CreateSpec;
use crate::spec::{Network, RestartPolicy};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A container as the engine shows one that `config_data` made, with an
/// image defining PATH, an entrypoint and a cmd, and the engine's own
/// fill-ins (hostname, ipc mode).
fn engine_made(config_data: &serde_json::Value) -> ForeignContainer {
    let mut create = config_create("web", &config_data.to_string()).expect("config converts");
    let image = ImageDefaults {
        env: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
        cmd: Some(vec!["serve".to_string()]),
        entrypoint: Some(vec!["/demo".to_string()]),
        user: None,
        healthcheck: None,
        stop_signal: None,
    };
    for (k, v) in &image.env {
        create.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    create.command = create.command.or_else(|| image.cmd.clone());
    create.entrypoint = create.entrypoint.or_else(|| image.entrypoint.clone());
    if create.network != Network::Host {
        create.hostname = create.hostname.or_else(|| Some(ID[..12].to_string()));
    }
    create.ipc = create.ipc.or_else(|| Some("private".to_string()));
    ForeignContainer {
        id: ID.to_string(),
        name: "web".to_string(),
        labels: BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), "paunch".to_string()),
            (LABEL_CONFIG_ID.to_string(), "cfg-1".to_string()),
            (LABEL_CONTAINER_NAME.to_string(), "web".to_string()),
            (LABEL_CONFIG_DATA.to_string(), config_data.to_string()),
        ]),
        started_at: Some("2026-12-04T10:00:00.000000000Z".to_string()),
        running: true,
        create,
        image,
    }
}

fn base() -> serde_json::Value {
    json!({
        "image": "berth-demo:latest",
        "net": "host",
        "restart": "always",
        "environment": {"GREETING": "hello", "TRIPLEO_CONFIG_HASH": "abc"},
        "volumes": ["/srv/a:/a:ro", "/srv/b:/b"],
    })
}

fn verdict(c: &ForeignContainer) -> Verdict {
    check(c).verdict
}

fn diff_fields(c: &ForeignContainer) -> Vec<String> {
    match verdict(c) {
        Verdict::Differs { diffs } => diffs.into_iter().map(|d| d.field).collect(),
        other => panic!("expected differences, got {other:?}"),
    }
}

#[test]
fn a_container_made_from_its_config_is_adopted() {
    for config in [
        base(),
        json!({"image": "berth-demo:latest"}),
        json!({"image": "berth-demo:latest", "command": ["run", "--x"], "user": "root",
               "privileged": true, "volumes": ["/var/lib/config-data/puppet-generated/web:/etc/web:ro"]}),
        json!({"image": "berth-demo:latest", "net": "host", "pid": "host", "ipc": "host"}),
        json!({"image": "berth-demo:latest", "healthcheck": {"test": "/openstack/healthcheck"}}),
    ] {
        let c = engine_made(&config);
        assert_eq!(verdict(&c), Verdict::Adopt, "{config}");
    }
}

/// Each normalization rule: what the engine adds or how it orders things
/// is not a difference.
#[test]
fn what_the_engine_fills_in_is_not_a_difference() {
    type Rule = (&'static str, fn(&mut ForeignContainer));
    let rules: &[Rule] = &[
        ("the image's own env", |c| {
            c.image.env.insert("LANG".into(), "C".into());
            c.create.env.insert("LANG".into(), "C".into());
        }),
        ("TRIPLEO_CONFIG_HASH, another value", |c| {
            c.create
                .env
                .insert("TRIPLEO_CONFIG_HASH".into(), "other".into());
        }),
        ("TRIPLEO_CONFIG_HASH, absent", |c| {
            c.create.env.remove("TRIPLEO_CONFIG_HASH");
        }),
        ("volumes in another order", |c| c.create.volumes.reverse()),
        (
            "the image's cmd and entrypoint, the config giving none",
            |c| {
                c.create.command = c.image.cmd.clone();
                c.create.entrypoint = c.image.entrypoint.clone();
            },
        ),
        ("the image's user", |c| {
            c.image.user = Some("demo".into());
            c.create.user = Some("demo".into());
        }),
        ("an empty user", |c| c.create.user = Some(String::new())),
        ("the image's healthcheck", |c| {
            let h = Healthcheck {
                exec: vec!["/demo".into(), "health".into()],
                test: None,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                retries: 3,
                start_period: None,
            };
            c.image.healthcheck = Some(h.clone());
            c.create.healthcheck = Some(h);
        }),
        ("the image's stop signal", |c| {
            c.image.stop_signal = Some("SIGQUIT".into());
            c.create.stop_signal = Some("SIGQUIT".into());
        }),
        ("the host's hostname with the host network", |c| {
            c.create.hostname = Some("overcloud-controller-0".into());
        }),
        ("the engine's log options (daemon.json)", |c| {
            c.create.logging = Some(crate::spec::Logging {
                max_size: Some(10 << 20),
                max_files: Some(3),
                tag: None,
            });
        }),
        ("ipc shareable", |c| c.create.ipc = Some("shareable".into())),
        ("ipc empty, pid and uts empty", |c| {
            c.create.ipc = Some(String::new());
            c.create.pid = Some(String::new());
            c.create.uts = Some(String::new());
        }),
    ];
    for (name, rule) in rules {
        let mut c = engine_made(&base());
        rule(&mut c);
        assert_eq!(verdict(&c), Verdict::Adopt, "{name}");
    }
}

/// Each kind of difference is reported, naming the field, the config's
/// value and the container's.
#[test]
fn each_difference_is_named_with_both_values() {
    type Case = (
        &'static str,
        fn(&mut ForeignContainer),
        &'static str,
        serde_json::Value,
        serde_json::Value,
    );
    let cases: &[Case] = &[
        (
            "env changed",
            |c| {
                c.create.env.insert("GREETING".into(), "bye".into());
            },
            "env.GREETING",
            json!("hello"),
            json!("bye"),
        ),
        (
            "env added",
            |c| {
                c.create.env.insert("DEBUG".into(), "1".into());
            },
            "env.DEBUG",
            json!(null),
            json!("1"),
        ),
        (
            "env removed",
            |c| {
                c.create.env.remove("GREETING");
            },
            "env.GREETING",
            json!("hello"),
            json!(null),
        ),
        (
            "an extra volume",
            |c| {
                c.create
                    .volumes
                    .push(Volume::parse("/srv/c:/c").expect("volume"));
            },
            "volumes",
            json!(["/srv/a:/a:ro", "/srv/b:/b:rw"]),
            json!(["/srv/a:/a:ro", "/srv/b:/b:rw", "/srv/c:/c:rw"]),
        ),
        (
            "another image",
            |c| c.create.image = "berth-demo:old".into(),
            "image",
            json!("berth-demo:latest"),
            json!("berth-demo:old"),
        ),
        (
            "privileged",
            |c| c.create.privileged = true,
            "privileged",
            json!(null),
            json!(true),
        ),
        (
            "another network",
            |c| c.create.network = Network::None,
            "network",
            json!("host"),
            json!("none"),
        ),
        (
            "another restart policy",
            |c| c.create.restart = RestartPolicy::UnlessStopped,
            "restart",
            json!(null),
            json!("unless-stopped"),
        ),
        (
            "a command other than the image's",
            |c| c.create.command = Some(vec!["other".into()]),
            "command",
            json!(null),
            json!(["other"]),
        ),
        (
            "a user other than the image's",
            |c| c.create.user = Some("nobody".into()),
            "user",
            json!(null),
            json!("nobody"),
        ),
        (
            "the image's env overridden",
            |c| {
                c.create.env.insert("PATH".into(), "/opt/bin".into());
            },
            "env.PATH",
            json!(null),
            json!("/opt/bin"),
        ),
        (
            "a cap added",
            |c| c.create.cap_add = vec!["NET_ADMIN".into()],
            "cap_add",
            json!(null),
            json!(["NET_ADMIN"]),
        ),
    ];
    for (name, change, field, config_says, container_has) in cases {
        let mut c = engine_made(&base());
        change(&mut c);
        let Verdict::Differs { diffs } = verdict(&c) else {
            panic!("{name}: expected a difference");
        };
        assert_eq!(
            diffs,
            vec![FieldDiff {
                field: field.to_string(),
                config_says: config_says.clone(),
                container_has: container_has.clone(),
            }],
            "{name}"
        );
    }
}

#[test]
fn a_config_set_variable_the_image_also_sets_must_match() {
    let mut config = base();
    config["environment"]["PATH"] = json!("/opt/bin");
    let mut c = engine_made(&config);
    assert_eq!(verdict(&c), Verdict::Adopt);
    c.create.env.insert("PATH".into(), "/usr/bin:/bin".into());
    assert_eq!(diff_fields(&c), ["env.PATH"]);
}

#[test]
fn a_config_command_is_compared_even_when_it_is_the_images() {
    let mut config = base();
    config["command"] = json!(["serve"]);
    let mut c = engine_made(&config);
    assert_eq!(verdict(&c), Verdict::Adopt);
    c.create.command = Some(vec!["other".into()]);
    assert_eq!(diff_fields(&c), ["command"]);
}

#[test]
fn a_hostname_the_config_sets_is_compared() {
    let mut config = json!({"image": "berth-demo:latest", "hostname": "web-1"});
    let mut c = engine_made(&config);
    assert_eq!(verdict(&c), Verdict::Adopt);
    c.create.hostname = Some(ID[..12].into());
    assert_eq!(diff_fields(&c), ["hostname"]);
    // Without one, another name than the engine's is a difference.
    config = json!({"image": "berth-demo:latest"});
    let mut c = engine_made(&config);
    c.create.hostname = Some("by-hand".into());
    assert_eq!(diff_fields(&c), ["hostname"]);
}

#[test]
fn a_puppet_generated_config_mount_compares_as_a_read_only_volume() {
    let config = json!({"image": "berth-demo:latest",
        "volumes": ["/var/lib/config-data/puppet-generated/web:/etc/web:ro"]});
    let mut c = engine_made(&config);
    assert_eq!(
        c.create.volumes,
        vec![Volume::parse("/var/lib/config-data/puppet-generated/web:/etc/web:ro").expect("v")]
    );
    c.create.volumes[0].read_only = false;
    assert_eq!(diff_fields(&c), ["volumes"]);
}

#[test]
fn log_options_the_config_sets_are_compared() {
    let mut config = base();
    config["log_tag"] = json!("web");
    let mut c = engine_made(&config);
    assert_eq!(verdict(&c), Verdict::Adopt);
    // The engine's rotation beside the config's tag: not a difference.
    if let Some(l) = &mut c.create.logging {
        l.max_files = Some(3);
    }
    assert_eq!(verdict(&c), Verdict::Adopt);
    c.create.logging = None;
    assert_eq!(diff_fields(&c), ["logging"]);
}

#[test]
fn key_order_is_ignored_value_types_are_not() {
    let a = r#"{"image": "berth-demo:latest", "privileged": true, "net": "host"}"#;
    let b = r#"{"net": "host", "privileged": true, "image": "berth-demo:latest"}"#;
    assert_eq!(config_create("web", a), config_create("web", b));
    let typed = r#"{"image": "berth-demo:latest", "privileged": "yes"}"#;
    let err = config_create("web", typed).expect_err("a string is not a boolean");
    assert!(err.contains("privileged"), "{err}");
}

#[test]
fn an_unreadable_config_is_said_so() {
    let cases: &[(Option<&str>, &str)] = &[
        (Some("{not json"), "not JSON"),
        (Some("[1, 2]"), "a list"),
        (
            Some(r#"{"image": "berth-demo:latest", "privileged": "yes"}"#),
            "privileged",
        ),
        (
            Some(r#"{"action": "exec", "command": ["web", "true"]}"#),
            "exec",
        ),
        (None, "no config_data label"),
    ];
    for (data, words) in cases {
        let mut c = engine_made(&base());
        match data {
            Some(d) => c.labels.insert(LABEL_CONFIG_DATA.into(), d.to_string()),
            None => c.labels.remove(LABEL_CONFIG_DATA),
        };
        match verdict(&c) {
            Verdict::Unreadable { reason } => assert!(reason.contains(words), "{reason}"),
            other => panic!("{data:?}: {other:?}"),
        }
    }
}

#[test]
fn a_docker_cmd_container_needs_its_metadata() {
    let mut c = engine_made(&base());
    c.labels
        .insert(LABEL_MANAGED_BY.into(), "docker-cmd".into());
    c.labels.remove(LABEL_CONFIG_DATA);
    let Verdict::NeedsMetadata { reason } = verdict(&c) else {
        panic!("expected NeedsMetadata");
    };
    assert!(reason.contains("not yet"), "{reason}");
}

#[test]
fn secret_looking_values_are_hidden_in_differences() {
    let mut config = base();
    config["environment"]["DB_PASSWORD"] = json!("s3cret");
    let mut c = engine_made(&config);
    c.create
        .env
        .insert("DB_PASSWORD".into(), "other-s3cret".into());
    let Verdict::Differs { diffs } = verdict(&c) else {
        panic!("expected a difference");
    };
    assert_eq!(diffs[0].field, "env.DB_PASSWORD");
    let text = serde_json::to_string(&diffs).expect("json");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn managed_by_values_name_their_tool() {
    let cases = [
        ("paunch", Some(AdoptFrom::Paunch)),
        ("tripleo-Controller", Some(AdoptFrom::Paunch)),
        ("tripleo-", None),
        ("tripleo_ansible", Some(AdoptFrom::Tripleo)),
        ("docker-cmd", Some(AdoptFrom::DockerCmd)),
        ("compose", None),
        ("", None),
    ];
    for (value, tool) in cases {
        assert_eq!(AdoptFrom::of(value), tool, "{value}");
    }
    for f in AdoptFrom::ALL {
        assert_eq!(AdoptFrom::parse(f.as_str()), Some(f));
    }
}

#[test]
fn a_report_holds_the_tools_containers_with_the_config_id() {
    let mut a = engine_made(&base());
    a.name = "b-web".into();
    let mut b = engine_made(&base());
    b.name = "a-other".into();
    b.labels.insert(LABEL_CONFIG_ID.into(), "cfg-2".into());
    let mut c = engine_made(&base());
    c.name = "tripleo".into();
    c.labels
        .insert(LABEL_MANAGED_BY.into(), "tripleo_ansible".into());
    let all = [a, b, c];
    let names =
        |r: AdoptReport| -> Vec<String> { r.containers.into_iter().map(|e| e.name).collect() };
    assert_eq!(
        names(report(&all, AdoptFrom::Paunch, None)),
        ["a-other", "b-web"]
    );
    assert_eq!(
        names(report(&all, AdoptFrom::Paunch, Some("cfg-1"))),
        ["b-web"]
    );
    assert_eq!(names(report(&all, AdoptFrom::Tripleo, None)), ["tripleo"]);
    assert!(
        report(&all, AdoptFrom::DockerCmd, None)
            .containers
            .is_empty()
    );
    let entry = check(&all[0]);
    assert_eq!(entry.systemd_unit, "tripleo_web.service");
    assert_eq!(entry.config_id.as_deref(), Some("cfg-1"));
    let json = serde_json::to_value(&entry).expect("json");
    assert_eq!(json["verdict"], "adopt");
}

#[test]
fn the_config_side_keeps_nothing_of_berths_own_bookkeeping() {
    let c = config_create("web", &base().to_string()).expect("converts");
    assert!(!c.env.contains_key("TRIPLEO_CONFIG_HASH"));
    assert!(c.config.is_empty());
    assert_eq!(c.image, "berth-demo:latest");
    assert_eq!(c, CreateSpec { ..c.clone() });
}

/// What the conversion leaves out is not compared, and the entry says so
/// (a container whose swappiness differs still reads as adoptable, with
/// `mem_swappiness` named as not compared).
#[test]
fn what_the_conversion_leaves_out_is_named_as_not_compared() {
    let mut config = base();
    config["mem_swappiness"] = json!(60);
    let entry = check(&engine_made(&config));
    assert_eq!(entry.verdict, Verdict::Adopt);
    assert_eq!(entry.not_compared.len(), 1, "{:?}", entry.not_compared);
    assert!(
        entry.not_compared[0].starts_with("mem_swappiness: ")
            && entry.not_compared[0].contains("swappiness"),
        "{:?}",
        entry.not_compared
    );
    let json = serde_json::to_value(&entry).expect("serializes");
    assert_eq!(json["not_compared"][0], entry.not_compared[0].as_str());
    // Nothing left out: nothing said.
    let entry = check(&engine_made(&base()));
    assert!(entry.not_compared.is_empty());
    let json = serde_json::to_value(&entry).expect("serializes");
    assert!(json.get("not_compared").is_none(), "{json}");
}
