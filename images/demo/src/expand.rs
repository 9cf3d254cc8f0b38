//! `${VAR}` and `@{PATH}` in the words of `append` and the values of
//! `write-outputs`.
//!
//! Parsing is pure and happens with the rest of the command line, so a
//! malformed reference is a usage error (exit 2) before anything is written.
//! Expansion takes the environment and the file reader as functions, so the
//! rules are unit-testable without touching the process's environment.

use std::io;

/// One word with its references, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `${VAR}`: the variable's value, empty if unset.
    Var(String),
    /// `@{PATH}`: the file's content minus one trailing newline.
    File(String),
}

impl Template {
    /// Reads `s`: `${VAR}` and `@{PATH}` are references (VAR and PATH not
    /// empty, up to the first `}`); a `$` or `@` not followed by `{` is
    /// literal. An unclosed or empty reference is an error.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['$', '@']) {
            let (before, at) = rest.split_at(i);
            literal.push_str(before);
            let sigil = &at[..1];
            let Some(after) = at[1..].strip_prefix('{') else {
                literal.push_str(sigil);
                rest = &at[1..];
                continue;
            };
            let Some(end) = after.find('}') else {
                let what = if sigil == "$" { "VAR" } else { "PATH" };
                return Err(format!(
                    "unclosed {sigil}{{ in {s:?} (write {sigil}{{{what}}})"
                ));
            };
            let name = &after[..end];
            if name.is_empty() {
                return Err(format!("empty {sigil}{{}} in {s:?}"));
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(if sigil == "$" {
                Piece::Var(name.to_string())
            } else {
                Piece::File(name.to_string())
            });
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// Fills the references in: `env` gives a variable's value (`None`:
    /// unset, which expands to nothing), `read` a file's bytes. A file that
    /// cannot be read, or is not UTF-8, is an error naming its path.
    pub fn expand(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        read: &dyn Fn(&str) -> io::Result<Vec<u8>>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Var(name) => out.push_str(&env(name).unwrap_or_default()),
                Piece::File(path) => {
                    let bytes = read(path).map_err(|e| format!("reading {path}: {e}"))?;
                    let text = String::from_utf8(bytes)
                        .map_err(|_| format!("reading {path}: not UTF-8 text"))?;
                    out.push_str(text.strip_suffix('\n').unwrap_or(&text));
                }
            }
        }
        Ok(out)
    }
}

/// Shown in messages and in the `write-outputs` test: the word as written.
impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => f.write_str(s)?,
                Piece::Var(n) => write!(f, "${{{n}}}")?,
                Piece::File(p) => write!(f, "@{{{p}}}")?,
            }
        }
        Ok(())
    }
}

/// The process's own environment and file system, as `main` expands with.
pub fn expand_here(t: &Template) -> Result<String, String> {
    t.expand(&|k| std::env::var(k).ok(), &|p| std::fs::read(p))
}

/// Joins expanded words into one line: single spaces between, `\n` at the end.
pub fn line(words: &[String]) -> String {
    let mut out = words.join(" ");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "RELEASE" => Some("v2".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn read(p: &str) -> io::Result<Vec<u8>> {
        match p {
            "/in/version" => Ok(b"schema-v2\n".to_vec()),
            "/in/two" => Ok(b"a\n\n".to_vec()),
            "/in/bare" => Ok(b"x".to_vec()),
            "/in/binary" => Ok(vec![0xff, 0xfe]),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "No such file")),
        }
    }

    fn x(s: &str) -> Result<String, String> {
        Template::parse(s)?.expand(&env, &read)
    }

    #[test]
    fn vars_and_files_are_filled_in() {
        assert_eq!(x("plain"), Ok("plain".into()));
        assert_eq!(x(""), Ok("".into()));
        assert_eq!(x("${RELEASE}"), Ok("v2".into()));
        assert_eq!(x("schema-${RELEASE}!"), Ok("schema-v2!".into()));
        assert_eq!(x("${UNSET}|${EMPTY}|"), Ok("||".into()));
        assert_eq!(x("@{/in/version}"), Ok("schema-v2".into()));
        assert_eq!(
            x("${RELEASE}=@{/in/version}@{/in/bare}"),
            Ok("v2=schema-v2x".into())
        );
    }

    #[test]
    fn only_one_trailing_newline_goes() {
        assert_eq!(x("@{/in/two}"), Ok("a\n".into()));
    }

    #[test]
    fn a_sigil_without_brace_is_literal() {
        assert_eq!(
            x("$RELEASE costs $5 @ home, a@b"),
            Ok("$RELEASE costs $5 @ home, a@b".into())
        );
        assert_eq!(x("$$"), Ok("$$".into()));
        assert_eq!(x("trailing $"), Ok("trailing $".into()));
        // The text after a reference is read on, not re-expanded.
        assert_eq!(x("${RELEASE}}"), Ok("v2}".into()));
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in ["${", "${RELEASE", "a@{/in/version", "${}", "@{}"] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
        let e = Template::parse("a@{/in/version").expect_err("unclosed");
        assert!(e.contains("@{PATH}"), "{e}");
        let e = Template::parse("${RELEASE").expect_err("unclosed");
        assert!(e.contains("${VAR}"), "{e}");
    }

    #[test]
    fn unreadable_files_name_the_path() {
        let e = x("v=@{/in/missing}").expect_err("missing file");
        assert!(e.contains("/in/missing"), "{e}");
        let e = x("@{/in/binary}").expect_err("not text");
        assert!(e.contains("/in/binary") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn display_is_the_word_as_written() {
        for s in ["a${B}c@{/d}e", "$x @y", ""] {
            assert_eq!(Template::parse(s).expect("valid").to_string(), s);
        }
    }

    #[test]
    fn line_joins_with_single_spaces() {
        assert_eq!(
            line(&["api-disable".into(), "v1".into()]),
            "api-disable v1\n"
        );
        assert_eq!(line(&["".into()]), "\n");
        assert_eq!(line(&["a".into(), "".into(), "b".into()]), "a  b\n");
    }
}
