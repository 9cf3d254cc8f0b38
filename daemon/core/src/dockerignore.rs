//! `.dockerignore`, as the docker CLI reads it: the files of a build
//! context that are not sent to the engine (and that berth leaves out of
//! the context hash, so changing them rebuilds nothing).
//!
//! One pattern per line; `#` starts a comment line; blank lines are
//! skipped; a leading `!` makes an exception. Paths are relative to the
//! context (a leading `/` is dropped, `.` and `..` are cleaned away).
//! `*` matches any run of characters but `/`, `?` one character but `/`,
//! `[a-z]` / `[^a-z]` a class, `\` escapes the next character, and a `**`
//! segment any number of directories (none included). A pattern that
//! matches a directory excludes everything under it. The last pattern that
//! matches a path decides. The Dockerfile and `.dockerignore` itself are
//! always sent, whatever the patterns say (the CLI does the same).

/// The file's name at the context's root.
pub const FILE_NAME: &str = ".dockerignore";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Cleaned path segments.
    segments: Vec<String>,
    /// A `!` line: matching paths are sent after all.
    exception: bool,
}

/// The parsed patterns of one `.dockerignore`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    /// Paths always sent (the Dockerfile, `.dockerignore`).
    keep: Vec<String>,
}

/// A line that cannot be a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub message: String,
}

impl Ignore {
    /// Parses the text of a `.dockerignore`. `dockerfile` is the
    /// Dockerfile's path in the context, always sent.
    pub fn parse(text: &str, dockerfile: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segments = clean(body);
            if segments.is_empty() {
                // `/`, `.` or `!`: nothing to match (the CLI skips these too).
                continue;
            }
            if let Some(bad) = segments.iter().find(|s| !well_formed(s)) {
                return Err(IgnoreError {
                    line: i + 1,
                    message: format!(
                        "{line:?}: the segment {bad:?} has an unclosed [ or ends in \\ (escape it as \\[ or \\\\)"
                    ),
                });
            }
            patterns.push(Pattern {
                segments,
                exception,
            });
        }
        Ok(Ignore {
            patterns,
            keep: vec![clean(dockerfile).join("/"), FILE_NAME.to_string()],
        })
    }

    /// Nothing is ignored.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) stays out
    /// of the context.
    pub fn excludes(&self, path: &str) -> bool {
        if self.keep.iter().any(|k| k == path) {
            return false;
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // The path itself, or a directory above it.
            let hit = (1..=segments.len()).any(|n| matches(&p.segments, &segments[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// What a walk of the context does with `path`, a directory when
    /// `is_dir`. An excluded directory is still walked (its own entry not
    /// sent) when something under it may be sent after all: an exception,
    /// or the Dockerfile.
    pub fn walk(&self, path: &str, is_dir: bool) -> Walk {
        if !self.excludes(path) {
            Walk::Send
        } else if is_dir && self.may_keep_under(path) {
            Walk::Descend
        } else {
            Walk::Skip
        }
    }

    fn may_keep_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns.iter().any(|p| p.exception)
            || self.keep.iter().any(|k| k.starts_with(&prefix))
    }
}

/// [`Ignore::walk`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Sent (a directory: walked too).
    Send,
    /// Not sent, but walked: something under it may be.
    Descend,
    /// Neither sent nor walked.
    Skip,
}

/// `a/./b/../c/` → `["a", "c"]`; a leading `/` and leading `..` go.
fn clean(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

/// Classes closed and no trailing lone `\`.
fn well_formed(seg: &str) -> bool {
    let mut p = seg.as_bytes();
    while let Some((&c, rest)) = p.split_first() {
        p = match c {
            b'\\' => match rest.split_first() {
                Some((_, r)) => r,
                None => return false,
            },
            b'[' => match class(rest, 0) {
                Some((_, after)) => after,
                None => return false,
            },
            _ => rest,
        };
    }
    true
}

/// Pattern segments against path segments; `**` takes any number.
fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((seg, path_rest)) => {
                segment_matches(first.as_bytes(), seg.as_bytes()) && matches(rest, path_rest)
            }
            None => false,
        },
    }
}

/// Go's `filepath.Match` within one segment: `*`, `?`, classes, escapes.
fn segment_matches(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|k| segment_matches(rest, &s[k..])),
        Some((b'?', rest)) => !s.is_empty() && segment_matches(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            match class(rest, c) {
                Some((true, after)) => segment_matches(after, s_rest),
                _ => false,
            }
        }
        Some((b'\\', rest)) => match (rest.split_first(), s.split_first()) {
            (Some((pc, p_rest)), Some((sc, s_rest))) => pc == sc && segment_matches(p_rest, s_rest),
            _ => false,
        },
        Some((pc, rest)) => s
            .split_first()
            .is_some_and(|(sc, s_rest)| pc == sc && segment_matches(rest, s_rest)),
    }
}

