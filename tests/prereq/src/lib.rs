//! What berth's tests need from outside the repository, and the one rule for
//! when it is missing.
//!
//! The rule: a test that needs a [`Need`] starts with [`require!`]. Where the
//! need is met, the test runs. Where it is not:
//! - outside CI, the test returns at once (it passes as "skipped"), prints
//!   `SKIPPED <test>: <what> (<why>)` and appends a line to the skip log
//!   (`$BERTH_SKIP_LOG`; `cargo xtask test` sets it and prints one summary
//!   line per missing thing at the end, e.g.
//!   `== corpus: 7 tests skipped (/x/shared/corpus/heat missing)`);
//! - in CI (`CI` set and non-empty, as `.ci/run` exports), the test fails,
//!   naming what is missing and how to install it: a CI run that skipped
//!   half its tests must not look green.
//!
//! Everything here is read from the environment the way the tests use it:
//! the engine at `$DOCKER_HOST` (else `unix:///var/run/docker.sock`), the
//! corpus at `$BERTH_CORPUS` (else `<workspace>/../shared/corpus`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// Something from outside the repository that some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// A Docker engine answering at `$DOCKER_HOST` (default
    /// `unix:///var/run/docker.sock`).
    Engine,
    /// `/bin/busybox`, static (Debian's `busybox-static`): the engine tests
    /// build a `FROM scratch` image around it.
    Busybox,
    /// The demo image `berth-demo:latest` in the engine: `cargo xtask test`
    /// builds it from `images/demo` (a static binary: the host's Rust target
    /// with `+crt-static`, which needs glibc's static libraries).
    DemoImage,
    /// A private `systemd --user`: root, `/lib/systemd/systemd`, `setpriv`,
    /// `unshare`, `nsenter`, `systemctl`, `systemd-analyze`, and a user
    /// `dbus.socket` (Debian's `systemd`, `dbus-user-session`,
    /// `util-linux`).
    Systemd,
    /// The shared corpus of real TripleO, paunch and Heat files (see
    /// [`corpus_root`]).
    Corpus,
    /// `/usr/bin/docker-registry` (Debian's `docker-registry`, the CNCF
    /// distribution registry): the pull tests serve images from it.
    Registry,
}

impl Need {
    /// The name the summary line uses.
    pub fn name(self) -> &'static str {
        match self {
            Need::Engine => "docker engine",
            Need::Busybox => "busybox",
            Need::DemoImage => "demo image",
            Need::Systemd => "systemd",
            Need::Corpus => "corpus",
            Need::Registry => "docker-registry",
        }
    }

    /// How to get it, for the failure in CI.
    pub fn fix(self) -> &'static str {
        match self {
            Need::Engine => {
                "start a Docker engine, or point DOCKER_HOST at one (unix:///path or tcp://host:port)"
            }
            Need::Busybox => "apt-get install busybox-static",
            Need::DemoImage => {
                "run `cargo xtask images` (needs the engine and glibc's static libraries: apt-get install libc6-dev)"
            }
            Need::Systemd => {
                "run as root with apt-get install systemd dbus-user-session util-linux"
            }
            Need::Corpus => {
                "put the shared corpus at ../shared/corpus beside the repository, or set BERTH_CORPUS to it"
            }
            Need::Registry => "apt-get install docker-registry",
        }
    }

    /// What must be there before this can be: the demo image needs the
    /// engine, and a missing engine is reported as such.
    fn implied(self) -> &'static [Need] {
        match self {
            Need::DemoImage => &[Need::Engine, Need::DemoImage],
            Need::Engine => &[Need::Engine],
            Need::Busybox => &[Need::Busybox],
            Need::Systemd => &[Need::Systemd],
            Need::Corpus => &[Need::Corpus],
            Need::Registry => &[Need::Registry],
        }
    }

    const ALL: [Need; 6] = [
        Need::Engine,
        Need::Busybox,
        Need::DemoImage,
        Need::Systemd,
        Need::Corpus,
        Need::Registry,
    ];

    /// Why it is missing here, or `None` when it is present. Looked at once
    /// per test process.
    pub fn missing(self) -> Option<String> {
        static SEEN: [OnceLock<Option<String>>; 6] = [const { OnceLock::new() }; 6];
        let i = Need::ALL.iter().position(|n| *n == self).unwrap_or(0);
        SEEN[i]
            .get_or_init(|| match self {
                Need::Engine => engine_missing(),
                Need::Busybox => {
                    (!Path::new("/bin/busybox").is_file()).then(|| "/bin/busybox missing".into())
                }
                Need::DemoImage => demo_image_missing(),
                Need::Systemd => systemd_missing(),
                Need::Corpus => corpus_missing(&corpus_root()),
                Need::Registry => {
                    (!Path::new(REGISTRY_BIN).is_file()).then(|| format!("{REGISTRY_BIN} missing"))
                }
            })
            .clone()
    }
}

