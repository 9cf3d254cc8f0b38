//! `cargo xtask test`, `demo` and `man`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_prereq::Need;
use clap::ValueEnum;

use crate::tiers::{self, Tier};

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the tests log what they skipped (`berth_prereq`), one line each.
fn skip_log(root: &Path) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("berth-skips.tsv")
}

/// Looks at the outside prerequisites `needs` once, before anything runs:
/// prints what is missing, and in CI (`CI` set) fails naming each. Returns
/// the missing ones (outside CI their tests skip).
pub fn prerequisites(needs: &[Need]) -> Result<Vec<(Need, String)>> {
    let missing: Vec<(Need, String)> = needs
        .iter()
        .filter_map(|n| n.missing().map(|why| (*n, why)))
        .collect();
    for (need, why) in &missing {
        println!("== {}: missing ({why}); {}", need.name(), need.fix());
    }
    if !missing.is_empty() && berth_prereq::in_ci() {
        let names: Vec<&str> = missing.iter().map(|(n, _)| n.name()).collect();
        bail!(
            "CI runs every test, and these are missing: {}",
            names.join(", ")
        );
    }
    Ok(missing)
}

pub fn engine_step_unavailable(step: &str) -> Result<Option<String>> {
    let why = Need::Engine.missing().or_else(|| Need::DemoImage.missing());
    match why {
        Some(why) if berth_prereq::in_ci() => bail!("{step} cannot run in CI: {why}"),
        Some(why) => {
            println!("== {step}: skipped ({why})");
            Ok(Some(why))
        }
        None => Ok(None),
    }
}

/// The summary of what the tests skipped, one line per missing thing, e.g.
/// `== corpus: 7 tests skipped (/x/shared/corpus/heat missing)`.
pub fn print_skips(root: &Path) {
    let text = std::fs::read_to_string(skip_log(root)).unwrap_or_default();
    for line in berth_prereq::summarize(&text) {
        println!("{line}");
    }
}

/// `cargo xtask test [TIER]`: with no tier, everything (tidy, the demo
/// image, the binaries, every test binary, schemathesis, chaos); with one,
/// only what that tier runs and needs.
pub fn test(root: &Path, tier: Option<Tier>, extra: &[String]) -> Result<()> {
    let tiers: Vec<Tier> = match tier {
        Some(t) => vec![t],
        None => Tier::value_variants().to_vec(),
    };
    if tier.is_none() {
        println!("== xtask tidy");
        crate::tidy::run(root)?;
    }
    // Cleared first: a run that stops at the prerequisites must not sum up
    // the skips of the run before it.
    let log = skip_log(root);
    match std::fs::remove_file(&log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot clear the skip log {}: {e}", log.display()),
    }
    let mut needs: Vec<Need> = Vec::new();
    for need in tiers.iter().flat_map(|t| t.needs()) {
        if !needs.contains(need) {
            needs.push(*need);
        }
    }
    let missing = prerequisites(&needs)?;
    if tiers.iter().any(|t| t.needs_binaries()) {
        if missing.iter().any(|(n, _)| *n == Need::Engine) {
            println!("== xtask images: skipped (no engine)");
        } else {
            println!("== xtask images");
            if let Err(e) = crate::images::ensure_demo(root) {
                if berth_prereq::in_ci() {
                    return Err(e);
                }
                println!("== demo image: cannot build it ({e:#}); the tests that need it skip");
            }
        }
        println!("== build berthd and berthctl (the integration tests run them)");
        run(
            cargo()
                .current_dir(root)
                .args(["build", "-p", "berthd", "-p", "berthctl"]),
            "cargo build",
        )?;
    }
    let mut cmd = cargo();
    cmd.current_dir(root).env("BERTH_SKIP_LOG", &log);
    let result = match tier {
        None if has_nextest() => {
            println!("== cargo nextest run --workspace");
            run(
                cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"])
                    .args(extra),
                "cargo nextest run",
            )
        }
        None => {
            println!("== cargo test --workspace (install cargo-nextest for a faster run)");
            run(
                cmd.args(["test", "--workspace", "--no-fail-fast"])
                    .args(extra),
                "cargo test",
            )
        }
        Some(t) if t.has_test_binaries() => {
            if !has_nextest() {
                bail!(
                    "a single tier runs under cargo-nextest, which is not installed: \
                     `cargo install --locked cargo-nextest`, or run every tier with \
                     `cargo xtask test`"
                );
            }
            let meta = crate::tidy::cargo_metadata(root)?;
            let (packages, filter) = tiers::selection(&tiers::binaries(&meta)?, t);
            println!(
                "== cargo nextest run (tier {t}: {} packages)",
                packages.len()
            );
            cmd.args(["nextest", "run", "--no-fail-fast"]);
            for p in &packages {
                cmd.args(["-p", p]);
            }
            run(cmd.args(["-E", &filter]).args(extra), "cargo nextest run")
        }
        Some(_) => Ok(()),
    };
    let result = result
        .and_then(|()| {
            if tiers.contains(&Tier::Engine) {
                crate::schemathesis::after_tests(root)
            } else {
                Ok(())
            }
        })
        .and_then(|()| {
            if tiers.contains(&Tier::Chaos) {
                crate::chaos::after_tests(root)
            } else {
                Ok(())
            }
        });
    print_skips(root);
    result
}

