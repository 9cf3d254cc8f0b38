//! The config directory: every regular file under it, recursively.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::json;
use crate::sha256;

const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Relative to the config dir, `/`-separated.
    pub path: String,
    pub content: Vec<u8>,
    pub sha256: String,
}

impl ConfigFile {
    pub fn log_line(&self) -> String {
        format!(
            "config: {} ({} bytes) sha256={}",
            self.path,
            self.content.len(),
            self.sha256
        )
    }

    pub fn to_json(&self) -> String {
        json::object([
            ("path", json::string(&self.path)),
            ("size", self.content.len().to_string()),
            ("sha256", json::string(&self.sha256)),
            (
                "content",
                json::string(&String::from_utf8_lossy(&self.content)),
            ),
        ])
    }
}

/// What `/config` shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub files: Vec<ConfigFile>,
    /// How many times the config was (re)loaded; 1 after start.
    pub loads: u64,
    pub reloaded_at: String,
    /// Problems met while loading (missing dir, unreadable files).
    pub errors: Vec<String>,
}

impl Snapshot {
    pub fn to_json(&self, dir: &Path) -> String {
        json::object([
            ("dir", json::string(&dir.to_string_lossy())),
            ("loads", self.loads.to_string()),
            ("reloaded_at", json::string(&self.reloaded_at)),
            ("files", json::array(self.files.iter().map(|f| f.to_json()))),
            (
                "errors",
                json::array(self.errors.iter().map(|e| json::string(e))),
            ),
        ])
    }
}

/// Reads every regular file under `dir` (following symlinks), sorted by path.
/// A missing dir is zero files plus an error note, not a failure.
pub fn load(dir: &Path) -> (Vec<ConfigFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => walk(dir, dir, 0, &mut files, &mut errors),
        Ok(_) => errors.push(format!("{} is not a directory", dir.display())),
        Err(e) => errors.push(format!("{}: {e}", dir.display())),
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    (files, errors)
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<ConfigFile>,
    errors: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        errors.push(format!("{}: too deep, skipped", dir.display()));
        return;
    }
    let entries = match read_dir_sorted(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for path in entries {
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => walk(root, &path, depth + 1, files, errors),
            Ok(m) if m.is_file() => match fs::read(&path) {
                Ok(content) => files.push(ConfigFile {
                    path: relative(root, &path),
                    sha256: sha256::hex_digest(&content),
                    content,
                }),
                Err(e) => errors.push(format!("{}: {e}", path.display())),
            },
            Ok(_) => {}
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_nested_files_sorted() {
        let dir = std::env::temp_dir().join(format!("demo-config-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
        fs::write(dir.join("b.conf"), "bee").expect("write");
        fs::write(dir.join("a.conf"), "").expect("write");
        fs::write(dir.join("sub/deeper/c.txt"), [0xff, b'x']).expect("write");
        let (files, errors) = load(&dir);
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.conf", "b.conf", "sub/deeper/c.txt"]);
        assert_eq!(
            files[1].log_line(),
            format!(
                "config: b.conf (3 bytes) sha256={}",
                sha256::hex_digest(b"bee")
            )
        );
        assert!(files[2].to_json().contains("\"content\":\"\u{fffd}x\""));
        fs::remove_dir_all(&dir).expect("cleanup");
        let (files, errors) = load(&dir);
        assert!(files.is_empty());
        assert_eq!(errors.len(), 1);
    }
}
