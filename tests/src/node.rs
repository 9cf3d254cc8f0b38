//! `TestNode`: one berthd with its own node id, prefix, state dir, spec dir
//! and socket, driven through the real `berthctl`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bins::bins;

/// A short random id, unique enough for parallel tests on one engine.
pub fn unique(hint: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    let hint: String = hint
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("bt{hint}{:08x}", h.finish() as u32)
}

pub struct TestNode {
    pub id: String,
    pub prefix: String,
    pub docker_host: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra_config: String,
}

/// A container as `docker ps` shows it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ctr {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Names")]
    pub name: String,
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Labels")]
    pub labels: String,
}

impl Ctr {
    pub fn label(&self, key: &str) -> Option<String> {
        self.labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
    }
}

impl TestNode {
    pub fn new(hint: &str) -> TestNode {
        let id = unique(hint);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("specs")).expect("spec dir");
        TestNode {
            prefix: format!("{id}-"),
            id,
            docker_host: berth_prereq::docker_host(),
            dir,
            child: None,
            extra_config: String::new(),
        }
    }

    /// Talk to the engine through `host` (e.g. an `EngineProxy`).
    pub fn with_docker_host(mut self, host: String) -> Self {
        self.docker_host = host;
        self
    }

    /// Extra TOML appended to the generated config.
    pub fn with_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }

    /// Replaces the extra TOML and rewrites the config file now (for a
    /// SIGHUP to read).
    pub fn set_config(&mut self, toml: &str) {
        self.extra_config = format!("{toml}\n");
        self.write_config();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn spec_dir(&self) -> PathBuf {
        self.dir.path().join("specs")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("berthd.toml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berthd.log")
    }

    fn write_config(&self) {
        let toml = format!(
            "node_id = \"{}\"\nprefix = \"{}\"\nstate_dir = \"{}\"\nsocket = \"{}\"\nspec_dir = \"{}\"\ndocker_host = \"{}\"\n{}",
            self.id,
            self.prefix,
            self.state_dir().display(),
            self.socket().display(),
            self.spec_dir().display(),
            self.docker_host,
            self.extra_config
        );
        std::fs::write(self.config_path(), toml).expect("write config");
    }

    /// Starts berthd and waits until its API answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(&bins().berthd)
            .arg("--config")
            .arg(self.config_path())
            .env("BERTH_LOG", "info,berth=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("berthd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("berthd exited early ({status}):\n{}", self.logs());
            }
            if self.ctl(&["status"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not answer within 30s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts berthd expecting it to refuse to start: waits (up to 30 s)
    /// for its exit and returns the status and what it logged.
    pub fn start_expecting_exit(&mut self) -> (ExitStatus, String) {
        assert!(self.child.is_none(), "already running");
        self.write_config();
        let mut child = Command::new(&bins().berthd)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berthd starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                let out = child.wait_with_output().expect("berthd output");
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                return (out.status, text);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthd was expected to exit but still ran after 30s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for the exit.
    pub fn term(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("berthd running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("berthd ignored SIGTERM for 15s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGHUP.
    pub fn hup(&self) {
        let pid = self.pid().expect("running");
        let _ = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status();
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Runs berthctl against this node.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(&bins().berthctl)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("berthctl runs")
    }

    /// Runs berthctl, expects success, returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        expect_ok(args, &self.ctl(args), || {
            format!("berthd log:\n{}", self.logs())
        })
    }

    /// `GET path` on the node's local socket, for routes berthctl has no
    /// verb for: (status, body).
    pub fn api_get(&self, path: &str) -> (u16, String) {
        use http_body_util::{BodyExt, Empty};
        use hyper::body::Bytes;
        let socket = self.socket();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let stream = tokio::net::UnixStream::connect(&socket)
                .await
                .expect("berthd's socket accepts");
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("HTTP handshake");
            tokio::spawn(conn);
            let req = hyper::Request::get(path)
                .header("host", "berthd")
                .body(Empty::<Bytes>::new())
                .expect("a request");
            let resp = sender.send_request(req).await.expect("an answer");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("a body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Runs `berthctl --json ...`, expects success, parses stdout.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl_ok(&full);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("berthctl {args:?} --json: {e}:\n{out}"))
    }

    /// Writes a spec file into a scratch dir (not the spec dir) and returns its path.
    pub fn spec_file(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.dir.path().join("apply");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write spec");
        p
    }

    /// This node's containers, stopped ones included.
    pub fn containers(&self) -> Vec<Ctr> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &format!("label=io.berth.node={}", self.id),
                "--format",
                "{{json .}}",
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn container(&self, service: &str) -> Option<Ctr> {
        let name = format!("{}{service}", self.prefix);
        self.containers().into_iter().find(|c| c.name == name)
    }

    /// Waits until `f` holds (polling every 100 ms), or panics with the log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut(&TestNode) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for: {what}\nberthd log:\n{}",
            self.logs()
        );
    }
}

/// stdout of a berthctl run that must have succeeded; on failure, panics
/// with both streams and `diagnostics()` (berthd's log, unit state, ...).
pub fn expect_ok(args: &[&str], out: &Output, diagnostics: impl FnOnce() -> String) -> String {
    assert!(
        out.status.success(),
        "berthctl {args:?} failed ({}):\nstdout: {}\nstderr: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        diagnostics()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker ...`, returning the output.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            eprintln!(
                "BERTH_TEST_KEEP: leaving node {} and {}",
                self.id,
                self.dir.path().display()
            );
            let _ = self.dir.path();
            return;
        }
        // A create the killed berthd had sent may still land in the engine
        // after the first look (seen: a test's PUT answered 202 just before
        // its drop): look again until a look finds nothing.
        for pass in 0..4 {
            let ids: Vec<String> = self.containers().into_iter().map(|c| c.id).collect();
            if ids.is_empty() && pass > 0 {
                break;
            }
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = docker(&args);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        // Images berth built for this node's services.
        let out = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            &format!("reference=berth-build/{}*", self.prefix),
        ]);
        for image in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = docker(&["rmi", image]);
        }
    }
}

/// A `FROM scratch` image holding only the host's static busybox, removed
/// when dropped (after the node that used it: declare it first).
pub struct Busybox {
    pub tag: String,
    _context: tempfile::TempDir,
}

impl Busybox {
    pub fn build(id: &str) -> Busybox {
        let context = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", context.path().join("busybox")).expect("copy busybox");
        // A file unique to this build: no layer is shared with another
        // test's image, so removing ours removes only ours.
        std::fs::write(context.path().join("berth-test-id"), id).expect("write id");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY berth-test-id /berth-test-id\nCOPY busybox /bin/busybox\n",
        )
        .expect("write Dockerfile");
        let tag = format!("berth-test-busybox:{id}");
        let out = docker(&[
            "build",
            "--quiet",
            "-t",
            &tag,
            &context.path().display().to_string(),
        ]);
        assert!(
            out.status.success(),
            "docker build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Busybox {
            tag,
            _context: context,
        }
    }
}

impl Drop for Busybox {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag]);
    }
}
