//! `apply`, `diff`, `check`: service files to berthd.

use std::path::PathBuf;

use berth_core::dto::{ApplyRequest, ApplyResponse, ApplyResult, Change, FieldChange};
use berth_core::record::Deployment;
use clap::Args;
use serde::Serialize;

use super::{WaitArgs, plural};
use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::progress::PullBars;
use crate::specs::{self, Loaded};
use crate::wait;

#[derive(Debug, Clone, Args)]
pub struct FilesArgs {
    /// Service files (YAML or JSON), or directories of them.
    #[arg(value_name = "FILE|DIR", required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub files: FilesArgs,

    /// Take over services that another source (a spec_dir file, the upstream
    /// pull) owns.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub files: FilesArgs,

    /// Show what `apply --force` would do to services another source owns.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub files: FilesArgs,
}

/// `apply --json` after waiting.
#[derive(Debug, Serialize)]
struct ApplyJson<'a> {
    apply: &'a ApplyResponse,
    deployments: &'a [Deployment],
    /// The deployments the wait stopped at because they wait at a
    /// breakpoint (the exit is 3 when nothing else went wrong); empty with
    /// `--wait-hooks`.
    breakpoints: Vec<wait::Breakpoint>,
}

/// Loads the files, or prints every problem to stderr and returns exit 2.
fn load(paths: &[PathBuf], what: &str) -> CliResult<Loaded> {
    match specs::load(paths) {
        Ok(l) => Ok(l),
        Err(errs) => {
            for l in &errs.lines {
                eprintln!("{l}");
            }
            let problems = plural(errs.lines.len(), "problem", "problems");
            Err(CliError::usage(if errs.files == 0 {
                format!("{problems}{what}")
            } else {
                format!(
                    "{problems} in {}{what}",
                    plural(errs.files, "file", "files")
                )
            }))
        }
    }
}

pub fn cmd_check(ctx: &Ctx, args: &CheckArgs) -> CliResult {
    let loaded = load(&args.files.paths, "")?;
    let (mut problems, warnings) = check_config_sources(&loaded.services);
    problems.extend(check_wave_refs(&loaded));
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if !problems.is_empty() {
        return Err(CliError::usage(problems.join("\n")));
    }
    if ctx.json {
        return output::json(&ApplyRequest {
            services: loaded.services,
            force: false,
        });
    }
    output::line(format!(
        "ok: {} in {}",
        plural(loaded.services.len(), "service", "services"),
        plural(loaded.files.len(), "file", "files")
    ))
}

/// What the spec alone cannot tell: whether each config source exists, and
/// whether it is a file (or symlink) that an in-place reload would not see
/// replaced; whether each env file reads as one. Problems refuse the check;
/// a missing source or env file is a warning (the deployment fails until
/// it exists, but it may be created later).
fn check_config_sources(services: &[berth_core::spec::ServiceSpec]) -> (Vec<String>, Vec<String>) {
    use berth_core::files::Files;
    use berth_core::spec::{SourceKind, config_source_problem, env_file};
    use berth_sources::HostFiles;
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    for spec in services {
        for (i, path) in spec.env_file.iter().enumerate() {
            use std::io::ErrorKind::{NotFound, PermissionDenied};
            // Read as berthd reads it (a FIFO, an oversized or non-UTF-8
            // file refused the same way).
            match HostFiles.read_env_file(std::path::Path::new(path)) {
                // The error names the file and the line, never a value.
                Ok(text) => {
                    if let Err(e) = env_file::parse(path, &text) {
                        problems.push(format!("{}: env_file[{i}]: {e}", spec.name));
                    }
                }
                // berthd (root) may read what this user cannot; a file may
                // be created later.
                Err(e) if matches!(e.kind(), NotFound | PermissionDenied) => {
                    warnings.push(format!(
                        "{}: env_file[{i}] {path}: {e}; the deployment fails until berthd can read it",
                        spec.name
                    ));
                }
                Err(e) => problems.push(format!("{}: env_file[{i}] {path}: {e}", spec.name)),
            }
        }
        for (i, m) in spec.config.iter().enumerate() {
            let kind = match std::fs::symlink_metadata(&m.source) {
                Ok(md) if md.file_type().is_symlink() => SourceKind::Symlink,
                Ok(md) if md.is_dir() => SourceKind::Directory,
                Ok(_) => SourceKind::File,
                Err(e) => {
                    warnings.push(format!(
                        "{}: config[{i}].source {}: {e}; the deployment fails until it exists (berth never creates it)",
                        spec.name, m.source
                    ));
                    continue;
                }
            };
            if let Some(p) = config_source_problem(m, kind) {
                problems.push(format!("{}: config[{i}]: {p}", spec.name));
            }
        }
    }
    (problems, warnings)
}

/// The `depends_on` and `inputs` references among the checked files that
/// the referenced spec cannot satisfy (berth-core's
/// [`berth_core::waves_check`]); references to other services are
/// berthd's to judge, as they may be on the node.
fn check_wave_refs(loaded: &Loaded) -> Vec<String> {
    berth_core::waves_check::check_refs(&loaded.services)
        .into_iter()
        .map(|p| {
            let file = loaded
                .declared_in
                .get(&p.service)
                .map_or("<unknown file>", String::as_str);
            format!(
                "{file}: service `{}`: {}: {}",
                p.service, p.field, p.message
            )
        })
        .collect()
}