/// Debian's distribution registry (`docker-registry`).
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// True when `CI` is set and not empty.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The repository's root (this crate is `tests/prereq`).
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `f` holding an exclusive lock on `<target>/<name>.lock`, so test
/// processes take turns (without the lock, when it cannot be had, `f` runs
/// anyway: the lock only spares work, it guards no correctness).
pub fn locked<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let dir = target_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = std::fs::File::create(dir.join(format!("{name}.lock")));
    let guard = file.ok().filter(|f| f.lock().is_ok());
    let out = f();
    if let Some(f) = guard {
        let _ = f.unlock();
    }
    out
}

/// The shared corpus: `$BERTH_CORPUS`, else `<workspace>/../shared/corpus`.
pub fn corpus_root() -> PathBuf {
    match std::env::var_os("BERTH_CORPUS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("../shared/corpus"),
    }
}

/// The corpus counts as present when its Heat documents are there (the
/// folder every corpus test reads first).
fn corpus_missing(root: &Path) -> Option<String> {
    let heat = root.join("heat");
    (!heat.is_dir()).then(|| format!("{} missing", heat.display()))
}

/// The engine endpoint the tests use: `$DOCKER_HOST`, else the default socket.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

/// The engine's Unix socket, when `docker_host()` names one.
pub fn docker_socket() -> Option<PathBuf> {
    socket_of(&docker_host())
}

fn socket_of(host: &str) -> Option<PathBuf> {
    if let Some(p) = host.strip_prefix("unix://") {
        return Some(PathBuf::from(p));
    }
    host.starts_with('/').then(|| PathBuf::from(host))
}

fn engine_missing() -> Option<String> {
    engine_missing_at(&docker_host())
}

/// Asks the engine at `host` for `/_ping` and wants `OK`: a socket file
/// left by a stopped engine does not count.
fn engine_missing_at(host: &str) -> Option<String> {
    let request = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Duration::from_secs(5);
    let answer = if let Some(path) = socket_of(host) {
        std::os::unix::net::UnixStream::connect(&path).and_then(|mut s| {
            s.set_read_timeout(Some(timeout))?;
            s.write_all(request)?;
            read_all(&mut s)
        })
    } else {
        let addr = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .unwrap_or(host)
            .trim_end_matches('/');
        std::net::ToSocketAddrs::to_socket_addrs(addr)
            .and_then(|mut a| {
                a.next()
                    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
            })
            .and_then(|a| std::net::TcpStream::connect_timeout(&a, timeout))
            .and_then(|mut s| {
                s.set_read_timeout(Some(timeout))?;
                s.write_all(request)?;
                read_all(&mut s)
            })
    };
    match answer {
        Ok(text) if text.starts_with("HTTP/1.") && text.trim_end().ends_with("OK") => None,
        Ok(text) => Some(format!(
            "{host} answered /_ping with {:?}",
            text.lines().next().unwrap_or("")
        )),
        Err(e) => Some(format!("no engine at {host}: {e}")),
    }
}

fn read_all(r: &mut impl std::io::Read) -> std::io::Result<String> {
    let mut out = Vec::new();
    r.take(64 * 1024).read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Builds the demo image with `cargo xtask images` (a no-op when it is
/// current), one test process at a time; missing when that fails.
fn demo_image_missing() -> Option<String> {
    let built = locked("berth-tests-images", || {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        Command::new(cargo)
            .args(["xtask", "images"])
            .current_dir(workspace_root())
            .env("DOCKER_HOST", docker_host())
            .output()
    });
    match built {
        Ok(out) if out.status.success() => None,
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Some(format!(
                "cargo xtask images failed: {}",
                last.unwrap_or("(no output)").trim()
            ))
        }
        Err(e) => Some(format!("cargo xtask images does not run: {e}")),
    }
}

/// The systemd user manager the tests start needs root (it makes mount and
/// PID namespaces), the manager binary, the namespace tools and a user bus.
fn systemd_missing() -> Option<String> {
    const SYSTEMD: &str = "/lib/systemd/systemd";
    if !Path::new(SYSTEMD).exists() {
        return Some(format!("{SYSTEMD} missing"));
    }
    // /proc/self belongs to the process's effective uid.
    match std::fs::metadata("/proc/self") {
        Ok(m) if std::os::unix::fs::MetadataExt::uid(&m) == 0 => {}
        Ok(_) => return Some("not root (the tests make mount and PID namespaces)".into()),
        Err(e) => return Some(format!("cannot tell the uid from /proc/self: {e}")),
    }
    for tool in [
        "setpriv",
        "unshare",
        "nsenter",
        "systemctl",
        "systemd-analyze",
    ] {
        let runs = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !runs {
            return Some(format!("{tool} missing"));
        }
    }
    let socket_unit = [
        "/usr/lib/systemd/user/dbus.socket",
        "/lib/systemd/user/dbus.socket",
    ];
    if !socket_unit.iter().any(|p| Path::new(p).exists()) {
        return Some("no user dbus.socket".into());
    }
    None
}

/// The rule (see the crate docs) for a test needing `needs`: `true` when
/// the test must return at once. Panics in CI when one is missing. Use
/// [`require!`] rather than calling this.
pub fn skip(needs: &[Need]) -> bool {
    for need in needs.iter().flat_map(|n| n.implied()) {
        if let Some(why) = need.missing() {
            let test = std::thread::current()
                .name()
                .unwrap_or("<unnamed test>")
                .to_string();
            if in_ci() {
                panic!(
                    "{} is missing: {why}. CI (CI={:?}) runs every test: {}",
                    need.name(),
                    std::env::var("CI").unwrap_or_default(),
                    need.fix()
                );
            }
            eprintln!("SKIPPED {test}: {} ({why}); {}", need.name(), need.fix());
            record_skip(*need, &why, &test);
            return true;
        }
    }
    false
}

/// The corpus folder `sub` (e.g. `heat`), or `None` when the test is to be
/// skipped (the same rule as [`skip`]).
pub fn corpus(sub: &str) -> Option<PathBuf> {
    if skip(&[Need::Corpus]) {
        return None;
    }
    let dir = corpus_root().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    // The corpus is there but not this folder: a broken corpus, not a
    // missing one, so always a failure.
    panic!(
        "the corpus at {} has no {sub}/ folder",
        corpus_root().display()
    );
}

/// One line per skipped test in `$BERTH_SKIP_LOG`: `need<TAB>why<TAB>test`.
fn record_skip(need: Need, why: &str, test: &str) {
    let Some(path) = std::env::var_os("BERTH_SKIP_LOG").filter(|p| !p.is_empty()) else {
        return;
    };
    let line = format!(
        "{}\t{}\t{}\n",
        need.name(),
        why.replace(['\t', '\n'], " "),
        test
    );
    // One write with O_APPEND: lines from parallel test processes do not mix.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "cannot record the skip in {}: {e}",
            Path::new(&path).display()
        );
    }
}

