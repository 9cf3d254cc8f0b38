//! The seed corpus of each fuzz target, written afresh under
//! `target/fuzz/seeds/<target>/` on every run: the repo's examples,
//! fixtures, README blocks and the strings and `json!` literals of each
//! parser's tests, plus `../shared/corpus/` when it is there. Nothing here
//! is committed, so the seeds follow the tests as they change.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// Writes `target`'s seeds into `out` (emptied first); returns how many.
pub fn write(root: &Path, shared: Option<&Path>, target: &str, out: &Path) -> Result<usize> {
    let mut seeds = BTreeSet::new();
    let src = |rel: &str| read(&root.join(rel));
    match target {
        "spec" => {
            seeds.extend(files(&root.join("examples"), &["yaml", "yml"])?);
            seeds.extend(fenced(&src("README.md")?, "yaml"));
            seeds.extend(literals(&src("daemon/core/src/parse/tests.rs")?));
            if let Some(s) = shared {
                seeds.extend(files(&s.join("paunch"), &["json", "yml"])?);
                seeds.extend(files(&s.join("tripleo"), &["json"])?);
            }
        }
        "apply_body" => {
            let tests = src("daemon/core/src/apply_body/tests.rs")?;
            seeds.extend(json_macros(&tests).iter().map(Value::to_string));
            seeds.extend(literals(&tests).into_iter().filter(|s| is_json(s)));
            if let Some(s) = shared {
                // Each container of a TripleO step: a body shaped like a spec.
                for text in files(&s.join("tripleo"), &["json"])? {
                    if let Ok(Value::Object(m)) = serde_json::from_str(&text) {
                        seeds.extend(m.values().map(Value::to_string));
                    }
                }
            }
        }
        "heat" => {
            seeds.extend(files(
                &root.join("daemon/core/tests/fixtures/heat"),
                &["json"],
            )?);
            let tests = src("daemon/core/src/heat/tests.rs")?;
            seeds.extend(json_macros(&tests).iter().map(Value::to_string));
            seeds.extend(literals(&tests).into_iter().filter(|s| is_json(s)));
            if let Some(s) = shared {
                seeds.extend(files(&s.join("heat"), &["json"])?);
            }
        }
        "berthd_toml" => {
            seeds.extend(fenced(&src("README.md")?, "toml"));
            seeds.insert(src("tests/schemathesis/berthd.toml")?);
            seeds.extend(literals(&src("daemon/berthd/src/config.rs")?));
        }
        "tokens" => {
            seeds.extend(literals(&src("daemon/api/src/auth.rs")?));
            seeds.insert(
                "# orchestrators\nadmin admin-token-0123456789\nread read-token-0123456789\n\
                 Bearer admin-token-0123456789\n"
                    .to_string(),
            );
        }
        "api_request" => seeds.extend(requests(root, shared)?),
        "import" => {
            let fixtures = root.join("daemon/core/tests/fixtures/import");
            for sub in ["tripleo", "paunch", "heat", "tree/step_1", "tree/step_2"] {
                seeds.extend(files(&fixtures.join(sub), &["json", "yml"])?);
            }
            seeds.extend(literals(&src("daemon/core/src/import/tests.rs")?));
            if let Some(s) = shared {
                seeds.extend(files(&s.join("tripleo"), &["json"])?);
                seeds.extend(files(&s.join("paunch"), &["json", "yml"])?);
                seeds.extend(files(&s.join("heat"), &["json"])?);
            }
        }
        other => anyhow::bail!("no seeds for target {other:?}"),
    }
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (i, seed) in seeds.iter().enumerate() {
        let path = out.join(format!("seed-{i:04}"));
        std::fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading seeds from {}", path.display()))
}

fn is_json(s: &str) -> bool {
    serde_json::from_str::<Value>(s).is_ok()
}

/// The texts of `dir`'s files ending in one of `exts` (sorted; none when
/// `dir` is missing).
fn files(dir: &Path, exts: &[&str]) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if p.extension().is_some_and(|x| exts.iter().any(|e| x == *e)) {
            paths.push(p);
        }
    }
    paths.sort();
    paths.iter().map(|p| read(p)).collect()
}

/// The bodies of the Markdown code blocks fenced as ```lang.
fn fenced(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut block, fence) {
            (None, Some(l)) if l.trim() == lang => block = Some(String::new()),
            (Some(_), Some(_)) => out.extend(block.take()),
            (Some(b), None) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// The string literals of Rust source (`"..."` with its escapes, `r"..."`,
/// `r#"..."#`) of at least 8 characters: the texts a parser's tests feed it.
/// Comments and char literals are skipped; format strings are kept as
/// written (`{name}` and all), which makes fine seeds too.
pub fn literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i = src[i..].find('\n').map_or(b.len(), |n| i + n);
            }
            b'\'' => {
                // 'x', '\n', '\u{..}' or a lifetime.
                i += if b.get(i + 1) == Some(&b'\\') {
                    src[i + 3..].find('\'').map_or(b.len(), |n| n + 4)
                } else {
                    let c = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    if b.get(i + 1 + c) == Some(&b'\'') {
                        c + 2
                    } else {
                        1
                    }
                };
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                let open = i + 1 + hashes;
                if b.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let Some(n) = src[open + 1..].find(&close) else {
                    break;
                };
                out.push(src[open + 1..open + 1 + n].to_string());
                i = open + 1 + n + close.len();
            }
            b'"' => {
                let (text, len) = unescape(&src[i + 1..]);
                out.push(text);
                i += 1 + len;
            }
            _ => i += 1,
        }
    }
    out.retain(|s| s.chars().count() >= 8);
    out
}

