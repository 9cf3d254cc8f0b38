//! berth's state directory: the real [`Store`].
//!
//! ```text
//! <state_dir>/                          0700 (tightened at open if looser)
//!   events.jsonl                        append-only event log, one JSON per line
//!   services/<name>/current.json        ServiceMeta: which record is current
//!   services/<name>/history/<gen>.json  Deployment, one per generation
//!   images/pulled.json                  the images berth pulled (pruning removes only those)
//! ```
//!
//! Every directory berth creates is 0700, every file 0600. Files are only
//! ever replaced whole ([`write_atomic`], [`create_atomic`]); a crash leaves
//! at most a stray `.tmp-*` file or a `services/.deleted-*` directory, both
//! swept by [`FsStore::load`]. A file that does not parse is reported
//! ([`LoadedService::Unreadable`]) and never rewritten or removed by berth.
//!
//! All methods block (they `fsync`); async callers run them under
//! `spawn_blocking`. Writes are serialized by an internal lock, reads are not
//! (files are replaced atomically, so a reader sees old or new content).
//!
//! Call [`FsStore::load`] once at start, before writing: it sweeps temp files,
//! and one being written by this process at that moment would be swept too.

mod atomic;
mod events;
mod numbered;
mod outbox;
mod parse;
mod pulled;
mod read;

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use berth_core::event::Event;
use berth_core::images::PulledImage;
use berth_core::record::{Deployment, OUTPUT_CAP};
use berth_core::spec::valid_service_name;
use berth_core::store::{LoadedService, ServiceMeta, Store, StoreError};

pub use atomic::{Created, DIR_MODE, FILE_MODE, TMP_PREFIX, create_atomic, sync_dir, write_atomic};
pub use outbox::{FsOutbox, OUTBOX_DIR, OutboxError, OutboxList, SEQ_FILE, Unreadable};
pub use pulled::{IMAGES_DIR, PULLED_FILE, PULLED_SCHEMA_VERSION};
pub use read::RECORD_MAX_BYTES;

use atomic::{ensure_dir, io_err, sweep_temps};
use events::EventLog;
use pulled::PulledFile;
use read::{ReadError, read_beneath};

/// Name of the event log in the state dir.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Name of a service's meta file.
pub const META_FILE: &str = "current.json";
/// Prefix of a service directory being deleted (see [`Store::delete_service`]).
pub const DELETED_PREFIX: &str = ".deleted-";

/// The state directory. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    services: PathBuf,
    /// Serializes every change to the tree (and the sweep in `load`).
    write_lock: Mutex<()>,
    events: Mutex<EventLog>,
    pulled: PulledFile,
}

