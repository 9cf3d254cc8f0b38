use std::time::Duration;

use serde_json::json;

use super::*;

fn berth_doc(config: Value, inputs: Value) -> Value {
    json!({
        "id": "d-1",
        "name": "web-deploy",
        "group": "berth",
        "config": config,
        "inputs": inputs,
        "outputs": [{"name": "url"}, {"name": "err", "error_output": true}],
        "options": null,
        "creation_time": "2026-01-01T00:00:00Z",
    })
}

fn berth(doc: &Value) -> BerthDeployment {
    match parse_document(doc).unwrap().classify().unwrap() {
        Classified::Berth(b) => *b,
        other => panic!("not berth: {other:?}"),
    }
}

fn err(doc: &Value) -> HeatError {
    match parse_document(doc) {
        Err(e) => e,
        Ok(d) => d.classify().unwrap_err(),
    }
}

#[test]
fn one_spec_object_with_inputs_as_env() {
    let doc = berth_doc(
        json!({"name": "web", "image": "nginx:1"}),
        json!([
            {"name": "db-host", "type": "String", "value": "10.0.0.1"},
            {"name": "port", "type": "Number", "value": 5432},
            {"name": "tags", "type": "Json", "value": {"a": [1]}},
            {"name": "admin_password", "value": "hunter2"},
            {"name": "deploy_action", "value": "CREATE"},
            {"name": "deploy_password", "value": "pw"},
        ]),
    );
    let b = berth(&doc);
    assert_eq!(b.id, "d-1");
    assert_eq!(b.services.len(), 1);
    let env = &b.services[0].env;
    assert_eq!(env["BERTH_INPUT_DB_HOST"].value, "10.0.0.1");
    assert_eq!(env["BERTH_INPUT_PORT"].value, "5432");
    assert_eq!(env["BERTH_INPUT_TAGS"].value, r#"{"a":[1]}"#);
    assert!(env["BERTH_INPUT_ADMIN_PASSWORD"].secret);
    assert!(!env["BERTH_INPUT_DB_HOST"].secret);
    assert!(!env.contains_key("BERTH_INPUT_DEPLOY_ACTION"));
    assert!(!env.contains_key("BERTH_INPUT_DEPLOY_PASSWORD"));
    assert_eq!(b.inputs.action.as_deref(), Some("CREATE"));
    // Debug never shows a secret.
    let dbg = format!("{b:?} {:?}", parse_document(&doc).unwrap());
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("\"pw\""), "{dbg}");
}

#[test]
fn list_of_specs_and_yaml_and_json_strings() {
    let list = json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]);
    assert_eq!(berth(&berth_doc(list.clone(), json!([]))).services.len(), 2);
    let json_text = Value::String(list.to_string());
    assert_eq!(berth(&berth_doc(json_text, json!([]))).services.len(), 2);
    let yaml_list = Value::String("- name: a\n  image: x\n- name: b\n  image: y\n".into());
    let names: Vec<String> = berth(&berth_doc(yaml_list, json!([])))
        .services
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let yaml_one = Value::String("name: a\nimage: x\n".into());
    assert_eq!(berth(&berth_doc(yaml_one, json!([]))).services.len(), 1);
    let services = json!({"services": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
    assert_eq!(berth(&berth_doc(services, json!([]))).services.len(), 2);
}

#[test]
fn spec_errors_are_pathed_under_config() {
    let list = json!([{"name": "a", "image": "x"}, {"name": "b", "imagee": "y"}]);
    let e = err(&berth_doc(list, json!([])));
    let HeatError::Config(ParseErrors(errors)) = &e else {
        panic!("{e:?}")
    };
    assert!(
        errors.iter().any(|e| e.field.starts_with("config[1]")),
        "{e}"
    );
    let one = json!({"name": "a", "image": "x", "privileged": "yes"});
    let e = err(&berth_doc(one, json!([])));
    assert!(e.to_string().contains("config.privileged"), "{e}");
    // In a YAML string, positions point into the string.
    let yaml = Value::String("name: a\nimage: x\nprivileged: maybe\n".into());
    let HeatError::Config(ParseErrors(errors)) = err(&berth_doc(yaml, json!([]))) else {
        panic!()
    };
    assert_eq!(errors[0].field, "config.privileged");
    assert_eq!(errors[0].line, 3);
}

#[test]
fn config_shapes_refused() {
    for (config, needle) in [
        (json!(42), "config: expected a berth spec"),
        (json!(null), "config: expected a berth spec"),
        (json!([]), "config: an empty list"),
        (json!(""), "config: an empty string"),
        (
            json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]),
            "config[1].name: duplicate service name",
        ),
    ] {
        let e = err(&berth_doc(config, json!([])));
        assert!(e.to_string().contains(needle), "{e} / {needle}");
    }
}

