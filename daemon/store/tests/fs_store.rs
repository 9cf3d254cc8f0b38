//! `FsStore` against a real directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_core::event::{Event, EventKind};
use berth_core::record::{Deployment, RECORD_SCHEMA_VERSION, Status};
use berth_core::store::{LoadedService, META_SCHEMA_VERSION, ServiceMeta, Store, StoreError};
use berth_store::{Created, FsStore, create_atomic, write_atomic};

fn record(service: &str, generation: u64) -> Deployment {
    Deployment {
        schema_version: RECORD_SCHEMA_VERSION,
        id: Deployment::make_id(service, generation),
        service: service.to_string(),
        generation,
        status: Status::Pending,
        created_at_ms: 1_000 + generation,
        updated_at_ms: 1_000 + generation,
        ..Default::default()
    }
}

fn meta(service: &str, generation: u64) -> ServiceMeta {
    ServiceMeta {
        schema_version: META_SCHEMA_VERSION,
        service: service.to_string(),
        generation,
        target_generation: generation,
        ..Default::default()
    }
}

fn event(seq: u64) -> Event {
    Event {
        seq,
        at_ms: 10 * seq,
        kind: EventKind::Daemon {
            message: format!("event {seq}"),
        },
    }
}

/// A store in a fresh temp dir, with `service` committed at generations
/// `1..=n` (the newest current).
fn store_with(service: &str, n: u64) -> (tempfile::TempDir, PathBuf, FsStore) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let store = FsStore::open(&state).expect("open");
    for g in 1..=n {
        store.save_record(&record(service, g)).expect("save record");
        store.save_meta(&meta(service, g)).expect("save meta");
    }
    (tmp, state, store)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

