//! `TestRegistry`: a real image registry (Debian's `docker-registry`, the
//! CNCF distribution registry) on 127.0.0.1 with its own storage, for the
//! pull tests. The engine pulls from 127.0.0.0/8 over plain HTTP without any
//! `insecure-registries` setting.
//!
//! [`TestRegistry::start_with_auth`] starts one that wants basic auth
//! (htpasswd); its pushes log in with a docker config dir of its own, never
//! the machine's `~/.docker/config.json`.
//!
//! It is stopped (killed and waited for) when dropped, even when the test
//! panics. Images pushed to it are untagged locally right away, so berth has
//! to pull them; [`PulledImages`] removes what a test tagged or pulled.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::node::{docker, unique};

/// What is pushed: the integration tests' demo image.
pub const DEMO_IMAGE: &str = "berth-demo:latest";

pub struct TestRegistry {
    /// `127.0.0.1:PORT`: what image references start with.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    auth: Option<Auth>,
}

/// A registry's htpasswd auth, and the user its pushes log in as.
#[derive(Clone)]
struct Auth {
    /// The htpasswd file's content (bcrypt lines: all the registry takes).
    htpasswd: String,
    user: String,
    password: String,
}

/// An image pushed into a [`TestRegistry`] and no longer tagged in the engine.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:PORT/NAME:TAG`.
    pub reference: String,
    /// `127.0.0.1:PORT/NAME`.
    pub repository: String,
    /// `sha256:...`, as the push reported it.
    pub digest: String,
}

impl TestRegistry {
    /// Starts a registry on a free port and waits until `GET /v2/` answers 200.
    pub fn start() -> TestRegistry {
        TestRegistry::start_inner(None)
    }

    /// Starts a registry that wants basic auth for everything: `htpasswd`
    /// is the htpasswd file's content (bcrypt: `user:$2y$...`, the only
    /// hash the registry accepts); pushes log in as `user` with `password`.
    /// Ready once `GET /v2/` answers 401.
    pub fn start_with_auth(htpasswd: &str, user: &str, password: &str) -> TestRegistry {
        TestRegistry::start_inner(Some(Auth {
            htpasswd: htpasswd.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }))
    }

