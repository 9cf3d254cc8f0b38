//! [`FakeHost`]: an in-memory [`HostUnits`] for the agent's tests. Tests set
//! unit states (watchers see each change), see which transient units were
//! started, finish them with a chosen result, and make calls fail.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::host::{
    ExitStatus, HostError, HostUnits, TransientResult, TransientSpec, UnitState,
};
use berth_core::runtime::BoxStream;
use tokio::sync::mpsc;

/// Which call [`FakeHost::fail_next`] makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeOp {
    Watch,
    UnitState,
    RunTransient,
    TransientResult,
    CleanupTransient,
}

type Watcher = (
    Vec<String>,
    mpsc::UnboundedSender<Result<UnitState, HostError>>,
);

#[derive(Default)]
struct Inner {
    units: BTreeMap<String, UnitState>,
    watchers: Vec<Watcher>,
    started: Vec<TransientSpec>,
    running: Vec<String>,
    finished: BTreeMap<String, TransientResult>,
    cleaned: Vec<String>,
    failures: VecDeque<(FakeOp, HostError)>,
    unreachable: Option<HostError>,
}

/// An in-memory host. Clones share state.
#[derive(Clone, Default)]
pub struct FakeHost {
    inner: Arc<Mutex<Inner>>,
}

fn state(name: &str, load: &str, active: &str, sub: &str, result: Option<&str>) -> UnitState {
    UnitState {
        name: name.to_string(),
        load_state: load.to_string(),
        active_state: active.to_string(),
        sub_state: sub.to_string(),
        result: result.map(str::to_string),
    }
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a unit's state (its `name` says which) and tells the watchers.
    pub fn set_unit(&self, s: UnitState) {
        let mut inner = self.lock();
        inner.units.insert(s.name.clone(), s.clone());
        push(&mut inner, &s);
    }

    /// `set_unit` with `load_state: loaded` and a service `Result` that
    /// follows the state (`success`, or `exit-code` when failed).
    pub fn set(&self, name: &str, active_state: &str, sub_state: &str) {
        let result = if active_state == "failed" {
            "exit-code"
        } else {
            "success"
        };
        self.set_unit(state(name, "loaded", active_state, sub_state, Some(result)));
    }

    /// The unit disappears: watchers see `not-found`.
    pub fn remove_unit(&self, name: &str) {
        let mut inner = self.lock();
        inner.units.remove(name);
        push(&mut inner, &UnitState::not_found(name));
    }

    /// Every `run_transient` that was accepted, in order.
    pub fn started(&self) -> Vec<TransientSpec> {
        self.lock().started.clone()
    }

    /// Transient units started and not finished.
    pub fn running(&self) -> Vec<String> {
        self.lock().running.clone()
    }

    /// Units passed to `cleanup_transient`, in order.
    pub fn cleaned(&self) -> Vec<String> {
        self.lock().cleaned.clone()
    }

    /// The names each open watch stream asked for.
    pub fn watched(&self) -> Vec<Vec<String>> {
        let mut inner = self.lock();
        inner.watchers.retain(|(_, tx)| !tx.is_closed());
        inner.watchers.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Open watch streams.
    pub fn watchers(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|(_, tx)| !tx.is_closed());
        inner.watchers.len()
    }

    /// Finishes a running transient unit. `result` is systemd's word
    /// (`success`, `exit-code`, `timeout`, `signal`).
    pub fn complete(&self, unit: &str, result: &str, exit: ExitStatus, output: &str) -> bool {
        let mut inner = self.lock();
        let Some(pos) = inner.running.iter().position(|u| u == unit) else {
            return false;
        };
        inner.running.remove(pos);
        inner.finished.insert(
            unit.to_string(),
            TransientResult {
                unit_name: unit.to_string(),
                result: result.to_string(),
                exit,
                output: output.to_string(),
                output_truncated: false,
            },
        );
        let s = if result == "success" {
            state(unit, "loaded", "active", "exited", Some(result))
        } else {
            state(unit, "loaded", "failed", "failed", Some(result))
        };
        inner.units.insert(unit.to_string(), s.clone());
        push(&mut inner, &s);
        true
    }

    /// `complete` with exit code `code` (`success` for 0, else `exit-code`).
    pub fn exit(&self, unit: &str, code: i32, output: &str) -> bool {
        let result = if code == 0 { "success" } else { "exit-code" };
        self.complete(unit, result, ExitStatus::Exited { code }, output)
    }

    /// The next call of `op` fails with `err` (queued; one per call).
    pub fn fail_next(&self, op: FakeOp, err: HostError) {
        self.lock().failures.push_back((op, err));
    }

    /// `Some`: every call fails with this error and open watches end with
    /// it. `None`: reachable again.
    pub fn set_unreachable(&self, err: Option<HostError>) {
        let mut inner = self.lock();
        if let Some(e) = &err {
            for (_, tx) in inner.watchers.drain(..) {
                let _ = tx.send(Err(e.clone()));
            }
        }
        inner.unreachable = err;
    }

    fn check(&self, op: FakeOp) -> Result<(), HostError> {
        let mut inner = self.lock();
        if let Some(e) = &inner.unreachable {
            return Err(e.clone());
        }
        if let Some(pos) = inner.failures.iter().position(|(o, _)| *o == op)
            && let Some((_, e)) = inner.failures.remove(pos)
        {
            return Err(e);
        }
        Ok(())
    }

    fn current(inner: &Inner, name: &str) -> UnitState {
        inner
            .units
            .get(name)
            .cloned()
            .unwrap_or_else(|| UnitState::not_found(name))
    }
}

fn push(inner: &mut Inner, s: &UnitState) {
    inner
        .watchers
        .retain(|(names, tx)| !names.contains(&s.name) || tx.send(Ok(s.clone())).is_ok());
}

