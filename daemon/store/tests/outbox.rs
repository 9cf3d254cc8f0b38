//! The outbox on a real filesystem: order, state changes, permissions, and
//! what a restart after a crash finds.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_core::heat::outbox::{EntryState, NewEntry, due};
use berth_core::heat::{HttpMethod, SignalPlan, SignalTransport, SignalUrl, UrlSignal};
use berth_core::store::StoreError;
use berth_store::{FsOutbox, OUTBOX_DIR, OutboxError, SEQ_FILE};
use serde_json::json;

const URL: &str = "http://192.0.2.1/v1/signal/x?Signature=s3cr3t";

fn new(key: &str, deployment: &str) -> NewEntry {
    NewEntry {
        key: key.into(),
        deployment_id: deployment.into(),
        plan: SignalPlan::Url(UrlSignal {
            transport: SignalTransport::CfnSignal,
            method: HttpMethod::Post,
            url: SignalUrl::new(URL),
        }),
        body: json!({"deploy_status_code": 0, "deploy_stdout": "", "deploy_stderr": ""}),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn append_list_and_files() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    let a = outbox.append(new("d1:aa", "d1"), 1000).expect("append");
    let b = outbox.append(new("d2:bb", "d2"), 1001).expect("append");
    assert_eq!((a.seq, b.seq), (1, 2));
    assert_eq!(a.state, EntryState::Pending);
    assert_eq!(
        (a.attempts, a.next_attempt_ms, a.created_ms),
        (0, 1000, 1000)
    );

    let dir = state.path().join(OUTBOX_DIR);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(names(&dir), ["1.json", "2.json", SEQ_FILE]);
    for n in ["1.json", "2.json", SEQ_FILE] {
        assert_eq!(mode(&dir.join(n)), 0o600, "{n}");
    }
    // The stored entry keeps what is needed to send; the view does not.
    let text = std::fs::read_to_string(dir.join("1.json")).expect("read");
    assert!(text.contains(URL));
    let view = serde_json::to_string(&a.view()).expect("json");
    assert!(!view.contains("s3cr3t"), "{view}");
    assert!(!format!("{a:?}").contains("s3cr3t"));

    let list = outbox.list().expect("list");
    assert_eq!(list.entries, [a.clone(), b]);
    assert!(list.unreadable.is_empty());
    assert_eq!(outbox.get(1).expect("get"), Some(a));
    assert_eq!(outbox.get(9).expect("get"), None);
}

#[test]
fn the_same_key_is_queued_once() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    let a = outbox.append(new("d1:aa", "d1"), 1).expect("append");
    outbox.dead_letter(a.seq, "404").expect("dead");
    let again = outbox.append(new("d1:aa", "d1"), 2).expect("append again");
    assert_eq!(again.seq, a.seq);
    assert_eq!(again.state, EntryState::Dead);
    assert_eq!(outbox.list().expect("list").entries.len(), 1);
}

#[test]
fn attempts_dead_letters_retry_remove_drop() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    let a = outbox.append(new("k1", "d1"), 0).expect("append");
    let e = outbox
        .mark_attempt(a.seq, "connection refused", 2000)
        .expect("mark");
    assert_eq!((e.attempts, e.next_attempt_ms), (1, 2000));
    assert_eq!(e.last_error.as_deref(), Some("connection refused"));
    let e = outbox.mark_attempt(a.seq, "503", 6000).expect("mark");
    assert_eq!(e.attempts, 2);
    assert_eq!(outbox.get(a.seq).expect("get"), Some(e));

    let dead = outbox.dead_letter(a.seq, "HTTP 404").expect("dead");
    assert_eq!(dead.state, EntryState::Dead);
    assert!(matches!(
        outbox.mark_attempt(a.seq, "x", 0),
        Err(OutboxError::WrongState {
            op: "mark_attempt",
            ..
        })
    ));
    assert!(matches!(
        outbox.dead_letter(a.seq, "x"),
        Err(OutboxError::WrongState { .. })
    ));
    let back = outbox.retry(a.seq, 9000).expect("retry");
    assert_eq!(
        (back.state, back.attempts, back.next_attempt_ms),
        (EntryState::Pending, 0, 9000)
    );
    assert_eq!(back.last_error.as_deref(), Some("HTTP 404"));
    assert!(matches!(
        outbox.retry(a.seq, 0),
        Err(OutboxError::WrongState { op: "retry", .. })
    ));
    assert!(matches!(
        outbox.mark_attempt(77, "x", 0),
        Err(OutboxError::NotFound { seq: 77 })
    ));

    assert!(outbox.remove(a.seq).expect("remove"));
    assert!(!outbox.remove(a.seq).expect("remove again"));
    let b = outbox.append(new("k2", "d2"), 0).expect("append");
    outbox.dead_letter(b.seq, "403").expect("dead");
    assert!(outbox.drop_entry(b.seq).expect("drop"));
    assert!(outbox.list().expect("list").entries.is_empty());
}

