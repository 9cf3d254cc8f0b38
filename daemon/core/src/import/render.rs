//! A spec as the YAML service file an operator would write: fields in the
//! order the README lists them, defaults left out, strings quoted unless
//! plainly safe. Deterministic, so importing twice writes the same bytes.

use serde_json::Value;

use crate::parse::SERVICE_FIELDS;
use crate::spec::ServiceSpec;

/// The service file's YAML for `spec`.
pub fn render(spec: &ServiceSpec) -> String {
    let mut out = String::new();
    let Ok(Value::Object(map)) = serde_json::to_value(spec) else {
        // A spec is plain data: serializing it cannot fail, and a struct is
        // an object. Render nothing rather than panic; the read-back check
        // reports the empty file.
        return out;
    };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    let rank = |k: &str| {
        SERVICE_FIELDS
            .iter()
            .position(|f| *f == k)
            .unwrap_or(SERVICE_FIELDS.len())
    };
    entries.sort_by(|a, b| (rank(a.0), a.0).cmp(&(rank(b.0), b.0)));
    map_entries(&mut out, &entries, 0);
    out
}

fn map_entries(out: &mut String, entries: &[(&String, &Value)], indent: usize) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&key_text(key));
        out.push(':');
        value_after_key(out, value, indent);
    }
}

/// A nested map's keys: what names the thing first, then the rest
/// alphabetically (`service` before `condition`, `source` before `target`).
fn nested(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    const FIRST: &[&str] = &["name", "service", "source", "target", "exec", "test"];
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
    entries.sort_by(|a, b| (rank(a.0), a.0).cmp(&(rank(b.0), b.0)));
    entries
}

/// What follows `key:`: a scalar on the same line, a block on the next.
fn value_after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            out.push_str(&" ".repeat(indent + 2));
            map_entries(out, &nested(m), indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => map_entries(out, &nested(m), indent + 4),
                    Value::Array(inner) if !inner.is_empty() => {
                        // No berth field is a list of lists; flow style
                        // keeps it correct should one appear.
                        out.push_str(&item.to_string());
                        out.push('\n');
                    }
                    _ => {
                        out.push_str(&scalar(item));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(value));
            out.push('\n');
        }
    }
}

fn key_text(key: &str) -> String {
    if plain_safe(key) {
        key.to_string()
    } else {
        quoted(key)
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if plain_safe(s) => s.clone(),
        Value::String(s) => quoted(s),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

/// A JSON string literal, which YAML reads as a double-quoted scalar.
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Whether `s` reads back as this very string when written plain: it
/// starts with a letter, `/` or `_`, holds only characters that mean
/// nothing to YAML here, does not end in `:`, and is no boolean or null.
fn plain_safe(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '/' || first == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.:=@+-,".contains(c))
        && !s.ends_with(':')
        && !s.contains("://")
        && !WORDS.contains(&s)
}
