//! The API's apply bodies (`POST /v1/apply`, `PUT /v1/services/{name}`),
//! held to JSON's own types.
//!
//! A spec file is YAML, where `image: 5` is a number that reads well as the
//! text "5"; the file parser ([`crate::parse`]) takes it so. A JSON body
//! says what it means: `"image": 5` is a number, and a number is not an
//! image reference. So a body is checked in two steps: first every field's
//! JSON type against [`SERVICE`] (the JSON form of a spec, which the
//! OpenAPI document describes too), then its values with the file parser,
//! the one authority on names, units and references. Every problem of both
//! steps is reported, each naming its field path.
//!
//! Where a spec deliberately takes a number (`ports: [8080]`,
//! `stop_signal: 15`, sizes in bytes, env and input values, ulimits,
//! CPUs, group ids), the JSON form takes it too; elsewhere a JSON number where text
//! is expected is a wrong type, and so is text where a list, a number or
//! a boolean is. A field is left out rather than `null` (a file's `user:`
//! with nothing is YAML's own way to say the same); only the request's
//! `force` may be null.

use serde_json::Value;

use crate::dto::ApplyRequest;
use crate::parse::parse_service_json_value;
use crate::spec::ServiceSpec;

/// A JSON type a field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    String,
    /// A number without a fraction (`3`, not `3.0`).
    Integer,
    /// Any number.
    Number,
    Boolean,
    /// A list, every item of this shape.
    List(&'static Shape),
    /// An object with these fields. Fields not named here are left to the
    /// value check, which names them and the fields it knows.
    Object(&'static [(&'static str, Shape)]),
    /// An object with free keys (env, ulimits), every value of this shape.
    Map(&'static Shape),
    /// Any one of these; at most one of them an object or a map.
    AnyOf(&'static [Shape]),
}

const TEXT: Shape = Shape::String;
const STRINGS: Shape = Shape::List(&Shape::String);
/// `5s`, `500ms`: a duration always has its unit, so it is text.
const DURATION: Shape = Shape::String;
/// `256Mi`, or bytes.
const SIZE: Shape = Shape::AnyOf(&[Shape::String, Shape::Integer]);
/// `SIGTERM`, `TERM`, or the signal's number.
const SIGNAL: Shape = Shape::AnyOf(&[Shape::String, Shape::Integer]);
/// An env value as written: text, a number or a boolean.
const ENV_TEXT: Shape = Shape::AnyOf(&[Shape::String, Shape::Number, Shape::Boolean]);

/// The JSON form of one service spec: every field [`crate::parse`] knows,
/// in the order of [`crate::parse::SERVICE_FIELDS`].
pub const SERVICE: Shape = Shape::Object(&[
    ("name", TEXT),
    (
        "image",
        Shape::AnyOf(&[
            Shape::String,
            Shape::Object(&[
                (
                    "build",
                    Shape::Object(&[("context", TEXT), ("dockerfile", TEXT)]),
                ),
                ("load", TEXT),
            ]),
        ]),
    ),
    ("pull", TEXT),
    ("command", STRINGS),
    ("entrypoint", STRINGS),
    (
        "env",
        Shape::Map(&Shape::AnyOf(&[
            Shape::String,
            Shape::Number,
            Shape::Boolean,
            Shape::Object(&[("value", ENV_TEXT), ("secret", Shape::Boolean)]),
        ])),
    ),
    // One path, or a list of them.
    ("env_file", Shape::AnyOf(&[Shape::String, STRINGS])),
    ("user", TEXT),
    ("volumes", STRINGS),
    ("volumes_from", STRINGS),
    ("network", TEXT),
    // A bare container port is a number as often as text.
    (
        "ports",
        Shape::List(&Shape::AnyOf(&[Shape::String, Shape::Integer])),
    ),
    ("privileged", Shape::Boolean),
    ("cap_add", STRINGS),
    ("cap_drop", STRINGS),
    ("security_opt", STRINGS),
    (
        "ulimits",
        Shape::Map(&Shape::AnyOf(&[
            Shape::Integer,
            Shape::Object(&[("soft", Shape::Integer), ("hard", Shape::Integer)]),
        ])),
    ),
    ("pid", TEXT),
    ("ipc", TEXT),
    ("uts", TEXT),
    ("hostname", TEXT),
    ("extra_hosts", STRINGS),
    // A numeric group id is a number as often as text.
    (
        "group_add",
        Shape::List(&Shape::AnyOf(&[Shape::String, Shape::Integer])),
    ),
    ("tty", Shape::Boolean),
    ("interactive", Shape::Boolean),
    (
        "resources",
        Shape::Object(&[
            ("memory", SIZE),
            ("cpus", Shape::Number),
            ("pids", Shape::Integer),
            ("cpu_shares", Shape::Integer),
            ("cpuset_cpus", TEXT),
        ]),
    ),
    ("stop_signal", SIGNAL),
    ("stop_timeout", DURATION),
    (
        "logging",
        Shape::Object(&[
            ("max_size", SIZE),
            ("max_files", Shape::Integer),
            ("tag", TEXT),
        ]),
    ),
    ("restart", TEXT),
    ("state", TEXT),
    ("kind", TEXT),
    ("exec_in", TEXT),
    (
        "healthcheck",
        Shape::Object(&[
            ("exec", STRINGS),
            ("test", TEXT),
            ("interval", DURATION),
            ("timeout", DURATION),
            ("retries", Shape::Integer),
            ("start_period", DURATION),
        ]),
    ),
    ("outputs", STRINGS),
    ("exit_codes", Shape::List(&Shape::Integer)),
    // A value as written (as in env), or another task's output.
    (
        "inputs",
        Shape::Map(&Shape::AnyOf(&[
            Shape::String,
            Shape::Number,
            Shape::Boolean,
            Shape::Object(&[("from", TEXT)]),
        ])),
    ),
    (
        "update",
        Shape::Object(&[
            ("settle", DURATION),
            ("health_timeout", DURATION),
            ("rollback", TEXT),
        ]),
    ),
    (
        "config",
        Shape::List(&Shape::Object(&[
            ("source", TEXT),
            ("target", TEXT),
            (
                "on_change",
                Shape::AnyOf(&[
                    Shape::String,
                    Shape::Object(&[("signal", SIGNAL), ("exec", STRINGS)]),
                ]),
            ),
        ])),
    ),
    // `db`, or `{service: db, condition: healthy}`.
    (
        "depends_on",
        Shape::List(&Shape::AnyOf(&[
            Shape::String,
            Shape::Object(&[("service", TEXT), ("condition", TEXT)]),
        ])),
    ),
    ("after_units", STRINGS),
    ("requires_units", STRINGS),
    (
        "hooks",
        Shape::Object(&[
            ("pre_update", HOOKS),
            ("post_update", HOOKS),
            ("pre_delete", HOOKS),
        ]),
    ),
]);

/// A phase's hooks (`hooks.pre_update`): `{breakpoint: {}}`, `{exec:
/// [...], where: container | host}` or `{http: URL}`, each with `timeout`
/// and `on_timeout`.
const HOOKS: Shape = Shape::List(&Shape::Object(&[
    ("breakpoint", Shape::Object(&[])),
    ("exec", STRINGS),
    ("http", TEXT),
    ("where", TEXT),
    ("timeout", DURATION),
    ("on_timeout", TEXT),
]));

/// The file form of a `PUT` body: `services:` with one spec.
const DOCUMENT: Shape = Shape::Object(&[("services", Shape::List(&SERVICE))]);

/// One problem in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `services[0].image`, `env.PORT`; empty for the body itself.
    pub field: String,
    /// What is wrong and, where one is clear, the fix.
    pub message: String,
    /// The value has the wrong JSON type (rather than a wrong value).
    pub wrong_type: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not the request's shape at all: not an object, an unknown or a
    /// missing top-level field.
    #[error("{0}")]
    Request(String),
    /// Problems in named fields: every one found, never empty.
    #[error("{} problem(s) in the request", .0.len())]
    Fields(Vec<Problem>),
}

