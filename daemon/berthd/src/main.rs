//! berthd: wires the store, the engine, the loop and the API together.

mod config;
mod images;
mod reload;
mod specdir;
mod systemd;
mod tcp;
mod upstream_api;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig, HostSeams, WithHookHttp};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Exit code for a configuration berthd cannot start with. The unit file sets
/// `RestartPreventExitStatus=` to it, so a broken config is not restarted in a loop.
const EXIT_BAD_CONFIG: u8 = 78;
/// Exit code when berthd could not start for another reason (state dir, socket).
const EXIT_START_FAILED: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "berth node agent: keeps one container per service, each with its own deployment record",
    long_about = "berthd keeps one container per service on this node and a deployment record \
                  (spec, status, outputs, history) for each. It converges the Docker engine to the \
                  desired specs, re-adopts running containers after its own restart, and serves a \
                  local API that berthctl drives.\n\n\
                  Services come from the spec drop-in dir (spec_dir) and from `berthctl apply`.",
    after_help = "Exit codes: 0 clean shutdown (containers keep running), 1 failed to start, \
                  78 invalid configuration.\n\
                  Signals: SIGHUP re-reads the config and applies spec_dir, [policy], [upstream] \
                  and the files [api] names (tokens, certificate, key, client CA: rotate them in \
                  place); other changed keys are named and wait for a restart. SIGTERM/SIGINT \
                  stop berthd and leave containers running.\n\
                  Config keys and defaults: the berthd.toml table in the README (node_id, state_dir, socket, \
                  socket_group, spec_dir, prefix, history_limit, docker_host, user_bus, \
                  units_timeout, ...).\n\
                  Logging: to the journal when systemd connects stderr to it, else to stderr; \
                  BERTH_LOG (or RUST_LOG) sets the levels, e.g. `warn,berth_agent=debug` \
                  (default: info); the engine client's request dumps (bollard, hyper) stay \
                  off whatever it asks, as they carry secret env values."
)]
struct Args {
    /// The node config (TOML). Without it, every key has its default.
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config and the spec_dir files, print the result, and exit.
    #[arg(long)]
    check: bool,
    /// Reach systemd on the user bus (a `systemd --user` manager) instead of
    /// the system bus, for after_units/requires_units; as `user_bus = true`.
    #[arg(long)]
    user_bus: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Read before any thread exists (see STYLE.md §5).
    let docker_host_env = std::env::var("DOCKER_HOST").ok();
    let sd = systemd::SdEnv::from_env();
    let mut cfg = match config::load(args.config.as_deref(), docker_host_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // The registry auth file is part of the config: a credential helper in
    // it, or a missing or broken one, is exit 78 now, not a failed pull later.
    match images::check_auth_file(&cfg) {
        Ok(warnings) => cfg.warnings.extend(warnings),
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }
    init_logging(&sd);
    // The TCP API's files (tokens, TLS) are part of the config: a bad one is exit 78.
    let tcp = match tcp::prepare(&cfg.api, own_uid()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        let (files, problems) = specdir::read(&cfg.spec_dir);
        println!(
            "config ok: node {}, state_dir {}, socket {}, spec_dir {} ({} files)",
            cfg.node_id,
            cfg.state_dir.display(),
            cfg.socket.display(),
            cfg.spec_dir.display(),
            files.len()
        );
        for f in &files {
            if let Err(e) = &f.services {
                println!("{e}");
            }
        }
        for p in &problems {
            println!("{p}");
        }
        let bad = !problems.is_empty() || files.iter().any(|f| f.services.is_err());
        return if bad {
            ExitCode::from(EXIT_BAD_CONFIG)
        } else {
            ExitCode::SUCCESS
        };
    }
    limit_malloc_arenas();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Blocking work is reading config sources; a few threads keep up,
        // and every extra thread would get a malloc arena of its own.
        .max_blocking_threads(4)
        .thread_name("berthd")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    match rt.block_on(run(cfg, sd, tcp, args.user_bus)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("berthd: {e:#}");
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

/// Logs to the journal (structured: an event's fields become journal fields)
/// when systemd connected stderr to it, else as text to stderr. A journal
/// that cannot be reached falls back to stderr; it never stops berthd.
fn init_logging(sd: &systemd::SdEnv) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (targets, bad_filter) = log_filter(
        std::env::var("BERTH_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .ok(),
    );
    let filter = || targets.clone();
    let mut journal_error = None;
    if sd.stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("berthd".into());
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return;
                }
            }
            Err(e) => journal_error = Some(e),
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .try_init();
    if let Some(e) = bad_filter {
        tracing::warn!(error = %e, "BERTH_LOG is not a log filter (e.g. `info` or `warn,berth_agent=debug`); logging at info");
    }
    if let Some(e) = journal_error {
        tracing::warn!(error = %e, "cannot log to the journal; logging to stderr");
    }
}

/// The log filter from `BERTH_LOG` (or `RUST_LOG`): a default level and
/// per-target levels, `warn,berth_agent=debug`. Without one, or with one
/// that does not parse (returned as the second value), `info`. Whatever
/// it asks, the [`DUMPING_TARGETS`] log at INFO at most.
fn log_filter(
    value: Option<String>,
) -> (
    tracing_subscriber::filter::Targets,
    Option<tracing_subscriber::filter::ParseError>,
) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let info = || Targets::new().with_default(LevelFilter::INFO);
    let (targets, bad) = match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => (info(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (info(), Some(e)),
        },
    };
    (cap_dumping_targets(targets), bad)
}

