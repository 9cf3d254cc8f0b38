//! `MemStore`: the in-memory twin of `berth_store::FsStore`.
//!
//! Same semantics, kept in a map: service names are validated, `load`
//! reports a service without a readable current record as
//! [`LoadedService::Unreadable`], `history` is newest first, `prune` never
//! removes the generations the meta names, the event log is compacted to the
//! newest `keep` once it holds more than `2 × keep`. Helpers simulate what a
//! disk does to the real one: a torn record ([`MemStore::insert_unreadable`])
//! and a failed write ([`MemStore::fail_next_write`]); a torn pulled-images
//! list ([`MemStore::tear_pulled`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use berth_core::event::Event;
use berth_core::images::{PulledImage, note_pulled};
use berth_core::record::Deployment;
use berth_core::spec::valid_service_name;
use berth_core::store::{LoadedService, ServiceMeta, Store, StoreError};

#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    services: BTreeMap<String, Service>,
    /// Services whose current record is "torn": `(path, error)`.
    unreadable: BTreeMap<String, (String, String)>,
    events: Vec<Event>,
    /// Writes to let through before one fails (`Some(0)`: the next).
    fail_after: Option<usize>,
    writes: usize,
    /// `history` calls with no limit (whole histories read).
    full_history_reads: usize,
    /// The images berth pulled (`images/pulled.json`).
    pulled: Vec<PulledImage>,
    /// The pulled-images list is "torn": reads and writes fail with this.
    pulled_torn: Option<String>,
    /// History records that are "torn": `record` reports them, `history`
    /// skips them (as the real store does).
    torn_records: BTreeSet<(String, u64)>,
}

#[derive(Debug, Default)]
struct Service {
    meta: Option<ServiceMeta>,
    records: BTreeMap<u64, Deployment>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Makes `service` load as [`LoadedService::Unreadable`] with `error`, as
    /// if its `current.json` were torn. Like the real file, it stays so until
    /// a `save_meta` for the service replaces it or the service is deleted.
    pub fn insert_unreadable(&self, service: &str, error: impl Into<String>) {
        let path = format!("mem://services/{service}/current.json");
        self.lock()
            .unreadable
            .insert(service.to_string(), (path, error.into()));
    }

    /// Makes the pulled-images list "torn": reading or changing it fails
    /// with [`StoreError::Corrupt`] carrying `reason`, as the real file's
    /// would, until [`MemStore::mend_pulled`].
    pub fn tear_pulled(&self, reason: impl Into<String>) {
        self.lock().pulled_torn = Some(reason.into());
    }

    /// Makes record `generation` of `service` "torn": `record` fails with
    /// [`StoreError::Corrupt`] and `history` skips it, as the real store
    /// does with a file that does not parse.
    pub fn tear_record(&self, service: &str, generation: u64) {
        self.lock()
            .torn_records
            .insert((service.to_string(), generation));
    }

    /// Undoes [`MemStore::tear_pulled`] (the operator moved the file away:
    /// the list starts empty).
    pub fn mend_pulled(&self) {
        let mut g = self.lock();
        g.pulled_torn = None;
        g.pulled.clear();
    }

    /// The next `save_record` or `save_meta` fails with an I/O error and
    /// changes nothing.
    pub fn fail_next_write(&self) {
        self.fail_write_after(0);
    }

    /// Lets `n` more `save_record`/`save_meta` calls through, then fails
    /// one as [`MemStore::fail_next_write`] does (e.g. the disk filling up
    /// in the middle of an apply of several services).
    pub fn fail_write_after(&self, n: usize) {
        self.lock().fail_after = Some(n);
    }

    /// Successful `save_record` and `save_meta` calls so far.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// `history` calls that asked for the whole history so far.
    pub fn full_history_reads(&self) -> usize {
        self.lock().full_history_reads
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread leaves the map consistent: every change is
        // made after all checks.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn check(service: &str) -> Result<(), StoreError> {
    if valid_service_name(service) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            service: service.to_string(),
        })
    }
}

fn record_path(service: &str, generation: u64) -> String {
    format!("mem://services/{service}/history/{generation}.json")
}

impl Inner {
    /// Counts an armed failure down; fails the write it reaches zero on.
    fn write(&mut self, path: String) -> Result<(), StoreError> {
        match self.fail_after {
            Some(0) => {
                self.fail_after = None;
                Err(StoreError::Io {
                    op: "write",
                    path,
                    source: std::io::Error::other("injected failure (MemStore::fail_next_write)"),
                })
            }
            armed => {
                self.fail_after = armed.map(|n| n - 1);
                self.writes += 1;
                Ok(())
            }
        }
    }
}

