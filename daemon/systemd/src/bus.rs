//! The connection: which bus, connecting with a useful error, the method
//! calls berth makes, and how zbus errors become [`HostError`]s.

use std::collections::HashMap;
use std::sync::Arc;

use berth_core::host::{HostError, HostUnits, TransientResult, TransientSpec, UnitState};
use berth_core::runtime::BoxStream;
use zbus::Connection;
use zbus::message::Sequence;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

pub(crate) const SYSTEMD: &str = "org.freedesktop.systemd1";
pub(crate) const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
pub(crate) const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
pub(crate) const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
pub(crate) const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
pub(crate) const PROPS_IFACE: &str = "org.freedesktop.DBus.Properties";
pub(crate) const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit/";

const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// Which bus systemd is reached on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// `DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`: the
    /// host's systemd. berthd's default.
    System,
    /// `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`: a
    /// `systemd --user` manager (tests; berthd's `user_bus = true`).
    User,
    /// An explicit D-Bus address (`unix:path=...`).
    Address(String),
}

impl Bus {
    /// The address this bus resolves to, from the environment.
    pub fn address(&self) -> String {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match self {
            Bus::System => {
                var("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_string())
            }
            Bus::User => user_bus_address(
                var("DBUS_SESSION_BUS_ADDRESS"),
                var("XDG_RUNTIME_DIR"),
                current_uid(),
            ),
            Bus::Address(a) => a.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Bus::System => "system",
            Bus::User => "user",
            Bus::Address(_) => "custom",
        }
    }

    fn hint(&self) -> String {
        match self {
            Bus::System => "is dbus running on this host, and does berthd run as root? \
                            To use a systemd --user manager instead (tests), set `user_bus = true`"
                .into(),
            Bus::User => "is a `systemd --user` manager running for this user, with dbus \
                          (dbus-user-session)? Set DBUS_SESSION_BUS_ADDRESS or XDG_RUNTIME_DIR; \
                          for the host's systemd, set `user_bus = false`"
                .into(),
            Bus::Address(_) => {
                "check the address, and that a bus with systemd on it listens there".into()
            }
        }
    }
}

/// The user bus address: `DBUS_SESSION_BUS_ADDRESS`, else
/// `$XDG_RUNTIME_DIR/bus`, else `/run/user/<uid>/bus` (what sd-bus does).
pub(crate) fn user_bus_address(
    session: Option<String>,
    runtime_dir: Option<String>,
    uid: Option<u32>,
) -> String {
    if let Some(a) = session {
        return a;
    }
    let dir = runtime_dir.unwrap_or_else(|| match uid {
        Some(uid) => format!("/run/user/{uid}"),
        None => "/run/user/0".into(),
    });
    format!("unix:path={}/bus", dir.trim_end_matches('/'))
}

fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The object path systemd gives a unit (sd-bus's label escaping: ASCII
/// letters and digits kept, every other byte `_xx`).
pub fn unit_object_path(name: &str) -> String {
    let mut out = String::with_capacity(UNIT_PATH_PREFIX.len() + name.len() * 2);
    out.push_str(UNIT_PATH_PREFIX);
    if name.is_empty() {
        out.push('_');
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// [`HostUnits`] on systemd's D-Bus API. Cheap to clone: clones share one
/// connection. A call that finds the connection broken (dbus restarted, say)
/// fails as unreachable and drops it; the next call connects again (and
/// subscribes again), so callers only retry with a backoff.
#[derive(Debug, Clone)]
pub struct DbusHost {
    target: Bus,
    pub(crate) bus: &'static str,
    conn: Arc<tokio::sync::Mutex<Option<Connection>>>,
}

impl DbusHost {
    /// Connects to `bus` and subscribes to systemd's signals; fails at once
    /// if systemd cannot be reached there.
    pub async fn connect(bus: Bus) -> Result<DbusHost, HostError> {
        let host = DbusHost::lazy(bus);
        let _connected = host.conn().await?;
        Ok(host)
    }

    /// Connects on first use (a berthd that starts before dbus does).
    pub fn lazy(bus: Bus) -> DbusHost {
        DbusHost {
            bus: bus.kind(),
            target: bus,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// The bus this host talks to.
    pub fn target(&self) -> &Bus {
        &self.target
    }

    /// The current connection, made (and subscribed) if there is none.
    pub(crate) async fn conn(&self) -> Result<Connection, HostError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let address = self.target.address();
        let unavailable = |reason: String| HostError::BusUnavailable {
            bus: self.bus.to_string(),
            address: address.clone(),
            reason,
            hint: self.target.hint(),
        };
        let conn = zbus::connection::Builder::address(address.as_str())
            .map_err(|e| unavailable(format!("invalid address: {e}")))?
            .build()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        // Without Subscribe, systemd emits no unit or job signals.
        conn.call_method(
            Some(SYSTEMD),
            MANAGER_PATH,
            Some(MANAGER_IFACE),
            "Subscribe",
            &(),
        )
        .await
        .map_err(|e| match self.error("subscribe to", "signals", e) {
            HostError::Refused { message, .. }
            | HostError::Disconnected {
                reason: message, ..
            } => unavailable(format!(
                "systemd did not answer Subscribe ({message}); is systemd on this bus?"
            )),
            other => other,
        })?;
        tracing::debug!("connected to systemd on the {} bus at {address}", self.bus);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Drops `conn` if it is still the current one (it failed as unreachable).
    pub(crate) async fn forget(&self, conn: &Connection) {
        let mut slot = self.conn.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| c.unique_name() == conn.unique_name())
        {
            tracing::debug!("dropping the broken connection to the {} bus", self.bus);
            *slot = None;
        }
    }

    pub(crate) fn error(&self, op: &'static str, unit: &str, e: zbus::Error) -> HostError {
        map_error(self.bus, op, unit, e)
    }

    /// One method call on the current connection; a broken connection is
    /// forgotten.
    async fn call<B>(
        &self,
        path: &str,
        iface: &'static str,
        method: &'static str,
        body: &B,
        op: &'static str,
        unit: &str,
    ) -> Result<zbus::Message, HostError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let conn = self.conn().await?;
        match conn
            .call_method(Some(SYSTEMD), path, Some(iface), method, body)
            .await
        {
            Ok(reply) => Ok(reply),
            Err(e) => {
                let e = self.error(op, unit, e);
                if e.is_unreachable() {
                    self.forget(&conn).await;
                }
                Err(e)
            }
        }
    }

    /// Calls a manager method and deserializes the reply body.
    pub(crate) async fn manager_call<B, R>(
        &self,
        method: &'static str,
        unit: &str,
        body: &B,
    ) -> Result<R, HostError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let op = op_name(method);
        let reply = self
            .call(MANAGER_PATH, MANAGER_IFACE, method, body, op, unit)
            .await?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|e| self.error(op, unit, e))
    }

    /// `LoadUnit`: the unit's object path (loading it if needed: a name
    /// without a unit file gives a `not-found` unit).
    pub(crate) async fn load_unit(&self, name: &str) -> Result<OwnedObjectPath, HostError> {
        self.manager_call("LoadUnit", name, &(name,)).await
    }

    /// `GetUnit`: the object path of a loaded unit, or `NoSuchUnit`.
    pub(crate) async fn get_unit(&self, name: &str) -> Result<OwnedObjectPath, HostError> {
        self.manager_call("GetUnit", name, &(name,)).await
    }

    /// `GetUnit` without loading anything: `Some(path)` when systemd has the
    /// unit loaded, `None` when it has not (`NoSuchUnit`), and where the
    /// reply arrived among the connection's messages (see
    /// [`DbusHost::get_all_at`]).
    pub(crate) async fn get_unit_at(
        &self,
        name: &str,
    ) -> Result<(Option<OwnedObjectPath>, Sequence), HostError> {
        let op = op_name("GetUnit");
        let conn = self.conn().await?;
        match conn
            .call_method(
                Some(SYSTEMD),
                MANAGER_PATH,
                Some(MANAGER_IFACE),
                "GetUnit",
                &(name,),
            )
            .await
        {
            Ok(reply) => {
                let path = reply
                    .body()
                    .deserialize::<OwnedObjectPath>()
                    .map_err(|e| self.error(op, name, e))?;
                Ok((Some(path), reply.recv_position()))
            }
            Err(zbus::Error::MethodError(error, _, reply))
                if error.as_str() == "org.freedesktop.systemd1.NoSuchUnit" =>
            {
                Ok((None, reply.recv_position()))
            }
            Err(e) => {
                let e = self.error(op, name, e);
                if e.is_unreachable() {
                    self.forget(&conn).await;
                }
                Err(e)
            }
        }
    }

    pub(crate) async fn get_all(
        &self,
        path: &str,
        iface: &str,
        unit: &str,
    ) -> Result<HashMap<String, OwnedValue>, HostError> {
        Ok(self.get_all_at(path, iface, unit).await?.0)
    }

    /// `GetAll`, and where its reply arrived among the connection's
    /// messages: signals received before it are older than these values.
    pub(crate) async fn get_all_at(
        &self,
        path: &str,
        iface: &str,
        unit: &str,
    ) -> Result<(HashMap<String, OwnedValue>, Sequence), HostError> {
        let op = "read the properties of";
        let reply = self
            .call(path, PROPS_IFACE, "GetAll", &(iface,), op, unit)
            .await?;
        let props = reply
            .body()
            .deserialize::<HashMap<String, OwnedValue>>()
            .map_err(|e| self.error(op, unit, e))?;
        Ok((props, reply.recv_position()))
    }

    /// The state of the unit at `path` (already loaded).
    pub(crate) async fn read_state(&self, path: &str, name: &str) -> Result<Read, HostError> {
        let (unit, unit_seq) = self.get_all_at(path, UNIT_IFACE, name).await?;
        let mut read = Read {
            state: crate::props::unit_state(name, &unit),
            id: crate::props::string(&unit, "Id"),
            unit_seq,
            service_seq: None,
        };
        if read.id.as_deref().unwrap_or(name).ends_with(".service") {
            // A service's Result; a failure here only loses that detail.
            match self.get_all_at(path, SERVICE_IFACE, name).await {
                Ok((service, seq)) => {
                    read.state.result = crate::props::string(&service, "Result");
                    read.service_seq = Some(seq);
                }
                Err(e) if e.is_unreachable() => return Err(e),
                Err(e) => tracing::debug!("no Service properties for {name}: {e}"),
            }
        }
        Ok(read)
    }
}

/// A unit's state as read, and when (see [`DbusHost::get_all_at`]).
pub(crate) struct Read {
    pub state: UnitState,
    /// The unit's `Id` (its main name, which `JobRemoved` uses).
    pub id: Option<String>,
    /// Where the `Unit` properties' reply arrived.
    pub unit_seq: Sequence,
    /// Where the `Service` properties' reply arrived (services only).
    pub service_seq: Option<Sequence>,
}

fn op_name(method: &str) -> &'static str {
    match method {
        "Subscribe" => "subscribe to",
        "LoadUnit" => "load",
        "GetUnit" => "look up",
        "StartTransientUnit" => "start the transient unit",
        "StopUnit" => "stop",
        "ResetFailedUnit" => "reset",
        _ => "call",
    }
}

pub(crate) fn map_error(bus: &str, op: &'static str, unit: &str, e: zbus::Error) -> HostError {
    match e {
        zbus::Error::MethodError(name, message, _) => {
            let message = message.unwrap_or_default();
            match name.as_str() {
                "org.freedesktop.systemd1.NoSuchUnit" => HostError::NoSuchUnit {
                    unit: unit.to_string(),
                },
                "org.freedesktop.systemd1.UnitExists" => HostError::AlreadyExists {
                    unit: unit.to_string(),
                },
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => HostError::Disconnected {
                    bus: bus.to_string(),
                    reason: format!("systemd is not on this bus ({message})"),
                },
                "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.Disconnected" => HostError::Disconnected {
                    bus: bus.to_string(),
                    reason: message,
                },
                _ => HostError::Refused {
                    op,
                    unit: unit.to_string(),
                    message: if message.is_empty() {
                        name.to_string()
                    } else {
                        format!("{message} ({name})")
                    },
                },
            }
        }
        zbus::Error::InputOutput(io) => HostError::Disconnected {
            bus: bus.to_string(),
            reason: io.to_string(),
        },
        zbus::Error::Connection(io, address) => HostError::Disconnected {
            bus: bus.to_string(),
            reason: format!("{address}: {io}"),
        },
        other => HostError::Refused {
            op,
            unit: unit.to_string(),
            message: other.to_string(),
        },
    }
}

impl HostUnits for DbusHost {
    fn watch_units(&self, names: Vec<String>) -> BoxStream<Result<UnitState, HostError>> {
        crate::watch::watch(self.clone(), names)
    }

