//! The file seam: the few file operations the loop's jobs need, in berth's
//! words, so the loop names no filesystem call and its tests touch no real
//! files.
//!
//! Every method blocks (it reads the host's files): callers run it off the
//! async workers (`tokio::task::spawn_blocking`), never on the loop. The one
//! exception is resolving a host path for the node policy
//! ([`HostPathResolver`], a few `stat` calls per path), which the loop does
//! right before a create, like the store's reads. The
//! real implementation (std::fs and rustix, `O_NOFOLLOW`, caps) lives in
//! `berth-sources`, the in-memory fake in `berth-fakes`. Everything here is
//! pure: a trait, and [`NoFiles`] for environments without files.

use std::collections::BTreeMap;
use std::path::Path;

use crate::policy::HostPathResolver;
use crate::reconfig::ConfigState;
use crate::spec::{ConfigMount, SourceKind};

/// The loop's file access.
pub trait Files: HostPathResolver + Send + Sync + 'static {
    /// Reads `mount.source` (a file, or a directory recursively): its
    /// content hash, per-file digests, what a bind mount resolves it to and
    /// what kind of path it is. An unreadable source keeps `previous`'s
    /// files and says why, naming the path ([`ConfigState::unreadable`]).
    fn read_config(
        &self,
        mount: &ConfigMount,
        previous: Option<&ConfigState>,
    ) -> (ConfigState, Option<SourceKind>);

    /// Makes a task's outputs directory ready before its container is
    /// created: emptied (or created) and writable by any user.
    fn prepare_outputs(&self, dir: &Path) -> std::io::Result<()>;

    /// Writes a deployment's resolved inputs into `dir` before its
    /// container is created, one file per input named as the input,
    /// replacing what the dir held (a retried create writes it again).
    /// Readable by any user: the container may run as any user.
    fn write_inputs(&self, dir: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()>;

    /// The declared outputs `names` a finished task wrote into `dir`, read
    /// as hostile input: an output that is not there is left out; one that
    /// is refused (a symlink, a FIFO, a device, ...) or cut holds a
    /// `[berth: ...]` note instead of, or after, its text.
    fn read_outputs(&self, dir: &Path, names: &[String]) -> BTreeMap<String, String>;

    /// The text of an `env_file` ([`crate::spec::env_file`]): a regular
    /// file (symlinks followed: the operator's, like a config source), at
    /// most [`ENV_FILE_CAP`] bytes, UTF-8. Read at the apply and again
    /// right before each create; the error names the path, never content.
    fn read_env_file(&self, path: &Path) -> std::io::Result<String>;

    /// The hash a build context is tagged by: every file `.dockerignore`
    /// lets through (relative path, mode, content) and the Dockerfile name;
    /// never mtime.
    fn context_hash(&self, dir: &Path, dockerfile: Option<&str>) -> std::io::Result<String>;
}

/// The largest `env_file` berthd reads (1 MiB): far above any real one,
/// and bounded, as everything berthd reads from the host is.
pub const ENV_FILE_CAP: u64 = 1 << 20;

/// No file access: config sources are unreadable (saying so), a task's
/// outputs dir is left as it is and yields no outputs, a build context
/// cannot be hashed, an env file cannot be read, a host path cannot be
/// resolved (so a policy that asks refuses it). For tests that use none
/// of these.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFiles;

impl HostPathResolver for NoFiles {
    fn resolve(&self, path: &str) -> Result<std::path::PathBuf, String> {
        Err(format!(
            "`{path}` cannot be resolved: this environment has no file access (NoFiles)"
        ))
    }
}

impl Files for NoFiles {
    fn read_config(
        &self,
        mount: &ConfigMount,
        previous: Option<&ConfigState>,
    ) -> (ConfigState, Option<SourceKind>) {
        let error = format!(
            "config source {}: cannot be read: this environment has no file access (NoFiles)",
            mount.source
        );
        (ConfigState::unreadable(mount, previous, error), None)
    }

    fn prepare_outputs(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }

    fn write_inputs(&self, dir: &Path, _values: &BTreeMap<String, String>) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "{}: this environment has no file access (NoFiles)",
                dir.display()
            ),
        ))
    }

    fn read_outputs(&self, _dir: &Path, _names: &[String]) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn read_env_file(&self, path: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "{}: this environment has no file access (NoFiles)",
                path.display()
            ),
        ))
    }

    fn context_hash(&self, dir: &Path, _dockerfile: Option<&str>) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "{}: this environment has no file access (NoFiles)",
                dir.display()
            ),
        ))
    }
}
