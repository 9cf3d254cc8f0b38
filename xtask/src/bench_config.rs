//! `cargo xtask bench config`: how fast a config change reaches the service,
//! and what watching costs at rest. Prints a table; asserts nothing.
//!
//! Latency is measured from the moment the bench renames a new file into
//! place to the timestamp berthd puts on its own event: `reloaded` (the
//! signal was delivered through the engine) or `started` (the recreated
//! container is running). The debounce window (a quiet period berthd waits
//! for on purpose, so a burst of writes is one change) is part of the total;
//! berth's own share is the total minus that window.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::{Daemon, idle_cpu_pct, ms, release_bins, wait_running};

const ENGINE: &str = "unix:///var/run/docker.sock";
/// berthd's default `[watch] debounce`.
const DEBOUNCE_MS: f64 = 100.0;
/// Changes measured per policy (`BERTH_BENCH_CHANGES` overrides, for a quick look).
fn changes() -> usize {
    std::env::var("BERTH_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write_config(dir: &Path, content: &str) -> Result<()> {
    let tmp = dir.join(".app.conf.tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, dir.join("app.conf"))?;
    Ok(())
}

fn service(name: &str, source: &Path, on_change: &str) -> String {
    format!(
        "  - name: {name}\n    image: berth-demo:latest\n    command: [\"serve\", \"--port\", \"8080\"]\n    network: none\n    update: {{settle: 100ms}}\n    config: [{{source: {}, target: /etc/demo, on_change: {on_change}}}]\n",
        source.display()
    )
}

/// Events after `since`, as berthctl prints them.
fn events(d: &Daemon, since: u64) -> Result<Vec<Value>> {
    let out = d.ctl(&["--json", "events", "--since", &since.to_string()])?;
    if !out.status.success() {
        bail!(
            "berthctl events failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("events JSON")?;
    Ok(v["events"].as_array().cloned().unwrap_or_default())
}

fn last_seq(d: &Daemon) -> Result<u64> {
    Ok(events(d, 0)?
        .last()
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0))
}

/// Waits for an event of `service` with container action `action` after
/// `since`; returns its timestamp and seq.
fn wait_event(d: &Daemon, since: u64, service: &str, action: &str) -> Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for e in events(d, since)? {
            if e["type"] == "container_action" && e["service"] == service && e["action"] == action {
                let at = e["at_ms"].as_u64().unwrap_or(0);
                let seq = e["seq"].as_u64().unwrap_or(since);
                return Ok((at, seq));
            }
        }
        if Instant::now() > deadline {
            bail!("no `{action}` event for {service} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the newest record of `service` is terminal.
fn wait_settled(d: &Daemon, service: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = d.ctl(&["--json", "history", service, "--limit", "1"])?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let status = v[0]["status"].as_str().unwrap_or("");
        if matches!(status, "COMPLETE" | "FAILED") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{service}'s deployment did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Write → `action` event latencies (ms) over `n` changes of `service`.
fn latencies(d: &Daemon, service: &str, dir: &Path, action: &str, n: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        wait_settled(d, service)?;
        let since = last_seq(d)?;
        let t0 = now_ms();
        write_config(dir, &format!("change={i}\n"))?;
        let (at, _) = wait_event(d, since, service, action)?;
        out.push(at.saturating_sub(t0) as f64);
        if std::env::var_os("BERTH_BENCH_VERBOSE").is_some() {
            eprintln!(
                "{service} change {i}: {} ms (written at {t0})",
                at.saturating_sub(t0)
            );
            for e in events(d, since)? {
                eprintln!("  {} {} {}", e["at_ms"], e["type"], e["action"]);
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

pub fn config(root: &Path) -> Result<()> {
    let bin = release_bins(root)?;
    let base = std::env::temp_dir().join(format!("berth-bench-config-{}", std::process::id()));
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 1. Latency: one service per policy.
    {
        let d = Daemon::start(
            &bin,
            &base.join("latency"),
            &format!("bench-cfg-{}", std::process::id()),
            ENGINE,
        )?;
        let mut specs = String::from("services:\n");
        let mut dirs = Vec::new();
        for (name, policy) in [("sig", "{signal: SIGHUP}"), ("rec", "recreate")] {
            let dir = base.join("cfg").join(name);
            std::fs::create_dir_all(&dir)?;
            write_config(&dir, "change=start\n")?;
            specs.push_str(&service(name, &dir, policy));
            dirs.push(dir);
        }
        let spec_file = base.join("latency-specs.yaml");
        std::fs::write(&spec_file, specs)?;
        let out = d.ctl(&["apply", &spec_file.display().to_string()])?;
        if !out.status.success() {
            bail!("apply failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        for (name, dir, action, what) in [
            ("sig", &dirs[0], "reloaded", "write -> SIGHUP delivered"),
            (
                "rec",
                &dirs[1],
                "started",
                "write -> new container running (recreate)",
            ),
        ] {
            let l = latencies(&d, name, dir, action, changes())?;
            let (p50, p99) = (percentile(&l, 0.5), percentile(&l, 0.99));
            rows.push((
                format!("{what}, p50 / p99 of {}", l.len()),
                format!("{p50:.0} / {p99:.0} ms"),
                format!(
                    "berth's own share (minus the {DEBOUNCE_MS:.0} ms debounce): {:.0} / {:.0} ms{}",
                    p50 - DEBOUNCE_MS,
                    p99 - DEBOUNCE_MS,
                    if action == "reloaded" {
                        " (target <= 50 ms)"
                    } else {
                        " (includes the engine's create and start)"
                    }
                ),
            ));
        }
    }

    // 2. At rest: 200 services, each watching its own config dir.
    let many = 200;
    {
        let d = Daemon::start(
            &bin,
            &base.join("many"),
            &format!("bench-cfg-many-{}", std::process::id()),
            ENGINE,
        )?;
        let mut specs = String::from("services:\n");
        for i in 0..many {
            let dir = base.join("many-cfg").join(format!("s{i:03}"));
            std::fs::create_dir_all(&dir)?;
            write_config(&dir, &format!("service={i}\n"))?;
            specs.push_str(&service(&format!("s{i:03}"), &dir, "{signal: SIGHUP}"));
        }
        let spec_file = base.join("many-specs.yaml");
        std::fs::write(&spec_file, specs)?;
        let out = d.ctl(&["apply", "--no-wait", &spec_file.display().to_string()])?;
        if !out.status.success() {
            bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        wait_running(&d, many, Duration::from_secs(300))?;
        // Past berthd's heap trim (30 s); the window covers one periodic
        // rescan (60 s), which re-hashes every source.
        std::thread::sleep(Duration::from_secs(35));
        let window = Duration::from_secs(65);
        let cpu = idle_cpu_pct(&d, window);

        rows.push((
            format!(
                "berthd idle CPU, {many} services watching config ({})",
                ms(window)
            ),
            cpu.map(|c| format!("{c:.2} %"))
                .unwrap_or_else(|| "n/a".into()),
            "one core = 100 %; target ~0 %".into(),
        ));
        rows.push((
            format!("berthd idle RSS, {many} services watching config"),
            d.rss_text(),
            "target < 15 MiB".into(),
        ));
    }
    let _ = std::fs::remove_dir_all(&base);

    println!("\n{:<62} {:>34}  notes", "benchmark", "berth");
    for (name, value, note) in rows {
        println!("{name:<62} {value:>34}  {note}");
    }
    Ok(())
}
