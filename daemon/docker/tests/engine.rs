//! `DockerRuntime` against the real engine.
//!
//! The harness is `berth_tests::engine`: every test has its own random node
//! id and container name prefix, builds its test image through
//! `Runtime::build`, and holds a guard that removes (with the docker CLI, so
//! it also works while panicking) every container carrying its node label or
//! its test-owner label, then the images it tagged. The engine is
//! [`engine`]; the same tests can run against another one.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use berth_core::runtime::{
    ContainerState, CreateSpec, Health, LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE,
    LABEL_SPEC_HASH, LogChunk, LogOptions, LogStream, RuntimeError, RuntimeEvent,
};
use berth_core::spec::{
    Healthcheck, Logging, PortMapping, Protocol, Resources, RestartPolicy, Ulimit, Volume,
};
use berth_docker::{DockerRuntime, Runtime};
use berth_tests::engine::{BUSYBOX_DOCKERFILE, Engine, OWNER_LABEL, random_hex, write_context};
use berth_tests::proxy::EngineProxy;
use futures_util::StreamExt;
use serde_json::Value;

/// A node of the test's own on the engine under test, with the busybox
/// image built (`berth_tests::engine`).
type Fixture = berth_tests::engine::Fixture<DockerRuntime>;

/// The engine the tests use: `$DOCKER_HOST`, else the default socket.
fn engine() -> Engine {
    Engine::default()
}

/// A fixture on [`engine`], with `DockerRuntime` as the runtime under test.
async fn fixture() -> Fixture {
    Fixture::new(engine(), |endpoint, node| {
        DockerRuntime::connect(endpoint, node).expect("connect")
    })
    .await
}

#[tokio::test]
async fn connect_negotiates_the_engines_api_version() {
    berth_prereq::require!(Engine);
    let node = format!("test-{}", random_hex());
    let rt = DockerRuntime::connect(&engine().endpoint, &node).expect("connect");
    let server = engine().cli_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let negotiated = rt.api_version().await.expect("negotiate");
    assert_eq!(
        negotiated, server,
        "bollard's default is newer than the engine"
    );
    // A bare path works too (when the engine is on a Unix socket), and an
    // empty node list is a list, not an error.
    if let Some(path) = berth_prereq::docker_socket() {
        let path = path.to_str().expect("a UTF-8 socket path");
        let rt = DockerRuntime::connect(path, &node).expect("connect");
        assert_eq!(rt.list().await.expect("list"), Vec::new());
    }
}

