//! Every TripleO, paunch and Heat docker-cmd file of `../shared/corpus/`
//! (real files from OpenStack's repositories) imports, and what it gives
//! passes berth's own checks. The corpus sits beside the repository: where
//! it is missing, its test skips outside CI and fails in CI
//! (`berth_prereq`). Its twin runs the same checks over the project's own
//! files in the same layout (`tests/fixtures/import/`), always.

use std::path::{Path, PathBuf};

use berth_core::import::{
    ImageMap, Import, Input, Options, heat_file, paunch_files, tripleo_files,
};
use berth_core::parse::parse_services;
use berth_core::waves_check::check_refs;

fn read(path: &Path) -> Input {
    Input {
        file: path.display().to_string(),
        text: std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    }
}

fn files(dir: &Path, pick: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pick))
        .collect();
    out.sort();
    out
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// What every import must give: specs berth reads back as they are, whose
/// references among themselves hold, written the same way twice.
fn holds(what: &str, import: &Import, command: &str) {
    assert!(!import.services.is_empty(), "{what}: no services");
    for s in &import.services {
        let text = s.file_text(command);
        let back = parse_services("out.yaml", &text).unwrap_or_else(|e| {
            panic!(
                "{what}: {}: berth refuses the output:\n{e}\n{text}",
                s.spec.name
            )
        });
        assert_eq!(back, std::slice::from_ref(&s.spec), "{what}: {text}");
    }
    let specs: Vec<_> = import.services.iter().map(|s| s.spec.clone()).collect();
    let problems = check_refs(&specs);
    assert!(problems.is_empty(), "{what}: {problems:?}");
}

#[test]
fn the_corpus_imports_and_passes_berths_checks() {
    let Some(corpus) = berth_prereq::corpus("") else {
        return;
    };
    let count = import_all(&corpus);
    assert!(count >= 30, "only {count} corpus files imported");
}

#[test]
fn the_projects_own_files_import_and_pass_berths_checks() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
    assert_eq!(import_all(&fixtures), 7);
}

/// Imports every file of `root`'s tripleo/, paunch/ and heat/ the way its
/// shape asks; returns how many files were taken.
fn import_all(root: &Path) -> usize {
    let map = ImageMap::default();
    let opts = Options {
        image_map: &map,
        host_env: &no_env,
    };
    let mut count = 0;
    // TripleO's docker_config blocks: one step's map per file.
    for path in files(&root.join("tripleo"), |n| n.ends_with(".json")) {
        let import = paunch_files(&[read(&path)], &opts)
            .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        holds(&path.display().to_string(), &import, "paunch");
        count += 1;
    }
    // paunch's examples, README snippet and tripleo-ansible's step mapping.
    for path in files(&root.join("paunch"), |n| {
        n.starts_with("examples_")
            || n == "readme_config_format_example.json"
            || n == "tripleo-ansible_container-configs.json"
    }) {
        let import = paunch_files(&[read(&path)], &opts)
            .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        holds(&path.display().to_string(), &import, "paunch");
        count += 1;
    }
    // tripleo-ansible's one-container files.
    for path in files(&root.join("paunch"), |n| {
        n.starts_with("tripleo-ansible_molecule")
    }) {
        let import = tripleo_files(&[read(&path)], &opts)
            .unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        holds(&path.display().to_string(), &import, "tripleo");
        count += 1;
    }
    // Heat docker-cmd documents.
    for path in files(&root.join("heat"), |n| n.contains("docker-cmd_data")) {
        let import =
            heat_file(&read(&path), &opts).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
        holds(&path.display().to_string(), &import, "heat");
        count += 1;
    }
    count
}
