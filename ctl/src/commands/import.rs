//! `import paunch|tripleo|heat`: a TripleO node's container files to berth
//! service files. Reading and writing happen here; the conversion is
//! berth-core's ([`berth_core::import`]), pure and tested on its own.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use berth_core::import::{
    ImageMap, Import, ImportErrors, Input, Options, Problem, heat_file, paunch_files, tripleo_files,
};
use berth_core::spec::ServiceSpec;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::plural;
use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output;

/// What marks a file as written by `berthctl import` (and so safe to
/// write again).
const HEADER: &str = "# Imported by `berthctl import ";

#[derive(Debug, Clone, Subcommand)]
pub enum ImportCmd {
    /// paunch's container-startup-config files: one step's {name: config}
    /// map per file (JSON or YAML), or a {step_N: {name: config}} mapping.
    ///
    /// A file's step is the step_N in its name, else its place among the
    /// arguments. Steps run in order and, within one, containers by
    /// start_order: each becomes `depends_on` the group before it (a
    /// `detach: false` container, now a task, `condition: completed`).
    ///
    /// Examples:
    ///   berthctl import paunch keystone-step_3.json -o /etc/berth/services.d
    ///   berthctl import paunch step_1.json step_2.json --check
    #[command(verbatim_doc_comment)]
    Paunch {
        /// paunch config files, in step order.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
    },

    /// tripleo_container_manage's tree: DIR/step_N/<name>.json, one
    /// container per file (hashed-<name>.json wins over <name>.json).
    ///
    /// A single FILE is one container named after the file.
    ///
    /// Examples:
    ///   berthctl import tripleo /var/lib/tripleo-config/container-startup-config -o out/
    ///   berthctl import tripleo startup-config/ --image-map '*=berth-demo:latest' -o out/
    #[command(verbatim_doc_comment)]
    Tripleo {
        /// The container-startup-config directory (or one container file).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        out: OutArgs,
    },

    /// Heat docker-cmd deployments: one deployment, a list of them, or a
    /// server's whole metadata ({deployments: [...]}).
    ///
    /// Each deployment's containers become services carrying its inputs
    /// (never the signal transport's credentials). Deployments of other
    /// groups are warnings.
    ///
    /// Examples:
    ///   berthctl import heat /var/lib/os-collect-config/heat_local.json -o out/
    ///   berthctl import heat deployment.json --check --json
    #[command(verbatim_doc_comment)]
    Heat {
        /// A JSON or YAML file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        out: OutArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// Write one <service>.yaml per service here (created if missing).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        required_unless_present = "check"
    )]
    pub output: Option<PathBuf>,

    /// Print what would be written, and every warning; write nothing.
    #[arg(long)]
    pub check: bool,

    /// Replace an image as the specs are written: FROM=TO, or *=TO for
    /// every image (e.g. a locally built stand-in). Repeatable; the first
    /// match wins.
    #[arg(long = "image-map", value_name = "FROM=TO")]
    pub image_map: Vec<String>,

    /// Overwrite files in the output directory that `berthctl import` did
    /// not write.
    #[arg(long)]
    pub force: bool,
}

/// `import --json`: what was (or would be) written, and why not more.
#[derive(Debug, Serialize)]
struct ImportJson<'a> {
    services: Vec<ServiceJson<'a>>,
    warnings: Vec<String>,
    written: bool,
}

#[derive(Debug, Serialize)]
struct ServiceJson<'a> {
    name: &'a str,
    /// The input file it came from.
    from: &'a str,
    step: u32,
    /// Where it is (or would be) written; `null` with --check and no -o.
    path: Option<String>,
    spec: &'a ServiceSpec,
    notes: &'a [String],
    warnings: Vec<String>,
}

pub fn cmd_import(ctx: &Ctx, cmd: &ImportCmd) -> CliResult {
    let (command, out) = match cmd {
        ImportCmd::Paunch { out, .. } => ("paunch", out),
        ImportCmd::Tripleo { out, .. } => ("tripleo", out),
        ImportCmd::Heat { out, .. } => ("heat", out),
    };
    let image_map = ImageMap::parse(&out.image_map).map_err(CliError::usage)?;
    let host_env = |k: &str| std::env::var(k).ok();
    let opts = Options {
        image_map: &image_map,
        host_env: &host_env,
    };
    let result = match cmd {
        ImportCmd::Paunch { files, .. } => {
            let inputs = files
                .iter()
                .map(|f| read(f))
                .collect::<CliResult<Vec<_>>>()?;
            paunch_files(&inputs, &opts)
        }
        ImportCmd::Tripleo { dir, .. } => tripleo_files(&tree(dir)?, &opts),
        ImportCmd::Heat { file, .. } => heat_file(&read(file)?, &opts),
    };
    let import = result.map_err(refused)?;
    let warnings = all_warnings(&import);
    for w in &warnings {
        output::warn(w.to_string());
    }
    let target = |name: &str| out.output.as_ref().map(|d| d.join(format!("{name}.yaml")));
    if !out.check {
        let Some(dir) = &out.output else {
            return Err(CliError::usage("give -o DIR, or --check to write nothing"));
        };
        write_all(dir, &import, command, out.force)?;
    }
    if ctx.json {
        let services = import
            .services
            .iter()
            .map(|s| ServiceJson {
                name: &s.spec.name,
                from: &s.file,
                step: s.step,
                path: target(&s.spec.name).map(|p| p.display().to_string()),
                spec: &s.spec,
                notes: &s.notes,
                warnings: s.warnings.iter().map(ToString::to_string).collect(),
            })
            .collect();
        return output::json(&ImportJson {
            services,
            warnings: warnings.iter().map(ToString::to_string).collect(),
            written: !out.check,
        });
    }
    let summary = format!(
        "{}, {}",
        plural(import.services.len(), "service", "services"),
        plural(warnings.len(), "warning", "warnings")
    );
    if out.check {
        let mut text = String::new();
        for s in &import.services {
            let shown = target(&s.spec.name).map_or_else(
                || format!("{}.yaml", s.spec.name),
                |p| p.display().to_string(),
            );
            text.push_str(&format!("--- {shown}\n{}", s.file_text(command)));
        }
        text.push_str(&format!("check: {summary}; nothing written\n"));
        return output::text(text);
    }
    let dir = out.output.as_deref().unwrap_or(Path::new("."));
    output::line(format!(
        "wrote {summary} to {}\nnext: berthctl check {0} && berthctl apply {0}",
        dir.display()
    ))
}

