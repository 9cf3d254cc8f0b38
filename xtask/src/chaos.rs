//! `cargo xtask chaos`: faults at random points of a change (an apply that
//! replaces every service, or a config change that restarts them) — berthd
//! killed with SIGKILL (once, or again while it recovers), the engine cut
//! off (through a proxy socket in front of the real one; the machine's
//! engine is never stopped), or both — and
//! then a check of what must hold once berthd has recovered:
//!
//! - every deployment ends COMPLETE on the newest spec, converged;
//! - exactly one container per service once converged (no duplicate, no leftover
//!   replacement), running, labelled with its record's spec hash;
//! - applying the same file again makes no mutating engine call;
//! - event sequence numbers only grow, across restarts too.
//!
//! Prints one row per round and exits 1 if any round broke one of them.
//! The random delays come from `--seed` (printed), so a failing round can
//! be replayed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_tests::proxy::EngineProxy;
use serde_json::Value;

use crate::bench::{Daemon, release_bins};

const SERVICES: usize = 8;
/// How long the engine stays cut off.
const CUT_FOR: Duration = Duration::from_secs(3);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL mid-apply, then berthd again.
    Kill,
    /// The engine unreachable mid-apply for `CUT_FOR`.
    Cut,
    /// The engine cut, then SIGKILL: berthd starts without an engine.
    CutThenKill,
    /// SIGKILL, and SIGKILL again while the new berthd recovers.
    KillTwice,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::Kill,
        Fault::Cut,
        Fault::CutThenKill,
        Fault::KillTwice,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "SIGKILL",
            Fault::Cut => "engine cut for 3 s",
            Fault::CutThenKill => "engine cut, then SIGKILL",
            Fault::KillTwice => "SIGKILL, again in recovery",
        }
    }
}

/// xorshift64*: enough for delays, and replayable from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// What a round changes.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Every service's spec (its env): `berthctl apply` replaces them all.
    Spec,
    /// Every service's config file: the watch restarts them all.
    Config,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Spec => "apply",
            Change::Config => "config",
        }
    }
}

