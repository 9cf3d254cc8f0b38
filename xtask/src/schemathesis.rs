//! `cargo xtask schemathesis`: runs schemathesis (from PyPI, in a venv that
//! `.ci/run` makes) against a live berthd's TCP API, with the config and
//! settings committed in `tests/schemathesis/`. berthd runs as its own node
//! (`berth-schemathesis`, prefix `bst-`) on a temp dir; afterwards berthd
//! is stopped and every container with its node label is removed. The
//! streams (`/v1/events`, `logs`) are fuzzed in their one-shot form only and
//! `?wait=` is pinned short (tests/schemathesis/schemathesis.toml).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The node id in `tests/schemathesis/berthd.toml`.
const NODE: &str = "berth-schemathesis";
/// Every check but: the two that need the schema to be exactly as strict as
/// the spec parser (it is a guide; the parser is the authority and answers
/// 400), and `use_after_free`: a deleted service keeps its history
/// (ARCHITECTURE.md "Ownership"), so its deployments stay readable.
const EXCLUDED_CHECKS: &str = "negative_data_rejection,positive_data_acceptance,use_after_free";

/// The schemathesis CLI: `$BERTH_SCHEMATHESIS`, else the venv `.ci/run` makes.
pub fn cli(root: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let p = root.join("target/venv/bin/schemathesis");
    p.exists().then_some(p)
}

/// Stops berthd and removes this node's containers and temp dir, even when
/// the run failed.
struct Cleanup {
    berthd: Option<Child>,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut b) = self.berthd.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &b.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = b.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = b.kill();
            let _ = b.wait();
        }
        let removed = crate::run::remove_containers(&format!("io.berth.node={NODE}"));
        if removed > 0 {
            println!("removed {removed} containers of node {NODE}");
        }
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Whether `GET /healthz` on `port` answers 200.
fn healthy(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// After `cargo xtask test`: runs when schemathesis is installed; in CI
/// (`CI` set) a missing schemathesis is an error, locally a note.
pub fn after_tests(root: &Path) -> Result<()> {
    if cli(root).is_none() && std::env::var_os("CI").is_none() {
        println!(
            "== schemathesis: skipped (not installed here; .ci/run installs it into target/venv)"
        );
        return Ok(());
    }
    if crate::run::engine_step_unavailable("schemathesis")?.is_some() {
        return Ok(());
    }
    run(root, &[])
}

/// The last lines of berthd's log, for a failed run (the dir is removed).
fn print_tail(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    println!("-- the last lines of berthd's log:");
    for l in &lines[lines.len().saturating_sub(40)..] {
        println!("{l}");
    }
}

/// Runs the whole check; `extra` goes to `schemathesis run`.
pub fn run(root: &Path, extra: &[String]) -> Result<()> {
    let Some(cli) = cli(root) else {
        bail!(
            "schemathesis is not installed: run `python3 -m venv target/venv && target/venv/bin/pip install -r tests/schemathesis/requirements.txt` (what .ci/run does), or set BERTH_SCHEMATHESIS"
        );
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let berthd_bin = target.join("debug").join("berthd");
    if !berthd_bin.exists() {
        bail!("{} is missing: build berthd first", berthd_bin.display());
    }
    let dir = std::env::temp_dir().join(format!("berth-schemathesis-{}", std::process::id()));
    let mut cleanup = Cleanup {
        berthd: None,
        dir: dir.clone(),
    };
    // A node left over by an interrupted run.
    crate::run::remove_containers(&format!("io.berth.node={NODE}"));
    for sub in ["specs", "host"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let port = free_port()?;
    let admin = random_token()?;
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        format!("admin {admin}\nread {}\n", random_token()?),
    )?;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600))?;
    let template_path = root.join("tests/schemathesis/berthd.toml");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let config = dir.join("berthd.toml");
    std::fs::write(
        &config,
        template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@PORT@", &port.to_string()),
    )?;
    let log = dir.join("berthd.log");
    println!(
        "== berthd (node {NODE}) on 127.0.0.1:{port}, state in {}",
        dir.display()
    );
    let berthd = crate::run::spawn_berthd(&berthd_bin, &config, &dir, &log)?;
    cleanup.berthd = Some(berthd);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        if let Some(b) = cleanup.berthd.as_mut()
            && let Ok(Some(status)) = b.try_wait()
        {
            let err = std::fs::read_to_string(dir.join("berthd.stderr")).unwrap_or_default();
            bail!("berthd exited ({status}):\n{err}");
        }
        if Instant::now() > deadline {
            bail!("berthd did not answer on 127.0.0.1:{port} within 30s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}/v1/openapi.json");
    println!("== schemathesis run {url}");
    let status = Command::new(&cli)
        .arg("--config-file")
        .arg(root.join("tests/schemathesis/schemathesis.toml"))
        .arg("run")
        .arg(&url)
        .args(["--checks", "all", "--exclude-checks", EXCLUDED_CHECKS])
        .args(["--seed", "1"])
        .args(extra)
        .env("BERTH_SCHEMATHESIS_TOKEN", &admin)
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(&dir)
        .status()
        .with_context(|| format!("cannot run {}", cli.display()))?;
    let crashed = cleanup
        .berthd
        .as_mut()
        .and_then(|b| b.try_wait().ok().flatten());
    if let Some(s) = crashed {
        print_tail(&dir.join("berthd.stderr"));
        bail!("berthd died during the run ({s})");
    }
    if !status.success() {
        print_tail(&dir.join("berthd.stderr"));
        bail!("schemathesis found failures ({status})");
    }
    println!("schemathesis: no failures");
    Ok(())
}
