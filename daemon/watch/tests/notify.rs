//! The real NotifyWatcher against real files in temp dirs, in real time.
//!
//! Waits for events use generous timeouts; absence is asserted only over
//! windows well beyond debounce + max_wait.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_core::watch::BoxStream;
use berth_watch::{
    ChangeTracker, NotifyWatcher, WatchError, WatchEvent, WatchSpec, Watcher, snapshot,
};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(10);
const HOUR: Duration = Duration::from_secs(3600);

/// A watcher and its one event stream (a second `events()` would take over).
struct Watched {
    w: NotifyWatcher,
    events: BoxStream<WatchEvent>,
}

impl std::ops::Deref for Watched {
    type Target = NotifyWatcher;
    fn deref(&self) -> &NotifyWatcher {
        &self.w
    }
}

fn watched(w: NotifyWatcher) -> Watched {
    let events = w.events();
    Watched { w, events }
}

fn watcher() -> Watched {
    watched(
        NotifyWatcher::new(Duration::from_millis(100), Duration::from_secs(1), HOUR)
            .expect("watcher"),
    )
}

fn spec(key: &str, source: &Path) -> WatchSpec {
    WatchSpec {
        key: key.to_string(),
        source: source.to_path_buf(),
    }
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    (dir, path)
}

async fn next_event(w: &mut Watched, within: Duration) -> Option<WatchEvent> {
    tokio::time::timeout(within, w.events.next())
        .await
        .ok()
        .flatten()
}

/// The next event, which must be `Changed`; returns its keys.
async fn changed(w: &mut Watched) -> Vec<String> {
    match next_event(w, WAIT).await {
        Some(WatchEvent::Changed { keys }) => keys,
        other => panic!("expected Changed within {WAIT:?}, got {other:?}"),
    }
}

/// Waits until every key in `want` was in some `Changed`.
async fn changed_all(w: &mut Watched, want: &[&str]) {
    let mut seen = Vec::new();
    while !want.iter().all(|k| seen.iter().any(|s: &String| s == k)) {
        seen.extend(changed(w).await);
    }
}

