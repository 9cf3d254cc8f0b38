use serde_json::json;

use super::*;
use crate::parse::{SERVICE_FIELDS, parse_services};

/// The problems a body of one service gives over `POST /v1/apply`, by
/// field path (not by the order of keys in a JSON object).
fn problems(spec: Value) -> Vec<Problem> {
    match apply_request(&json!({ "services": [spec] })) {
        Err(BodyError::Fields(mut p)) => {
            p.sort_by(|a, b| a.field.cmp(&b.field));
            p
        }
        other => panic!("expected field problems, got {other:?}"),
    }
}

fn wrong_type(field: &str, message: &str) -> Problem {
    Problem {
        field: field.into(),
        message: message.into(),
        wrong_type: true,
    }
}

#[test]
fn a_number_for_the_image_is_a_wrong_type_naming_the_field_and_the_fix() {
    let e = service(&json!({"name": "bad", "image": 5})).unwrap_err();
    assert!(e.has_wrong_type());
    assert_eq!(
        e,
        BodyError::Fields(vec![wrong_type(
            "image",
            "expected a string or an object, got the number 5; write it as a string: \"5\""
        )])
    );
    // In a list of services the path says which.
    assert_eq!(
        problems(json!({"name": "bad", "image": 5})),
        [wrong_type(
            "services[0].image",
            "expected a string or an object, got the number 5; write it as a string: \"5\""
        )]
    );
    let shown = problems(json!({"name": 7, "image": "demo:1"}))[0].to_string();
    assert_eq!(
        shown,
        "services[0].name: expected a string, got the number 7; write it as a string: \"7\""
    );
}

#[test]
fn text_where_a_list_is_expected() {
    assert_eq!(
        problems(json!({"name": "web", "image": "demo:1", "command": "serve"})),
        [wrong_type(
            "services[0].command",
            "expected a list of strings, got the string \"serve\"; put it in a list: [\"serve\"]"
        )]
    );
    // A number where a list of strings is expected: both fixes at once.
    assert_eq!(
        problems(json!({"name": "web", "image": "demo:1", "cap_add": 5}))[0].message,
        "expected a list of strings, got the number 5; put it in a list: [\"5\"]"
    );
}

#[test]
fn a_number_inside_a_list_of_strings() {
    assert_eq!(
        problems(json!({"name": "web", "image": "demo:1", "command": ["/demo", 8080]})),
        [wrong_type(
            "services[0].command[1]",
            "expected a string, got the number 8080; write it as a string: \"8080\""
        )]
    );
}

#[test]
fn quoted_numbers_and_booleans_are_text() {
    let p = problems(json!({
        "name": "web", "image": "demo:1", "privileged": "true",
        "healthcheck": {"exec": ["/demo"], "retries": "3"},
        "resources": {"cpus": "0.5"},
    }));
    assert_eq!(
        p,
        [
            wrong_type(
                "services[0].healthcheck.retries",
                "expected an integer, got the string \"3\"; write it without quotes: 3"
            ),
            wrong_type(
                "services[0].privileged",
                "expected true or false, got the string \"true\"; write it without quotes: true"
            ),
            wrong_type(
                "services[0].resources.cpus",
                "expected a number, got the string \"0.5\"; write it without quotes: 0.5"
            ),
        ]
    );
}

#[test]
fn a_fraction_is_not_an_integer() {
    for n in [json!(3.5), json!(3.0)] {
        let p = problems(json!({"name": "web", "image": "demo:1",
            "logging": {"max_size": "1Mi", "max_files": n}}));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "services[0].logging.max_files");
        assert!(
            p[0].wrong_type
                && p[0]
                    .message
                    .starts_with("expected an integer, got the number 3"),
            "{p:?}"
        );
    }
}

#[test]
fn objects_lists_and_scalars_in_each_others_places() {
    let p = problems(json!({
        "name": {"first": "web"}, "image": "demo:1", "resources": [], "env": "A=1",
    }));
    assert_eq!(
        p,
        [
            wrong_type(
                "services[0].env",
                "expected an object, got the string \"A=1\""
            ),
            wrong_type("services[0].name", "expected a string, got an object"),
            wrong_type("services[0].resources", "expected an object, got a list"),
        ]
    );
}

