//! `events.jsonl` is opened without following symlinks, must be a regular
//! file, and is read line by line with a cap per line (issue 29: it was read
//! and appended through symlinks, and loaded whole).

use std::io::Write;
use std::os::unix::fs::symlink;

use std::time::Duration;

use berth_core::event::{Event, EventKind};
use berth_core::store::Store;
use berth_store::FsStore;

fn event(seq: u64) -> Event {
    Event {
        seq,
        at_ms: 10 * seq,
        kind: EventKind::Daemon {
            message: format!("event {seq}"),
        },
    }
}

fn seqs(events: Vec<Event>) -> Vec<u64> {
    events.into_iter().map(|e| e.seq).collect()
}

fn line(seq: u64) -> String {
    serde_json::to_string(&event(seq)).expect("json")
}

/// Runs `f` on a thread and fails the test if it has not returned within
/// 10 s (a FIFO opened for reading would block forever).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the store blocked on the events file")
}

#[test]
fn a_symlinked_event_log_is_refused_not_read_nor_appended_to() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    // The attack: the log points at a file berthd (root) should neither
    // serve nor write to.
    let target = tmp.path().join("shadow");
    std::fs::write(&target, format!("{}\n", line(42))).expect("write target");
    symlink(&target, state.join("events.jsonl")).expect("symlink");

    let store = FsStore::open(&state).expect("open");
    let err = store
        .load_events(100)
        .expect_err("a symlinked log is refused");
    let text = err.to_string();
    assert!(text.contains("events.jsonl"), "names the file: {text}");
    assert!(text.contains("symlink"), "says what it is: {text}");
    assert!(text.contains(&target.display().to_string()), "{text}");
    assert!(text.contains("move it away"), "says what to do: {text}");

    let err = store
        .append_event(&event(1), 100)
        .expect_err("no append through a symlink");
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read target"),
        format!("{}\n", line(42)),
        "the symlink's target is untouched"
    );
}

#[test]
fn a_symlink_to_a_missing_file_is_not_created_through() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let target = tmp.path().join("planted");
    symlink(&target, state.join("events.jsonl")).expect("symlink");
    let store = FsStore::open(&state).expect("open");
    store
        .append_event(&event(1), 100)
        .expect_err("no append through a dangling symlink");
    assert!(!target.exists(), "nothing created where the symlink leads");
}

#[test]
fn a_fifo_or_directory_as_the_event_log_is_refused_without_blocking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        state.join("events.jsonl"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    let store = std::sync::Arc::new(FsStore::open(&state).expect("open"));
    let s = store.clone();
    let err = within_10s(move || s.load_events(100).map(|_| ())).expect_err("a FIFO is refused");
    assert!(
        err.to_string().contains("a FIFO, not a regular file"),
        "{err}"
    );
    let s = store.clone();
    let err = within_10s(move || s.append_event(&event(1), 100)).expect_err("no append to a FIFO");
    assert!(err.to_string().contains("a FIFO"), "{err}");

    std::fs::remove_file(state.join("events.jsonl")).expect("rm fifo");
    std::fs::create_dir(state.join("events.jsonl")).expect("mkdir");
    let err = store.load_events(100).expect_err("a directory is refused");
    assert!(err.to_string().contains("a directory"), "{err}");
}

#[test]
fn an_oversize_line_is_skipped_and_the_lines_around_it_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let mut file = std::fs::File::create(&path).expect("create");
    writeln!(file, "{}", line(1)).expect("write");
    // 16 MiB with no newline: not an event berth wrote.
    let big = vec![b'x'; 16 << 20];
    file.write_all(&big).expect("write");
    writeln!(file).expect("write");
    writeln!(file, "{}", line(2)).expect("write");
    drop(file);

    let store = FsStore::open(tmp.path()).expect("open");
    assert_eq!(seqs(store.load_events(100).expect("load")), [1, 2]);
    // Appending counts the big line as one (3 lines, then 4 = 2 x keep),
    // and compaction at the fifth drops it.
    for seq in 3..=4 {
        store.append_event(&event(seq), 2).expect("append");
    }
    assert_eq!(seqs(store.load_events(100).expect("load")), [3, 4]);
    assert!(
        std::fs::metadata(&path).expect("stat").len() < 4096,
        "compaction dropped the oversize line"
    );
}

#[test]
fn a_long_log_yields_its_newest_events_and_a_torn_tail_is_still_tolerated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let mut text = String::new();
    for seq in 1..=20_000 {
        text.push_str(&line(seq));
        text.push('\n');
    }
    let torn = line(20_001);
    text.push_str(&torn[..torn.len() / 2]);
    std::fs::write(&path, text).expect("write");

    let store = FsStore::open(tmp.path()).expect("open");
    assert_eq!(
        seqs(store.load_events(3).expect("load")),
        [19_998, 19_999, 20_000]
    );
    store.append_event(&event(20_002), 100_000).expect("append");
    assert_eq!(
        seqs(store.load_events(2).expect("load")),
        [20_000, 20_002],
        "the torn line was terminated, not glued to the next event"
    );
}