#[tokio::test]
async fn unreachable_engines_fail_fast() {
    let dir = tempfile::tempdir().expect("tempdir");

    // No such socket file.
    let missing = dir.path().join("missing.sock");
    let endpoint = format!("unix://{}", missing.display());
    let rt = DockerRuntime::connect(&endpoint, "n").expect("lazy connect");
    let started = Instant::now();
    match rt.list().await {
        Err(RuntimeError::Unreachable {
            endpoint: e,
            reason,
        }) => {
            assert_eq!(e, endpoint);
            assert!(reason.contains("missing.sock"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // A socket file nobody listens on: connection refused.
    let dead = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let rt = DockerRuntime::connect(dead.to_str().expect("utf-8"), "n").expect("connect");
    let started = Instant::now();
    let err = rt.list().await.expect_err("refused");
    assert!(err.is_unreachable(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = rt.start("anything").await.expect_err("refused");
    assert!(err.is_unreachable(), "{err}");

    // A socket that accepts and never answers: the negotiation times out.
    let hung = dir.path().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&hung).expect("bind");
    let rt = DockerRuntime::connect(hung.to_str().expect("utf-8"), "n").expect("connect");
    let started = Instant::now();
    let err = rt.list().await.expect_err("hung");
    assert!(err.is_unreachable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(listener);

    // Nothing on a TCP port.
    let rt = DockerRuntime::connect("tcp://127.0.0.1:1", "n").expect("connect");
    assert!(rt.list().await.expect_err("refused").is_unreachable());
}

#[tokio::test]
async fn create_maps_the_spec_and_the_lifecycle_works() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("hello"), "hi").expect("write");
    let outputs = tempfile::tempdir().expect("tempdir");
    let data_src = data.path().to_str().expect("utf-8").to_string();
    let outputs_dir = outputs.path().to_str().expect("utf-8").to_string();

    let spec = CreateSpec {
        env: BTreeMap::from([
            ("ZED".to_string(), "z".to_string()),
            ("ALPHA".to_string(), "a=1".to_string()),
        ]),
        volumes: vec![Volume {
            source: data_src.clone(),
            target: "/data".to_string(),
            read_only: true,
            relabel: None,
            propagation: None,
        }],
        ports: vec![PortMapping {
            host_ip: Some("127.0.0.1".to_string()),
            host_port: None,
            container_port: 8080,
            protocol: Protocol::Tcp,
        }],
        cap_drop: vec!["NET_RAW".to_string()],
        ulimits: BTreeMap::from([(
            "nofile".to_string(),
            Ulimit {
                soft: 512,
                hard: 1024,
            },
        )]),
        resources: Resources {
            memory: Some(64 * 1024 * 1024),
            nano_cpus: Some(500_000_000),
            pids: Some(64),
            ..Resources::default()
        },
        logging: Some(Logging {
            max_size: Some(1024 * 1024),
            max_files: Some(2),
            tag: Some("berth-{{.Name}}".to_string()),
        }),
        restart: RestartPolicy::OnFailure,
        healthcheck: Some(Healthcheck {
            test: None,
            exec: vec!["/bin/busybox".to_string(), "true".to_string()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            retries: 2,
            start_period: Some(Duration::from_millis(500)),
        }),
        stop_signal: Some("SIGTERM".to_string()),
        outputs_dir: Some(outputs_dir.clone()),
        ..f.spec(&["sleep", "3600"])
    };
    let req = f.request("web", "web", spec);
    let id = f.rt.create(&req).await.expect("create");

    // The mapping really landed.
    let c = f.engine.inspect(&id);
    assert_eq!(c["Name"], format!("/{}", f.name("web")));
    assert_eq!(c["Image"], f.image_id.as_str());
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sleep", "3600"]));
    let env: Vec<&str> = c["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ours: Vec<&str> = env
        .iter()
        .copied()
        .filter(|e| e.starts_with("ALPHA=") || e.starts_with("ZED="))
        .collect();
    assert_eq!(ours, vec!["ALPHA=a=1", "ZED=z"]);
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels[LABEL_NODE], f.node.as_str());
    assert_eq!(labels[LABEL_SERVICE], "web");
    assert_eq!(labels[LABEL_SPEC_HASH], "v1:web-hash");
    assert_eq!(labels[LABEL_GENERATION], "3");
    assert_eq!(c["Config"]["StopSignal"], "SIGTERM");
    assert_eq!(c["Config"]["StopTimeout"], 1);
    assert_eq!(
        c["Config"]["Healthcheck"],
        serde_json::json!({
            "Test": ["CMD", "/bin/busybox", "true"],
            "Interval": 1_000_000_000_i64,
            "Timeout": 2_000_000_000_i64,
            "StartPeriod": 500_000_000_i64,
            "Retries": 2
        })
    );
    assert!(c["Config"]["ExposedPorts"]["8080/tcp"].is_object());
    let host = &c["HostConfig"];
    assert_eq!(
        host["Binds"],
        serde_json::json!([
            format!("{data_src}:/data:ro"),
            format!("{outputs_dir}:/berth/outputs:rw")
        ])
    );
    assert_eq!(
        host["PortBindings"]["8080/tcp"],
        serde_json::json!([{"HostIp": "127.0.0.1", "HostPort": ""}])
    );
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["NetworkMode"], "bridge");
    assert_eq!(host["Privileged"], false);
    assert_eq!(host["CapDrop"], serde_json::json!(["NET_RAW"]));
    assert_eq!(
        host["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Soft": 512, "Hard": 1024}])
    );
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "1048576");
    assert_eq!(host["LogConfig"]["Config"]["max-file"], "2");
    assert_eq!(host["LogConfig"]["Config"]["tag"], "berth-{{.Name}}");

    // The same name again is a conflict.
    match f.rt.create(&req).await {
        Err(RuntimeError::NameConflict { name }) => assert_eq!(name, f.name("web")),
        other => panic!("expected NameConflict, got {other:?}"),
    }

    // Created, listed, not started.
    let o = f.observed(&id).await.expect("listed");
    assert_eq!(o.state, ContainerState::Created);
    assert_eq!(o.started_at, None);

    // Events from here on; a foreign container started meanwhile must not show.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<RuntimeEvent, RuntimeError>>();
    let mut events = f.rt.events();
    let collector = tokio::spawn(async move {
        while let Some(ev) = events.next().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    f.rt.start(&id).await.expect("start");
    f.rt.start(&id)
        .await
        .expect("starting a running container is fine");
    let foreign = f.foreign("events-foreign", &[]);

    let o = f.observed(&id).await.expect("listed");
    assert_eq!(o.state, ContainerState::Running);
    assert_eq!(o.name, f.name("web"));
    assert_eq!(o.service, "web");
    assert_eq!(o.spec_hash.as_deref(), Some("v1:web-hash"));
    assert_eq!(o.generation, Some(3));
    assert_eq!(o.exit_code, None);
    assert!(o.started_at.is_some());

    // The volume and the healthcheck work.
    let out = f
        .engine
        .cli_ok(&["exec", &id, "/bin/busybox", "cat", "/data/hello"]);
    assert_eq!(out, "hi");
    f.wait_for(&id, "healthy", |c| c.health == Some(Health::Healthy))
        .await;

    // Rename.
    f.rt.rename(&id, &f.name("web-old")).await.expect("rename");
    let o = f.observed(&id).await.expect("listed");
    assert_eq!(o.name, f.name("web-old"));
    assert_eq!(
        f.engine.inspect(&id)["Name"],
        format!("/{}", f.name("web-old"))
    );
    // By name works too, and a taken name is a conflict.
    let other =
        f.rt.create(&f.request("other", "other", f.spec(&["sleep", "3600"])))
            .await
            .expect("create other");
    match f.rt.rename(&f.name("web-old"), &f.name("other")).await {
        Err(RuntimeError::NameConflict { name }) => assert_eq!(name, f.name("other")),
        other => panic!("expected NameConflict, got {other:?}"),
    }

    // Restart keeps it running with a new start time.
    let before = f.observed(&id).await.expect("listed").started_at;
    f.rt.restart(&id).await.expect("restart");
    let o = f.observed(&id).await.expect("listed");
    assert_eq!(o.state, ContainerState::Running);
    assert_ne!(o.started_at, before);

    // Stop: busybox sleep as pid 1 ignores SIGTERM, so the 1 s timeout kills it.
    let started = Instant::now();
    f.rt.stop(&id).await.expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    f.rt.stop(&id)
        .await
        .expect("stopping a stopped container is fine");
    let o = f.observed(&id).await.expect("listed");
    assert_eq!(o.state, ContainerState::Exited);
    assert_eq!(o.exit_code, Some(137));

    // The events: start and die (with its exit code) for ours, nothing foreign.
    let mut seen: Vec<RuntimeEvent> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen
        .iter()
        .filter(|e| e.container_id == id && e.action == "die")
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Ok(ev))) => seen.push(ev),
            Ok(Some(Err(e))) => panic!("event stream failed: {e}"),
            Ok(None) => panic!("event stream ended; saw {seen:?}"),
            Err(_) => panic!("timed out waiting for two die events; saw {seen:?}"),
        }
    }
    collector.abort();
    let actions: Vec<&str> = seen
        .iter()
        .filter(|e| e.container_id == id)
        .map(|e| e.action.as_str())
        .collect();
    assert!(actions.contains(&"start"), "{actions:?}");
    assert!(actions.contains(&"rename"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a.starts_with("health_status")),
        "{actions:?}"
    );
    let die = seen
        .iter()
        .rfind(|e| e.container_id == id && e.action == "die")
        .expect("die");
    assert_eq!(die.service, "web");
    assert_eq!(die.exit_code, Some(137));
    assert!(
        seen.iter().all(|e| e.container_id != foreign),
        "a foreign container's event leaked: {seen:?}"
    );
    assert!(
        seen.iter().all(|e| !e.action.starts_with("exec_")),
        "{seen:?}"
    );

    // Remove (twice: gone is fine).
    f.rt.remove(&id).await.expect("remove");
    f.rt.remove(&id)
        .await
        .expect("removing a removed container is fine");
    f.rt.remove(&other).await.expect("remove other");
    assert_eq!(f.observed(&id).await, None);
    match f.rt.start(&id).await {
        Err(RuntimeError::NoSuchContainer { id: missing }) => assert_eq!(missing, id),
        other => panic!("expected NoSuchContainer, got {other:?}"),
    }
}

