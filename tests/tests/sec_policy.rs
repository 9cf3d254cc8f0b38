//! Issue 29, item 3, against the real engine and a real berthd over its TCP
//! API: `allowed_host_paths` must hold where a path leads, not only in its
//! text. One pushed service mounts the allowed directory and plants
//! `rootlink -> /` in it; a second asks for `$ALLOWED/rootlink` and would
//! have had the host's `/` read-write.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::node::{Busybox, TestNode, docker};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-the-sec-policy-001";

/// A node with `[api]` on a free port, an admin token, and `$ALLOWED` (a
/// directory of its own) as the only allowed host path.
fn node(hint: &str) -> (TestNode, SocketAddr, PathBuf) {
    let (node, addr) = berth_tests::api::tcp_node(hint, &format!("admin {ADMIN}\n"), "");
    let allowed = node.dir().join("allowed");
    std::fs::create_dir(&allowed).expect("mkdir allowed");
    let allowed = std::fs::canonicalize(&allowed).expect("canonical");
    let node = node.with_config(&format!(
        "[policy]\nallowed_host_paths = [\"{}\"]\n",
        allowed.display()
    ));
    (node, addr, allowed)
}

/// One admin request on a fresh connection: (status, JSON body).
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = berth_tests::api::send_plain(addr, method, path, Some(ADMIN), body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, r.body)
}

fn service(name: &str, image: &str, volume: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": image,
        "command": ["/bin/busybox", "sh", "-c", script],
        "volumes": [volume],
        "stop_timeout": "1s",
        "update": {"settle": "500ms"},
    })
}

/// Pushes `spec` and waits until its deployment ended; the record.
async fn deploy(addr: SocketAddr, spec: Value) -> Value {
    let name = spec["name"].as_str().expect("name").to_string();
    let (status, record) = call(addr, "PUT", &format!("/v1/services/{name}"), Some(spec)).await;
    assert_eq!(status, 202, "PUT {name}: {record}");
    let id = record["id"].as_str().expect("record id").to_string();
    for _ in 0..12 {
        let (status, d) = call(addr, "GET", &format!("/v1/deployments/{id}?wait=10s"), None).await;
        assert_eq!(status, 200, "{d}");
        if matches!(
            d["status"].as_str(),
            Some("COMPLETE" | "FAILED" | "ROLLED_BACK")
        ) {
            return d;
        }
    }
    panic!("deployment {id} did not end within 120 s");
}