#[test]
fn env_collisions_are_errors() {
    let e = err(&berth_doc(
        json!({"name": "a", "image": "x"}),
        json!([{"name": "a-b", "value": "1"}, {"name": "a_b", "value": "2"}]),
    ));
    assert_eq!(e.path(), "inputs[1].name");
    assert!(e.to_string().contains("BERTH_INPUT_A_B"), "{e}");
    let e = err(&berth_doc(
        json!({"name": "a", "image": "x", "env": {"BERTH_INPUT_X": "mine"}}),
        json!([{"name": "x", "value": "1"}]),
    ));
    assert_eq!(e.path(), "config.env.BERTH_INPUT_X", "{e}");
    let e = err(&berth_doc(
        json!([{"name": "a", "image": "x"}, {"name": "b", "image": "x", "env": {"BERTH_INPUT_X": "m"}}]),
        json!([{"name": "x", "value": "1"}]),
    ));
    assert_eq!(e.path(), "config[1].env.BERTH_INPUT_X", "{e}");
    assert!(e.to_string().contains("also set by input inputs[0]"), "{e}");
}

#[test]
fn document_field_errors_name_the_path() {
    let cases = [
        (json!([]), "document: expected a deployment document"),
        (
            json!({"group": 3}),
            "group: expected a string, got a number",
        ),
        (
            json!({"inputs": {}}),
            "inputs: expected a list of inputs, got a map",
        ),
        (json!({"inputs": [{"value": 1}]}), "inputs[0].name: missing"),
        (
            json!({"inputs": [{"name": "a"}]}),
            "inputs[0].value: missing",
        ),
        (
            json!({"inputs": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}),
            "inputs[1].name: input name \"a\" is also used by inputs[0]",
        ),
        (
            json!({"outputs": [{"name": "o", "error_output": "yes"}]}),
            "outputs[0].error_output: expected true or false",
        ),
        (json!({"options": []}), "options: expected a map or null"),
        (
            json!({"group": "berth", "config": {"name": "a", "image": "x"}}),
            "id: missing",
        ),
        (
            json!({"id": "x", "group": "berth", "config": {"name": "a", "image": "x"},
                   "inputs": [{"name": "deploy_action", "value": 1}]}),
            "inputs[0].value: expected a string (deploy_* inputs are strings), got a number",
        ),
    ];
    for (doc, needle) in cases {
        let e = err(&doc);
        assert!(e.to_string().contains(needle), "{e}\n  wanted: {needle}");
    }
}

#[test]
fn foreign_groups_are_not_ours_and_unknown_keys_pass() {
    let d = parse_document(&json!({"id": "1", "group": "script", "config": "#!/bin/sh",
        "some_future_key": true, "inputs": [{"name": "x", "value": 1, "replace_on_change": true}]}))
    .unwrap();
    assert!(!d.is_berth());
    let Classified::NotOurs(n) = d.classify().unwrap() else {
        panic!()
    };
    assert_eq!(n.group, "script");
    let d = parse_document(&json!({"inputs": []})).unwrap();
    assert_eq!(d.group, UNGROUPED);
}

