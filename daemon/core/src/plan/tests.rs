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
        aside_generation: None,
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
        restart_policy: None,
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
            set_aside,
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
            if let Some(a) = set_aside
                && let Some(i) = find(containers, &a.container.id)
            {
                let c = &mut containers[i];
                c.restart_policy = Some(RestartPolicy::Never);
                if c.state.is_up() || c.state == Paused {
                    c.state = Exited;
                }
                c.name = a.to.clone();
            }
            assert!(
                containers.iter().all(|c| c.name != svc.container_name),
                "the new container's name is taken"
            );
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
                restart_policy: Some(svc.restart),
            });
        }
        Action::SetRestart {
            container, policy, ..
        } => {
            if let Some(i) = find(containers, &container.id) {
                containers[i].restart_policy = Some(*policy);
            }
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
            // The engine refuses a name another container holds: the plan's
            // order must free it first.
            assert!(
                containers
                    .iter()
                    .all(|c| c.id == container.id || c.name != *to),
                "rename {} -> {to}: the name is taken",
                container.name
            );
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
        specs in proptest::collection::btree_map(0u8..6, (((0u8..3, any::<bool>(), any::<bool>(), 0u8..3, any::<bool>(), 0u8..3), 0u8..3), 0u8..3), 0..6),
        containers in proptest::collection::vec((0u8..8, 0u8..3, arb_state(), 0u8..4, 0u8..3, 0u8..4), 0..10),
    ) -> (Desired, Vec<ObservedContainer>) {
        let mut services = BTreeMap::new();
        for (n, (((h, stopped, is_task, restart, held, identity), blocked), aside)) in specs {
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
                // Generation 1 or 2 being judged; containers below may be
                // aside for either.
                aside_generation: (aside > 0).then_some(u64::from(aside)),
            });
        }
        let mut names = BTreeSet::new();
        let observed = containers
            .into_iter()
            .enumerate()
            .map(|(i, (s, h, state, naming, label, policy))| {
                let name = match naming {
                    0 => format!("b-s{s}"),
                    1 => format!("b-s{s}-tmp{i}"),
                    g => aside_name(&format!("b-s{s}"), u64::from(g) - 1),
                };
                // Names are unique in an engine.
                let name = if names.insert(name.clone()) { name } else { format!("b-s{s}-tmp{i}") };
                let mut c = ctr(&format!("c{i}"), &name, &format!("s{s}"), &format!("h{h}"), state);
                c.config_hash = (label > 0).then(|| format!("c{label}"));
                c.restart_policy = [None, Some(RestartPolicy::Always), Some(RestartPolicy::OnFailure), Some(RestartPolicy::Never)][policy as usize];
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
        let before = containers.clone();
        for a in plan(&desired, &Observed { containers: containers.clone() }) {
            apply(&a, &desired, &mut containers, &mut next_id);
        }
        let again = plan(&desired, &Observed { containers: containers.clone() });
        prop_assert!(again.is_empty(), "not converged: {:?}", again);
        // Every non-held service that should exist has exactly one container,
        // canonically named (one waiting for host units may have none yet),
        // and at most one more: the one set aside for the deployment being
        // judged, stopped, with restart policy `no`.
        for svc in desired.services.values().filter(|s| !s.held) {
            let aside = svc.aside_generation.map(|g| aside_name(&svc.container_name, g));
            let (set_aside, mine): (Vec<_>, Vec<_>) = containers
                .iter()
                .filter(|c| c.service == svc.name)
                .partition(|c| aside.as_ref() == Some(&c.name));
            prop_assert!(set_aside.len() <= 1);
            if svc.blocked.is_some() && svc.state == DesiredState::Running {
                // Nothing is created, started or swapped while waiting for units.
                prop_assert!(mine.iter().all(|c| !svc.matches(c) || c.name == svc.container_name));
                if svc.blocked.as_ref().is_some_and(|b| b.stop) {
                    prop_assert!(mine.iter().all(|c| !c.state.is_up()), "a required unit is down: nothing runs");
                }
                continue;
            }
            prop_assert!(
                containers.iter().filter(|c| c.service == svc.name && c.state.is_up()).count() <= 1,
                "two containers run"
            );
            for c in &set_aside {
                prop_assert!(!c.state.is_up() && c.state != Paused, "an aside container runs: {c:?}");
                prop_assert_eq!(c.restart_policy, Some(RestartPolicy::Never));
                prop_assert!(!svc.matches(c));
            }
            // A container already aside for this deployment is kept as it is.
            for old in before.iter().filter(|c| c.service == svc.name && aside.as_ref() == Some(&c.name) && !svc.matches(c)) {
                prop_assert!(set_aside.iter().any(|c| c.id == old.id), "the aside container {} was lost", old.id);
            }
            prop_assert_eq!(mine.len(), 1);
            prop_assert_eq!(&mine[0].name, &svc.container_name);
            prop_assert!(mine[0].restart_policy.is_none_or(|p| p == svc.restart));
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

/// What an action does, by container name: `verb name[ -> to]: reason`.
fn describe(a: &Action) -> String {
    match a {
        Action::Deploy {
            replace, set_aside, ..
        } => {
            let mut s = format!("{} {}", a.verb(), a.service());
            for r in replace {
                s.push_str(&format!(" -{}", r.name));
            }
            if let Some(aside) = set_aside {
                s.push_str(&format!(" aside {} -> {}", aside.container.name, aside.to));
            }
            format!("{s}: {}", a.reason())
        }
        Action::Rename { container, to, .. } => {
            format!("rename {} -> {to}: {}", container.name, a.reason())
        }
        Action::SetRestart {
            container, policy, ..
        } => format!(
            "restart policy {} {}: {}",
            policy.engine_name(),
            container.name,
            a.reason()
        ),
        Action::Start { container, .. }
        | Action::Stop { container, .. }
        | Action::Remove { container, .. } => {
            format!("{} {}: {}", a.verb(), container.name, a.reason())
        }
    }
}

/// Every state a swap can be interrupted in (berthd killed between two
/// engine calls), and what the next plan does from there: an update of
/// generation 5 from h1 to h2 with the old container set aside, and the
/// swap back to h1 after generation 5 failed. Each ends with exactly one
/// running container (the property tests check that for every state).
#[test]
fn interrupted_swaps() {
    let judged = |mut s: DesiredService| {
        s.aside_generation = Some(5);
        s
    };
    let policy = |mut c: ObservedContainer, p: RestartPolicy| {
        c.restart_policy = Some(p);
        c
    };
    use RestartPolicy::{Always, Never};
    let old = |name: &str, state, p| policy(ctr("c1", name, "web", "h1", state), p);
    let new = |name: &str, state| policy(ctr("c2", name, "web", "h2", state), Always);
    struct Case {
        name: &'static str,
        desired: DesiredService,
        observed: Vec<ObservedContainer>,
        want: Vec<&'static str>,
    }
    let update = || judged(svc("web", "h2"));
    let back = || svc("web", "h1");
    let cases = vec![
        Case {
            name: "an update sets the live container aside instead of removing it",
            desired: update(),
            observed: vec![old("b-web", Running, Always)],
            want: vec!["replace web aside b-web -> b-web.prev-g5: spec changed (h1 -> h2)"],
        },
        Case {
            name: "with nothing judged (a rollback record), the old one is replaced",
            desired: svc("web", "h2"),
            observed: vec![old("b-web", Running, Always)],
            want: vec!["replace web -b-web: spec changed (h1 -> h2)"],
        },
        Case {
            name: "killed after the create: the old one goes aside, the new one in",
            desired: update(),
            observed: vec![old("b-web", Running, Always), new("b-web.next-g5", Created)],
            want: vec![
                "restart policy no b-web: set aside (stopped, restart policy no) while generation 5 is judged",
                "stop b-web: set aside (stopped, restart policy no) while generation 5 is judged",
                "rename b-web -> b-web.prev-g5: set aside (stopped, restart policy no) while generation 5 is judged",
                "rename b-web.next-g5 -> b-web: left by an interrupted swap",
                "start b-web: container is Created, should run",
            ],
        },
        Case {
            name: "killed after the restart policy was set",
            desired: update(),
            observed: vec![old("b-web", Running, Never), new("b-web.next-g5", Created)],
            want: vec![
                "stop b-web: set aside (stopped, restart policy no) while generation 5 is judged",
                "rename b-web -> b-web.prev-g5: set aside (stopped, restart policy no) while generation 5 is judged",
                "rename b-web.next-g5 -> b-web: left by an interrupted swap",
                "start b-web: container is Created, should run",
            ],
        },
        Case {
            name: "killed after the stop",
            desired: update(),
            observed: vec![old("b-web", Exited, Never), new("b-web.next-g5", Created)],
            want: vec![
                "rename b-web -> b-web.prev-g5: set aside (stopped, restart policy no) while generation 5 is judged",
                "rename b-web.next-g5 -> b-web: left by an interrupted swap",
                "start b-web: container is Created, should run",
            ],
        },
        Case {
            name: "both named oddly: the old one aside, the new one still .next",
            desired: update(),
            observed: vec![
                old("b-web.prev-g5", Exited, Never),
                new("b-web.next-g5", Created),
            ],
            want: vec![
                "rename b-web.next-g5 -> b-web: left by an interrupted swap",
                "start b-web: container is Created, should run",
            ],
        },
        Case {
            name: "new renamed but not started",
            desired: update(),
            observed: vec![old("b-web.prev-g5", Exited, Never), new("b-web", Created)],
            want: vec!["start b-web: container is Created, should run"],
        },
        Case {
            name: "new running + aside stopped: kept while judged",
            desired: update(),
            observed: vec![old("b-web.prev-g5", Exited, Never), new("b-web", Running)],
            want: vec![],
        },
        Case {
            name: "an aside container someone started is stopped again, its policy no",
            desired: update(),
            observed: vec![old("b-web.prev-g5", Running, Always), new("b-web", Running)],
            want: vec![
                "restart policy no b-web.prev-g5: set aside (stopped, restart policy no) while generation 5 is judged",
                "stop b-web.prev-g5: set aside (stopped, restart policy no) while generation 5 is judged",
            ],
        },
        Case {
            name: "judged: the aside container goes",
            desired: svc("web", "h2"),
            observed: vec![old("b-web.prev-g5", Exited, Never), new("b-web", Running)],
            want: vec![
                "remove b-web.prev-g5: set aside for generation 5, which is no longer being judged",
            ],
        },
        Case {
            name: "an aside container of an earlier deployment goes",
            desired: update(),
            observed: vec![
                old("b-web.prev-g3", Exited, Never),
                policy(ctr("c3", "b-web", "web", "h0", Running), Always),
            ],
            want: vec![
                "replace web -b-web.prev-g3 aside b-web -> b-web.prev-g5: spec changed (h0 -> h2)",
            ],
        },
        Case {
            name: "rollback: the failed one goes, the aside one is swapped back",
            desired: back(),
            observed: vec![old("b-web.prev-g5", Exited, Never), new("b-web", Running)],
            want: vec![
                "remove b-web: spec changed (h2 -> h1)",
                "restart policy always b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "start b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "rename b-web.prev-g5 -> b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "rollback killed after the remove",
            desired: back(),
            observed: vec![old("b-web.prev-g5", Exited, Never)],
            want: vec![
                "restart policy always b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "start b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "rename b-web.prev-g5 -> b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "rollback killed after the policy was restored",
            desired: back(),
            observed: vec![old("b-web.prev-g5", Exited, Always)],
            want: vec![
                "start b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "rename b-web.prev-g5 -> b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "rollback killed after the start",
            desired: back(),
            observed: vec![old("b-web.prev-g5", Running, Always)],
            want: vec![
                "rename b-web.prev-g5 -> b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "aside renamed back but not started (policy still no)",
            desired: back(),
            observed: vec![old("b-web", Exited, Never)],
            want: vec![
                "restart policy always b-web: set aside by an update that did not complete; swapped back",
                "start b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "a restart: never service comes back started too",
            desired: {
                let mut s = back();
                s.restart = Never;
                s
            },
            observed: vec![old("b-web.prev-g5", Exited, Never)],
            want: vec![
                "start b-web.prev-g5: set aside by an update that did not complete; swapped back",
                "rename b-web.prev-g5 -> b-web: set aside by an update that did not complete; swapped back",
            ],
        },
        Case {
            name: "a policy changed behind berth's back is put back",
            desired: back(),
            observed: vec![old("b-web", Running, RestartPolicy::OnFailure)],
            want: vec![
                "restart policy always b-web: restart policy is on-failure, the spec says always",
            ],
        },
    ];
    for case in cases {
        let got: Vec<String> = plan(
            &desired(vec![case.desired]),
            &Observed {
                containers: case.observed,
            },
        )
        .iter()
        .map(describe)
        .collect();
        assert_eq!(got, case.want, "case: {}", case.name);
    }
}

#[test]
fn aside_names() {
    assert_eq!(aside_name("b-web", 7), "b-web.prev-g7");
    assert_eq!(aside_generation_of("b-web", "b-web.prev-g7"), Some(7));
    for other in [
        "b-web",
        "b-web.prev-g",
        "b-web.prev-g7x",
        "b-web.next-g7",
        "b-webx.prev-g7",
        "b-web.prev-g+7",
    ] {
        assert_eq!(aside_generation_of("b-web", other), None, "{other}");
    }
}