async fn assert_quiet(w: &mut Watched, window: Duration) {
    if let Some(ev) = next_event(w, window).await {
        panic!("expected no event for {window:?}, got {ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_in_dir_source_is_one_changed_for_its_key() {
    let (_t, d) = tempdir();
    let src = d.join("web");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.conf"), "1").expect("write");
    let other = d.join("other");
    fs::create_dir(&other).expect("mkdir");
    let mut w = watcher();
    w.set(vec![spec("web#0", &src), spec("db#0", &other)])
        .expect("set");
    fs::write(src.join("b.conf"), "2").expect("write");
    assert_eq!(changed(&mut w).await, vec!["web#0"]);
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
}

/// Events seen before anyone asked for the stream wait for the first one;
/// a second `events()` takes over and the first stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_stream_gets_earlier_events_and_a_later_one_takes_over() {
    let (_t, d) = tempdir();
    let w = NotifyWatcher::new(Duration::from_millis(100), Duration::from_secs(1), HOUR)
        .expect("watcher");
    w.set(vec![spec("k", &d)]).expect("set");
    fs::write(d.join("a"), "1").expect("write");
    // Well past debounce + max_wait: the batch was flushed before anyone listened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut first = w.events();
    let got = tokio::time::timeout(WAIT, first.next())
        .await
        .ok()
        .flatten();
    assert_eq!(
        got,
        Some(WatchEvent::Changed {
            keys: vec!["k".into()]
        })
    );

    let mut second = w.events();
    let ended = tokio::time::timeout(WAIT, first.next()).await;
    assert_eq!(ended, Ok(None), "the earlier stream ends");
    fs::write(d.join("b"), "2").expect("write");
    let got = tokio::time::timeout(WAIT, second.next())
        .await
        .ok()
        .flatten();
    assert_eq!(
        got,
        Some(WatchEvent::Changed {
            keys: vec!["k".into()]
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_into_place_over_file_source() {
    let (_t, d) = tempdir();
    let f = d.join("f");
    fs::write(&f, "old").expect("write");
    let mut tracker = ChangeTracker::new();
    tracker.check("k", &f).expect("baseline");
    let mut w = watcher();
    w.set(vec![spec("k", &f)]).expect("set");
    for content in ["new", "newer"] {
        // Twice: the watch must survive the first replacement.
        fs::write(d.join("f.tmp"), content).expect("write tmp");
        fs::rename(d.join("f.tmp"), &f).expect("rename");
        assert_eq!(changed(&mut w).await, vec!["k"]);
        let change = tracker.check("k", &f).expect("check").expect("a change");
        assert_eq!(change.files, vec!["f"]);
        assert_eq!(fs::read_to_string(&f).expect("read"), content);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap() {
    let (_t, d) = tempdir();
    fs::create_dir(d.join("..2024_a")).expect("mkdir");
    fs::write(d.join("..2024_a/app.conf"), "v1").expect("write");
    symlink("..2024_a", d.join("..data")).expect("symlink");
    symlink("..data/app.conf", d.join("app.conf")).expect("symlink");
    let file = d.join("app.conf");
    let mut tracker = ChangeTracker::new();
    tracker.check("file#0", &file).expect("baseline");
    tracker.check("dir#0", &d).expect("baseline");
    let mut w = watcher();
    w.set(vec![spec("file#0", &file), spec("dir#0", &d)])
        .expect("set");

    let swap = |from: &str, to: &str, content: &str| {
        fs::create_dir(d.join(to)).expect("mkdir");
        fs::write(d.join(to).join("app.conf"), content).expect("write");
        symlink(to, d.join("..data_tmp")).expect("symlink");
        fs::rename(d.join("..data_tmp"), d.join("..data")).expect("swap");
        fs::remove_dir_all(d.join(from)).expect("remove old");
    };
    swap("..2024_a", "..2024_b", "v2");
    changed_all(&mut w, &["file#0", "dir#0"]).await;
    let c = tracker
        .check("file#0", &file)
        .expect("check")
        .expect("change");
    assert_ne!(c.old_hash.as_deref(), Some(c.new_hash.as_str()));
    assert!(tracker.check("dir#0", &d).expect("check").is_some());

    // A second swap is seen too (the watches followed the new target).
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    swap("..2024_b", "..2024_c", "v3");
    changed_all(&mut w, &["file#0", "dir#0"]).await;
    assert!(tracker.check("file#0", &file).expect("check").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_deleted_and_recreated() {
    let (_t, d) = tempdir();
    let f = d.join("app.conf");
    fs::write(&f, "1").expect("write");
    let mut w = watcher();
    w.set(vec![spec("k", &f)]).expect("set");
    fs::remove_file(&f).expect("rm");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    assert!(snapshot(&f).is_err());
    fs::write(&f, "2").expect("recreate");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    assert!(snapshot(&f).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_writes_is_one_changed() {
    let (_t, d) = tempdir();
    for i in 0..10 {
        fs::write(d.join(format!("f{i}")), "0").expect("write");
    }
    // Debounce 300 ms (above the 100 ms default) so a scheduling hiccup on a
    // loaded machine cannot split the ~150 ms burst; max_wait 1 s > burst.
    let mut w = watched(
        NotifyWatcher::new(Duration::from_millis(300), Duration::from_secs(1), HOUR)
            .expect("watcher"),
    );
    w.set(vec![spec("k", &d)]).expect("set");
    let start = std::time::Instant::now();
    for i in 0..100 {
        fs::write(d.join(format!("f{}", i % 10)), format!("{i}")).expect("write");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let burst = start.elapsed();
    assert_eq!(changed(&mut w).await, vec!["k"]);
    if burst < Duration::from_millis(900) {
        assert_quiet(&mut w, Duration::from_secs(2)).await;
    } else {
        eprintln!("burst took {burst:?} (machine loaded); not asserting a single event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_and_identical_rewrite_are_no_change() {
    let (_t, d) = tempdir();
    let f = d.join("app.conf");
    fs::write(&f, "same").expect("write");
    let mut tracker = ChangeTracker::new();
    tracker.check("k", &f).expect("baseline");
    let mut w = watcher();
    w.set(vec![spec("k", &f)]).expect("set");

    let file = fs::File::options().write(true).open(&f).expect("open");
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .expect("touch");
    drop(file);
    // An event may fire; either way it is no change.
    let _ = next_event(&mut w, Duration::from_secs(2)).await;
    assert_eq!(tracker.check("k", &f).expect("check"), None);

    fs::write(&f, "same").expect("rewrite");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    assert_eq!(tracker.check("k", &f).expect("check"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_subdir_with_file_in_recursive_source() {
    let (_t, d) = tempdir();
    fs::write(d.join("top.conf"), "1").expect("write");
    let mut tracker = ChangeTracker::new();
    tracker.check("k", &d).expect("baseline");
    let mut w = watcher();
    w.set(vec![spec("k", &d)]).expect("set");
    fs::create_dir_all(d.join("sub/deeper")).expect("mkdir");
    fs::write(d.join("sub/deeper/x.conf"), "x").expect("write");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    let c = tracker.check("k", &d).expect("check").expect("change");
    assert_eq!(c.files, vec!["sub/deeper/x.conf"]);
    // The new subdirectory is watched from now on.
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    fs::write(d.join("sub/deeper/x.conf"), "y").expect("write");
    assert_eq!(changed(&mut w).await, vec!["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keys_sharing_a_source_arrive_together() {
    let (_t, d) = tempdir();
    let f = d.join("shared.conf");
    fs::write(&f, "1").expect("write");
    let mut w = watcher();
    w.set(vec![spec("web#0", &f), spec("api#1", &f)])
        .expect("set");
    fs::write(&f, "2").expect("write");
    assert_eq!(changed(&mut w).await, vec!["api#1", "web#0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_disappears_and_comes_back() {
    let (_t, d) = tempdir();
    let src = d.join("cfg");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("a.conf"), "1").expect("write");
    let mut tracker = ChangeTracker::new();
    tracker.check("k", &src).expect("baseline");
    let mut w = watcher();
    w.set(vec![spec("k", &src)]).expect("set");

    fs::remove_dir_all(&src).expect("rm -r");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    match tracker.check("k", &src) {
        Err(WatchError::Unreadable { path, .. }) => assert_eq!(path, src),
        other => panic!("expected Unreadable, got {other:?}"),
    }

    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    fs::create_dir(&src).expect("mkdir again");
    fs::write(src.join("a.conf"), "1").expect("write");
    assert_eq!(changed(&mut w).await, vec!["k"]);
    let c = tracker.check("k", &src).expect("check").expect("change");
    assert!(c.reappeared);

    // The recreated directory is watched again.
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    fs::write(src.join("b.conf"), "2").expect("write");
    assert_eq!(changed(&mut w).await, vec!["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_created_later_under_missing_parent() {
    let (_t, d) = tempdir();
    let f = d.join("later/deeper/app.conf");
    let mut w = watcher();
    w.set(vec![spec("k", &f)]).expect("set");
    fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
    fs::write(&f, "1").expect("write");
    // Possibly several batches while the watches move down the new dirs;
    // within them the file must become readable.
    let mut tracker = ChangeTracker::new();
    loop {
        assert_eq!(changed(&mut w).await, vec!["k"]);
        if let Ok(Some(_)) = tracker.check("k", &f) {
            break;
        }
    }
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    fs::write(&f, "2").expect("write");
    assert_eq!(changed(&mut w).await, vec!["k"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_paths_and_replaced_specs_are_ignored() {
    let (_t, d) = tempdir();
    let a = d.join("a.conf");
    let b = d.join("b.conf");
    fs::write(&a, "1").expect("write");
    fs::write(&b, "1").expect("write");
    let mut w = watcher();
    w.set(vec![spec("a", &a)]).expect("set");
    fs::write(&b, "2").expect("write sibling");
    fs::write(d.join("a.conf.swp"), "x").expect("write editor temp");
    fs::read(&a).expect("reading is no event");
    assert_quiet(&mut w, Duration::from_millis(1500)).await;

    w.set(vec![spec("b", &b)]).expect("replace");
    fs::write(&a, "2").expect("write old source");
    assert_quiet(&mut w, Duration::from_millis(1500)).await;
    fs::write(&b, "3").expect("write new source");
    assert_eq!(changed(&mut w).await, vec!["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_rescan_fires() {
    let (_t, d) = tempdir();
    let mut w = watched(
        NotifyWatcher::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_millis(300),
        )
        .expect("watcher"),
    );
    w.set(vec![spec("k", &d)]).expect("set");
    assert_eq!(next_event(&mut w, WAIT).await, Some(WatchEvent::Rescan));
    assert_eq!(next_event(&mut w, WAIT).await, Some(WatchEvent::Rescan));
}

#[test]
fn needs_a_runtime() {
    assert!(matches!(
        NotifyWatcher::with_defaults(),
        Err(WatchError::NoRuntime)
    ));
}