fn only_ok(loaded: Vec<LoadedService>) -> Vec<(ServiceMeta, Deployment)> {
    loaded
        .into_iter()
        .map(|l| match l {
            LoadedService::Ok { meta, current } => (meta, *current),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn unreadable(loaded: &[LoadedService], name: &str) -> (String, String) {
    loaded
        .iter()
        .find_map(|l| match l {
            LoadedService::Unreadable {
                service,
                path,
                error,
            } if service == name => Some((path.clone(), error.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} is not unreadable in {loaded:?}"))
}

fn generations(history: &[Deployment]) -> Vec<u64> {
    history.iter().map(|d| d.generation).collect()
}

#[test]
fn round_trip_history_prune_and_delete() {
    let (_tmp, state, store) = store_with("web", 5);
    store.save_record(&record("api", 1)).expect("save");
    store.save_meta(&meta("api", 1)).expect("save");

    // Status moves rewrite the same generation.
    let mut current = record("web", 5);
    current.status = Status::Complete;
    current.status_reason = "healthy".into();
    store.save_record(&current).expect("rewrite");

    // A fresh store over the same dir sees everything.
    let store = FsStore::open(&state).expect("reopen");
    let loaded = only_ok(store.load().expect("load"));
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].0, meta("api", 1));
    assert_eq!(loaded[1].0, meta("web", 5));
    assert_eq!(loaded[1].1, current);

    assert_eq!(
        generations(&store.history("web", usize::MAX).expect("history")),
        [5, 4, 3, 2, 1]
    );
    assert_eq!(
        generations(&store.history("web", 2).expect("history")),
        [5, 4]
    );
    assert!(store.history("web", 0).expect("history").is_empty());
    assert!(store.history("nope", 10).expect("history").is_empty());
    assert_eq!(
        store.record("web", 3).expect("record"),
        Some(record("web", 3))
    );
    assert_eq!(store.record("web", 42).expect("record"), None);

    // Prune keeps the newest, and never the generations current.json names.
    let mut m = meta("web", 5);
    m.target_generation = 2;
    store.save_meta(&m).expect("save meta");
    store.prune("web", 2).expect("prune");
    assert_eq!(
        generations(&store.history("web", usize::MAX).expect("history")),
        [5, 4, 2]
    );
    store.prune("web", 0).expect("prune");
    assert_eq!(
        generations(&store.history("web", usize::MAX).expect("history")),
        [5, 2]
    );

    store.delete_service("web").expect("delete");
    store.delete_service("web").expect("deleting twice is fine");
    assert!(!state.join("services/web").exists());
    let loaded = only_ok(store.load().expect("load"));
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].0.service, "api");
    let leftovers: Vec<_> = std::fs::read_dir(state.join("services"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["api"]);
}

#[test]
fn permissions_are_private() {
    let (_tmp, state, store) = store_with("web", 1);
    store.append_event(&event(1), 10).expect("append");
    assert_eq!(mode(&state), 0o700);
    for dir in ["services", "services/web", "services/web/history"] {
        assert_eq!(mode(&state.join(dir)), 0o700, "{dir}");
    }
    for file in [
        "services/web/current.json",
        "services/web/history/1.json",
        "events.jsonl",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
}

#[test]
fn a_loose_state_dir_is_tightened() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    FsStore::open(&state).expect("open");
    assert_eq!(mode(&state), 0o700);
}

#[test]
fn a_file_as_state_dir_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    std::fs::write(&state, b"").expect("write");
    let err = FsStore::open(&state).expect_err("not a dir");
    assert!(err.to_string().contains(&*state.to_string_lossy()), "{err}");
}

#[test]
fn invalid_service_names_never_become_paths() {
    let (_tmp, state, store) = store_with("web", 1);
    for bad in ["../web", "..", "", "a/b", "Web", "/etc", ".deleted-web"] {
        let mut r = record("web", 1);
        r.service = bad.to_string();
        assert!(
            matches!(store.save_record(&r), Err(StoreError::InvalidName { .. })),
            "{bad:?}"
        );
        let mut m = meta("web", 1);
        m.service = bad.to_string();
        assert!(matches!(
            store.save_meta(&m),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.history(bad, 1),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.record(bad, 1),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.prune(bad, 1),
            Err(StoreError::InvalidName { .. })
        ));
        assert!(matches!(
            store.delete_service(bad),
            Err(StoreError::InvalidName { .. })
        ));
    }
    assert!(state.join("services/web/current.json").exists());
}

/// Damages `file` under `services/web/` and checks load reports it, names
/// the file, says `want`, and leaves the file byte for byte as it was.
fn assert_unreadable_after(file: &str, content: &[u8], want: &str) {
    let (_tmp, state, store) = store_with("web", 2);
    store.save_record(&record("api", 1)).expect("save");
    store.save_meta(&meta("api", 1)).expect("save");
    let path = state.join("services/web").join(file);
    std::fs::write(&path, content).expect("damage");

    let loaded = store.load().expect("load");
    let (shown, error) = unreadable(&loaded, "web");
    assert_eq!(shown, path.display().to_string());
    assert!(error.contains(want), "{error:?} lacks {want:?}");
    assert_eq!(std::fs::read(&path).expect("read"), content, "left as is");
    // The other service is unaffected.
    assert!(
        loaded
            .iter()
            .any(|l| matches!(l, LoadedService::Ok { meta, .. } if meta.service == "api"))
    );
    // And a second load says the same.
    let again = store.load().expect("load");
    assert_eq!(unreadable(&again, "web"), (shown, error));
}

#[test]
fn a_torn_current_record_is_reported_and_left_byte_identical() {
    let (_tmp, state, store) = store_with("web", 2);
    let path = state.join("services/web/history/2.json");
    let full = std::fs::read(&path).expect("read");
    let half = &full[..full.len() / 2];
    std::fs::write(&path, half).expect("truncate");

    let loaded = store.load().expect("load");
    let (shown, error) = unreadable(&loaded, "web");
    assert_eq!(shown, path.display().to_string());
    assert!(error.contains("truncated JSON"), "{error}");
    assert!(error.contains("line "), "{error}");
    assert!(error.contains("column "), "{error}");
    assert_eq!(std::fs::read(&path).expect("read"), half);

    // Reading it directly is an error, not a silent default.
    assert!(matches!(
        store.record("web", 2),
        Err(StoreError::Corrupt { .. })
    ));
    // History skips it.
    assert_eq!(
        generations(&store.history("web", 10).expect("history")),
        [1]
    );
}

#[test]
fn a_torn_current_json_is_reported() {
    let (_tmp, state, _store) = store_with("web", 1);
    let full = std::fs::read(state.join("services/web/current.json")).expect("read");
    assert_unreadable_after(
        "current.json",
        &full[..full.len() / 2],
        "truncated JSON, EOF while parsing",
    );
}

#[test]
fn garbage_is_reported() {
    assert_unreadable_after(
        "current.json",
        b"\x00\x01garbage",
        "not JSON: expected value at line 1 column 1",
    );
    assert_unreadable_after("history/2.json", b"not json at all", "not JSON");
}

#[test]
fn a_foreign_json_object_is_reported() {
    assert_unreadable_after(
        "current.json",
        br#"{"name": "web", "replicas": 3}"#,
        "without a `service` field",
    );
    assert_unreadable_after(
        "history/2.json",
        br#"{"service": "web"}"#,
        "without a `generation` field",
    );
    assert_unreadable_after(
        "history/2.json",
        br#"{"service": "api", "generation": 2}"#,
        "belongs to service \"api\", not \"web\"",
    );
    assert_unreadable_after(
        "history/2.json",
        br#"{"service": "web", "generation": 1}"#,
        "holds generation 1, not 2",
    );
    assert_unreadable_after("current.json", b"[1, 2, 3]", "a JSON array");
    assert_unreadable_after(
        "current.json",
        b"{\"service\": \"web\",\n\"generation\": \"two\"}",
        "expected u64 at line 2",
    );
}

#[test]
fn an_empty_file_is_reported() {
    assert_unreadable_after("current.json", b"", "empty");
    assert_unreadable_after("history/2.json", b"", "empty");
}

#[test]
fn a_missing_current_record_is_reported() {
    let (_tmp, state, store) = store_with("web", 2);
    std::fs::remove_file(state.join("services/web/history/2.json")).expect("rm");
    let loaded = store.load().expect("load");
    let (path, error) = unreadable(&loaded, "web");
    assert!(path.ends_with("services/web/history/2.json"), "{path}");
    assert!(error.contains("missing"), "{error}");
}

#[test]
fn a_missing_current_json_is_reported_unless_nothing_was_committed() {
    let (_tmp, state, store) = store_with("web", 1);
    std::fs::remove_file(state.join("services/web/current.json")).expect("rm");
    let loaded = store.load().expect("load");
    let (path, error) = unreadable(&loaded, "web");
    assert!(path.ends_with("services/web/current.json"), "{path}");
    assert!(error.contains("missing"), "{error}");

    // A directory with no record at all (a crash before the first write).
    std::fs::create_dir_all(state.join("services/api/history")).expect("mkdir");
    let loaded = store.load().expect("load");
    assert_eq!(loaded.len(), 1, "{loaded:?}");
}

#[test]
fn tolerant_reading_of_newer_records() {
    let (_tmp, state, store) = store_with("web", 1);
    std::fs::write(
        state.join("services/web/history/1.json"),
        br#"{"schema_version": 99, "service": "web", "generation": 1,
             "status": "COMPLETE", "a_field_from_the_future": {"x": 1}}"#,
    )
    .expect("write");
    std::fs::write(
        state.join("services/web/current.json"),
        br#"{"service": "web", "generation": 1, "later": true}"#,
    )
    .expect("write");
    let loaded = only_ok(store.load().expect("load"));
    assert_eq!(loaded[0].1.schema_version, 99);
    assert_eq!(loaded[0].1.status, Status::Complete);
    assert!(!loaded[0].0.held);
}

#[test]
fn stray_temp_files_and_half_deleted_services_are_swept() {
    let (_tmp, state, store) = store_with("web", 1);
    let strays = [
        state.join(".tmp-0001"),
        state.join("services/.tmp-0002"),
        state.join("services/web/.tmp-0003"),
        state.join("services/web/history/.tmp-0004"),
    ];
    for stray in &strays {
        std::fs::write(stray, b"{\"half").expect("write");
    }
    let tomb = state.join("services/.deleted-old-1234/history");
    std::fs::create_dir_all(&tomb).expect("mkdir");
    std::fs::write(tomb.join("1.json"), b"{}").expect("write");
    // Not berth's: left alone.
    std::fs::write(state.join("services/README"), b"hello").expect("write");

    let loaded = only_ok(store.load().expect("load"));
    assert_eq!(loaded.len(), 1);
    for stray in &strays {
        assert!(!stray.exists(), "{} swept", stray.display());
    }
    assert!(!state.join("services/.deleted-old-1234").exists());
    assert!(state.join("services/README").exists());
}

#[test]
fn a_crash_mid_write_leaves_the_old_record() {
    let (_tmp, state, crashed) = store_with("web", 1);
    let old = std::fs::read(state.join("services/web/history/1.json")).expect("read");
    // What a crash between the temp file's write and its rename leaves.
    let mut newer = record("web", 1);
    newer.status = Status::Complete;
    let bytes = serde_json::to_vec_pretty(&newer).expect("json");
    std::fs::write(
        state.join("services/web/history/.tmp-deadbeef"),
        &bytes[..bytes.len() / 3],
    )
    .expect("write");
    std::fs::write(state.join("services/web/.tmp-cafe"), b"{\"serv").expect("write");

    drop(crashed);
    let store = FsStore::open(&state).expect("reopen after the crash");
    let loaded = only_ok(store.load().expect("load"));
    assert_eq!(loaded[0].1, record("web", 1));
    assert_eq!(loaded[0].0, meta("web", 1));
    assert_eq!(
        std::fs::read(state.join("services/web/history/1.json")).expect("read"),
        old
    );
    assert!(!state.join("services/web/history/.tmp-deadbeef").exists());
}

#[test]
fn create_atomic_refuses_to_clobber() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        create_atomic(tmp.path(), "1.json", b"one").expect("create"),
        Created::Created
    );
    assert_eq!(
        create_atomic(tmp.path(), "1.json", b"two").expect("create"),
        Created::AlreadyExists
    );
    assert_eq!(
        std::fs::read(tmp.path().join("1.json")).expect("read"),
        b"one"
    );
    write_atomic(tmp.path(), "1.json", b"three").expect("replace");
    assert_eq!(
        std::fs::read(tmp.path().join("1.json")).expect("read"),
        b"three"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["1.json"]);
}

