use super::*;
use crate::spec::{Dependency, Healthcheck};

fn spec(name: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        ..Default::default()
    }
}

fn task(name: &str, outputs: &[&str]) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        kind: Kind::Task,
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn needs(mut s: ServiceSpec, on: &str, condition: Condition) -> ServiceSpec {
    s.depends_on.push(Dependency {
        service: on.into(),
        condition,
    });
    s
}

fn from(mut s: ServiceSpec, input: &str, r: &str) -> ServiceSpec {
    let from = OutputRef::parse(r).expect("a ref");
    s.inputs.insert(input.into(), InputSource::From { from });
    s
}

fn record(spec: ServiceSpec, generation: u64, status: Status) -> Deployment {
    Deployment {
        id: Deployment::make_id(&spec.name, generation),
        service: spec.name.clone(),
        generation,
        spec,
        status,
        ..Default::default()
    }
}

fn with_output(mut d: Deployment, name: &str, value: &str) -> Deployment {
    d.outputs.declared.insert(name.into(), value.into());
    d
}

fn view(newest: &Deployment, running: bool, healthy: bool) -> DepView<'_> {
    DepView {
        newest,
        running,
        healthy,
    }
}

fn ready(r: Readiness) -> BTreeMap<String, String> {
    match r {
        Readiness::Ready(inputs) => inputs,
        Readiness::Waiting(why) => panic!("waits: {why}"),
    }
}

fn waits(r: Readiness) -> String {
    match r {
        Readiness::Waiting(why) => why,
        Readiness::Ready(i) => panic!("ready with {i:?}"),
    }
}

#[test]
fn each_condition_holds_exactly_when_the_issue_says() {
    let web = spec("web");
    let cases = [
        // (condition, status, running, healthy, holds)
        (Condition::Started, Status::Complete, true, false, true),
        (Condition::Started, Status::Complete, false, false, false),
        (Condition::Started, Status::InProgress, true, false, false),
        (Condition::Started, Status::RolledBack, true, false, true),
        (Condition::Healthy, Status::Complete, true, true, true),
        (Condition::Healthy, Status::Complete, true, false, false),
        (Condition::Completed, Status::Complete, true, true, true),
        (Condition::Completed, Status::Failed, true, true, false),
        (Condition::Completed, Status::RolledBack, true, true, false),
        (Condition::Completed, Status::WaitingHook, true, true, false),
        (Condition::Ended, Status::Complete, false, false, true),
        (Condition::Ended, Status::Failed, false, false, true),
        (Condition::Ended, Status::RolledBack, false, false, true),
        (Condition::Ended, Status::Pending, false, false, false),
    ];
    for (condition, status, running, healthy, holds) in cases {
        let dependent = needs(spec("api"), "web", condition);
        let newest = record(web.clone(), 3, status);
        let r = readiness(&dependent, |n| {
            (n == "web").then(|| view(&newest, running, healthy))
        });
        assert_eq!(
            matches!(r, Readiness::Ready(_)),
            holds,
            "{condition} with {status} running={running} healthy={healthy}: {r:?}"
        );
        if let Readiness::Waiting(why) = r {
            assert!(
                why.contains("web") && why.contains(condition.as_str()),
                "{why}"
            );
        }
    }
}

#[test]
fn a_started_task_is_one_that_completed() {
    let dependent = needs(spec("api"), "init", Condition::Started);
    let done = record(task("init", &[]), 1, Status::Complete);
    assert!(matches!(
        readiness(&dependent, |_| Some(view(&done, false, false))),
        Readiness::Ready(_)
    ));
    let failed = record(task("init", &[]), 1, Status::Failed);
    let why = waits(readiness(&dependent, |_| Some(view(&failed, false, false))));
    assert!(why.contains("FAILED"), "{why}");
}