    async fn unit_state(&self, name: &str) -> Result<UnitState, HostError> {
        crate::watch::check_name(name)?;
        let path = self.load_unit(name).await?;
        Ok(self.read_state(path.as_str(), name).await?.state)
    }

    async fn run_transient(&self, spec: TransientSpec) -> Result<(), HostError> {
        crate::transient::run(self, spec).await
    }

    async fn transient_result(
        &self,
        unit_name: &str,
        output_path: &str,
    ) -> Result<Option<TransientResult>, HostError> {
        crate::transient::result(self, unit_name, output_path).await
    }

    async fn cleanup_transient(&self, unit_name: &str, output_path: &str) -> Result<(), HostError> {
        crate::transient::cleanup(self, unit_name, output_path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_are_escaped_like_sd_bus() {
        assert_eq!(
            unit_object_path("dbus.service"),
            "/org/freedesktop/systemd1/unit/dbus_2eservice"
        );
        assert_eq!(
            unit_object_path("berth-hook-a\\x2db.service"),
            "/org/freedesktop/systemd1/unit/berth_2dhook_2da_5cx2db_2eservice"
        );
        assert_eq!(unit_object_path(""), "/org/freedesktop/systemd1/unit/_");
    }

    #[test]
    fn user_bus_address_fallbacks() {
        assert_eq!(
            user_bus_address(Some("unix:path=/x".into()), Some("/rt".into()), Some(5)),
            "unix:path=/x"
        );
        assert_eq!(
            user_bus_address(None, Some("/rt/".into()), Some(5)),
            "unix:path=/rt/bus"
        );
        assert_eq!(
            user_bus_address(None, None, Some(1000)),
            "unix:path=/run/user/1000/bus"
        );
    }

    #[test]
    fn errors_say_what_failed() {
        let e = map_error(
            "user",
            "load",
            "a.service",
            zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::other("gone"))),
        );
        assert!(e.is_unreachable(), "{e}");
        assert!(e.to_string().contains("user bus"), "{e}");
        let e = map_error("system", "stop", "a.service", zbus::Error::InvalidReply);
        assert!(e.to_string().contains("refused to stop a.service"), "{e}");
    }
}