#[test]
fn events_survive_a_restart_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open(tmp.path()).expect("open");
    assert!(store.load_events(10).expect("empty").is_empty());
    for seq in 1..=5 {
        store.append_event(&event(seq), 100).expect("append");
    }
    drop(store);
    let store = FsStore::open(tmp.path()).expect("reopen");
    let seqs = |events: Vec<Event>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.load_events(100).expect("load")), [1, 2, 3, 4, 5]);
    assert_eq!(seqs(store.load_events(2).expect("load")), [4, 5]);
    assert!(store.load_events(0).expect("load").is_empty());
    store.append_event(&event(6), 100).expect("append");
    assert_eq!(seqs(store.load_events(3).expect("load")), [4, 5, 6]);
    assert_eq!(store.load_events(1).expect("load")[0], event(6));
}

#[test]
fn events_are_compacted_to_the_newest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let store = FsStore::open(tmp.path()).expect("open");
    let count = || {
        std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count()
    };
    for seq in 1..=6 {
        store.append_event(&event(seq), 3).expect("append");
    }
    assert_eq!(count(), 6, "not past 2 x keep yet");
    store.append_event(&event(7), 3).expect("append");
    assert_eq!(count(), 3, "compacted");
    let seqs: Vec<u64> = store
        .load_events(100)
        .expect("load")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [5, 6, 7]);
    // Appends after compaction go to the new file.
    store.append_event(&event(8), 3).expect("append");
    assert_eq!(count(), 4);
    assert_eq!(mode(&path), 0o600);

    // The count survives a restart: a new store compacts at the same point.
    drop(store);
    let store = FsStore::open(tmp.path()).expect("reopen");
    for seq in 9..=10 {
        store.append_event(&event(seq), 3).expect("append");
    }
    assert_eq!(count(), 6);
    store.append_event(&event(11), 3).expect("append");
    assert_eq!(count(), 3);
}