/// The summary of a skip log: one line per (need, why), in the order first
/// seen, e.g. `== corpus: 7 tests skipped (/x/shared/corpus/heat missing)`.
pub fn summarize(log: &str) -> Vec<String> {
    let mut groups: Vec<((String, String), usize)> = Vec::new();
    for line in log.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(need), Some(why)) = (parts.next(), parts.next()) else {
            continue;
        };
        let key = (need.to_string(), why.to_string());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    groups
        .into_iter()
        .map(|((need, why), n)| {
            let tests = if n == 1 { "test" } else { "tests" };
            format!("== {need}: {n} {tests} skipped ({why})")
        })
        .collect()
}

/// Returns early from the calling test when a need is missing outside CI
/// (and fails it in CI): `berth_prereq::require!(Engine, Busybox);`.
#[macro_export]
macro_rules! require {
    ($($need:ident),+ $(,)?) => {
        if $crate::skip(&[$($crate::Need::$need),+]) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_tests_per_missing_thing() {
        let log = "corpus\t/x/heat missing\ta\n\
                   docker engine\tno engine at unix:///s: refused\tb\n\
                   corpus\t/x/heat missing\tc\n\
                   torn line without tabs\n";
        assert_eq!(
            summarize(log),
            vec![
                "== corpus: 2 tests skipped (/x/heat missing)".to_string(),
                "== docker engine: 1 test skipped (no engine at unix:///s: refused)".to_string(),
            ]
        );
    }

    #[test]
    fn an_empty_corpus_dir_counts_as_missing() {
        let dir = std::env::temp_dir().join(format!("berth-prereq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let why = corpus_missing(&dir);
        assert_eq!(why, Some(format!("{} missing", dir.join("heat").display())));
        std::fs::create_dir_all(dir.join("heat")).expect("heat dir");
        assert_eq!(corpus_missing(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A one-shot server on a fresh Unix socket that answers `reply`.
    fn answering(reply: &'static str) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = std::env::temp_dir().join(format!(
            "berth-prereq-{}-{}.sock",
            std::process::id(),
            reply.len()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let served = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply.as_bytes());
            }
        });
        (path, served)
    }

    #[test]
    fn an_engine_counts_only_when_it_answers_its_ping() {
        let (ok, t) = answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        assert_eq!(engine_missing_at(&format!("unix://{}", ok.display())), None);
        t.join().expect("server");
        let (odd, t) = answering("HTTP/1.1 500 Internal Server Error\r\n\r\nno");
        let why = engine_missing_at(&odd.display().to_string()).expect("a 500 is no engine");
        assert!(why.contains("500"), "{why}");
        t.join().expect("server");
        let dead =
            std::env::temp_dir().join(format!("berth-prereq-dead-{}.sock", std::process::id()));
        let why = engine_missing_at(&format!("unix://{}", dead.display())).expect("no socket");
        assert!(why.starts_with("no engine at unix://"), "{why}");
        let why = engine_missing_at("tcp://127.0.0.1:1").expect("nothing on port 1");
        assert!(why.contains("127.0.0.1:1"), "{why}");
        for p in [ok, odd] {
            let _ = std::fs::remove_file(p);
        }
    }
}
