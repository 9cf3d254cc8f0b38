//! berth-core's source: no I/O and no clock (the dependency rules keep the
//! I/O crates out; this keeps std's own I/O and clock out).
//!
//! Every `.rs` file under `daemon/core/src` is parsed and each path in it
//! resolved (see [`super::resolve`]); refused are:
//!
//! - `std::fs`, `std::process` and everything under them (also
//!   `std::os::*::fs` and `std::os::*::process`);
//! - `std::net` and everything under it, also `std::os::*::net`: the
//!   address types core compares (the signal-host policy) are
//!   `core::net`'s, which has no sockets and no name lookup;
//! - `SystemTime::now` and `Instant::now` (of `std::time`): core is given
//!   the time (`judge::judge` takes `now`), so its decisions replay.
//!
//! Tests may do all of it: `#[cfg(test)]` items (also `cfg(all(test, ..))`)
//! and `#[test]` functions are left out, with the files only a
//! `#[cfg(test)] mod x;` declares. They build only under `cargo test`, so
//! nothing of theirs reaches berthd.
//!
//! Not seen: a clock read by method-call syntax (`t.elapsed()`), which
//! needs types to name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::resolve::{self, Ban, Finding, Policy};

/// Where berth-core's source is, from the workspace root.
pub const CORE_SRC: &str = "daemon/core/src";

pub const FS: Ban = Ban {
    rule: "std::fs",
    why: "berth-core does no I/O; file access is core's `Files` seam, which berth-sources \
          implements (pass what the file holds in, or add a method to the seam)",
};
pub const NET: Ban = Ban {
    rule: "std::net",
    why: "berth-core does no I/O; sockets and name lookups belong to an adapter crate \
          (address types are plain values: take them from `core::net`)",
};
pub const PROCESS: Ban = Ban {
    rule: "std::process",
    why: "berth-core does no I/O; processes are started by adapters (host commands are \
          berth-systemd's transient units)",
};
pub const SYSTEM_TIME_NOW: Ban = Ban {
    rule: "SystemTime::now",
    why: "berth-core does not read the clock; the caller reads it and passes the time in",
};
pub const INSTANT_NOW: Ban = Ban {
    rule: "Instant::now",
    why: "berth-core does not read the clock; the caller passes `now` in (as judge::judge \
          takes it)",
};

pub struct CorePolicy;

impl Policy for CorePolicy {
    fn skip_tests(&self) -> bool {
        true
    }

    fn path(&self, p: &[String], _glob: bool) -> Option<Ban> {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["std", "fs", ..] | ["std", "os", _, "fs", ..] => Some(FS),
            ["std", "process", ..] | ["std", "os", _, "process", ..] => Some(PROCESS),
            ["std", "os", _, "net", ..] => Some(NET),
            ["std", "net", ..] => Some(NET),
            ["std", "time", "SystemTime", "now"] => Some(SYSTEM_TIME_NOW),
            ["std", "time", "Instant", "now"] => Some(INSTANT_NOW),
            _ => None,
        }
    }
}

/// Every `.rs` file under `dir`, by path as given (`dir/..`), with its text.
pub fn read_rs_files(dir: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry
                .with_context(|| format!("reading {}", d.display()))?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                out.insert(path, text);
            }
        }
    }
    Ok(out)
}

/// The crate roots among `files` of a crate's `src`: `lib.rs`, `main.rs`
/// and `bin/*.rs`.
pub fn roots(src: &Path, files: &BTreeMap<PathBuf, String>) -> Vec<PathBuf> {
    files
        .keys()
        .filter(|f| {
            f.parent() == Some(src)
                && f.file_name()
                    .is_some_and(|n| n == "lib.rs" || n == "main.rs")
                || f.parent() == Some(&src.join("bin"))
        })
        .cloned()
        .collect()
}

/// Checks the source files `files` of a crate whose `src` is `src`.
pub fn check_files(src: &Path, files: &BTreeMap<PathBuf, String>) -> Result<Vec<Finding>> {
    resolve::check(files, &roots(src, files), &CorePolicy)
}