#[test]
fn component_with_berth_tool() {
    let doc = json!({"id": "c1", "group": "component",
    "inputs": [{"name": "deploy_action", "value": "UPDATE"}],
    "config": {"configs": [
        {"actions": ["CREATE"], "tool": "script", "config": "x"},
        {"actions": ["UPDATE"], "tool": "berth", "config": {"name": "a", "image": "x"}},
    ]}});
    assert!(berth(&doc).services[0].name == "a");
    let doc = json!({"id": "c1", "group": "component",
        "inputs": [{"name": "deploy_action", "value": "DELETE"}],
        "config": {"configs": [{"actions": ["UPDATE"], "tool": "berth", "config": {}}]}});
    assert!(matches!(
        parse_document(&doc).unwrap().classify().unwrap(),
        Classified::NotOurs(_)
    ));
}

#[test]
fn metadata_shapes() {
    let ok = parse_metadata(&json!({"deployments": [{"group": "x"}, 5], "other": 1})).unwrap();
    assert!(ok[0].is_ok());
    assert_eq!(ok[1].as_ref().unwrap_err().path(), "deployments[1]");
    let e = parse_metadata(&json!({"deployments": {"not": "a list"}})).unwrap_err();
    assert!(
        e.to_string().starts_with("deployments: expected a list"),
        "{e}"
    );
    assert!(parse_metadata(&json!({})).is_err());
    assert!(parse_metadata(&json!([])).is_err());
    let entry = parse_metadata(&json!({"deployments": [{"inputs": [{"name": 1, "value": 2}]}]}))
        .unwrap()
        .pop()
        .unwrap()
        .unwrap_err();
    assert_eq!(entry.path(), "deployments[0].inputs[0].name");
}

fn inputs(pairs: &[(&str, &str)]) -> DeployInputs {
    let list: Vec<Value> = pairs
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let parsed = parse_inputs(Some(&Value::Array(list)), "inputs").unwrap();
    DeployInputs::from_inputs(&parsed, "inputs").unwrap()
}

#[test]
fn transports() {
    use SignalTransport::*;
    let t = |p: &[(&str, &str)]| inputs(p).transport().unwrap();
    assert_eq!(t(&[]), NoSignal);
    assert_eq!(t(&[("deploy_signal_id", "http://h/x?sig=1")]), CfnSignal);
    assert_eq!(
        t(&[
            ("deploy_signal_id", "http://h/x"),
            ("deploy_signal_verb", "PUT")
        ]),
        TempUrlSignal
    );
    assert_eq!(t(&[("deploy_auth_url", "http://k/v3")]), HeatSignal);
    assert_eq!(
        t(&[("deploy_queue_id", "q"), ("deploy_auth_url", "a")]),
        ZaqarSignal
    );
    assert_eq!(
        t(&[
            ("deploy_signal_transport", "NO_SIGNAL"),
            ("deploy_signal_id", "u")
        ]),
        NoSignal
    );
    let e = inputs(&[("deploy_signal_transport", "foo")])
        .transport()
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("inputs[0].value: unknown signal transport \"foo\"")
    );
    let e = inputs(&[("deploy_signal_transport", "TEMP_URL_SIGNAL")])
        .signal_plan()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("TEMP_URL_SIGNAL needs a non-empty `deploy_signal_id`"),
        "{e}"
    );
    let e = inputs(&[("deploy_signal_id", "u"), ("deploy_signal_verb", "GET")])
        .signal_plan()
        .unwrap_err();
    assert_eq!(e.path(), "inputs[1].value");
}

