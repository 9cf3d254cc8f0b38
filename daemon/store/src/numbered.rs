//! Directories of files named by a number: a service's history
//! (`history/<generation>.json`) and the outbox (`<seq>.json`).
//!
//! Only the canonical name of a number counts: `7.json`, never `07.json`,
//! `+7.json` or `7.JSON`. Anything else in the directory (a temp file, an
//! operator's copy, a name that is not UTF-8) is foreign and is not listed,
//! so berth never reads, rewrites or removes it. A listed file that does not
//! parse (torn, or foreign content under a canonical name) is the reader's
//! to report.

use std::io;
use std::path::Path;

use berth_core::store::StoreError;

use crate::atomic::io_err;

/// The file that holds number `n`.
pub(crate) fn file_name(n: u64) -> String {
    format!("{n}.json")
}

/// The number a file name stands for, when it is that number's canonical
/// name ([`file_name`]).
fn number_of(name: &str) -> Option<u64> {
    name.strip_suffix(".json")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| file_name(*n) == name)
}

/// The numbers of the files in `dir`, ascending. A missing directory holds
/// none.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir, e)),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("list", dir, e))?;
        if let Some(n) = entry.file_name().to_str().and_then(number_of) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn only_canonical_names_are_listed_in_ascending_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        for name in [
            "10.json",
            "2.json",
            "0.json",
            "07.json",
            "+3.json",
            "-1.json",
            "4.JSON",
            "5.json.tmp",
            "x.json",
            ".json",
            "6",
            "18446744073709551616.json",
        ] {
            std::fs::write(dir.join(name), b"{}").expect("write");
        }
        // Listed whatever its kind: its reader refuses what is not a file.
        std::fs::create_dir(dir.join("11.json")).expect("mkdir");
        let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff8.json");
        std::fs::write(dir.join(not_utf8), b"{}").expect("write");
        // A torn file under a canonical name is listed: its reader reports it.
        std::fs::write(dir.join("3.json"), b"").expect("write");

        assert_eq!(list(dir).expect("list"), [0, 2, 3, 10, 11]);
    }

    #[test]
    fn a_missing_directory_holds_none_and_a_file_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            list(&tmp.path().join("absent")).expect("list"),
            [] as [u64; 0]
        );

        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("write");
        let err = list(&file).expect_err("not a directory");
        assert!(matches!(err, StoreError::Io { op: "list", .. }), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for n in [0, 1, 42, u64::MAX] {
            assert_eq!(number_of(&file_name(n)), Some(n));
        }
    }
}