/// A `"..."` literal's text from just after its opening quote, and how many
/// bytes it took (closing quote included).
fn unescape(s: &str) -> (String, usize) {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (out, at + 1),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some('x') => {
                    let hex: String = (0..2)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    out.extend(u8::from_str_radix(&hex, 16).ok().map(char::from));
                }
                Some('u') => {
                    let mut hex = String::new();
                    for (_, c) in chars.by_ref() {
                        match c {
                            '{' => {}
                            '}' => break,
                            c => hex.push(c),
                        }
                    }
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                // A line continuation: the newline and the next line's indent.
                Some('\n') => while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {},
                Some(c) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    (out, s.len())
}

/// The `json!(...)` literals of Rust source that are plain JSON (no Rust
/// expressions inside).
pub fn json_macros(src: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("json!(") {
        rest = &rest[at + "json!(".len()..];
        let mut depth = 1usize;
        let mut in_str = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_str => escaped = true,
                '"' => in_str = !in_str,
                '(' | '[' | '{' if !in_str => depth += 1,
                ')' | ']' | '}' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        if let Some(end) = end
            && let Ok(v) = serde_json::from_str::<Value>(&rest[..end])
        {
            out.push(v);
        }
    }
    out
}

/// Requests in the api_request target's text form: every route the API
/// tests call with their query strings, each as the local operator, a
/// `socket_group` member and an admin token over TCP; the JSON bodies of
/// those tests sent where they fit; the Heat fixtures posted as documents.
fn requests(root: &Path, shared: Option<&Path>) -> Result<Vec<String>> {
    let mut uris = BTreeSet::new();
    let mut bodies = Vec::new();
    for test in [
        "router.rs",
        "tcp_router.rs",
        "delete_volumes.rs",
        "heat_wait.rs",
    ] {
        let text = read(&root.join("daemon/api/tests").join(test))?;
        uris.extend(
            literals(&text)
                .into_iter()
                .chain(short_literals(&text))
                .filter(|s| s.starts_with("/v1/") || s == "/metrics" || s == "/healthz"),
        );
        bodies.extend(json_macros(&text));
    }
    let mut docs = files(&root.join("daemon/core/tests/fixtures/heat"), &["json"])?;
    if let Some(s) = shared {
        docs.extend(files(&s.join("heat"), &["json"])?);
    }
    let peers = [
        "x-fuzz-peer: 0",
        "x-fuzz-peer: 1000",
        "x-fuzz-peer: tcp\nauthorization: Bearer admin-token-0123456789",
    ];
    let mut out = Vec::new();
    let mut add = |method: &str, uri: &str, body: &str| {
        for peer in peers {
            out.push(format!(
                "{method} {uri}\ncontent-type: application/json\n{peer}\n\n{body}"
            ));
        }
    };
    for uri in &uris {
        add("GET", uri, "");
        add("DELETE", uri, "");
        add("POST", uri, "");
    }
    for body in &bodies {
        let text = body.to_string();
        match body {
            Value::Object(m) if m.contains_key("services") => add("POST", "/v1/apply", &text),
            Value::Object(m) if m.contains_key("group") || m.contains_key("inputs") => {
                add("POST", "/v1/deployments", &text);
            }
            Value::Object(m) => {
                let name = m.get("name").and_then(Value::as_str).unwrap_or("web");
                add("PUT", &format!("/v1/services/{name}"), &text);
            }
            _ => {}
        }
    }
    for doc in &docs {
        add("POST", "/v1/deployments", doc);
    }
    Ok(out)
}

/// `"/metrics"` and other string literals shorter than [`literals`] keeps.
fn short_literals(src: &str) -> Vec<String> {
    src.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/') && !s.contains(char::is_whitespace))
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rust_literals() {
        let src = r##"
            // "a comment, not a literal"
            let c = '"'; let d = '\''; fn f<'a>(x: &'a str) {}
            let s = "name: web\n\x20 image: \"x\"\u{41}";
            let r = r#"services: ["a"]"#;
            let cont = "one \
                        two three";
            let short = "tiny";
        "##;
        assert_eq!(
            literals(src),
            [
                "name: web\n  image: \"x\"A",
                "services: [\"a\"]",
                "one two three"
            ]
        );
    }

    #[test]
    fn reads_json_macros_and_fences() {
        let src = r#"call(Some(json!({"name": "web", "x": [1, "(]"]}))); json!({"a": value})"#;
        assert_eq!(
            json_macros(src),
            [serde_json::json!({"name": "web", "x": [1, "(]"]})]
        );
        let md = "text\n```toml\na = 1\n```\n```sh\nls\n```\n";
        assert_eq!(fenced(md, "toml"), ["a = 1\n"]);
    }
}