/// The spec file for round `round`: every service's env changes, so every
/// one is replaced (create the new container, swap, remove the old). Each
/// service mounts its own config dir under `cfg`.
fn write_specs(path: &Path, cfg: &Path, round: usize) -> Result<()> {
    let mut text = String::from("services:\n");
    for i in 0..SERVICES {
        text.push_str(&format!(
            "  - name: c{i}\n    image: berth-demo:latest\n    command: [\"serve\", \"--port\", \"8080\"]\n    env: {{ROUND: \"{round}\"}}\n    network: none\n    update: {{settle: 1s}}\n    config: [{{source: \"{}\", target: /etc/demo, on_change: restart}}]\n",
            cfg.join(format!("c{i}")).display()
        ));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Every service's config file, with content of round `round`.
fn write_configs(cfg: &Path, round: usize) -> Result<()> {
    for i in 0..SERVICES {
        let dir = cfg.join(format!("c{i}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let file = dir.join("motd");
        std::fs::write(&file, format!("round {round}\n"))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

fn ctl_json(d: &Daemon, args: &[&str]) -> Result<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = d.ctl(&all)?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "berthctl {} printed no JSON: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The services not yet COMPLETE and converged on a record newer than
/// `before` (their generation, per service), each with what it shows.
fn laggards(d: &Daemon, before: &BTreeMap<String, u64>) -> Result<Vec<String>> {
    let st = ctl_json(d, &["status"])?;
    let services = st["services"].as_array().cloned().unwrap_or_default();
    if services.len() != SERVICES {
        return Ok(vec![format!("{} services, not {SERVICES}", services.len())]);
    }
    Ok(services
        .iter()
        .filter_map(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            let generation = s["current"]["generation"].as_u64().unwrap_or(0);
            let done = s["current"]["status"] == "COMPLETE"
                && s["converged"] == true
                && generation > before.get(name).copied().unwrap_or(0);
            (!done).then(|| {
                format!(
                    "{name}: gen {generation} {} {} ({}), converged {}, container {}",
                    s["current"]["action"].as_str().unwrap_or("?"),
                    s["current"]["status"].as_str().unwrap_or("?"),
                    s["current"]["status_reason"].as_str().unwrap_or(""),
                    s["converged"],
                    s["container"]["state"].as_str().unwrap_or("none")
                )
            })
        })
        .collect())
}

/// One value per service from `berthctl status`, where `value` finds it.
fn from_status<T>(d: &Daemon, value: impl Fn(&Value) -> Option<T>) -> Result<BTreeMap<String, T>> {
    let st = ctl_json(d, &["status"])?;
    Ok(st["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), value(s)?)))
        .collect())
}

fn generations(d: &Daemon) -> Result<BTreeMap<String, u64>> {
    from_status(d, |s| s["current"]["generation"].as_u64())
}

/// What is wrong with the containers: duplicates, strays, not running, or
/// a spec hash other than the record's.
fn container_problems(d: &Daemon) -> Result<Vec<String>> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=io.berth.node={}", d.node()),
            "--format",
            "{{.Label \"io.berth.service\"}} {{.State}} {{.Label \"io.berth.spec-hash\"}} {{.Names}}",
        ])
        .output()
        .context("cannot run docker ps")?;
    let mut per_service: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [service, state, hash, name] = f[..] {
            per_service.entry(service.to_string()).or_default().push((
                state.to_string(),
                hash.to_string(),
                name.to_string(),
            ));
        }
    }
    let want = from_status(d, |s: &Value| {
        s["current"]["spec_hash"].as_str().map(str::to_string)
    })?;
    let mut problems = Vec::new();
    for (service, hash) in &want {
        match per_service.get(service).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!("{service}: no container")),
            Some([(state, label, _)]) => {
                if state != "running" {
                    problems.push(format!("{service}: container {state}"));
                }
                if label != hash {
                    problems.push(format!(
                        "{service}: container spec hash {label}, record {hash}"
                    ));
                }
            }
            Some(many) => problems.push(format!(
                "{service}: {} containers ({})",
                many.len(),
                many.iter()
                    .map(|c| c.2.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    for service in per_service.keys() {
        if !want.contains_key(service) {
            problems.push(format!("{service}: a container for no service"));
        }
    }
    Ok(problems)
}

fn event_seqs(d: &Daemon) -> Result<Vec<u64>> {
    let events = ctl_json(d, &["events"])?;
    Ok(events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["seq"].as_u64())
        .collect())
}

/// One round's plan.
#[derive(Debug, Clone, Copy)]
struct Trial {
    round: usize,
    change: Change,
    fault: Fault,
    /// From the change to the fault.
    delay_ms: u64,
    /// From the first SIGKILL to the second (`KillTwice`).
    again_ms: u64,
}

struct Row {
    trial: Trial,
    recovered: Option<Duration>,
    reapply_mutating: Option<usize>,
    problems: Vec<String>,
}

/// The paths a run works in.
struct Files {
    specs: std::path::PathBuf,
    cfg: std::path::PathBuf,
}

fn round(d: &mut Daemon, proxy: &EngineProxy, files: &Files, trial: Trial) -> Result<Row> {
    let Trial {
        round,
        change,
        fault,
        delay_ms,
        again_ms,
    } = trial;
    let before = generations(d)?;
    let seqs_before = event_seqs(d)?;
    let path = files.specs.display().to_string();
    match change {
        Change::Spec => {
            write_specs(&files.specs, &files.cfg, round)?;
            let out = d.ctl(&["apply", "--no-wait", &path])?;
            if !out.status.success() {
                bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        Change::Config => write_configs(&files.cfg, round)?,
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(delay_ms));
    match fault {
        Fault::Kill => d.kill_and_restart()?,
        Fault::Cut => {
            proxy.cut();
            std::thread::sleep(CUT_FOR);
            proxy.restore();
        }
        Fault::CutThenKill => {
            proxy.cut();
            d.kill_and_restart()?;
            std::thread::sleep(CUT_FOR);
            proxy.restore();
        }
        Fault::KillTwice => {
            d.kill_and_restart()?;
            std::thread::sleep(Duration::from_millis(again_ms));
            d.kill_and_restart()?;
        }
    }
    let mut problems = Vec::new();
    let mut recovered = None;
    let mut lagging = Vec::new();
    // Converged means the records and the containers both: an update keeps
    // the old container aside until its deployment is COMPLETE and removes
    // it in the step after, so the containers may trail the records by a
    // moment.
    while t.elapsed() < CONVERGE_TIMEOUT {
        lagging = laggards(d, &before)?;
        if lagging.is_empty() && container_problems(d)?.is_empty() {
            recovered = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if recovered.is_none() {
        let what = if lagging.is_empty() {
            "the records did, the containers did not (below)".to_string()
        } else {
            lagging.join("; ")
        };
        problems.push(format!("not converged within {CONVERGE_TIMEOUT:?}: {what}"));
    }
    problems.extend(container_problems(d)?);
    proxy.clear();
    let out = d.ctl(&["apply", &path])?;
    let mutating = proxy.mutating_calls();
    if !out.status.success() {
        problems.push(format!(
            "re-apply failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !mutating.is_empty() {
        problems.push(format!("re-apply made engine calls: {mutating:?}"));
    }
    let seqs = event_seqs(d)?;
    if seqs.windows(2).any(|w| w[0] >= w[1])
        || seqs_before
            .last()
            .zip(seqs.last())
            .is_some_and(|(a, b)| b <= a)
    {
        problems.push("event sequence numbers went back".into());
    }
    Ok(Row {
        trial,
        recovered,
        reapply_mutating: Some(mutating.len()),
        problems,
    })
}

pub fn run(root: &Path, rounds: usize, seed: Option<u64>) -> Result<()> {
    run_with(&release_bins(root)?, rounds, seed)
}

/// Rounds `cargo xtask test` runs last: every fault once with a spec
/// change and once with a config change.
const TEST_ROUNDS: usize = 2 * Fault::ALL.len();

/// `cargo xtask test`'s last step: [`TEST_ROUNDS`] rounds on the debug
/// binaries the integration tests used (nothing here is timed), so a
/// recovery race that comes back fails CI, with the seed to replay it.
pub fn after_tests(root: &Path) -> Result<()> {
    if crate::run::engine_step_unavailable("chaos")?.is_some() {
        return Ok(());
    }
    println!("== xtask chaos --rounds {TEST_ROUNDS} (debug binaries)");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    run_with(&target.join("debug"), TEST_ROUNDS, None)
}

fn run_with(bin: &Path, rounds: usize, seed: Option<u64>) -> Result<()> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("seed {seed} (cargo xtask chaos --seed {seed} replays the same delays)");
    let mut rng = Rng(seed.max(1));
    let base = std::env::temp_dir().join(format!("berth-chaos-{}", std::process::id()));
    let proxy = EngineProxy::start(&berth_tests::proxy::engine_socket())
        .context("cannot start the engine proxy")?;
    let node = format!("chaos-{}", std::process::id());
    let mut d = Daemon::start(bin, &base.join("node"), &node, &proxy.docker_host())?;
    let files = Files {
        specs: base.join("services.yaml"),
        cfg: base.join("cfg"),
    };
    // Round 0 puts the services in place without a fault.
    write_configs(&files.cfg, 0)?;
    write_specs(&files.specs, &files.cfg, 0)?;
    let out = d.ctl(&["apply", &files.specs.display().to_string()])?;
    if !out.status.success() {
        bail!(
            "the first apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "{:>5}  {:<7} {:<28} {:>8}  {:>10}  {:>14}  result",
        "round", "change", "fault", "after", "recovered", "re-apply calls"
    );
    let mut failed = 0;
    for r in 1..=rounds {
        let fault = Fault::ALL[(r - 1) % Fault::ALL.len()];
        // Every fault with a spec change, then every fault with a config change.
        let change = if ((r - 1) / Fault::ALL.len()).is_multiple_of(2) {
            Change::Spec
        } else {
            Change::Config
        };
        // Anywhere from before the first create to after the last swap.
        let delay_ms = rng.below(2500);
        // For the second SIGKILL: into the new berthd's recovery.
        let again_ms = rng.below(1500);
        let trial = Trial {
            round: r,
            change,
            fault,
            delay_ms,
            again_ms,
        };
        let row = round(&mut d, &proxy, &files, trial).unwrap_or_else(|e| Row {
            trial,
            recovered: None,
            reapply_mutating: None,
            problems: vec![format!("{e:#}")],
        });
        if !row.problems.is_empty() {
            failed += 1;
        }
        println!(
            "{:>5}  {:<7} {:<28} {:>6}ms  {:>10}  {:>14}  {}",
            row.trial.round,
            row.trial.change.name(),
            row.trial.fault.name(),
            row.trial.delay_ms,
            row.recovered
                .map(crate::bench::ms)
                .unwrap_or_else(|| "-".into()),
            row.reapply_mutating
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            if row.problems.is_empty() {
                "ok".to_string()
            } else {
                row.problems.join("; ")
            }
        );
    }
    if failed > 0 {
        // Keep the evidence: the log outlives the node's dir.
        let kept = std::env::temp_dir().join(format!("berth-chaos-{node}.log"));
        let _ = std::fs::copy(d.log(), &kept);
        drop(d);
        let _ = std::fs::remove_dir_all(&base);
        bail!(
            "{failed} of {rounds} rounds broke an invariant (seed {seed}; berthd's log: {})",
            kept.display()
        );
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
