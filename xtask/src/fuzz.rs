//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/` once, seeds
//! their corpora, runs each for its share of the time and prints a table.
//! Exits non-zero on any crash (a panic, a failed assertion, a timeout or
//! running out of memory), naming the input libFuzzer saved and how to
//! replay it.
//!
//! Everything lands under `target/fuzz/`: the build (`build-<sanitizer>/`),
//! `seeds/<target>/` (written afresh each run from the repo's examples,
//! fixtures and test strings, plus `../shared/corpus/` when it is there;
//! never committed), `corpus/<target>/` (what libFuzzer found, kept between
//! runs), `artifacts/<target>/` (crashing inputs) and `logs/<target>.log`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

mod seeds;

/// Every target in fuzz/Cargo.toml, in the order they run.
pub const TARGETS: &[&str] = &[
    "spec",
    "apply_body",
    "heat",
    "berthd_toml",
    "tokens",
    "api_request",
    "import",
];

/// Without `--time`, the whole step (build included) fits in this.
const CI_BUDGET: Duration = Duration::from_secs(5 * 60);
/// What the budget keeps back for seeding, libFuzzer's start-up (reading
/// the corpus) and the table.
const CI_MARGIN: Duration = Duration::from_secs(30);
/// No target runs for less, whatever the build took.
const MIN_SHARE: Duration = Duration::from_secs(10);
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Total fuzzing time, shared by the targets (e.g. 10m, 90s); without
    /// it, what the 5-minute budget leaves after the build.
    #[arg(long, value_parser = parse_time)]
    pub time: Option<Duration>,
    /// The sanitizer the targets are built with: none (the default, what
    /// CI runs: safe Rust, and the build fits the budget) or address (ASan,
    /// for longer runs; a build of its own).
    #[arg(long, default_value = "none", value_parser = ["address", "none"])]
    pub sanitizer: String,
    /// Only these targets (spec, apply_body, heat, berthd_toml, tokens,
    /// api_request, import); all when none is named.
    pub targets: Vec<String>,
}

/// `10m`, `90s`, `1h`, or seconds.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and s, m or h (e.g. 10m)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit is s, m or h (e.g. 10m)")),
    };
    if secs == 0 {
        return Err("the time must be more than 0".into());
    }
    Ok(Duration::from_secs(secs))
}

/// One target's run, as the table shows it.
struct Row {
    target: String,
    runs: u64,
    time: Duration,
    cov: (u64, u64),
    corpus: (u64, u64),
    /// Inputs libFuzzer saved for a crash, timeout or OOM.
    artifacts: Vec<PathBuf>,
}