/// Libraries whose DEBUG and TRACE lines dump what berthd sends and
/// receives: bollard logs every request body it serializes (a container
/// create carries the whole env, secret values included) and every engine
/// answer it decodes (an inspect carries the env again); the HTTP stack
/// below it logs connection and request details. Those lines are never
/// written, not even when `BERTH_LOG` names these targets: to see the
/// engine's traffic, use the engine's own debug log.
const DUMPING_TARGETS: &[&str] = &["bollard", "hyper", "hyper_util", "hyperlocal", "h2"];

/// `targets` with every [`DUMPING_TARGETS`] entry (and any directive for a
/// module below one) capped at INFO.
fn cap_dumping_targets(
    targets: tracing_subscriber::filter::Targets,
) -> tracing_subscriber::filter::Targets {
    use tracing::Level;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let dumps = |target: &str| {
        DUMPING_TARGETS
            .iter()
            .any(|d| target == *d || target.starts_with(&format!("{d}::")))
    };
    // The level `targets` would give a crate's own lines.
    let effective = |target: &str| {
        [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]
        .into_iter()
        .find(|l| targets.would_enable(target, l))
        .map_or(LevelFilter::OFF, LevelFilter::from_level)
    };
    let mut capped = match targets.default_level() {
        Some(level) => Targets::new().with_default(level),
        None => Targets::new(),
    };
    for (target, level) in targets.iter() {
        let level = if dumps(target) {
            level.min(LevelFilter::INFO)
        } else {
            level
        };
        capped = capped.with_target(target.to_string(), level);
    }
    for d in DUMPING_TARGETS {
        capped = capped.with_target(*d, effective(d).min(LevelFilter::INFO));
    }
    capped
}

/// The gid of `group` from /etc/group.
fn group_gid(group: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let _pw = parts.next()?;
        let gid = parts.next()?;
        (name == group).then(|| gid.parse().ok()).flatten()
    })
}

/// Makes `dir` (and its parents) if missing, and makes it 0700.
fn make_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (0700)", dir.display()))
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file we just created is our effective uid; /proc/self is ours.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

