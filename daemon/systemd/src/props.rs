//! Reading systemd's property maps (`a{sv}`) into berth's types.

use std::collections::HashMap;

use berth_core::host::UnitState;
use zbus::zvariant::{OwnedValue, Value};

pub(crate) fn string(props: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    match props.get(key).map(|v| &**v) {
        Some(Value::Str(s)) => Some(s.as_str().to_string()),
        _ => None,
    }
}

pub(crate) fn int(props: &HashMap<String, OwnedValue>, key: &str) -> Option<i64> {
    match props.get(key).map(|v| &**v) {
        Some(Value::I32(n)) => Some(i64::from(*n)),
        Some(Value::U32(n)) => Some(i64::from(*n)),
        Some(Value::I64(n)) => Some(*n),
        Some(Value::U8(n)) => Some(i64::from(*n)),
        Some(Value::I16(n)) => Some(i64::from(*n)),
        Some(Value::U16(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

/// A unit's state from its `org.freedesktop.systemd1.Unit` properties.
pub(crate) fn unit_state(name: &str, unit: &HashMap<String, OwnedValue>) -> UnitState {
    UnitState {
        name: name.to_string(),
        load_state: string(unit, "LoadState").unwrap_or_default(),
        active_state: string(unit, "ActiveState").unwrap_or_default(),
        sub_state: string(unit, "SubState").unwrap_or_default(),
        result: None,
    }
}

/// What a `PropertiesChanged` signal says about a unit's state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub load_state: Option<String>,
    pub active_state: Option<String>,
    pub sub_state: Option<String>,
    pub result: Option<String>,
    /// A state property was invalidated (named without a value): re-read.
    pub reread: bool,
}

impl Change {
    pub(crate) fn from_signal(
        iface: &str,
        changed: &HashMap<String, OwnedValue>,
        invalidated: &[String],
    ) -> Change {
        let mut c = Change::default();
        let watched: &[&str] = match iface {
            crate::bus::UNIT_IFACE => {
                c.load_state = string(changed, "LoadState");
                c.active_state = string(changed, "ActiveState");
                c.sub_state = string(changed, "SubState");
                &["LoadState", "ActiveState", "SubState"]
            }
            crate::bus::SERVICE_IFACE => {
                c.result = string(changed, "Result");
                &["Result"]
            }
            _ => &[],
        };
        c.reread = invalidated.iter().any(|p| watched.contains(&p.as_str()));
        c
    }

    /// Applies the values to `state`; true if anything changed.
    pub(crate) fn apply(self, state: &mut UnitState) -> bool {
        let before = state.clone();
        if let Some(v) = self.load_state {
            state.load_state = v;
        }
        if let Some(v) = self.active_state {
            state.active_state = v;
        }
        if let Some(v) = self.sub_state {
            state.sub_state = v;
        }
        if let Some(v) = self.result {
            state.result = Some(v);
        }
        *state != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    OwnedValue::from(zbus::zvariant::Str::from(*v)),
                )
            })
            .collect()
    }

    #[test]
    fn changes_apply_only_what_they_carry() {
        let mut s = UnitState::not_found("a.service");
        s.load_state = "loaded".into();
        let c = Change::from_signal(
            crate::bus::UNIT_IFACE,
            &map(&[("ActiveState", "active"), ("SubState", "running")]),
            &[],
        );
        assert!(!c.reread);
        assert!(c.apply(&mut s));
        assert_eq!(
            (
                s.load_state.as_str(),
                s.active_state.as_str(),
                s.sub_state.as_str()
            ),
            ("loaded", "active", "running")
        );
        let c = Change::from_signal(
            crate::bus::UNIT_IFACE,
            &map(&[("ActiveState", "active")]),
            &[],
        );
        assert!(!c.apply(&mut s), "no change, nothing to report");

        let c = Change::from_signal(
            crate::bus::SERVICE_IFACE,
            &map(&[("Result", "exit-code")]),
            &[],
        );
        assert!(c.apply(&mut s));
        assert_eq!(s.result.as_deref(), Some("exit-code"));

        let c = Change::from_signal(crate::bus::UNIT_IFACE, &map(&[]), &["ActiveState".into()]);
        assert!(c.reread);
        let c = Change::from_signal(crate::bus::UNIT_IFACE, &map(&[]), &["Description".into()]);
        assert!(!c.reread);
    }

    #[test]
    fn ints_of_any_width() {
        let mut m = HashMap::new();
        m.insert("ExecMainStatus".to_string(), OwnedValue::from(3i32));
        m.insert("ExecMainCode".to_string(), OwnedValue::from(1i32));
        assert_eq!(int(&m, "ExecMainStatus"), Some(3));
        assert_eq!(int(&m, "ExecMainCode"), Some(1));
        assert_eq!(int(&m, "Nope"), None);
    }
}
