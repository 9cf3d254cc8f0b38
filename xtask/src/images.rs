//! `cargo xtask images`: build `berth-demo:latest` from `images/demo`.
//!
//! Idempotent and fast when nothing changed (a no-op cargo build, one hash,
//! one `docker image inspect`), so integration tests can simply run it first.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::elf;

pub const DEMO_IMAGE: &str = "berth-demo:latest";
/// Image label holding the sha256 of the `/demo` binary inside it.
pub const LABEL_DEMO_SHA256: &str = "io.berth.demo-sha256";
/// Image label holding the sha256 of the rest of the build context (the
/// Dockerfile and the layout xtask adds), so editing the Dockerfile rebuilds too.
pub const LABEL_CONTEXT_SHA256: &str = "io.berth.demo-context-sha256";
/// Bump when [`BuildContext::create`] changes what it puts in the context.
const CONTEXT_LAYOUT: &[u8] = b"context v1: Dockerfile, demo (0755), rootfs/tmp (1777)\n";
pub const DEMO_TARGET: &str = "x86_64-unknown-linux-gnu";
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

#[derive(Debug, Clone)]
pub struct Options {
    /// Image tag to build.
    pub tag: String,
    /// Build the image even if its label says it is current.
    pub force: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tag: DEMO_IMAGE.to_string(),
            force: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub tag: String,
    pub binary: PathBuf,
    pub sha256: String,
    /// False when the existing image already carried this binary.
    pub built: bool,
    /// `sha256:...` of the image.
    pub image_id: String,
}

pub fn demo_dir(root: &Path) -> PathBuf {
    root.join("images/demo")
}

pub fn demo_binary(root: &Path) -> PathBuf {
    demo_dir(root).join(format!("target/{DEMO_TARGET}/release/demo"))
}

/// Builds the static demo binary and, if needed, the image. See the module docs.
pub fn build_demo_image(root: &Path, opts: &Options) -> Result<Report> {
    let dir = demo_dir(root);
    build_static_binary(&dir)?;

    let binary = demo_binary(root);
    let bytes = fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let info = elf::inspect(&bytes).with_context(|| format!("inspecting {}", binary.display()))?;
    if !info.is_static() {
        bail!(
            "{} is not static (interpreter {:?}, {} needed libraries); a FROM scratch image cannot run it",
            binary.display(),
            info.interp,
            info.needed
        );
    }
    let sha256 = hex(&Sha256::digest(&bytes));
    let dockerfile = dir.join("Dockerfile");
    let dockerfile_bytes =
        fs::read(&dockerfile).with_context(|| format!("reading {}", dockerfile.display()))?;
    let context_sha256 = hex(&Sha256::new()
        .chain_update(CONTEXT_LAYOUT)
        .chain_update(&dockerfile_bytes)
        .finalize());

    let labels = image_labels(&opts.tag)?;
    let current = |key: &str, want: &str| labels.get(key).map(String::as_str) == Some(want);
    if !opts.force
        && current(LABEL_DEMO_SHA256, &sha256)
        && current(LABEL_CONTEXT_SHA256, &context_sha256)
    {
        return Ok(Report {
            tag: opts.tag.clone(),
            image_id: image_id(&opts.tag)?,
            binary,
            sha256,
            built: false,
        });
    }

    let previous = docker_inspect(&opts.tag, "{{.Id}}")?;
    let context = BuildContext::create(&dir, &dockerfile_bytes, &binary)?;
    let out = Command::new("docker")
        .arg("build")
        .arg("--quiet")
        .arg("--label")
        .arg(format!("{LABEL_DEMO_SHA256}={sha256}"))
        .arg("--label")
        .arg(format!("{LABEL_CONTEXT_SHA256}={context_sha256}"))
        .arg("--tag")
        .arg(&opts.tag)
        .arg(&context.path)
        .stdin(Stdio::null())
        .output()
        .context("running `docker build` (is the docker CLI installed?)")?;
    drop(context);
    if !out.status.success() {
        bail!(
            "docker build failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let image_id = image_id(&opts.tag)?;
    if let Some(old) = previous.filter(|old| *old != image_id) {
        // The old image is now untagged; drop it unless a container still uses it.
        let _ = Command::new("docker")
            .args(["image", "rm", &old])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    Ok(Report {
        tag: opts.tag.clone(),
        image_id,
        binary,
        sha256,
        built: true,
    })
}

fn build_static_binary(demo_dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let status = Command::new(&cargo)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(demo_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(DEMO_TARGET)
        .arg("--target-dir")
        .arg(demo_dir.join("target"))
        // RUSTFLAGS is ignored when CARGO_ENCODED_RUSTFLAGS is set.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !status.success() {
        bail!("building the demo binary failed ({status})");
    }
    Ok(())
}

/// A temporary docker build context: the Dockerfile, the binary as `demo` and
/// `rootfs/tmp/` (empty, mode 1777). Removed on drop.
struct BuildContext {
    path: PathBuf,
}

impl BuildContext {
    fn create(demo_dir: &Path, dockerfile: &[u8], binary: &Path) -> Result<BuildContext> {
        let path = demo_dir.join(format!("target/docker-context-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        let ctx = BuildContext { path };
        fs::write(ctx.path.join("Dockerfile"), dockerfile).context("writing the Dockerfile")?;
        let dest = ctx.path.join("demo");
        fs::copy(binary, &dest).context("copying the demo binary")?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))?;
        let tmp = ctx.path.join("rootfs/tmp");
        fs::create_dir_all(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;
        Ok(ctx)
    }
}

impl Drop for BuildContext {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn docker_inspect(tag: &str, format: &str) -> Result<Option<String>> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", format, tag])
        .stdin(Stdio::null())
        .output()
        .context("running `docker image inspect` (is the docker CLI installed?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such image") || err.contains("No such object") {
            return Ok(None);
        }
        bail!(
            "docker image inspect {tag} failed ({}): {}",
            out.status,
            err.trim()
        );
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// The image's labels; empty if the image does not exist.
fn image_labels(tag: &str) -> Result<BTreeMap<String, String>> {
    let Some(raw) = docker_inspect(tag, "{{json .Config.Labels}}")? else {
        return Ok(BTreeMap::new());
    };
    let labels: serde_json::Value =
        serde_json::from_str(&raw).with_context(|| format!("parsing labels {raw:?}"))?;
    Ok(labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

fn image_id(tag: &str) -> Result<String> {
    docker_inspect(tag, "{{.Id}}")?.with_context(|| format!("image {tag} vanished after building"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `cargo xtask images`.
pub fn run(root: &Path, opts: &Options) -> Result<()> {
    let r = build_demo_image(root, opts)?;
    let rel = r.binary.strip_prefix(root).unwrap_or(&r.binary);
    if r.built {
        println!(
            "built {} ({}) from {} (static, sha256 {})",
            r.tag,
            r.image_id,
            rel.display(),
            r.sha256
        );
    } else {
        println!(
            "{} ({}) is up to date: its labels match {} (sha256 {}) and the Dockerfile",
            r.tag,
            r.image_id,
            rel.display(),
            r.sha256
        );
    }
    Ok(())
}

/// `berth-demo:latest`, built if missing or stale (what tests, the demo and
/// the benchmarks need).
pub fn ensure_demo(root: &std::path::Path) -> anyhow::Result<()> {
    run(
        root,
        &Options {
            tag: DEMO_IMAGE.to_string(),
            force: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_is_lowercase_padded() {
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }
}