async fn run(
    cfg: config::Config,
    sd: systemd::SdEnv,
    tcp: Option<tcp::TcpSetup>,
    user_bus_flag: bool,
) -> anyhow::Result<()> {
    let notify = sd.notifier();
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let store = berth_store::FsStore::open(&cfg.state_dir)
        .with_context(|| format!("cannot open the state dir {}", cfg.state_dir.display()))?;
    let runtime = berth_docker::DockerRuntime::connect(&cfg.docker_host, &cfg.node_id)
        .with_context(|| format!("cannot set up the engine client for {}", cfg.docker_host))?
        .with_images(images::options(&cfg.images));
    let mut agent_cfg = AgentConfig::new(&cfg.node_id, &cfg.prefix, cfg.state_dir.clone());
    agent_cfg.history_limit = cfg.history_limit;
    agent_cfg.keep_previous = cfg.images.keep_previous;
    agent_cfg.pull_timeout = cfg.images.pull_timeout;
    agent_cfg.engine_endpoint = cfg.docker_host.clone();
    agent_cfg.units_timeout = cfg.units_timeout;
    // [policy] for the agent (host paths again before each create) and the
    // socket's group members; SIGHUP sends a new one.
    let (policy_tx, policy_rx) = tokio::sync::watch::channel(Arc::new(cfg.node_policy()));
    agent_cfg.node_policy = policy_rx.clone();
    // systemd is reached on first use: a node whose services have no host
    // units never needs D-Bus.
    let bus = if user_bus_flag || cfg.user_bus {
        berth_systemd::Bus::User
    } else {
        berth_systemd::Bus::System
    };
    let host = berth_systemd::DbusHost::lazy(bus);
    // One inotify instance for every config source; debounced, with a
    // periodic rescan as the safety net for missed events.
    let watcher =
        berth_watch::NotifyWatcher::new(cfg.debounce, berth_watch::DEFAULT_MAX_WAIT, cfg.rescan)
            .context("cannot start the config watcher (inotify)")?;
    // Host hooks' output files: berthd's own (they may hold secrets).
    make_private_dir(&agent_cfg.hooks_dir())?;
    // http hooks: the open client (a hook URL is the operator's, or passed
    // `[policy] allowed_hook_urls` when pushed), with `[upstream] ca_file`.
    let hook_http = berth_upstream::http::HttpClient::new(cfg.upstream.ca_file.as_deref())
        .context("cannot set up the HTTP client for http hooks")?;
    // SIGHUP gives it a new auth file.
    let reload_runtime = runtime.clone();
    let env = Arc::new(WithHookHttp {
        inner: HostSeams {
            runtime,
            store,
            host,
            watcher,
            files: berth_sources::HostFiles,
        },
        http: berth_upstream::hook_http::UpstreamHookHttp::new(hook_http),
    });
    let (agent, handle) = Agent::new(env, agent_cfg).context("cannot load the state")?;
    // Heat documents, the signal outbox, pull and reports. Built before the
    // routers so they can be handed `upstream.clone()`; its tasks talk to
    // the loop through the handle and wait for it to run.
    let upstream = berth_upstream::Upstream::start(
        handle.clone(),
        &cfg.state_dir,
        &cfg.node_id,
        upstream_config(&cfg),
    )
    .context("cannot start the upstream tasks (outbox, pull, reports)")?;

    // systemd owns a socket it passed (its mode and group come from the
    // .socket unit); berthd neither rebinds nor removes it.
    let inherited =
        systemd::inherited_listener(&sd).context("cannot use the socket passed by systemd")?;
    let socket_owned_by_systemd = inherited.is_some();
    let listener = match inherited {
        Some(l) => tokio::net::UnixListener::from_std(l)
            .context("cannot use the socket passed by systemd")?,
        None => berth_api::bind_unix(&cfg.socket).with_context(|| {
            format!("cannot bind the local API socket {}", cfg.socket.display())
        })?,
    };
    let gid = group_gid(&cfg.socket_group);
    match gid {
        Some(_) if socket_owned_by_systemd => {}
        Some(gid) => {
            if let Err(e) = std::os::unix::fs::chown(&cfg.socket, None, Some(gid)) {
                tracing::warn!(socket = %cfg.socket.display(), group = cfg.socket_group, error = %e, "cannot give the socket to its group; only root and berthd's user can use it");
            }
        }
        None => tracing::info!(
            group = cfg.socket_group,
            "socket_group does not exist; only root and berthd's user can use the socket"
        ),
    }
    let policy = berth_api::PeerPolicy {
        own_uid: own_uid(),
        group_gid: gid,
        node_policy: Some(policy_rx),
    };
    let upstream_api: Arc<dyn berth_api::UpstreamApi> =
        Arc::new(upstream_api::Api(upstream.clone()));
    let router = berth_api::router(handle.clone(), policy, Some(upstream_api.clone()));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let api = tokio::spawn(berth_api::serve_unix(
        listener,
        router,
        berth_api::ConnLimits::default(),
        api_stop,
    ));
    let mut tcp_live = None;
    if let Some(setup) = tcp {
        let listener = tokio::net::TcpListener::bind(setup.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([api] listen)", setup.listen))?;
        let (access_tx, access) =
            tokio::sync::watch::channel(reload::tcp_access(setup.tokens, &cfg));
        let router =
            berth_api::tcp_router(handle.clone(), access.clone(), Some(upstream_api.clone()));
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tracing::info!(
            listen = %setup.listen,
            tls = setup.tls.is_some(),
            client_certificates = setup.client_auth,
            "serving the TCP API"
        );
        let (tls_tx, tls) =
            tokio::sync::watch::channel(setup.tls.map(berth_api::TlsAcceptor::from));
        tcp_live = Some(reload::TcpLive {
            access: access_tx,
            tls: tls_tx,
        });
        tokio::spawn(async move {
            if let Err(e) = berth_api::serve_tcp(
                listener,
                tls,
                access,
                router,
                berth_api::ConnLimits::default(),
                stop,
            )
            .await
            {
                tracing::error!(error = %e, "the TCP API stopped");
            }
        });
    }
    let agent_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let agent_task = tokio::spawn(agent.run(agent_stop));

    tokio::spawn(trim_heap_periodically());
    if let Some(interval) = sd.watchdog
        && notify.enabled()
    {
        tracing::info!(
            ?interval,
            "feeding the systemd watchdog from the loop's heartbeat"
        );
        tokio::spawn(systemd::feed_watchdog(
            notify.clone(),
            interval,
            handle.heartbeat(),
        ));
    }

    // The spec dir is applied once the loop runs.
    apply_spec_dir(&handle, &cfg.spec_dir).await;
    tracing::info!(
        node = cfg.node_id,
        socket = %cfg.socket.display(),
        state_dir = %cfg.state_dir.display(),
        engine = cfg.docker_host,
        "berthd ready"
    );
    // The socket accepts connections (bound, mode and group set, or passed by
    // systemd) and the state is loaded.
    let summary = handle.snapshot().node.summary.line();
    notify.ready(&summary);
    if notify.enabled() {
        tokio::spawn(systemd::track_status(
            notify.clone(),
            handle.watch_snapshot(),
            summary,
        ));
    }

    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let live = reload::Live {
        runtime: reload_runtime,
        tcp: tcp_live,
        upstream: upstream.clone(),
        node_policy: policy_tx,
    };
    let mut running = cfg.clone();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: re-reading the config and the spec dir");
                notify.reloading();
                let message = match config::load(cfg.path.as_deref(), std::env::var("DOCKER_HOST").ok()) {
                    Ok(new) => {
                        for w in &new.warnings {
                            tracing::warn!("{w}");
                        }
                        // The event logs the whole outcome at info; what needs
                        // the operator is logged again at its own level.
                        let outcome = reload::apply(&mut running, &new, &live, own_uid());
                        for f in &outcome.failed {
                            tracing::error!("{f}");
                        }
                        if !outcome.restart.is_empty() {
                            tracing::warn!(keys = outcome.restart.join(", "), "config keys changed that take effect only when berthd restarts");
                        }
                        outcome.line()
                    }
                    Err(e) => {
                        tracing::error!("{e}; keeping the running config");
                        format!("config not reloaded: {e}; keeping the running config")
                    }
                };
                if let Err(e) = handle.emit(berth_core::event::EventKind::Daemon { message }).await {
                    tracing::warn!(error = %e, "cannot record the reload event");
                }
                apply_spec_dir(&handle, &running.spec_dir).await;
                notify.ready(&handle.snapshot().node.summary.line());
            }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping; containers keep running"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping; containers keep running"); break; }
        }
    }
    notify.stopping();
    let _ = stop_tx.send(true);
    let _ = agent_task.await;
    // Queued signals stay in the outbox for the next start.
    drop(upstream);
    match tokio::time::timeout(std::time::Duration::from_secs(5), api).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
        Err(_) => tracing::warn!("API connections still open after 5s; exiting anyway"),
        _ => {}
    }
    if !socket_owned_by_systemd {
        let _ = std::fs::remove_file(&cfg.socket);
    }
    Ok(())
}