async fn collect_logs(f: &Fixture, id: &str, opts: LogOptions) -> Vec<LogChunk> {
    let chunks: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        f.rt.logs(id, opts).collect::<Vec<_>>(),
    )
    .await
    .expect("logs end");
    chunks.into_iter().map(|c| c.expect("log chunk")).collect()
}

fn joined(chunks: &[LogChunk], stream: LogStream) -> String {
    chunks
        .iter()
        .filter(|c| c.stream == stream)
        .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
        .collect()
}

#[tokio::test]
async fn logs_tell_stdout_from_stderr() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let req = f.request(
        "task",
        "task",
        // stdout and stderr reach the log through separate pipes, so their
        // order is only certain with a pause between them (tail counts lines
        // across both streams).
        f.spec(&["sh", "-c", "echo out1; echo err1 >&2; sleep 1; echo out2"]),
    );
    let id = f.rt.create(&req).await.expect("create");
    f.rt.start(&id).await.expect("start");
    let o = f
        .wait_for(&id, "exit", |c| c.state == ContainerState::Exited)
        .await;
    assert_eq!(o.exit_code, Some(0));

    let chunks = collect_logs(&f, &id, LogOptions::default()).await;
    assert_eq!(joined(&chunks, LogStream::Stdout), "out1\nout2\n");
    assert_eq!(joined(&chunks, LogStream::Stderr), "err1\n");

    let tail = collect_logs(
        &f,
        &id,
        LogOptions {
            follow: false,
            tail: Some(1),
        },
    )
    .await;
    assert_eq!(joined(&tail, LogStream::Stdout), "out2\n");
    assert_eq!(joined(&tail, LogStream::Stderr), "");

    // Follow: chunks arrive as they are written, the stream ends with the container.
    let req = f.request(
        "follow",
        "follow",
        f.spec(&["sh", "-c", "echo first; sleep 2; echo second >&2; exit 3"]),
    );
    let id = f.rt.create(&req).await.expect("create");
    f.rt.start(&id).await.expect("start");
    let mut logs = f.rt.logs(
        &id,
        LogOptions {
            follow: true,
            tail: None,
        },
    );
    let first = tokio::time::timeout(Duration::from_secs(10), logs.next())
        .await
        .expect("first chunk in time")
        .expect("a chunk")
        .expect("ok");
    assert_eq!(first.stream, LogStream::Stdout);
    assert_eq!(first.bytes, b"first\n");
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(20), logs.collect::<Vec<_>>())
        .await
        .expect("the stream ends when the container exits");
    let rest: Vec<LogChunk> = rest.into_iter().map(|c| c.expect("chunk")).collect();
    assert_eq!(joined(&rest, LogStream::Stderr), "second\n");
    let o = f
        .wait_for(&id, "exit", |c| c.state == ContainerState::Exited)
        .await;
    assert_eq!(o.exit_code, Some(3));

    // No such container.
    let mut logs = f.rt.logs(&f.name("nope"), LogOptions::default());
    assert!(matches!(
        logs.next().await,
        Some(Err(RuntimeError::NoSuchContainer { .. }))
    ));
    assert!(logs.next().await.is_none());
}