impl FsStore {
    /// Opens (creating it, mode 0700, if needed) the state directory.
    ///
    /// An existing state dir that group or others may access is tightened to
    /// 0700 with a warning rather than refused: `StateDirectory=` and
    /// `mkdir -p` make 0755 directories, and the records hold secret env
    /// values, so the safe state is reached without an operator's help.
    pub fn open(state_dir: &Path) -> Result<FsStore, StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(state_dir)
            .map_err(|e| io_err("create the state directory", state_dir, e))?;
        let meta = std::fs::metadata(state_dir)
            .map_err(|e| io_err("inspect the state directory", state_dir, e))?;
        if !meta.is_dir() {
            return Err(io_err(
                "use as the state directory",
                state_dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode != DIR_MODE {
            std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| io_err("set permissions on the state directory", state_dir, e))?;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %state_dir.display(),
                    was = format!("{mode:04o}"),
                    "the state directory was open to other users; tightened it to 0700"
                );
            }
        }
        let services = state_dir.join("services");
        ensure_dir(&services)?;
        Ok(FsStore {
            root: state_dir.to_path_buf(),
            services,
            write_lock: Mutex::new(()),
            events: Mutex::new(EventLog::new(state_dir)),
            pulled: PulledFile::new(state_dir),
        })
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn write_guard(&self) -> MutexGuard<'_, ()> {
        // Nothing behind this lock can be left inconsistent by a panic.
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn events_guard(&self) -> MutexGuard<'_, EventLog> {
        match self.events.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic mid-append: forget what we knew, re-read the file.
                let mut guard = poisoned.into_inner();
                guard.reset();
                self.events.clear_poison();
                guard
            }
        }
    }

    /// `services/<name>`, for a name that is safe as one path component.
    fn service_dir(&self, service: &str) -> Result<PathBuf, StoreError> {
        if !valid_service_name(service) {
            return Err(StoreError::InvalidName {
                service: service.to_string(),
            });
        }
        Ok(self.services.join(service))
    }

    fn history_dir(&self, service: &str) -> Result<PathBuf, StoreError> {
        Ok(self.service_dir(service)?.join("history"))
    }

    /// One service directory at load: `None` when it holds nothing committed.
    fn load_service(&self, service: &str) -> Result<Option<LoadedService>, StoreError> {
        let dir = self.services.join(service);
        let history = dir.join("history");
        for d in [&dir, &history] {
            if let Err(e) = sweep_temps(d) {
                tracing::warn!(error = %e, "cannot sweep temp files");
            }
        }
        let unreadable = |path: &Path, error: String| {
            Some(LoadedService::Unreadable {
                service: service.to_string(),
                path: path.display().to_string(),
                error,
            })
        };
        let meta_path = dir.join(META_FILE);
        let meta: ServiceMeta = match self.read_file(&[service, META_FILE]) {
            Err(e) => return Ok(unreadable(&meta_path, e.reason())),
            Ok(None) => {
                let records = match numbered::list(&history) {
                    Ok(gens) => gens.len(),
                    Err(e) => return Ok(unreadable(&history, e.to_string())),
                };
                if records == 0 {
                    // A crash before the first record was committed: there is
                    // nothing to lose and nothing to report.
                    tracing::warn!(path = %dir.display(), "service directory without records; ignoring it");
                    return Ok(None);
                }
                return Ok(unreadable(
                    &meta_path,
                    format!(
                        "the file is missing, but history/ holds {records} record(s) \
                         (a crash before the service's first current.json was written, \
                         or it was removed)"
                    ),
                ));
            }
            Ok(Some(bytes)) => {
                let path = meta_path.display().to_string();
                match parse::parse(&bytes, service, None, &path) {
                    Ok(meta) => meta,
                    Err(error) => return Ok(unreadable(&meta_path, error)),
                }
            }
        };
        let record_file = numbered::file_name(meta.generation);
        let record_path = history.join(&record_file);
        let current: Deployment = match self.read_file(&[service, "history", &record_file]) {
            Err(e) => return Ok(unreadable(&record_path, e.reason())),
            Ok(None) => {
                return Ok(unreadable(
                    &record_path,
                    format!(
                        "the file is missing, but current.json says generation {} is current",
                        meta.generation
                    ),
                ));
            }
            Ok(Some(bytes)) => {
                let path = record_path.display().to_string();
                match parse::parse(&bytes, service, Some(meta.generation), &path) {
                    Ok(record) => record,
                    Err(error) => return Ok(unreadable(&record_path, error)),
                }
            }
        };
        Ok(Some(LoadedService::Ok {
            meta,
            current: Box::new(current),
        }))
    }

    /// Reads `services/<rel...>`: never through a symlink, only a regular
    /// file, at most [`RECORD_MAX_BYTES`]. `Ok(None)` if it is not there.
    fn read_file(&self, rel: &[&str]) -> Result<Option<Vec<u8>>, ReadError> {
        read_beneath(&self.services, rel, RECORD_MAX_BYTES)
    }

    /// [`FsStore::read_file`] for a caller that wants a [`StoreError`]: a
    /// refused file is [`StoreError::Corrupt`], as a torn one is.
    fn read_file_or_corrupt(
        &self,
        rel: &[&str],
        path: &Path,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_file(rel).map_err(|e| match e {
            ReadError::Io(source) => io_err("read", path, source),
            ReadError::Refused(reason) => StoreError::Corrupt {
                path: path.display().to_string(),
                reason,
            },
        })
    }

    /// Reads one history record; `Ok(None)` if it is not there.
    fn read_record(
        &self,
        service: &str,
        generation: u64,
    ) -> Result<Option<Deployment>, StoreError> {
        let name = numbered::file_name(generation);
        let path = self.history_dir(service)?.join(&name);
        let Some(bytes) = self.read_file_or_corrupt(&[service, "history", &name], &path)? else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        parse::parse(&bytes, service, Some(generation), &shown)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt {
                path: shown,
                reason,
            })
    }
}

