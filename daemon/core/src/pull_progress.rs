//! How far a pull has come: the engine's per-layer progress lines summed
//! into layers and bytes, so berthd can report a pull (throttled, as
//! events) and `berthctl apply` can draw a bar for it. Pure: the runtime
//! feeds each line of the engine's progress stream to a [`PullTally`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pull's progress so far. Bytes are the layers' downloads as far as
/// the engine reported their sizes (a layer the engine already had counts
/// as a done layer but adds no bytes); both totals grow while the engine
/// announces layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The reference being pulled (never carries credentials).
    pub reference: String,
    pub layers_done: u32,
    pub layers_total: u32,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

impl PullProgress {
    /// `3/7 layers, 12.3 MB / 80.1 MB` (the bytes only once a size is known).
    pub fn describe(&self) -> String {
        let mut s = format!("{}/{} layers", self.layers_done, self.layers_total);
        if self.bytes_total > 0 {
            s.push_str(&format!(
                ", {} / {}",
                format_bytes(self.bytes_done),
                format_bytes(self.bytes_total)
            ));
        }
        s
    }
}

/// Decimal units, as the docker CLI prints sizes: `512 B`, `12.3 MB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    done: bool,
    current: u64,
    total: u64,
}

/// Sums a pull's progress lines. Feed it every line of the engine's stream,
/// in order, with [`PullTally::observe`]; [`PullTally::progress`] is the
/// sum so far.
#[derive(Debug, Clone, Default)]
pub struct PullTally {
    reference: String,
    /// Layer id → its state; ordered so the sums do not depend on hashing.
    layers: BTreeMap<String, Layer>,
}

impl PullTally {
    pub fn new(reference: &str) -> PullTally {
        PullTally {
            reference: reference.to_string(),
            layers: BTreeMap::new(),
        }
    }

    /// One line of the engine's progress stream: its `id` (a layer's short
    /// id, or the tag on `Pulling from ...`), its `status`, and its
    /// `progressDetail`. Returns whether the sums changed. Lines that are
    /// about no layer (`Pulling from ...`, `Digest: ...`, `Status: ...`)
    /// change nothing.
    pub fn observe(
        &mut self,
        id: Option<&str>,
        status: &str,
        current: Option<i64>,
        total: Option<i64>,
    ) -> bool {
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return false;
        };
        let status = status.trim();
        let known = [
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete",
            "Already exists",
        ];
        // "Retrying in 5 seconds" is about a layer too.
        if !known.contains(&status) && !status.starts_with("Retrying in") {
            return false;
        }
        let before = self.layers.get(id).copied();
        let layer = self.layers.entry(id.to_string()).or_default();
        let size = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        match status {
            "Downloading" => {
                if let Some(t) = size(total).filter(|t| *t > 0) {
                    layer.total = t;
                }
                if let Some(c) = size(current) {
                    layer.current = if layer.total > 0 {
                        c.min(layer.total)
                    } else {
                        c
                    };
                }
            }
            // Downloaded: whatever the last Downloading line said, all of it.
            "Verifying Checksum" | "Download complete" | "Extracting" => {
                layer.current = layer.total.max(layer.current);
            }
            "Pull complete" | "Already exists" => {
                layer.done = true;
                layer.current = layer.total.max(layer.current);
            }
            _ => {}
        }
        before.map(|b| (b.done, b.current, b.total))
            != Some((layer.done, layer.current, layer.total))
    }

    pub fn progress(&self) -> PullProgress {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PullProgress {
            reference: self.reference.clone(),
            layers_done: count(self.layers.values().filter(|l| l.done).count()),
            layers_total: count(self.layers.len()),
            bytes_done: self.layers.values().map(|l| l.current).sum(),
            bytes_total: self.layers.values().map(|l| l.total).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A progress line: its id, status, and progressDetail's current and total.
    type Line<'a> = (Option<&'a str>, &'a str, Option<i64>, Option<i64>);

    /// A pull as dockerd reports it: one layer the engine had, two
    /// downloaded in interleaved lines, and the lines about no layer.
    #[test]
    fn layers_and_bytes_are_summed_from_the_engines_lines() {
        let mut t = PullTally::new("127.0.0.1:5000/web:2");
        let lines: &[Line] = &[
            (Some("2"), "Pulling from web", None, None),
            (Some("aaa"), "Already exists", None, None),
            (Some("bbb"), "Pulling fs layer", None, None),
            (Some("ccc"), "Pulling fs layer", None, None),
            (Some("ccc"), "Waiting", None, None),
            (Some("bbb"), "Downloading", Some(1_000), Some(10_000)),
            (Some("ccc"), "Downloading", Some(500), Some(2_000)),
            (Some("bbb"), "Downloading", Some(6_000), Some(10_000)),
        ];
        for (id, status, current, total) in lines {
            t.observe(*id, status, *current, *total);
        }
        let p = t.progress();
        assert_eq!(
            (p.layers_done, p.layers_total, p.bytes_done, p.bytes_total),
            (1, 3, 6_500, 12_000)
        );
        assert_eq!(p.reference, "127.0.0.1:5000/web:2");
        // Verifying and Download complete: the layer's bytes are all there.
        assert!(t.observe(Some("ccc"), "Verifying Checksum", None, None));
        assert!(!t.observe(Some("ccc"), "Download complete", None, None));
        assert_eq!(t.progress().bytes_done, 8_000);
        // Extracting reports extract progress: it adds no bytes.
        assert!(!t.observe(Some("ccc"), "Extracting", Some(100), Some(2_000)));
        assert!(t.observe(Some("ccc"), "Pull complete", None, None));
        t.observe(Some("bbb"), "Download complete", None, None);
        t.observe(Some("bbb"), "Pull complete", None, None);
        assert!(!t.observe(None, "Digest: sha256:abc", None, None));
        assert!(!t.observe(None, "Status: Downloaded newer image", None, None));
        let p = t.progress();
        assert_eq!(
            (p.layers_done, p.layers_total, p.bytes_done, p.bytes_total),
            (3, 3, 12_000, 12_000)
        );
        assert_eq!(p.describe(), "3/3 layers, 12.0 kB / 12.0 kB");
    }

    #[test]
    fn nonsense_sizes_and_unknown_lines_change_nothing() {
        let mut t = PullTally::new("r");
        assert!(!t.observe(Some("x"), "Something new", Some(5), Some(9)));
        assert!(!t.observe(Some(""), "Downloading", Some(5), Some(9)));
        assert!(t.observe(Some("x"), "Downloading", Some(-1), Some(-5)));
        let p = t.progress();
        assert_eq!((p.layers_total, p.bytes_done, p.bytes_total), (1, 0, 0));
        // A retry names a layer already counted: nothing new.
        assert!(!t.observe(Some("x"), "Retrying in 5 seconds", None, None));
        assert_eq!(t.progress().describe(), "0/1 layers");
    }

    #[test]
    fn sizes_read_as_the_docker_cli_prints_them() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(12_345_678), "12.3 MB");
        assert_eq!(format_bytes(80_100_000), "80.1 MB");
        assert_eq!(format_bytes(999_990), "1.0 MB");
        assert_eq!(format_bytes(2_000_000_000), "2.0 GB");
    }
}