/// The volume options TripleO mounts use reach the engine as its `Binds`
/// take them: it reports each mount's mode, propagation and writability as
/// given. A private propagation with a relabel runs anywhere (the engine
/// ignores the relabel without SELinux); `shared` needs a shared host
/// mount, so that container is created, not started.
#[tokio::test]
async fn volume_options_reach_the_engine() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("hello"), "hi").expect("write");
    let src = data.path().to_str().expect("utf-8").to_string();
    let volume = |options: &str| Volume::parse(&format!("{src}:/data:{options}")).expect("volume");

    let spec = CreateSpec {
        volumes: vec![volume("Z,rprivate,ro")],
        ..f.spec(&["sleep", "3600"])
    };
    let id =
        f.rt.create(&f.request("private", "private", spec))
            .await
            .expect("create");
    let mount = &f.engine.inspect(&id)["Mounts"][0];
    assert_eq!(mount["Mode"], "ro,rprivate,Z");
    assert_eq!(mount["Propagation"], "rprivate");
    assert_eq!(mount["RW"], false);
    f.rt.start(&id).await.expect("start");
    let out = f
        .engine
        .cli_ok(&["exec", &id, "/bin/busybox", "cat", "/data/hello"]);
    assert_eq!(out, "hi");

    let spec = CreateSpec {
        volumes: vec![volume("shared,z")],
        ..f.spec(&["sleep", "3600"])
    };
    let id =
        f.rt.create(&f.request("shared", "shared", spec))
            .await
            .expect("create");
    let mount = &f.engine.inspect(&id)["Mounts"][0];
    assert_eq!(mount["Mode"], "rw,shared,z");
    assert_eq!(mount["Propagation"], "shared");
    assert_eq!(mount["RW"], true);
}