#[test]
fn url_plan_and_redaction() {
    let url = "http://192.0.2.1/v1/AUTH_a/b/c?temp_url_sig=abc&temp_url_expires=1";
    let plan = inputs(&[
        ("deploy_signal_transport", "TEMP_URL_SIGNAL"),
        ("deploy_signal_id", url),
    ])
    .signal_plan()
    .unwrap();
    let SignalPlan::Url(u) = &plan else { panic!() };
    assert_eq!(u.method, HttpMethod::Put);
    assert_eq!(u.url.expose(), url);
    let shown = format!("{plan:?} {}", plan.redacted());
    assert!(!shown.contains("abc"), "{shown}");
    assert!(
        shown.contains("http://192.0.2.1/v1/AUTH_a/b/c?<redacted>"),
        "{shown}"
    );
    let req = u.request(&json!({"deploy_status_code": 0}));
    assert_eq!(req.url.expose(), url);
    assert!(!format!("{req:?}").contains("abc"));
    // The outbox keeps the full URL.
    let stored = serde_json::to_value(&plan).unwrap();
    assert_eq!(stored["url"], url);
    assert_eq!(serde_json::from_value::<SignalPlan>(stored).unwrap(), plan);

    assert_eq!(redact_url("https://u:p@h:1/x"), "https://<redacted>@h:1/x");
    assert_eq!(redact_url("http://h/x"), "http://h/x");
}

#[test]
fn heat_signal_plan() {
    let plan = inputs(&[
        ("deploy_auth_url", "http://k:5000/v3/"),
        ("deploy_user_id", "u1"),
        ("deploy_password", "s3cret"),
        ("deploy_project_id", "p1"),
        ("deploy_stack_id", "st/1234"),
        ("deploy_resource_name", "my res"),
        ("deploy_region_name", "RegionOne"),
    ])
    .signal_plan()
    .unwrap();
    let SignalPlan::Heat(h) = &plan else { panic!() };
    let tok = h.token_request();
    assert_eq!(tok.url.expose(), "http://k:5000/v3/auth/tokens");
    let body: Value = serde_json::from_str(&tok.body).unwrap();
    assert_eq!(
        body["auth"]["identity"]["password"]["user"]["password"],
        "s3cret"
    );
    assert_eq!(body["auth"]["scope"]["project"]["id"], "p1");
    assert!(!format!("{tok:?} {plan:?} {}", plan.redacted()).contains("s3cret"));
    let catalog = json!({"token": {"catalog": [
    {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://k"}]},
    {"type": "orchestration", "endpoints": [
        {"interface": "internal", "region_id": "RegionOne", "url": "http://int"},
        {"interface": "public", "region_id": "RegionTwo", "url": "http://two"},
        {"interface": "public", "region_id": "RegionOne", "url": "http://h:8004/v1/p1/"},
    ]}]}});
    let ep = orchestration_endpoint(&catalog, h.region_name.as_deref()).unwrap();
    assert_eq!(ep, "http://h:8004/v1/p1/");
    let req = h.signal_request(&ep, &Secret::new("TOKEN"), &json!({}));
    assert_eq!(
        req.url.expose(),
        "http://h:8004/v1/p1/stacks/st/1234/resources/my%20res/signal"
    );
    assert_eq!(req.method, HttpMethod::Post);
    assert!(!format!("{req:?}").contains("TOKEN"));
    assert_eq!(
        orchestration_endpoint(&catalog, Some("Nowhere")),
        Err(KeystoneError::NoEndpoint {
            service_type: "orchestration".into(),
            region: Some("Nowhere".into())
        })
    );
    assert_eq!(
        orchestration_endpoint(&json!({}), None),
        Err(KeystoneError::NoCatalog)
    );
    let e = inputs(&[("deploy_auth_url", "http://k")])
        .signal_plan()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("HEAT_SIGNAL needs a non-empty `deploy_user_id`"),
        "{e}"
    );
}

#[test]
fn zaqar_is_unsupported_not_dropped() {
    let plan = inputs(&[
        ("deploy_signal_transport", "ZAQAR_SIGNAL"),
        ("deploy_queue_id", "q"),
    ])
    .signal_plan()
    .unwrap();
    assert!(matches!(
        plan,
        SignalPlan::Unsupported {
            transport: SignalTransport::ZaqarSignal,
            ..
        }
    ));
}

