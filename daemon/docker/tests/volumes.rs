//! Named volumes against the real engine (issue 29 item 9): a volume a
//! create needs and that does not exist yet is made by berth with this
//! node's label; one that exists is left as it is.

use std::collections::BTreeMap;
use std::process::Command;

use berth_core::runtime::{CreateRequest, CreateSpec, LABEL_NODE, RuntimeError};
use berth_core::spec::Volume;
use berth_docker::{DockerRuntime, Runtime};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI")
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos)
}

/// Removes the test's containers and volumes, even after a panic.
struct Guard {
    node: String,
    volumes: Vec<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label={LABEL_NODE}={}", self.node),
            ])
            .output()
        {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
    }
}

fn volume_label(name: &str) -> Option<String> {
    let out = docker(&[
        "volume",
        "inspect",
        "--format",
        &format!("{{{{index .Labels \"{LABEL_NODE}\"}}}}"),
        name,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn a_volume_berth_makes_carries_the_node_label_an_existing_one_is_left_alone() {
    berth_prereq::require!(Engine);
    let id = unique();
    let node = format!("test-vol-{id}");
    let fresh = format!("berth-test-fresh-{id}");
    let theirs = format!("berth-test-theirs-{id}");
    let _guard = Guard {
        node: node.clone(),
        volumes: vec![fresh.clone(), theirs.clone()],
    };
    let made = docker(&["volume", "create", &theirs]);
    assert!(made.status.success(), "{made:?}");

    let rt = DockerRuntime::connect(&berth_prereq::docker_host(), &node).expect("connect");
    let req = CreateRequest {
        name: format!("berth-test-vol-{id}"),
        spec: CreateSpec {
            // No such image: the create fails after the volumes were seen to.
            image: format!("sha256:{}", "0".repeat(64)),
            volumes: vec![
                Volume::parse(&format!("{fresh}:/data")).expect("volume"),
                Volume::parse(&format!("{theirs}:/theirs")).expect("volume"),
                Volume::parse("/tmp:/tmp").expect("volume"),
            ],
            ..CreateSpec::default()
        },
        labels: BTreeMap::new(),
    };
    match rt.create(&req).await {
        Err(RuntimeError::ImageNotFound { .. }) => {}
        other => panic!("expected the missing image, got {other:?}"),
    }
    assert_eq!(volume_label(&fresh).as_deref(), Some(node.as_str()));
    assert_eq!(volume_label(&theirs).as_deref(), Some(""));
    // A second create finds the volume and keeps it.
    let _ = rt.create(&req).await;
    assert_eq!(volume_label(&fresh).as_deref(), Some(node.as_str()));
}