#[test]
fn per_deployment_order() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    let a1 = outbox.append(new("a1", "a"), 0).expect("append");
    let b1 = outbox.append(new("b1", "b"), 0).expect("append");
    let a2 = outbox.append(new("a2", "a"), 0).expect("append");
    outbox.mark_attempt(a1.seq, "503", 5000).expect("mark");
    let list = outbox.list().expect("list");
    let seqs = |now| {
        due(&list.entries, now)
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(100), [b1.seq], "a2 waits behind a1");
    assert_eq!(seqs(5000), [a1.seq, b1.seq]);
    outbox.remove(a1.seq).expect("remove");
    let list = outbox.list().expect("list");
    assert_eq!(
        due(&list.entries, 0)
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [b1.seq, a2.seq]
    );
}

#[test]
fn reopen_after_a_crash() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = state.path().join(OUTBOX_DIR);
    {
        let outbox = FsOutbox::open(state.path()).expect("open");
        for i in 0..3 {
            outbox
                .append(new(&format!("k{i}"), "d"), i)
                .expect("append");
        }
        outbox.mark_attempt(2, "timeout", 777).expect("mark");
        // No shutdown: the process dies here.
    }
    // What a crash mid-write leaves: a temp file.
    std::fs::write(dir.join(".tmp-0123456789abcdef"), b"{\"seq\": 4, \"ke").expect("write");

    let outbox = FsOutbox::open(state.path()).expect("reopen");
    assert!(!names(&dir).iter().any(|n| n.starts_with(".tmp-")), "swept");
    let list = outbox.list().expect("list");
    assert_eq!(
        list.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(list.entries[1].attempts, 1);
    assert_eq!(list.entries[1].next_attempt_ms, 777);
    assert_eq!(outbox.append(new("k3", "d"), 9).expect("append").seq, 4);

    // Emptied, then restarted: the counter goes on, no seq is reused.
    for seq in 1..=4 {
        outbox.remove(seq).expect("remove");
    }
    drop(outbox);
    let outbox = FsOutbox::open(state.path()).expect("reopen");
    assert_eq!(outbox.append(new("k4", "d"), 9).expect("append").seq, 5);
}

#[test]
fn a_torn_entry_is_reported_and_left_alone() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    outbox.append(new("k1", "d"), 0).expect("append");
    let dir = state.path().join(OUTBOX_DIR);
    let torn = dir.join("7.json");
    std::fs::write(&torn, b"{\"schema_version\": 1, \"seq\": 7, \"ke").expect("write");
    drop(outbox);

    let outbox = FsOutbox::open(state.path()).expect("reopen");
    let list = outbox.list().expect("list");
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.unreadable.len(), 1);
    assert_eq!(list.unreadable[0].seq, 7);
    assert!(matches!(
        outbox.mark_attempt(7, "x", 0),
        Err(OutboxError::Store(StoreError::Corrupt { .. }))
    ));
    // Its seq is not reused, and the file is untouched.
    assert_eq!(outbox.append(new("k2", "d"), 0).expect("append").seq, 8);
    assert_eq!(
        std::fs::read(&torn).expect("read"),
        b"{\"schema_version\": 1, \"seq\": 7, \"ke"
    );
    // An operator may drop it.
    assert!(outbox.drop_entry(7).expect("drop"));
}

#[test]
fn a_gap_from_a_crash_between_counter_and_entry_is_fine() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    outbox.append(new("k1", "d"), 0).expect("append");
    drop(outbox);
    // The counter was advanced, the entry never written.
    let dir = state.path().join(OUTBOX_DIR);
    std::fs::write(dir.join(SEQ_FILE), b"{\"next_seq\": 10}\n").expect("write");
    let outbox = FsOutbox::open(state.path()).expect("reopen");
    assert_eq!(outbox.append(new("k2", "d"), 0).expect("append").seq, 10);
}

#[test]
fn a_corrupt_counter_is_refused_not_reset() {
    let state = tempfile::tempdir().expect("tempdir");
    drop(FsOutbox::open(state.path()).expect("open"));
    let seq_path = state.path().join(OUTBOX_DIR).join(SEQ_FILE);
    std::fs::write(&seq_path, b"{\"next_").expect("write");
    let err = FsOutbox::open(state.path()).expect_err("corrupt counter");
    assert!(err.to_string().contains(SEQ_FILE), "{err}");
    assert_eq!(std::fs::read(&seq_path).expect("read"), b"{\"next_");
}

/// An entry replaced by a symlink (to a file outside the state dir that
/// parses as an entry) is reported unreadable, not followed, and left as is.
#[test]
fn a_symlinked_entry_is_reported_not_followed() {
    let state = tempfile::tempdir().expect("tempdir");
    let outbox = FsOutbox::open(state.path()).expect("open");
    outbox.append(new("k1", "d"), 0).expect("append");
    let dir = state.path().join(OUTBOX_DIR);
    let entry = dir.join("1.json");
    let outside = state.path().join("outside.json");
    std::fs::rename(&entry, &outside).expect("move");
    std::os::unix::fs::symlink(&outside, &entry).expect("symlink");

    let list = outbox.list().expect("list");
    assert!(list.entries.is_empty(), "{:?}", list.entries);
    assert_eq!(list.unreadable.len(), 1);
    assert!(
        list.unreadable[0].reason.contains("is a symlink"),
        "{:?}",
        list.unreadable[0]
    );
    assert!(matches!(
        outbox.mark_attempt(1, "x", 0),
        Err(OutboxError::Store(StoreError::Corrupt { .. }))
    ));
    assert!(
        std::fs::symlink_metadata(&entry)
            .expect("there")
            .file_type()
            .is_symlink()
    );
}
