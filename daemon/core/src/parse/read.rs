//! Step two's tools: typed readers over [`Node`]s that record an error (with
//! the field path and position) and return `None` instead of stopping, so
//! one pass reports every problem in a file.

use std::time::Duration;

use super::tree::{Entry, Node, Scalar, Value};
use super::{ParseError, join, nth};
use crate::units::{parse_duration, parse_size};

/// A node and the path that names it in messages.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'n> {
    pub node: &'n Node,
    pub path: &'n str,
}

/// A map whose keys were checked against a list of known fields.
pub(super) struct Fields<'n> {
    map: &'n Node,
    entries: &'n [Entry],
    path: String,
    paths: Vec<String>,
}

impl<'n> Fields<'n> {
    /// The field, unless absent or null (`key:` with nothing, or JSON `null`).
    pub fn get(&self, key: &str) -> Option<Field<'_>> {
        self.entries
            .iter()
            .zip(&self.paths)
            .find(|(e, _)| e.key == key && e.value.value != Value::Null)
            .map(|(e, path)| Field {
                node: &e.value,
                path,
            })
    }

    /// The path a field of this map would have.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The map itself, for errors about a missing field.
    pub fn node(&self) -> &'n Node {
        self.map
    }
}

pub(super) struct Ctx<'f> {
    file: &'f str,
    pub errors: Vec<ParseError>,
}