impl Store for MemStore {
    fn load(&self) -> Result<Vec<LoadedService>, StoreError> {
        let inner = self.lock();
        let names: BTreeSet<&String> = inner
            .services
            .keys()
            .chain(inner.unreadable.keys())
            .collect();
        let mut out = Vec::new();
        for name in names {
            if let Some((path, error)) = inner.unreadable.get(name) {
                out.push(LoadedService::Unreadable {
                    service: name.clone(),
                    path: path.clone(),
                    error: error.clone(),
                });
                continue;
            }
            let Some(svc) = inner.services.get(name) else {
                continue;
            };
            let Some(meta) = &svc.meta else {
                if !svc.records.is_empty() {
                    out.push(LoadedService::Unreadable {
                        service: name.clone(),
                        path: format!("mem://services/{name}/current.json"),
                        error: format!(
                            "the file is missing, but history/ holds {} record(s)",
                            svc.records.len()
                        ),
                    });
                }
                continue;
            };
            match svc.records.get(&meta.generation) {
                Some(current) => out.push(LoadedService::Ok {
                    meta: meta.clone(),
                    current: Box::new(current.clone()),
                }),
                None => out.push(LoadedService::Unreadable {
                    service: name.clone(),
                    path: record_path(name, meta.generation),
                    error: format!(
                        "the file is missing, but current.json says generation {} is current",
                        meta.generation
                    ),
                }),
            }
        }
        Ok(out)
    }

    fn save_record(&self, record: &Deployment) -> Result<(), StoreError> {
        check(&record.service)?;
        let mut inner = self.lock();
        inner.write(record_path(&record.service, record.generation))?;
        inner
            .services
            .entry(record.service.clone())
            .or_default()
            .records
            .insert(record.generation, record.clone());
        Ok(())
    }

    fn save_meta(&self, meta: &ServiceMeta) -> Result<(), StoreError> {
        check(&meta.service)?;
        let mut inner = self.lock();
        inner.write(format!("mem://services/{}/current.json", meta.service))?;
        // The torn file is replaced.
        inner.unreadable.remove(&meta.service);
        inner.services.entry(meta.service.clone()).or_default().meta = Some(meta.clone());
        Ok(())
    }

    fn history(&self, service: &str, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        check(service)?;
        let mut inner = self.lock();
        if limit == usize::MAX {
            inner.full_history_reads += 1;
        }
        Ok(inner
            .services
            .get(service)
            .map(|s| {
                s.records
                    .values()
                    .rev()
                    .filter(|d| {
                        !inner
                            .torn_records
                            .contains(&(d.service.clone(), d.generation))
                    })
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn record(&self, service: &str, generation: u64) -> Result<Option<Deployment>, StoreError> {
        check(service)?;
        let inner = self.lock();
        if inner
            .torn_records
            .contains(&(service.to_string(), generation))
        {
            return Err(StoreError::Corrupt {
                path: record_path(service, generation),
                reason: "truncated JSON (a torn write?)".into(),
            });
        }
        Ok(inner
            .services
            .get(service)
            .and_then(|s| s.records.get(&generation))
            .cloned())
    }

    fn prune(&self, service: &str, keep: usize) -> Result<(), StoreError> {
        check(service)?;
        let mut inner = self.lock();
        if let Some((path, error)) = inner.unreadable.get(service) {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                reason: error.clone(),
            });
        }
        let Some(svc) = inner.services.get_mut(service) else {
            return Ok(());
        };
        let protected: BTreeSet<u64> = svc
            .meta
            .iter()
            .flat_map(|m| [m.generation, m.target_generation])
            .collect();
        let doomed: Vec<u64> = svc
            .records
            .keys()
            .rev()
            .skip(keep)
            .filter(|g| !protected.contains(g))
            .copied()
            .collect();
        for generation in doomed {
            svc.records.remove(&generation);
        }
        Ok(())
    }

    fn delete_service(&self, service: &str) -> Result<(), StoreError> {
        check(service)?;
        let mut inner = self.lock();
        inner.services.remove(service);
        inner.unreadable.remove(service);
        Ok(())
    }

    fn append_event(&self, event: &Event, keep: usize) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.events.push(event.clone());
        if inner.events.len() > keep.saturating_mul(2) {
            let cut = inner.events.len().saturating_sub(keep);
            inner.events.drain(..cut);
        }
        Ok(())
    }

    fn load_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock();
        let start = inner.events.len().saturating_sub(limit);
        Ok(inner.events[start..].to_vec())
    }

