//! A private systemd user manager per test, and a berthd node run by it
//! through the shipped units (`units/berthd.{service,socket}`) plus a test
//! drop-in.
//!
//! The manager runs without booting anything: in its own mount and PID
//! namespace (`unshare -m -p --fork --kill-child --mount-proc`), with a fresh
//! tmpfs on `/run/systemd` (so it does not see the host's), and its own
//! `XDG_RUNTIME_DIR` and `XDG_CONFIG_HOME` in a temp dir. `systemctl --user`
//! and `kill` run inside those namespaces (`nsenter -t <ns init> -p -m`): the
//! manager refuses peers from another PID namespace, and the PIDs it reports
//! are that namespace's. Killing the `unshare` process kills the namespace's
//! init (`--kill-child`) and with it every process of the namespace, so
//! nothing outlives the test, even when it panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bins::{bins, workspace_root};
use crate::node::{Ctr, docker, unique};

pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// Why a user manager cannot run here, if it cannot (`berth_prereq`'s
/// check: root, the manager, the namespace tools and a user dbus.socket).
pub fn unavailable() -> Option<String> {
    berth_prereq::Need::Systemd.missing()
}

/// Held by a systemd test while it runs: the tests take turns, across test
/// processes too (nextest runs each test in its own), so the watchdog test's
/// few-second deadline does not compete with the others for the CPU.
pub struct Serial {
    _in_process: std::sync::MutexGuard<'static, ()>,
    file: Option<std::fs::File>,
}

pub fn serial() -> Serial {
    static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let dir = crate::bins::target_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = std::fs::File::create(dir.join("berth-tests-systemd.lock"))
        .ok()
        .filter(|f| f.lock().is_ok());
    Serial {
        _in_process: guard,
        file,
    }
}

impl Drop for Serial {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.unlock();
        }
    }
}

/// One `systemd --user` in its own mount and PID namespace.
pub struct UserManager {
    dir: tempfile::TempDir,
    unshare: Option<Child>,
    /// Host pid of the namespace's init (the shell that runs systemd).
    ns_init: u32,
}

impl UserManager {
    pub fn start() -> UserManager {
        if let Some(why) = unavailable() {
            panic!("cannot run a systemd user manager: {why}");
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-sd-")
            .tempdir()
            .expect("temp dir");
        let runtime = dir.path().join("rt");
        std::fs::create_dir_all(&runtime).expect("runtime dir");
        set_mode(&runtime, 0o700);
        std::fs::create_dir_all(dir.path().join("config/systemd/user")).expect("unit dir");
        let log = std::fs::File::create(dir.path().join("manager.log")).expect("manager log");
        // The shell stays as the namespace's init (no exec), so the manager
        // is an ordinary process in it.
        let script = "mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd \
                      && mkdir -p /run/systemd/system && /lib/systemd/systemd --user";
        // setpriv: if the test process dies without running Drop (a
        // timeout, SIGKILL), unshare gets SIGKILL and the namespace goes too.
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--pdeathsig",
            "KILL",
            "--",
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ]);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        for k in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "INVOCATION_ID",
            "MANAGERPID",
        ] {
            cmd.env_remove(k);
        }
        for (k, v) in manager_env(dir.path()) {
            cmd.env(k, v);
        }
        if std::env::var_os("BERTH_TEST_SYSTEMD_DEBUG").is_some() {
            cmd.env("SYSTEMD_LOG_LEVEL", "debug")
                .env("SYSTEMD_LOG_TARGET", "console");
        }
        let mut unshare = cmd.spawn().expect("unshare runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        let ns_init = loop {
            if let Some(pid) = child_of(unshare.id()) {
                break pid;
            }
            if let Ok(Some(status)) = unshare.try_wait() {
                panic!(
                    "unshare exited ({status}):\n{}",
                    read(&dir.path().join("manager.log"))
                );
            }
            assert!(Instant::now() < deadline, "unshare started no child");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mgr = UserManager {
            dir,
            unshare: Some(unshare),
            ns_init,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if mgr.dir.path().join("rt/systemd/private").exists()
                && mgr.systemctl(&["show-environment"]).status.success()
            {
                return mgr;
            }
            assert!(
                Instant::now() < deadline,
                "the user manager did not answer within 30s:\n{}",
                mgr.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `$XDG_CONFIG_HOME/systemd/user`.
    pub fn unit_dir(&self) -> PathBuf {
        self.dir.path().join("config/systemd/user")
    }

    pub fn log(&self) -> String {
        read(&self.dir.path().join("manager.log"))
    }

    /// Runs `cmd args` inside the manager's namespaces, with its environment.
    pub fn ns_command(&self, cmd: &str, args: &[&str]) -> Output {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.ns_init.to_string(), "-p", "-m", "--", cmd])
            .args(args)
            .stdin(Stdio::null());
        for (k, v) in manager_env(self.dir.path()) {
            c.env(k, v);
        }
        output_within(&mut c, COMMAND_TIMEOUT)
    }

    pub fn systemctl(&self, args: &[&str]) -> Output {
        let mut full = vec!["--user", "--no-pager", "--no-ask-password"];
        full.extend_from_slice(args);
        self.ns_command("systemctl", &full)
    }

    /// `systemctl --user ARGS`, which must succeed.
    pub fn systemctl_ok(&self, args: &[&str]) -> String {
        let out = self.systemctl(args);
        assert!(
            out.status.success(),
            "systemctl --user {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl --user show -p A,B UNIT` as a map.
    pub fn show(&self, unit: &str, props: &[&str]) -> BTreeMap<String, String> {
        let p = props.join(",");
        let out = self.systemctl(&["show", "-p", &p, unit]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.show(unit, &[prop]).remove(prop).unwrap_or_default()
    }

    pub fn daemon_reload(&self) {
        self.systemctl_ok(&["daemon-reload"]);
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        // SIGKILL to unshare; --kill-child then kills the namespace's init,
        // and the kernel kills everything else in the namespace.
        if let Some(mut c) = self.unshare.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.ns_init.to_string()])
            .stderr(Stdio::null())
            .status();
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            let keep = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("placeholder temp dir"),
            );
            eprintln!("BERTH_TEST_KEEP: leaving {}", keep.keep().display());
        }
    }
}

