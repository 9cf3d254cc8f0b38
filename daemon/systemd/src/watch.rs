//! `watch_units`: subscribe, then read, then follow signals (see the crate
//! docs for why in that order).

use std::collections::HashMap;

use berth_core::host::{HostError, UnitState, validate_unit_name};
use berth_core::runtime::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::message::Sequence;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::bus::{
    DbusHost, MANAGER_IFACE, MANAGER_PATH, PROPS_IFACE, SERVICE_IFACE, SYSTEMD, UNIT_PATH_PREFIX,
};
use crate::props::Change;

pub(crate) fn check_name(name: &str) -> Result<(), HostError> {
    validate_unit_name(name).map_err(|reason| HostError::InvalidName {
        unit: name.to_string(),
        reason,
    })
}

pub(crate) fn watch(host: DbusHost, names: Vec<String>) -> BoxStream<Result<UnitState, HostError>> {
    // The task starts on the first poll, so the stream can be made outside a
    // runtime; it ends when the stream is dropped.
    let stream = futures_util::stream::once(async move {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(host, names, tx));
        tokio_stream::wrappers::ReceiverStream::new(rx)
    })
    .flatten();
    Box::pin(stream)
}

/// A signal that can matter to a watch, parsed by the pump.
#[derive(Debug)]
enum Signal {
    Props {
        path: String,
        iface: String,
        changed: HashMap<String, OwnedValue>,
        invalidated: Vec<String>,
    },
    UnitNew {
        id: String,
        path: String,
    },
    UnitRemoved {
        id: String,
        path: String,
    },
    JobRemoved {
        unit: String,
    },
    /// `Reloading(true)`: a daemon-reload (or re-exec) started; systemd
    /// announces every unit as removed and new again meanwhile.
    Reloading,
    /// `Reloading(false)`: it finished.
    Reloaded,
}

fn parse(msg: &zbus::Message) -> Option<Signal> {
    let header = msg.header();
    let path = header.path()?.as_str();
    let iface = header.interface()?.as_str();
    let member = header.member()?.as_str();
    let body = msg.body();
    match (iface, member) {
        (PROPS_IFACE, "PropertiesChanged") if path.starts_with(UNIT_PATH_PREFIX) => {
            let (iface, changed, invalidated) = body
                .deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
                .ok()?;
            Some(Signal::Props {
                path: path.to_string(),
                iface,
                changed,
                invalidated,
            })
        }
        (MANAGER_IFACE, "UnitNew") | (MANAGER_IFACE, "UnitRemoved") => {
            let (id, unit) = body.deserialize::<(String, OwnedObjectPath)>().ok()?;
            let path = unit.as_str().to_string();
            Some(if member == "UnitNew" {
                Signal::UnitNew { id, path }
            } else {
                Signal::UnitRemoved { id, path }
            })
        }
        (MANAGER_IFACE, "JobRemoved") => {
            let (_id, _job, unit, _result) = body
                .deserialize::<(u32, OwnedObjectPath, String, String)>()
                .ok()?;
            Some(Signal::JobRemoved { unit })
        }
        (MANAGER_IFACE, "Reloading") => {
            let active = body.deserialize::<bool>().ok()?;
            Some(if active {
                Signal::Reloading
            } else {
                Signal::Reloaded
            })
        }
        _ => None,
    }
}

/// Adds the match rule and drains it on its own task (zbus stops reading
/// the socket when a rule's queue is full, which would stall our own method
/// replies), forwarding the signals a watch can use.
pub(crate) async fn subscribe(
    host: &DbusHost,
) -> Result<(zbus::Connection, mpsc::UnboundedReceiver<zbus::Message>), HostError> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(SYSTEMD)
        .and_then(|b| b.path_namespace(MANAGER_PATH))
        .map_err(|e| host.error("subscribe to", "signals", e))?
        .build();
    let conn = host.conn().await?;
    let mut stream = match zbus::MessageStream::for_match_rule(rule, &conn, Some(256)).await {
        Ok(stream) => stream,
        Err(e) => {
            let e = host.error("subscribe to", "signals", e);
            if e.is_unreachable() {
                host.forget(&conn).await;
            }
            return Err(e);
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                msg = stream.next() => match msg {
                    Some(Ok(msg)) => {
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => tracing::debug!("unreadable systemd signal: {e}"),
                    // The connection is gone; dropping `tx` tells the reader.
                    None => return,
                },
            }
        }
    });
    Ok((conn, rx))
}

