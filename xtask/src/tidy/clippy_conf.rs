//! `clippy.toml` keeps the bans clippy enforces (CI runs `cargo clippy
//! -D warnings`): tidy fails when one is gone from it, so a rule cannot be
//! dropped by deleting a line.

use std::path::Path;

use anyhow::{Context, Result};

/// `disallowed-methods` entries clippy.toml must hold, with why.
pub const BANNED_METHODS: &[(&str, &str)] = &[
    (
        "std::env::set_var",
        "the environment is read once at start; a child process gets its own with Command::env",
    ),
    (
        "std::env::remove_var",
        "the environment is read once at start; a child process gets its own with \
         Command::env_remove",
    ),
];

/// What `text` (a clippy.toml) lacks of [`BANNED_METHODS`], one line each.
pub fn check_text(text: &str) -> Result<Vec<String>> {
    let conf: toml::Table = toml::from_str(text).context("clippy.toml does not parse as TOML")?;
    let listed: Vec<&str> = conf
        .get("disallowed-methods")
        .and_then(toml::Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| match e {
                    toml::Value::String(path) => Some(path.as_str()),
                    toml::Value::Table(t) => t.get("path").and_then(toml::Value::as_str),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(BANNED_METHODS
        .iter()
        .filter(|(path, _)| !listed.contains(path))
        .map(|(path, why)| {
            format!(
                "clippy.toml: disallowed-methods does not list {path}: add \
                 {{ path = \"{path}\", reason = \"..\" }} ({why})"
            )
        })
        .collect())
}

/// The workspace's clippy.toml under `root`.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let path = root.join("clippy.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    check_text(&text).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_ban_fails_and_both_forms_count() {
        let missing = check_text("allow-unwrap-in-tests = true\n").expect("parses");
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains("std::env::set_var"), "{missing:?}");
        assert!(missing[1].contains("std::env::remove_var"), "{missing:?}");
        let one =
            check_text("disallowed-methods = [{ path = \"std::env::set_var\", reason = \"x\" }]\n")
                .expect("parses");
        assert_eq!(one.len(), 1, "{one:?}");
        assert!(one[0].contains("remove_var"), "{one:?}");
        let both = check_text(
            "disallowed-methods = [\"std::env::remove_var\", { path = \"std::env::set_var\" }]\n",
        )
        .expect("parses");
        assert_eq!(both, Vec::<String>::new());
        assert!(check_text("disallowed-methods = [").is_err());
    }

    /// The real clippy.toml: `cargo test -p xtask` runs it.
    #[test]
    fn the_workspace_clippy_toml_keeps_the_bans() {
        let missing = check(&crate::workspace_root()).expect("clippy.toml reads");
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
