//! Hashing a build context: the tag berth builds an image under comes from
//! the content `.dockerignore` lets through, so an unchanged context is
//! never rebuilt. Blocking std::fs reads: run it off the async workers.

use std::path::Path;

use berth_core::dockerignore::{self, Ignore, Walk};
use berth_core::hash::sha256_hex;
use sha2::{Digest, Sha256};

/// sha256 over every file under `dir` that `.dockerignore` lets through
/// (relative path, mode, content), sorted; plus the Dockerfile name. Never
/// mtime. So a change to an ignored file rebuilds nothing, as it would
/// change nothing in the image.
pub fn context_hash(dir: &Path, dockerfile: Option<&str>) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let ignore = read_ignore(dir, dockerfile)?;
    let mut files = Vec::new();
    collect(dir, dir, &ignore, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    h.update(dockerfile.unwrap_or("Dockerfile").as_bytes());
    h.update([0]);
    for rel in files {
        let path = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&path)?;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(format!("{:o}", meta.permissions().mode()).as_bytes());
        h.update([0]);
        if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
        } else {
            h.update(std::fs::read(&path)?);
        }
        h.update([0]);
    }
    Ok(sha256_hex(&h.finalize()))
}

/// The context's `.dockerignore`, as the build will read it.
fn read_ignore(dir: &Path, dockerfile: Option<&str>) -> std::io::Result<Ignore> {
    let given = Path::new(dockerfile.unwrap_or("Dockerfile"));
    let in_context = given.strip_prefix(dir).unwrap_or(given);
    let path = dir.join(dockerignore::FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ignore::parse(&text, &in_context.to_string_lossy()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ignore::default()),
        Err(e) => Err(e),
    }
}

fn collect(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        match ignore.walk(&rel, ft.is_dir()) {
            Walk::Skip => {}
            Walk::Descend => collect(root, &path, ignore, out)?,
            Walk::Send if ft.is_dir() => collect(root, &path, ignore, out)?,
            Walk::Send => out.push(rel),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_hash_ignores_mtime_and_sees_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), "1").expect("write");
        let h1 = context_hash(dir.path(), None).expect("hash");
        // Same bytes rewritten: same hash.
        std::fs::write(dir.path().join("sub/a"), "1").expect("write");
        assert_eq!(h1, context_hash(dir.path(), None).expect("hash"));
        std::fs::write(dir.path().join("sub/a"), "2").expect("write");
        assert_ne!(h1, context_hash(dir.path(), None).expect("hash"));
        assert_ne!(
            context_hash(dir.path(), None).expect("hash"),
            context_hash(dir.path(), Some("Other")).expect("hash")
        );
    }

    #[test]
    fn an_ignored_file_changes_nothing_and_the_ignore_file_itself_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").expect("write");
        std::fs::write(dir.path().join("app"), "bin").expect("write");
        let h1 = context_hash(dir.path(), None).expect("hash");
        std::fs::write(dir.path().join("build.log"), "noise").expect("write");
        assert_eq!(h1, context_hash(dir.path(), None).expect("hash"));
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n# changed\n").expect("write");
        assert_ne!(h1, context_hash(dir.path(), None).expect("hash"));
        std::fs::write(dir.path().join(".dockerignore"), "[\n").expect("write");
        let e = context_hash(dir.path(), None).expect_err("bad ignore file");
        assert!(e.to_string().contains(".dockerignore: line 1"), "{e}");
    }
}
