//! berth's host-units seam ([`berth_core::host::HostUnits`]) on systemd's
//! D-Bus API. Its fake for the agent's tests is `berth_fakes::FakeHost`.
//!
//! [`DbusHost`] talks to `org.freedesktop.systemd1` on the system bus (berthd
//! on a host) or a user bus (tests, `user_bus = true`), with zbus on tokio.
//! It uses plain method calls and one signal match rule; it never polls.
//!
//! # Watching units
//! [`HostUnits::watch_units`] must not miss a change, so the order is:
//!
//! 1. `Subscribe` on the manager, once per connection ([`DbusHost::connect`]):
//!    without it systemd does not emit unit signals at all.
//! 2. Add the match rule (every signal systemd sends under
//!    `/org/freedesktop/systemd1`) and start draining it, *before* reading
//!    anything. A change that happens while the current state is being read
//!    is then already queued. The other order (read, then subscribe) loses
//!    whatever changes in between, forever.
//! 3. Read each name without holding on to it (see *Never pinning a unit*
//!    below): `GetUnit`, and `LoadState`, `ActiveState`, `SubState` (and a
//!    service's `Result`) at the object path it gives.
//! 4. Then apply signals: `PropertiesChanged` on a watched unit's object
//!    (the new values are in the signal), `JobRemoved` / `UnitNew` for a
//!    watched name (re-read with `GetUnit`), `UnitRemoved` (it was
//!    unloaded, so it is inactive), and `Reloading(false)` (after a
//!    `daemon-reload`, decide every watched unit again: a unit file that
//!    appeared turns `not-found` into `loaded`, and nothing else would say
//!    so). Between `Reloading(true)` and `Reloading(false)` systemd
//!    re-announces every unit (`UnitRemoved`, `UnitNew`); those are ignored.
//!
//! # Never pinning a unit
//! berth waits for host units; it must never change what the host can do
//! with them. A watch holds no `Ref` on a unit: a referenced unit stays
//! loaded while inactive, and systemd then refuses a new transient unit of
//! that name ("already loaded or has a fragment file"). So systemd unloads
//! an inactive unit the watch follows as it would without berth, and the
//! watch treats "not loaded" as a state:
//!
//! - `GetUnit` loads nothing. `NoSuchUnit` means not loaded, which for a
//!   unit systemd has read before means inactive (systemd keeps every unit
//!   that is active, failed or has a job); its load state is what it was.
//! - Whether systemd can load the unit at all (`not-found` and `bad-setting`
//!   fail a deployment after `units_timeout`; a merely inactive unit is
//!   waited for without limit) is decided with one `LoadUnit` and one read,
//!   on the first read and after each `daemon-reload`. Nothing keeps that
//!   unit: systemd collects it again at once and announces it (`UnitNew`,
//!   `UnitRemoved`), which changes nothing.
//! - A unit that comes back (a new transient unit, a start, anyone's read)
//!   is announced with `UnitNew`, and read then. `UnitRemoved` is never
//!   answered with a read: reading an object path loads the unit (systemd
//!   resolves paths by loading), its collection would announce it again,
//!   and a watch that loaded on either signal would go round
//!   (load, new, collected, removed, load ...) for ever.
//!
//! Signals queued before a read's reply describe states older than what was
//! read. zbus numbers every message a connection receives, replies included
//! (`Message::recv_position`), so a unit's signals received before its last
//! read are skipped: a watch never reports a state the unit already left
//! (no `failed` → `active` → `failed` flip-flop after a re-read), and
//! identical consecutive states are reported once.
//!
//! The signal stream is drained by its own task into an unbounded channel:
//! zbus stops reading the socket when a match-rule queue is full, so a task
//! that waits for a method reply while its own signal queue is full would
//! wait forever. Only the few signal kinds above are forwarded.
//!
//! # Host commands as transient units
//! [`HostUnits::run_transient`] starts `berth-hook-<...>.service` with
//! `StartTransientUnit`: `Type=exec` (the start fails visibly if the program
//! cannot be executed), `RemainAfterExit=yes`, `RuntimeMaxSec=` for the
//! timeout (SIGTERM, then SIGKILL after [`STOP_GRACE`]), stdout and stderr
//! truncated into one file the caller names.
//!
//! Why not wait for the process? Because berthd may restart while a hook
//! runs (an upgrade, a crash, the watchdog). The result must outlive berthd,
//! and systemd keeps it: `RemainAfterExit=yes` keeps a successful unit
//! `active (exited)`, a failed one stays `failed` until `ResetFailedUnit`, and
//! both keep `Result`, `ExecMainCode` and `ExecMainStatus`. The output is in
//! a file, not the journal (there may be none, and reading it back is
//! another API). So re-attaching is just asking again by name:
//! [`HostUnits::transient_result`] is `None` while it runs and the result
//! once it is done, from any berthd process. [`HostUnits::cleanup_transient`]
//! stops the unit, waits for the stop job, makes systemd forget it
//! (`ResetFailedUnit`) and removes the output file; the caller does that
//! only after the result is stored. None of these holds a `Ref` (and
//! `transient_result` reads with `GetUnit`, which loads nothing): only
//! `RemainAfterExit` keeps a finished hook's unit, so once cleaned up it is
//! gone from systemd, watched or not, and the same name can run again.
//!
//! The probe binary (`berth-systemd-probe`) drives all of this from a shell
//! and prints JSON lines; the integration tests use it inside a private user
//! manager's namespaces.

mod bus;
mod props;
mod transient;
mod watch;

pub use berth_core::host::{
    ExitStatus, HostError, HostUnits, TransientResult, TransientSpec, UnitState,
};
pub use bus::{Bus, DbusHost, unit_object_path};

/// How long a timed-out or cleaned-up hook gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
