//! Everything that formats: stdout writes that survive a closed pipe, aligned
//! tables, times, and a YAML-ish rendering of JSON values.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::{CliError, CliResult};

/// One line of data to stdout (around the pull bars, if any are drawn).
pub fn line(s: impl AsRef<str>) -> CliResult {
    crate::progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_ref().as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(CliError::stdout)
    })
}

/// Text as is (a table, already newline-terminated) to stdout (around
/// the pull bars, if any are drawn).
pub fn text(s: impl AsRef<str>) -> CliResult {
    crate::progress::suspend(|| {
        let mut out = std::io::stdout().lock();
        out.write_all(s.as_ref().as_bytes())
            .and_then(|()| out.flush())
            .map_err(CliError::stdout)
    })
}

/// Raw bytes to stdout, flushed (streams).
pub fn bytes(b: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(b)
        .and_then(|()| out.flush())
        .map_err(CliError::stdout)
}

/// A value as pretty JSON to stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("cannot encode JSON: {e}")))?;
    line(s)
}

/// A value as one line of JSON (newline-delimited streams).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let s = serde_json::to_string(value)
        .map_err(|e| CliError::failed(format!("cannot encode JSON: {e}")))?;
    line(s)
}

/// A diagnostic line to stderr (never fails the command).
pub fn warn(s: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {}", s.as_ref());
}

/// Plain aligned columns, two spaces apart, no trailing blanks.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut headers.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(0),
        u32::try_from(day).unwrap_or(0),
    )
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SSZ` (UTC); `-` for 0 (unknown).
pub fn format_time(ms: u64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// How long ago: `42s`, `5m`, `3h`, `12d`; `-` for 0 (unknown).
pub fn format_age(now_ms: u64, then_ms: u64) -> String {
    if then_ms == 0 {
        return "-".to_string();
    }
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The short form of a spec hash: 12 hex digits, without `sha256:`.
pub fn short_hash(h: &str) -> String {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    h.chars().take(12).collect()
}

/// Cut to `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    let first_line = s.lines().next().unwrap_or("");
    if first_line.chars().count() <= max && first_line.len() == s.len() {
        return s.to_string();
    }
    let mut out: String = first_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The serde name of an enum value (`running`, `IN_PROGRESS`).
pub fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// A JSON value as indented YAML-ish text (for reading, not for parsing back).
pub fn yamlish(value: &serde_json::Value, indent: usize) -> String {
    let mut out = String::new();
    yamlish_into(value, indent, &mut out);
    out
}

fn yamlish_into(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yamlish_into(v, indent + 2, out);
                    }
                    Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        yamlish_into(v, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", inline(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let mut nested = String::new();
                yamlish_into(item, indent + 2, &mut nested);
                let nested = if item.is_object() || item.is_array() {
                    nested
                } else {
                    format!("{}{}\n", " ".repeat(indent + 2), inline(item))
                };
                // The first line's indent becomes `- `.
                let body = nested.get(indent + 2..).unwrap_or("");
                out.push_str(&format!("{pad}- {body}"));
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", inline(scalar))),
    }
}

/// A value on one line: scalars plain when unambiguous, collections as JSON.
fn inline(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::String(s) if plain_ok(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) if m.is_empty() => "{}".to_string(),
        other => other.to_string(),
    }
}

fn plain_ok(s: &str) -> bool {
    !s.is_empty()
        && s.trim() == s
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\r', '\t', '"', ','])
        && !s.starts_with([
            '-', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '%', '@', '`', '?', ':',
        ])
        && !matches!(s, "true" | "false" | "null" | "~" | "yes" | "no")
        && s.parse::<f64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_trims() {
        let t = table(
            &["A", "LONGER", "C"],
            &[
                vec!["x".into(), "1".into(), "".into()],
                vec!["wide-cell".into(), "22".into(), "z".into()],
            ],
        );
        assert_eq!(
            t,
            "A          LONGER  C\nx          1\nwide-cell  22      z\n"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(format_time(1_709_210_096_000), "2024-02-29 12:34:56Z");
        assert_eq!(format_time(0), "-");
    }

    #[test]
    fn ages() {
        let now = 1_000_000_000;
        assert_eq!(format_age(now, now - 5_000), "5s");
        assert_eq!(format_age(now, now - 300_000), "5m");
        assert_eq!(format_age(now, now - 7_200_000), "2h");
        assert_eq!(format_age(now, now - 3 * 86_400_000), "3d");
        assert_eq!(format_age(now, now + 10), "0s");
        assert_eq!(format_age(now, 0), "-");
    }

    #[test]
    fn short_hashes_and_truncation() {
        assert_eq!(short_hash("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_hash("abc"), "abc");
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("0123456789abc", 6), "01234…");
        assert_eq!(truncate("one\ntwo", 10), "one…");
    }

    #[test]
    fn yamlish_renders_nested_values() {
        // Keys in sorted order: the output follows the map's order.
        let v = serde_json::json!({
            "command": ["sh", "-c", "echo hi"],
            "empty": "",
            "env": {"A": "1", "B": {"secret": true, "value": "<redacted>"}},
            "image": {"build": {"context": "/srv/web"}},
            "name": "web",
            "volumes": ["/a:/b:rw"],
        });
        let text = yamlish(&v, 0);
        let expected = "\
command: [sh, \"-c\", echo hi]
empty: \"\"
env:
  A: \"1\"
  B:
    secret: true
    value: <redacted>
image:
  build:
    context: /srv/web
name: web
volumes: [/a:/b:rw]
";
        assert_eq!(text, expected);

        let list = serde_json::json!({"items": [{"a": 1, "b": 2}, {"a": 3}]});
        assert_eq!(yamlish(&list, 0), "items:\n  - a: 1\n    b: 2\n  - a: 3\n");
    }
}
