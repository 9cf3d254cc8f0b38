//! The binaries and images the tests need, built once per test process and
//! serialized across processes with a file lock.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub use berth_prereq::{locked, target_dir, workspace_root};

pub struct Bins {
    pub berthd: PathBuf,
    pub berthctl: PathBuf,
}

/// `berthd` and `berthctl`, built (debug) if needed.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        locked("berth-tests-bins", || {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "berthd", "-p", "berthctl"])
                .current_dir(workspace_root())
                .status()
                .expect("cargo build runs");
            assert!(status.success(), "building berthd and berthctl failed");
        });
        let dir = target_dir().join("debug");
        Bins {
            berthd: dir.join("berthd"),
            berthctl: dir.join("berthctl"),
        }
    })
}

/// Makes sure `berth-demo:latest` is in the engine (`cargo xtask images`,
/// which skips the build when the image is current).
pub fn demo_image() {
    if let Some(why) = berth_prereq::Need::DemoImage.missing() {
        panic!("the demo image berth-demo:latest is not there: {why}");
    }
}