#[tokio::test]
async fn a_missing_image_is_named() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    for image in [
        format!("sha256:{}", "0".repeat(64)),
        format!("berth-test-missing:{}", &f.node[5..]),
    ] {
        let spec = CreateSpec {
            image: image.clone(),
            ..f.spec(&["sleep", "1"])
        };
        match f.rt.create(&f.request("missing", "missing", spec)).await {
            Err(e @ RuntimeError::ImageNotFound { .. }) => {
                let RuntimeError::ImageNotFound { image: named } = &e else {
                    unreachable!()
                };
                assert_eq!(named, &image);
                assert!(e.to_string().contains(&image), "{e}");
            }
            other => panic!("expected ImageNotFound, got {other:?}"),
        }
        assert_eq!(f.rt.inspect_image(&image).await.expect("inspect"), None);
    }
    let info =
        f.rt.inspect_image(&f.image_tag)
            .await
            .expect("inspect")
            .expect("present");
    assert_eq!(info.id, f.image_id);
    assert!(info.tags.contains(&f.image_tag), "{:?}", info.tags);

    // Another 404 on create (a missing network) is not a missing image.
    let network = format!("berth-test-nonet-{}", &f.node[5..]);
    let spec = CreateSpec {
        network: berth_core::spec::Network::Named(network.clone()),
        ..f.spec(&["sleep", "1"])
    };
    match f.rt.create(&f.request("nonet", "nonet", spec)).await {
        Err(RuntimeError::Refused {
            op,
            target,
            message,
        }) => {
            assert_eq!(op, "create");
            assert_eq!(target, f.name("nonet"));
            assert!(message.contains(&network), "{message}");
        }
        // Engines that create first and resolve the network at start.
        Ok(id) => {
            let err = f.rt.start(&id).await.expect_err("no such network");
            assert!(err.to_string().contains(&network), "{err}");
        }
        Err(other) => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn foreign_containers_are_never_listed_nor_touched() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let unlabelled = f.foreign("foreign", &[]);
    let other_node_label = format!("{LABEL_NODE}=someone-else-{}", f.node);
    let other_node = f.foreign("other-node", &[&other_node_label]);
    let ours =
        f.rt.create(&f.request("ours", "ours", f.spec(&["sleep", "3600"])))
            .await
            .expect("create");

    let listed: Vec<String> =
        f.rt.list()
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.id)
            .collect();
    assert_eq!(listed, vec![ours.clone()]);

    for (id, name) in [
        (unlabelled.clone(), f.name("foreign")),
        (other_node.clone(), f.name("other-node")),
    ] {
        for target in [id.as_str(), name.as_str()] {
            let results = [
                ("remove", f.rt.remove(target).await),
                ("stop", f.rt.stop(target).await),
                ("start", f.rt.start(target).await),
                ("restart", f.rt.restart(target).await),
                ("rename", f.rt.rename(target, &f.name("stolen")).await),
            ];
            for (op, res) in results {
                match res {
                    Err(RuntimeError::Refused {
                        op: refused_op,
                        target: t,
                        message,
                    }) => {
                        assert_eq!(refused_op, op);
                        assert_eq!(t, target);
                        assert!(message.contains(&name), "{message}");
                    }
                    other => panic!("{op} {target}: expected Refused, got {other:?}"),
                }
            }
        }
        let c = f.engine.inspect(&id);
        assert_eq!(c["State"]["Running"], true, "{name} was touched");
        assert_eq!(c["Name"], format!("/{name}"));
    }

    // Things that are not there.
    f.rt.remove(&f.name("nope"))
        .await
        .expect("removing nothing is fine");
    assert!(matches!(
        f.rt.stop(&f.name("nope")).await,
        Err(RuntimeError::NoSuchContainer { .. })
    ));
    // A reference that would escape the container URL space is refused outright.
    assert!(matches!(
        f.rt.remove("../images/busybox").await,
        Err(RuntimeError::Refused { .. })
    ));
}

