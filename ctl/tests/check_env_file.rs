//! `berthctl check` reads each spec's env files the way berthd will at
//! apply: a bad line refuses the check naming the service, the field, the
//! file and the line (never a value); a missing file is a warning, as a
//! missing config source is.

use std::process::Command;

#[test]
fn check_reads_env_files_and_never_shows_a_value() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("good.env"), "# db\nDB_HOST=db\n")?;
    std::fs::write(
        dir.path().join("bad.env"),
        "TOKEN=hunter2-secret\nJUST_A_NAME\n",
    )?;
    let spec =
        |env_file: &str| format!("name: web\nimage: x:1\nenv_file: [good.env, {env_file}]\n");
    let run = |file: &str| {
        Command::new(env!("CARGO_BIN_EXE_berthctl"))
            .args(["check", &dir.path().join(file).display().to_string()])
            .env("BERTH_SOCKET", "/nonexistent/berth.sock")
            .output()
    };

    std::fs::write(dir.path().join("bad.yaml"), spec("bad.env"))?;
    let out = run("bad.yaml")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("web: env_file[1]: env_file ") && stderr.contains("bad.env, line 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "a value was shown: {stderr}");

    std::fs::write(dir.path().join("missing.yaml"), spec("gone.env"))?;
    let out = run("missing.yaml")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: web: env_file[1]") && stderr.contains("gone.env"),
        "{stderr}"
    );

    // What berthd would refuse, check refuses: not text, too big, a FIFO.
    std::fs::write(dir.path().join("bin.env"), b"A=\xff\n")?;
    std::fs::write(dir.path().join("big.env"), vec![b'#'; (1 << 20) + 1])?;
    let fifo = dir.path().join("fifo.env");
    let made = Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success());
    for (name, why) in [
        ("bin.env", "not UTF-8"),
        ("big.env", "larger than"),
        ("fifo.env", "not a regular file"),
    ] {
        let file = format!("{name}.yaml");
        std::fs::write(
            dir.path().join(&file),
            format!("name: web\nimage: x:1\nenv_file: {name}\n"),
        )?;
        let out = run(&file)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
    }

    std::fs::write(
        dir.path().join("ok.yaml"),
        "name: web\nimage: x:1\nenv_file: good.env\n",
    )?;
    let out = run("ok.yaml")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
    Ok(())
}