/// The man page of berthctl, from the same clap definition as the CLI.
pub fn man(root: &Path) -> Result<()> {
    let dir = root.join("target").join("man");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = berthctl::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("cannot render the man page")?;
    let path = dir.join("berthctl.1");
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    for sub in cmd.get_subcommands() {
        let name = format!("berthctl-{}", sub.get_name());
        let mut page = Vec::new();
        // xtask runs once and exits: leaking a few names is fine.
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(sub.clone().name(leaked))
            .render(&mut page)
            .context("cannot render a man page")?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "and one page per verb (berthctl-<verb>.1) in {}",
        dir.display()
    );
    Ok(())
}

/// berthd on a temp state dir with examples/ applied; cleans up on Ctrl-C.
pub fn demo(root: &Path, once: bool) -> Result<()> {
    crate::images::ensure_demo(root)?;
    run(
        cargo()
            .current_dir(root)
            .args(["build", "--quiet", "-p", "berthd", "-p", "berthctl"]),
        "cargo build",
    )?;
    let bin = root.join("target").join("debug");
    let dir = std::env::temp_dir().join(format!("berth-demo-{}", std::process::id()));
    let node = format!("demo-{}", std::process::id());
    let (config, socket) = write_node_config(&dir, &node, "berth-demo-", None)?;
    let log = dir.join("berthd.log");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    println!(
        "== starting berthd (node {node}, state in {})",
        dir.display()
    );
    println!(
        "   config: {}\n   log:    {}",
        config.display(),
        log.display()
    );
    let mut berthd = spawn_berthd(&bin.join("berthd"), &config, &dir, &log)?;
    let ctl = |args: &[&str]| {
        Command::new(bin.join("berthctl"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .process_group(0)
            .status()
    };
    let result = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!(
                    "berthd did not come up; see {}",
                    dir.join("berthd.stderr").display()
                );
            }
            if let Some(status) = berthd.try_wait()? {
                bail!(
                    "berthd exited ({status}); see {}",
                    dir.join("berthd.stderr").display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let examples = root.join("examples");
        println!("\n== berthctl apply {}", examples.display());
        ctl(&["apply", &examples.display().to_string()])?;
        println!("\n== berthctl status");
        ctl(&["status"])?;
        if once {
            return Ok(());
        }
        println!(
            "\nberth is running. In another terminal, try:\n  export BERTH_SOCKET={}\n  {1}/berthctl show web\n  {1}/berthctl history web\n  {1}/berthctl events -f\n  curl http://127.0.0.1:18080/\n\nConfig watch: edit {2}/config/web/app.conf; berthd sees the content\nchange and sends web SIGHUP (a RECONFIGURE record in `berthctl history web`),\nand `curl http://127.0.0.1:18080/config` shows what web reloaded.\n\nPress Ctrl-C to stop berthd and remove the demo containers.",
            socket.display(),
            bin.display(),
            examples.display(),
        );
        while !stop.load(Ordering::SeqCst) {
            if let Some(status) = berthd.try_wait()? {
                bail!("berthd exited ({status})");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    })();
    println!("\n== cleaning up");
    let _ = Command::new("kill")
        .args(["-TERM", &berthd.id().to_string()])
        .status();
    let _ = berthd.wait();
    let removed = remove_containers(&format!("io.berth.node={node}"));
    if removed > 0 {
        println!("removed {removed} demo containers");
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Starts `berthd --config CONFIG` in a process group of its own (so a
/// Ctrl-C of the terminal reaches only xtask), stdout to `log` and stderr
/// to `dir/berthd.stderr`.
pub fn spawn_berthd(
    berthd: &Path,
    config: &Path,
    dir: &Path,
    log: &Path,
) -> Result<std::process::Child> {
    Command::new(berthd)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(dir.join("berthd.stderr"))?)
        .process_group(0)
        .spawn()
        .context("cannot start berthd")
}

/// A berthd config for a throwaway node under `dir` (state, socket and spec
/// dir inside it); returns the config's and the socket's paths.
pub fn write_node_config(
    dir: &Path,
    node: &str,
    prefix: &str,
    docker_host: Option<&str>,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir.join("specs"))?;
    let socket = dir.join("berth.sock");
    let config = dir.join("berthd.toml");
    let mut text = format!(
        "node_id = \"{node}\"\nprefix = \"{prefix}\"\nstate_dir = \"{}\"\nsocket = \"{}\"\nspec_dir = \"{}\"\n",
        dir.join("state").display(),
        socket.display(),
        dir.join("specs").display()
    );
    if let Some(host) = docker_host {
        text.push_str(&format!("docker_host = \"{host}\"\n"));
    }
    std::fs::write(&config, text)?;
    Ok((config, socket))
}

/// Removes (forcefully) every container carrying `label` (`key=value`);
/// returns how many there were.
pub fn remove_containers(label: &str) -> usize {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
    else {
        return 0;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    // Ten at a time: the CLI removes all it is given at once, and hundreds
    // of containers exiting together have deadlocked this engine (Docker
    // 20.10's libnetwork, seen after a 200-service bench).
    for batch in ids.chunks(10) {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(batch)
            .stdout(Stdio::null())
            .status();
    }
    ids.len()
}
