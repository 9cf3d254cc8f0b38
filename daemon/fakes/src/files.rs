//! [`FakeFiles`]: the test twin of `berth_sources::HostFiles`, in memory.
//! Config sources are files and directories by path, a task's outputs are
//! text by dir and name, a build context is the hash a test gives it. A
//! clone shares the same files, so a test keeps one and hands one to the
//! `Env`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_core::confighash::{FileEntry, config_hash, file_digest};
use berth_core::files::Files;
use berth_core::reconfig::ConfigState;
use berth_core::spec::{ConfigMount, SourceKind};

/// The mode a fake regular file has (`st_mode`).
pub const FILE_MODE: u32 = 0o100644;

#[derive(Debug, Default)]
struct Inner {
    /// Regular files: path → (inode, content).
    files: BTreeMap<PathBuf, (u64, Vec<u8>)>,
    /// Directories: path → inode.
    dirs: BTreeMap<PathBuf, u64>,
    next_ino: u64,
    /// A task's outputs: dir → name → text as the reader returns it.
    outputs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    /// Inputs written: dir → name → value.
    inputs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    /// Every `prepare_outputs`, in order.
    prepared: Vec<PathBuf>,
    /// The next `prepare_outputs` fails with this.
    fail_prepare: Option<String>,
    /// Build context dir → hash.
    contexts: BTreeMap<PathBuf, String>,
    /// Every `read_config`'s source, in order.
    config_reads: Vec<String>,
    /// Every `read_env_file`'s path, in order.
    env_file_reads: Vec<PathBuf>,
    /// Host paths that are symlinks, for the node policy's resolver: path
    /// → target (absolute).
    links: BTreeMap<PathBuf, PathBuf>,
}

impl Inner {
    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    /// `dir` and its ancestors exist (as `mkdir -p`).
    fn mkdir_p(&mut self, dir: &Path) {
        for a in dir.ancestors() {
            if a.as_os_str().is_empty() || self.dirs.contains_key(a) {
                continue;
            }
            let ino = self.ino();
            self.dirs.insert(a.to_path_buf(), ino);
        }
    }
}

/// An in-memory [`Files`].
#[derive(Debug, Clone, Default)]
pub struct FakeFiles {
    inner: Arc<Mutex<Inner>>,
}

impl FakeFiles {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Writes a regular file, its parent directories made as needed. A
    /// rewrite keeps the file's identity (its inode), as `std::fs::write`.
    pub fn write(&self, path: impl AsRef<Path>, content: impl AsRef<[u8]>) {
        let path = path.as_ref();
        let mut inner = self.lock();
        if let Some(parent) = path.parent() {
            inner.mkdir_p(parent);
        }
        let ino = match inner.files.get(path) {
            Some((ino, _)) => *ino,
            None => inner.ino(),
        };
        inner
            .files
            .insert(path.to_path_buf(), (ino, content.as_ref().to_vec()));
    }

    /// Makes a directory (and its parents).
    pub fn mkdir(&self, path: impl AsRef<Path>) {
        self.lock().mkdir_p(path.as_ref());
    }

    /// Removes `path` and everything under it. Made again later, it is a
    /// new file or directory (a new inode).
    pub fn remove(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let mut inner = self.lock();
        inner.files.retain(|p, _| !p.starts_with(path));
        inner.dirs.retain(|p, _| !p.starts_with(path));
    }

    /// Sets what the reader returns for output `name` in `dir` (the text,
    /// or a `[berth: ...]` note as the real reader writes one).
    pub fn set_output(&self, dir: impl AsRef<Path>, name: &str, text: &str) {
        self.lock()
            .outputs
            .entry(dir.as_ref().to_path_buf())
            .or_default()
            .insert(name.to_string(), text.to_string());
    }

    /// Every outputs dir prepared, in order.
    pub fn prepared(&self) -> Vec<PathBuf> {
        self.lock().prepared.clone()
    }

    /// The next `prepare_outputs` fails with `message`.
    pub fn fail_next_prepare(&self, message: &str) {
        self.lock().fail_prepare = Some(message.to_string());
    }

    /// Sets the hash of the build context in `dir`.
    pub fn set_context_hash(&self, dir: impl AsRef<Path>, hash: &str) {
        self.lock()
            .contexts
            .insert(dir.as_ref().to_path_buf(), hash.to_string());
    }

    /// Every config source read, in order.
    pub fn config_reads(&self) -> Vec<String> {
        self.lock().config_reads.clone()
    }

    /// Every env file read, in order.
    pub fn env_file_reads(&self) -> Vec<PathBuf> {
        self.lock().env_file_reads.clone()
    }