impl Store for FsStore {
    /// Sweeps stray temp files and half-deleted service directories, then
    /// reads every service. Entries of `services/` that are not valid service
    /// names are left alone with a warning. A missing, empty, torn or foreign
    /// `current.json` or current record makes the service
    /// [`LoadedService::Unreadable`]; a directory with no record at all (a
    /// crash before the first one was written) is skipped with a warning.
    fn load(&self) -> Result<Vec<LoadedService>, StoreError> {
        let _guard = self.write_guard();
        for d in [&self.root, &self.services, &self.root.join(IMAGES_DIR)] {
            if let Err(e) = sweep_temps(d) {
                tracing::warn!(error = %e, "cannot sweep temp files");
            }
        }
        let mut names = Vec::new();
        let mut symlinked = Vec::new();
        let entries =
            std::fs::read_dir(&self.services).map_err(|e| io_err("list", &self.services, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &self.services, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %path.display(), "ignoring an entry whose name is not UTF-8");
                continue;
            };
            if name.starts_with(DELETED_PREFIX) {
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::warn!(path = %path.display(), "finished removing a deleted service's directory")
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot remove a deleted service's directory")
                    }
                }
                continue;
            }
            let kind = entry.file_type().ok();
            if valid_service_name(&name) && kind.is_some_and(|t| t.is_symlink()) {
                // Reported, so berthd neither manages the service nor writes
                // through the link.
                let target = std::fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                tracing::error!(path = %path.display(), %target, "a service directory is a symlink");
                symlinked.push(LoadedService::Unreadable {
                    service: name,
                    path: path.display().to_string(),
                    error: format!(
                        "the service directory is a symlink (to {target}); berth does not \
                         follow symlinks in its state directory"
                    ),
                });
                continue;
            }
            let is_dir = kind.is_some_and(|t| t.is_dir());
            if !valid_service_name(&name) || !is_dir {
                tracing::warn!(path = %path.display(), "ignoring an entry that is not a service directory");
                continue;
            }
            names.push(name);
        }
        names.sort();
        let mut loaded = Vec::with_capacity(names.len() + symlinked.len());
        for name in names {
            if let Some(service) = self.load_service(&name)? {
                loaded.push(service);
            }
        }
        loaded.extend(symlinked);
        loaded.sort_by(|a, b| loaded_name(a).cmp(loaded_name(b)));
        Ok(loaded)
    }

    /// A generation not yet on disk is created with [`create_atomic`], so it
    /// can never clobber one written meanwhile ([`StoreError::Exists`]); an
    /// existing one (its status moved) is replaced with [`write_atomic`].
    fn save_record(&self, record: &Deployment) -> Result<(), StoreError> {
        let dir = self.service_dir(&record.service)?;
        let history = dir.join("history");
        let name = numbered::file_name(record.generation);
        let path = history.join(&name);
        let bytes = record_json(record, &path)?;
        let _guard = self.write_guard();
        ensure_dir(&dir)?;
        ensure_dir(&history)?;
        let exists = match std::fs::symlink_metadata(&path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err("inspect", &path, e)),
        };
        if exists {
            return write_atomic(&history, &name, &bytes);
        }
        match create_atomic(&history, &name, &bytes)? {
            Created::Created => Ok(()),
            Created::AlreadyExists => Err(StoreError::Exists {
                service: record.service.clone(),
                generation: record.generation,
            }),
        }
    }

    fn save_meta(&self, meta: &ServiceMeta) -> Result<(), StoreError> {
        let dir = self.service_dir(&meta.service)?;
        let bytes = to_json(meta, &dir.join(META_FILE))?;
        let _guard = self.write_guard();
        ensure_dir(&dir)?;
        write_atomic(&dir, META_FILE, &bytes)
    }

    /// Newest first. A history file that does not parse is skipped with a
    /// warning (it is not the current record; `load` reports that one). An
    /// unknown service has no history.
    fn history(&self, service: &str, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        let history = self.history_dir(service)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for generation in numbered::list(&history)?.into_iter().rev() {
            match self.read_record(service, generation) {
                Ok(Some(record)) => out.push(record),
                // Pruned meanwhile.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(service, generation, error = %e, "skipping an unreadable history record");
                    continue;
                }
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// `Ok(None)` if there is no such record; [`StoreError::Corrupt`] if its
    /// file does not parse.
    fn record(&self, service: &str, generation: u64) -> Result<Option<Deployment>, StoreError> {
        self.read_record(service, generation)
    }

    /// Never removes the generations `current.json` names (current and
    /// target), even beyond `keep`. Refuses (with [`StoreError::Corrupt`])
    /// when `current.json` exists but does not parse, as it cannot tell which
    /// records are still needed.
    fn prune(&self, service: &str, keep: usize) -> Result<(), StoreError> {
        let dir = self.service_dir(service)?;
        let history = dir.join("history");
        let _guard = self.write_guard();
        let gens = numbered::list(&history)?;
        if gens.len() <= keep {
            return Ok(());
        }
        let meta_path = dir.join(META_FILE);
        let mut protected = BTreeSet::new();
        if let Some(bytes) = self.read_file_or_corrupt(&[service, META_FILE], &meta_path)? {
            let shown = meta_path.display().to_string();
            let meta: ServiceMeta =
                parse::parse(&bytes, service, None, &shown).map_err(|reason| {
                    StoreError::Corrupt {
                        path: shown.clone(),
                        reason,
                    }
                })?;
            protected.insert(meta.generation);
            protected.insert(meta.target_generation);
        }
        let mut removed = 0;
        for generation in gens.iter().rev().skip(keep) {
            if protected.contains(generation) {
                continue;
            }
            let path = history.join(numbered::file_name(*generation));
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path, e)),
            }
        }
        if removed > 0 {
            sync_dir(&history)?;
        }
        Ok(())
    }

    /// Renames the directory to `services/.deleted-<name>-<random>` (atomic,
    /// made durable), then removes it: a crash in between leaves a directory
    /// `load` finishes removing, never half a service that looks live. A
    /// service that does not exist is already deleted.
    fn delete_service(&self, service: &str) -> Result<(), StoreError> {
        let dir = self.service_dir(service)?;
        let _guard = self.write_guard();
        let tomb = self.services.join(format!(
            "{DELETED_PREFIX}{service}-{:016x}",
            rand::random::<u64>()
        ));
        match std::fs::rename(&dir, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("move aside the directory", &dir, e)),
        }
        sync_dir(&self.services)?;
        // The service is gone; what is left is swept at the next start.
        if let Err(e) = std::fs::remove_dir_all(&tomb) {
            tracing::warn!(path = %tomb.display(), error = %e, "cannot remove a deleted service's directory; it is removed at the next start");
        }
        Ok(())
    }

    /// Appends one JSON line to `events.jsonl`. The line is written with a
    /// single `write` (no user-space buffer, so nothing waits for a flush)
    /// but is **not** `fsync`ed: a power loss may drop the last few events,
    /// which is acceptable for a log, and an fsync per event would cost more
    /// than the event is worth. A crash mid-write leaves a torn last line,
    /// which is terminated before the next append and skipped when read.
    /// Past `2 × keep` lines the file is rewritten (with [`write_atomic`],
    /// durably) to the newest `keep`.
    fn append_event(&self, event: &Event, keep: usize) -> Result<(), StoreError> {
        self.events_guard().append(event, keep)
    }

    fn load_events(&self, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.events_guard().load(limit)
    }

    fn pulled_images(&self) -> Result<Vec<PulledImage>, StoreError> {
        self.pulled.read()
    }

    fn note_pulled(&self, image: &PulledImage) -> Result<(), StoreError> {
        let _guard = self.write_guard();
        self.pulled.note(image)
    }

    fn forget_pulled(&self, ids: &[String]) -> Result<(), StoreError> {
        let _guard = self.write_guard();
        self.pulled.forget(ids)
    }
}

