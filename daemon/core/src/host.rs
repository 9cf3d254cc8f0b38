//! The host-units seam: what berth asks of the host's service manager
//! (systemd), in berth's words.
//!
//! Two uses: waiting on host units (`after_units` / `requires_units`), and
//! running host-side hook commands (`where: host`) as transient units whose
//! result survives a berthd restart. The real implementation (D-Bus) and a
//! fake for the agent's tests live in `berth-systemd`.
//!
//! Everything here is pure: unit states are plain strings as systemd reports
//! them, and the helpers that turn systemd's numbers into berth's meanings
//! (exit status, finished or not, valid names) are functions without I/O.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::runtime::BoxStream;

/// The prefix of every transient unit berth starts for a host hook.
pub const HOOK_UNIT_PREFIX: &str = "berth-hook-";

/// The most output kept from a hook (stdout and stderr together).
pub const OUTPUT_CAP: usize = 1 << 20;

/// A unit as systemd reports it: `LoadState`, `ActiveState`, `SubState` and,
/// for services, `Result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    pub name: String,
    /// `loaded`, `not-found`, `bad-setting`, `error`, `masked`, `stub`, `merged`.
    pub load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`.
    pub active_state: String,
    /// Type-specific: `running`, `exited`, `dead`, `failed`, ...
    pub sub_state: String,
    /// A service's `Result` (`success`, `exit-code`, `timeout`, `signal`, ...);
    /// `None` for other unit types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl UnitState {
    /// What systemd reports for a name it has no unit file for.
    pub fn not_found(name: &str) -> UnitState {
        UnitState {
            name: name.to_string(),
            load_state: "not-found".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            result: None,
        }
    }
    pub fn is_active(&self) -> bool {
        self.active_state == "active" || self.active_state == "reloading"
    }
    pub fn is_failed(&self) -> bool {
        self.active_state == "failed"
    }
    pub fn is_inactive(&self) -> bool {
        self.active_state == "inactive"
    }
    /// `activating` or `deactivating`: a job is under way.
    pub fn is_transitioning(&self) -> bool {
        self.active_state == "activating" || self.active_state == "deactivating"
    }
    /// systemd has no unit file (or a masked one) for this name.
    pub fn is_not_found(&self) -> bool {
        self.load_state == "not-found"
    }
    /// The unit file exists but systemd could not use it.
    pub fn is_load_error(&self) -> bool {
        matches!(self.load_state.as_str(), "bad-setting" | "error" | "masked")
    }
}

/// A host command to run as a transient service unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransientSpec {
    /// The full unit name, `berth-hook-<...>.service` (see [`hook_unit_name`]).
    pub unit_name: String,
    /// `argv[0]` is the program (an absolute path, or a name systemd finds
    /// in its search path).
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// An absolute path; stdout and stderr go to it (emptied at start). Its
    /// directory must exist and should be berthd's own (0700): the output
    /// may hold secrets, and systemd creates the file 0644. The caller keeps
    /// the path (it is not recoverable from the unit) to read the result
    /// again after a restart.
    pub output_path: String,
    /// Killed (SIGTERM, then SIGKILL after a grace period) and reported as
    /// `timeout` once it has run this long. `None`: no limit.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::units::opt_duration_serde"
    )]
    pub timeout: Option<Duration>,
}

/// How a finished command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitStatus {
    /// It exited with this code.
    Exited { code: i32 },
    /// It was killed by this signal.
    Killed { signal: i32, core_dumped: bool },
    /// It never ran, or systemd does not say (it failed to start, say).
    Unknown,
}

/// `si_code` values systemd reports in `ExecMainCode`.
const CLD_EXITED: i32 = 1;
const CLD_KILLED: i32 = 2;
const CLD_DUMPED: i32 = 3;

impl ExitStatus {
    /// From a service's `ExecMainCode` (a `waitid()` `si_code`) and
    /// `ExecMainStatus`.
    pub fn from_exec_main(code: i32, status: i32) -> ExitStatus {
        match code {
            CLD_EXITED => ExitStatus::Exited { code: status },
            CLD_KILLED => ExitStatus::Killed {
                signal: status,
                core_dumped: false,
            },
            CLD_DUMPED => ExitStatus::Killed {
                signal: status,
                core_dumped: true,
            },
            _ => ExitStatus::Unknown,
        }
    }
    pub fn exit_code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited { code } => Some(code),
            _ => None,
        }
    }
    /// The shell's convention: the exit code, or 128 + the signal; -1 when
    /// unknown. What berth records as `deploy_status_code`.
    pub fn status_code(self) -> i32 {
        match self {
            ExitStatus::Exited { code } => code,
            ExitStatus::Killed { signal, .. } => 128 + signal,
            ExitStatus::Unknown => -1,
        }
    }
}

/// A transient command that has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransientResult {
    pub unit_name: String,
    /// systemd's `Result`: `success`, `exit-code`, `signal`, `core-dump`,
    /// `timeout`, `resources` (could not even start), ...
    pub result: String,
    pub exit: ExitStatus,
    /// stdout and stderr as written (interleaved), lossily UTF-8, at most
    /// [`OUTPUT_CAP`] bytes (the end is kept).
    pub output: String,
    /// More was written than [`OUTPUT_CAP`]; the beginning was dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
}

impl TransientResult {
    pub fn succeeded(&self) -> bool {
        self.result == "success" && matches!(self.exit, ExitStatus::Exited { code: 0 })
    }
    pub fn timed_out(&self) -> bool {
        self.result == "timeout"
    }
}

/// Where a transient unit is, judged from its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientPhase {
    /// Starting, running or being stopped.
    Running,
    /// Exited (successfully: `active`/`exited` thanks to `RemainAfterExit`;
    /// or not: `failed`), or stopped by someone (`inactive`).
    Finished,
    /// systemd does not know the unit (never started, cleaned up, or lost
    /// in a reboot).
    Gone,
}

impl TransientPhase {
    pub fn of(state: &UnitState) -> TransientPhase {
        if state.is_not_found() {
            return TransientPhase::Gone;
        }
        match (state.active_state.as_str(), state.sub_state.as_str()) {
            ("failed", _) | ("inactive", _) => TransientPhase::Finished,
            ("active", "exited") => TransientPhase::Finished,
            _ => TransientPhase::Running,
        }
    }
}

/// `berth-hook-<service>-<hook>-<id>.service`, each part escaped the way
/// `systemd-escape` does (so any service or hook name gives a valid, unique
/// unit name).
pub fn hook_unit_name(service: &str, hook: &str, id: &str) -> String {
    format!(
        "{HOOK_UNIT_PREFIX}{}-{}-{}.service",
        escape_unit_part(service),
        escape_unit_part(hook),
        escape_unit_part(id)
    )
}

/// systemd's unit-name escaping (`systemd-escape` without `--path`): ASCII
/// letters, digits, `:` and `_` are kept, `.` too except in front; every
/// other byte becomes `\xNN`. `-` is escaped, so it can separate parts.
pub fn escape_unit_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The longest unit name systemd accepts.
pub const UNIT_NAME_MAX: usize = 255;

/// Checks a full unit name the way systemd does (`unit_name_is_valid`):
/// `prefix[@instance].type`, only `[A-Za-z0-9:_.\-@\\]`, at most 255 bytes.
pub fn validate_unit_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty unit name".into());
    }
    if name.len() > UNIT_NAME_MAX {
        return Err(format!(
            "longer than {UNIT_NAME_MAX} bytes ({}); use a shorter id",
            name.len()
        ));
    }
    let Some((stem, suffix)) = name.rsplit_once('.') else {
        return Err("no unit type suffix (like `.service`)".into());
    };
    const TYPES: [&str; 11] = [
        "service",
        "socket",
        "target",
        "device",
        "mount",
        "automount",
        "swap",
        "timer",
        "path",
        "slice",
        "scope",
    ];
    if !TYPES.contains(&suffix) {
        return Err(format!(
            "unknown unit type `.{suffix}`; expected one of .{}",
            TYPES.join(", .")
        ));
    }
    if stem.is_empty() || stem.starts_with('@') {
        return Err("empty unit name before the type suffix".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\".contains(*c)))
    {
        return Err(format!(
            "`{bad}` is not allowed in a unit name (escape it with `systemd-escape`)"
        ));
    }
    if stem.matches('@').count() > 1 {
        return Err("more than one `@`".into());
    }
    Ok(())
}

/// A transient unit name berth may start: a valid `.service` name with the
/// [`HOOK_UNIT_PREFIX`], so berth never starts or cleans up someone else's unit.
pub fn validate_hook_unit_name(name: &str) -> Result<(), String> {
    validate_unit_name(name)?;
    if !name.starts_with(HOOK_UNIT_PREFIX) || !name.ends_with(".service") {
        return Err(format!(
            "a host hook's unit must be named `{HOOK_UNIT_PREFIX}<...>.service`"
        ));
    }
    if name.contains('@') {
        return Err("a host hook's unit cannot be a template instance (`@`)".into());
    }
    Ok(())
}

/// What systemd would refuse (or do surprisingly) in a transient unit,
/// refused up front with berth's words. The real host and the fake both
/// check it, so tests see the same refusals.
pub fn validate_transient(spec: &TransientSpec) -> Result<(), HostError> {
    let invalid = |reason: String| HostError::InvalidSpec {
        unit: spec.unit_name.clone(),
        reason,
    };
    validate_hook_unit_name(&spec.unit_name).map_err(|reason| HostError::InvalidName {
        unit: spec.unit_name.clone(),
        reason,
    })?;
    match spec.argv.first() {
        None => return Err(invalid("empty command (argv)".into())),
        Some(p) if p.is_empty() => return Err(invalid("empty program name (argv[0])".into())),
        Some(_) => {}
    }
    if spec.argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid("a command argument contains a NUL byte".into()));
    }
    if !std::path::Path::new(&spec.output_path).is_absolute() {
        return Err(invalid(format!(
            "output path `{}` is not absolute",
            spec.output_path
        )));
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(format!("invalid environment variable `{k}`")));
        }
    }
    if let Some(dir) = &spec.working_dir
        && !std::path::Path::new(dir).is_absolute()
    {
        return Err(invalid(format!(
            "working directory `{dir}` is not absolute"
        )));
    }
    if spec.timeout == Some(Duration::ZERO) {
        return Err(invalid("a zero timeout would kill it at once".into()));
    }
    Ok(())
}

/// The last `cap` bytes of `bytes` as text (lossily UTF-8), and whether
/// anything was dropped. A multi-byte character cut at the start is dropped
/// rather than shown as a replacement character.
pub fn cap_output(bytes: &[u8], cap: usize) -> (String, bool) {
    if bytes.len() <= cap {
        return (String::from_utf8_lossy(bytes).into_owned(), false);
    }
    let mut tail = &bytes[bytes.len() - cap..];
    // Skip UTF-8 continuation bytes at the cut.
    let skip = tail
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    tail = &tail[skip..];
    (String::from_utf8_lossy(tail).into_owned(), true)
}

/// Why a host-units call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("cannot reach systemd on the {bus} bus at {address}: {reason}; {hint}")]
    BusUnavailable {
        /// `system`, `user` or `custom`.
        bus: String,
        address: String,
        reason: String,
        hint: String,
    },
    #[error("the connection to systemd on the {bus} bus was lost: {reason}; berth reconnects")]
    Disconnected { bus: String, reason: String },
    #[error(
        "systemd has no unit {unit} (it was never started, was cleaned up, or the host rebooted)"
    )]
    NoSuchUnit { unit: String },
    #[error(
        "a unit named {unit} already exists in systemd; pick a new id, or clean the old one up first"
    )]
    AlreadyExists { unit: String },
    #[error("invalid unit name `{unit}`: {reason}")]
    InvalidName { unit: String, reason: String },
    #[error("invalid transient unit {unit}: {reason}")]
    InvalidSpec { unit: String, reason: String },
    #[error("systemd refused to {op} {unit}: {message}")]
    Refused {
        op: &'static str,
        unit: String,
        message: String,
    },
    #[error("the output of {unit} at {path}: {reason}")]
    Output {
        unit: String,
        path: String,
        reason: String,
    },
}

impl HostError {
    /// systemd could not be reached (retry with backoff, then resync).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            HostError::BusUnavailable { .. } | HostError::Disconnected { .. }
        )
    }
}

/// The host's service manager, as berth needs it.
pub trait HostUnits: Send + Sync + 'static {
    /// The current state of each named unit, then every change, until the
    /// stream is dropped. A name systemd has no unit for is reported with
    /// `load_state: not-found`, and reported again when it appears (after a
    /// `daemon-reload`, say). Consecutive identical states are not repeated.
    /// An `Err` item is the last one: the stream ends and the caller
    /// re-watches (after a backoff when [`HostError::is_unreachable`]).
    fn watch_units(&self, names: Vec<String>) -> BoxStream<Result<UnitState, HostError>>;

    /// One unit's current state (`not-found` if systemd has none).
    fn unit_state(&self, name: &str) -> impl Future<Output = Result<UnitState, HostError>> + Send;

    /// Starts `spec` as a transient service and returns once systemd has
    /// accepted it (not when it finishes: see [`HostUnits::transient_result`]).
    fn run_transient(
        &self,
        spec: TransientSpec,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// `None` while the unit runs; its result once it has finished.
    /// [`HostError::NoSuchUnit`] when systemd does not know it. Works by
    /// name alone, so berthd re-attaches to a hook after its own restart.
    fn transient_result(
        &self,
        unit_name: &str,
        output_path: &str,
    ) -> impl Future<Output = Result<Option<TransientResult>, HostError>> + Send;

    /// Stops the unit if it still runs, makes systemd forget it, and removes
    /// its output file. Idempotent: a unit or file already gone is fine.
    /// Drop any watch on the unit first: a watch keeps it loaded.
    fn cleanup_transient(
        &self,
        unit_name: &str,
        output_path: &str,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(load: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            name: "x.service".into(),
            load_state: load.into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: None,
        }
    }

    #[test]
    fn exit_status_from_systemd_numbers() {
        assert_eq!(
            ExitStatus::from_exec_main(1, 3),
            ExitStatus::Exited { code: 3 }
        );
        assert_eq!(
            ExitStatus::from_exec_main(2, 15),
            ExitStatus::Killed {
                signal: 15,
                core_dumped: false
            }
        );
        assert_eq!(
            ExitStatus::from_exec_main(3, 6),
            ExitStatus::Killed {
                signal: 6,
                core_dumped: true
            }
        );
        assert_eq!(ExitStatus::from_exec_main(0, 0), ExitStatus::Unknown);
        assert_eq!(ExitStatus::from_exec_main(1, 3).status_code(), 3);
        assert_eq!(ExitStatus::from_exec_main(2, 9).status_code(), 137);
        assert_eq!(ExitStatus::Unknown.status_code(), -1);
        assert_eq!(ExitStatus::from_exec_main(2, 9).exit_code(), None);
    }

    #[test]
    fn phases() {
        use TransientPhase::*;
        assert_eq!(
            TransientPhase::of(&st("loaded", "activating", "start")),
            Running
        );
        assert_eq!(
            TransientPhase::of(&st("loaded", "active", "running")),
            Running
        );
        assert_eq!(
            TransientPhase::of(&st("loaded", "deactivating", "stop-sigterm")),
            Running
        );
        assert_eq!(
            TransientPhase::of(&st("loaded", "active", "exited")),
            Finished
        );
        assert_eq!(
            TransientPhase::of(&st("loaded", "failed", "failed")),
            Finished
        );
        assert_eq!(
            TransientPhase::of(&st("loaded", "inactive", "dead")),
            Finished
        );
        assert_eq!(TransientPhase::of(&UnitState::not_found("x.service")), Gone);
    }

    #[test]
    fn state_helpers() {
        assert!(st("loaded", "active", "running").is_active());
        assert!(st("loaded", "reloading", "reload").is_active());
        assert!(st("loaded", "failed", "failed").is_failed());
        assert!(st("loaded", "activating", "start").is_transitioning());
        assert!(UnitState::not_found("a.service").is_not_found());
        assert!(st("masked", "inactive", "dead").is_load_error());
    }

    #[test]
    fn escaping_matches_systemd_escape() {
        assert_eq!(escape_unit_part("web"), "web");
        assert_eq!(escape_unit_part("pre-stop"), "pre\\x2dstop");
        assert_eq!(escape_unit_part("a b/c"), "a\\x20b\\x2fc");
        assert_eq!(escape_unit_part(".hidden.x"), "\\x2ehidden.x");
        assert_eq!(escape_unit_part("é"), "\\xc3\\xa9");
        let n = hook_unit_name("api-v2", "pre_stop", "g7");
        assert_eq!(n, "berth-hook-api\\x2dv2-pre_stop-g7.service");
        assert_eq!(validate_hook_unit_name(&n), Ok(()));
    }

    #[test]
    fn unit_names() {
        assert!(validate_unit_name("a.service").is_ok());
        assert!(validate_unit_name("getty@tty1.service").is_ok());
        assert!(validate_unit_name("a").is_err());
        assert!(validate_unit_name(".service").is_err());
        assert!(validate_unit_name("a.nope").is_err());
        assert!(validate_unit_name("a b.service").is_err());
        assert!(validate_unit_name("a/b.service").is_err());
        assert!(validate_unit_name(&format!("{}.service", "a".repeat(250))).is_err());
        assert!(validate_hook_unit_name("berth-hook-x.service").is_ok());
        assert!(validate_hook_unit_name("sshd.service").is_err());
        assert!(validate_hook_unit_name("berth-hook-x.timer").is_err());
        assert!(validate_hook_unit_name("berth-hook-x@1.service").is_err());
    }

    #[test]
    fn output_is_capped_from_the_end() {
        assert_eq!(cap_output(b"hello", 10), ("hello".to_string(), false));
        assert_eq!(cap_output(b"hello world", 5), ("world".to_string(), true));
        // A cut inside "é" (0xc3 0xa9) drops the orphaned continuation byte.
        let (s, cut) = cap_output("aé!".as_bytes(), 2);
        assert!(cut);
        assert_eq!(s, "!");
    }
}