    /// The inputs written into `dir` (empty when none were).
    pub fn inputs_in(&self, dir: impl AsRef<Path>) -> BTreeMap<String, String> {
        self.lock()
            .inputs
            .get(dir.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// Every dir inputs were written into.
    pub fn input_dirs(&self) -> Vec<PathBuf> {
        self.lock().inputs.keys().cloned().collect()
    }
}

impl FakeFiles {
    /// Makes `path` a symlink to `target` (absolute) for host-path
    /// resolution, replacing whatever was there (as a container that
    /// mounts the parent could).
    pub fn symlink(&self, path: impl AsRef<Path>, target: impl AsRef<Path>) {
        let mut inner = self.lock();
        let path = path.as_ref().to_path_buf();
        inner.dirs.remove(&path);
        inner.files.remove(&path);
        inner.links.insert(path, target.as_ref().to_path_buf());
    }
}

/// Resolves like `canonicalize` over the fake's symlinks: each link on the
/// way is replaced by its target (at most 40 times, as the kernel's
/// ELOOP); `.` and `..` are taken lexically. Every path exists here.
impl berth_core::policy::HostPathResolver for FakeFiles {
    fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        use std::path::Component;
        if !Path::new(path).is_absolute() {
            return Err(format!("`{path}` is not an absolute path"));
        }
        let inner = self.lock();
        let mut todo: Vec<Component> = Path::new(path).components().collect();
        todo.reverse();
        let mut out = PathBuf::from("/");
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => {
                    out.push(name);
                    if let Some(target) = inner.links.get(&out) {
                        hops += 1;
                        if hops > 40 {
                            return Err(format!("`{path}`: too many levels of symbolic links"));
                        }
                        out.pop();
                        let mut rest: Vec<Component> = target.components().collect();
                        rest.reverse();
                        if target.is_absolute() {
                            out = PathBuf::from("/");
                        }
                        todo.extend(rest);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Files for FakeFiles {
    fn read_config(
        &self,
        mount: &ConfigMount,
        previous: Option<&ConfigState>,
    ) -> (ConfigState, Option<SourceKind>) {
        let path = Path::new(&mount.source);
        let mut inner = self.lock();
        inner.config_reads.push(mount.source.clone());
        let (kind, root, entries) = if let Some((ino, content)) = inner.files.get(path) {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".to_string());
            let entry = FileEntry {
                rel_path: name,
                mode: FILE_MODE,
                content: content.clone(),
            };
            (SourceKind::File, *ino, vec![entry])
        } else if let Some(ino) = inner.dirs.get(path) {
            let entries = inner
                .files
                .iter()
                .filter_map(|(p, (_, content))| {
                    let rel = p.strip_prefix(path).ok()?;
                    Some(FileEntry {
                        rel_path: rel.to_string_lossy().into_owned(),
                        mode: FILE_MODE,
                        content: content.clone(),
                    })
                })
                .collect();
            (SourceKind::Directory, *ino, entries)
        } else {
            // What the real reader says of a missing source.
            let error = format!(
                "config source {}: cannot stat: No such file or directory (os error 2)",
                mount.source
            );
            return (ConfigState::unreadable(mount, previous, error), None);
        };
        let files = entries
            .iter()
            .map(|e| (e.rel_path.clone(), file_digest(e.mode, &e.content)))
            .collect();
        let state = ConfigState {
            source: mount.source.clone(),
            target: mount.target.clone(),
            hash: Some(config_hash(&entries)),
            files,
            // A fake device 1: the inode is what tells a replaced source.
            root: Some(format!("1:{root}")),
            error: None,
        };
        (state, Some(kind))
    }

    fn prepare_outputs(&self, dir: &Path) -> std::io::Result<()> {
        let mut inner = self.lock();
        if let Some(message) = inner.fail_prepare.take() {
            return Err(std::io::Error::other(message));
        }
        inner.prepared.push(dir.to_path_buf());
        inner.outputs.remove(dir);
        Ok(())
    }

    fn write_inputs(&self, dir: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
        self.lock().inputs.insert(dir.to_path_buf(), values.clone());
        Ok(())
    }

    fn read_outputs(&self, dir: &Path, names: &[String]) -> BTreeMap<String, String> {
        let inner = self.lock();
        let Some(written) = inner.outputs.get(dir) else {
            return BTreeMap::new();
        };
        names
            .iter()
            .filter_map(|n| written.get(n).map(|t| (n.clone(), t.clone())))
            .collect()
    }

    /// A regular file written with [`FakeFiles::write`], as UTF-8; a
    /// directory or a missing path is an error naming it, as the real one.
    fn read_env_file(&self, path: &Path) -> std::io::Result<String> {
        use std::io::{Error, ErrorKind};
        let mut inner = self.lock();
        inner.env_file_reads.push(path.to_path_buf());
        match inner.files.get(path) {
            Some((_, content)) => String::from_utf8(content.clone())
                .map_err(|_| Error::new(ErrorKind::InvalidData, "not UTF-8 text")),
            None if inner.dirs.contains_key(path) => Err(Error::new(
                ErrorKind::InvalidInput,
                "not a regular file (an env file is a text file of KEY=VALUE lines)",
            )),
            None => Err(Error::new(
                ErrorKind::NotFound,
                "No such file or directory (os error 2)",
            )),
        }
    }

    fn context_hash(&self, dir: &Path, _dockerfile: Option<&str>) -> std::io::Result<String> {
        match self.lock().contexts.get(dir) {
            Some(hash) => Ok(hash.clone()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such build context (FakeFiles)", dir.display()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::policy::HostPathResolver;
    use berth_core::spec::OnChange;

    #[test]
    fn host_paths_resolve_through_the_fake_symlinks() {
        let f = FakeFiles::new();
        let r = |p: &str| f.resolve(p);
        assert_eq!(r("/srv/a/./b/../c"), Ok(PathBuf::from("/srv/a/c")));
        f.symlink("/srv/a/root", "/");
        assert_eq!(r("/srv/a/root/etc"), Ok(PathBuf::from("/etc")));
        f.symlink("/srv/a/up", "../x");
        assert_eq!(r("/srv/a/up/y"), Ok(PathBuf::from("/srv/x/y")));
        f.symlink("/srv/loop", "/srv/loop");
        assert!(r("/srv/loop/z").is_err_and(|e| e.contains("too many levels")));
        assert!(r("relative").is_err());
    }

    fn mount(source: &str) -> ConfigMount {
        ConfigMount {
            source: source.into(),
            target: "/etc/x".into(),
            on_change: OnChange::Restart,
        }
    }

    #[test]
    fn a_directory_reads_like_the_real_one_and_a_replaced_one_is_a_new_root() {
        let f = FakeFiles::new();
        f.write("/cfg/web/app.conf", "a=1\n");
        f.write("/cfg/web/sub/b.conf", "b");
        f.write("/cfg/other/c.conf", "c");
        let (a, kind) = f.read_config(&mount("/cfg/web"), None);
        assert_eq!(kind, Some(SourceKind::Directory));
        assert_eq!(
            a.files.keys().collect::<Vec<_>>(),
            ["app.conf", "sub/b.conf"]
        );
        f.write("/cfg/web/app.conf", "a=1\n");
        assert_eq!(f.read_config(&mount("/cfg/web"), None).0, a);
        f.write("/cfg/web/app.conf", "a=2\n");
        let b = f.read_config(&mount("/cfg/web"), None).0;
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.root, b.root);

        f.remove("/cfg/web");
        let (gone, kind) = f.read_config(&mount("/cfg/web"), Some(&b));
        assert_eq!((gone.hash.clone(), kind), (None, None));
        assert!(
            gone.error
                .as_deref()
                .is_some_and(|e| e.contains("/cfg/web")),
            "{gone:?}"
        );
        assert_eq!(gone.files, b.files);
        f.write("/cfg/web/app.conf", "a=2\n");
        f.write("/cfg/web/sub/b.conf", "b");
        let back = f.read_config(&mount("/cfg/web"), None).0;
        assert_eq!(back.hash, b.hash);
        assert_ne!(back.root, b.root);
    }

    #[test]
    fn a_file_source_is_a_file_hashed_under_its_name() {
        let f = FakeFiles::new();
        f.write("/cfg/app.conf", "x");
        let (s, kind) = f.read_config(&mount("/cfg/app.conf"), None);
        assert_eq!(kind, Some(SourceKind::File));
        assert_eq!(s.files.keys().collect::<Vec<_>>(), ["app.conf"]);
    }

    #[test]
    fn outputs_are_emptied_by_a_prepare_and_read_by_name() {
        let f = FakeFiles::new();
        let dir = Path::new("/state/outputs/t");
        f.set_output(dir, "old", "stale");
        f.prepare_outputs(dir).expect("prepare");
        assert!(f.read_outputs(dir, &["old".into()]).is_empty());
        f.set_output(dir, "result", "42");
        let got = f.read_outputs(dir, &["result".into(), "absent".into()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got["result"], "42");
        assert_eq!(f.prepared(), vec![dir.to_path_buf()]);
        f.fail_next_prepare("read-only file system");
        assert!(f.prepare_outputs(dir).is_err());
        assert!(f.prepare_outputs(dir).is_ok());
    }
}
