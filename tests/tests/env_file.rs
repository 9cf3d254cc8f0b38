//! `env_file` through berthctl, a real berthd and the real engine: a path
//! relative to the spec file is resolved by berthctl, berthd reads the file
//! and the container gets its values, while `show` and berthd's log never
//! hold one. The node (its own prefix and label) removes what it made when
//! dropped.

use std::time::Duration;

use berth_tests::bins::demo_image;
use berth_tests::node::{TestNode, docker};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn env_file_values_reach_the_container_and_nothing_else() {
    demo_image();
    let mut node = TestNode::new("envfile");
    node.start();
    let spec = node.spec_file(
        "web.yaml",
        "name: web\nimage: berth-demo:latest\ncommand: [\"serve\", \"--port\", \"8080\"]\n\
         update: {settle: 1s}\nenv: {MODE: spec}\nenv_file: web.env\n",
    );
    let dir = spec.parent().expect("the spec's dir");
    std::fs::write(
        dir.join("web.env"),
        "# the db\nDB_PASSWORD=envfile-s3cret\nMODE=from-the-file\n",
    )
    .expect("write env file");
    node.ctl_json(&["apply", &spec.display().to_string()]);
    node.wait_until("web COMPLETE", WAIT, |n| {
        n.ctl_json(&["show", "web"])
            .to_string()
            .contains("\"COMPLETE\"")
    });

    let c = node.container("web").expect("web's container");
    let out = docker(&["inspect", "--format", "{{json .Config.Env}}", &c.id]);
    let env = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(env.contains("\"DB_PASSWORD=envfile-s3cret\""), "{env}");
    assert!(env.contains("\"MODE=spec\""), "env: wins: {env}");

    let shown = node.ctl_json(&["show", "web"]).to_string();
    let expected = dir.join("web.env").display().to_string();
    assert!(shown.contains(&expected), "the resolved path: {shown}");
    for place in [shown, node.logs()] {
        assert!(!place.contains("envfile-s3cret"), "a value leaked: {place}");
        assert!(!place.contains("from-the-file"), "a value leaked: {place}");
    }
}
