//! Resolving a spec's image to an image id: inspect a reference, build a
//! context (tagged by the hash of its content, so an unchanged context is never
//! rebuilt), or load a tarball. The context is hashed by [`Files`]
//! (`Env::files`), off the async workers.

use std::path::Path;
use std::sync::Arc;

use berth_core::files::Files;
use berth_core::runtime::{Runtime, RuntimeError};
use berth_core::spec::ImageSource;

use crate::Env;

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

/// Resolves `image` for `service` to an image id.
pub async fn resolve<E: Env>(
    env: &Arc<E>,
    service: &str,
    image: &ImageSource,
) -> Result<String, RuntimeError> {
    let runtime = env.runtime();
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
                let env = env.clone();
                move || {
                    env.files()
                        .context_hash(Path::new(&context), dockerfile.as_deref())
                }
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
