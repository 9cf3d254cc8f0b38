//! Host paths resolved with the filesystem, for the node policy's
//! `allowed_host_paths` ([`berth_core::policy::HostPathResolver`]): the API
//! and upstream resolve when a spec arrives, the loop again right before
//! each container create (through [`crate::HostFiles`], its file seam).
//!
//! A path that does not exist yet resolves to its deepest existing ancestor
//! (symlinks followed) with the rest appended: the engine creates the rest
//! under that ancestor, so the ancestor decides. A dangling symlink on the
//! way, or `..` after a part that does not exist, cannot be resolved and is
//! refused. There is a window between this check and the engine's own
//! lookup at create; the re-check at create keeps it to that call.

use std::path::{Path, PathBuf};

use berth_core::policy::HostPathResolver;

/// Resolves with `std::fs::canonicalize` (every symlink followed).
#[derive(Debug, Clone, Copy, Default)]
pub struct FsResolver;

impl HostPathResolver for FsResolver {
    fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(format!("`{path}` is not an absolute path"));
        }
        let mut cur = p.to_path_buf();
        let mut rest = Vec::new();
        loop {
            match std::fs::canonicalize(&cur) {
                Ok(mut real) => {
                    for c in rest.iter().rev() {
                        real.push(c);
                    }
                    return Ok(real);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if std::fs::symlink_metadata(&cur).is_ok() {
                        return Err(format!(
                            "`{}` is a symlink that leads to nothing (the engine would create what it names)",
                            cur.display()
                        ));
                    }
                    let Some(name) = cur.file_name() else {
                        return Err(format!(
                            "`{}` has `..` after a part that does not exist",
                            cur.display()
                        ));
                    };
                    rest.push(name.to_owned());
                    if !cur.pop() {
                        return Err(format!("no part of `{path}` exists"));
                    }
                }
                Err(e) => return Err(format!("`{}`: {e}", cur.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::policy::NodePolicy;
    use berth_core::runtime::CreateSpec;
    use berth_core::spec::Volume;

    fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn resolves_symlinks_and_paths_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        std::fs::create_dir(root.join("data")).expect("mkdir");
        std::os::unix::fs::symlink("/", root.join("rootlink")).expect("symlink");
        std::os::unix::fs::symlink(root.join("data"), root.join("inside")).expect("symlink");
        std::os::unix::fs::symlink(root.join("nothing/here"), root.join("dangling"))
            .expect("symlink");
        let r = FsResolver;
        assert_eq!(r.resolve(&s(&root.join("data"))), Ok(root.join("data")));
        assert_eq!(
            r.resolve(&s(&root.join("rootlink"))),
            Ok(PathBuf::from("/"))
        );
        assert_eq!(
            r.resolve(&s(&root.join("rootlink/etc"))),
            Ok(PathBuf::from("/etc"))
        );
        assert_eq!(
            r.resolve(&s(&root.join("inside/new/deeper"))),
            Ok(root.join("data/new/deeper"))
        );
        assert_eq!(
            r.resolve(&s(&root.join("rootlink/no-such-dir/x"))),
            Ok(PathBuf::from("/no-such-dir/x"))
        );
        assert!(r.resolve(&s(&root.join("dangling"))).is_err());
        assert!(r.resolve(&s(&root.join("dangling/x"))).is_err());
        assert!(r.resolve(&format!("{}/missing/..", s(&root))).is_err());
        assert!(r.resolve("relative").is_err());
    }

    /// The attack: one pushed service mounts the allowed directory and
    /// plants `rootlink -> /` in it; a second mounts `rootlink`. Accepted
    /// while `d` is a directory, the second is caught at create once `d`
    /// became a symlink out.
    #[test]
    fn a_symlink_planted_after_the_check_is_caught_at_create() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = std::fs::canonicalize(dir.path()).expect("canonical");
        let policy = NodePolicy {
            allowed_host_paths: vec![s(&allowed)],
            ..NodePolicy::default()
        };
        std::os::unix::fs::symlink("/", allowed.join("rootlink")).expect("symlink");
        assert!(
            policy
                .host_path_resolves_inside(&s(&allowed.join("rootlink")), &FsResolver)
                .is_err()
        );

        std::fs::create_dir(allowed.join("d")).expect("mkdir");
        let create = CreateSpec {
            volumes: vec![
                Volume::parse(&format!("{}:/host", s(&allowed.join("d")))).expect("volume"),
            ],
            ..CreateSpec::default()
        };
        assert!(policy.check_create(&create, &FsResolver).is_empty());
        std::fs::remove_dir(allowed.join("d")).expect("rmdir");
        std::os::unix::fs::symlink("/", allowed.join("d")).expect("symlink");
        let v = policy.check_create(&create, &FsResolver);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            (v[0].rule, v[0].field.as_str()),
            ("allowed_host_paths", "volumes[0]")
        );
    }
}