fn manager_env(dir: &Path) -> Vec<(&'static str, String)> {
    let rt = dir.join("rt");
    vec![
        ("XDG_RUNTIME_DIR", rt.display().to_string()),
        ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
        (
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", rt.join("bus").display()),
        ),
    ]
}

/// The first child of `pid` (from /proc).
fn child_of(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok();
    if let Some(first) = children
        .as_deref()
        .and_then(|c| c.split_whitespace().next())
    {
        return first.parse().ok();
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let child: u32 = e.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        let ppid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        (ppid == pid).then_some(child)
    })
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The shipped unit files.
pub fn shipped_unit(name: &str) -> String {
    read(&workspace_root().join("units").join(name))
}

/// berthd run by a private user manager from the shipped units, with its own
/// node id, prefix, state dir and socket. Its containers are removed on drop.
pub struct SystemdNode {
    pub id: String,
    pub prefix: String,
    pub manager: UserManager,
    dir: tempfile::TempDir,
}

impl SystemdNode {
    /// Installs `berthd.service` and `berthd.socket` with a drop-in each and
    /// a valid config; starts nothing. `service_extra` is appended to the
    /// service drop-in's `[Service]` section.
    pub fn new(hint: &str, service_extra: &str) -> SystemdNode {
        let id = unique(hint);
        let manager = UserManager::start();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("specs")).expect("spec dir");
        let node = SystemdNode {
            prefix: format!("{id}-"),
            id,
            manager,
            dir,
        };
        node.write_config("");
        node.install_units(service_extra);
        node
    }

    fn install_units(&self, service_extra: &str) {
        let units = self.manager.unit_dir();
        std::fs::write(units.join("berthd.service"), shipped_unit("berthd.service"))
            .expect("write service");
        std::fs::write(units.join("berthd.socket"), shipped_unit("berthd.socket"))
            .expect("write socket");
        let service_d = units.join("berthd.service.d");
        std::fs::create_dir_all(&service_d).expect("drop-in dir");
        // What a user manager in a test cannot (or should not) do: the
        // system paths and the journal (there is none); ProtectSystem= and
        // PrivateTmp= would hide or freeze the test's dirs under /tmp; and
        // ProtectHome=, ProtectKernelTunables= and ProtectKernelLogs= fail
        // with 226/NAMESPACE inside this container (they cannot remount
        // /proc and /home here), and under ProtectControlGroups= the
        // engine's socket is not visible in the service's mount namespace
        // here. The rest of the hardening stays on.
        let log = self.log_path();
        let dropin = format!(
            "[Service]\n\
             ExecStart=\n\
             ExecStart={berthd} --config {config}\n\
             Environment=BERTH_LOG=info,berth=debug\n\
             StandardOutput=append:{log}\n\
             StandardError=append:{log}\n\
             ProtectSystem=no\n\
             ProtectHome=no\n\
             PrivateTmp=no\n\
             ProtectKernelTunables=no\n\
             ProtectKernelLogs=no\n\
             ProtectControlGroups=no\n\
             ReadWritePaths=\n\
             RuntimeDirectory=\n\
             StateDirectory=\n\
             {service_extra}\n",
            berthd = bins().berthd.display(),
            config = self.config_path().display(),
            log = log.display(),
        );
        std::fs::write(service_d.join("test.conf"), dropin).expect("write drop-in");
        let socket_d = units.join("berthd.socket.d");
        std::fs::create_dir_all(&socket_d).expect("drop-in dir");
        let dropin = format!(
            "[Socket]\nListenStream=\nListenStream={}\nSocketGroup=\n",
            self.socket().display()
        );
        std::fs::write(socket_d.join("test.conf"), dropin).expect("write drop-in");
        self.manager.daemon_reload();
    }

    /// Writes the node's config, with `extra` TOML appended.
    pub fn write_config(&self, extra: &str) {
        let toml = format!(
            "node_id = \"{}\"\nprefix = \"{}\"\nstate_dir = \"{}\"\nsocket = \"{}\"\nspec_dir = \"{}\"\n{}\n",
            self.id,
            self.prefix,
            self.dir.path().join("state").display(),
            self.socket().display(),
            self.dir.path().join("specs").display(),
            extra,
        );
        std::fs::write(self.config_path(), toml).expect("write config");
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
    pub fn logs(&self) -> String {
        read(&self.log_path())
    }

    /// Everything useful when a test fails.
    pub fn diagnostics(&self) -> String {
        let status = self
            .manager
            .systemctl(&["status", "berthd.service", "berthd.socket"]);
        format!(
            "--- systemctl status\n{}{}\n--- berthd log\n{}\n--- manager log (tail)\n{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr),
            self.logs(),
            tail(&self.manager.log(), 40),
        )
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut c = Command::new(&bins().berthctl);
        c.arg("--socket")
            .arg(self.socket())
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        output_within(&mut c, COMMAND_TIMEOUT)
    }

    pub fn ctl_ok(&self, args: &[&str]) -> String {
        crate::node::expect_ok(args, &self.ctl(args), || self.diagnostics())
    }

    /// Writes a spec file outside the spec dir and returns its path.
    pub fn spec_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write spec");
        p
    }

    /// `systemctl --user show` of berthd.service.
    pub fn service(&self, props: &[&str]) -> BTreeMap<String, String> {
        self.manager.show("berthd.service", props)
    }

    /// This node's containers, stopped ones included.
    pub fn containers(&self) -> Vec<Ctr> {
        let out = docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=io.berth.node={}", self.id),
            "--format",
            "{{json .}}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn container(&self, service: &str) -> Option<Ctr> {
        let name = format!("{}{service}", self.prefix);
        self.containers().into_iter().find(|c| c.name == name)
    }

    /// Waits until `f` holds (polling every 100 ms), or panics with diagnostics.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&SystemdNode) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for: {what}\n{}",
            self.diagnostics()
        );
    }
}

