//! `env_file`: Docker's env-file format, parsed, merged and digested (pure;
//! the daemon reads the files through [`crate::files::Files`]).
//!
//! One `KEY=VALUE` per line; blank lines and lines starting with `#` are
//! skipped; leading whitespace is dropped, the value is kept as written
//! (no quotes removed, no `$` expanded), as `docker run --env-file` does.
//! A bare `KEY` (which Docker takes from the caller's environment) is an
//! error here: berthd has no operator shell to take it from.
//!
//! The values are secrets: they reach the container's env at its create
//! and nowhere else. Errors name the file and the line, never a value;
//! records keep only [`digest`] of the values (through the spec hash a
//! change of content is a new container).

use std::collections::BTreeMap;

use crate::hash::sha256_hex;

/// Why an env file cannot be used: the file, the line (0: the file as a
/// whole, e.g. it cannot be read) and what is wrong, without its values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("env_file {path}{}: {problem}", line_of(*.line))]
pub struct EnvFileError {
    pub path: String,
    pub line: usize,
    pub problem: String,
}

fn line_of(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(", line {line}")
    }
}

/// A variable name as `env:` takes it: letters, digits and `_`, not
/// starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The variables of one env file's `text`, in order (a key given twice:
/// both, the later wins when merged).
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, EnvFileError> {
    let error = |line: usize, problem: String| EnvFileError {
        path: path.to_string(),
        line,
        problem,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(error(
                n,
                "no `=`: each line is KEY=VALUE (a bare KEY, which docker takes from its \
                 caller's environment, has no environment to come from in berthd)"
                    .into(),
            ));
        };
        if !valid_env_name(key) {
            // Never shown: the text before `=` may be a value written
            // without its key (`postgres://app:pw@db/app?sslmode=require`).
            return Err(error(
                n,
                "the text before `=` is not a variable name: letters, digits and `_`, not \
                 starting with a digit (it is not shown: it may be a value)"
                    .to_string(),
            ));
        }
        if value.contains('\0') {
            return Err(error(
                n,
                format!("the value of {key} holds a NUL byte, which no environment can"),
            ));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Every file of `paths` read with `read` and parsed, merged in order (a
/// later file wins over an earlier one for the same key).
pub fn read_all(
    paths: &[String],
    mut read: impl FnMut(&str) -> Result<String, String>,
) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut out = BTreeMap::new();
    for path in paths {
        let text = read(path).map_err(|problem| EnvFileError {
            path: path.clone(),
            line: 0,
            problem,
        })?;
        out.extend(parse(path, &text)?);
    }
    Ok(out)
}

/// The digest the spec hash and the record take for the values files
/// gave: `sha256:` over their canonical JSON (keys sorted). Every value
/// counts, one that `env:` overrides too.
pub fn digest(values: &BTreeMap<String, String>) -> String {
    let canonical = serde_json::to_string(values).unwrap_or_default();
    format!("sha256:{}", sha256_hex(canonical.as_bytes()))
}

/// `env` with the files' `values` added under keys it does not have:
/// `env:` entries (and inputs) win over a file.
pub fn merge_under(env: &mut BTreeMap<String, String>, values: BTreeMap<String, String>) {
    for (key, value) in values {
        env.entry(key).or_insert(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_env_file_lines() {
        let text =
            "\u{feff}# a comment\n\nA=1\n  B=two words \r\nC=\nD==x=\n\t# indented comment\nA=3";
        let got = parse("/etc/app.env", text).expect("valid");
        assert_eq!(
            got,
            [
                ("A", "1"),
                ("B", "two words "),
                ("C", ""),
                ("D", "=x="),
                ("A", "3")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn errors_name_the_file_and_line_never_the_value() {
        let e = parse("/etc/app.env", "A=1\nhunter2\n").expect_err("bare key");
        assert_eq!((e.path.as_str(), e.line), ("/etc/app.env", 2));
        let said = e.to_string();
        assert!(
            said.starts_with("env_file /etc/app.env, line 2: no `=`"),
            "{said}"
        );
        assert!(!said.contains("hunter2"), "{said}");
        let e = parse("/e", "1A=x\n").expect_err("bad name");
        assert_eq!(
            e.to_string(),
            "env_file /e, line 1: the text before `=` is not a variable name: letters, digits \
             and `_`, not starting with a digit (it is not shown: it may be a value)"
        );
        // A value written without its key, whose own `=` looks like one.
        let e =
            parse("/e", "postgres://app:Pa55w0rd@db/app?sslmode=require\n").expect_err("no key");
        assert!(!e.to_string().contains("Pa55w0rd"), "{e}");
        let e = parse("/e", "\nmy secret value=x\n").expect_err("bad name");
        assert!(
            e.to_string().contains("line 2: the text before `=` is not"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = parse("/e", "A=x\0y\n").expect_err("nul");
        assert!(
            e.to_string().contains("the value of A holds a NUL byte"),
            "{e}"
        );
    }

    #[test]
    fn later_files_win_and_env_wins_over_files() {
        let files = BTreeMap::from([
            ("/a".to_string(), "A=a\nB=a\n".to_string()),
            ("/b".to_string(), "B=b\nC=b\n".to_string()),
        ]);
        let read = |p: &str| files.get(p).cloned().ok_or_else(|| "missing".to_string());
        let values = read_all(&["/a".into(), "/b".into()], read).expect("read");
        assert_eq!(values["A"], "a");
        assert_eq!(values["B"], "b");
        let mut env = BTreeMap::from([("C".to_string(), "explicit".to_string())]);
        merge_under(&mut env, values.clone());
        assert_eq!(env["C"], "explicit");
        assert_eq!(env["B"], "b");

        let e = read_all(&["/a".into(), "/nope".into()], read).expect_err("missing");
        assert_eq!(e.to_string(), "env_file /nope: missing");

        // Content, not layout, makes the digest.
        let same = read_all(&["/a".into(), "/b".into()], |p: &str| {
            Ok(format!("# {p}\n\n{}", files[p]))
        })
        .expect("read");
        assert_eq!(digest(&same), digest(&values));
        let mut other = values.clone();
        other.insert("A".into(), "changed".into());
        assert_ne!(digest(&other), digest(&values));
    }
}