impl BodyError {
    /// Whether a field has the wrong JSON type.
    pub fn has_wrong_type(&self) -> bool {
        matches!(self, BodyError::Fields(p) if p.iter().any(|p| p.wrong_type))
    }
}

/// `POST /v1/apply`: `{"services": [spec, ...], "force": bool}`, every
/// spec valid or nothing.
pub fn apply_request(body: &Value) -> Result<ApplyRequest, BodyError> {
    let Value::Object(obj) = body else {
        return Err(BodyError::Request(
            "the body must be an object {services: [...], force}".into(),
        ));
    };
    if let Some(key) = obj.keys().find(|k| *k != "services" && *k != "force") {
        return Err(BodyError::Request(format!(
            "unknown field {key:?} in the apply request; known: services, force"
        )));
    }
    let mut problems = Vec::new();
    let force = match obj.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            check(other, &Shape::Boolean, "force", &mut problems);
            false
        }
    };
    let list = match obj.get("services") {
        None | Some(Value::Null) => {
            return Err(BodyError::Request(
                "the apply request needs services: a list of service specs, \
                 e.g. {\"services\": [{\"name\": \"web\", \"image\": \"berth-demo:latest\"}]}"
                    .into(),
            ));
        }
        Some(Value::Array(list)) => list.as_slice(),
        Some(other) => {
            check(other, &Shape::List(&SERVICE), "services", &mut problems);
            &[]
        }
    };
    let mut services = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        match service_at(item, &format!("services[{i}]")) {
            Ok(spec) => services.push(spec),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(ApplyRequest { services, force })
    } else {
        Err(BodyError::Fields(problems))
    }
}