pub fn run(root: &Path, opts: &Options) -> Result<()> {
    let started = Instant::now();
    let targets: Vec<String> = if opts.targets.is_empty() {
        TARGETS.iter().map(ToString::to_string).collect()
    } else {
        opts.targets.clone()
    };
    if let Some(t) = targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!("no fuzz target {t:?}; the targets: {}", TARGETS.join(", "));
    }
    let has_cargo_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_cargo_fuzz {
        bail!("cargo-fuzz is not installed; install it with `cargo install --locked cargo-fuzz`");
    }

    let dir = root.join("target/fuzz");
    println!("== cargo fuzz build (sanitizer {})", opts.sanitizer);
    let status = Command::new("cargo")
        .current_dir(root)
        .args(build_args(&opts.sanitizer))
        // cargo-fuzz passes -Z flags; the toolchain here is stable.
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    let built = started.elapsed();
    println!("built in {}", secs(built));

    let shared = root.join("../shared/corpus");
    let shared = shared.is_dir().then_some(shared);
    if shared.is_none() {
        println!("(no ../shared/corpus: seeding from the repo only)");
    }
    let total = match opts.time {
        Some(t) => t,
        None => CI_BUDGET.saturating_sub(started.elapsed() + CI_MARGIN),
    };
    let count = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let share = (total / count.max(1)).max(MIN_SHARE);

    let mut rows = Vec::new();
    for target in &targets {
        let seeds = dir.join("seeds").join(target);
        let written = seeds::write(root, shared.as_deref(), target, &seeds)?;
        println!(
            "== {target}: {} ({written} seeds)",
            secs(share).trim_start()
        );
        let bin = root
            .join(build_dir(&opts.sanitizer))
            .join(TRIPLE)
            .join("release")
            .join(target);
        rows.push(run_target(root, &dir, &bin, target, &seeds, share)?);
    }

    print_table(&rows);
    println!(
        "fuzz step: {} (build {})",
        secs(started.elapsed()),
        secs(built)
    );
    let crashed: Vec<&Row> = rows.iter().filter(|r| !r.artifacts.is_empty()).collect();
    if crashed.is_empty() {
        return Ok(());
    }
    for r in &crashed {
        for a in &r.artifacts {
            let shown = a.strip_prefix(root).unwrap_or(a).display().to_string();
            println!("\n{} crashed on {shown}", r.target);
            println!(
                "  replay: RUSTC_BOOTSTRAP=1 cargo {} {} {shown}",
                replay_args(&opts.sanitizer),
                r.target
            );
            println!(
                "  log:    target/fuzz/logs/{}.log (the panic is at its end)",
                r.target
            );
        }
    }
    bail!(
        "{} target(s) crashed: {}",
        crashed.len(),
        crashed
            .iter()
            .map(|r| r.target.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Each sanitizer builds in a dir of its own, so switching rebuilds nothing.
fn build_dir(sanitizer: &str) -> String {
    format!("target/fuzz/build-{sanitizer}")
}

fn common_args(sanitizer: &str) -> Vec<String> {
    [
        "--fuzz-dir",
        "fuzz",
        "--target-dir",
        &build_dir(sanitizer),
        "--sanitizer",
        sanitizer,
    ]
    .map(String::from)
    .to_vec()
}

fn build_args(sanitizer: &str) -> Vec<String> {
    let mut args = vec!["fuzz".to_string(), "build".to_string()];
    args.extend(common_args(sanitizer));
    args
}

fn replay_args(sanitizer: &str) -> String {
    let mut args = vec!["fuzz".to_string(), "run".to_string()];
    args.extend(common_args(sanitizer));
    args.join(" ")
}

fn run_target(
    root: &Path,
    dir: &Path,
    bin: &Path,
    target: &str,
    seeds: &Path,
    time: Duration,
) -> Result<Row> {
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    let logs = dir.join("logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let before = list(&artifacts)?;
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let started = Instant::now();
    let status = Command::new(bin)
        .current_dir(root)
        .arg(&corpus)
        .arg(seeds)
        .arg(format!("-max_total_time={}", time.as_secs().max(1)))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        // A request or a document that takes 10 s is a bug, not a slow input.
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone().context("the log file")?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {} (built?)", bin.display()))?;
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&log_path)
        .with_context(|| format!("reading {}", log_path.display()))?;
    let mut artifacts: Vec<PathBuf> = list(&artifacts)?
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !status.success() && artifacts.is_empty() {
        // libFuzzer failed before it could save an input (a bad flag, a
        // crash while reading the corpus): show why.
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
        artifacts.push(log_path);
    }
    Ok(Row {
        target: target.to_string(),
        runs: stat(&text, "stat::number_of_executed_units:").unwrap_or(0),
        time: elapsed,
        cov: (field(&text, "INITED", "cov:"), field(&text, "", "cov:")),
        corpus: (field(&text, "INITED", "corp:"), field(&text, "", "corp:")),
        artifacts,
    })
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        out.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .path(),
        );
    }
    Ok(out)
}

/// `stat::number_of_executed_units: 1234`.
fn stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

/// The number after `key` in the last status line holding `marker`
/// (`#2 INITED cov: 812 ft: 900 corp: 14/2Kb ...`); corp's count is
/// before the `/`.
fn field(log: &str, marker: &str, key: &str) -> u64 {
    log.lines()
        .rev()
        .filter(|l| l.starts_with('#') && l.contains(marker))
        .find_map(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            let word = rest.split_whitespace().next()?;
            word.split('/').next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn secs(d: Duration) -> String {
    format!("{:>5.1}s", d.as_secs_f64())
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<12} {:>10} {:>7} {:>14} {:>12} {:>8}",
        "target", "runs", "time", "coverage", "corpus", "crashes"
    );
    for r in rows {
        println!(
            "{:<12} {:>10} {:>7} {:>14} {:>12} {:>8}",
            r.target,
            r.runs,
            secs(r.time),
            format!("{} (+{})", r.cov.1, r.cov.1.saturating_sub(r.cov.0)),
            format!("{}->{}", r.corpus.0, r.corpus.1),
            r.artifacts.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_time("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_time("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_time("0s").is_err());
        assert!(parse_time("10 minutes").is_err());
        assert!(parse_time("m").is_err());
    }

    #[test]
    fn reads_libfuzzer_output() {
        let log = "INFO: Seed: 1\n\
                   #2\tINITED cov: 812 ft: 900 corp: 14/2Kb exec/s: 0 rss: 40Mb\n\
                   #1024\tpulse  cov: 850 ft: 1000 corp: 20/3Kb lim: 4 exec/s: 512\n\
                   #4096\tDONE   cov: 901 ft: 1200 corp: 31/4Kb lim: 43 exec/s: 1365\n\
                   stat::number_of_executed_units: 4096\n";
        assert_eq!(field(log, "INITED", "cov:"), 812);
        assert_eq!(field(log, "", "cov:"), 901);
        assert_eq!(field(log, "INITED", "corp:"), 14);
        assert_eq!(field(log, "", "corp:"), 31);
        assert_eq!(stat(log, "stat::number_of_executed_units:"), Some(4096));
        assert_eq!(field("", "", "cov:"), 0);
    }
}