impl Drop for SystemdNode {
    fn drop(&mut self) {
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            let keep = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("placeholder temp dir"),
            );
            eprintln!(
                "BERTH_TEST_KEEP: leaving node {} and {}",
                self.id,
                keep.keep().display()
            );
            return;
        }
        // The manager (and berthd with it) goes first, then the containers.
        let _ = Command::new("kill")
            .args(["-KILL", &self.manager.ns_init.to_string()])
            .stderr(Stdio::null())
            .status();
        let ids: Vec<String> = self.containers().into_iter().map(|c| c.id).collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// How long a berthctl or systemctl call may take before the test fails
/// (longer than the unit's TimeoutStartSec=).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);

/// `cmd.output()`, killing the command and panicking after `timeout`.
fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run: {e}"));
    // Drain the pipes on threads so a chatty command cannot block.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `systemd-analyze verify` on copies of the shipped units, with
/// ExecStart pointed at the built berthd. Returns the problems it reported
/// about the units themselves (warnings about this machine are ignored).
pub fn verify_units() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let service = shipped_unit("berthd.service").replace(
        "ExecStart=/usr/local/bin/berthd",
        &format!("ExecStart={}", bins().berthd.display()),
    );
    std::fs::write(dir.path().join("berthd.service"), service).map_err(|e| e.to_string())?;
    std::fs::write(
        dir.path().join("berthd.socket"),
        shipped_unit("berthd.socket"),
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--recursive-errors=no"])
        .arg(dir.path().join("berthd.socket"))
        .arg(dir.path().join("berthd.service"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Problems in our files are reported as `<path>:<line>: ...` or
    // `berthd.<kind>: ...`.
    let ours = dir.path().display().to_string();
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(&ours) || l.starts_with("berthd."))
        .collect();
    if !out.status.success() || !problems.is_empty() {
        return Err(format!("systemd-analyze verify ({}):\n{text}", out.status));
    }
    Ok(())
}

// --- The D-Bus seam (berth-systemd) under a real user manager. -----------

/// `berth-systemd-probe` (the D-Bus seam's driver), built (debug) once per
/// test process.
pub fn systemd_probe() -> &'static Path {
    static PROBE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "berth-systemd",
                "--bin",
                "berth-systemd-probe",
            ])
            .current_dir(workspace_root())
            .status()
            .expect("cargo build runs");
        assert!(status.success(), "building berth-systemd-probe failed");
        crate::bins::target_dir().join("debug/berth-systemd-probe")
    })
}

