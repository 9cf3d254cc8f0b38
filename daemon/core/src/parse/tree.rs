//! Step one: YAML (or JSON, which YAML 1.2 reads as well) text to a tree in
//! which every node and every map key keeps its line and column.
//!
//! Built from yaml-rust2's pull parser rather than its `Yaml` loader, which
//! drops positions and silently keeps the last of two equal keys. Anchors are
//! allowed (and ignored); aliases and tags are refused, as no berth field needs
//! them and refusing keeps a file's meaning visible where it is written.

use std::str::Chars;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::{ParseError, join, nth};

/// Deeper than any berth document; bounds the recursion on hostile input.
const MAX_DEPTH: usize = 64;

/// One node of the document, with the 1-based position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Entries in document order; keys are unique.
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    /// The text as written. `plain` is false for quoted and block scalars,
    /// which are always strings; a plain one may be a number or a boolean.
    Scalar {
        text: String,
        plain: bool,
    },
    /// `~`, `null` or nothing at all.
    Null,
}

/// One `key: value` pair; the position is the key's.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    pub column: usize,
    pub value: Node,
}

/// A scalar read with YAML 1.2's core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    /// An integer that fits in an `i64` (a larger one reads as a float).
    Int(i64),
    Float(f64),
}

impl Node {
    /// The scalar's text, whatever its type; `None` for maps, lists and null.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The scalar's type under the core schema; `None` for maps, lists and null.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.value {
            Value::Scalar { text, plain: true } => Some(core_schema(text)),
            Value::Scalar { text, plain: false } => Some(Scalar::Str(text)),
            _ => None,
        }
    }

    /// The value of `key` when this is a map.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The node as JSON, scalars typed by the core schema (a float JSON
    /// cannot hold, like `.nan`, stays its text).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Null => J::Null,
            Value::Scalar { text, .. } => match self.scalar() {
                Some(Scalar::Bool(b)) => J::Bool(b),
                Some(Scalar::Int(i)) => J::from(i),
                Some(Scalar::Float(f)) => serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .unwrap_or_else(|| J::String(text.clone())),
                _ => J::String(text.clone()),
            },
        }
    }

    /// What the node is, for "(got ...)" in messages: the text quoted, or
    /// "a map", "a list", "nothing".
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Map(_) => "a map".to_string(),
            Value::Seq(_) => "a list".to_string(),
            Value::Scalar { text, .. } => format!("{text:?}"),
            Value::Null => "nothing".to_string(),
        }
    }
}

/// Reads a plain scalar: booleans, integers (decimal, `0o`, `0x`) and floats.
pub(super) fn core_schema(text: &str) -> Scalar<'_> {
    match text {
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let radix = |prefix: &str, radix: u32| {
        text.strip_prefix(prefix)
            .filter(|digits| !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)))
            .map(|digits| i64::from_str_radix(digits, radix).ok())
    };
    if let Some(n) = radix("0o", 8).or_else(|| radix("0x", 16)) {
        return n.map_or(Scalar::Str(text), Scalar::Int);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(n) => Scalar::Int(n),
            Err(_) => text.parse::<f64>().map_or(Scalar::Str(text), Scalar::Float),
        };
    }
    if is_core_float(unsigned)
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, the sign already removed.
fn is_core_float(s: &str) -> bool {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let int = digits(s);
    let mut rest = &s[int..];
    let mut frac = 0;
    if let Some(after) = rest.strip_prefix('.') {
        frac = digits(after);
        rest = &after[frac..];
    }
    if int + frac == 0 {
        return false;
    }
    match rest.strip_prefix(['e', 'E']) {
        None => rest.is_empty(),
        Some(exp) => {
            let exp = exp.strip_prefix(['-', '+']).unwrap_or(exp);
            !exp.is_empty() && digits(exp) == exp.len()
        }
    }
}

/// Parses `text` into a tree. A syntax error, an empty document or a
/// construct berth refuses (alias, tag, second document) is pushed to
/// `errors` and gives `None`; a duplicate key is pushed too, but the tree is
/// still returned (keeping the first value) so the validator can report more.
pub fn parse_tree(file: &str, text: &str, errors: &mut Vec<ParseError>) -> Option<Node> {
    // Editors write a byte order mark that the scanner would take as text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder {
        parser: Parser::new_from_str(text),
        file,
        errors,
    };
    match builder.document() {
        Ok(root) => root,
        Err(Stop::Syntax(e)) => {
            let mark = e.marker();
            builder.errors.push(ParseError {
                file: file.to_string(),
                field: String::new(),
                line: mark.line(),
                column: mark.col() + 1,
                message: format!("invalid YAML: {}", e.info()),
            });
            None
        }
        Err(Stop::Reported) => None,
    }
}

/// Why building stopped.
enum Stop {
    Syntax(ScanError),
    /// The error is already in `errors`.
    Reported,
}

impl From<ScanError> for Stop {
    fn from(e: ScanError) -> Stop {
        Stop::Syntax(e)
    }
}

