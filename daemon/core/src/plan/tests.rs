use super::*;
use proptest::prelude::*;

fn svc(name: &str, hash: &str) -> DesiredService {
    DesiredService {
        name: name.into(),
        container_name: format!("b-{name}"),
        spec_hash: hash.into(),
        state: DesiredState::Running,
        kind: Kind::Service,
        restart: RestartPolicy::Always,
        held: false,
        task_done: false,
        config_identity: None,
        blocked: None,
    }
}

fn ctr(
    id: &str,
    name: &str,
    service: &str,
    hash: &str,
    state: ContainerState,
) -> ObservedContainer {
    ObservedContainer {
        id: id.into(),
        name: name.into(),
        service: service.into(),
        spec_hash: Some(hash.into()),
        generation: None,
        config_hash: None,
        state,
        exit_code: None,
        health: None,
        restart_count: 0,
        started_at: None,
    }
}

fn desired(services: Vec<DesiredService>) -> Desired {
    Desired {
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        untouchable: Default::default(),
    }
}

use ContainerState::*;

#[test]
fn table() {
    struct Case {
        name: &'static str,
        desired: Desired,
        observed: Vec<ObservedContainer>,
        want: Vec<&'static str>,
    }
    let stopped = |mut s: DesiredService| {
        s.state = DesiredState::Stopped;
        s
    };
    let held = |mut s: DesiredService| {
        s.held = true;
        s
    };
    let restart = |mut s: DesiredService, r| {
        s.restart = r;
        s
    };
    let task_done = |mut s: DesiredService| {
        s.kind = Kind::Task;
        s.restart = RestartPolicy::Never;
        s.task_done = true;
        s
    };
    let identity = |mut s: DesiredService, id: &str| {
        s.config_identity = Some(id.to_string());
        s
    };
    let blocked = |mut s: DesiredService, stop: bool| {
        s.blocked = Some(Blocked {
            units: vec!["db.service".into()],
            stop,
        });
        s
    };
    let labelled = |mut c: ObservedContainer, label: &str| {
        c.config_hash = Some(label.to_string());
        c
    };
    let cases = vec![
        Case {
            name: "new service is created",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![],
            want: vec!["create web: no container"],
        },
        Case {
            name: "converged service: nothing",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![],
        },
        Case {
            name: "restarting (crash loop) is the engine's business",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Restarting)],
            want: vec![],
        },
        Case {
            name: "changed spec replaces",
            desired: desired(vec![svc("web", "h2")]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec!["replace web: spec changed (h1 -> h2)"],
        },
        Case {
            name: "recreate config changed: the container is replaced",
            desired: desired(vec![identity(svc("web", "h1"), "sha256:c2")]),
            observed: vec![labelled(
                ctr("c1", "b-web", "web", "h1", Running),
                "sha256:c1",
            )],
            want: vec!["replace web: config changed (c1 -> c2)"],
        },
        Case {
            name: "recreate config unchanged: nothing",
            desired: desired(vec![identity(svc("web", "h1"), "sha256:c1")]),
            observed: vec![labelled(
                ctr("c1", "b-web", "web", "h1", Running),
                "sha256:c1",
            )],
            want: vec![],
        },
        Case {
            name: "a config label is not compared without recreate config",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![labelled(
                ctr("c1", "b-web", "web", "h1", Running),
                "sha256:c1",
            )],
            want: vec![],
        },
        Case {
            name: "stopped behind our back with restart always is started",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Exited)],
            want: vec!["start web: container is Exited, should run"],
        },
        Case {
            name: "exited with restart never is left alone",
            desired: desired(vec![restart(svc("web", "h1"), RestartPolicy::Never)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Exited)],
            want: vec![],
        },
        Case {
            name: "desired stopped stops",
            desired: desired(vec![stopped(svc("web", "h1"))]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec!["stop web: service is set to state: stopped"],
        },
        Case {
            name: "desired stopped, missing: created not started",
            desired: desired(vec![stopped(svc("web", "h1"))]),
            observed: vec![],
            want: vec!["create web: no container"],
        },
        Case {
            name: "held service is left alone",
            desired: desired(vec![held(svc("web", "h2"))]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Exited)],
            want: vec![],
        },
        Case {
            name: "undesired container is removed",
            desired: desired(vec![]),
            observed: vec![ctr("c1", "b-old", "old", "h1", Running)],
            want: vec!["remove old: service is not desired any more"],
        },
        Case {
            name: "interrupted swap: new one kept and renamed, old removed",
            desired: desired(vec![svc("web", "h2")]),
            observed: vec![
                ctr("c1", "b-web-old", "web", "h1", Exited),
                ctr("c2", "b-web-new", "web", "h2", Created),
            ],
            want: vec![
                "remove web: spec changed (h1 -> h2)",
                "rename web: left by an interrupted swap",
                "start web: container is Created, should run",
            ],
        },
        Case {
            name: "duplicates with the same spec: keep the canonical one",
            desired: desired(vec![svc("web", "h1")]),
            observed: vec![
                ctr("c1", "b-web", "web", "h1", Running),
                ctr("c2", "b-web-x", "web", "h1", Running),
            ],
            want: vec!["remove web: duplicate of the current container"],
        },
        Case {
            name: "a finished task is never re-run, even when pruned",
            desired: desired(vec![task_done(svc("job", "h1"))]),
            observed: vec![],
            want: vec![],
        },
        Case {
            name: "a finished task's exited container stays",
            desired: desired(vec![task_done(svc("job", "h1"))]),
            observed: vec![ctr("c1", "b-job", "job", "h1", Exited)],
            want: vec![],
        },
        Case {
            name: "waiting for host units: nothing is created",
            desired: desired(vec![blocked(svc("web", "h1"), false)]),
            observed: vec![],
            want: vec![],
        },
        Case {
            name: "waiting for an after unit: the old container keeps running",
            desired: desired(vec![blocked(svc("web", "h2"), false)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![],
        },
        Case {
            name: "a required unit is down: the old container is stopped, nothing created",
            desired: desired(vec![blocked(svc("web", "h2"), true)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![
                "stop web: required host unit db.service not active (requires_units); started again once active",
            ],
        },
        Case {
            name: "a required unit is down: the running container is stopped",
            desired: desired(vec![blocked(svc("web", "h1"), true)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![
                "stop web: required host unit db.service not active (requires_units); started again once active",
            ],
        },
        Case {
            name: "an after unit is down: a running container is left alone",
            desired: desired(vec![blocked(svc("web", "h1"), false)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![],
        },
        Case {
            name: "blocked: a stopped container is not started (restart: always)",
            desired: desired(vec![blocked(svc("web", "h1"), true)]),
            observed: vec![ctr("c1", "b-web", "web", "h1", Exited)],
            want: vec![],
        },
        Case {
            name: "blocked: a created container is not started, duplicates still go",
            desired: desired(vec![blocked(svc("web", "h1"), false)]),
            observed: vec![
                ctr("c1", "b-web", "web", "h1", Created),
                ctr("c2", "b-web-x", "web", "h0", Exited),
            ],
            want: vec!["remove web: spec changed (h0 -> h1)"],
        },
        Case {
            name: "blocked but desired stopped: created as usual",
            desired: desired(vec![stopped(blocked(svc("web", "h1"), true))]),
            observed: vec![],
            want: vec!["create web: no container"],
        },
        Case {
            name: "unreadable record: its containers are untouched",
            desired: Desired {
                services: Default::default(),
                untouchable: ["web".to_string()].into(),
            },
            observed: vec![ctr("c1", "b-web", "web", "h1", Running)],
            want: vec![],
        },
    ];
    for case in cases {
        let got: Vec<String> = plan(
            &case.desired,
            &Observed {
                containers: case.observed,
            },
        )
        .iter()
        .map(|a| format!("{} {}: {}", a.verb(), a.service(), a.reason()))
        .collect();
        assert_eq!(got, case.want, "case: {}", case.name);
    }
}

/// A pure model of the engine for the property tests: applies an action the
/// way the executor does.
fn apply(
    action: &Action,
    desired: &Desired,
    containers: &mut Vec<ObservedContainer>,
    next_id: &mut u64,
) {
    let find = |cs: &mut Vec<ObservedContainer>, id: &str| cs.iter().position(|c| c.id == id);
    match action {
        Action::Deploy {
            service,
            replace,
            start,
            ..
        } => {
            let svc = &desired.services[service];
            *next_id += 1;
            for old in replace {
                if let Some(i) = find(containers, &old.id) {
                    containers.remove(i);
                }
            }
            containers.push(ObservedContainer {
                id: format!("n{next_id}"),
                name: svc.container_name.clone(),
                service: service.clone(),
                spec_hash: Some(svc.spec_hash.clone()),
                generation: None,
                config_hash: svc.config_identity.clone(),
                state: if *start { Running } else { Created },
                exit_code: None,
                health: None,
                restart_count: 0,
                started_at: None,
            });
        }
        Action::Start { container, .. } => {
            if let Some(i) = find(containers, &container.id) {
                containers[i].state = Running;
            }
        }
        Action::Stop { container, .. } => {
            if let Some(i) = find(containers, &container.id) {
                containers[i].state = Exited;
            }
        }
        Action::Rename { container, to, .. } => {
            if let Some(i) = find(containers, &container.id) {
                containers[i].name = to.clone();
            }
        }
        Action::Remove { container, .. } => {
            if let Some(i) = find(containers, &container.id) {
                containers.remove(i);
            }
        }
    }
}

fn arb_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        Just(Created),
        Just(Running),
        Just(Restarting),
        Just(Exited),
        Just(Dead),
        Just(Paused)
    ]
}

prop_compose! {
    fn arb_world()(
        specs in proptest::collection::btree_map(0u8..6, ((0u8..3, any::<bool>(), any::<bool>(), 0u8..3, any::<bool>(), 0u8..3), 0u8..3), 0..6),
        containers in proptest::collection::vec((0u8..8, 0u8..3, arb_state(), any::<bool>(), 0u8..3), 0..10),
    ) -> (Desired, Vec<ObservedContainer>) {
        let mut services = BTreeMap::new();
        for (n, ((h, stopped, is_task, restart, held, identity), blocked)) in specs {
            let name = format!("s{n}");
            let restart = [RestartPolicy::Always, RestartPolicy::OnFailure, RestartPolicy::Never][restart as usize];
            services.insert(name.clone(), DesiredService {
                container_name: format!("b-{name}"),
                name,
                spec_hash: format!("h{h}"),
                state: if stopped { DesiredState::Stopped } else { DesiredState::Running },
                kind: if is_task { Kind::Task } else { Kind::Service },
                restart,
                held,
                task_done: false,
                config_identity: (identity > 0).then(|| format!("c{identity}")),
                blocked: (blocked > 0).then(|| Blocked {
                    units: vec!["u.service".into()],
                    stop: blocked > 1,
                }),
            });
        }
        let observed = containers
            .into_iter()
            .enumerate()
            .map(|(i, (s, h, state, canonical, label))| {
                let name = if canonical { format!("b-s{s}") } else { format!("b-s{s}-tmp{i}") };
                let mut c = ctr(&format!("c{i}"), &name, &format!("s{s}"), &format!("h{h}"), state);
                c.config_hash = (label > 0).then(|| format!("c{label}"));
                c
            })
            .collect();
        (Desired { services, untouchable: Default::default() }, observed)
    }
}

proptest! {
    /// plan → apply → plan yields nothing: one round converges.
    #[test]
    fn one_round_converges((desired, observed) in arb_world()) {
        let mut containers = observed;
        let mut next_id = 0;
        for a in plan(&desired, &Observed { containers: containers.clone() }) {
            apply(&a, &desired, &mut containers, &mut next_id);
        }
        let again = plan(&desired, &Observed { containers: containers.clone() });
        prop_assert!(again.is_empty(), "not converged: {:?}", again);
        // Every non-held service that should exist has exactly one container,
        // canonically named (one waiting for host units may have none yet).
        for svc in desired.services.values().filter(|s| !s.held) {
            let mine: Vec<_> = containers.iter().filter(|c| c.service == svc.name).collect();
            if svc.blocked.is_some() && svc.state == DesiredState::Running {
                prop_assert!(mine.iter().all(|c| !svc.matches(c) || c.name == svc.container_name));
                if svc.blocked.as_ref().is_some_and(|b| b.stop) {
                    prop_assert!(mine.iter().all(|c| !c.state.is_up()), "a required unit is down: nothing runs");
                }
                continue;
            }
            prop_assert_eq!(mine.len(), 1);
            prop_assert_eq!(&mine[0].name, &svc.container_name);
        }
    }

    /// A converged node is left alone: re-planning never restarts anything.
    #[test]
    fn converged_is_idempotent((desired, observed) in arb_world()) {
        let mut containers = observed;
        let mut next_id = 0;
        for a in plan(&desired, &Observed { containers: containers.clone() }) {
            apply(&a, &desired, &mut containers, &mut next_id);
        }
        for _ in 0..3 {
            let again = plan(&desired, &Observed { containers: containers.clone() });
            prop_assert!(again.is_empty(), "re-plan not empty: {:?}", again);
        }
    }

    /// Deterministic: the same inputs in another order give the same plan.
    #[test]
    fn deterministic((desired, observed) in arb_world()) {
        let mut reversed = observed.clone();
        reversed.reverse();
        prop_assert_eq!(
            plan(&desired, &Observed { containers: observed }),
            plan(&desired, &Observed { containers: reversed })
        );
    }
}

#[test]
fn task_gc_table() {
    use crate::plan::{GcCandidate, task_gc};
    use crate::record::{DeployAction, Deployment, Status};
    let rec = |status, action, updated_at_ms| Deployment {
        status,
        action,
        updated_at_ms,
        ..Default::default()
    };
    let done = rec(Status::Complete, DeployAction::Create, 1_000);
    let failed = rec(Status::Failed, DeployAction::Create, 1_000);
    let running = rec(Status::InProgress, DeployAction::Create, 1_000);
    let deleting = rec(Status::Complete, DeployAction::Delete, 1_000);
    let fresh = rec(Status::Complete, DeployAction::Create, 9_500);
    let observed = vec![
        ctr("c1", "b-t", "t", "h", Exited),
        ctr("c2", "b-u", "u", "h", Running),
        ctr("c3", "b-v", "v", "h", Dead),
    ];
    struct Case<'a> {
        name: &'static str,
        kind: Kind,
        current: &'a Deployment,
        held: bool,
        want: usize,
    }
    let cases = [
        Case {
            name: "a finished task's exited container goes",
            kind: Kind::Task,
            current: &done,
            held: false,
            want: 1,
        },
        Case {
            name: "a failed one too: its output is in the record",
            kind: Kind::Task,
            current: &failed,
            held: false,
            want: 1,
        },
        Case {
            name: "not while it runs",
            kind: Kind::Task,
            current: &running,
            held: false,
            want: 0,
        },
        Case {
            name: "not a delete's",
            kind: Kind::Task,
            current: &deleting,
            held: false,
            want: 0,
        },
        Case {
            name: "not before task_gc_after",
            kind: Kind::Task,
            current: &fresh,
            held: false,
            want: 0,
        },
        Case {
            name: "not a held service",
            kind: Kind::Task,
            current: &done,
            held: true,
            want: 0,
        },
        Case {
            name: "never a service's",
            kind: Kind::Service,
            current: &done,
            held: false,
            want: 0,
        },
    ];
    for case in cases {
        let got = task_gc(
            [GcCandidate {
                service: "t",
                kind: case.kind,
                current: case.current,
                held: case.held,
            }],
            &observed,
            10_000,
            5_000,
        );
        assert_eq!(got.len(), case.want, "{}: {got:?}", case.name);
        for a in &got {
            assert_eq!(a.service(), "t", "{}", case.name);
            assert_eq!(a.reason(), &Reason::TaskFinished, "{}", case.name);
        }
    }
    // Only exited or dead containers of that service go.
    let got = task_gc(
        ["u", "v"].map(|service| GcCandidate {
            service,
            kind: Kind::Task,
            current: &done,
            held: false,
        }),
        &observed,
        10_000,
        5_000,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].service(), "v");
}
