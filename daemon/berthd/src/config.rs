//! `berthd.toml` (the key table is in the README): read strictly (unknown keys are
//! errors), every key has a default, errors name the file, line and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    node_id: Option<String>,
    state_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    spec_dir: Option<PathBuf>,
    prefix: Option<String>,
    history_limit: Option<usize>,
    docker_host: Option<String>,
    user_bus: Option<bool>,
    units_timeout: Option<String>,
    watch: Option<Watch>,
    api: Option<Api>,
    policy: Option<Policy>,
    upstream: Option<Upstream>,
    images: Option<ImagesFile>,
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    pub debounce: Option<String>,
    pub rescan: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub listen: Option<String>,
    pub tokens_file: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub allow_privileged: Option<bool>,
    pub allow_host_network: Option<bool>,
    pub allowed_host_paths: Option<Vec<String>>,
    pub allowed_signal_hosts: Option<Vec<String>>,
    /// Capabilities pushed specs may add beyond the engine's defaults
    /// while `allow_privileged` is false (`NET_ADMIN` or `CAP_NET_ADMIN`).
    pub allowed_capabilities: Option<Vec<String>>,
    /// Named volumes pushed specs may mount (none by default).
    pub allowed_volumes: Option<Vec<String>>,
    /// Pushed specs may have exec hooks with `where: host` (off by default).
    pub allow_host_hooks: Option<bool>,
    /// URL prefixes a pushed spec's http hooks must start with (none by
    /// default: no http hooks).
    pub allowed_hook_urls: Option<Vec<String>>,
}

/// Every Linux capability (capabilities(7)), without `CAP_`.
const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// `policy.allowed_capabilities`: known capability names only (a typo
/// would silently allow nothing), and not `ALL`.
fn check_capabilities(caps: &[String]) -> Result<(), String> {
    for cap in caps {
        let up = cap.trim().to_ascii_uppercase();
        let name = up.strip_prefix("CAP_").unwrap_or(&up);
        if name == "ALL" {
            return Err(format!(
                "policy.allowed_capabilities: {cap:?} is every capability; set allow_privileged = true instead"
            ));
        }
        if !CAPABILITIES.contains(&name) {
            return Err(format!(
                "policy.allowed_capabilities: {cap:?} is not a Linux capability (e.g. NET_ADMIN or CAP_NET_ADMIN; see capabilities(7))"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    pub metadata_url: Option<String>,
    pub poll_interval: Option<String>,
    pub report_url: Option<String>,
    pub heartbeat: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// `[images]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesFile {
    auth_file: Option<PathBuf>,
    max_concurrent_pulls: Option<usize>,
    pull_timeout: Option<String>,
    keep_previous: Option<usize>,
}

/// The default `images.max_concurrent_pulls` (berth-docker's
/// `DEFAULT_MAX_CONCURRENT_PULLS`; this file is also compiled into the
/// fuzz target, which has no berth-docker).
const DEFAULT_MAX_CONCURRENT_PULLS: usize = 3;

/// `[images]`, validated: how berthd pulls and what pruning keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// The docker/podman auth file pulls take credentials from; `None`: no
    /// credentials. Its content is checked by `images::check_auth_file`
    /// (at start and SIGHUP) and read again at each pull.
    pub auth_file: Option<PathBuf>,
    pub max_concurrent_pulls: usize,
    pub pull_timeout: Duration,
    /// Previous generations whose images pruning keeps.
    pub keep_previous: usize,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            auth_file: None,
            max_concurrent_pulls: DEFAULT_MAX_CONCURRENT_PULLS,
            pull_timeout: berth_agent::DEFAULT_PULL_TIMEOUT,
            keep_previous: berth_agent::DEFAULT_KEEP_PREVIOUS,
        }
    }
}

/// The validated node config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from (`None`: defaults only).
    pub path: Option<PathBuf>,
    pub node_id: String,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_group: String,
    pub spec_dir: PathBuf,
    pub prefix: String,
    pub history_limit: usize,
    pub docker_host: String,
    /// systemd on the user bus (`systemd --user`; tests) instead of the
    /// system bus, for `after_units` / `requires_units`.
    pub user_bus: bool,
    /// A deployment waiting for a host unit that does not exist fails after this.
    pub units_timeout: Duration,
    pub debounce: Duration,
    pub rescan: Duration,
    pub api: Api,
    pub policy: Policy,
    pub upstream: Upstream,
    /// `[upstream] poll_interval` and `heartbeat`, parsed.
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    pub images: Images,
    /// Keys that are read but whose feature this version does not run yet.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Invalid { path: String, message: String },
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Reads `path` (or only defaults when `None`). `docker_host_env` is
/// `DOCKER_HOST`, passed in so that this stays testable.
pub fn load(path: Option<&Path>, docker_host_env: Option<String>) -> Result<Config, ConfigError> {
    let text = match path {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
        ),
    };
    from_text(path, text.as_deref(), docker_host_env)
}

