//! The engine test harness: a node of a test's own on a real container
//! engine, with the busybox test image built, cleaned up even when the test
//! panics.
//!
//! The engine is a parameter ([`Engine`]: an endpoint, `$DOCKER_HOST` or the
//! default socket unless told otherwise) and so is the runtime under test
//! (any [`Runtime`], made by the caller from the endpoint and the node id),
//! so the same tests can run against a second engine (Podman's
//! Docker-compatible socket, say).
//!
//! Every [`Fixture`] has its own random node id and container name prefix,
//! builds its test image through [`Runtime::build`], and holds a [`Guard`]
//! that removes (with the docker CLI pointed at the same engine, so it also
//! works while panicking) every container carrying its node label or its
//! test-owner label, then the images it tagged.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_core::runtime::{
    CreateRequest, CreateSpec, LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SPEC_HASH,
    ObservedContainer, Runtime,
};
use berth_core::spec::RestartPolicy;
use serde_json::Value;

/// Marks containers a test made behind berth's back, so the guard finds them.
pub const OWNER_LABEL: &str = "io.berth-test.owner";

/// The first step copies a file unique to the build, so no two tests (nor
/// anyone else's builds) share a cached layer chain: removing our tag then
/// removes our whole chain and cannot pull a parent from under another build.
pub const BUSYBOX_DOCKERFILE: &str = "FROM scratch\n\
COPY berth-test-id /berth-test-id\n\
COPY busybox /bin/busybox\n\
ENTRYPOINT [\"/bin/busybox\"]\n\
CMD [\"sleep\", \"3600\"]\n";

/// 16 hex digits, different on every call (node ids, tags, build ids).
pub fn random_hex() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// A build context in `dir`: `/bin/busybox`, `dockerfile` and a file unique
/// to this build (`berth-test-id`).
pub fn write_context(dir: &Path, dockerfile: &str) {
    std::fs::copy("/bin/busybox", dir.join("busybox"))
        .expect("copy /bin/busybox into the build context (apt-get install busybox-static)");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    std::fs::write(dir.join("berth-test-id"), random_hex()).expect("write the build id");
}

/// The engine a test runs against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// What berth's client connects to (`unix:///...`, `tcp://...`), and
    /// what the CLI gets as `--host`.
    pub endpoint: String,
}

impl Default for Engine {
    /// `$DOCKER_HOST`, else the default socket ([`berth_prereq::docker_host`]).
    fn default() -> Engine {
        Engine::at(berth_prereq::docker_host())
    }
}

impl Engine {
    pub fn at(endpoint: impl Into<String>) -> Engine {
        Engine {
            endpoint: endpoint.into(),
        }
    }