struct Builder<'a> {
    parser: Parser<Chars<'a>>,
    file: &'a str,
    errors: &'a mut Vec<ParseError>,
}

impl Builder<'_> {
    fn document(&mut self) -> Result<Option<Node>, Stop> {
        let mut ev = self.parser.next_token()?;
        if ev.0 == Event::StreamStart {
            ev = self.parser.next_token()?;
        }
        if ev.0 == Event::StreamEnd {
            return self.empty();
        }
        // DocumentStart, then the root node.
        let (first, mark) = self.parser.next_token()?;
        let root = self.node(first, mark, "", 0)?;
        loop {
            let (ev, mark) = self.parser.next_token()?;
            match ev {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    return Err(self.fail(
                        "",
                        mark,
                        "a second YAML document (after `---`); a file holds one document: \
                         one service, or `services:` with a list",
                    ));
                }
                _ => {}
            }
        }
        if root.value == Value::Null {
            return self.empty();
        }
        Ok(Some(root))
    }

    fn empty(&mut self) -> Result<Option<Node>, Stop> {
        self.error(
            "",
            0,
            0,
            "the file is empty; expected a service (name:, image:, ...) or `services:` with a list",
        );
        Ok(None)
    }

    fn node(&mut self, ev: Event, mark: Marker, path: &str, depth: usize) -> Result<Node, Stop> {
        let (line, column) = position(mark);
        if depth > MAX_DEPTH {
            return Err(self.fail(path, mark, "nested too deeply"));
        }
        let value = match ev {
            Event::Scalar(text, style, _anchor, tag) => {
                if tag.is_some() {
                    return Err(self.fail(
                        path,
                        mark,
                        "YAML tags (`!!str`, `!name`) are not supported; quote a value to make it a string",
                    ));
                }
                let plain = style == TScalarStyle::Plain;
                if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text, plain }
                }
            }
            Event::SequenceStart(_anchor, tag) => {
                if tag.is_some() {
                    return Err(self.fail(path, mark, "YAML tags are not supported"));
                }
                let mut items = Vec::new();
                loop {
                    let (ev, mark) = self.parser.next_token()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let item = self.node(ev, mark, &nth(path, items.len()), depth + 1)?;
                    items.push(item);
                }
                Value::Seq(items)
            }
            Event::MappingStart(_anchor, tag) => {
                if tag.is_some() {
                    return Err(self.fail(path, mark, "YAML tags are not supported"));
                }
                return self.map(mark, path, depth);
            }
            Event::Alias(_) => {
                return Err(self.fail(
                    path,
                    mark,
                    "YAML aliases (`*name`) are not supported; write the value out",
                ));
            }
            // The parser sends nothing else where a node is expected.
            other => {
                return Err(self.fail(path, mark, &format!("unexpected YAML event {other:?}")));
            }
        };
        Ok(Node {
            value,
            line,
            column,
        })
    }

    fn map(&mut self, start: Marker, path: &str, depth: usize) -> Result<Node, Stop> {
        // A block map's start mark lies after its first key; use whichever is first.
        let mut first = start;
        let mut entries: Vec<Entry> = Vec::new();
        loop {
            let (ev, mark) = self.parser.next_token()?;
            if ev == Event::MappingEnd {
                break;
            }
            if mark.index() < first.index() {
                first = mark;
            }
            let key = match ev {
                // Kept as written, even when it reads as null or a number.
                Event::Scalar(text, _, _, None) => text,
                other => match self.node(other, mark, path, depth + 1)?.value {
                    Value::Scalar { text, .. } => text,
                    _ => return Err(self.fail(path, mark, "a map key must be a string")),
                },
            };
            let (line, column) = position(mark);
            let key_path = join(path, &key);
            let (ev, vmark) = self.parser.next_token()?;
            let mut value = self.node(ev, vmark, &key_path, depth + 1)?;
            if value.value == Value::Null {
                // An empty value's mark is wherever the next token starts.
                (value.line, value.column) = (line, column);
            }
            match entries.iter().find(|e| e.key == key) {
                Some(earlier) => {
                    let message = format!(
                        "duplicate key {key:?} (first on line {}, again on line {line})",
                        earlier.line
                    );
                    self.error(&key_path, line, column, &message);
                }
                None => entries.push(Entry {
                    key,
                    line,
                    column,
                    value,
                }),
            }
        }
        let (line, column) = position(first);
        Ok(Node {
            value: Value::Map(entries),
            line,
            column,
        })
    }

    fn error(&mut self, field: &str, line: usize, column: usize, message: &str) {
        self.errors.push(ParseError {
            file: self.file.to_string(),
            field: field.to_string(),
            line,
            column,
            message: message.to_string(),
        });
    }

    fn fail(&mut self, field: &str, mark: Marker, message: &str) -> Stop {
        let (line, column) = position(mark);
        self.error(field, line, column, message);
        Stop::Reported
    }
}

/// yaml-rust2's lines are 1-based and its columns 0-based; ours are both 1-based.
fn position(mark: Marker) -> (usize, usize) {
    (mark.line(), mark.col() + 1)
}
