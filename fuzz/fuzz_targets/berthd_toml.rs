//! berthd.toml (`config::from_text` in daemon/berthd/src/config.rs,
//! compiled here from berthd's own source: berthd is a binary crate).
//!
//! Beyond "no panic": an error is one line naming the file; an accepted
//! config holds what the file's checks promise (a node id that can be a
//! label value, a prefix that can start a container name, a history limit
//! and upstream intervals that are not zero), and reading it twice gives
//! the same config.
#![no_main]

#[allow(dead_code)]
#[path = "../../daemon/berthd/src/config.rs"]
mod config;

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

/// `upstream.ca_file` is read from disk when set: a fuzzed path could name
/// any file (or /dev/zero), so such inputs are left out.
fn names_a_ca_file(text: &str) -> bool {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    table
        .get("upstream")
        .and_then(toml::Value::as_table)
        .is_some_and(|u| u.contains_key("ca_file"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_ca_file(text) {
        return;
    }
    let path = Path::new("/etc/berth/berthd.toml");
    let docker_host = Some("unix:///run/fuzz.sock".to_string());
    match config::from_text(Some(path), Some(text), docker_host.clone()) {
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.starts_with("config /etc/berth/berthd.toml: "),
                "{shown}"
            );
            assert!(!shown.contains('\n'), "a multi-line error: {shown:?}");
        }
        Ok(c) => {
            assert!(!c.node_id.is_empty() && c.node_id.len() <= 128);
            assert!(!c.node_id.contains(['=', ',', '\n']), "{:?}", c.node_id);
            assert!(
                c.prefix.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && c.prefix
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)),
                "{:?}",
                c.prefix
            );
            assert!(c.history_limit >= 1);
            assert!(c.poll_interval >= Duration::from_secs(1));
            assert!(c.heartbeat >= Duration::from_secs(1));
            assert!(c.restart_only_changes(&c).is_empty());
            assert_eq!(c.with_reloaded(&c), c);
            let _ = c.node_policy();
            let again = config::from_text(Some(path), Some(text), docker_host)
                .expect("the same text read again");
            assert_eq!(again, c);
        }
    }
});
