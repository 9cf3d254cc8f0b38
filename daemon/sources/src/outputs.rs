//! A task's outputs directory: made ready before the task's create, and
//! the declared outputs the task wrote, read after it exited.
//!
//! The outputs dir is written by the task (a container, perhaps running as
//! root) and read by berthd as root on the host: nothing in it is trusted.
//! Each output is opened relative to the dir's fd with O_NOFOLLOW (a symlink
//! to /etc/shadow is refused, not followed) and O_NONBLOCK (a FIFO cannot
//! block the open), must be a regular file (lstat before the open, so no
//! device is opened; fstat after it, in case it was swapped meanwhile), and
//! is read with a bounded read. Everything here blocks: the agent runs it on
//! a blocking thread, under a timeout, so nothing in the dir can stall the
//! runtime's workers.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use berth_core::record::OUTPUT_CAP;

/// Empties (or creates) a task's outputs dir and makes it writable by any
/// user (the task may run as any user).
pub fn prepare_outputs_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    // The task may run as any user; the state dir above is 0700, so only root
    // on the host can reach this directory anyway.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// Writes a deployment's inputs into `dir` (berth's own, under the state
/// dir): made afresh, one file per input (each written to a temp name,
/// synced and renamed, so a container never sees half a value), 0755/0644
/// so that a container running as any user reads them.
pub fn write_inputs_dir(
    dir: &Path,
    values: &std::collections::BTreeMap<String, String>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    if let Some(name) = values
        .keys()
        .find(|n| n.is_empty() || n.starts_with('.') || n.contains(['/', '\0']))
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("input {name:?} is not a plain file name"),
        ));
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    // Files of inputs the deployment no longer has go.
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !values.contains_key(name.to_string_lossy().as_ref()) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for (name, value) in values {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(value.as_bytes())?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The most all of a task's declared outputs hold together (each one holds
/// at most [`OUTPUT_CAP`]): a spec may declare thousands, and each one's
/// text is kept in memory and in the record.
pub const DECLARED_TOTAL_CAP: usize = 4 * OUTPUT_CAP;

/// Why one output was not read whole.
enum Refusal {
    /// Not there: left out of the record.
    Missing,
    /// Recorded as `[berth: output <name> refused: <why>]`.
    Refused(String),
}

/// The declared outputs `names` found in `dir` (see
/// [`berth_core::files::Files::read_outputs`]), on the calling thread: it
/// blocks, run it off the async workers.
pub fn read_outputs(dir: &Path, names: &[String]) -> BTreeMap<String, String> {
    let mut declared = BTreeMap::new();
    let dirfd = match rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        // The task never got its dir (or it was removed): no outputs.
        Err(rustix::io::Errno::NOENT) => return declared,
        Err(e) => {
            let why = match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                    "it is a symlink or not a directory".to_string()
                }
                e => std::io::Error::from(e).to_string(),
            };
            for name in names {
                let note = format!(
                    "[berth: output {name} not read: cannot open the outputs dir {}: {why}]",
                    dir.display()
                );
                declared.insert(name.clone(), note);
            }
            return declared;
        }
    };
    let mut left = DECLARED_TOTAL_CAP;
    for name in names {
        if left == 0 {
            let note = format!(
                "[berth: output {name} not read: the declared outputs already hold {} MiB]",
                DECLARED_TOTAL_CAP >> 20
            );
            declared.insert(name.clone(), note);
            continue;
        }
        let limit = left.min(OUTPUT_CAP);
        match read_output(&dirfd, name, limit) {
            Ok((mut text, truncated)) => {
                if truncated {
                    text.push_str(&format!(
                        "\n[berth: output {name} truncated at {}]",
                        size(limit)
                    ));
                }
                left = left.saturating_sub(text.len());
                declared.insert(name.clone(), text);
            }
            Err(Refusal::Missing) => {}
            Err(Refusal::Refused(why)) => {
                declared.insert(
                    name.clone(),
                    format!("[berth: output {name} refused: {why}]"),
                );
            }
        }
    }
    declared
}

/// One output: its text (at most `limit` bytes) and whether it was cut.
fn read_output(dirfd: &OwnedFd, name: &str, limit: usize) -> Result<(String, bool), Refusal> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    use rustix::io::Errno;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Refusal::Refused("not a plain file name".into()));
    }
    let io = |e: Errno| Refusal::Refused(format!("cannot read it: {}", std::io::Error::from(e)));
    // Before the open, so that no device (nor FIFO) is even opened.
    match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if kind != rustix::fs::FileType::RegularFile {
                return Err(refused_kind(dirfd, name, kind));
            }
        }
        Err(Errno::NOENT) => return Err(Refusal::Missing),
        Err(e) => return Err(io(e)),
    }
    let fd = match rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Err(Refusal::Missing),
        // Swapped for a symlink since the lstat.
        Err(Errno::LOOP) => return Err(Refusal::Refused("a symlink".into())),
        Err(e) => return Err(io(e)),
    };
    let file = std::fs::File::from(fd);
    // Again on what was opened: it may have been swapped since the lstat.
    let kind = file
        .metadata()
        .map_err(|e| Refusal::Refused(format!("cannot read it: {e}")))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(Refusal::Refused(what.into()));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Refusal::Refused(format!("cannot read it: {e}")))?;
    let mut truncated = bytes.len() > limit;
    bytes.truncate(limit);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    // Invalid UTF-8 became U+FFFD, which is longer.
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    Ok((text, truncated))
}

