//! [`HostFiles`]: the host's files behind core's [`Files`] seam.

use std::collections::BTreeMap;
use std::path::Path;

use berth_core::files::{ENV_FILE_CAP, Files};
use berth_core::reconfig::ConfigState;
use berth_core::spec::{ConfigMount, SourceKind};

/// The real [`Files`]: config sources through [`crate::read_state`], the
/// outputs dir through [`crate::outputs`] (rustix, `O_NOFOLLOW`, capped),
/// build contexts through [`crate::context_hash`]. Every method blocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostFiles;

impl berth_core::policy::HostPathResolver for HostFiles {
    fn resolve(&self, path: &str) -> Result<std::path::PathBuf, String> {
        crate::hostpath::FsResolver.resolve(path)
    }
}

impl Files for HostFiles {
    fn read_config(
        &self,
        mount: &ConfigMount,
        previous: Option<&ConfigState>,
    ) -> (ConfigState, Option<SourceKind>) {
        crate::read_state(mount, previous)
    }

    fn prepare_outputs(&self, dir: &Path) -> std::io::Result<()> {
        crate::outputs::prepare_outputs_dir(dir)
    }

    fn write_inputs(&self, dir: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
        crate::outputs::write_inputs_dir(dir, values)
    }

    fn read_outputs(&self, dir: &Path, names: &[String]) -> BTreeMap<String, String> {
        crate::outputs::read_outputs(dir, names)
    }

    fn read_env_file(&self, path: &Path) -> std::io::Result<String> {
        read_env_file(path)
    }

    fn context_hash(&self, dir: &Path, dockerfile: Option<&str>) -> std::io::Result<String> {
        crate::context_hash(dir, dockerfile)
    }
}

/// An env file's text: opened without blocking (a FIFO put in its place
/// cannot hold the reading thread), a regular file only, at most
/// [`ENV_FILE_CAP`] bytes, UTF-8. Errors say what is wrong with the file,
/// never what it holds.
fn read_env_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;

    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (an env file is a text file of KEY=VALUE lines)",
        ));
    }
    let mut bytes = Vec::new();
    file.take(ENV_FILE_CAP + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > ENV_FILE_CAP {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {ENV_FILE_CAP} bytes, more than any env file holds"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidData,
            format!("not UTF-8 text (at byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_are_regular_utf8_files_within_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("ok.env");
        std::fs::write(&ok, "A=1\n").expect("write");
        assert_eq!(read_env_file(&ok).expect("read"), "A=1\n");
        let link = dir.path().join("link.env");
        std::os::unix::fs::symlink(&ok, &link).expect("symlink");
        assert_eq!(read_env_file(&link).expect("through a symlink"), "A=1\n");

        let e = read_env_file(&dir.path().join("missing.env")).expect_err("missing");
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = read_env_file(dir.path()).expect_err("a directory");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let fifo = dir.path().join("fifo.env");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
        let e = read_env_file(&fifo).expect_err("a fifo, without blocking");
        assert!(e.to_string().contains("not a regular file"), "{e}");

        let big = dir.path().join("big.env");
        std::fs::write(&big, vec![b'#'; ENV_FILE_CAP as usize + 1]).expect("write");
        let e = read_env_file(&big).expect_err("too big");
        assert!(e.to_string().contains("larger than 1048576 bytes"), "{e}");
        let latin1 = dir.path().join("latin1.env");
        std::fs::write(&latin1, b"A=caf\xe9\n").expect("write");
        let e = read_env_file(&latin1).expect_err("not utf-8");
        assert!(e.to_string().contains("not UTF-8 text (at byte 5)"), "{e}");
        assert!(!e.to_string().contains("caf"), "{e}");
    }
}
