//! Operator input: YAML or JSON service files, parsed in two steps (a tree
//! that keeps line and column, then a validator), so that every error names
//! the file, the field path, the position and what is accepted.
//!
//! A file holds one service (a map with `name:`, `image:`, ...) or
//! `services:` with a list of them. Field paths read like `name`,
//! `healthcheck.interval`, `services[2].env.TOKEN`, `command[1]`.

mod read;
mod service;
mod tree;

pub use service::{NOT_YET_FIELDS, SERVICE_FIELDS};
pub use tree::{Entry, Node, Scalar, Value, parse_tree};

use crate::spec::ServiceSpec;
use read::{Ctx, Field};

/// One problem in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file as the operator named it (or `<api>` for a request body).
    pub file: String,
    /// `services[2].healthcheck.interval`; empty for the document itself.
    pub field: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in one file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors(pub Vec<ParseError>);

impl std::fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

/// Parses a service file: one service, or a list under `services:`. On
/// failure every problem found is returned, in document order.
pub fn parse_services(file: &str, text: &str) -> Result<Vec<ServiceSpec>, ParseErrors> {
    let mut cx = Ctx::new(file);
    let specs = match parse_tree(file, text, &mut cx.errors) {
        Some(root) => document(&mut cx, &root),
        None => Vec::new(),
    };
    if cx.errors.is_empty() {
        Ok(specs)
    } else {
        let mut errors = cx.errors;
        // Stable: errors at one position keep the order they were found in.
        errors.sort_by_key(|e| (e.line, e.column));
        Err(ParseErrors(errors))
    }
}

/// Validates a JSON request body with the same rules as a file. The value
/// must be one service (or `services:` with exactly one). Positions would
/// point into a re-serialized text, so they are 0; field paths are kept.
/// (To report positions in the body as sent, call [`parse_services`] on
/// the body's text.)
pub fn parse_service_json_value(
    file: &str,
    value: &serde_json::Value,
) -> Result<ServiceSpec, ParseErrors> {
    let error = |message: String| {
        ParseErrors(vec![ParseError {
            file: file.to_string(),
            field: String::new(),
            line: 0,
            column: 0,
            message,
        }])
    };
    let text = serde_json::to_string(value)
        .map_err(|e| error(format!("cannot read the JSON value: {e}")))?;
    let mut specs = parse_services(file, &text).map_err(|ParseErrors(errors)| {
        ParseErrors(
            errors
                .into_iter()
                .map(|e| ParseError {
                    line: 0,
                    column: 0,
                    ..e
                })
                .collect(),
        )
    })?;
    match specs.len() {
        1 => specs
            .pop()
            .ok_or_else(|| error("expected one service".to_string())),
        n => Err(error(format!("expected one service, got {n}"))),
    }
}

/// The root: one service, or `services:` with a list.
fn document(cx: &mut Ctx<'_>, root: &Node) -> Vec<ServiceSpec> {
    const SHAPES: &str = "a service (name:, image:, ...) or `services:` with a list";
    let Value::Map(entries) = &root.value else {
        let hint = if matches!(root.value, Value::Seq(_)) {
            "; put the list under `services:`"
        } else {
            ""
        };
        let got = root.describe();
        cx.error(
            "",
            root.line,
            root.column,
            format!("expected {SHAPES} (got {got}){hint}"),
        );
        return Vec::new();
    };
    let Some(services) = root.get("services") else {
        return service::service(cx, root, "").into_iter().collect();
    };
    for e in entries.iter().filter(|e| e.key != "services") {
        let message = format!(
            "{:?} next to `services:`; a file with `services:` has no other top-level field \
             (put it inside one of the services)",
            e.key
        );
        cx.error(&e.key, e.line, e.column, message);
    }
    let list = Field {
        node: &services.value,
        path: "services",
    };
    let Some(items) = cx.list(
        list,
        " of services, e.g. services: [{name: web, image: ...}]",
    ) else {
        return Vec::new();
    };
    if items.is_empty() {
        cx.invalid(list, "`services:` is empty; list at least one service");
    }
    check_unique_names(cx, &items);
    items
        .iter()
        .filter_map(|(node, path)| service::service(cx, node, path))
        .collect()
}

/// A second service with a name already used in the file is an error.
fn check_unique_names(cx: &mut Ctx<'_>, items: &[(&Node, String)]) {
    let mut seen: Vec<(&str, &str, usize)> = Vec::new();
    for (node, path) in items {
        let Some(name) = node.get("name") else {
            continue;
        };
        let Some(text) = name.value.text() else {
            continue;
        };
        match seen.iter().find(|(n, _, _)| *n == text) {
            Some((_, first_path, first_line)) => {
                let message = format!(
                    "duplicate service name {text:?} (first used by {first_path}, line {first_line})"
                );
                cx.error(
                    &join(path, "name"),
                    name.value.line,
                    name.value.column,
                    message,
                );
            }
            None => seen.push((text, path, name.value.line)),
        }
    }
}

/// `path.key`, or `key` at the root.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
fn nth(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

#[cfg(test)]
mod tests;