/// [`load`] on text already read from `path` (`None`: defaults only). Reads
/// no file itself except `upstream.ca_file`, which it checks; the fuzz
/// target (fuzz/fuzz_targets/berthd_toml.rs) calls it.
pub fn from_text(
    path: Option<&Path>,
    text: Option<&str>,
    docker_host_env: Option<String>,
) -> Result<Config, ConfigError> {
    let shown = path.map_or_else(|| "<defaults>".to_string(), |p| p.display().to_string());
    let file: File = match text {
        None => File::default(),
        Some(text) => toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: shown.clone(),
            message: one_line(&e.to_string()),
        })?,
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: shown.clone(),
        message,
    };
    let dur = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => {
                berth_core::units::parse_duration(s).map_err(|e| invalid(format!("{key}: {e}")))
            }
        }
    };
    let node_id = file.node_id.unwrap_or_else(hostname);
    if node_id.is_empty() || node_id.len() > 128 || node_id.contains(['=', ',', '\n']) {
        return Err(invalid(format!(
            "node_id {node_id:?}: must be 1-128 characters without '=', ',' or newlines (it becomes a label value)"
        )));
    }
    let prefix = file.prefix.unwrap_or_else(|| "berth-".to_string());
    let prefix_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && prefix
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !prefix_ok {
        return Err(invalid(format!(
            "prefix {prefix:?}: container names must start with a letter or digit and use only [a-zA-Z0-9_.-]"
        )));
    }
    let history_limit = file.history_limit.unwrap_or(50);
    if history_limit == 0 {
        return Err(invalid("history_limit: must be at least 1".into()));
    }
    let watch = file.watch.unwrap_or_default();
    let debounce = dur(
        "watch.debounce",
        &watch.debounce,
        Duration::from_millis(100),
    )?;
    let rescan = dur("watch.rescan", &watch.rescan, Duration::from_secs(60))?;
    let upstream = file.upstream.unwrap_or_default();
    let poll_interval = dur(
        "upstream.poll_interval",
        &upstream.poll_interval,
        Duration::from_secs(30),
    )?;
    let heartbeat = dur(
        "upstream.heartbeat",
        &upstream.heartbeat,
        Duration::from_secs(60),
    )?;
    for (key, d) in [
        ("upstream.poll_interval", poll_interval),
        ("upstream.heartbeat", heartbeat),
    ] {
        if d < Duration::from_secs(1) {
            return Err(invalid(format!("{key}: must be at least 1s")));
        }
    }
    for (key, url) in [
        ("upstream.metadata_url", &upstream.metadata_url),
        ("upstream.report_url", &upstream.report_url),
    ] {
        if let Some(url) = url {
            // Quoted: a bad URL may hold a newline or a control character
            // (that is often why it is bad), which must not break the
            // error's one line or reach a terminal raw.
            berth_upstream::check_url(url).map_err(|e| {
                invalid(format!(
                    "{key} {:?}: {e}; give an http:// or https:// URL with a host",
                    berth_core::heat::redact_url(url)
                ))
            })?;
        }
    }
    if let Some(ca) = &upstream.ca_file {
        berth_upstream::http::read_ca_file(ca)
            .map_err(|e| invalid(format!("upstream.ca_file: {e}")))?;
    }
    let api = file.api.unwrap_or_default();
    let policy = file.policy.unwrap_or_default();
    let mut warnings = Vec::new();
    // The files [api] names are read and checked by tcp::prepare (exit 78 too).
    if api.listen.is_none() && api != Api::default() {
        warnings.push(
            "[api] tokens_file, cert, key and client_ca are ignored without [api] listen"
                .to_string(),
        );
    }
    for p in policy.allowed_host_paths.iter().flatten() {
        if !p.starts_with('/') {
            return Err(invalid(format!(
                "policy.allowed_host_paths: {p:?} must be an absolute path"
            )));
        }
    }
    check_capabilities(policy.allowed_capabilities.as_deref().unwrap_or_default())
        .map_err(&invalid)?;
    for v in policy.allowed_volumes.iter().flatten() {
        let mut bytes = v.bytes();
        let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(invalid(format!(
                "policy.allowed_volumes: {v:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*); host paths go in allowed_host_paths"
            )));
        }
    }
    for u in policy.allowed_hook_urls.iter().flatten() {
        let host = u
            .strip_prefix("https://")
            .or_else(|| u.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
        if host.is_none_or(|h| h.is_empty()) || u.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "policy.allowed_hook_urls: {u:?} is not a URL prefix; give scheme and host at least, e.g. \"https://ci.example/hooks/\""
            )));
        }
    }
    if policy
        .allowed_signal_hosts
        .iter()
        .flatten()
        .any(|h| h.trim().is_empty() || h.contains(['/', ' ']))
    {
        return Err(invalid(
            "policy.allowed_signal_hosts: each entry is a host or host:port".into(),
        ));
    }
    let units_timeout = dur(
        "units_timeout",
        &file.units_timeout,
        berth_agent::DEFAULT_UNITS_TIMEOUT,
    )?;
    let images = images(file.images.unwrap_or_default()).map_err(&invalid)?;
    Ok(Config {
        path: path.map(Path::to_path_buf),
        node_id,
        state_dir: file.state_dir.unwrap_or_else(|| "/var/lib/berth".into()),
        socket: file
            .socket
            .unwrap_or_else(|| "/run/berth/berth.sock".into()),
        socket_group: file.socket_group.unwrap_or_else(|| "berth".into()),
        spec_dir: file
            .spec_dir
            .unwrap_or_else(|| "/etc/berth/services.d".into()),
        prefix,
        history_limit,
        docker_host: file
            .docker_host
            .or(docker_host_env)
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
        user_bus: file.user_bus.unwrap_or(false),
        units_timeout,
        debounce,
        rescan,
        api,
        policy,
        upstream,
        poll_interval,
        heartbeat,
        images,
        warnings,
    })
}

