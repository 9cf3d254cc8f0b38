//! Resolving a spec's image to an image id: inspect a reference, build a
//! context (tagged by the hash of its content, so an unchanged context is never
//! rebuilt), or load a tarball.

use std::path::Path;

use berth_core::dockerignore::{self, Ignore, Walk};
use berth_core::hash::sha256_hex;
use berth_core::runtime::{Runtime, RuntimeError};
use berth_core::spec::ImageSource;
use sha2::{Digest, Sha256};

/// The tag berth gives an image it builds for `service` from a context whose
/// content hashes to `hash`.
pub fn build_tag(service: &str, hash: &str) -> String {
    format!(
        "{}:{}",
        build_repository(service),
        &hash[..hash.len().min(16)]
    )
}

/// The repository of the images berth builds for `service`.
pub fn build_repository(service: &str) -> String {
    format!("berth-build/{service}")
}

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

/// Resolves `image` for `service` to an image id.
pub async fn resolve<R: Runtime>(
    runtime: &R,
    service: &str,
    image: &ImageSource,
) -> Result<String, RuntimeError> {
    match image {
        ImageSource::Ref(reference) => match runtime.inspect_image(reference).await? {
            Some(info) => Ok(info.id),
            None => Err(RuntimeError::ImageNotFound {
                image: reference.clone(),
            }),
        },
        ImageSource::Build { build } => {
            let context = build.context.clone();
            let dockerfile = build.dockerfile.clone();
            let hash = tokio::task::spawn_blocking({
                let context = context.clone();
                move || context_hash(Path::new(&context), dockerfile.as_deref())
            })
            .await
            .map_err(|e| RuntimeError::Build {
                tag: service.to_string(),
                context: context.clone(),
                message: format!("hashing the context panicked: {e}"),
            })?
            .map_err(|e| RuntimeError::Build {
                tag: service.to_string(),
                context: context.clone(),
                message: format!("cannot read the build context: {e}"),
            })?;
            let tag = build_tag(service, &hash);
            if let Some(info) = runtime.inspect_image(&tag).await? {
                return Ok(info.id);
            }
            tracing::info!(service, %tag, context = %context, "building image (context changed or never built)");
            runtime
                .build(&context, build.dockerfile.as_deref(), &tag)
                .await
        }
        ImageSource::Load { load } => {
            let refs = runtime.load(load).await?;
            let Some(first) = refs.first() else {
                return Err(RuntimeError::Load {
                    path: load.clone(),
                    message: "the tarball contained no image".into(),
                });
            };
            match runtime.inspect_image(first).await? {
                Some(info) => Ok(info.id),
                None => Err(RuntimeError::Load {
                    path: load.clone(),
                    message: format!("loaded `{first}` but the engine cannot find it"),
                }),
            }
        }
    }
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