#[test]
fn a_torn_last_event_line_is_skipped_and_not_glued_to_the_next() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let store = FsStore::open(tmp.path()).expect("open");
    for seq in 1..=3 {
        store.append_event(&event(seq), 100).expect("append");
    }
    drop(store);
    // A crash mid-append: half of event 4, no newline.
    let line = serde_json::to_string(&event(4)).expect("json");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&line.as_bytes()[..line.len() / 2]);
    std::fs::write(&path, &bytes).expect("write");

    let store = FsStore::open(tmp.path()).expect("reopen");
    let seqs = |events: Vec<Event>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(store.load_events(100).expect("load")), [1, 2, 3]);
    assert_eq!(seqs(store.load_events(1).expect("load")), [3]);

    store.append_event(&event(5), 100).expect("append");
    assert_eq!(seqs(store.load_events(100).expect("load")), [1, 2, 3, 5]);
}

#[test]
fn bad_event_lines_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("events.jsonl");
    let good = |seq| serde_json::to_string(&event(seq)).expect("json");
    let text = format!(
        "{}\nnot json\n\n{}\n{{\"seq\": 3, \"at_ms\": 1, \"type\": \"from_the_future\"}}\n",
        good(1),
        good(2)
    );
    std::fs::write(&path, text).expect("write");
    let store = FsStore::open(tmp.path()).expect("open");
    let seqs: Vec<u64> = store
        .load_events(100)
        .expect("load")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2]);
    // Compaction keeps JSON lines it cannot read (a newer berth's), drops
    // garbage: 4 lines + 1 > 2 x 2.
    store.append_event(&event(4), 2).expect("append");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("from_the_future"), "{text}");
    let seqs: Vec<u64> = store
        .load_events(100)
        .expect("load")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [4]);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_store<T: Store>() {}
    assert_store::<FsStore>();
}