struct Watched {
    name: String,
    /// The object path systemd last gave for the name (an alias resolves to
    /// its unit's). Kept while the unit is not loaded: a unit that is loaded
    /// again gets the same path.
    path: Option<String>,
    /// The unit's `Id` (its main name; `JobRemoved` uses it).
    id: Option<String>,
    last: Option<UnitState>,
    /// Where the replies of the last read arrived: a signal received before
    /// is older than what was read, and is skipped (applying it would report
    /// a state the unit already left).
    unit_seq: Sequence,
    service_seq: Sequence,
}

struct Watch {
    host: DbusHost,
    units: Vec<Watched>,
    tx: mpsc::Sender<Result<UnitState, HostError>>,
    /// Between `Reloading(true)` and `Reloading(false)`: `UnitNew` and
    /// `UnitRemoved` are noise then, and everything is re-read at the end.
    reloading: bool,
}

/// The receiver went away: stop.
struct Closed;

enum Stop {
    Closed,
    Failed(HostError),
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Stop {
        Stop::Closed
    }
}

impl From<HostError> for Stop {
    fn from(e: HostError) -> Stop {
        Stop::Failed(e)
    }
}

async fn run(host: DbusHost, names: Vec<String>, tx: mpsc::Sender<Result<UnitState, HostError>>) {
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if let Err(e) = check_name(&n) {
            let _ = tx.send(Err(e)).await;
            return;
        }
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let mut watch = Watch {
        host,
        units: unique
            .into_iter()
            .map(|name| Watched {
                name,
                path: None,
                id: None,
                last: None,
                unit_seq: Sequence::default(),
                service_seq: Sequence::default(),
            })
            .collect(),
        tx,
        reloading: false,
    };
    let outcome = watch.follow().await;
    if let Err(Stop::Failed(e)) = outcome {
        let _ = watch.tx.send(Err(e)).await;
    }
}

impl Watch {
    async fn follow(&mut self) -> Result<(), Stop> {
        // 1. Subscribe (the rule is in place once this returns) ...
        let (conn, mut signals) = subscribe(&self.host).await?;
        // 2. ... then read.
        for i in 0..self.units.len() {
            self.read(i, true).await?;
        }
        // 3. Follow.
        loop {
            let msg = tokio::select! {
                _ = self.tx.closed() => return Err(Stop::Closed),
                msg = signals.recv() => msg,
            };
            let Some(msg) = msg else {
                self.host.forget(&conn).await;
                return Err(Stop::Failed(HostError::Disconnected {
                    bus: self.host.bus.to_string(),
                    reason: "the signal stream from systemd ended".into(),
                }));
            };
            if let Some(signal) = parse(&msg) {
                self.handle(signal, msg.recv_position()).await?;
            }
        }
    }