fn outcome(service: &str, code: i64, out: &str, outputs: &[(&str, &str)]) -> ServiceOutcome {
    ServiceOutcome {
        service: service.into(),
        status_code: code,
        stdout: out.into(),
        stderr: String::new(),
        outputs: outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn decl(name: &str, error_output: bool) -> HeatOutput {
    HeatOutput {
        name: name.into(),
        error_output,
        output_type: None,
        description: None,
    }
}

#[test]
fn signal_composition() {
    let declared = [decl("url", false), decl("err", true), decl("absent", false)];
    let ok = compose_signal(
        "d-1",
        &declared,
        &[
            outcome("db", 0, "one\ntwo\n", &[("url", "first"), ("err", "")]),
            outcome("web", 0, "three", &[("url", "second"), ("extra", "x")]),
        ],
    );
    assert_eq!(
        ok.body,
        json!({"deploy_stdout": "[db] one\n[db] two\n[web] three\n", "deploy_stderr": "",
               "deploy_status_code": 0, "url": "first"})
    );
    assert!(!ok.failed);
    assert!(ok.idempotency_key.starts_with("d-1:"));
    assert_eq!(ok.idempotency_key.len(), "d-1:".len() + 32);
    // Same outcome, same key.
    let again = compose_signal(
        "d-1",
        &declared,
        &[
            outcome("db", 0, "one\ntwo\n", &[("url", "first"), ("err", "")]),
            outcome("web", 0, "three", &[("url", "second"), ("extra", "x")]),
        ],
    );
    assert_eq!(again.idempotency_key, ok.idempotency_key);

    let failed = compose_signal(
        "d-1",
        &declared,
        &[
            outcome("a", 0, "", &[]),
            outcome("b", 3, "", &[]),
            outcome("c", 7, "", &[]),
        ],
    );
    assert_eq!(failed.body["deploy_status_code"], 3);
    assert!(failed.failed);
    assert_ne!(failed.idempotency_key, ok.idempotency_key);

    let err_out = compose_signal("d", &declared, &[outcome("a", 0, "", &[("err", "boom")])]);
    assert!(err_out.failed);
    assert_eq!(err_out.body["err"], "boom");
    assert!(err_out.status_reason.contains("err : boom"));
}

#[test]
fn signal_is_trimmed_to_fit() {
    let big = "x".repeat(200) + "\n";
    let out = big.repeat(8000); // 1.6 MB
    let s = compose_signal(
        "d",
        &[],
        &[ServiceOutcome {
            service: "a".into(),
            status_code: 0,
            stdout: out.clone(),
            stderr: out,
            outputs: Default::default(),
        }],
    );
    let len = s.body.to_string().len();
    assert!(len <= MAX_SIGNAL_BYTES, "{len}");
    let stdout = s.body["deploy_stdout"].as_str().unwrap();
    assert!(stdout.starts_with("[berth: earlier output trimmed]\n[a] xxx"));
    assert!(stdout.len() > 400_000);
}

#[test]
fn backoff_and_refusals() {
    assert_eq!(signal_backoff(1, 0.0), Duration::from_secs(1));
    assert_eq!(signal_backoff(2, 0.0), Duration::from_secs(2));
    assert_eq!(signal_backoff(7, 0.0), Duration::from_secs(60));
    assert_eq!(signal_backoff(1000, 0.0), Duration::from_secs(60));
    assert_eq!(signal_backoff(7, 1.0), Duration::from_secs(30));
    assert_eq!(signal_backoff(0, 1.0), Duration::from_millis(500));
    assert_eq!(signal_backoff(3, 9.0), signal_backoff(3, 1.0));
    assert!(is_permanent_refusal(404));
    assert!(is_permanent_refusal(400));
    assert!(!is_permanent_refusal(408));
    assert!(!is_permanent_refusal(429));
    assert!(!is_permanent_refusal(500));
    assert!(!is_permanent_refusal(200));
}

#[test]
fn redacted_document_view() {
    let d = parse_document(&json!({"id": "1", "group": "script",
        "inputs": [{"name": "deploy_password", "value": "pw"},
                   {"name": "deploy_signal_id", "value": "http://h/s?Signature=abc"},
                   {"name": "plain", "value": "v"}],
        "config": "echo secret-config"}))
    .unwrap();
    let v = d.redacted().to_string();
    assert!(
        !v.contains("pw\"") && !v.contains("abc") && !v.contains("secret-config"),
        "{v}"
    );
    assert!(
        v.contains("http://h/s?<redacted>") && v.contains("\"v\""),
        "{v}"
    );
}

#[test]
fn document_hash_ignores_key_order() {
    let a: Value = serde_json::from_str(r#"{"id": "1", "inputs": [], "group": "berth"}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"group": "berth", "id": "1", "inputs": []}"#).unwrap();
    assert_eq!(document_hash(&a), document_hash(&b));
    assert_ne!(document_hash(&a), document_hash(&json!({"id": "1"})));
    assert!(document_hash(&a).starts_with("sha256:"));
}

#[test]
fn secret_input_names_by_the_wider_rule() {
    for name in [
        "db_pass",
        "DB_PASSWORD",
        "admin_token",
        "ssh_private_key",
        "dbPass",
        "DBPASS",
        "mysql_root_pw",
        "passphrase",
        "api_key",
        "apikey",
        "sshKey",
        "authorized_keys",
        "auth",
        "auth_header",
        "authkey",
        "tls_cert",
        "client-cert",
        "url.sig",
        "request_signature",
        "RabbitCookie",
        "oauth_credentials",
        "client_secret",
        "database_dsn",
        "deploy_password",
        "deploy_signal_id",
    ] {
        assert!(is_secret_input_name(name), "{name} is secret");
    }
    for name in [
        "greeting",
        "db_host",
        "port",
        "keystone_url",
        "keypair_name",
        "author",
        "signal_count",
        "design",
        "concert_hall",
        "deploy_auth_url",
        "deploy_signal_transport",
        "deploy_signal_verb",
        "deploy_username",
        "deploy_project_id",
        "replicas",
    ] {
        assert!(!is_secret_input_name(name), "{name} is not secret");
    }
}

#[test]
fn an_input_marked_hidden_or_secret_is_secret_whatever_its_name() {
    let doc = berth_doc(
        json!({"name": "web", "image": "nginx:1"}),
        json!([
            {"name": "greeting", "value": "hello"},
            {"name": "motd", "value": "sesame-1", "hidden": true},
            {"name": "banner", "value": "sesame-2", "secret": true},
            {"name": "plain", "value": "shown", "hidden": false, "secret": null},
            {"name": "db_pass", "type": "String", "value": "sesame-3"},
        ]),
    );
    let parsed = parse_document(&doc).unwrap();
    let b = berth(&doc);
    let env = &b.services[0].env;
    for (var, secret, value) in [
        ("BERTH_INPUT_GREETING", false, "hello"),
        ("BERTH_INPUT_MOTD", true, "sesame-1"),
        ("BERTH_INPUT_BANNER", true, "sesame-2"),
        ("BERTH_INPUT_PLAIN", false, "shown"),
        ("BERTH_INPUT_DB_PASS", true, "sesame-3"),
    ] {
        // The container still gets the value, marked secret.
        assert_eq!(env[var].value, value, "{var}");
        assert_eq!(env[var].secret, secret, "{var}");
    }
    // No view shows them.
    let views = format!(
        "{} {:?} {:?} {}",
        parsed.redacted(),
        parsed,
        b,
        serde_json::to_string(&b.services[0].redacted()).unwrap()
    );
    for v in ["sesame-1", "sesame-2", "sesame-3"] {
        assert!(!views.contains(v), "{v} leaked: {views}");
    }
    assert!(
        views.contains("hello") && views.contains("shown"),
        "{views}"
    );

    let bad = berth_doc(
        json!({"name": "web", "image": "nginx:1"}),
        json!([{"name": "x", "value": "y", "hidden": "yes"}]),
    );
    let e = parse_document(&bad).unwrap_err();
    assert_eq!(e.path(), "inputs[0].hidden", "{e}");
    assert!(e.to_string().contains("true or false"), "{e}");
}