#[tokio::test]
async fn load_brings_back_a_saved_image() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = format!("berth-test-loaded:{}", &f.node[5..]);
    f.guard.track_image(&tag);
    f.engine.cli_ok(&["tag", &f.image_tag, &tag]);
    let tarball = dir.path().join("image.tar");
    let tarball_s = tarball.to_str().expect("utf-8").to_string();
    f.engine.cli_ok(&["save", "-o", &tarball_s, &tag]);
    f.engine.cli_ok(&["rmi", &tag]);
    assert_eq!(f.rt.inspect_image(&tag).await.expect("inspect"), None);

    let refs = f.rt.load(&tarball_s).await.expect("load");
    assert!(refs.contains(&tag), "{refs:?}");
    let info =
        f.rt.inspect_image(&tag)
            .await
            .expect("inspect")
            .expect("loaded");
    assert_eq!(info.id, f.image_id);

    // Not a tarball; no file.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar file at all").expect("write");
    let junk_s = junk.to_str().expect("utf-8").to_string();
    match f.rt.load(&junk_s).await {
        Err(RuntimeError::Load { path, message }) => {
            assert_eq!(path, junk_s);
            assert!(!message.is_empty());
        }
        other => panic!("expected Load, got {other:?}"),
    }
    let missing = dir.path().join("missing.tar");
    let missing_s = missing.to_str().expect("utf-8").to_string();
    assert!(matches!(
        f.rt.load(&missing_s).await,
        Err(RuntimeError::Load { path, .. }) if path == missing_s
    ));
}

