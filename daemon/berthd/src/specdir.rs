//! Reading the spec drop-in directory.

use std::path::Path;

use berth_agent::SpecFile;
use berth_core::hash::sha256_hex;
use berth_core::parse::parse_services;

/// Every `*.yaml`, `*.yml` and `*.json` file in `dir` (sorted, not
/// recursive), parsed, with relative build/load paths resolved against
/// `dir`. A missing dir is no files; other problems are returned as lines.
pub fn read(dir: &Path) -> (Vec<SpecFile>, Vec<String>) {
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), problems),
        Err(e) => {
            problems.push(format!("cannot read spec_dir {}: {e}", dir.display()));
            return (Vec::new(), problems);
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("cannot read {shown}: {e}"));
                continue;
            }
        };
        let content_hash = sha256_hex(&bytes);
        let services = match std::str::from_utf8(&bytes) {
            Err(_) => Err(format!("{shown}: not UTF-8 text")),
            Ok(text) => parse_services(&shown, text)
                .map(|mut specs| {
                    for s in &mut specs {
                        s.resolve_relative_paths(dir);
                    }
                    specs
                })
                .map_err(|e| e.to_string()),
        };
        files.push(SpecFile {
            path: shown,
            content_hash,
            services,
        });
    }
    (files, problems)
}