#[test]
fn a_missing_or_deleted_dependency_waits_and_says_so() {
    let dependent = needs(spec("api"), "db", Condition::Started);
    let why = waits(readiness(&dependent, |_| None));
    assert!(
        why.contains("db") && why.contains("not on this node"),
        "{why}"
    );
    let mut deleting = record(spec("db"), 4, Status::Complete);
    deleting.action = DeployAction::Delete;
    let why = waits(readiness(&dependent, |_| Some(view(&deleting, true, true))));
    assert!(why.contains("deleted"), "{why}");
}

#[test]
fn a_failed_dependency_is_named_with_its_reason() {
    let dependent = needs(spec("api"), "migrate", Condition::Completed);
    let mut failed = record(task("migrate", &[]), 7, Status::Failed);
    failed.status_reason = "exited with 3".into();
    let why = waits(readiness(&dependent, |_| Some(view(&failed, false, false))));
    assert!(
        why.contains("migrate-7 is FAILED (exited with 3)") && why.contains("apply again"),
        "{why}"
    );
}

#[test]
fn inputs_resolve_plain_values_and_outputs_minus_one_newline() {
    let mut api = from(spec("api"), "schema_version", "db-migrate.outputs.version");
    api.inputs
        .insert("release".into(), InputSource::Value("2026.2".into()));
    let migrate = with_output(
        record(task("db-migrate", &["version"]), 2, Status::Complete),
        "version",
        "42\n\n",
    );
    let inputs = ready(readiness(&api, |_| Some(view(&migrate, false, false))));
    assert_eq!(inputs["schema_version"], "42\n", "only one newline goes");
    assert_eq!(inputs["release"], "2026.2");
}

#[test]
fn a_from_input_waits_for_its_task_to_complete() {
    let api = from(spec("api"), "v", "db-migrate.outputs.version");
    assert_eq!(
        dependencies(&api),
        [("db-migrate".to_string(), Condition::Completed)]
    );
    let running = record(task("db-migrate", &["version"]), 2, Status::InProgress);
    let why = waits(readiness(&api, |_| Some(view(&running, true, false))));
    assert!(
        why.contains("db-migrate") && why.contains("IN_PROGRESS"),
        "{why}"
    );
    // `ended` written explicitly still needs a COMPLETE run for the value.
    let api = needs(api, "db-migrate", Condition::Ended);
    assert_eq!(dependencies(&api).len(), 1);
    let failed = record(task("db-migrate", &["version"]), 2, Status::Failed);
    let why = waits(readiness(&api, |_| Some(view(&failed, false, false))));
    assert!(why.starts_with("inputs.v: "), "{why}");
}

#[test]
fn an_output_not_written_or_not_read_whole_is_not_an_input() {
    let api = from(spec("api"), "v", "db-migrate.outputs.version");
    let none = record(task("db-migrate", &["version"]), 2, Status::Complete);
    let why = waits(readiness(&api, |_| Some(view(&none, false, false))));
    assert!(
        why.contains("without writing the output \"version\""),
        "{why}"
    );
    for bad in [
        "[berth: output version refused: a symlink]".to_string(),
        "[berth: output version not read: cannot open the outputs dir /x: gone]".to_string(),
        format!(
            "{}\n[berth: output version truncated at 1 MiB]",
            "x".repeat(10)
        ),
    ] {
        let d = with_output(none.clone(), "version", &bad);
        let why = waits(readiness(&api, |_| Some(view(&d, false, false))));
        assert!(why.contains("db-migrate-2"), "{bad}: {why}");
    }
}