/// `PUT /v1/services/{name}`: one spec (or, as in a file, `services:`
/// with exactly one).
pub fn service(body: &Value) -> Result<ServiceSpec, BodyError> {
    service_at(body, "").map_err(BodyError::Fields)
}

/// One spec at `path`: its JSON types, then its values. A value problem
/// at or under a field of the wrong type is left out: the type says it.
fn service_at(value: &Value, path: &str) -> Result<ServiceSpec, Vec<Problem>> {
    let mut problems = Vec::new();
    match value {
        // The file form, as `parse_service_json_value` takes it.
        Value::Object(obj) if path.is_empty() && obj.contains_key("services") => {
            check(value, &DOCUMENT, path, &mut problems);
        }
        _ => check(value, &SERVICE, path, &mut problems),
    }
    let parsed = parse_service_json_value("<api>", value);
    let errors = match parsed {
        Ok(spec) if problems.is_empty() => return Ok(spec),
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    };
    for e in errors {
        let field = join(path, &e.field);
        if !problems.iter().any(|p| covers(&p.field, &field)) {
            problems.push(Problem {
                field,
                message: e.message,
                wrong_type: false,
            });
        }
    }
    Err(problems)
}

/// Checks `value`'s JSON types against `shape`, pushing a problem for each
/// value of the wrong type (and not looking inside it).
fn check(value: &Value, shape: &Shape, path: &str, out: &mut Vec<Problem>) {
    let Some(taken) = alternative(value, shape) else {
        out.push(Problem {
            field: path.to_string(),
            message: mismatch(value, shape),
            wrong_type: true,
        });
        return;
    };
    match (taken, value) {
        (Shape::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check(v, item, &format!("{path}[{i}]"), out);
            }
        }
        (Shape::Object(fields), Value::Object(obj)) => {
            for (key, v) in obj {
                if let Some((_, field)) = fields.iter().find(|(name, _)| name == key) {
                    check(v, field, &join(path, key), out);
                }
            }
        }
        (Shape::Map(each), Value::Object(obj)) => {
            for (key, v) in obj {
                check(v, each, &join(path, key), out);
            }
        }
        _ => {}
    }
}

/// The shape (of `shape`'s alternatives) whose JSON type `value` has.
fn alternative<'s>(value: &Value, shape: &'s Shape) -> Option<&'s Shape> {
    let fits = match (shape, value) {
        (Shape::AnyOf(shapes), _) => return shapes.iter().find_map(|s| alternative(value, s)),
        (Shape::String, Value::String(_)) => true,
        (Shape::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Shape::Number, Value::Number(_)) | (Shape::Boolean, Value::Bool(_)) => true,
        (Shape::List(_), Value::Array(_)) => true,
        (Shape::Object(_) | Shape::Map(_), Value::Object(_)) => true,
        _ => false,
    };
    fits.then_some(shape)
}