async fn post_apply(ctx: &Ctx, request: &ApplyRequest, dry_run: bool) -> CliResult<ApplyResponse> {
    let path = if dry_run {
        "/v1/apply?dry_run=true"
    } else {
        "/v1/apply"
    };
    ctx.client.post(path, request).await.map_err(|e| {
        if e.api_kind.as_deref() == Some("conflict") && !request.force {
            e.with_hint("pass --force to take the service over from its current owner")
        } else {
            e
        }
    })
}

fn nonempty(loaded: Loaded) -> CliResult<Loaded> {
    if loaded.services.is_empty() {
        return Err(CliError::usage(format!(
            "no services declared in {}",
            plural(loaded.files.len(), "file", "files")
        )));
    }
    Ok(loaded)
}

pub async fn cmd_apply(ctx: &Ctx, args: &ApplyArgs) -> CliResult {
    let loaded = nonempty(load(&args.files.paths, "; nothing was applied")?)?;
    let request = ApplyRequest {
        services: loaded.services,
        force: args.force,
    };
    // Followed before the apply is sent: berthd pulls while it resolves
    // the apply, before it answers.
    let bars = PullBars::start(
        &ctx.client,
        request.services.iter().map(|s| s.name.clone()),
        ctx.json,
    )
    .await;
    let response = post_apply(ctx, &request, false).await?;
    if !ctx.json {
        output::text(render_results(&response.results, false))?;
    }
    let started: Vec<Deployment> = response
        .results
        .iter()
        .filter_map(|r| r.deployment.clone())
        .collect();
    if args.wait.no_wait {
        drop(bars);
        return if ctx.json {
            output::json(&response)
        } else {
            Ok(())
        };
    }
    let opts = args.wait.options(ctx.json);
    let finished = wait::wait_all(&ctx.client, started, opts).await?;
    drop(bars);
    if ctx.json {
        output::json(&ApplyJson {
            apply: &response,
            deployments: &finished,
            breakpoints: if opts.wait_hooks {
                Vec::new()
            } else {
                wait::breakpoints(&finished)
            },
        })?;
    }
    wait::outcome(&finished, &opts)
}

pub async fn cmd_diff(ctx: &Ctx, args: &DiffArgs) -> CliResult {
    let loaded = nonempty(load(&args.files.paths, "")?)?;
    let request = ApplyRequest {
        services: loaded.services,
        force: args.force,
    };
    let response = post_apply(ctx, &request, true).await?;
    if ctx.json {
        return output::json(&response);
    }
    output::text(render_results(&response.results, true))
}

/// Per service: `web: created (deployment web-1)`, `api: updated` with its
/// field diff, `db: unchanged`. With `dry_run`, every diff (a new service's
/// too) and a count at the end.
pub fn render_results(results: &[ApplyResult], dry_run: bool) -> String {
    let mut out = String::new();
    for r in results {
        out.push_str(&format!("{}: {}", r.service, r.change.as_str()));
        if let Some(d) = &r.deployment {
            out.push_str(&format!(" (deployment {})", d.id));
        }
        out.push('\n');
        if dry_run || matches!(r.change, Change::Updated | Change::PolicyOnly) {
            for c in &r.diff {
                out.push_str(&format!("  {}\n", field_change(c)));
            }
        }
    }
    if dry_run {
        let count = |c: Change| results.iter().filter(|r| r.change == c).count();
        out.push_str(&format!(
            "dry run, nothing changed: {} created, {} updated, {} policy-only, {} unchanged\n",
            count(Change::Created),
            count(Change::Updated),
            count(Change::PolicyOnly),
            count(Change::Unchanged),
        ));
    }
    out
}

/// `env.GREETING: hello -> hi`; a missing side shows as `(none)`.
pub fn field_change(c: &FieldChange) -> String {
    let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_string());
    format!("{}: {} -> {}", c.field, side(&c.old), side(&c.new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        service: &str,
        change: Change,
        diff: &[(&str, Option<&str>, Option<&str>)],
    ) -> ApplyResult {
        ApplyResult {
            service: service.into(),
            change,
            diff: diff
                .iter()
                .map(|(f, o, n)| FieldChange {
                    field: (*f).into(),
                    old: o.map(Into::into),
                    new: n.map(Into::into),
                })
                .collect(),
            deployment: (change != Change::Unchanged).then(|| Deployment {
                id: format!("{service}-2"),
                ..Deployment::default()
            }),
        }
    }

    #[test]
    fn apply_lines() {
        let results = [
            result("web", Change::Created, &[("image", None, Some("nginx:1"))]),
            result(
                "api",
                Change::Updated,
                &[("env.GREETING", Some("hello"), Some("hi"))],
            ),
            result("db", Change::Unchanged, &[]),
        ];
        assert_eq!(
            render_results(&results, false),
            "\
web: created (deployment web-2)
api: updated (deployment api-2)
  env.GREETING: hello -> hi
db: unchanged
"
        );
    }

    #[test]
    fn diff_lines() {
        let mut web = result("web", Change::Created, &[("image", None, Some("nginx:1"))]);
        web.deployment = None;
        let results = [web, result("db", Change::Unchanged, &[])];
        assert_eq!(
            render_results(&results, true),
            "\
web: created
  image: (none) -> nginx:1
db: unchanged
dry run, nothing changed: 1 created, 0 updated, 0 policy-only, 1 unchanged
"
        );
    }
}
