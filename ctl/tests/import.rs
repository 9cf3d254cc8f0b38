//! `berthctl import` end to end, the binary on real files: what it writes
//! passes `berthctl check`, writing twice gives the same bytes, `--check`
//! writes nothing, and a file it did not write is never replaced.
//! The corpus (`../shared/corpus`, via `berth_prereq`) and the project's own
//! fixtures (`daemon/core/tests/fixtures/import/`) both go through it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn berthctl(args: &[&str]) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .args(args)
        // No daemon is asked: a socket that is not there proves it.
        .env("BERTH_SOCKET", "/nonexistent/berth.sock")
        .env_remove("TRIPLEO_MINOR_UPDATE")
        .output()
}

fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemon/core/tests/fixtures/import")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every file in `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            std::fs::read(e.path())?,
        ));
    }
    out.sort();
    Ok(out)
}

/// Imports with `args` into a fresh dir, checks it with `berthctl check`,
/// imports again over it and compares the bytes. Returns the dir.
fn import_checks_and_repeats(
    args: &[&str],
) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let out = tempfile::tempdir()?;
    let o = s(out.path());
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-o", &o]);
    let first = berthctl(&full)?;
    assert!(first.status.success(), "{args:?}: {}", shown(&first));
    let before = snapshot(out.path())?;
    assert!(!before.is_empty(), "{args:?} wrote nothing");
    let check = berthctl(&["check", &o])?;
    assert!(
        check.status.success(),
        "{args:?}: berthctl check refuses the output: {}",
        shown(&check)
    );
    let again = berthctl(&full)?;
    assert!(again.status.success(), "{args:?}: {}", shown(&again));
    assert_eq!(
        before,
        snapshot(out.path())?,
        "{args:?}: not the same bytes twice"
    );
    Ok(out)
}

#[test]
fn a_tripleo_tree_becomes_service_files_berth_checks() -> TestResult {
    let tree = fixtures().join("tree");
    let out = import_checks_and_repeats(&["import", "tripleo", &s(&tree)])?;
    let names: Vec<String> = snapshot(out.path())?.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["haproxy.yaml", "mysql.yaml", "mysql_init.yaml"]);
    let mysql = std::fs::read_to_string(out.path().join("mysql.yaml"))?;
    assert!(
        mysql.starts_with("# Imported by `berthctl import tripleo` from step_2/hashed-mysql.json"),
        "{mysql}"
    );
    assert!(mysql.contains("TRIPLEO_CONFIG_HASH dropped"), "{mysql}");
    assert!(
        !mysql.contains("abc123"),
        "the hash itself is gone: {mysql}"
    );
    assert!(
        mysql.contains("service: mysql_init\n    condition: completed"),
        "{mysql}"
    );
    Ok(())
}