/// `expected a string, got the number 5; write it as a string: "5"`.
fn mismatch(value: &Value, shape: &Shape) -> String {
    let mut message = format!("expected {}, got {}", expected(shape), got(value));
    if let Some(fix) = fix(value, shape) {
        message.push_str("; ");
        message.push_str(&fix);
    }
    message
}

/// What a shape is, in words.
fn expected(shape: &Shape) -> String {
    let one = |s: &Shape| match s {
        Shape::String => "a string",
        Shape::Integer => "an integer",
        Shape::Number => "a number",
        Shape::Boolean => "a boolean",
        Shape::List(_) => "a list",
        Shape::Object(_) | Shape::Map(_) => "an object",
        Shape::AnyOf(_) => "one of several types",
    };
    match shape {
        Shape::Boolean => "true or false".to_string(),
        Shape::List(Shape::String) => "a list of strings".to_string(),
        Shape::AnyOf(shapes) => match shapes.split_last() {
            Some((last, [])) => expected(last),
            Some((last, rest)) => {
                let rest: Vec<&str> = rest.iter().map(one).collect();
                format!("{} or {}", rest.join(", "), one(last))
            }
            None => "nothing".to_string(),
        },
        other => one(other).to_string(),
    }
}

/// What a JSON value is, in words: `the number 5`, `the string "x"`.
fn got(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            const SHOWN: usize = 40;
            if s.chars().count() > SHOWN {
                let head: String = s.chars().take(SHOWN).collect();
                format!("the string {:?}", format!("{head}..."))
            } else {
                format!("the string {s:?}")
            }
        }
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// The fix for a value of the wrong type, where one is clear.
fn fix(value: &Value, shape: &Shape) -> Option<String> {
    let takes = |kind: Shape| alternatives(shape).any(|s| s == kind);
    match value {
        Value::Number(n) if takes(Shape::String) => Some(format!("write it as a string: \"{n}\"")),
        Value::String(s) if takes(Shape::Boolean) && (s == "true" || s == "false") => {
            Some(format!("write it without quotes: {s}"))
        }
        Value::String(s)
            if (takes(Shape::Integer) && s.trim().parse::<i64>().is_ok())
                || (takes(Shape::Number) && s.trim().parse::<f64>().is_ok_and(f64::is_finite)) =>
        {
            Some(format!("write it without quotes: {}", s.trim()))
        }
        Value::Null => Some("null is not a value: give one, or leave the field out".to_string()),
        Value::Array(_) => None,
        // One of what a list is wanted of.
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Object(_) => {
            let item = alternatives(shape).find_map(|s| match s {
                Shape::List(item) => Some(item),
                _ => None,
            })?;
            let shown = match (value, alternative(value, item)) {
                (Value::Object(_), Some(_)) => "{...}".to_string(),
                (_, Some(_)) => value.to_string(),
                // A number in a list of strings: the fix above, inside it.
                (Value::Number(n), None) if alternative(&Value::from(""), item).is_some() => {
                    format!("\"{n}\"")
                }
                _ => return None,
            };
            Some(format!("put it in a list: [{shown}]"))
        }
    }
}

/// A shape's alternatives (itself when it is not [`Shape::AnyOf`]).
fn alternatives(shape: &Shape) -> impl Iterator<Item = Shape> + '_ {
    let list: &[Shape] = match shape {
        Shape::AnyOf(shapes) => shapes,
        other => std::slice::from_ref(other),
    };
    list.iter().copied()
}

/// `path.key`, or `key` at the root.
fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => path.to_string(),
        (false, false) => format!("{path}.{key}"),
    }
}

/// Whether `field` is `at` or inside it.
fn covers(at: &str, field: &str) -> bool {
    at.is_empty()
        || field
            .strip_prefix(at)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests;
