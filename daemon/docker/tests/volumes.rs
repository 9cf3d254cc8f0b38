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

/// An image with no files at all (`docker import` of an empty tar): enough
/// for a container to be created around a volume, never started.
fn empty_image(tag: &str) -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("tar cf - --files-from /dev/null | docker import - {tag}"),
        ])
        .output()
        .expect("docker import");
    assert!(out.status.success(), "{out:?}");
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `berthctl delete --volumes` rests on this: only a volume with this node's
/// label is ever removed, never one a container still uses, never one made
/// by hand or by another node.
#[tokio::test]
async fn only_this_nodes_unused_volumes_are_removed() {
    berth_prereq::require!(Engine);
    let id = unique();
    let node = format!("test-volrm-{id}");
    let ours = format!("berth-test-ours-{id}");
    let unlabelled = format!("berth-test-unlabelled-{id}");
    let foreign = format!("berth-test-foreign-{id}");
    let tag = format!("berth-test-empty:{id}");
    let _guard = Guard {
        node: node.clone(),
        volumes: vec![ours.clone(), unlabelled.clone(), foreign.clone()],
    };
    struct Image(String);
    impl Drop for Image {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["image", "rm", "-f", &self.0])
                .output();
        }
    }
    let _image = Image(tag.clone());
    assert!(docker(&["volume", "create", &unlabelled]).status.success());
    let made = docker(&[
        "volume",
        "create",
        "--label",
        &format!("{LABEL_NODE}=another-node-{id}"),
        &foreign,
    ]);
    assert!(made.status.success(), "{made:?}");

    let rt = DockerRuntime::connect(&berth_prereq::docker_host(), &node).expect("connect");
    let image = empty_image(&tag);
    let req = CreateRequest {
        name: format!("berth-test-volrm-{id}"),
        spec: CreateSpec {
            image,
            command: Some(vec!["/nothing".into()]),
            volumes: vec![Volume::parse(&format!("{ours}:/data")).expect("volume")],
            ..CreateSpec::default()
        },
        labels: BTreeMap::new(),
    };
    let container = rt.create(&req).await.expect("create");
    assert_eq!(volume_label(&ours).as_deref(), Some(node.as_str()));

    let listed: Vec<String> = rt
        .list_volumes()
        .await
        .expect("list volumes")
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&ours),
        "only this node's volumes are listed"
    );
    let seen = rt.inspect_volume(&foreign).await.expect("inspect");
    assert_eq!(
        seen.and_then(|v| v.node),
        Some(format!("another-node-{id}"))
    );
    assert_eq!(
        rt.inspect_volume(&unlabelled)
            .await
            .expect("inspect")
            .and_then(|v| v.node),
        None
    );
    assert_eq!(
        rt.inspect_volume(&format!("berth-test-none-{id}"))
            .await
            .expect("inspect"),
        None
    );

    // In use by a container: kept, whatever the label.
    match rt.remove_volume(&ours).await {
        Err(RuntimeError::Refused { message, .. }) => {
            assert!(message.contains("in use"), "{message}");
        }
        other => panic!("a volume in use must stay, got {other:?}"),
    }
    assert!(volume_label(&ours).is_some(), "still there");

    // Not this node's: refused before the engine is asked to remove it.
    for name in [&unlabelled, &foreign] {
        match rt.remove_volume(name).await {
            Err(RuntimeError::Refused { op, .. }) => assert_eq!(op, "remove volume"),
            other => panic!("{name} must stay, got {other:?}"),
        }
        assert!(volume_label(name).is_some(), "{name} is still there");
    }
    // A name that would leave /volumes/ in the URL never reaches the engine.
    match rt
        .remove_volume(&format!("../containers/{container}"))
        .await
    {
        Err(RuntimeError::Refused { message, .. }) => {
            assert!(message.contains("not a valid volume name"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        docker(&["container", "inspect", &container])
            .status
            .success(),
        "the container is untouched"
    );

    // Once the container is gone, this node's volume goes; a missing one is fine.
    rt.remove(&container).await.expect("remove container");
    rt.remove_volume(&ours).await.expect("remove volume");
    assert_eq!(volume_label(&ours), None, "removed");
    rt.remove_volume(&ours)
        .await
        .expect("removing a missing volume is fine");
}