/// `[images]` checked (the auth file's content is not read here).
fn images(file: ImagesFile) -> Result<Images, String> {
    let d = Images::default();
    let max_concurrent_pulls = file.max_concurrent_pulls.unwrap_or(d.max_concurrent_pulls);
    if max_concurrent_pulls == 0 {
        return Err(
            "images.max_concurrent_pulls: must be at least 1 (pulls running at once)".into(),
        );
    }
    let pull_timeout = match &file.pull_timeout {
        None => d.pull_timeout,
        Some(s) => berth_core::units::parse_duration(s)
            .map_err(|e| format!("images.pull_timeout: {e}; give a duration such as \"30m\""))?,
    };
    if pull_timeout < Duration::from_secs(1) {
        return Err("images.pull_timeout: must be at least 1s, e.g. \"30m\"".into());
    }
    if let Some(path) = &file.auth_file
        && !path.is_absolute()
    {
        return Err(format!(
            "images.auth_file {:?}: must be an absolute path (e.g. /etc/berth/auth.json)",
            path.display().to_string()
        ));
    }
    Ok(Images {
        auth_file: file.auth_file,
        max_concurrent_pulls,
        pull_timeout,
        keep_previous: file.keep_previous.unwrap_or(d.keep_previous),
    })
}

impl Config {
    /// `[policy]` as the API, upstream and the agent apply it.
    pub fn node_policy(&self) -> berth_core::policy::NodePolicy {
        let p = &self.policy;
        berth_core::policy::NodePolicy {
            allow_privileged: p.allow_privileged.unwrap_or(false),
            allow_host_network: p.allow_host_network.unwrap_or(false),
            allowed_host_paths: p.allowed_host_paths.clone().unwrap_or_default(),
            allowed_signal_hosts: p.allowed_signal_hosts.clone().unwrap_or_default(),
            allowed_capabilities: p.allowed_capabilities.clone().unwrap_or_default(),
            allowed_volumes: p.allowed_volumes.clone().unwrap_or_default(),
            allow_host_hooks: p.allow_host_hooks.unwrap_or(false),
            allowed_hook_urls: p.allowed_hook_urls.clone().unwrap_or_default(),
            container_prefix: self.prefix.clone(),
        }
    }

