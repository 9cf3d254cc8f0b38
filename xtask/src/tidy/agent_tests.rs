//! The loop tests (`daemon/agent/tests`) run on tokio's paused clock.
//!
//! - Every `#[tokio::test]` says `start_paused = true` (so the runtime is
//!   current-thread): a test waits in virtual time, which moves only when
//!   every task is idle, so a wait is as long as the loop needs and never
//!   depends on how busy the machine is. A name the attribute is imported
//!   under (`use tokio::test as t; #[t]`) counts too.
//! - No file calls `std::thread::sleep` (nor `sleep_ms`, `sleep_until`),
//!   through any alias or glob: it blocks the one worker thread, and the
//!   paused clock does not move for it. Wait with `tokio::time::sleep` or,
//!   better, on a condition.
//!
//! Every `.rs` file under the directory is read: each `tests/*.rs` is a
//! test crate's root, and `mod common;` is followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use syn::{Attribute, Expr, Lit, Meta};

use super::core_src::read_rs_files;
use super::resolve::{self, Ban, Finding, Policy, Segs};

/// Where the loop tests are, from the workspace root.
pub const AGENT_TESTS: &str = "daemon/agent/tests";

pub const START_PAUSED: Ban = Ban {
    rule: "start_paused",
    why: "every loop test runs on tokio's paused clock: write \
          #[tokio::test(start_paused = true)] (current-thread; no flavor = \"multi_thread\")",
};
pub const THREAD_SLEEP: Ban = Ban {
    rule: "std::thread::sleep",
    why: "a loop test must not block its runtime's only thread, and the paused clock does \
          not move for it: await tokio::time::sleep, or better a condition",
};

/// Counts the `#[tokio::test]`s it is shown, for the report.
#[derive(Default)]
pub struct AgentTestsPolicy {
    pub tokio_tests: std::cell::Cell<usize>,
}

/// Whether `#[tokio::test(..)]`'s arguments say `start_paused = true`
/// (and no other flavor than current-thread).
fn starts_paused(attr: &Attribute) -> bool {
    let Meta::List(_) = &attr.meta else {
        return false;
    };
    let mut paused = false;
    let mut multi = false;
    let parsed = attr.parse_nested_meta(|m| {
        if m.path.is_ident("start_paused") {
            if let Expr::Lit(l) = m.value()?.parse::<Expr>()?
                && let Lit::Bool(b) = l.lit
            {
                paused = b.value;
            }
        } else if m.path.is_ident("flavor") {
            if let Expr::Lit(l) = m.value()?.parse::<Expr>()?
                && let Lit::Str(s) = l.lit
            {
                multi = s.value() != "current_thread";
            }
        } else if m.input.peek(syn::Token![=]) {
            let _: Expr = m.value()?.parse()?;
        }
        Ok(())
    });
    parsed.is_ok() && paused && !multi
}

impl Policy for AgentTestsPolicy {
    fn skip_tests(&self) -> bool {
        false
    }

    fn path(&self, p: &[String], _glob: bool) -> Option<Ban> {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["std", "thread", "sleep" | "sleep_ms" | "sleep_until"] => Some(THREAD_SLEEP),
            _ => None,
        }
    }

    fn fn_attr(&self, attr: &Attribute, resolved: &[Segs]) -> Option<Ban> {
        if !resolved.iter().any(|r| r == &["tokio", "test"]) {
            return None;
        }
        self.tokio_tests.set(self.tokio_tests.get() + 1);
        (!starts_paused(attr)).then_some(START_PAUSED)
    }
}

/// The test crates' roots among `files` of a `tests` dir: `dir/*.rs`.
pub fn roots(dir: &Path, files: &BTreeMap<PathBuf, String>) -> Vec<PathBuf> {
    files
        .keys()
        .filter(|f| f.parent() == Some(dir))
        .cloned()
        .collect()
}

/// Checks the test files `files` of a `tests` dir `dir`: what breaks a
/// rule, and how many `#[tokio::test]`s there are.
pub fn check_files(dir: &Path, files: &BTreeMap<PathBuf, String>) -> Result<(Vec<Finding>, usize)> {
    let policy = AgentTestsPolicy::default();
    let found = resolve::check(files, &roots(dir, files), &policy)?;
    Ok((found, policy.tokio_tests.get()))
}