/// berth-core's source under `root` (the workspace): what breaks a rule,
/// and how many files were read. Paths in findings are relative to `root`.
pub fn check(root: &Path) -> Result<(Vec<Finding>, usize)> {
    let src = PathBuf::from(CORE_SRC);
    let files: BTreeMap<PathBuf, String> = read_rs_files(&root.join(&src))?
        .into_iter()
        .map(|(p, t)| (p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p), t))
        .collect();
    Ok((check_files(&src, &files)?, files.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::resolve::{Expected, FixtureFiles};

    /// Checks a crate of `(file under src/, text)`s as berth-core's source.
    fn check_crate(files: &[(&str, &str)]) -> Vec<Finding> {
        let files = files
            .iter()
            .map(|(p, t)| (Path::new("src").join(p), (*t).to_string()))
            .collect();
        check_files(Path::new("src"), &files).expect("the fixture parses")
    }

    /// Each finding as (file, line, rule).
    fn found(files: &[(&str, &str)]) -> Vec<(String, usize, &'static str)> {
        check_crate(files)
            .into_iter()
            .map(|f| (f.file.display().to_string(), f.line, f.ban.rule))
            .collect()
    }

    /// One fixture per rule and per way to write it; each must fail tidy,
    /// at the lines given.
    const FAILING: &[(&str, FixtureFiles, Expected)] = &[
        (
            "an alias of std::fs, and a call through it",
            &[(
                "lib.rs",
                "use std::fs as disk;\n\
                 pub fn f() -> Vec<u8> {\n\
                 \x20   disk::read(\"x\").unwrap_or_default()\n\
                 }\n",
            )],
            &[("src/lib.rs", 1, FS), ("src/lib.rs", 3, FS)],
        ),
        (
            "SystemTime renamed, then Clock::now()",
            &[(
                "lib.rs",
                "use std::time::SystemTime as Clock;\n\
                 pub fn f() -> Clock {\n\
                 \x20   Clock::now()\n\
                 }\n",
            )],
            &[("src/lib.rs", 3, SYSTEM_TIME_NOW)],
        ),
        (
            "Instant through a type alias",
            &[(
                "lib.rs",
                "type Mono = std::time::Instant;\n\
                 pub fn f() -> Mono { Mono::now() }\n",
            )],
            &[("src/lib.rs", 2, INSTANT_NOW)],
        ),
        (
            "a glob of std, then process::id()",
            &[(
                "lib.rs",
                "use std::*;\n\
                 pub fn f() -> u32 { process::id() }\n",
            )],
            &[("src/lib.rs", 2, PROCESS)],
        ),
        (
            "a glob of std::time, then Instant::now()",
            &[(
                "lib.rs",
                "use std::time::*;\n\
                 pub fn f() -> Instant { Instant::now() }\n",
            )],
            &[("src/lib.rs", 2, INSTANT_NOW)],
        ),
        (
            "a glob of std::net (it brings the sockets in)",
            &[("lib.rs", "use std::net::*;\n")],
            &[("src/lib.rs", 1, NET)],
        ),
        (
            "an address type from std::net (core::net has it without sockets)",
            &[("lib.rs", "use std::net::IpAddr;\n")],
            &[("src/lib.rs", 1, NET)],
        ),
        (
            "a group, nested",
            &[(
                "lib.rs",
                "use std::{fs::File, net::TcpStream, time::{Duration, SystemTime}};\n\
                 pub fn f() -> SystemTime { SystemTime::now() }\n",
            )],
            &[
                ("src/lib.rs", 1, FS),
                ("src/lib.rs", 1, NET),
                ("src/lib.rs", 2, SYSTEM_TIME_NOW),
            ],
        ),
        (
            "self in a group",
            &[(
                "lib.rs",
                "use std::{process::{self}};\n\
                 pub fn f() -> u32 { process::id() }\n",
            )],
            &[("src/lib.rs", 1, PROCESS), ("src/lib.rs", 2, PROCESS)],
        ),
        (
            "a fully qualified path in an expression",
            &[("lib.rs", "pub fn f() { let _ = std::fs::read(\"x\"); }\n")],
            &[("src/lib.rs", 1, FS)],
        ),
        (
            "a path from the root, ::std",
            &[(
                "lib.rs",
                "pub fn f() { let _ = ::std::process::Command::new(\"x\"); }\n",
            )],
            &[("src/lib.rs", 1, PROCESS)],
        ),
        (
            "a socket in a type",
            &[("lib.rs", "pub struct S(pub std::net::TcpStream);\n")],
            &[("src/lib.rs", 1, NET)],
        ),
        (
            "a qualified self type: <Instant>::now()",
            &[(
                "lib.rs",
                "use std::time::Instant;\n\
                 pub fn f() -> Instant { <Instant>::now() }\n",
            )],
            &[("src/lib.rs", 2, INSTANT_NOW)],
        ),
        (
            "inside a macro's arguments",
            &[(
                "lib.rs",
                "pub fn f() -> Vec<Vec<u8>> {\n\
                 \x20   vec![std::fs::read(\"x\").unwrap_or_default()]\n\
                 }\n",
            )],
            &[("src/lib.rs", 2, FS)],
        ),
        (
            "re-exported by another module under a new name",
            &[(
                "lib.rs",
                "mod clock {\n\
                 \x20   pub use std::time::SystemTime as Wall;\n\
                 }\n\
                 use crate::clock::Wall;\n\
                 pub fn f() -> Wall { Wall::now() }\n\
                 pub fn g() -> Wall { self::clock::Wall::now() }\n",
            )],
            &[
                ("src/lib.rs", 5, SYSTEM_TIME_NOW),
                ("src/lib.rs", 6, SYSTEM_TIME_NOW),
            ],
        ),
        (
            "a child module's glob of its parent",
            &[(
                "lib.rs",
                "use std::time::SystemTime;\n\
                 mod inner {\n\
                 \x20   use super::*;\n\
                 \x20   pub fn f() -> SystemTime { SystemTime::now() }\n\
                 }\n",
            )],
            &[("src/lib.rs", 4, SYSTEM_TIME_NOW)],
        ),
        (
            "a use inside a function body",
            &[(
                "lib.rs",
                "pub fn f() {\n\
                 \x20   use std::time::Instant as I;\n\
                 \x20   let _ = I::now();\n\
                 }\n",
            )],
            &[("src/lib.rs", 3, INSTANT_NOW)],
        ),
        (
            "std under another name: extern crate std as s",
            &[(
                "lib.rs",
                "extern crate std as s;\n\
                 pub fn f() { let _ = s::fs::read(\"x\"); }\n",
            )],
            &[("src/lib.rs", 2, FS)],
        ),
        (
            "now as a value, not called",
            &[(
                "lib.rs",
                "pub fn f() -> fn() -> std::time::SystemTime { std::time::SystemTime::now }\n",
            )],
            &[("src/lib.rs", 1, SYSTEM_TIME_NOW)],
        ),
        (
            "a Unix socket",
            &[("lib.rs", "pub use std::os::unix::net::UnixStream;\n")],
            &[("src/lib.rs", 1, NET)],
        ),
        (
            "in a module file (`mod io;` -> io.rs)",
            &[
                ("lib.rs", "mod io;\n"),
                (
                    "io.rs",
                    "\npub fn f() { let _ = std::net::TcpListener::bind(\"x\"); }\n",
                ),
            ],
            &[("src/io.rs", 2, NET)],
        ),
        (
            "in a file no module declares (it is read all the same)",
            &[
                ("lib.rs", "pub fn f() {}\n"),
                ("stray.rs", "use std::process::Command;\n"),
            ],
            &[("src/stray.rs", 1, PROCESS)],
        ),
        (
            "cfg(any(test, ..)) is not test-only",
            &[(
                "lib.rs",
                "#[cfg(any(test, feature = \"x\"))]\n\
                 pub fn f() { let _ = std::fs::read(\"x\"); }\n",
            )],
            &[("src/lib.rs", 2, FS)],
        ),
    ];

    #[test]
    fn every_failing_fixture_fails_where_expected() {
        for (what, files, want) in FAILING {
            let want: Vec<(String, usize, &str)> = want
                .iter()
                .map(|(f, l, b)| ((*f).to_string(), *l, b.rule))
                .collect();
            assert_eq!(found(files), want, "{what}");
        }
    }

    /// Each of the five rules has a fixture that breaks it.
    #[test]
    fn every_rule_has_a_failing_fixture() {
        for ban in [FS, NET, PROCESS, SYSTEM_TIME_NOW, INSTANT_NOW] {
            assert!(
                FAILING
                    .iter()
                    .any(|(_, _, want)| want.iter().any(|(_, _, b)| *b == ban)),
                "no fixture breaks {}",
                ban.rule
            );
        }
    }

    #[test]
    fn a_finding_names_the_place_what_was_written_and_why() {
        let f = check_crate(&[(
            "lib.rs",
            "use std::time::SystemTime as Clock;\npub fn f() -> Clock {\n    Clock::now()\n}\n",
        )]);
        assert_eq!(
            f.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "src/lib.rs:3:5: `Clock::now` (is `std::time::SystemTime::now`): \
                 rule SystemTime::now: {}",
                SYSTEM_TIME_NOW.why
            )]
        );
    }

    /// What core may write: `core::net`'s address types, Instant and Duration as
    /// values, its own `now`s, a local item shadowing a glob, std::io's
    /// error type, and anything in test-only code.
    #[test]
    fn the_clean_fixture_passes() {
        let lib = r#"
use core::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};
pub struct Gate { pub since: Instant, pub at: SystemTime, pub ttl: Duration }
pub fn loopback(a: IpAddr) -> bool { a == IpAddr::V4(Ipv4Addr::LOCALHOST) }
pub fn later(now: Instant) -> Instant { now + Duration::from_secs(1) }
pub struct Clock;
impl Clock { pub fn now() -> u64 { 0 } }
pub fn tick() -> u64 { Clock::now() }
mod shadow {
    use std::time::*;
    pub struct Instant;
    impl Instant { pub fn now() -> Self { Instant } }
    pub fn f() -> Instant { Instant::now() }
}
pub fn io_error() -> std::io::Error { std::io::Error::other("fs") }
pub fn message() -> String { format!("{}", "std::fs::read") }
#[cfg(test)]
mod tests {
    use std::fs;
    #[test]
    fn t() { let _ = fs::read("x"); let _ = std::time::Instant::now(); }
}
#[cfg(all(test, unix))]
fn helper() { let _ = std::process::id(); }
#[test]
fn top() { let _ = std::time::SystemTime::now(); }
pub struct S;
impl S {
    #[cfg(test)]
    fn now() -> SystemTime { SystemTime::now() }
}
#[cfg(test)]
mod file_tests;
"#;
        let tests = "use std::fs;\nmod deeper;\n";
        let deeper = "pub fn f() { let _ = std::process::id(); }\n";
        assert_eq!(
            found(&[
                ("lib.rs", lib),
                ("file_tests.rs", tests),
                ("file_tests/deeper.rs", deeper),
            ]),
            []
        );
    }

    /// Modules that glob each other end (and find nothing).
    #[test]
    fn a_glob_cycle_ends() {
        let lib = "mod a { pub use super::*; }\nmod b { pub use super::a::*; }\n\
                   use b::*;\npub fn f() { x::y(); }\n";
        assert_eq!(found(&[("lib.rs", lib)]), []);
    }

    #[test]
    fn a_file_that_does_not_parse_or_a_missing_module_is_an_error() {
        let files = BTreeMap::from([(PathBuf::from("src/lib.rs"), "fn (".to_string())]);
        let e = check_files(Path::new("src"), &files).expect_err("does not parse");
        assert!(e.to_string().starts_with("src/lib.rs:1:"), "{e}");
        let files = BTreeMap::from([(PathBuf::from("src/lib.rs"), "mod gone;".to_string())]);
        let e = check_files(Path::new("src"), &files).expect_err("no gone.rs");
        assert!(e.to_string().contains("src/gone.rs"), "{e}");
    }

    /// The rule on the real tree: `cargo test -p xtask` runs it.
    #[test]
    fn berth_core_source_breaks_no_rule() {
        let (found, files) = check(&crate::workspace_root()).expect("core's source reads");
        assert!(files > 10, "only {files} files under {CORE_SRC}");
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(found.is_empty(), "{}", lines.join("\n"));
    }
}
