//! Health gating and rollback against the real engine: an update whose
//! healthcheck fails is rolled back to the very container it replaced,
//! which waits aside with restart policy `no` (a dockerd restart cannot run
//! it beside its successor); `rollback --to` re-creates an older
//! generation; berthd SIGKILLed while a rollback swaps converges on
//! restart with one running container.

use std::time::Duration;

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};
use berth_tests::proxy::EngineProxy;
use serde_json::Value;

/// `web` serving on 8080 with a healthcheck on `health_port` (8080:
/// healthy; a port nothing serves: never healthy).
fn web(greeting: &str, health_port: u16) -> String {
    format!(
        "name: web
image: berth-demo:latest
command: [\"serve\", \"--port\", \"8080\"]
env: {{GREETING: {greeting}}}
healthcheck: {{exec: [\"/demo\", \"health\", \"--port\", \"{health_port}\"], interval: 1s, timeout: 1s, retries: 1}}
stop_timeout: 2s
update: {{settle: 1s, health_timeout: 5s}}
"
    )
}

fn inspect(id: &str, format: &str) -> String {
    let out = docker(&["inspect", "--format", format, id]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn history(node: &TestNode) -> Vec<Value> {
    node.ctl_json(&["history", "web"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn record(node: &TestNode, generation: u64) -> Option<Value> {
    history(node)
        .into_iter()
        .find(|d| d["generation"].as_u64() == Some(generation))
}

fn status_of(node: &TestNode, generation: u64) -> String {
    record(node, generation)
        .and_then(|d| d["status"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `berthctl apply FILE --no-wait`.
fn apply_no_wait(node: &TestNode, name: &str, text: &str) {
    let f = node.spec_file(name, text);
    node.ctl_ok(&["apply", &f.display().to_string(), "--no-wait"]);
}

/// Applies and waits; `v1` is healthy, so it completes.
fn apply_ok(node: &TestNode, name: &str, text: &str) {
    let f = node.spec_file(name, text);
    node.ctl_ok(&["apply", &f.display().to_string()]);
}

/// The one running, canonically named container is `id`, with restart
/// policy `always`, and there is no other.
fn only_the_old_one_runs(node: &TestNode, id: &str) -> bool {
    let cs = node.containers();
    cs.len() == 1
        && cs[0].id == id
        && cs[0].name == format!("{}web", node.prefix)
        && cs[0].state == "running"
        && inspect(id, "{{.HostConfig.RestartPolicy.Name}}") == "always"
}

#[test]
fn an_unhealthy_update_is_rolled_back_to_the_same_container() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("rb-auto");
    node.start();
    apply_ok(&node, "v1.yaml", &web("one", 8080));
    let old = node.container("web").expect("web runs");
    assert_eq!(
        inspect(&old.id, "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );

    apply_no_wait(&node, "v2.yaml", &web("two", 9));
    // While the new one is judged, the old one waits aside: stopped, with
    // restart policy `no`, so a dockerd restart cannot start it.
    let aside = format!("{}web.prev-g2", node.prefix);
    node.wait_until(
        "the old container set aside",
        Duration::from_secs(30),
        |n| {
            n.containers()
                .iter()
                .any(|c| c.name == aside && c.state == "exited")
        },
    );
    let set_aside = node
        .containers()
        .into_iter()
        .find(|c| c.name == aside)
        .expect("aside");
    assert_eq!(set_aside.id, old.id, "the same container, set aside");
    assert_eq!(
        inspect(&old.id, "{{.HostConfig.RestartPolicy.Name}}"),
        "no",
        "a dockerd restart must not run the aside container"
    );

    node.wait_until("generation 2 rolled back", Duration::from_secs(60), |n| {
        status_of(n, 2) == "ROLLED_BACK"
    });
    let failed = record(&node, 2).expect("record 2");
    let reason = failed["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not healthy within update.health_timeout (5s)")
            && reason.contains("rolled back to generation 1"),
        "{reason}"
    );
    node.wait_until("the rollback completes", Duration::from_secs(60), |n| {
        status_of(n, 3) == "COMPLETE"
    });
    let rollback = record(&node, 3).expect("record 3");
    assert_eq!(rollback["action"], "ROLLBACK");
    assert_eq!(rollback["rollback_of"], 1);
    node.wait_until(
        "the old container back, alone",
        Duration::from_secs(30),
        |n| only_the_old_one_runs(n, &old.id),
    );

    // The same spec again is not retried: FAILED, naming the record.
    let f = node.spec_file("v2-again.yaml", &web("two", 9));
    let out = node.ctl(&["apply", &f.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("ROLLED_BACK") && text.contains("web-2"),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        only_the_old_one_runs(&node, &old.id),
        "{:?}",
        node.containers()
    );
}

#[test]
fn rollback_to_an_older_generation_re_creates_it() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let mut node = TestNode::new("rb-to");
    node.start();
    apply_ok(&node, "v1.yaml", &web("one", 8080));
    apply_ok(&node, "v2.yaml", &web("two", 8080));
    apply_ok(&node, "v3.yaml", &web("three", 8080));
    node.wait_until("one container", Duration::from_secs(30), |n| {
        n.containers().len() == 1
    });
    let before = node.container("web").expect("web");
    node.ctl_ok(&["rollback", "web", "--to", "1"]);
    assert_eq!(status_of(&node, 4), "COMPLETE");
    let now = node.container("web").expect("web");
    assert_ne!(
        now.id, before.id,
        "a create: generation 1's container is gone"
    );
    assert!(
        inspect(&now.id, "{{json .Config.Env}}").contains("GREETING=one"),
        "{}",
        inspect(&now.id, "{{json .Config.Env}}")
    );
    node.wait_until("the replaced one removed", Duration::from_secs(30), |n| {
        n.containers().len() == 1
    });
}

#[test]
fn berthd_killed_while_a_rollback_swaps_converges_on_restart() {
    berth_prereq::require!(DemoImage);
    demo_image();
    let proxy = EngineProxy::start(&berth_tests::proxy::engine_socket()).expect("proxy starts");
    let mut node = TestNode::new("rb-kill").with_docker_host(proxy.docker_host());
    node.start();
    apply_ok(&node, "v1.yaml", &web("one", 8080));
    let old = node.container("web").expect("web runs");
    proxy.clear();
    apply_no_wait(&node, "v2.yaml", &web("two", 9));
    // The swap back begins with the aside container's restart policy
    // restored: its second update call (the first set it to `no`). Kill
    // berthd the moment it is seen, mid-swap.
    let update = format!("/containers/{}/update", old.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let updates = proxy
            .mutating_calls()
            .iter()
            .filter(|(_, path)| path.starts_with(&update))
            .count();
        if updates >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no swap back seen: {:?}\n{}",
            proxy.mutating_calls(),
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    node.kill();
    let running = node
        .containers()
        .iter()
        .filter(|c| c.state == "running")
        .count();
    assert!(running <= 1, "{:?}", node.containers());

    node.start();
    node.wait_until(
        "one running container, the old one",
        Duration::from_secs(60),
        |n| only_the_old_one_runs(n, &old.id),
    );
    node.wait_until("the rollback completes", Duration::from_secs(60), |n| {
        status_of(n, 3) == "COMPLETE"
    });
    assert_eq!(status_of(&node, 2), "ROLLED_BACK");
}