#[test]
fn null_is_not_a_value() {
    let p = problems(json!({"name": "web", "image": null, "user": null,
        "command": [null], "env": {"A": null}}));
    let null = "null is not a value: give one, or leave the field out";
    assert_eq!(
        p,
        [
            wrong_type(
                "services[0].command[0]",
                &format!("expected a string, got null; {null}")
            ),
            wrong_type(
                "services[0].env.A",
                &format!("expected a string, a number, a boolean or an object, got null; {null}")
            ),
            wrong_type(
                "services[0].image",
                &format!("expected a string or an object, got null; {null}")
            ),
            wrong_type(
                "services[0].user",
                &format!("expected a string, got null; {null}")
            ),
        ]
    );
}

#[test]
fn value_problems_come_with_the_type_problems_but_not_inside_them() {
    let p = problems(json!({
        "name": "Not A Name", "image": 5, "command": "x", "restart": "sometimes",
    }));
    let fields: Vec<(&str, bool)> = p.iter().map(|p| (p.field.as_str(), p.wrong_type)).collect();
    // `command` is named once: the file parser's "expected a list" is the
    // type problem already said.
    assert_eq!(
        fields,
        [
            ("services[0].command", true),
            ("services[0].image", true),
            ("services[0].name", false),
            ("services[0].restart", false),
        ]
    );
    assert!(p[3].message.contains("sometimes"), "{p:?}");
    // Value problems alone are not a wrong type.
    let e = apply_request(&json!({"services": [{"name": "web", "image": "demo:1", "imgae": "x"}]}))
        .unwrap_err();
    assert!(!e.has_wrong_type());
    let BodyError::Fields(p) = e else {
        panic!("{e:?}")
    };
    assert_eq!(p[0].field, "services[0].imgae");
    assert!(p[0].message.contains("did you mean \"image\""), "{p:?}");
}