    fn matching(&self, path: Option<&str>, name: Option<&str>) -> Vec<usize> {
        self.units
            .iter()
            .enumerate()
            .filter(|(_, u)| {
                path.is_some_and(|p| u.path.as_deref() == Some(p))
                    || name.is_some_and(|n| u.name == n || u.id.as_deref() == Some(n))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Units `matching`, less those read after `seq`.
    fn newer(&self, seq: Sequence, path: Option<&str>, name: Option<&str>) -> Vec<usize> {
        self.matching(path, name)
            .into_iter()
            .filter(|i| seq > self.units[*i].unit_seq)
            .collect()
    }

    async fn handle(&mut self, signal: Signal, seq: Sequence) -> Result<(), Stop> {
        // A reload re-announces every unit (removed, new); everything is
        // read again when it ends. Property changes still count.
        if self.reloading && matches!(signal, Signal::UnitNew { .. } | Signal::UnitRemoved { .. }) {
            return Ok(());
        }
        match signal {
            Signal::Props {
                path,
                iface,
                changed,
                invalidated,
            } => {
                for i in self.matching(Some(&path), None) {
                    let read_at = if iface == SERVICE_IFACE {
                        self.units[i].service_seq
                    } else {
                        self.units[i].unit_seq
                    };
                    if seq < read_at {
                        continue;
                    }
                    let change = Change::from_signal(&iface, &changed, &invalidated);
                    if change.reread {
                        self.read(i, false).await?;
                    } else if let Some(mut state) = self.units[i].last.clone()
                        && change.apply(&mut state)
                    {
                        self.emit(i, state).await?;
                    }
                }
            }
            Signal::UnitNew { id, path } => {
                // Loaded (again): a transient unit made anew, a unit being
                // started, or anyone's read of it (ours included). Read it
                // without loading: if it is gone again by then, it stays
                // what it was.
                for i in self.newer(seq, Some(&path), Some(&id)) {
                    self.read(i, false).await?;
                }
            }
            Signal::UnitRemoved { id, path } => {
                // Unloaded, so inactive (systemd keeps active and failed
                // units, and those with a job). Not read: reading would load
                // it again, and its removal would then call for another read.
                for i in self.newer(seq, Some(&path), Some(&id)) {
                    self.unloaded(i).await?;
                }
            }
            Signal::JobRemoved { unit } => {
                for i in self.newer(seq, None, Some(&unit)) {
                    self.read(i, false).await?;
                }
            }
            Signal::Reloading => self.reloading = true,
            Signal::Reloaded => {
                self.reloading = false;
                for i in 0..self.units.len() {
                    self.read(i, true).await?;
                }
            }
        }
        Ok(())
    }

    /// Unit `i` is not loaded: it is inactive, and what systemd knows of its
    /// unit file (its load state) has not changed since it was last read.
    async fn unloaded(&mut self, i: usize) -> Result<(), Stop> {
        let Some(mut state) = self.units[i].last.clone() else {
            return Ok(());
        };
        state.active_state = "inactive".into();
        state.sub_state = "dead".into();
        self.emit(i, state).await
    }

    /// Reads unit `i` and reports it if it changed, never keeping it loaded.
    ///
    /// `GetUnit` first, which loads nothing. A loaded unit is read at its
    /// path. A unit that is not loaded is inactive; what is not known from
    /// then on is only whether systemd can load it at all (`not-found`,
    /// `bad-setting`: the agent gives up on those after `units_timeout`,
    /// and waits without limit for one that is merely inactive). `decide`
    /// (the first read, and after a `daemon-reload`, which may have added or
    /// removed its unit file) learns that with one `LoadUnit` and a read of
    /// its state, and holds on to nothing: systemd collects the unit again
    /// at once, and its `UnitNew` and `UnitRemoved` change nothing.
    async fn read(&mut self, i: usize, decide: bool) -> Result<(), Stop> {
        let name = self.units[i].name.clone();
        let loaded = match self.host.get_unit_at(&name).await {
            Ok((Some(path), _)) => Some(path.as_str().to_string()),
            Ok((None, seq)) => {
                if !decide && self.units[i].last.is_some() {
                    let u = &mut self.units[i];
                    u.unit_seq = seq;
                    u.service_seq = seq;
                    return self.unloaded(i).await;
                }
                None
            }
            // Not loading it instead: a `UnitNew` would then call for
            // another read, and another load, without end.
            Err(e) => return Err(e.into()),
        };
        let path = match loaded {
            Some(p) => p,
            None => match self.host.load_unit(&name).await {
                Ok(p) => p.as_str().to_string(),
                Err(e) if e.is_unreachable() => return Err(e.into()),
                Err(e) => {
                    tracing::debug!("cannot load {name}: {e}");
                    return self.emit(i, UnitState::not_found(&name)).await;
                }
            },
        };
        self.units[i].path = Some(path.clone());
        // If systemd collected the unit since, this read loads it for the
        // time of the call (systemd resolves an object path by loading it);
        // the state read is still the unit's.
        match self.host.read_state(&path, &name).await {
            Ok(read) => {
                let u = &mut self.units[i];
                u.id = read.id;
                u.unit_seq = read.unit_seq;
                u.service_seq = read.service_seq.unwrap_or(read.unit_seq);
                self.emit(i, read.state).await
            }
            Err(e) if e.is_unreachable() => Err(e.into()),
            Err(HostError::NoSuchUnit { .. }) => self.emit(i, UnitState::not_found(&name)).await,
            Err(e) => Err(e.into()),
        }
    }

    async fn emit(&mut self, i: usize, state: UnitState) -> Result<(), Stop> {
        if self.units[i].last.as_ref() == Some(&state) {
            return Ok(());
        }
        self.units[i].last = Some(state.clone());
        self.tx.send(Ok(state)).await.map_err(|_| Closed)?;
        Ok(())
    }
}