#[test]
fn stale_inputs_name_each_moved_output_once_a_dependent_ended() {
    let api = from(spec("api"), "v", "db-migrate.outputs.version");
    let mut dependent = record(api, 5, Status::Complete);
    dependent.inputs.insert("v".into(), "41".into());
    let migrate = with_output(
        record(task("db-migrate", &["version"]), 3, Status::Complete),
        "version",
        "42\n",
    );
    let lookup = |_: &str| Some(&migrate);
    assert_eq!(
        stale_inputs(&dependent, lookup),
        [("v".to_string(), "42".to_string())]
    );
    dependent.inputs.insert("v".into(), "42".into());
    assert!(stale_inputs(&dependent, lookup).is_empty(), "unchanged");
    dependent.inputs.insert("v".into(), "41".into());
    dependent.waiting = true;
    assert!(stale_inputs(&dependent, lookup).is_empty(), "still waiting");
    dependent.waiting = false;
    dependent.status = Status::InProgress;
    assert!(stale_inputs(&dependent, lookup).is_empty(), "in flight");
    dependent.status = Status::Failed;
    dependent.inputs.clear();
    assert!(
        stale_inputs(&dependent, lookup).is_empty(),
        "a deployment that never resolved its inputs is not re-run for them"
    );
    dependent.status = Status::Complete;
    dependent.inputs.insert("v".into(), "41".into());
    dependent.action = DeployAction::Rollback;
    assert!(
        stale_inputs(&dependent, lookup).is_empty(),
        "a rollback keeps the inputs it restored"
    );
    dependent.action = DeployAction::Update;
    let running = record(task("db-migrate", &["version"]), 4, Status::InProgress);
    dependent.inputs.insert("v".into(), "41".into());
    assert!(
        stale_inputs(&dependent, |_| Some(&running)).is_empty(),
        "the source's new run has no value yet"
    );
}

/// The node's services as `check` takes them, by name.
fn on_node(specs: &[ServiceSpec]) -> BTreeMap<&str, &ServiceSpec> {
    specs.iter().map(|s| (s.name.as_str(), s)).collect()
}

fn upgrade() -> Vec<ServiceSpec> {
    let disable = task("api-disable", &[]);
    let migrate = needs(
        task("db-migrate", &["version"]),
        "api-disable",
        Condition::Completed,
    );
    let api = from(spec("api"), "schema_version", "db-migrate.outputs.version");
    let enable = needs(task("api-enable", &[]), "api", Condition::Ended);
    vec![enable, api, migrate, disable]
}

#[test]
fn check_orders_an_apply_dependencies_first() {
    let apply = upgrade();
    let order = check(&apply, &BTreeMap::new()).expect("valid");
    let names: Vec<&str> = order.iter().map(|&i| apply[i].name.as_str()).collect();
    assert_eq!(names, ["api-disable", "db-migrate", "api", "api-enable"]);
    // Independent services keep the order they were given in.
    let apply = vec![
        spec("b"),
        spec("a"),
        needs(spec("c"), "a", Condition::Started),
    ];
    assert_eq!(check(&apply, &BTreeMap::new()).expect("valid"), [0, 1, 2]);
}

#[test]
fn check_takes_dependencies_already_on_the_node() {
    let apply = vec![needs(spec("api"), "db", Condition::Healthy)];
    let mut db = spec("db");
    db.healthcheck = Some(Healthcheck {
        test: None,
        exec: vec!["/bin/true".into()],
        interval: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(2),
        retries: 3,
        start_period: None,
    });
    assert_eq!(check(&apply, &on_node(&[db])).expect("valid"), [0]);
}

#[test]
fn check_names_missing_services_outputs_and_healthchecks() {
    let node_specs = [spec("db"), spec("web"), task("migrate", &["version"])];
    let node = on_node(&node_specs);
    let apply = vec![
        needs(spec("a"), "nosuch", Condition::Started),
        needs(spec("b"), "db", Condition::Healthy),
        from(spec("c"), "v", "migrate.outputs.versoin"),
        from(spec("d"), "v", "web.outputs.version"),
        from(spec("e"), "v", "gone.outputs.version"),
    ];
    let problems = check(&apply, &node).expect_err("refused");
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems[0].starts_with("a: depends_on[0]: nosuch is neither"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].contains("b: depends_on[0].condition: healthy, but db has no healthcheck"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].contains("c: inputs.v.from: migrate declares no output \"versoin\""),
        "{}",
        problems[2]
    );
    assert!(
        problems[3].contains("d: inputs.v.from: web is a service"),
        "{}",
        problems[3]
    );
    assert!(
        problems[4].contains("e: inputs.v.from: gone is neither"),
        "{}",
        problems[4]
    );
}