impl UserManager {
    /// Like [`UserManager::ns_command`], but returns the running child, with
    /// stdout and stderr piped. The caller reads and reaps it; the namespace
    /// going away (on drop) kills it in any case.
    pub fn ns_spawn(&self, cmd: &str, args: &[&str]) -> Child {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.ns_init.to_string(), "-p", "-m", "--", cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in manager_env(self.dir.path()) {
            c.env(k, v);
        }
        c.spawn()
            .unwrap_or_else(|e| panic!("nsenter {cmd} does not run: {e}"))
    }

    /// Waits until systemd owns its name on the user bus (the first client
    /// starts dbus-daemon through `dbus.socket`, and the manager connects to
    /// it only then).
    pub fn wait_for_user_bus(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ns_command(
                "busctl",
                &["--user", "--no-pager", "status", "org.freedesktop.systemd1"],
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not appear on the user bus within 30s: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `berth-systemd-probe --user-bus ARGS` inside the namespaces.
    pub fn probe(&self, args: &[&str]) -> Output {
        let mut full = vec!["--user-bus"];
        full.extend_from_slice(args);
        let probe = systemd_probe().display().to_string();
        self.ns_command(&probe, &full)
    }

    /// Starts `berth-systemd-probe --user-bus ARGS` inside the namespaces.
    pub fn spawn_probe(&self, args: &[&str]) -> Child {
        let mut full = vec!["--user-bus"];
        full.extend_from_slice(args);
        let probe = systemd_probe().display().to_string();
        self.ns_spawn(&probe, &full)
    }
}

// --- Host units (after_units / requires_units) through berthd. ------------

impl SystemdNode {
    /// Writes a unit file into the manager's unit dir and reloads it.
    pub fn write_unit(&self, name: &str, body: &str) {
        std::fs::write(self.manager.unit_dir().join(name), body).expect("write unit");
        self.manager.daemon_reload();
    }

    /// Rewrites the config for berthd to reach the manager on its user bus
    /// (`user_bus = true`), with `extra` TOML appended, and waits until
    /// systemd is on that bus.
    pub fn use_user_bus(&self, extra: &str) {
        self.write_config(&format!("user_bus = true\n{extra}"));
        self.manager.wait_for_user_bus();
    }

    /// `berthctl show SERVICE`, as text.
    pub fn show(&self, service: &str) -> String {
        self.ctl_ok(&["show", service])
    }
}

// --- Transient units an operator makes, and whether systemd still holds them.

impl UserManager {
    /// `systemd-run --user --unit=UNIT ARGS...` (returns once systemd has
    /// accepted or refused the unit; the command keeps running in it).
    pub fn systemd_run(&self, unit: &str, argv: &[&str]) -> Output {
        let unit_arg = format!("--unit={unit}");
        let mut full = vec!["--user", "--quiet", unit_arg.as_str()];
        full.extend_from_slice(argv);
        self.ns_command("systemd-run", &full)
    }

    /// Whether systemd has `unit` loaded at all, asked without loading it
    /// (`list-units --all` lists only loaded units; `show` would load it).
    pub fn is_loaded(&self, unit: &str) -> bool {
        let out = self.systemctl(&["list-units", "--all", "--plain", "--no-legend", unit]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(unit))
    }

    /// Waits up to `timeout` for systemd to unload `unit`; false if it is
    /// still loaded then.
    pub fn unloaded_within(&self, unit: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_loaded(unit) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
