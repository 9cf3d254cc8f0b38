//! [`HostFiles`]: the host's files behind core's [`Files`] seam.

use std::collections::BTreeMap;
use std::path::Path;

use berth_core::files::Files;
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

    fn context_hash(&self, dir: &Path, dockerfile: Option<&str>) -> std::io::Result<String> {
        crate::context_hash(dir, dockerfile)
    }
}