pub(crate) fn upstream_config(cfg: &config::Config) -> berth_upstream::UpstreamConfig {
    berth_upstream::UpstreamConfig {
        metadata_url: cfg.upstream.metadata_url.clone(),
        poll_interval: cfg.poll_interval,
        report_url: cfg.upstream.report_url.clone(),
        heartbeat: cfg.heartbeat,
        ca_file: cfg.upstream.ca_file.clone(),
        policy: cfg.node_policy(),
    }
}

async fn apply_spec_dir(handle: &berth_agent::Handle, dir: &std::path::Path) {
    let (files, problems) = specdir::read(dir);
    for p in &problems {
        tracing::warn!("{p}");
    }
    match handle.spec_dir(files).await {
        Ok(problems) => {
            for p in problems {
                tracing::warn!("{p}");
            }
        }
        Err(e) => tracing::error!(error = %e, "applying the spec dir failed"),
    }
}

/// glibc keeps freed memory in its arenas; after a burst (a cold apply of
/// hundreds of services parses hundreds of engine responses) that memory
/// would stay resident for the agent's whole life. Hand it back now and then.
async fn trim_heap_periodically() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        trim_heap();
    }
}

/// One malloc arena: glibc gives each thread that allocates its own (up to
/// 8 per core). berthd allocates little and rarely, so lock contention is
/// nil, while every extra arena keeps its own partly used pages resident:
/// with 200 services idle, two arenas held 2.4 MiB for 0.4 MiB in use in
/// the second one (`cargo xtask bench apply` shows the RSS).
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    // SAFETY: called once at the start of main, before any other thread
    // exists; mallopt only sets a glibc tunable and takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // A fixed threshold: glibc otherwise raises it after each large
        // free, and the engine's big list answers then land in the heap,
        // leaving holes behind them.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases glibc's own free lists; it
    // takes no pointers from us and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn log_filter_levels_targets_and_a_bad_value() {
        let (t, bad) = log_filter(None);
        assert!(bad.is_none());
        assert!(t.would_enable("berth_agent", &Level::INFO));
        assert!(!t.would_enable("berth_agent", &Level::DEBUG));

        let (t, bad) = log_filter(Some("warn,berth_agent=debug".into()));
        assert!(bad.is_none());
        assert!(t.would_enable("berth_agent::event_loop", &Level::DEBUG));
        assert!(!t.would_enable("hyper", &Level::INFO));
        assert!(t.would_enable("hyper", &Level::WARN));

        let (t, bad) = log_filter(Some("berth_agent=loud".into()));
        assert!(bad.is_some(), "an unknown level is reported");
        assert!(t.would_enable("anything", &Level::INFO), "and info is used");
    }

    #[test]
    fn the_engine_clients_request_dumps_are_never_enabled() {
        for value in [
            "debug",
            "trace",
            "bollard=trace",
            "info,bollard::docker=debug",
            "trace,hyper=trace,hyper_util::client=trace",
            "bol=trace",
        ] {
            let (t, bad) = log_filter(Some(value.into()));
            assert!(bad.is_none(), "{value}");
            for target in [
                "bollard",
                "bollard::docker",
                "bollard::read",
                "hyper",
                "hyper::proto::h1",
                "hyper_util::client::legacy",
                "hyperlocal",
            ] {
                assert!(
                    !t.would_enable(target, &Level::DEBUG),
                    "{value}: {target} at debug"
                );
                if value == "debug" || value == "trace" {
                    assert!(t.would_enable(target, &Level::INFO), "{value}: {target}");
                }
            }
        }
        // berth's own debug lines are still there when asked for.
        let (t, _) = log_filter(Some("debug".into()));
        assert!(t.would_enable("berth_agent::event_loop", &Level::DEBUG));
        let (t, _) = log_filter(Some("trace".into()));
        assert!(t.would_enable("berth_docker", &Level::TRACE));
        // A quieter level stays quieter.
        let (t, _) = log_filter(Some("warn".into()));
        assert!(!t.would_enable("bollard::docker", &Level::INFO));
        assert!(t.would_enable("bollard::docker", &Level::WARN));
        let (t, _) = log_filter(None);
        assert!(!t.would_enable("bollard::docker", &Level::DEBUG));
    }
}
