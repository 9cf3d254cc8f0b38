//! The build context: a directory, tarred the way the docker CLI sends it
//! (paths relative to the context, owner root, modes and symlinks kept).

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use berth_core::dockerignore::{self, Ignore, Walk};
use tar::{EntryType, Header, HeaderMode};

use crate::error::chain;

/// Where the Dockerfile is inside the context: `dockerfile` as given
/// (relative to the context, or absolute but inside it), default `Dockerfile`.
pub(crate) fn dockerfile_in_context(
    context: &Path,
    dockerfile: Option<&str>,
) -> Result<String, String> {
    let given = dockerfile.filter(|d| !d.is_empty()).unwrap_or("Dockerfile");
    let path = Path::new(given);
    let rel: PathBuf = if path.is_absolute() {
        path.strip_prefix(context)
            .map_err(|_| {
                format!(
                    "the Dockerfile {given} is outside the build context {}",
                    context.display()
                )
            })?
            .to_path_buf()
    } else {
        path.components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    };
    if rel.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "the Dockerfile {given} must be inside the build context {}",
            context.display()
        ));
    }
    if !context.join(&rel).is_file() {
        return Err(format!(
            "there is no Dockerfile at {} (the dockerfile is a path inside the context)",
            context.join(&rel).display()
        ));
    }
    // The engine wants `/` separators; on Linux that is what we have.
    Ok(rel.to_string_lossy().into_owned())
}

/// The context's `.dockerignore` (none: nothing ignored); `dockerfile` is
/// the Dockerfile's path in the context, always sent.
pub(crate) fn read_ignore(context: &Path, dockerfile: &str) -> Result<Ignore, String> {
    let path = context.join(dockerignore::FILE_NAME);
    match fs::read_to_string(&path) {
        Ok(text) => {
            Ignore::parse(&text, dockerfile).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
        Err(e) => Err(format!("cannot read {}: {}", path.display(), chain(&e))),
    }
}

/// The context directory as an uncompressed tar written to `out`, without
/// what `ignore` excludes; returns `out`.
pub(crate) fn tar_context<W: Write>(context: &Path, ignore: &Ignore, out: W) -> Result<W, String> {
    let meta = fs::metadata(context).map_err(|e| {
        format!(
            "cannot read the build context {}: {}",
            context.display(),
            chain(&e)
        )
    })?;
    if !meta.is_dir() {
        return Err(format!(
            "the build context {} is not a directory",
            context.display()
        ));
    }
    let mut builder = tar::Builder::new(out);
    add_dir(&mut builder, context, Path::new(""), ignore)
        .map_err(|e| format!("cannot tar the build context {}: {e}", context.display()))?;
    builder.into_inner().map_err(|e| {
        format!(
            "cannot tar the build context {}: {}",
            context.display(),
            chain(&e)
        )
    })
}

fn header_for(meta: &fs::Metadata) -> Header {
    let mut header = Header::new_gnu();
    header.set_metadata_in_mode(meta, HeaderMode::Complete);
    // As the docker CLI does: files in the context belong to root in the image.
    header.set_uid(0);
    header.set_gid(0);
    // Clearing names cannot fail for a GNU header (they fit).
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    header
}

fn add_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    ignore: &Ignore,
) -> Result<(), String> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {}", dir.display(), chain(&e)))?
        .collect::<Result<_, io::Error>>()
        .map_err(|e| format!("{}: {}", dir.display(), chain(&e)))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| format!("{}: {}", path.display(), chain(&e)))?;
        let io_err = |e: io::Error| format!("{}: {}", path.display(), chain(&e));
        let ft = meta.file_type();
        let shown = name.to_string_lossy();
        match ignore.walk(&shown, ft.is_dir()) {
            Walk::Send => {}
            Walk::Descend => {
                add_dir(builder, root, &name, ignore)?;
                continue;
            }
            Walk::Skip => continue,
        }
        if ft.is_dir() {
            let mut header = header_for(&meta);
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &name, io::empty())
                .map_err(io_err)?;
            add_dir(builder, root, &name, ignore)?;
        } else if ft.is_file() {
            let mut header = header_for(&meta);
            let file = fs::File::open(&path).map_err(io_err)?;
            builder
                .append_data(&mut header, &name, file)
                .map_err(io_err)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(io_err)?;
            let mut header = header_for(&meta);
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &name, &target)
                .map_err(io_err)?;
        }
        // Sockets, fifos and devices are not build input: skipped, as the CLI does.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tars_relative_paths_owned_by_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        fs::create_dir(dir.path().join("sub")).expect("mkdir");
        fs::write(dir.path().join("sub/file.txt"), "hello").expect("write");
        std::os::unix::fs::symlink("sub/file.txt", dir.path().join("link")).expect("symlink");

        let bytes = tar_context(dir.path(), &Ignore::default(), Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            assert_eq!(entry.header().uid().expect("uid"), 0);
            assert_eq!(entry.header().gid().expect("gid"), 0);
            if path == "link" {
                assert_eq!(entry.header().entry_type(), EntryType::Symlink);
                assert_eq!(
                    entry
                        .link_name()
                        .expect("link")
                        .expect("target")
                        .to_string_lossy(),
                    "sub/file.txt"
                );
            }
            seen.push(path);
        }
        assert_eq!(seen, vec!["Dockerfile", "link", "sub", "sub/file.txt"]);
    }

    #[test]
    fn dockerignore_leaves_files_out_but_always_sends_the_dockerfile() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        fs::write(dir.path().join(".dockerignore"), "*\n!app\n").expect("write");
        fs::write(dir.path().join("app"), "bin").expect("write");
        fs::create_dir(dir.path().join(".git")).expect("mkdir");
        fs::write(dir.path().join(".git/HEAD"), "ref").expect("write");
        let ignore = read_ignore(dir.path(), "Dockerfile").expect("ignore");
        let bytes = tar_context(dir.path(), &ignore, Vec::new()).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let seen: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(seen, vec![".dockerignore", "Dockerfile", "app"]);
        fs::write(dir.path().join(".dockerignore"), "[\n").expect("write");
        let err = read_ignore(dir.path(), "Dockerfile").expect_err("bad line");
        assert!(
            err.contains(".dockerignore") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn dockerfile_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        fs::create_dir(dir.path().join("docker")).expect("mkdir");
        fs::write(dir.path().join("docker/App.dockerfile"), "FROM scratch\n").expect("write");

        assert_eq!(
            dockerfile_in_context(dir.path(), None).expect("default"),
            "Dockerfile"
        );
        assert_eq!(
            dockerfile_in_context(dir.path(), Some("./docker/App.dockerfile")).expect("relative"),
            "docker/App.dockerfile"
        );
        let abs = dir.path().join("docker/App.dockerfile");
        assert_eq!(
            dockerfile_in_context(dir.path(), abs.to_str()).expect("absolute inside"),
            "docker/App.dockerfile"
        );
        assert!(dockerfile_in_context(dir.path(), Some("Missing")).is_err());
        assert!(dockerfile_in_context(dir.path(), Some("../Dockerfile")).is_err());
        assert!(dockerfile_in_context(dir.path(), Some("/etc/passwd")).is_err());
    }

    #[test]
    fn missing_context_is_an_error() {
        let err = tar_context(
            Path::new("/nonexistent/berth-context"),
            &Ignore::default(),
            Vec::new(),
        )
        .expect_err("missing");
        assert!(err.contains("/nonexistent/berth-context"), "{err}");
    }
}