#[test]
fn the_request_itself() {
    let request = |v: Value| apply_request(&v).unwrap_err();
    assert_eq!(
        request(json!({"services": [], "force": "yes"})),
        BodyError::Fields(vec![wrong_type(
            "force",
            "expected true or false, got the string \"yes\""
        )])
    );
    assert_eq!(
        request(json!({"services": {"name": "web", "image": "demo:1"}})),
        BodyError::Fields(vec![wrong_type(
            "services",
            "expected a list, got an object; put it in a list: [{...}]"
        )])
    );
    assert_eq!(
        request(json!({"services": ["web"]})),
        BodyError::Fields(vec![wrong_type(
            "services[0]",
            "expected an object, got the string \"web\""
        )])
    );
    for (body, says) in [
        (json!([]), "must be an object"),
        (json!({"force": true}), "needs services"),
        (json!({"services": null}), "needs services"),
        (
            json!({"services": [], "extra": 1}),
            "unknown field \"extra\"",
        ),
    ] {
        match request(body) {
            BodyError::Request(m) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    let ok =
        apply_request(&json!({"services": [{"name": "web", "image": "demo:1"}], "force": null}))
            .unwrap();
    assert_eq!((ok.services.len(), ok.force), (1, false));
}

#[test]
fn a_put_body_may_be_the_file_form_and_is_held_to_the_same_types() {
    let spec = service(&json!({"services": [{"name": "web", "image": "demo:1"}]})).unwrap();
    assert_eq!(spec.name, "web");
    let e = service(&json!({"services": [{"name": "web", "image": 5}]})).unwrap_err();
    assert_eq!(
        e,
        BodyError::Fields(vec![wrong_type(
            "services[0].image",
            "expected a string or an object, got the number 5; write it as a string: \"5\""
        )])
    );
}

/// Where a spec deliberately takes a number, the JSON form does, and reads
/// it as a file would.
#[test]
fn the_numbers_a_spec_takes_read_as_in_a_file() {
    let body = json!({
        "name": "web", "image": "demo:1",
        "ports": [8080, "9090:90"],
        "stop_signal": 15,
        "env": {"PORT": 8080, "DEBUG": true, "RATIO": 0.5, "KEY": {"value": 7, "secret": true}},
        "ulimits": {"nofile": 1024, "nproc": {"soft": 10, "hard": 20}},
        "resources": {"memory": 268435456, "cpus": 0.5, "pids": 100},
        "group_add": [1001, "wheel"],
        "logging": {"max_size": 1048576, "max_files": 3},
        "config": [{"source": "/etc/berth/web", "target": "/etc/web", "on_change": {"signal": 1}}],
    });
    let from_json = service(&body).unwrap();
    let file = "name: web\nimage: demo:1\nports: [8080, \"9090:90\"]\nstop_signal: 15\n\
                env: {PORT: 8080, DEBUG: true, RATIO: 0.5, KEY: {value: 7, secret: true}}\n\
                ulimits: {nofile: 1024, nproc: {soft: 10, hard: 20}}\n\
                resources: {memory: 268435456, cpus: 0.5, pids: 100}\n\
                group_add: [1001, wheel]\n\
                logging: {max_size: 1048576, max_files: 3}\n\
                config: [{source: /etc/berth/web, target: /etc/web, on_change: {signal: 1}}]\n";
    let from_file = parse_services("web.yaml", file).unwrap();
    assert_eq!([from_json], from_file.as_slice());
}

/// What berthctl sends: specs it parsed from files, serialized. Every
/// field and every form of one, so the JSON form takes all of them.
#[test]
fn every_spec_as_berthctl_serializes_it_is_taken_back_unchanged() {
    let file = r#"services:
  - name: web
    image: berth-demo:latest
    command: ["/demo", "serve"]
    entrypoint: ["/bin/sh", "-c"]
    env: {GREETING: hello, TOKEN: {value: s3cret, secret: true}}
    env_file: [/etc/berth/web.env, /etc/berth/web-secrets.env]
    user: "1000:1000"
    volumes: ["/srv/web:/data:rw", "cache:/cache:ro", "/run/netns:/run/netns:shared,z", "db:/db:Z,ro"]
    volumes_from: [job, "loaded:ro"]
    network: backend
    ports: ["8080:80", "127.0.0.1:9090:90/udp"]
    privileged: true
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    security_opt: ["no-new-privileges"]
    ulimits: {nofile: {soft: 1024, hard: 4096}, core: 0}
    pid: host
    ipc: shareable
    hostname: web-1.internal
    extra_hosts: ["db.internal:10.0.0.5", "v6:fd00::1"]
    group_add: [wheel, 1001]
    tty: true
    interactive: true
    resources: {memory: 256Mi, cpus: 0.5, pids: 512, cpu_shares: 512, cpuset_cpus: "0-3"}
    stop_signal: SIGINT
    stop_timeout: 1m30s
    logging: {max_size: 10Mi, max_files: 3, tag: "{{.Name}}"}
    restart: on-failure
    state: stopped
    healthcheck: {exec: ["/demo", "health"], interval: 5s, timeout: 2s, retries: 3, start_period: 10s}
    update: {settle: 20s, health_timeout: 2m}
    config:
      - {source: /etc/berth/a, target: /etc/a}
      - {source: /etc/berth/b, target: /etc/b, on_change: recreate}
      - {source: /etc/berth/c, target: /etc/c, on_change: {signal: HUP}}
      - {source: /etc/berth/d, target: /etc/d, on_change: {exec: ["/demo", "reload"]}}
    after_units: [postgresql.service, srv-data.mount]
    requires_units: [postgresql]
    depends_on: [job, {service: loaded, condition: healthy}]
    inputs: {region: eu-west, port: 5432, debug: true, result: {from: job.outputs.result}}
  - name: job
    image: {build: {context: /srv/job, dockerfile: Dockerfile.job}}
    logging: {tag: job}
    env_file: /etc/berth/job.env
    kind: task
    outputs: [result]
    restart: never
    network: none
    depends_on: [{service: loaded, condition: ended}]
    inputs: {empty: ""}
  - name: loaded
    image: {load: /srv/images/loaded.tar}
    network: host
    pid: "container:web"
    uts: host
    restart: unless-stopped
    healthcheck: {exec: ["/loaded", "ok"]}
"#;
    let specs = parse_services("all.yaml", file).unwrap();
    let sent = serde_json::to_value(ApplyRequest {
        services: specs.clone(),
        force: true,
    })
    .unwrap();
    let back = apply_request(&sent).unwrap();
    assert_eq!(back.services, specs);
    assert!(back.force);
    for spec in &specs {
        let one = serde_json::to_value(spec).unwrap();
        assert_eq!(&service(&one).unwrap(), spec);
    }
}

#[test]
fn the_json_form_names_every_field_a_spec_has_in_order() {
    let Shape::Object(fields) = SERVICE else {
        panic!("a spec is an object")
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names, SERVICE_FIELDS,
        "a spec field needs its JSON type in apply_body::SERVICE (and in the OpenAPI \
         document's ServiceSpecInput)"
    );
}

/// One step into a shape, to build a body that reaches a place in it.
#[derive(Clone, Copy, Debug)]
enum Step {
    Field(&'static str),
    Item,
    /// A free key; `nofile` is both an env name and a ulimit.
    Key,
}

/// Every place in `shape` a value sits, with its shape.
fn places(shape: &'static Shape, steps: Vec<Step>, out: &mut Vec<(Vec<Step>, &'static Shape)>) {
    out.push((steps.clone(), shape));
    let alternatives: &'static [Shape] = match shape {
        Shape::AnyOf(shapes) => shapes,
        other => std::slice::from_ref(other),
    };
    for alt in alternatives {
        let deeper = |step| {
            let mut s = steps.clone();
            s.push(step);
            s
        };
        match alt {
            Shape::List(item) => places(item, deeper(Step::Item), out),
            Shape::Map(each) => places(each, deeper(Step::Key), out),
            Shape::Object(fields) => {
                for (name, field) in *fields {
                    places(field, deeper(Step::Field(name)), out);
                }
            }
            _ => {}
        }
    }
}

/// A service (`name` and `image` set unless the steps replace them) with
/// `leaf` at the place `steps` lead to, and that place's path.
fn body_at(steps: &[Step], leaf: Value) -> (Value, String) {
    fn build(steps: &[Step], leaf: Value) -> Value {
        match steps.split_first() {
            None => leaf,
            Some((Step::Field(name), rest)) => json!({ *name: build(rest, leaf) }),
            Some((Step::Item, rest)) => json!([build(rest, leaf)]),
            Some((Step::Key, rest)) => json!({ "nofile": build(rest, leaf) }),
        }
    }
    let mut body = json!({"name": "web", "image": "demo:1"});
    if let (Value::Object(base), Value::Object(top)) = (&mut body, build(steps, leaf)) {
        base.extend(top);
    }
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Field(name) => path = join(&path, name),
            Step::Item => path.push_str("[0]"),
            Step::Key => path = join(&path, "nofile"),
        }
    }
    (body, path)
}