impl HostUnits for FakeHost {
    fn watch_units(&self, names: Vec<String>) -> BoxStream<Result<UnitState, HostError>> {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.check(FakeOp::Watch) {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(()) => {
                let mut inner = self.lock();
                for n in &names {
                    let _ = tx.send(Ok(FakeHost::current(&inner, n)));
                }
                inner.watchers.push((names, tx));
            }
        }
        Box::pin(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }

    async fn unit_state(&self, name: &str) -> Result<UnitState, HostError> {
        self.check(FakeOp::UnitState)?;
        Ok(FakeHost::current(&self.lock(), name))
    }

    async fn run_transient(&self, spec: TransientSpec) -> Result<(), HostError> {
        self.check(FakeOp::RunTransient)?;
        berth_core::host::validate_transient(&spec)?;
        let mut inner = self.lock();
        let name = spec.unit_name.clone();
        if inner.running.contains(&name) || inner.finished.contains_key(&name) {
            return Err(HostError::AlreadyExists { unit: name });
        }
        inner.started.push(spec);
        inner.running.push(name.clone());
        let s = state(&name, "loaded", "active", "running", Some("success"));
        inner.units.insert(name, s.clone());
        push(&mut inner, &s);
        Ok(())
    }

    async fn transient_result(
        &self,
        unit_name: &str,
        _output_path: &str,
    ) -> Result<Option<TransientResult>, HostError> {
        self.check(FakeOp::TransientResult)?;
        let inner = self.lock();
        if inner.running.iter().any(|u| u == unit_name) {
            return Ok(None);
        }
        match inner.finished.get(unit_name) {
            Some(r) => Ok(Some(r.clone())),
            None => Err(HostError::NoSuchUnit {
                unit: unit_name.to_string(),
            }),
        }
    }

    async fn cleanup_transient(
        &self,
        unit_name: &str,
        _output_path: &str,
    ) -> Result<(), HostError> {
        self.check(FakeOp::CleanupTransient)?;
        let mut inner = self.lock();
        inner.running.retain(|u| u != unit_name);
        inner.finished.remove(unit_name);
        inner.units.remove(unit_name);
        inner.cleaned.push(unit_name.to_string());
        push(&mut inner, &UnitState::not_found(unit_name));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::time::Duration;

    fn spec(name: &str) -> TransientSpec {
        TransientSpec {
            unit_name: name.into(),
            argv: vec!["/bin/true".into()],
            env: BTreeMap::new(),
            working_dir: None,
            output_path: "/tmp/x.out".into(),
            timeout: Some(Duration::from_secs(5)),
        }
    }

    #[tokio::test]
    async fn watchers_see_the_current_state_then_changes() {
        let host = FakeHost::new();
        host.set("a.service", "inactive", "dead");
        let mut w = host.watch_units(vec!["a.service".into(), "b.service".into()]);
        let first = w.next().await.unwrap().unwrap();
        assert!(first.is_inactive() && !first.is_not_found());
        assert!(w.next().await.unwrap().unwrap().is_not_found());
        host.set("a.service", "active", "running");
        host.set("other.service", "active", "running");
        host.set("b.service", "failed", "failed");
        assert!(w.next().await.unwrap().unwrap().is_active());
        let b = w.next().await.unwrap().unwrap();
        assert!(b.is_failed() && b.name == "b.service");
        assert_eq!(host.watchers(), 1);
        assert_eq!(
            host.watched(),
            vec![vec!["a.service".to_string(), "b.service".to_string()]]
        );
        drop(w);
        assert_eq!(host.watchers(), 0);
    }

    #[tokio::test]
    async fn transient_units_run_finish_and_are_cleaned_up() {
        let host = FakeHost::new();
        let name = "berth-hook-a-b-1.service";
        host.run_transient(spec(name)).await.unwrap();
        assert_eq!(host.running(), vec![name.to_string()]);
        assert_eq!(host.transient_result(name, "").await.unwrap(), None);
        assert!(matches!(
            host.run_transient(spec(name)).await,
            Err(HostError::AlreadyExists { .. })
        ));
        assert!(host.exit(name, 3, "out\n"));
        let r = host.transient_result(name, "").await.unwrap().unwrap();
        assert_eq!(r.exit.exit_code(), Some(3));
        assert_eq!(r.result, "exit-code");
        assert!(!r.succeeded());
        host.cleanup_transient(name, "").await.unwrap();
        assert!(matches!(
            host.transient_result(name, "").await,
            Err(HostError::NoSuchUnit { .. })
        ));
        assert_eq!(host.cleaned(), vec![name.to_string()]);
        assert_eq!(host.started().len(), 1);
    }

    #[tokio::test]
    async fn failures_are_injected() {
        let host = FakeHost::new();
        let gone = HostError::Disconnected {
            bus: "user".into(),
            reason: "test".into(),
        };
        host.fail_next(FakeOp::RunTransient, gone.clone());
        assert_eq!(
            host.run_transient(spec("berth-hook-x.service")).await,
            Err(gone.clone())
        );
        assert!(
            host.run_transient(spec("berth-hook-x.service"))
                .await
                .is_ok()
        );
        let mut w = host.watch_units(vec!["a.service".into()]);
        assert!(w.next().await.unwrap().is_ok());
        host.set_unreachable(Some(gone.clone()));
        assert_eq!(w.next().await.unwrap(), Err(gone.clone()));
        assert!(w.next().await.is_none(), "an error ends the stream");
        assert!(host.unit_state("a.service").await.is_err());
        host.set_unreachable(None);
        assert!(host.unit_state("a.service").await.is_ok());
    }
}