fn refused_kind(dirfd: &OwnedFd, name: &str, kind: rustix::fs::FileType) -> Refusal {
    use rustix::fs::FileType;
    let what = match kind {
        FileType::Symlink => {
            return Refusal::Refused(match rustix::fs::readlinkat(dirfd, name, Vec::new()) {
                Ok(target) => format!("a symlink (to {})", target.to_string_lossy()),
                Err(_) => "a symlink".into(),
            });
        }
        FileType::Fifo => "a FIFO",
        FileType::Directory => "a directory",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a regular file",
    };
    Refusal::Refused(what.into())
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn inputs_are_written_whole_readable_by_anyone_and_replace_what_was_there() {
        use std::collections::BTreeMap;
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("inputs/api/g3");
        let values = BTreeMap::from([
            ("release".to_string(), "2026.2".to_string()),
            ("schema_version".to_string(), "42\n".to_string()),
        ]);
        write_inputs_dir(&dir, &values).expect("written");
        for (name, value) in &values {
            assert_eq!(
                &std::fs::read_to_string(dir.join(name)).expect("read"),
                value
            );
            let mode = std::fs::metadata(dir.join(name))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o644, "{name}");
        }
        let mode = std::fs::metadata(&dir).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Written again with one input fewer: that file goes, no temp stays.
        let fewer = BTreeMap::from([("release".to_string(), "2026.3".to_string())]);
        write_inputs_dir(&dir, &fewer).expect("written again");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["release"]);
        assert_eq!(
            std::fs::read_to_string(dir.join("release")).expect("read"),
            "2026.3"
        );
        // A name that is not a plain file name writes nothing outside.
        let bad = BTreeMap::from([("../escape".to_string(), "x".to_string())]);
        let e = write_inputs_dir(&dir, &bad).expect_err("refused");
        assert!(e.to_string().contains("not a plain file name"), "{e}");
        assert!(!tmp.path().join("inputs/api/escape").exists());
        assert!(dir.join("release").exists(), "nothing was touched");
    }

    /// An outputs dir holding `setup`'s files, and the host secret a task
    /// would like to read.
    struct Outs {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        secret: PathBuf,
    }

    const SECRET: &str = "root:$6$the-host-secret:19000:0:99999:7:::";

    fn outs() -> Outs {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("outputs");
        std::fs::create_dir(&dir).expect("mkdir");
        let secret = tmp.path().join("shadow");
        std::fs::write(&secret, SECRET).expect("write");
        Outs {
            _tmp: tmp,
            dir,
            secret,
        }
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .expect("mkfifo");
    }

    /// The blocking reader on a thread of its own: a regression that blocks
    /// (a FIFO's open waits for a writer) fails after a generous bound
    /// instead of hanging the test run.
    fn read(dir: &Path, names: &[&str]) -> BTreeMap<String, String> {
        let dir = dir.to_path_buf();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_outputs(&dir, &names));
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the outputs reader returns instead of blocking")
    }

    #[test]
    fn a_normal_output_is_read_whole_and_a_missing_one_left_out() {
        let o = outs();
        std::fs::write(o.dir.join("result"), "42\n").expect("write");
        let got = read(&o.dir, &["result", "absent"]);
        assert_eq!(got.get("result").map(String::as_str), Some("42\n"));
        assert!(!got.contains_key("absent"), "{got:?}");
    }

    /// Attack 1: `ln -s /etc/shadow /berth/outputs/shadow`.
    #[test]
    fn a_symlink_to_a_file_outside_is_refused_not_followed() {
        let o = outs();
        std::os::unix::fs::symlink(&o.secret, o.dir.join("shadow")).expect("symlink");
        let got = read(&o.dir, &["shadow"]);
        let note = &got["shadow"];
        assert!(!note.contains("the-host-secret"), "{note}");
        assert!(
            note.starts_with("[berth: output shadow refused: a symlink"),
            "{note}"
        );
    }

    /// Attack 2: `mkfifo /berth/outputs/result`. Refused at once, with no
    /// writer ever coming.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let o = outs();
        mkfifo(&o.dir.join("result"));
        let got = read(&o.dir, &["result"]);
        assert_eq!(got["result"], "[berth: output result refused: a FIFO]");
    }

    /// Attack 2 (variant): a symlink to /dev/zero would grow berthd's memory
    /// without bound if followed.
    #[test]
    fn a_symlink_to_dev_zero_is_refused() {
        let o = outs();
        std::os::unix::fs::symlink("/dev/zero", o.dir.join("zero")).expect("symlink");
        let got = read(&o.dir, &["zero"]);
        assert_eq!(
            got["zero"],
            "[berth: output zero refused: a symlink (to /dev/zero)]"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let o = outs();
        std::fs::create_dir(o.dir.join("sub")).expect("mkdir");
        let got = read(&o.dir, &["sub"]);
        assert_eq!(got["sub"], "[berth: output sub refused: a directory]");
    }

    /// A symlink swapped in after the lstat is still refused by the open.
    #[test]
    fn the_open_itself_does_not_follow_a_symlink() {
        let o = outs();
        std::os::unix::fs::symlink(&o.secret, o.dir.join("shadow")).expect("symlink");
        let dirfd = rustix::fs::open(
            &o.dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .expect("open");
        // What read_output does after its lstat.
        let opened = rustix::fs::openat(
            &dirfd,
            "shadow",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        );
        assert_eq!(opened.err(), Some(rustix::io::Errno::LOOP));
    }

    #[test]
    fn an_oversize_output_is_cut_at_the_cap_with_a_note() {
        let o = outs();
        let f = std::fs::File::create(o.dir.join("big")).expect("create");
        // Sparse: 1 GiB that reads as zeros, never written.
        f.set_len(1 << 30).expect("set_len");
        let got = read(&o.dir, &["big"]);
        let text = &got["big"];
        let note = "\n[berth: output big truncated at 1 MiB]";
        assert!(text.ends_with(note), "{}", &text[text.len() - 60..]);
        assert_eq!(text.len(), OUTPUT_CAP + note.len());
    }

    /// Many declared outputs cannot add up past the total cap.
    #[test]
    fn the_declared_outputs_together_are_capped() {
        let o = outs();
        let names: Vec<String> = (0..8).map(|i| format!("o{i}")).collect();
        for n in &names {
            std::fs::write(o.dir.join(n), vec![b'x'; OUTPUT_CAP]).expect("write");
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = read(&o.dir, &refs);
        let total: usize = got.values().map(String::len).sum();
        assert!(total <= DECLARED_TOTAL_CAP + 4096, "{total}");
        assert_eq!(got["o0"].len(), OUTPUT_CAP);
        assert!(
            got["o7"].contains("not read: the declared outputs already hold 4 MiB"),
            "{}",
            got["o7"]
        );
    }

    #[test]
    fn a_symlinked_outputs_dir_is_not_followed() {
        let o = outs();
        std::fs::write(o.dir.join("result"), "42").expect("write");
        let link = o.dir.with_file_name("link");
        std::os::unix::fs::symlink(&o.dir, &link).expect("symlink");
        let got = read(&link, &["result"]);
        assert!(
            got["result"].contains("it is a symlink or not a directory"),
            "{got:?}"
        );
    }

    /// What the agent's collect job records for a dir holding every attack
    /// at once: notes, never the target's content, and the fine output.
    #[test]
    fn one_read_of_every_attack_records_refusals_and_reads_the_rest() {
        let o = outs();
        std::os::unix::fs::symlink(&o.secret, o.dir.join("shadow")).expect("symlink");
        mkfifo(&o.dir.join("result"));
        std::fs::write(o.dir.join("fine"), "ok").expect("write");
        let got = read(&o.dir, &["shadow", "result", "fine"]);
        let all: String = got.values().cloned().collect();
        assert!(!all.contains("the-host-secret"), "{got:?}");
        assert!(
            got["shadow"].starts_with("[berth: output shadow refused: a symlink"),
            "{got:?}"
        );
        assert_eq!(got["result"], "[berth: output result refused: a FIFO]");
        assert_eq!(got["fine"], "ok");
    }

    #[test]
    fn preparing_empties_the_dir_and_opens_it_to_any_user() {
        use std::os::unix::fs::PermissionsExt;
        let o = outs();
        std::fs::write(o.dir.join("stale"), "from the last run").expect("write");
        prepare_outputs_dir(&o.dir).expect("prepare");
        assert_eq!(std::fs::read_dir(&o.dir).expect("ls").count(), 0);
        let mode = std::fs::metadata(&o.dir)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777);
        let fresh = o.dir.join("new");
        prepare_outputs_dir(&fresh).expect("prepare a dir not there yet");
        assert!(fresh.is_dir());
    }
}
