//! Reading stored records tolerantly, and saying precisely why one is not a
//! berth record.
//!
//! Tolerant: unknown fields are ignored and missing ones defaulted (the types
//! use `#[serde(default)]`), and a newer `schema_version` is accepted with a
//! warning, so records survive an upgrade and a downgrade. But a file must
//! still *be* a record: a JSON object with a `service` and a `generation` that
//! match where it lies. Anything else is reported, never rewritten.

use berth_core::record::{Deployment, RECORD_SCHEMA_VERSION};
use berth_core::store::{META_SCHEMA_VERSION, ServiceMeta};
use serde::de::DeserializeOwned;
use serde_json::error::Category;

/// A stored berth document: a service's meta or one of its records.
pub(crate) trait Stored: DeserializeOwned {
    /// What it is called in messages.
    const WHAT: &'static str;
    const SCHEMA_VERSION: u32;
    fn service(&self) -> &str;
    fn generation(&self) -> u64;
    fn schema_version(&self) -> u32;
}

impl Stored for ServiceMeta {
    const WHAT: &'static str = "service meta (current.json)";
    const SCHEMA_VERSION: u32 = META_SCHEMA_VERSION;
    fn service(&self) -> &str {
        &self.service
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

impl Stored for Deployment {
    const WHAT: &'static str = "deployment record";
    const SCHEMA_VERSION: u32 = RECORD_SCHEMA_VERSION;
    fn service(&self) -> &str {
        &self.service
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn schema_version(&self) -> u32 {
        self.schema_version
    }
}

/// `bytes` as a JSON value, or why not, telling an empty or torn file (a
/// write that never completed) from one that is not JSON at all. Every
/// state file is read through it before its own shape is checked.
pub(crate) fn json_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty (a write that never completed?)".to_string());
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        Category::Eof => format!("truncated JSON, {e} (a torn write?)"),
        _ => format!("not JSON: {e}"),
    })
}

/// Parses `bytes` as a `T` belonging to `service` (and, when given, holding
/// `generation`). The error says what is wrong, with serde's line and column
/// where it has them; the caller adds the path.
pub(crate) fn parse<T: Stored>(
    bytes: &[u8],
    service: &str,
    generation: Option<u64>,
    path: &str,
) -> Result<T, String> {
    // First as plain JSON, to tell a torn file from garbage from a foreign
    // document.
    let value = json_value(bytes)?;
    let Some(object) = value.as_object() else {
        return Err(format!(
            "a JSON {}, not a berth {}",
            json_kind(&value),
            T::WHAT
        ));
    };
    for field in ["service", "generation"] {
        if !object.contains_key(field) {
            return Err(format!(
                "a JSON object without a `{field}` field, not a berth {}",
                T::WHAT
            ));
        }
    }
    // Then as the type, for the positions of type errors.
    let doc: T =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid berth {}: {e}", T::WHAT))?;
    if doc.service() != service {
        return Err(format!(
            "belongs to service {:?}, not {service:?}",
            doc.service()
        ));
    }
    if let Some(generation) = generation
        && doc.generation() != generation
    {
        return Err(format!(
            "holds generation {}, not {generation}",
            doc.generation()
        ));
    }
    if doc.schema_version() > T::SCHEMA_VERSION {
        tracing::warn!(
            path,
            schema_version = doc.schema_version(),
            known = T::SCHEMA_VERSION,
            "written by a newer berth; reading what this version knows"
        );
    }
    Ok(doc)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: &[u8]) -> Result<Deployment, String> {
        parse::<Deployment>(bytes, "web", Some(2), "history/2.json")
    }

    #[test]
    fn good_record_with_unknown_fields_and_newer_schema() {
        let d = record(
            br#"{"schema_version": 9, "service": "web", "generation": 2, "from_the_future": [1]}"#,
        )
        .expect("tolerant");
        assert_eq!(d.generation, 2);
        assert_eq!(d.schema_version, 9);
    }

    #[test]
    fn precise_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n", "empty"),
            (
                b"{\"service\": \"web\", \"gener",
                "truncated JSON, EOF while parsing",
            ),
            (b"{\"service\": \"web\", \"gener", "line 1 column 25"),
            (b"hello", "not JSON: expected value at line 1 column 1"),
            (b"[1, 2]", "a JSON array, not a berth deployment record"),
            (b"{\"name\": \"web\"}", "without a `service` field"),
            (b"{\"service\": \"web\"}", "without a `generation` field"),
            (
                b"{\"service\": \"web\",\n \"generation\": \"two\"}",
                "not a valid berth deployment record: invalid type: string \"two\", expected u64 at line 2",
            ),
            (
                b"{\"service\": \"api\", \"generation\": 2}",
                "belongs to service \"api\", not \"web\"",
            ),
            (
                b"{\"service\": \"web\", \"generation\": 3}",
                "holds generation 3, not 2",
            ),
        ];
        for (bytes, want) in cases {
            let err = record(bytes).expect_err("bad");
            assert!(
                err.contains(want),
                "{:?}: {err:?} lacks {want:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