/// Attack (issue 29 item 9): a record replaced by a symlink to a file
/// outside the state dir. It is reported as unreadable, naming the link,
/// never followed (the outside file's content is not loaded) and left as is.
#[test]
fn a_symlinked_record_is_reported_and_not_followed() {
    for file in ["history/2.json", "current.json"] {
        let (tmp, state, store) = store_with("web", 2);
        let path = state.join("services/web").join(file);
        // Outside the state dir: a valid record, so only the link is wrong.
        let outside = tmp.path().join("outside.json");
        std::fs::copy(&path, &outside).expect("copy");
        std::fs::remove_file(&path).expect("rm");
        std::os::unix::fs::symlink(&outside, &path).expect("symlink");

        let loaded = store.load().expect("load");
        let (shown, error) = unreadable(&loaded, "web");
        assert_eq!(shown, path.display().to_string());
        assert!(error.contains("is a symlink"), "{file}: {error}");
        assert!(
            error.contains(&outside.display().to_string()),
            "{file}: {error}"
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .expect("still there")
                .file_type()
                .is_symlink(),
            "{file}: left as is"
        );
        if file == "history/2.json" {
            match store.record("web", 2) {
                Err(StoreError::Corrupt { reason, .. }) => {
                    assert!(reason.contains("symlink"), "{reason}")
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                generations(&store.history("web", 10).expect("history")),
                [1]
            );
        } else {
            // Prune cannot tell which records current.json protects.
            assert!(matches!(
                store.prune("web", 0),
                Err(StoreError::Corrupt { .. })
            ));
            assert_eq!(
                generations(&store.history("web", 10).expect("history")),
                [2, 1]
            );
        }
    }
}

/// A symlinked `history/` or service directory is refused too: no record is
/// read through it, and no write goes through it.
#[test]
fn a_symlinked_service_or_history_dir_is_reported() {
    let (tmp, state, store) = store_with("web", 2);
    let history = state.join("services/web/history");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&history, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &history).expect("symlink");
    let loaded = store.load().expect("load");
    let (_, error) = unreadable(&loaded, "web");
    assert!(error.contains("history/ is a symlink"), "{error}");
    assert!(store.save_record(&record("web", 3)).is_err());
    assert!(
        !elsewhere.join("3.json").exists(),
        "nothing written through it"
    );

    let (tmp, state, store) = store_with("api", 1);
    let dir = state.join("services/api");
    let elsewhere = tmp.path().join("api-elsewhere");
    std::fs::rename(&dir, &elsewhere).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &dir).expect("symlink");
    let loaded = store.load().expect("load");
    let (shown, error) = unreadable(&loaded, "api");
    assert_eq!(shown, dir.display().to_string());
    assert!(error.contains("service directory is a symlink"), "{error}");
    assert!(store.save_meta(&meta("api", 2)).is_err());
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("current.json")).expect("read"),
        serde_json::to_string_pretty(&meta("api", 1)).expect("json") + "\n",
        "nothing written through it"
    );
}