    fn pulled_images(&self) -> Result<Vec<PulledImage>, StoreError> {
        let inner = self.lock();
        inner.pulled_check()?;
        Ok(inner.pulled.clone())
    }

    fn note_pulled(&self, image: &PulledImage) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.pulled_check()?;
        note_pulled(&mut inner.pulled, image.clone());
        Ok(())
    }

    fn forget_pulled(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.pulled_check()?;
        inner.pulled.retain(|p| !ids.contains(&p.id));
        Ok(())
    }
}

impl Inner {
    fn pulled_check(&self) -> Result<(), StoreError> {
        match &self.pulled_torn {
            Some(reason) => Err(StoreError::Corrupt {
                path: "mem://images/pulled.json".into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_core::event::EventKind;
    use berth_core::record::Status;

    use super::*;

    fn record(service: &str, generation: u64) -> Deployment {
        Deployment {
            id: Deployment::make_id(service, generation),
            service: service.to_string(),
            generation,
            ..Default::default()
        }
    }

    fn meta(service: &str, generation: u64) -> ServiceMeta {
        ServiceMeta {
            service: service.to_string(),
            generation,
            target_generation: generation,
            ..Default::default()
        }
    }

    fn gens(history: Vec<Deployment>) -> Vec<u64> {
        history.into_iter().map(|d| d.generation).collect()
    }

    #[test]
    fn round_trip_like_the_real_store() {
        let store = MemStore::new();
        for g in 1..=5 {
            store.save_record(&record("web", g)).expect("save");
            store.save_meta(&meta("web", g)).expect("save");
        }
        assert_eq!(store.writes(), 10);
        let mut done = record("web", 5);
        done.status = Status::Complete;
        store.save_record(&done).expect("rewrite");

        let loaded = store.load().expect("load");
        assert_eq!(
            loaded,
            [LoadedService::Ok {
                meta: meta("web", 5),
                current: Box::new(done.clone()),
            }]
        );
        assert_eq!(gens(store.history("web", 2).expect("history")), [5, 4]);
        assert_eq!(store.record("web", 5).expect("record"), Some(done));
        assert_eq!(store.record("web", 9).expect("record"), None);

        let mut m = meta("web", 5);
        m.target_generation = 1;
        store.save_meta(&m).expect("save");
        store.prune("web", 2).expect("prune");
        assert_eq!(
            gens(store.history("web", usize::MAX).expect("history")),
            [5, 4, 1]
        );

        store.delete_service("web").expect("delete");
        assert!(store.load().expect("load").is_empty());
        assert!(store.history("web", 10).expect("history").is_empty());
    }

    #[test]
    fn unreadable_and_failures() {
        let store = MemStore::new();
        store.insert_unreadable("web", "truncated JSON at line 1 column 40");
        let loaded = store.load().expect("load");
        assert!(matches!(
            &loaded[..],
            [LoadedService::Unreadable { service, error, .. }]
                if service == "web" && error.contains("truncated")
        ));
        assert!(store.prune("web", 1).is_err(), "cannot tell what to keep");

        store.fail_next_write();
        assert!(matches!(
            store.save_record(&record("api", 1)),
            Err(StoreError::Io { .. })
        ));
        assert_eq!(store.writes(), 0);
        assert!(store.history("api", 10).expect("history").is_empty());
        store
            .save_record(&record("api", 1))
            .expect("only one failure");
        assert_eq!(store.writes(), 1);

        // A record without a meta, and a meta without its record.
        store.save_meta(&meta("db", 2)).expect("save");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.len(), 3, "{loaded:?}");
        assert!(
            loaded
                .iter()
                .all(|l| matches!(l, LoadedService::Unreadable { .. }))
        );

        assert!(matches!(
            store.history("../etc", 1),
            Err(StoreError::InvalidName { .. })
        ));
    }

    #[test]
    fn events_are_compacted() {
        let store = MemStore::new();
        for seq in 1..=7 {
            let event = Event {
                seq,
                at_ms: seq,
                kind: EventKind::Daemon {
                    message: String::new(),
                },
            };
            store.append_event(&event, 3).expect("append");
        }
        let seqs: Vec<u64> = store
            .load_events(10)
            .expect("load")
            .into_iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(store.load_events(1).expect("load")[0].seq, 7);
    }
}