/// Every field, at every depth, refuses a value of a type it does not
/// take, naming its own path.
#[test]
fn every_field_refuses_a_wrong_type_by_its_path() {
    let mut all = Vec::new();
    places(&SERVICE, Vec::new(), &mut all);
    assert!(all.len() > 60, "{} places", all.len());
    let candidates = [
        json!(5),
        json!(1.5),
        json!("x"),
        json!(true),
        json!([]),
        json!({}),
    ];
    for (steps, shape) in all.iter().filter(|(steps, _)| !steps.is_empty()) {
        let wrong = candidates
            .iter()
            .find(|v| alternative(v, shape).is_none())
            .unwrap_or_else(|| panic!("{steps:?} takes every type"));
        let (body, path) = body_at(steps, wrong.clone());
        let p = problems(body.clone());
        let field = format!("services[0].{path}");
        assert!(
            p.iter().any(|p| p.field == field && p.wrong_type),
            "{body}: expected a wrong type at {field}, got {p:?}"
        );
    }
}

/// Every object of the JSON form names the fields the file parser knows
/// there, no more and no fewer: asked by an unknown field, the parser
/// lists them.
#[test]
fn every_object_names_the_fields_the_file_parser_knows() {
    let mut all = Vec::new();
    places(&SERVICE, Vec::new(), &mut all);
    let mut objects = 0;
    for (steps, shape) in &all {
        let alternatives: &[Shape] = match shape {
            Shape::AnyOf(shapes) => shapes,
            other => std::slice::from_ref(*other),
        };
        let Some(fields) = alternatives.iter().find_map(|s| match s {
            Shape::Object(fields) => Some(*fields),
            _ => None,
        }) else {
            continue;
        };
        objects += 1;
        let (body, path) = body_at(steps, json!({"zz_probe": 1}));
        let probe = join(&path, "zz_probe");
        let errors = crate::parse::parse_service_json_value("probe", &body).unwrap_err();
        let known = errors
            .0
            .iter()
            .find(|e| e.field == probe)
            .and_then(|e| e.message.split_once("known fields: "))
            .map(|(_, list)| {
                list.split(", ")
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| panic!("{body}: no unknown-field error at {probe}: {errors}"));
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names, known,
            "the fields at {path:?}: a field the file parser takes needs its JSON type in \
             apply_body::SERVICE (and in the OpenAPI document's ServiceSpecInput)"
        );
    }
    // The spec, image, build, env value, ulimit, resources, logging,
    // healthcheck, an input's value, update, config, on_change, a
    // depends_on entry, hooks, then a hook and its breakpoint in each of
    // the three phases.
    assert_eq!(objects, 20);
}

