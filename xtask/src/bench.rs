//! `cargo xtask bench apply`: berth side by side with `docker-compose up -d`
//! on equivalent files. Prints a table; asserts nothing (machines are noisy).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_tests::proxy::EngineProxy;

const ENGINE: &str = "/var/run/docker.sock";

pub(crate) struct Daemon {
    child: Child,
    socket: PathBuf,
    node: String,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    level: String,
    dir: PathBuf,
}

impl Daemon {
    pub(crate) fn start(bin: &Path, dir: &Path, node: &str, docker_host: &str) -> Result<Daemon> {
        let (config, socket) =
            crate::run::write_node_config(dir, node, &format!("{node}-"), Some(docker_host))?;
        // BERTH_BENCH_LOG=<filter> keeps berthd's log, at that level, in
        // /tmp/berth-bench-<node>.log (the bench's own dir is removed).
        let (level, log) = match std::env::var("BERTH_BENCH_LOG") {
            Ok(level) => (
                level,
                std::env::temp_dir().join(format!("berth-bench-{node}.log")),
            ),
            Err(_) => ("warn".to_string(), dir.join("berthd.log")),
        };
        let child = spawn(bin, &config, &level, &log)?;
        let d = Daemon {
            child,
            socket,
            node: node.to_string(),
            bin: bin.to_path_buf(),
            config,
            log,
            level,
            dir: dir.to_path_buf(),
        };
        d.wait_up()?;
        Ok(d)
    }

    fn wait_up(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctl(&["status"])?.status.success() {
            if Instant::now() > deadline {
                bail!("berthd did not come up; see {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL, then the same berthd (config, state dir, log) again.
    pub(crate) fn kill_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.bin, &self.config, &self.level, &self.log)?;
        self.wait_up()
    }

    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    pub(crate) fn ctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(self.bin.join("berthctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("cannot run berthctl")
    }

    pub(crate) fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// A `... kB` line of /proc/PID/status (`VmRSS:`, `RssAnon:`, `RssFile:`).
    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// `X MiB (heap and stacks A, mapped binary and libraries F)`: the
    /// file-backed part is code the kernel can drop and share.
    pub(crate) fn rss_text(&self) -> String {
        let mib = |k: u64| k as f64 / 1024.0;
        match (
            self.rss_kib(),
            self.status_kib("RssAnon:"),
            self.status_kib("RssFile:"),
        ) {
            (Some(t), Some(a), Some(f)) => {
                format!("{:.1} MiB (anon {:.1}, file {:.1})", mib(t), mib(a), mib(f))
            }
            (Some(t), _, _) => format!("{:.1} MiB", mib(t)),
            _ => "n/a".to_string(),
        }
    }

    /// utime + stime, in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name (which is in parentheses).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    pub(crate) fn running(&self) -> usize {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=io.berth.node={}", self.node),
                "--filter",
                "status=running",
            ])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0)
    }
}

fn spawn(bin: &Path, config: &Path, level: &str, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Command::new(bin.join("berthd"))
        .arg("--config")
        .arg(config)
        .env("BERTH_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start berthd")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::run::remove_containers(&format!("io.berth.node={}", self.node));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the bench's services are networked. `None` is an isolated
/// namespace per container; `Host` is what TripleO's services use (43 of
/// the 44 `net:` keys in the shared corpus). The engine does much less per
/// start for `Host`: no namespace to set up through its network hook.
#[derive(Clone, Copy)]
enum Net {
    None,
    Host,
}

impl Net {
    fn name(self) -> &'static str {
        match self {
            Net::None => "none",
            Net::Host => "host",
        }
    }

    fn network(self) -> berth_core::spec::Network {
        match self {
            Net::None => berth_core::spec::Network::None,
            Net::Host => berth_core::spec::Network::Host,
        }
    }

    /// Service `i`'s port: on the host's network each needs its own.
    fn port(self, i: usize) -> usize {
        match self {
            Net::None => 8080,
            Net::Host => HOST_PORTS + i,
        }
    }
}

/// First of the loopback ports the `host` services serve on.
const HOST_PORTS: usize = 31_000;

fn specs(dir: &Path, n: usize, greeting: &str) -> Result<()> {
    specs_on(dir, n, greeting, Net::None)
}

fn specs_on(dir: &Path, n: usize, greeting: &str, net: Net) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - name: s{i:03}\n    image: berth-demo:latest\n    command: [\"serve\", \"--port\", \"{}\"]\n    env: {{GREETING: {greeting}}}\n    network: {}\n",
            net.port(i),
            net.name()
        ));
    }
    std::fs::write(dir.join("services.yaml"), text)?;
    Ok(())
}