impl<'f> Ctx<'f> {
    pub fn new(file: &'f str) -> Self {
        Ctx {
            file,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, path: &str, line: usize, column: usize, message: impl Into<String>) {
        self.errors.push(ParseError {
            file: self.file.to_string(),
            field: path.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// An error about the value at `f`.
    pub fn invalid(&mut self, f: Field<'_>, message: impl Into<String>) {
        self.error(f.path, f.node.line, f.node.column, message);
    }

    /// `expected {what} (got ...)` at `f`.
    pub fn expected(&mut self, f: Field<'_>, what: &str) {
        let got = f.node.describe();
        self.invalid(f, format!("expected {what} (got {got})"));
    }

    /// A required field is absent: reported at the map that lacks it.
    /// (A key with no value is reported at the key.)
    pub fn missing(&mut self, fields: &Fields<'_>, key: &str, what: &str) {
        let path = fields.path_of(key);
        match fields.entries.iter().find(|e| e.key == key) {
            Some(e) => self.error(
                &path,
                e.line,
                e.column,
                format!("{key:?} has no value ({what})"),
            ),
            None => {
                let map = fields.node();
                let message = format!("missing required field {key:?} ({what})");
                self.error(&path, map.line, map.column, message);
            }
        }
    }

    /// A map's entries as fields, with any key in `known` allowed; other keys
    /// are errors, with a suggestion for a likely typo. Keys in `not_yet` get
    /// a message saying this version does not support them.
    pub fn map<'n>(
        &mut self,
        f: Field<'n>,
        known: &[&str],
        not_yet: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &f.node.value else {
            let fields = known.join(", ");
            self.expected(f, &format!("a map with fields {fields}"));
            return None;
        };
        for e in entries {
            if known.contains(&e.key.as_str()) {
                continue;
            }
            let message = if not_yet.contains(&e.key.as_str()) {
                format!("{:?} is not supported by this berth version yet", e.key)
            } else {
                unknown_field(&e.key, known)
            };
            self.error(&join(f.path, &e.key), e.line, e.column, message);
        }
        Some(Fields {
            map: f.node,
            entries,
            path: f.path.to_string(),
            paths: entries.iter().map(|e| join(f.path, &e.key)).collect(),
        })
    }

    /// A map with free-form keys (env, ulimits): its entries, each with its path.
    pub fn entries<'n>(&mut self, f: Field<'n>, what: &str) -> Option<Vec<(&'n Entry, String)>> {
        match &f.node.value {
            Value::Map(entries) => {
                Some(entries.iter().map(|e| (e, join(f.path, &e.key))).collect())
            }
            _ => {
                self.expected(f, what);
                None
            }
        }
    }

    /// A list's items, each with its path. `hint` follows "expected a list".
    pub fn list<'n>(&mut self, f: Field<'n>, hint: &str) -> Option<Vec<(&'n Node, String)>> {
        match &f.node.value {
            Value::Seq(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, node)| (node, nth(f.path, i)))
                    .collect(),
            ),
            _ => {
                self.expected(f, &format!("a list{hint}"));
                None
            }
        }
    }

    /// Text: a string, or a number taken as written. Booleans are refused
    /// (`yes`-style surprises), and so are empty strings.
    pub fn string(&mut self, f: Field<'_>, what: &str) -> Option<String> {
        match f.node.scalar() {
            Some(Scalar::Str("")) => {
                self.invalid(f, format!("expected {what} (got an empty string)"));
                None
            }
            Some(Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_)) => {
                f.node.text().map(str::to_string)
            }
            _ => {
                self.expected(f, what);
                None
            }
        }
    }

    /// A list of [`Ctx::string`]s; `None` if the list or any item is wrong.
    pub fn strings(&mut self, f: Field<'_>, what: &str, hint: &str) -> Option<Vec<String>> {
        let items = self.list(f, hint)?;
        let mut out = Vec::with_capacity(items.len());
        for (node, path) in &items {
            out.push(self.string(Field { node, path }, what));
        }
        out.into_iter().collect()
    }

    /// A command's argument list: strings or numbers as written, where an
    /// empty string is an argument like any other (`sh -c 'x' ""`).
    pub fn argv(&mut self, f: Field<'_>, hint: &str) -> Option<Vec<String>> {
        let items = self.list(f, hint)?;
        let mut out = Vec::with_capacity(items.len());
        for (node, path) in &items {
            let item = Field { node, path };
            out.push(match node.scalar() {
                Some(Scalar::Str("")) => Some(String::new()),
                _ => self.string(item, "a string"),
            });
        }
        out.into_iter().collect()
    }

    /// A list of strings each parsed by `parse` (whose error is the message).
    /// Integers are accepted as their text, as in `ports: [8080]`.
    pub fn parsed_list<T>(
        &mut self,
        f: Field<'_>,
        what: &str,
        hint: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let items = self.list(f, hint)?;
        let mut out = Vec::with_capacity(items.len());
        for (node, path) in &items {
            let f = Field { node, path };
            out.push(self.string(f, what).and_then(|s| match parse(&s) {
                Ok(v) => Some(v),
                Err(message) => {
                    self.invalid(f, message);
                    None
                }
            }));
        }
        out.into_iter().collect()
    }

    /// A YAML boolean, `true` or `false`; a quoted "true" is a string.
    pub fn boolean(&mut self, f: Field<'_>) -> Option<bool> {
        match f.node.scalar() {
            Some(Scalar::Bool(b)) => Some(b),
            Some(Scalar::Str("true" | "false")) => {
                self.expected(f, "true or false without quotes");
                None
            }
            _ => {
                self.expected(f, "true or false");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn integer(&mut self, f: Field<'_>, min: i64, max: i64) -> Option<i64> {
        let what = if max == i64::MAX {
            format!("an integer of at least {min}")
        } else {
            format!("an integer from {min} to {max}")
        };
        match f.node.scalar() {
            Some(Scalar::Int(n)) if (min..=max).contains(&n) => Some(n),
            Some(Scalar::Str(s)) if s.trim().parse::<i64>().is_ok() => {
                self.expected(f, &format!("{what}, without quotes"));
                None
            }
            _ => {
                self.expected(f, &what);
                None
            }
        }
    }

    /// A positive `u32`, as for counts.
    pub fn count(&mut self, f: Field<'_>) -> Option<u32> {
        self.integer(f, 1, i64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
    }

    /// `500ms`, `5s`, `2m`, `1h`, `1m30s`.
    pub fn duration(&mut self, f: Field<'_>) -> Option<Duration> {
        self.unit(f, "a duration like 500ms, 5s, 2m or 1h", parse_duration)
    }

    /// `4096`, `512Ki`, `256Mi`, `1G`.
    pub fn size(&mut self, f: Field<'_>) -> Option<u64> {
        self.unit(f, "a size like 4096, 512Ki, 256Mi or 1G", parse_size)
    }

    fn unit<T>(
        &mut self,
        f: Field<'_>,
        what: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let parsed = match f.node.scalar() {
            Some(Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_)) => {
                f.node.text().map(|text| (text, parse(text)))
            }
            _ => None,
        };
        match parsed {
            Some((_, Ok(v))) => Some(v),
            Some((text, Err(reason))) if reason.contains("too large") => {
                self.invalid(f, format!("{text:?} is too large"));
                None
            }
            _ => {
                self.expected(f, what);
                None
            }
        }
    }

    /// One of a fixed set of words.
    pub fn choice<T: Copy>(&mut self, f: Field<'_>, options: &[(&str, T)]) -> Option<T> {
        let found = f
            .node
            .scalar()
            .and_then(|s| match s {
                Scalar::Str(s) => Some(s),
                _ => None,
            })
            .and_then(|s| options.iter().find(|(name, _)| *name == s));
        match found {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
                self.expected(f, &format!("one of: {}", names.join(", ")));
                None
            }
        }
    }
}

/// `unknown field "imgae"; did you mean "image"? known fields: name, image, ...`
fn unknown_field(key: &str, known: &[&str]) -> String {
    let mut message = format!("unknown field {key:?}; ");
    if let Some(best) = suggest(key, known) {
        message.push_str(&format!("did you mean {best:?}? "));
    }
    message.push_str("known fields: ");
    message.push_str(&known.join(", "));
    message
}

/// The known word closest to `word`, if it is close enough to be a typo.
pub(super) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = if word.chars().count() <= 3 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(&word, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance counting an adjacent swap as one edit (`imgae` → `image`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the usual table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// An optional field's read (`fields.get(key).map(reader)`) as `Some(None)`
/// when absent, `Some(Some(v))` when valid and `None` when wrong (reported).
pub(super) fn optional<T>(read: Option<Option<T>>) -> Option<Option<T>> {
    read.map_or(Some(None), |v| v.map(Some))
}
