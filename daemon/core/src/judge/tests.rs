use super::*;
use crate::spec::{Healthcheck, ServiceSpec, UpdatePolicy};

const SETTLE: Duration = Duration::from_secs(2);
const HEALTH: Duration = Duration::from_secs(60);

fn record(kind: Kind, healthcheck: bool) -> Deployment {
    Deployment {
        service: "web".into(),
        generation: 2,
        action: DeployAction::Update,
        status: Status::InProgress,
        spec_hash: "h2".into(),
        spec: ServiceSpec {
            name: "web".into(),
            kind,
            update: UpdatePolicy {
                settle: SETTLE,
                health_timeout: HEALTH,
                ..Default::default()
            },
            healthcheck: healthcheck.then(|| Healthcheck {
                test: None,
                exec: vec!["/demo".into(), "health".into()],
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                retries: 3,
                start_period: None,
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ctr(hash: &str, state: ContainerState) -> ObservedContainer {
    ObservedContainer {
        id: "c1".into(),
        name: "b-web".into(),
        service: "web".into(),
        spec_hash: Some(hash.into()),
        generation: Some(2),
        config_hash: None,
        state,
        exit_code: None,
        health: None,
        restart_count: 0,
        started_at: None,
        restart_policy: None,
    }
}

use ContainerState::*;

/// Each case: the record, the gate (opened at t0, or none), the container,
/// the instant judged (seconds after t0) and the verdict, with the reason's
/// start for a FAILED one.
#[test]
fn table() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let svc = || record(Kind::Service, false);
    let healthy_svc = || record(Kind::Service, true);
    let with = |mut r: Deployment, f: &dyn Fn(&mut Deployment)| {
        f(&mut r);
        r
    };
    let c = |state| Some(ctr("h2", state));
    let with_c = |state, f: &dyn Fn(&mut ObservedContainer)| {
        let mut c = ctr("h2", state);
        f(&mut c);
        Some(c)
    };
    enum Want {
        Wait,
        Complete,
        Failed(&'static str),
        Collect,
    }
    struct Case {
        name: &'static str,
        record: Deployment,
        gate: Option<bool>,
        container: Option<ObservedContainer>,
        at: u64,
        want: Want,
    }
    let cases = vec![
        Case {
            name: "a pending record waits for its apply",
            record: with(svc(), &|r| r.status = Status::Pending),
            gate: Some(true),
            container: c(Running),
            at: 10,
            want: Want::Wait,
        },
        Case {
            name: "a delete is complete once no container is left",
            record: with(svc(), &|r| r.action = DeployAction::Delete),
            gate: None,
            container: None,
            at: 0,
            want: Want::Complete,
        },
        Case {
            name: "a delete waits while the container is there",
            record: with(svc(), &|r| r.action = DeployAction::Delete),
            gate: None,
            container: c(Exited),
            at: 0,
            want: Want::Wait,
        },
        Case {
            name: "the old container is not this record's",
            record: svc(),
            gate: Some(true),
            container: Some(ctr("h1", Running)),
            at: 10,
            want: Want::Wait,
        },
        Case {
            name: "no gate: not being judged",
            record: svc(),
            gate: None,
            container: c(Running),
            at: 10,
            want: Want::Wait,
        },
        Case {
            name: "running, not yet settled",
            record: svc(),
            gate: Some(true),
            container: c(Running),
            at: 0,
            want: Want::Wait,
        },
        Case {
            name: "nothing to settle: complete at the first look",
            record: svc(),
            gate: Some(false),
            container: c(Running),
            at: 0,
            want: Want::Complete,
        },
        Case {
            name: "exited while settling",
            record: svc(),
            gate: Some(true),
            container: with_c(Exited, &|c| c.exit_code = Some(3)),
            at: 1,
            want: Want::Failed("container exited with code 3 while settling"),
        },
        Case {
            name: "created, not started yet",
            record: svc(),
            gate: Some(true),
            container: c(Created),
            at: 1,
            want: Want::Wait,
        },
        Case {
            name: "restarting without a settle to fail is waited for",
            record: svc(),
            gate: Some(false),
            container: c(Restarting),
            at: 1,
            want: Want::Wait,
        },
        Case {
            name: "desired stopped: complete once it is down",
            record: with(svc(), &|r| r.spec.state = DesiredState::Stopped),
            gate: Some(true),
            container: c(Exited),
            at: 0,
            want: Want::Complete,
        },
        Case {
            name: "desired stopped: waits while it runs",
            record: with(svc(), &|r| r.spec.state = DesiredState::Stopped),
            gate: Some(true),
            container: c(Running),
            at: 0,
            want: Want::Wait,
        },
        Case {
            name: "a task that exited is collected",
            record: record(Kind::Task, false),
            gate: Some(true),
            container: with_c(Exited, &|c| c.exit_code = Some(0)),
            at: 0,
            want: Want::Collect,
        },
        Case {
            name: "a running task waits",
            record: record(Kind::Task, false),
            gate: Some(true),
            container: c(Running),
            at: 100,
            want: Want::Wait,
        },
        Case {
            name: "healthy and settled",
            record: healthy_svc(),
            gate: Some(false),
            container: with_c(Running, &|c| c.health = Some(Health::Healthy)),
            at: 0,
            want: Want::Complete,
        },
        Case {
            name: "starting, before the deadline",
            record: healthy_svc(),
            gate: Some(false),
            container: with_c(Running, &|c| c.health = Some(Health::Starting)),
            at: 59,
            want: Want::Wait,
        },
        Case {
            name: "unhealthy at the deadline",
            record: healthy_svc(),
            gate: Some(false),
            container: with_c(Running, &|c| c.health = Some(Health::Unhealthy)),
            at: 60,
            want: Want::Failed(
                "not healthy within update.health_timeout (1m); health is unhealthy",
            ),
        },
    ];
    for case in cases {
        let mut gate = case.gate.map(|settle| HealthGate::new(settle, t0, HEALTH));
        // The first look opens the clock the settle time counts from.
        if let (Some(g), Some(_)) = (gate.as_mut(), case.container.as_ref()) {
            g.running_since = Some(t0);
        }
        let got = judge(
            &case.record,
            gate.as_mut(),
            case.container.as_ref(),
            at(case.at),
        );
        match (&case.want, &got) {
            (Want::Wait, Verdict::Wait) | (Want::Collect, Verdict::Collect(_)) => {}
            (Want::Complete, Verdict::Done(Status::Complete, why)) if why.is_empty() => {}
            (Want::Failed(start), Verdict::Done(Status::Failed, why)) if why.starts_with(start) => {
            }
            _ => panic!("{}: got {got:?}", case.name),
        }
    }
}

#[test]
fn a_restart_while_settling_fails_naming_the_count_and_the_exit_code() {
    let t0 = Instant::now();
    let r = record(Kind::Service, false);
    let mut gate = HealthGate::new(true, t0, HEALTH);
    let mut c = ctr("h2", Running);
    c.restart_count = 4;
    // The first look learns the count it starts from ...
    assert_eq!(judge(&r, Some(&mut gate), Some(&c), t0), Verdict::Wait);
    assert_eq!(gate.restarts_at_start, Some(4));
    assert_eq!(gate.running_since, Some(t0));
    // ... and two more restarts fail it.
    c.restart_count = 6;
    c.exit_code = Some(137);
    assert_eq!(
        judge(&r, Some(&mut gate), Some(&c), t0 + Duration::from_secs(1)),
        Verdict::Done(
            Status::Failed,
            "container restarted 2 time(s) while settling (last exit code 137)".into()
        )
    );
}

#[test]
fn the_settle_time_counts_from_the_first_running_look() {
    let t0 = Instant::now();
    let r = record(Kind::Service, false);
    let mut gate = HealthGate::new(true, t0, HEALTH);
    let c = ctr("h2", Running);
    let later = t0 + Duration::from_secs(30);
    // Seen running only 30 s after the gate opened: settle counts from then.
    assert_eq!(judge(&r, Some(&mut gate), Some(&c), later), Verdict::Wait);
    assert_eq!(
        judge(&r, Some(&mut gate), Some(&c), later + SETTLE / 2),
        Verdict::Wait
    );
    assert_eq!(
        judge(&r, Some(&mut gate), Some(&c), later + SETTLE),
        Verdict::Done(Status::Complete, String::new())
    );
}

#[test]
fn a_restarted_gate_counts_again_from_now_without_a_settle() {
    let t0 = Instant::now();
    let mut gate = HealthGate::new(true, t0, HEALTH);
    gate.restarts_at_start = Some(1);
    gate.running_since = Some(t0);
    let later = t0 + Duration::from_secs(100);
    gate.restart(later, HEALTH);
    assert_eq!(gate, HealthGate::new(false, later, HEALTH));
    assert_eq!(gate.health_deadline, later + HEALTH);
}

#[test]
fn settling_again_keeps_the_health_deadline() {
    let t0 = Instant::now();
    let mut gate = HealthGate::new(false, t0, HEALTH);
    gate.restarts_at_start = Some(2);
    gate.running_since = Some(t0);
    gate.settle_again();
    assert_eq!(
        gate,
        HealthGate {
            running_since: None,
            needs_settle: true,
            restarts_at_start: None,
            health_deadline: t0 + HEALTH,
        }
    );
}