#[test]
fn warnings_name_file_container_and_key_and_land_in_the_file() -> TestResult {
    let file = fixtures().join("tripleo/glance_api-step_4.json");
    let out = tempfile::tempdir()?;
    let run = berthctl(&["import", "paunch", &s(&file), "-o", &s(out.path())])?;
    assert!(run.status.success(), "{}", shown(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let want = format!(
        "warning: {}:21:5: container glance_api_db_sync: config_volume: not imported",
        s(&file)
    );
    assert!(stderr.contains(&want), "{stderr}");
    let sync = std::fs::read_to_string(out.path().join("glance_api_db_sync.yaml"))?;
    assert!(
        sync.contains("# warning: config_volume: not imported"),
        "{sync}"
    );
    Ok(())
}

#[test]
fn check_prints_and_writes_nothing() -> TestResult {
    let file = fixtures().join("heat/hook-docker-cmd_data.json");
    let out = tempfile::tempdir()?;
    let target = out.path().join("new");
    let run = berthctl(&["import", "heat", &s(&file), "--check", "-o", &s(&target)])?;
    assert!(run.status.success(), "{}", shown(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("--- {}", s(&target.join("db.yaml")))),
        "{stdout}"
    );
    assert!(stdout.contains("deploy_stack_id: demo-stack"), "{stdout}");
    assert!(
        stdout.ends_with("check: 2 services, 2 warnings; nothing written\n"),
        "{stdout}"
    );
    assert!(!target.exists(), "--check wrote {}", target.display());
    // The transport's capability URL is never written or shown.
    assert!(!stdout.contains("Signature"), "{stdout}");
    assert!(!String::from_utf8_lossy(&run.stderr).contains("Signature"));

    let json = berthctl(&["--json", "import", "heat", &s(&file), "--check"])?;
    assert!(json.status.success(), "{}", shown(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(v["written"], false);
    assert_eq!(v["services"][1]["name"], "web");
    assert_eq!(v["services"][1]["spec"]["depends_on"][0]["service"], "db");
    Ok(())
}

#[test]
fn a_file_import_did_not_write_is_never_replaced() -> TestResult {
    let file = fixtures().join("paunch/readme_config_format_example.json");
    let out = tempfile::tempdir()?;
    let mine = out.path().join("first.yaml");
    std::fs::write(&mine, "name: first\nimage: mine:1\n")?;
    let run = berthctl(&["import", "paunch", &s(&file), "-o", &s(out.path())])?;
    assert_eq!(run.status.code(), Some(2), "{}", shown(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&s(&mine)) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&mine)?,
        "name: first\nimage: mine:1\n"
    );
    assert!(
        !out.path().join("second.yaml").exists(),
        "nothing is written"
    );

    let forced = berthctl(&[
        "import",
        "paunch",
        &s(&file),
        "-o",
        &s(out.path()),
        "--force",
    ])?;
    assert!(forced.status.success(), "{}", shown(&forced));
    assert!(std::fs::read_to_string(&mine)?.starts_with("# Imported by"));

    // Nor is a symlink, or a file that is not text.
    let link = out.path().join("second.yaml");
    std::fs::remove_file(&link)?;
    std::os::unix::fs::symlink("/nonexistent/target", &link)?;
    let binary = out.path().join("first.yaml");
    std::fs::write(&binary, b"\xff\xfe not text")?;
    let run = berthctl(&["import", "paunch", &s(&file), "-o", &s(out.path())])?;
    assert_eq!(run.status.code(), Some(2), "{}", shown(&run));
    assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
    assert_eq!(std::fs::read(&binary)?, b"\xff\xfe not text");
    let forced = berthctl(&[
        "import",
        "paunch",
        &s(&file),
        "-o",
        &s(out.path()),
        "--force",
    ])?;
    assert!(forced.status.success(), "{}", shown(&forced));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&binary)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a written spec may hold secrets");

    // A file an earlier import wrote for a container this one lacks stays,
    // and the operator is told.
    let other = fixtures().join("paunch/examples_demo.yml");
    let again = berthctl(&["import", "paunch", &s(&other), "-o", &s(out.path())])?;
    assert!(again.status.success(), "{}", shown(&again));
    let stderr = String::from_utf8_lossy(&again.stderr);
    for stale in ["first.yaml", "second.yaml"] {
        let path = s(&out.path().join(stale));
        assert!(
            stderr.contains(&format!("warning: {path} was written by an earlier import")),
            "{stderr}"
        );
        assert!(out.path().join(stale).exists());
    }
    Ok(())
}

#[test]
fn bad_input_exits_2_naming_the_place_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("step_1.json");
    std::fs::write(&good, r#"{"web": {"image": "x"}}"#)?;
    let bad = dir.path().join("step_2.json");
    std::fs::write(
        &bad,
        "{\"db\": {\n  \"image\": \"x\",\n  \"restart\": \"sometimes\"}}",
    )?;
    let out = dir.path().join("out");
    let run = berthctl(&["import", "paunch", &s(&good), &s(&bad), "-o", &s(&out)])?;
    assert_eq!(run.status.code(), Some(2), "{}", shown(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:14: container db: restart: unknown restart policy",
            s(&bad)
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing written"), "{stderr}");
    assert!(!out.exists());

    let mapped = berthctl(&[
        "import",
        "paunch",
        &s(&good),
        "--check",
        "--image-map",
        "nope",
    ])?;
    assert_eq!(mapped.status.code(), Some(2), "{}", shown(&mapped));
    assert!(String::from_utf8_lossy(&mapped.stderr).contains("FROM=TO"));
    Ok(())
}

#[test]
fn the_image_map_replaces_every_image() -> TestResult {
    let tree = fixtures().join("tripleo/glance_api-step_4.json");
    let out = import_checks_and_repeats(&[
        "import",
        "paunch",
        &s(&tree),
        "--image-map",
        "*=berth-demo:latest",
    ])?;
    for (name, bytes) in snapshot(out.path())? {
        let text = String::from_utf8(bytes)?;
        assert!(
            text.contains("\nimage: berth-demo:latest\n"),
            "{name}: {text}"
        );
    }
    Ok(())
}

/// Every corpus file the issue names imports through the binary, and its
/// output passes `berthctl check`.
#[test]
fn the_corpus_imports_and_berth_checks_it() -> TestResult {
    let Some(corpus) = berth_prereq::corpus("") else {
        return Ok(());
    };
    let list = |sub: &str, pick: &dyn Fn(&str) -> bool| -> Result<Vec<PathBuf>, std::io::Error> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(corpus.join(sub))? {
            let p = e?.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(pick) {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    };
    let mut count = 0;
    for p in list("tripleo", &|n| n.ends_with(".json"))? {
        import_checks_and_repeats(&["import", "paunch", &s(&p)])?;
        count += 1;
    }
    for p in list("paunch", &|n| {
        n.starts_with("examples_")
            || n == "readme_config_format_example.json"
            || n == "tripleo-ansible_container-configs.json"
    })? {
        import_checks_and_repeats(&["import", "paunch", &s(&p)])?;
        count += 1;
    }
    for p in list("paunch", &|n| n.starts_with("tripleo-ansible_molecule"))? {
        import_checks_and_repeats(&["import", "tripleo", &s(&p)])?;
        count += 1;
    }
    for p in list("heat", &|n| n.contains("docker-cmd_data"))? {
        import_checks_and_repeats(&["import", "heat", &s(&p)])?;
        count += 1;
    }
    assert!(count >= 30, "only {count} corpus files");
    Ok(())
}