/// Attack (issue 29 item 9): a 100 MB record took 417 MB of RSS and was
/// served whole. One past the cap is now reported without being read, and
/// left byte for byte as it was.
#[test]
fn an_oversize_record_is_reported_without_being_read() {
    let (_tmp, state, store) = store_with("web", 2);
    let path = state.join("services/web/history/2.json");
    // A valid record padded with whitespace: only its size is wrong.
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.resize(berth_store::RECORD_MAX_BYTES as usize + 1, b' ');
    std::fs::write(&path, &bytes).expect("write");

    let loaded = store.load().expect("load");
    let (shown, error) = unreadable(&loaded, "web");
    assert_eq!(shown, path.display().to_string());
    assert!(error.contains("8388609 bytes"), "{error}");
    assert!(error.contains("8 MiB"), "{error}");
    assert!(matches!(
        store.record("web", 2),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        generations(&store.history("web", 10).expect("history")),
        [1]
    );
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "left as is");

    // At the cap it is still a record.
    bytes.truncate(berth_store::RECORD_MAX_BYTES as usize);
    std::fs::write(&path, &bytes).expect("write");
    assert_eq!(only_ok(store.load().expect("load"))[0].1.generation, 2);
}

/// A FIFO as a record does not block the load.
#[test]
fn a_fifo_record_is_reported() {
    let (_tmp, state, store) = store_with("web", 1);
    let path = state.join("services/web/history/1.json");
    std::fs::remove_file(&path).expect("rm");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let loaded = store.load().expect("load");
    let (_, error) = unreadable(&loaded, "web");
    assert!(error.contains("a FIFO, not a regular file"), "{error}");
}

/// Every record berth writes can be read back: one whose outputs would make
/// it larger than the cap (control characters grow sixfold as JSON) has
/// them cut, with a note, rather than becoming unreadable.
#[test]
fn a_record_with_huge_outputs_is_cut_to_fit_and_reads_back() {
    let (_tmp, state, store) = store_with("web", 1);
    let mut big = record("web", 2);
    let nuls = "\u{1}".repeat(berth_core::record::OUTPUT_CAP);
    big.outputs.deploy_stdout = Some(nuls.clone());
    big.outputs.deploy_stderr = Some(nuls.clone());
    big.outputs.declared.insert("a".into(), nuls.clone());
    big.outputs.declared.insert("small".into(), "42".into());
    store.save_record(&big).expect("save");
    store.save_meta(&meta("web", 2)).expect("save meta");
    let path = state.join("services/web/history/2.json");
    let len = std::fs::metadata(&path).expect("meta").len();
    assert!(len <= berth_store::RECORD_MAX_BYTES, "{len}");

    let read = store.record("web", 2).expect("read").expect("there");
    let stdout = read.outputs.deploy_stdout.expect("stdout");
    assert!(
        stdout.contains("[berth: output cut to"),
        "{}",
        &stdout[stdout.len() - 80..]
    );
    assert_eq!(read.outputs.declared["small"], "42");
    assert_eq!(only_ok(store.load().expect("load"))[0].1.generation, 2);
}