#[tokio::test]
async fn build_failures_and_image_removal() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().to_str().expect("utf-8").to_string();

    // A unique image (its own marker file), built from a non-default Dockerfile.
    write_context(dir.path(), "FROM scratch\n");
    std::fs::write(dir.path().join("marker"), random_hex()).expect("write");
    std::fs::create_dir(dir.path().join("build")).expect("mkdir");
    std::fs::write(
        dir.path().join("build/Unique.dockerfile"),
        format!("{BUSYBOX_DOCKERFILE}COPY marker /marker\n"),
    )
    .expect("write");
    let tag = format!("berth-test-unique:{}", &f.node[5..]);
    f.guard.track_image(&tag);
    let id =
        f.rt.build(&ctx, Some("build/Unique.dockerfile"), &tag)
            .await
            .expect("build");
    assert_ne!(id, f.image_id);
    let marker = std::fs::read_to_string(dir.path().join("marker")).expect("read");
    let out = f.engine.cli_ok(&[
        "run",
        "--rm",
        "--label",
        &format!("{OWNER_LABEL}={}", f.node),
        &tag,
        "cat",
        "/marker",
    ]);
    assert_eq!(out, marker);

    // In use by a container: refused, and still there.
    let spec = CreateSpec {
        image: id.clone(),
        ..f.spec(&["sleep", "1"])
    };
    let c =
        f.rt.create(&f.request("user", "user", spec))
            .await
            .expect("create");
    match f.rt.remove_image(&id).await {
        Err(RuntimeError::Refused {
            op,
            target,
            message,
        }) => {
            assert_eq!(op, "remove image");
            assert_eq!(target, id);
            assert!(!message.is_empty());
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(f.rt.inspect_image(&id).await.expect("inspect").is_some());
    f.rt.remove(&c).await.expect("remove container");
    f.rt.remove_image(&id).await.expect("remove image");
    assert_eq!(f.rt.inspect_image(&id).await.expect("inspect"), None);
    assert_eq!(f.rt.inspect_image(&tag).await.expect("inspect"), None);
    f.rt.remove_image(&id)
        .await
        .expect("removing a removed image is fine");

    // A failing step: the error says so and carries the build's output.
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about-to-fail; exit 7\"]\n",
            f.image_tag
        ),
    )
    .expect("write");
    let bad_tag = format!("berth-test-bad:{}", &f.node[5..]);
    f.guard.track_image(&bad_tag);
    match f.rt.build(&ctx, None, &bad_tag).await {
        Err(RuntimeError::Build {
            tag,
            context,
            message,
        }) => {
            assert_eq!(tag, bad_tag);
            assert_eq!(context, ctx);
            assert!(message.contains("about-to-fail"), "{message}");
            assert!(message.contains('7'), "{message}");
        }
        other => panic!("expected Build, got {other:?}"),
    }
    // A file the Dockerfile wants is not in the context.
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY nothing-here /x\n",
    )
    .expect("write");
    assert!(matches!(
        f.rt.build(&ctx, None, &bad_tag).await,
        Err(RuntimeError::Build { message, .. }) if message.contains("nothing-here")
    ));
    // No Dockerfile where we were told.
    assert!(matches!(
        f.rt.build(&ctx, Some("Nope.dockerfile"), &bad_tag).await,
        Err(RuntimeError::Build { message, .. }) if message.contains("Nope.dockerfile")
    ));
    assert_eq!(f.rt.inspect_image(&bad_tag).await.expect("inspect"), None);

    // Tags seen by the guard are unique to this test.
    let tags: HashSet<String> = f.guard.images().into_iter().collect();
    assert_eq!(tags.len(), 3);
}

#[tokio::test]
async fn a_container_it_created_is_acted_on_without_another_inspect() {
    berth_prereq::require!(Engine, Busybox);
    let f = fixture().await;
    let proxy = EngineProxy::start(&berth_tests::proxy::engine_socket()).expect("proxy starts");
    let rt = DockerRuntime::connect(&proxy.docker_host(), &f.node).expect("connect");
    let id = rt
        .create(&f.request("known", "known", f.spec(&["sleep", "3600"])))
        .await
        .expect("create");
    proxy.clear();
    rt.start(&id).await.expect("start");
    rt.stop(&id).await.expect("stop");
    assert_eq!(proxy.container_inspects(), 0, "{:?}", proxy.calls());

    // A name can be re-pointed: it is inspected every time.
    rt.start(&f.name("known")).await.expect("start by name");
    assert_eq!(proxy.container_inspects(), 1, "{:?}", proxy.calls());

    // A runtime that did not create it (berthd after a restart) checks the
    // label once, then knows it.
    let fresh = DockerRuntime::connect(&proxy.docker_host(), &f.node).expect("connect");
    proxy.clear();
    fresh.stop(&id).await.expect("stop");
    fresh.start(&id).await.expect("start");
    assert_eq!(proxy.container_inspects(), 1, "{:?}", proxy.calls());

    // Another node's runtime on the same engine still refuses it.
    let other = DockerRuntime::connect(&proxy.docker_host(), &format!("{}-other", f.node))
        .expect("connect");
    assert!(
        matches!(other.stop(&id).await, Err(RuntimeError::Refused { .. })),
        "another node must not act on this node's container"
    );

    // Removed: acting on the id again says it is gone.
    rt.remove(&id).await.expect("remove");
    assert!(matches!(
        rt.start(&id).await,
        Err(RuntimeError::NoSuchContainer { .. })
    ));
}