    /// The docker CLI against this engine.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(&self.endpoint)
            .args(args)
            .output()
            .expect("run the docker CLI")
    }

    /// Runs the docker CLI and returns its trimmed stdout; panics on failure.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "docker --host {} {args:?} failed: {}",
            self.endpoint,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker inspect` of one object, as JSON.
    pub fn inspect(&self, id: &str) -> Value {
        let text = self.cli_ok(&["inspect", id]);
        let v: Value = serde_json::from_str(&text).expect("inspect json");
        v[0].clone()
    }
}

/// Cleans up after a test, even one that panicked.
pub struct Guard {
    engine: Engine,
    node: String,
    images: Mutex<Vec<String>>,
}

impl Guard {
    pub fn new(engine: Engine, node: &str) -> Guard {
        Guard {
            engine,
            node: node.to_string(),
            images: Mutex::new(Vec::new()),
        }
    }

    /// `tag` is removed (not forced) when the guard drops.
    pub fn track_image(&self, tag: &str) {
        self.images.lock().expect("lock").push(tag.to_string());
    }

    /// The tags it will remove, in the order they were tracked.
    pub fn images(&self) -> Vec<String> {
        self.images.lock().expect("lock").clone()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Never panics: it runs while a failed test unwinds.
        let cli = |args: &[&str]| {
            Command::new("docker")
                .arg("--host")
                .arg(&self.engine.endpoint)
                .args(args)
                .output()
        };
        let mut ids = Vec::new();
        for filter in [
            format!("label={LABEL_NODE}={}", self.node),
            format!("label={OWNER_LABEL}={}", self.node),
        ] {
            if let Ok(out) = cli(&["ps", "-aq", "--no-trunc", "--filter", &filter]) {
                ids.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .map(str::to_string),
                );
            }
        }
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = cli(&args);
        }
        let images = self.images.lock().map(|i| i.clone()).unwrap_or_default();
        for tag in images {
            // Not forced: only our tag goes; an image another test shares stays.
            let _ = cli(&["rmi", &tag]);
        }
    }
}

/// A node of our own on the engine, with the busybox test image built.
pub struct Fixture<R> {
    /// The runtime under test, connected as this node.
    pub rt: R,
    pub engine: Engine,
    pub node: String,
    pub prefix: String,
    pub image_tag: String,
    pub image_id: String,
    pub guard: Guard,
    _dir: tempfile::TempDir,
}

impl<R: Runtime> Fixture<R> {
    /// A new node on `engine`; `connect(endpoint, node_id)` makes the runtime
    /// under test (e.g. `DockerRuntime::connect`). Builds the busybox image
    /// through it.
    pub async fn new(engine: Engine, connect: impl FnOnce(&str, &str) -> R) -> Fixture<R> {
        let node = format!("test-{}", random_hex());
        let prefix = format!("berth-test-{}", &node[5..13]);
        let guard = Guard::new(engine.clone(), &node);
        let rt = connect(&engine.endpoint, &node);
        let dir = tempfile::tempdir().expect("tempdir");
        write_context(dir.path(), BUSYBOX_DOCKERFILE);
        let image_tag = format!("berth-test-busybox:{}", &node[5..]);
        guard.track_image(&image_tag);
        let context = dir.path().to_str().expect("utf-8 path").to_string();
        let image_id = rt
            .build(&context, None, &image_tag)
            .await
            .expect("build the busybox test image");
        assert!(image_id.starts_with("sha256:"), "{image_id}");
        Fixture {
            rt,
            engine,
            node,
            prefix,
            image_tag,
            image_id,
            guard,
            _dir: dir,
        }
    }

    /// A container name under this node's prefix.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// A create request for `service` with berth's labels (generation 3).
    pub fn request(&self, suffix: &str, service: &str, spec: CreateSpec) -> CreateRequest {
        CreateRequest {
            name: self.name(suffix),
            spec,
            labels: BTreeMap::from([
                (LABEL_SERVICE.to_string(), service.to_string()),
                (LABEL_SPEC_HASH.to_string(), format!("v1:{service}-hash")),
                (LABEL_GENERATION.to_string(), "3".to_string()),
            ]),
        }
    }

    /// The test image running `command`, stopped within a second, never
    /// restarted.
    pub fn spec(&self, command: &[&str]) -> CreateSpec {
        CreateSpec {
            image: self.image_id.clone(),
            command: Some(command.iter().map(|s| s.to_string()).collect()),
            stop_timeout: Some(Duration::from_secs(1)),
            restart: RestartPolicy::Never,
            ..Default::default()
        }
    }

    /// A container the test starts behind berth's back (no node label, or
    /// another node's), cleaned up by the guard.
    pub fn foreign(&self, suffix: &str, extra_labels: &[&str]) -> String {
        let name = self.name(suffix);
        let owner = format!("{OWNER_LABEL}={}", self.node);
        let mut args = vec!["run", "-d", "--name", &name, "--label", &owner];
        for l in extra_labels {
            args.push("--label");
            args.push(l);
        }
        args.extend([self.image_tag.as_str(), "sleep", "3600"]);
        self.engine.cli_ok(&args)
    }

    /// The container with this id, as the runtime lists it.
    pub async fn observed(&self, id: &str) -> Option<ObservedContainer> {
        self.rt
            .list()
            .await
            .expect("list")
            .into_iter()
            .find(|c| c.id == id)
    }

    /// Waits (up to 30 s) until the runtime lists `id` in a state `ok` accepts.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        ok: impl Fn(&ObservedContainer) -> bool,
    ) -> ObservedContainer {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.observed(id).await;
            if let Some(c) = c.as_ref().filter(|c| ok(c)) {
                return c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