    /// The keys SIGHUP cannot apply that differ between this (running)
    /// config and `new`: they take effect when berthd restarts.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                keys.push(key);
            }
        };
        check("node_id", self.node_id != new.node_id);
        check("state_dir", self.state_dir != new.state_dir);
        check("socket", self.socket != new.socket);
        check("socket_group", self.socket_group != new.socket_group);
        check("prefix", self.prefix != new.prefix);
        check("history_limit", self.history_limit != new.history_limit);
        check("docker_host", self.docker_host != new.docker_host);
        check("user_bus", self.user_bus != new.user_bus);
        check("units_timeout", self.units_timeout != new.units_timeout);
        check("watch.debounce", self.debounce != new.debounce);
        check("watch.rescan", self.rescan != new.rescan);
        check("api.listen", self.api.listen != new.api.listen);
        check(
            "images.max_concurrent_pulls",
            self.images.max_concurrent_pulls != new.images.max_concurrent_pulls,
        );
        check(
            "images.pull_timeout",
            self.images.pull_timeout != new.images.pull_timeout,
        );
        check(
            "images.keep_previous",
            self.images.keep_previous != new.images.keep_previous,
        );
        keys
    }

    /// This config with what SIGHUP applies taken from `new`: `spec_dir`,
    /// `[policy]`, `[upstream]`, `[images] auth_file`, and `[api]`'s files
    /// while the listener is the same. The rest stays as it runs.
    pub fn with_reloaded(&self, new: &Config) -> Config {
        let mut c = self.clone();
        c.spec_dir = new.spec_dir.clone();
        c.images.auth_file = new.images.auth_file.clone();
        c.policy = new.policy.clone();
        c.upstream = new.upstream.clone();
        c.poll_interval = new.poll_interval;
        c.heartbeat = new.heartbeat;
        if c.api.listen == new.api.listen {
            c.api = new.api.clone();
        }
        c.warnings = new.warnings.clone();
        c
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn defaults() {
        let c = load(None, None).expect("defaults load");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.prefix, "berth-");
        assert_eq!(c.history_limit, 50);
        assert_eq!(c.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(c.debounce, Duration::from_millis(100));
        assert!(!c.user_bus);
        assert_eq!(c.units_timeout, Duration::from_secs(30));
        let c = load(None, Some("unix:///tmp/d.sock".into())).expect("load");
        assert_eq!(c.docker_host, "unix:///tmp/d.sock");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let f = write("node_id = \"n1\"\nstate_dri = \"/x\"\n");
        let e = load(Some(f.path()), None)
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(e.contains("state_dri"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn user_bus_and_units_timeout() {
        let f = write("user_bus = true\nunits_timeout = \"3s\"\n");
        let c = load(Some(f.path()), None).expect("valid");
        assert!(c.user_bus);
        assert_eq!(c.units_timeout, Duration::from_secs(3));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let f = write("units_timeout = \"soon\"\n");
        let e = load(Some(f.path()), None).expect_err("bad").to_string();
        assert!(e.contains("units_timeout"), "{e}");
    }

    #[test]
    fn upstream_urls_and_durations_are_checked() {
        let f = write("[upstream]\nmetadata_url = \"ftp://h/m?sig=s3cr3t\"\n");
        let e = load(Some(f.path()), None).expect_err("ftp").to_string();
        assert!(
            e.contains("upstream.metadata_url") && e.contains("ftp"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let f = write("[upstream]\nreport_url = \"not a url\"\n");
        assert!(load(Some(f.path()), None).is_err());
        let f = write("[upstream]\npoll_interval = \"0s\"\n");
        let e = load(Some(f.path()), None).expect_err("0s").to_string();
        assert!(e.contains("upstream.poll_interval"), "{e}");
        let f = write(
            "[upstream]\nmetadata_url = \"https://h:8000/m\"\npoll_interval = \"5s\"\nheartbeat = \"2m\"\n",
        );
        let c = load(Some(f.path()), None).expect("valid");
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        assert_eq!(c.heartbeat, Duration::from_secs(120));
        assert!(
            c.warnings.iter().all(|w| !w.contains("[upstream]")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn a_bad_upstream_url_is_quoted_on_one_line() {
        let path = Path::new("/etc/berth/berthd.toml");
        for (text, key) in [
            // The fuzzer's crash, minimised: a newline in the URL.
            (
                "[upstream]\nmetadata_url = \"h\\n\"\n",
                "upstream.metadata_url",
            ),
            (
                "[upstream]\nreport_url = \"https://h/\\u001b[2J\\r?sig=s3cr3t\"\n",
                "upstream.report_url",
            ),
        ] {
            let e = from_text(Some(path), Some(text), None)
                .expect_err(text)
                .to_string();
            assert!(e.starts_with("config /etc/berth/berthd.toml: "), "{e}");
            assert!(e.contains(key) && e.contains("https://"), "{e}");
            assert!(!e.contains(char::is_control), "{e:?}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn images_keys_have_defaults_and_are_checked() {
        let c = load(None, None).expect("defaults");
        assert_eq!(c.images, Images::default());
        assert_eq!(c.images.auth_file, None);
        assert_eq!(c.images.max_concurrent_pulls, 3);
        assert_eq!(c.images.pull_timeout, Duration::from_secs(30 * 60));
        assert_eq!(c.images.keep_previous, 2);
        let f = write(
            "[images]\nauth_file = \"/etc/berth/auth.json\"\nmax_concurrent_pulls = 1\npull_timeout = \"90s\"\nkeep_previous = 0\n",
        );
        let c = load(Some(f.path()), None).expect("valid");
        assert_eq!(
            c.images,
            Images {
                auth_file: Some("/etc/berth/auth.json".into()),
                max_concurrent_pulls: 1,
                pull_timeout: Duration::from_secs(90),
                keep_previous: 0,
            }
        );
        for (text, parts) in [
            (
                "max_concurrent_pulls = 0",
                &["images.max_concurrent_pulls", "at least 1"][..],
            ),
            ("max_concurrent_pulls = -1", &["max_concurrent_pulls"][..]),
            ("keep_previous = -2", &["keep_previous"][..]),
            (
                "pull_timeout = \"30\"",
                &["images.pull_timeout", "missing unit", "30m"][..],
            ),
            (
                "pull_timeout = \"0s\"",
                &["images.pull_timeout", "at least 1s"][..],
            ),
            (
                "auth_file = \"auth.json\"",
                &["images.auth_file", "absolute path"][..],
            ),
            ("auth = \"/x\"", &["unknown field `auth`", "auth_file"][..]),
        ] {
            let f = write(&format!("[images]\n{text}\n"));
            let e = load(Some(f.path()), None).expect_err(text).to_string();
            assert!(e.contains(&f.path().display().to_string()), "{text}: {e}");
            for part in parts {
                assert!(e.contains(part), "{text}: {part} in {e}");
            }
        }
    }

    #[test]
    fn bad_duration_and_prefix() {
        let f = write("[watch]\ndebounce = \"5\"\n");
        let e = load(Some(f.path()), None)
            .expect_err("bad duration")
            .to_string();
        assert!(
            e.contains("watch.debounce") && e.contains("missing unit"),
            "{e}"
        );
        let f = write("prefix = \"/bad\"\n");
        assert!(load(Some(f.path()), None).is_err());
    }

    #[test]
    fn policy_paths_must_be_absolute_and_api_keys_need_listen() {
        let f = write("[policy]\nallowed_host_paths = [\"srv/berth\"]\n");
        let e = load(Some(f.path()), None)
            .expect_err("relative")
            .to_string();
        assert!(e.contains("policy.allowed_host_paths"), "{e}");
        let f = write("[policy]\nallowed_signal_hosts = [\"http://heat/\"]\n");
        assert!(load(Some(f.path()), None).is_err());
        let f = write("[api]\ntokens_file = \"/etc/berth/tokens\"\n");
        let c = load(Some(f.path()), None).expect("loads");
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("without [api] listen"))
        );
        let f = write("[api]\nlisten = \"127.0.0.1:7443\"\ntokens_file = \"/t\"\n");
        let c = load(Some(f.path()), None).expect("loads");
        assert!(
            !c.warnings.iter().any(|w| w.contains("[api]")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn hook_policy_is_off_by_default_and_checked() {
        let f = write("[policy]\n");
        let p = load(Some(f.path()), None).expect("loads").node_policy();
        assert!(!p.allow_host_hooks && p.allowed_hook_urls.is_empty());
        let f = write(
            "[policy]\nallow_host_hooks = true\nallowed_hook_urls = [\"https://ci.example/hooks/\"]\n",
        );
        let p = load(Some(f.path()), None).expect("loads").node_policy();
        assert!(p.allow_host_hooks);
        assert_eq!(p.allowed_hook_urls, ["https://ci.example/hooks/"]);
        for bad in [
            "ci.example",
            "https://",
            "https:///x",
            "ftp://ci/",
            "https://a b/",
        ] {
            let f = write(&format!("[policy]\nallowed_hook_urls = [{bad:?}]\n"));
            let e = load(Some(f.path()), None).expect_err(bad).to_string();
            assert!(e.contains("policy.allowed_hook_urls"), "{bad}: {e}");
        }
    }

    #[test]
    fn allowed_capabilities_and_volumes_are_checked_and_reach_the_node_policy() {
        let f = write(
            "prefix = \"b-\"\n[policy]\nallowed_capabilities = [\"NET_ADMIN\", \"cap_sys_time\"]\nallowed_volumes = [\"appdata\"]\n",
        );
        let c = load(Some(f.path()), None).expect("loads");
        let p = c.node_policy();
        assert_eq!(p.allowed_capabilities, ["NET_ADMIN", "cap_sys_time"]);
        assert_eq!(p.allowed_volumes, ["appdata"]);
        assert_eq!(p.container_prefix, "b-");
        assert!(!p.allow_privileged);
        for (text, why) in [
            (
                "allowed_capabilities = [\"NET_ADMN\"]",
                "not a Linux capability",
            ),
            ("allowed_capabilities = [\"ALL\"]", "allow_privileged"),
            ("allowed_capabilities = [\"cap_all\"]", "allow_privileged"),
            ("allowed_volumes = [\"/srv/data\"]", "allowed_host_paths"),
            ("allowed_volumes = [\"\"]", "not a volume name"),
        ] {
            let f = write(&format!("[policy]\n{text}\n"));
            let e = load(Some(f.path()), None).expect_err(text).to_string();
            assert!(e.contains("policy.allowed_"), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn sighup_takes_spec_dir_policy_upstream_and_api_files_only() {
        let running = load(
            Some(
                write(
                    "prefix = \"a-\"\n[api]\nlisten = \"127.0.0.1:7443\"\ntokens_file = \"/t1\"\n",
                )
                .path(),
            ),
            None,
        )
        .expect("running");
        let new = load(
            Some(write(
                "prefix = \"b-\"\nspec_dir = \"/srv/specs\"\nhistory_limit = 7\n[images]\nauth_file = \"/etc/berth/auth.json\"\nkeep_previous = 5\n[api]\nlisten = \"127.0.0.1:7443\"\ntokens_file = \"/t2\"\n[policy]\nallow_privileged = true\nallowed_capabilities = [\"NET_ADMIN\"]\n[upstream]\nmetadata_url = \"http://192.0.2.1/md\"\npoll_interval = \"5s\"\n",
            ).path()),
            None,
        )
        .expect("new");
        assert_eq!(
            running.restart_only_changes(&new),
            ["prefix", "history_limit", "images.keep_previous"]
        );
        let now = running.with_reloaded(&new);
        // The auth file is SIGHUP's; what pruning keeps waits for a restart.
        assert_eq!(
            now.images.auth_file.as_deref(),
            Some(Path::new("/etc/berth/auth.json"))
        );
        assert_eq!(now.images.keep_previous, 2);
        assert_eq!(now.prefix, "a-");
        assert_eq!(now.history_limit, 50);
        assert_eq!(now.spec_dir, Path::new("/srv/specs"));
        assert_eq!(now.api.tokens_file.as_deref(), Some(Path::new("/t2")));
        assert_eq!(now.policy.allow_privileged, Some(true));
        assert_eq!(now.node_policy().allowed_capabilities, ["NET_ADMIN"]);
        // The policy's prefix is the running one (prefix waits for a restart).
        assert_eq!(now.node_policy().container_prefix, running.prefix);
        assert_eq!(now.poll_interval, Duration::from_secs(5));
        assert!(now.upstream.metadata_url.is_some());
        // Applied, the running config has nothing left to restart for
        // but what SIGHUP cannot do.
        assert_eq!(
            now.restart_only_changes(&new),
            ["prefix", "history_limit", "images.keep_previous"]
        );
        assert_eq!(now.with_reloaded(&new), now);

        // A new listener is a restart; its files wait with it.
        let moved = load(
            Some(write("[api]\nlisten = \"127.0.0.1:7444\"\ntokens_file = \"/t3\"\n").path()),
            None,
        )
        .expect("moved");
        assert_eq!(
            running.restart_only_changes(&moved),
            ["prefix", "api.listen"]
        );
        assert_eq!(
            running.with_reloaded(&moved).api.tokens_file.as_deref(),
            Some(Path::new("/t1"))
        );
    }
}