    fn start_inner(auth: Option<Auth>) -> TestRegistry {
        // The port is free when looked up; another process may take it
        // before the registry binds it, so a failed start tries another.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut registry = TestRegistry {
                addr,
                dir: tempfile::Builder::new()
                    .prefix("berth-registry-")
                    .tempdir()
                    .expect("temp dir"),
                child: None,
                auth: auth.clone(),
            };
            match registry.spawn() {
                Ok(()) => return registry,
                Err(e) => last = e,
            }
        }
        panic!("docker-registry did not start: {last}");
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// What the registry wrote (for a failure's message).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The docker CLI's config dir for this registry's pushes (`--config`).
    fn docker_config_dir(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let storage = self.dir.path().join("storage");
        std::fs::create_dir_all(&storage).map_err(|e| format!("mkdir: {e}"))?;
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n",
            storage.display(),
            self.addr
        );
        if let Some(auth) = &self.auth {
            let htpasswd = self.dir.path().join("htpasswd");
            std::fs::write(&htpasswd, &auth.htpasswd).map_err(|e| format!("htpasswd: {e}"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(self.config_path(), config).map_err(|e| format!("write config: {e}"))?;
        let log = std::fs::File::create(self.log_path()).map_err(|e| format!("log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("log fd: {e}"))?;
        let child = Command::new(berth_prereq::REGISTRY_BIN)
            .arg("serve")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", berth_prereq::REGISTRY_BIN))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("exited early ({status}):\n{}", self.logs()));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "GET /v2/ not answered within 20s:\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /v2/` answers: 200, or 401 from a registry that wants auth.
    pub fn answers(&self) -> bool {
        let Ok(addr) = self.addr.parse::<SocketAddr>() else {
            return false;
        };
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let status = if self.auth.is_some() { "401" } else { "200" };
        answer.starts_with(format!("HTTP/1.1 {status}").as_bytes())
            || answer.starts_with(format!("HTTP/1.0 {status}").as_bytes())
    }

    /// `docker --config DIR login` to this registry, into the registry's
    /// own config dir (not `~/.docker`); returns the dir's `--config` args.
    fn login(&self, auth: &Auth) -> Vec<String> {
        let dir = self.docker_config_dir();
        std::fs::create_dir_all(&dir).expect("docker config dir");
        // An entry already there keeps the CLI from picking a credential
        // store of the machine's (it would keep the password outside the file).
        let config = dir.join("config.json");
        if !config.exists() {
            std::fs::write(&config, "{\"auths\": {\"berth-test.invalid\": {}}}")
                .expect("docker config");
        }
        let args = vec!["--config".to_string(), dir.display().to_string()];
        let mut child = Command::new("docker")
            .args(&args)
            .args([
                "login",
                &self.addr,
                "--username",
                &auth.user,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker login runs");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(auth.password.as_bytes())
                .expect("password to docker login");
        }
        let out = child.wait_with_output().expect("docker login");
        assert!(
            out.status.success(),
            "docker login {}: {}{}\nregistry log:\n{}",
            self.addr,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        args
    }

    /// Starts the registry again after [`TestRegistry::stop`], on the same
    /// address with the same storage: what it held, it serves again.
    pub fn start_again(&mut self) {
        if let Err(e) = self.spawn() {
            panic!("docker-registry did not start again on {}: {e}", self.addr);
        }
    }

    /// Kills the registry and waits for it (its storage stays until drop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pushes the demo image as `<addr>/<unique name>:<tag>`, then removes
    /// that tag from the engine (the demo image keeps its own), so only the
    /// registry has it. `images` learns the reference first, so it goes even
    /// when the push fails half way.
    pub fn push_demo(&self, hint: &str, tag: &str, images: &mut PulledImages) -> Pushed {
        let repository = format!("{}/{}", self.addr, unique(hint));
        let reference = format!("{repository}:{tag}");
        images.add(&reference);
        let out = docker(&["tag", DEMO_IMAGE, &reference]);
        assert!(
            out.status.success(),
            "docker tag: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pushed = self.push_tagged(&repository, &reference, images);
        assert!(
            !docker(&["image", "inspect", &reference]).status.success(),
            "{reference} is still tagged in the engine"
        );
        pushed
    }

    /// Pushes `reference` (tagged in the engine, in `repository`), notes its
    /// `repository@digest` in `images`, and untags it in the engine.
    pub fn push_tagged(
        &self,
        repository: &str,
        reference: &str,
        images: &mut PulledImages,
    ) -> Pushed {
        let mut args = match &self.auth {
            Some(auth) => self.login(auth),
            None => Vec::new(),
        };
        args.extend(["push".to_string(), reference.to_string()]);
        let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "docker push {reference}: {text}{}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        // `TAG: digest: sha256:... size: N`
        let digest = text
            .split_whitespace()
            .skip_while(|w| *w != "digest:")
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no digest in the push's output: {text}"));
        assert!(digest.starts_with("sha256:"), "{digest}");
        images.add(&format!("{repository}@{digest}"));
        images.remove_now(reference);
        Pushed {
            reference: reference.to_string(),
            repository: repository.to_string(),
            digest,
        }
    }
}

/// Builds the demo image with the label `io.berth-test.variant=VARIANT`
/// (an image id of its own) and, when `blob` is not 0, a layer of that
/// many random bytes a pull must download; tags it `reference` (which
/// `images` learns first) and returns its image id.
pub fn build_variant(
    reference: &str,
    variant: &str,
    blob: usize,
    images: &mut PulledImages,
) -> String {
    images.add(reference);
    let context = tempfile::tempdir().expect("a build context");
    let mut dockerfile = format!("FROM {DEMO_IMAGE}\nLABEL io.berth-test.variant=\"{variant}\"\n");
    if blob > 0 {
        let mut bytes = vec![0u8; blob];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .expect("random bytes");
        std::fs::write(context.path().join("blob"), bytes).expect("write the blob");
        dockerfile.push_str("COPY blob /blob\n");
    }
    std::fs::write(context.path().join("Dockerfile"), dockerfile).expect("write the Dockerfile");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", reference])
        .arg(context.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build runs");
    assert!(
        out.status.success(),
        "docker build {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = docker(&["image", "inspect", reference, "--format", "{{.Id}}"]);
    assert!(out.status.success(), "docker image inspect {reference}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on at the moment of asking.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// References a test tagged or made the engine pull: untagged when dropped
/// (never forced, never by pattern: only these), after the node whose
/// containers used them (declare it before the node). The demo image
/// itself stays: its own tag holds it.
#[derive(Debug, Default)]
pub struct PulledImages {
    refs: Vec<String>,
}

impl PulledImages {
    pub fn new() -> PulledImages {
        PulledImages::default()
    }

    pub fn add(&mut self, reference: &str) {
        if !self.refs.iter().any(|r| r == reference) {
            self.refs.push(reference.to_string());
        }
    }

    /// Untags `reference` in the engine now (it stays on the list, in case
    /// it is pulled again).
    pub fn remove_now(&self, reference: &str) {
        let out = docker(&["rmi", reference]);
        assert!(
            out.status.success(),
            "docker rmi {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PulledImages {
    fn drop(&mut self) {
        for reference in self.refs.iter().rev() {
            // Absent already is fine: only what is there is untagged.
            if docker(&["image", "inspect", reference]).status.success() {
                let _ = docker(&["rmi", reference]);
            }
        }
    }
}