/// The loop tests under `root` (the workspace): what breaks a rule, and
/// how many `#[tokio::test]`s there are.
pub fn check(root: &Path) -> Result<(Vec<Finding>, usize)> {
    let dir = PathBuf::from(AGENT_TESTS);
    let files: BTreeMap<PathBuf, String> = read_rs_files(&root.join(&dir))?
        .into_iter()
        .map(|(p, t)| (p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p), t))
        .collect();
    check_files(&dir, &files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::resolve::{Expected, FixtureFiles};

    /// Checks a tests dir of `(file under tests/, text)`s as the loop
    /// tests: each finding as (file, line, rule), and the tokio tests seen.
    fn found(files: &[(&str, &str)]) -> (Vec<(String, usize, &'static str)>, usize) {
        let files = files
            .iter()
            .map(|(p, t)| (Path::new("tests").join(p), (*t).to_string()))
            .collect();
        let (found, tests) = check_files(Path::new("tests"), &files).expect("the fixture parses");
        let found = found
            .into_iter()
            .map(|f| (f.file.display().to_string(), f.line, f.ban.rule))
            .collect();
        (found, tests)
    }

    /// One fixture per way to break a rule; each must fail tidy there.
    const FAILING: &[(&str, FixtureFiles, Expected)] = &[
        (
            "a tokio test on the wall clock",
            &[("a.rs", "#[tokio::test]\nasync fn t() {}\n")],
            &[("tests/a.rs", 1, START_PAUSED)],
        ),
        (
            "start_paused = false",
            &[(
                "a.rs",
                "#[tokio::test(start_paused = false)]\nasync fn t() {}\n",
            )],
            &[("tests/a.rs", 1, START_PAUSED)],
        ),
        (
            "paused but multi-threaded (tokio refuses it)",
            &[(
                "a.rs",
                "#[tokio::test(flavor = \"multi_thread\", start_paused = true)]\nasync fn t() {}\n",
            )],
            &[("tests/a.rs", 1, START_PAUSED)],
        ),
        (
            "tokio's test attribute under another name",
            &[(
                "a.rs",
                "use tokio::test as paused_test;\n#[paused_test]\nasync fn t() {}\n",
            )],
            &[("tests/a.rs", 2, START_PAUSED)],
        ),
        (
            "::tokio::test, in a module",
            &[(
                "a.rs",
                "mod inner {\n    #[::tokio::test]\n    async fn t() {}\n}\n",
            )],
            &[("tests/a.rs", 2, START_PAUSED)],
        ),
        (
            "std::thread::sleep, fully qualified",
            &[(
                "a.rs",
                "#[tokio::test(start_paused = true)]\n\
                 async fn t() { std::thread::sleep(std::time::Duration::ZERO); }\n",
            )],
            &[("tests/a.rs", 2, THREAD_SLEEP)],
        ),
        (
            "thread::sleep after use std::thread",
            &[(
                "a.rs",
                "use std::thread;\nfn wait() { thread::sleep(std::time::Duration::ZERO); }\n",
            )],
            &[("tests/a.rs", 2, THREAD_SLEEP)],
        ),
        (
            "sleep renamed",
            &[(
                "a.rs",
                "use std::thread::sleep as nap;\nfn wait() { nap(std::time::Duration::ZERO); }\n",
            )],
            &[
                ("tests/a.rs", 1, THREAD_SLEEP),
                ("tests/a.rs", 2, THREAD_SLEEP),
            ],
        ),
        (
            "a glob of std::thread",
            &[(
                "a.rs",
                "use std::thread::*;\nfn wait() { sleep(std::time::Duration::ZERO); }\n",
            )],
            &[("tests/a.rs", 2, THREAD_SLEEP)],
        ),
        (
            "in the shared harness, and through its glob",
            &[
                (
                    "a.rs",
                    "mod common;\nuse common::*;\nfn wait() { nap(DAY); }\n",
                ),
                (
                    "common/mod.rs",
                    "pub use std::thread::sleep as nap;\n\
                     pub const DAY: std::time::Duration = std::time::Duration::from_secs(86400);\n",
                ),
            ],
            &[
                ("tests/a.rs", 3, THREAD_SLEEP),
                ("tests/common/mod.rs", 1, THREAD_SLEEP),
            ],
        ),
    ];

    #[test]
    fn every_failing_fixture_fails_where_expected() {
        for (what, files, want) in FAILING {
            let want: Vec<(String, usize, &str)> = want
                .iter()
                .map(|(f, l, b)| ((*f).to_string(), *l, b.rule))
                .collect();
            assert_eq!(found(files).0, want, "{what}");
        }
        for ban in [START_PAUSED, THREAD_SLEEP] {
            assert!(
                FAILING
                    .iter()
                    .any(|(_, _, want)| want.iter().any(|(_, _, b)| *b == ban)),
                "no fixture breaks {}",
                ban.rule
            );
        }
    }

    /// Paused tests (also with the flavor named), tokio's sleep (imported
    /// by name, which shadows a glob of std::thread) and plain `#[test]`s.
    #[test]
    fn the_clean_fixture_passes_and_its_tokio_tests_are_counted() {
        let a = r#"
use std::thread::*;
use std::time::Duration;
use tokio::time::sleep;
mod common;
#[tokio::test(start_paused = true)]
async fn one() { sleep(Duration::from_millis(5)).await; }
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn two() { common::wait().await; let _ = current().id(); }
#[test]
fn plain() {}
"#;
        let common =
            "pub async fn wait() { tokio::time::sleep(std::time::Duration::ZERO).await }\n";
        assert_eq!(
            found(&[("a.rs", a), ("common/mod.rs", common)]),
            (vec![], 2)
        );
    }

    /// The rule on the real tree: `cargo test -p xtask` runs it.
    #[test]
    fn the_loop_tests_break_no_rule() {
        let (found, tests) = check(&crate::workspace_root()).expect("the loop tests read");
        assert!(tests > 40, "only {tests} tokio tests under {AGENT_TESTS}");
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(found.is_empty(), "{}", lines.join("\n"));
    }
}