#[test]
fn long_strings_are_cut_in_messages() {
    let long = "x".repeat(100);
    let p = problems(json!({"name": "web", "image": "demo:1", "privileged": long}));
    assert_eq!(
        p[0].message,
        format!(
            "expected true or false, got the string \"{}...\"",
            "x".repeat(40)
        )
    );
}

#[test]
fn depends_on_and_inputs_take_their_json_types_and_read_as_in_a_file() {
    let body = json!({
        "name": "web", "image": "demo:1",
        "depends_on": ["db", {"service": "migrate", "condition": "completed"}],
        "inputs": {"port": 5432, "debug": true, "ratio": 0.5, "region": "eu-west",
                   "schema": {"from": "migrate.outputs.version"}},
    });
    let file = "name: web\nimage: demo:1\n\
                depends_on: [db, {service: migrate, condition: completed}]\n\
                inputs: {port: 5432, debug: true, ratio: 0.5, region: eu-west, \
                schema: {from: migrate.outputs.version}}\n";
    let from_file = parse_services("web.yaml", file).unwrap();
    assert_eq!([service(&body).unwrap()], from_file.as_slice());

    let null = "null is not a value: give one, or leave the field out";
    assert_eq!(
        problems(json!({"name": "web", "image": "demo:1",
            "depends_on": "db",
            "inputs": {"a": ["x"], "b": {"from": 5}, "c": null}})),
        [
            wrong_type(
                "services[0].depends_on",
                "expected a list, got the string \"db\"; put it in a list: [\"db\"]"
            ),
            wrong_type(
                "services[0].inputs.a",
                "expected a string, a number, a boolean or an object, got a list"
            ),
            wrong_type(
                "services[0].inputs.b.from",
                "expected a string, got the number 5; write it as a string: \"5\""
            ),
            wrong_type(
                "services[0].inputs.c",
                &format!("expected a string, a number, a boolean or an object, got null; {null}")
            ),
        ]
    );
    assert_eq!(
        problems(json!({"name": "web", "image": "demo:1",
            "depends_on": [5, {"service": true}]})),
        [
            wrong_type(
                "services[0].depends_on[0]",
                "expected a string or an object, got the number 5; write it as a string: \"5\""
            ),
            wrong_type(
                "services[0].depends_on[1].service",
                "expected a string, got the boolean true"
            ),
        ]
    );
    // Right types, wrong values: the file parser's word, by field.
    let p = problems(json!({"name": "web", "image": "demo:1",
        "depends_on": [{"service": "db", "condition": "ready"}, "web"],
        "inputs": {"v": {"from": "migrate.version"}}}));
    let fields: Vec<(&str, bool)> = p.iter().map(|p| (p.field.as_str(), p.wrong_type)).collect();
    assert_eq!(
        fields,
        [
            ("services[0].depends_on[0].condition", false),
            ("services[0].depends_on[1]", false),
            ("services[0].inputs.v.from", false),
        ]
    );
    assert!(
        p[0].message.contains("started, healthy, completed, ended"),
        "{p:?}"
    );
    assert!(p[1].message.contains("cannot depend on itself"), "{p:?}");
    assert!(p[2].message.contains("SERVICE.outputs.NAME"), "{p:?}");
}