#[test]
fn check_names_the_whole_cycle_once_even_through_the_node() {
    let apply = vec![
        needs(spec("a"), "b", Condition::Started),
        needs(spec("b"), "c", Condition::Started),
    ];
    let node_specs = [needs(spec("c"), "a", Condition::Started)];
    let node = on_node(&node_specs);
    let problems = check(&apply, &node).expect_err("a cycle");
    assert_eq!(
        problems,
        [
            "a dependency cycle: a → b → c → a; remove one of these depends_on, inputs or volumes_from"
        ]
    );
    // The apply's spec replaces the node's: this breaks the cycle.
    let mut apply = apply;
    apply.push(spec("c"));
    assert!(check(&apply, &node).is_ok());
    // An output feeding back is a cycle too.
    let apply = vec![
        from(task("x", &["o"]), "i", "y.outputs.o"),
        from(task("y", &["o"]), "i", "x.outputs.o"),
    ];
    let problems = check(&apply, &BTreeMap::new()).expect_err("a cycle");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("x → y → x"), "{problems:?}");
}

#[test]
fn dependency_order_puts_dependencies_first_and_cuts_a_cycle() {
    let specs = upgrade();
    let order = dependency_order(&specs.iter().collect::<Vec<_>>());
    let names: Vec<&str> = order.iter().map(|&i| specs[i].name.as_str()).collect();
    assert_eq!(names, ["api-disable", "db-migrate", "api", "api-enable"]);
    let cycle = [
        needs(spec("a"), "b", Condition::Started),
        needs(spec("b"), "a", Condition::Started),
        spec("c"),
    ];
    let mut order = dependency_order(&cycle.iter().collect::<Vec<_>>());
    order.sort();
    assert_eq!(order, [0, 1, 2], "each once, no hang");
}

#[test]
fn group_order_applies_a_group_after_those_it_depends_on() {
    let api = vec![from(spec("api"), "v", "migrate.outputs.version")];
    let empty: Vec<ServiceSpec> = Vec::new();
    let migrate = vec![task("migrate", &["version"]), spec("other")];
    let web = vec![spec("web")];
    let groups: Vec<&[ServiceSpec]> = vec![&api, &empty, &migrate, &web];
    assert_eq!(group_order(&groups), [2, 0, 3, 1]);
    let plain: Vec<&[ServiceSpec]> = vec![&web, &migrate];
    assert_eq!(group_order(&plain), [0, 1], "no dependencies: as given");
}

/// A service `volumes_from` names is a `started` dependency (unless
/// `depends_on` or an input names it already), checked, ordered and
/// waited for like one.
#[test]
fn volumes_from_is_a_started_dependency() {
    let mut app = needs(spec("app"), "db", Condition::Healthy);
    app.volumes_from = vec!["db:ro".into(), "logs".into()];
    assert_eq!(
        dependencies(&app),
        [
            ("db".to_string(), Condition::Healthy),
            ("logs".to_string(), Condition::Started)
        ]
    );
    let logs = record(spec("logs"), 1, Status::Complete);
    let waiting = waits(readiness(&app, |s| {
        (s == "logs").then(|| view(&logs, false, false))
    }));
    assert_eq!(waiting, "waiting for db (healthy): it is not on this node");
    let mut only_logs = spec("app");
    only_logs.volumes_from = vec!["logs".into()];
    let waiting = waits(readiness(&only_logs, |s| {
        (s == "logs").then(|| view(&logs, false, false))
    }));
    assert!(waiting.contains("logs to be started"), "{waiting}");
    ready(readiness(&only_logs, |s| {
        (s == "logs").then(|| view(&logs, true, false))
    }));

    // Ordered first in an apply; a service that exists nowhere is named
    // with the field.
    let apply = vec![only_logs.clone(), spec("logs")];
    assert_eq!(check(&apply, &BTreeMap::new()).expect("valid"), [1, 0]);
    let problems = check(&[only_logs], &BTreeMap::new()).expect_err("refused");
    assert_eq!(
        problems,
        [
            "app: volumes_from[0]: logs is neither in this apply nor on this node; \
          apply it first or with this one"
        ]
    );
}