fn compose_file(dir: &Path, n: usize, project: &str, net: Net) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut text = String::from("services:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  s{i:03}:\n    image: berth-demo:latest\n    command: [\"serve\", \"--port\", \"{}\"]\n    environment: {{GREETING: hello}}\n    network_mode: {}\n    restart: always\n    labels: {{io.berth.bench: \"{project}\"}}\n",
            net.port(i),
            net.name()
        ));
    }
    let path = dir.join("compose.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

pub(crate) fn wait_running(d: &Daemon, n: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while d.running() < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} containers running after {timeout:?}",
                d.running()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Watches the engine's `start` events of `node`'s containers: the cold
/// apply's clock stops at the `n`th, without polling the engine (a `docker
/// ps` every few ms would take CPU from the very starts being timed).
struct StartWatch {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl StartWatch {
    fn start(node: &str) -> Result<StartWatch> {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("label=io.berth.node={node}"),
                "--filter",
                "type=container",
                "--filter",
                "event=start",
                "--format",
                "{{.ID}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run docker events")?;
        let stdout = child.stdout.take().context("docker events has no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // `docker events` subscribes asynchronously; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        Ok(StartWatch { child, lines })
    }

    /// Blocks until `n` distinct containers have started.
    fn wait(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(id) => {
                    seen.insert(id);
                }
                Err(_) => bail!(
                    "only {} of {n} containers started within {timeout:?}",
                    seen.len()
                ),
            }
        }
        Ok(())
    }
}

impl Drop for StartWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Builds berthd and berthctl in release mode; returns their directory.
pub(crate) fn release_bins(root: &Path) -> Result<PathBuf> {
    crate::images::ensure_demo(root)?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "berthd",
            "-p",
            "berthctl",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(root.join("target").join("release"))
}

/// berthd's CPU use over `window` (one core = 100 %).
pub(crate) fn idle_cpu_pct(d: &Daemon, window: Duration) -> Option<f64> {
    let a = d.cpu_ticks()?;
    std::thread::sleep(window);
    let b = d.cpu_ticks()?;
    // Clock ticks are 1/100 s on Linux.
    Some(b.saturating_sub(a) as f64 / 100.0 / window.as_secs_f64() * 100.0)
}

/// The engine's own floor: `n` containers created and started, each
/// create+start in parallel straight on the API (no CLI, no berth), until
/// every one runs. The demo image, networked like the bench specs.
fn engine_floor(n: usize, net: Net) -> Result<Duration> {
    use berth_core::runtime::{CreateRequest, CreateSpec, Runtime};
    let node = format!("bench-floor-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let docker = berth_docker::DockerRuntime::connect(&format!("unix://{ENGINE}"), &node)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let image = rt
        .block_on(docker.inspect_image("berth-demo:latest"))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("berth-demo:latest is missing (cargo xtask images)")?
        .id;
    let took = rt.block_on(async {
        let t = Instant::now();
        let jobs = (0..n).map(|i| {
            let docker = docker.clone();
            let req = CreateRequest {
                name: format!("{node}-{i}"),
                spec: CreateSpec {
                    image: image.clone(),
                    command: Some(vec![
                        "serve".into(),
                        "--port".into(),
                        net.port(i).to_string(),
                    ]),
                    network: net.network(),
                    ..Default::default()
                },
                labels: Default::default(),
            };
            async move {
                let id = docker.create(&req).await?;
                docker.start(&id).await
            }
        });
        let results = futures_util::future::join_all(jobs).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| t.elapsed())
    });
    crate::run::remove_containers(&format!("io.berth.node={node}"));
    took.map_err(|e| anyhow::anyhow!("engine floor: {e}"))
}