/// A class after its `[`: whether `c` is in it, and the pattern after `]`.
fn class(p: &[u8], c: u8) -> Option<(bool, &[u8])> {
    let (negated, mut p) = match p.first() {
        Some(b'^') | Some(b'!') => (true, &p[1..]),
        _ => (false, p),
    };
    let mut hit = false;
    let mut first = true;
    loop {
        let (&lo, rest) = p.split_first()?;
        if lo == b']' && !first {
            return Some((hit != negated, rest));
        }
        first = false;
        let (lo, rest) = if lo == b'\\' {
            let (&e, r) = rest.split_first()?;
            (e, r)
        } else {
            (lo, rest)
        };
        if let [b'-', hi, tail @ ..] = rest
            && *hi != b']'
        {
            if (lo..=*hi).contains(&c) {
                hit = true;
            }
            p = tail;
        } else {
            if lo == c {
                hit = true;
            }
            p = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, "Dockerfile").expect("parses")
    }

    #[test]
    fn plain_names_globs_and_directories() {
        let i = ignore("# build output\n\ntarget\n*.log\n/secret.env\ndocs/*.md\n");
        for (path, out) in [
            ("target", true),
            ("target/debug/app", true),
            ("sub/target", false),
            ("app.log", true),
            ("logs/app.log", false),
            ("secret.env", true),
            ("docs/a.md", true),
            ("docs/deep/a.md", false),
            ("src/main.rs", false),
            ("Dockerfile", false),
        ] {
            assert_eq!(i.excludes(path), out, "{path}");
        }
    }

    #[test]
    fn double_star_spans_any_number_of_directories() {
        let i = ignore("**/*.pyc\na/**/z\n");
        for (path, out) in [
            ("x.pyc", true),
            ("pkg/mod/x.pyc", true),
            ("a/z", true),
            ("a/b/c/z", true),
            ("b/z", false),
        ] {
            assert_eq!(i.excludes(path), out, "{path}");
        }
    }

    #[test]
    fn the_last_matching_line_wins_and_exceptions_bring_files_back() {
        let i = ignore("*.md\n!README.md\nREADME-secret.md\n");
        assert!(i.excludes("CHANGES.md"));
        assert!(!i.excludes("README.md"));
        assert!(i.excludes("README-secret.md"));
        assert_eq!(
            i.walk("old.md", true),
            Walk::Descend,
            "an exception may be under it"
        );
        assert_eq!(i.walk("x.md", false), Walk::Skip);
        let i = ignore("docs\n!docs/keep.txt\n");
        assert!(i.excludes("docs/other.txt"));
        assert!(!i.excludes("docs/keep.txt"));
    }

    #[test]
    fn the_dockerfile_and_the_ignore_file_are_always_sent() {
        let i = Ignore::parse("*\n", "./build/App.dockerfile").expect("parses");
        assert!(i.excludes("src"));
        assert!(!i.excludes("build/App.dockerfile"));
        assert!(!i.excludes(".dockerignore"));
        assert_eq!(
            i.walk("build", true),
            Walk::Descend,
            "the Dockerfile is under it"
        );
        assert_eq!(i.walk("src", true), Walk::Skip);
        assert_eq!(i.walk("build/App.dockerfile", false), Walk::Send);
    }

    #[test]
    fn classes_escapes_and_question_marks() {
        let i = ignore("file[0-9].txt\nname[^a].c\n\\*literal\nv?.bin\n");
        assert!(i.excludes("file7.txt"));
        assert!(!i.excludes("filex.txt"));
        assert!(i.excludes("nameb.c"));
        assert!(!i.excludes("namea.c"));
        assert!(i.excludes("*literal"));
        assert!(!i.excludes("xliteral"));
        assert!(i.excludes("v1.bin"));
        assert!(!i.excludes("v12.bin"));
    }

    #[test]
    fn paths_are_cleaned_and_bad_lines_are_named() {
        let i = ignore("./a/../b/c/\n  !  b/c/keep  \n/\n");
        assert!(i.excludes("b/c/x"));
        assert!(!i.excludes("b/c/keep"));
        assert!(!i.excludes("a/x"));
        let e = Ignore::parse("ok\nbad[\n", "Dockerfile").expect_err("unclosed class");
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("unclosed ["), "{e}");
        assert!(ignore("").is_empty());
    }
}