/// The file-level warnings, then each service's, in start order.
fn all_warnings(import: &Import) -> Vec<&Problem> {
    import
        .warnings
        .iter()
        .chain(import.services.iter().flat_map(|s| &s.warnings))
        .collect()
}

fn refused(e: ImportErrors) -> CliError {
    let n = e.0.len();
    CliError::usage(format!(
        "{}; nothing written",
        plural(n, "problem", "problems")
    ))
    .with_details(e.0.iter().map(ToString::to_string).collect())
}

fn read(path: &Path) -> CliResult<Input> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("{}: cannot read: {e}", path.display())))?;
    Ok(Input {
        file: path.display().to_string(),
        text,
    })
}

/// DIR's `*.json` files by their path under DIR (a single file as itself).
fn tree(dir: &Path) -> CliResult<Vec<Input>> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| CliError::usage(format!("{}: cannot read: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Ok(vec![read(dir)?]);
    }
    let mut files = Vec::new();
    collect_json(dir, dir, 0, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no *.json files (expected step_N/<name>.json)",
            dir.display()
        )));
    }
    files
        .iter()
        .map(|rel| {
            let mut input = read(&dir.join(rel))?;
            input.file = rel.display().to_string();
            Ok(input)
        })
        .collect()
}

fn collect_json(root: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> CliResult {
    let unreadable =
        |e: std::io::Error| CliError::usage(format!("{}: cannot list: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.is_dir() {
            // step_N/ is one level down; deeper is not the layout.
            if depth == 0 {
                collect_json(root, &path, depth + 1, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "json")
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

/// Writes every file, each atomically; refuses, before writing any, to
/// replace a file `berthctl import` did not write (unless `force`).
fn write_all(dir: &Path, import: &Import, command: &str, force: bool) -> CliResult {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("{}: cannot create: {e}", dir.display())))?;
    let mut foreign = Vec::new();
    for s in &import.services {
        let path = dir.join(format!("{}.yaml", s.spec.name));
        if !force && std::fs::symlink_metadata(&path).is_ok() && !ours(&path) {
            foreign.push(path.display().to_string());
        }
    }
    if !foreign.is_empty() {
        return Err(CliError::usage(format!(
            "{} not written by berthctl import would be replaced; nothing written",
            plural(foreign.len(), "file", "files")
        ))
        .with_details(foreign)
        .with_hint("move them away, write elsewhere with -o, or pass --force"));
    }
    for s in &import.services {
        let path = dir.join(format!("{}.yaml", s.spec.name));
        write_atomic(&path, s.file_text(command).as_bytes())
            .map_err(|e| CliError::failed(format!("{}: cannot write: {e}", path.display())))?;
    }
    // The renames are durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CliError::failed(format!("{}: cannot sync: {e}", dir.display())))?;
    for stale in earlier_imports(dir, import) {
        output::warn(format!(
            "{stale} was written by an earlier import and is not part of this one: `berthctl \
             apply` of the directory still applies it; remove it if that container is gone"
        ));
    }
    Ok(())
}

/// Files in `dir` an earlier `berthctl import` wrote for services this
/// import does not have (left in place: removing them is the operator's
/// call).
fn earlier_imports(dir: &Path, import: &Import) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|name| !import.services.iter().any(|s| s.spec.name == name))
        })
        .filter(|p| ours(p))
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    out
}

/// Whether `path` is a file an earlier `berthctl import` wrote: a regular
/// file (not a symlink) that reads as text starting with the header.
/// Anything else there is the operator's.
fn ours(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read_to_string(path).is_ok_and(|t| t.starts_with(HEADER))
}

/// Temp file beside the target (0600: a spec may hold secrets), fsync,
/// rename over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // One left by a run that died under the same pid is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