/// A cold apply of `n` through the counting proxy (not timed: the proxy
/// adds its own latency): which engine calls berth made, by kind.
fn cold_apply_calls(bin: &Path, base: &Path, n: usize) -> Result<(usize, String)> {
    let proxy = EngineProxy::start(Path::new(ENGINE)).context("cannot start the engine proxy")?;
    let d = Daemon::start(
        bin,
        &base.join("cold-counted"),
        &format!("bench-counted-{}", std::process::id()),
        &proxy.docker_host(),
    )?;
    let dir = base.join("cold-counted-specs");
    specs(&dir, n, "hello")?;
    proxy.clear();
    let out = d.ctl(&["apply", "--no-wait", &dir.display().to_string()])?;
    if !out.status.success() {
        bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_running(&d, n, Duration::from_secs(120))?;
    let calls = proxy.calls();
    let count = |f: &dyn Fn(&str, &str) -> bool| calls.iter().filter(|(m, p)| f(m, p)).count();
    let create = count(&|m, p| m == "POST" && p.starts_with("/containers/create"));
    let start = count(&|m, p| m == "POST" && p.ends_with("/start"));
    let list = count(&|m, p| m == "GET" && p.starts_with("/containers/json"));
    let inspect = proxy.container_inspects();
    Ok((
        calls.len(),
        format!("{create} create, {start} start, {inspect} inspect, {list} list"),
    ))
}

/// Cold applies per side in `bench apply`.
const COLD_ROUNDS: usize = 3;

fn median(t: &[Duration]) -> Duration {
    let mut t = t.to_vec();
    t.sort();
    t.get(t.len() / 2).copied().unwrap_or_default()
}

/// `docker-compose up -d` of `n` services, timed; `None` if it failed.
fn compose_cold(base: &Path, n: usize, round: usize, net: Net) -> Option<Duration> {
    let project = format!("berthbench{}{}r{round}", std::process::id(), net.name());
    let file = compose_file(
        &base.join(format!("compose-{}{round}", net.name())),
        n,
        &project,
        net,
    )
    .ok()?;
    let t = Instant::now();
    let st = Command::new("docker-compose")
        .args(["-p", &project, "-f"])
        .arg(&file)
        .args(["up", "-d", "--quiet-pull"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let took = t.elapsed();
    // Torn down a few at a time (not timed): 50 parallel removals of
    // host-network containers once left this machine's dockerd deadlocked
    // in libnetwork, with every later engine call hanging.
    let _ = Command::new("docker-compose")
        .env("COMPOSE_PARALLEL_LIMIT", "4")
        .args(["-p", &project, "-f"])
        .arg(&file)
        .args(["down", "-t", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    crate::run::remove_containers(&format!("io.berth.bench={project}"));
    match st {
        Ok(s) if s.success() => Some(took),
        _ => None,
    }
}

/// A cold `berthctl apply` of `n` services on a fresh berthd, until the
/// engine has started all of them.
fn berth_cold(bin: &Path, base: &Path, n: usize, round: usize, net: Net) -> Result<Duration> {
    let d = Daemon::start(
        bin,
        &base.join(format!("cold-{}{round}", net.name())),
        &format!("bench-cold-{}-{}{round}", std::process::id(), net.name()),
        &format!("unix://{ENGINE}"),
    )?;
    let dir = base.join(format!("cold-specs-{}{round}", net.name()));
    specs_on(&dir, n, "hello", net)?;
    let starts = StartWatch::start(d.node())?;
    let t = Instant::now();
    let out = d.ctl(&["apply", "--no-wait", &dir.display().to_string()])?;
    if !out.status.success() {
        bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    starts.wait(n, Duration::from_secs(120))?;
    Ok(t.elapsed())
}

/// The cold-apply rows for one kind of network: compose, berth and the
/// engine's floor, each the median of [`COLD_ROUNDS`].
fn cold_rows(bin: &Path, base: &Path, cold: usize, net: Net) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    // The engine's speed on a shared machine drifts from minute to minute:
    // the three are interleaved, round after round, and medians compared.
    let (mut compose_t, mut berth_t, mut floor_t) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..COLD_ROUNDS {
        compose_t.push(compose_cold(base, cold, round, net));
        berth_t.push(berth_cold(bin, base, cold, round, net)?);
        floor_t.push(engine_floor(cold, net)?);
    }
    let compose_t: Option<Vec<Duration>> = compose_t.into_iter().collect();
    let compose_s = compose_t.as_deref().map(median);
    let floor = median(&floor_t);
    let berth_cold = median(&berth_t);
    let spread = |t: &[Duration]| {
        let lo = t.iter().min().copied().unwrap_or_default();
        let hi = t.iter().max().copied().unwrap_or_default();
        format!("{}-{}", ms(lo), ms(hi))
    };
    rows.push((
        format!(
            "engine floor, network {}: {cold} parallel API create+start",
            net.name()
        ),
        ms(floor),
        compose_s.map(ms).unwrap_or_else(|| "n/a".into()),
        match compose_s {
            Some(c) => format!(
                "{:.2}x compose: the same containers straight on the API (floor {}, compose {})",
                floor.as_secs_f64() / c.as_secs_f64(),
                spread(&floor_t),
                compose_t.as_deref().map(spread).unwrap_or_default()
            ),
            None => "compose failed".into(),
        },
    ));
    rows.push((
        format!(
            "cold apply, {cold} services, network {} (until all run)",
            net.name()
        ),
        ms(berth_cold),
        compose_s.map(ms).unwrap_or_else(|| "n/a".into()),
        match compose_s {
            Some(c) => format!(
                "{:.2}x compose, {:.2}x the engine floor (target <= 0.7x compose; berth {})",
                berth_cold.as_secs_f64() / c.as_secs_f64(),
                berth_cold.as_secs_f64() / floor.as_secs_f64(),
                spread(&berth_t)
            ),
            None => "compose failed".into(),
        },
    ));

    Ok(rows)
}

/// A table row: benchmark, berth, compose, notes.
type Row = (String, String, String, String);

pub fn apply(root: &Path) -> Result<()> {
    let bin = release_bins(root)?;
    let base = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    let mut rows: Vec<Row> = Vec::new();

    // 1. Cold apply of 50: berth vs compose (time until all 50 run), on
    // an isolated network namespace each and on the host's network.
    let cold = 50;
    for net in [Net::None, Net::Host] {
        rows.extend(cold_rows(&bin, &base, cold, net)?);
    }
    let cold_calls = cold_apply_calls(&bin, &base, cold)?;
    rows.push((
        "  engine calls for it (a second run, counted)".to_string(),
        cold_calls.0.to_string(),
        "-".into(),
        format!("{} (the least: {cold} create, {cold} start)", cold_calls.1),
    ));

    // 2-4. 200 services through the counting proxy.
    let many = 200;
    let proxy = EngineProxy::start(Path::new(ENGINE)).context("cannot start the engine proxy")?;
    let mut d = Daemon::start(
        &bin,
        &base.join("many"),
        &format!("bench-many-{}", std::process::id()),
        &proxy.docker_host(),
    )?;
    let dir = base.join("many-specs");
    specs(&dir, many, "hello")?;
    let out = d.ctl(&["apply", "--no-wait", &dir.display().to_string()])?;
    if !out.status.success() {
        bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    wait_running(&d, many, Duration::from_secs(300))?;
    // Let every deployment settle before measuring the no-op.
    std::thread::sleep(Duration::from_secs(4));
    proxy.clear();
    let mut noop = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = d.ctl(&["apply", "--no-wait", &dir.display().to_string()])?;
        noop.push(t.elapsed());
        if !out.status.success() {
            bail!("no-op apply failed");
        }
    }
    noop.sort();
    std::thread::sleep(Duration::from_millis(500));
    let mutating = proxy.mutating_calls().len();
    rows.push((
        format!("no-op re-apply, {many} services (median of 5, incl. berthctl)"),
        ms(noop[noop.len() / 2]),
        "-".into(),
        format!("{mutating} mutating engine calls (target < 50 ms, 0 calls)"),
    ));

    // One changed among 200.
    let mut text = std::fs::read_to_string(dir.join("services.yaml"))?;
    text = text.replacen("GREETING: hello", "GREETING: changed", 1);
    std::fs::write(dir.join("services.yaml"), text)?;
    proxy.clear();
    let t = Instant::now();
    let out = d.ctl(&["apply", &dir.display().to_string()])?;
    let changed = t.elapsed();
    if !out.status.success() {
        bail!(
            "changed apply failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let creates = proxy
        .mutating_calls()
        .iter()
        .filter(|(m, p)| m == "POST" && p.contains("/containers/create"))
        .count();
    rows.push((
        format!("one changed among {many} (apply until COMPLETE)"),
        ms(changed),
        "-".into(),
        format!("{creates} container created; includes the 2 s settle"),
    ));

    // Idle: long enough after the last change for berthd's periodic heap
    // trim (30 s) to have run, then CPU over 10 s and RSS.
    std::thread::sleep(Duration::from_secs(35));
    let cpu = idle_cpu_pct(&d, Duration::from_secs(10));
    rows.push((
        format!("berthd idle RSS, {many} services"),
        d.rss_text(),
        "-".into(),
        "target < 15 MiB".into(),
    ));
    if let Some(pct) = cpu {
        rows.push((
            format!("berthd idle CPU, {many} services (10 s)"),
            format!("{pct:.1} %"),
            "-".into(),
            "one core = 100 %".into(),
        ));
    }

    // Restart: SIGKILL, then the time until the new berthd answers, and
    // what it did to the engine once it had looked (it should adopt).
    // Five times: one restart takes about 100 ms, so one sample is noise.
    let mut ups = Vec::new();
    let mut mutating = 0;
    for _ in 0..5 {
        proxy.clear();
        let t = Instant::now();
        d.kill_and_restart()?;
        ups.push(t.elapsed());
        std::thread::sleep(Duration::from_secs(3));
        mutating += proxy.mutating_calls().len();
    }
    ups.sort();
    rows.push((
        format!("berthd restart after SIGKILL, {many} running (median of 5)"),
        ms(ups[ups.len() / 2]),
        "-".into(),
        format!(
            "until `berthctl status` answers (range {}-{}); {mutating} mutating engine calls in all (adopted)",
            ms(ups[0]),
            ms(ups[ups.len() - 1])
        ),
    ));
    drop(d);
    drop(proxy);
    let _ = std::fs::remove_dir_all(&base);

    println!(
        "\n{:<58} {:>10} {:>10}  notes",
        "benchmark", "berth", "compose"
    );
    for (name, berth, compose, note) in rows {
        println!("{name:<58} {berth:>10} {compose:>10}  {note}");
    }
    Ok(())
}