/// Where each mount of container `id` comes from on the host.
fn mount_sources(id: &str) -> Vec<String> {
    let out = docker(&["inspect", "--format", "{{json .Mounts}}", id]);
    let mounts: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    mounts
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["Source"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_planted_in_an_allowed_path_does_not_reach_the_host() {
    berth_prereq::require!(Engine, Busybox);
    let id = berth_tests::node::unique("secpol");
    let image = Busybox::build(&id);
    let (mut node, addr, allowed) = node("secpol");
    node.start();
    let allowed_s = allowed.display().to_string();

    // The first service is allowed: it mounts $ALLOWED and plants the link.
    let planter = service(
        "planter",
        &image.tag,
        &format!("{allowed_s}:/h"),
        "ln -s / /h/rootlink; exec /bin/busybox sleep 3600",
    );
    let d = deploy(addr, planter).await;
    assert_eq!(d["status"], "COMPLETE", "{d}");
    let link = allowed.join("rootlink");
    node.wait_until("the planted symlink", Duration::from_secs(30), |_| {
        exists(&link)
    });

    // The second asks for $ALLOWED/rootlink: refused, by PUT and by apply.
    let escape = service(
        "escape",
        &image.tag,
        &format!("{allowed_s}/rootlink:/host"),
        "exec /bin/busybox sleep 3600",
    );
    let (status, body) = call(addr, "PUT", "/v1/services/escape", Some(escape.clone())).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        (
            body["kind"].as_str(),
            body["rule"].as_str(),
            body["field"].as_str()
        ),
        (
            Some("policy"),
            Some("allowed_host_paths"),
            Some("volumes[0]")
        ),
        "{body}"
    );
    let (status, body) = call(
        addr,
        "POST",
        "/v1/apply",
        Some(json!({"services": [escape]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["field"], "services[0].volumes[0]", "{body}");
    // Through the link, a deeper path is refused too.
    let deeper = service(
        "escape",
        &image.tag,
        &format!("{allowed_s}/rootlink/etc:/host-etc"),
        "exec /bin/busybox sleep 3600",
    );
    let (status, body) = call(addr, "PUT", "/v1/services/escape", Some(deeper)).await;
    assert_eq!(
        (status, body["rule"].as_str()),
        (403, Some("allowed_host_paths")),
        "{body}"
    );
    assert!(node.container("escape").is_none(), "escape was created");

    // Planted after the check: accepted while `d` is a directory. Once `d`
    // leads to `/`, a push naming it is refused, and so is the create that
    // berthd makes on its own (the container was removed behind its back):
    // it is asked again right before the create.
    let d_dir = allowed.join("d");
    std::fs::create_dir(&d_dir).expect("mkdir d");
    let later = service(
        "later",
        &image.tag,
        &format!("{}:/host", d_dir.display()),
        "exec /bin/busybox sleep 3600",
    );
    let first = deploy(addr, later.clone()).await;
    assert_eq!(first["status"], "COMPLETE", "{first}");
    let running = node.container("later").expect("later runs");
    std::fs::remove_dir(&d_dir).expect("rmdir d");
    std::os::unix::fs::symlink("/", &d_dir).expect("plant d -> /");
    let mut again = later.clone();
    again["env"] = json!({"GEN": "2"});
    let (status, body) = call(addr, "PUT", "/v1/services/later", Some(again)).await;
    assert_eq!(
        (status, body["rule"].as_str(), body["field"].as_str()),
        (403, Some("allowed_host_paths"), Some("volumes[0]")),
        "{body}"
    );
    let rm = docker(&["rm", "-f", &running.id]);
    assert!(rm.status.success(), "{rm:?}");
    let mut refused = String::new();
    for _ in 0..60 {
        let (_, events) = call(addr, "GET", "/v1/events?since=0", None).await;
        let found = events["events"].as_array().and_then(|all| {
            all.iter()
                .map(Value::to_string)
                .find(|e| e.contains("later") && e.contains("allowed_host_paths"))
        });
        if let Some(e) = found {
            refused = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refused.contains("volumes[0]") && refused.contains("node policy"),
        "no refusal of the recreate in the events: {refused:?}\nberthd log:\n{}",
        node.logs()
    );
    assert!(node.container("later").is_none(), "later was created again");

    // No container of the node has the host's / mounted.
    for c in node.containers() {
        let sources = mount_sources(&c.id);
        assert!(
            !sources.iter().any(|s| s == "/"),
            "{} mounts the host's /: {sources:?}",
            c.name
        );
    }
}

/// Issue 29 item 4 on a real berthd: capabilities beyond the engine's
/// defaults are refused, and `[policy] allowed_capabilities` added by a
/// SIGHUP lets exactly those through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_are_an_allow_list_that_sighup_extends() {
    berth_prereq::require!(DemoImage);
    let (mut node, addr, allowed) = node("seccap");
    node.start();
    let spec = |caps: &[&str]| {
        json!({"name": "caps", "image": "berth-demo:latest", "state": "stopped",
               "cap_add": caps, "security_opt": ["no-new-privileges:true"]})
    };
    for cap in [
        "SYS_MODULE",
        "CAP_DAC_READ_SEARCH",
        "sys_rawio",
        "SYS_PTRACE",
        "BPF",
        "NET_ADMIN",
    ] {
        let (status, body) = call(addr, "PUT", "/v1/services/caps", Some(spec(&[cap]))).await;
        assert_eq!(
            (status, body["rule"].as_str(), body["field"].as_str()),
            (403, Some("allow_privileged"), Some("cap_add[0]")),
            "{cap}: {body}"
        );
    }
    for opt in [
        "seccomp=unconfined",
        "label=disable",
        "no-new-privileges=false",
    ] {
        let mut s = spec(&[]);
        s["security_opt"] = json!([opt]);
        let (status, body) = call(addr, "PUT", "/v1/services/caps", Some(s)).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (403, Some("security_opt[0]")),
            "{opt}: {body}"
        );
    }
    let (status, body) = call(
        addr,
        "PUT",
        "/v1/services/caps",
        Some(spec(&["CHOWN", "cap_net_bind_service"])),
    )
    .await;
    assert_eq!(status, 202, "default capabilities: {body}");

    let tokens = node.dir().join("tokens");
    node.set_config(&format!(
        "[api]\nlisten = \"{addr}\"\ntokens_file = \"{}\"\n[policy]\nallowed_host_paths = [\"{}\"]\nallowed_capabilities = [\"NET_ADMIN\"]\n",
        tokens.display(),
        allowed.display()
    ));
    node.hup();
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) =
            call(addr, "PUT", "/v1/services/caps", Some(spec(&["NET_ADMIN"]))).await;
        if status == 202 {
            last = Value::Null;
            break;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, Value::Null, "NET_ADMIN still refused after SIGHUP");
    let (status, body) = call(
        addr,
        "PUT",
        "/v1/services/caps",
        Some(spec(&["SYS_MODULE"])),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("cap_add[0]")),
        "{body}"
    );
}