fn loaded_name(loaded: &LoadedService) -> &str {
    match loaded {
        LoadedService::Ok { meta, .. } => &meta.service,
        LoadedService::Unreadable { service, .. } => service,
    }
}

/// `record` as it is written: pretty JSON of at most [`RECORD_MAX_BYTES`],
/// so that it can always be read back. Past that (outputs full of control
/// characters, which grow sixfold as JSON escapes), its outputs are cut,
/// each to the same length, shorter until it fits, with a note.
fn record_json(record: &Deployment, path: &Path) -> Result<Vec<u8>, StoreError> {
    let bytes = to_json(record, path)?;
    if bytes.len() as u64 <= RECORD_MAX_BYTES {
        return Ok(bytes);
    }
    let was = bytes.len();
    let mut keep = OUTPUT_CAP;
    loop {
        keep /= 4;
        let mut fitted = record.clone();
        let note = format!(
            "\n[berth: output cut to {keep} bytes to keep the record under {} MiB]",
            RECORD_MAX_BYTES >> 20
        );
        let o = &mut fitted.outputs;
        for text in o
            .deploy_stdout
            .iter_mut()
            .chain(o.deploy_stderr.iter_mut())
            .chain(o.declared.values_mut())
        {
            if text.len() > keep {
                let mut cut = keep;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str(&note);
            }
        }
        let bytes = to_json(&fitted, path)?;
        if bytes.len() as u64 <= RECORD_MAX_BYTES {
            tracing::warn!(
                path = %path.display(),
                was,
                keep,
                "a record was too large to store whole; its outputs were cut"
            );
            return Ok(bytes);
        }
        if keep == 0 {
            return Err(io_err(
                "write",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the record is {} bytes even without its outputs, more than the {} MiB \
                         a record can be; make the service's spec smaller",
                        bytes.len(),
                        RECORD_MAX_BYTES >> 20
                    ),
                ),
            ));
        }
    }
}

/// Pretty JSON (operators read these files) with a final newline.
fn to_json<T: serde::Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| io_err("serialize", path, io::Error::other(e)))?;
    bytes.push(b'\n');
    Ok(bytes)
}
