//! `images` (what berth knows of each image: who uses it, which records
//! name it, whether a prune may remove it) and `images prune`.

use berth_core::images::{ImageOrigin, ImageRow, ImagesResponse, PruneResponse, PrunedImage};
use clap::{Args, Subcommand};
use hyper::Method;

use crate::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{self, short_hash, table};

#[derive(Debug, Clone, Subcommand)]
pub enum ImagesCmd {
    /// Remove the pulled images nothing keeps, now.
    ///
    /// berthd prunes by itself after each deployment of a service whose
    /// image is a reference ends; this runs the same prune at once. Only
    /// images berth pulled are removed, by id and never forced: not one a
    /// record of the current and last `keep_previous` generations of any
    /// service names, not one a container uses (the engine refuses, and the
    /// image stays), not a built, loaded or hand-pulled image. Each removal
    /// is an event (`berthctl events`). Needs write access (an admin token
    /// on the TCP API).
    ///
    /// Examples:
    ///   berthctl images prune --dry-run
    ///   berthctl images prune
    ///   berthctl images prune --json | jq -r '.removed[].reference'
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Say which images a prune would remove; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn cmd_images(ctx: &Ctx, cmd: Option<&ImagesCmd>) -> CliResult {
    match cmd {
        None => {
            let r: ImagesResponse = ctx.client.get("/v1/images").await?;
            if ctx.json {
                return output::json(&r);
            }
            for p in &r.problems {
                output::warn(p);
            }
            output::text(render_images(&r))
        }
        Some(ImagesCmd::Prune(a)) => {
            let path = if a.dry_run {
                "/v1/images/prune?dry_run=true"
            } else {
                "/v1/images/prune"
            };
            let r: PruneResponse = ctx.client.json(Method::POST, path, None).await?;
            if ctx.json {
                return output::json(&r);
            }
            for p in &r.problems {
                output::warn(p);
            }
            output::text(render_prune(&r))?;
            if r.problems.is_empty() {
                Ok(())
            } else {
                Err(CliError::failed(
                    "berthd could not tell what is kept, or could not remove an image; see the warnings",
                ))
            }
        }
    }
}

fn origin(o: ImageOrigin) -> &'static str {
    match o {
        ImageOrigin::Pulled => "pulled",
        ImageOrigin::Built => "built",
        ImageOrigin::Other => "other",
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

/// The digest's hash, short (the repository is in REFERENCE).
fn digest(row: &ImageRow) -> String {
    row.digest
        .as_deref()
        .and_then(|d| d.rsplit_once('@'))
        .map_or_else(|| "-".to_string(), |(_, h)| short_hash(h))
}

pub fn render_images(r: &ImagesResponse) -> String {
    let mut out = format!(
        "images kept: those the current and {} previous generation(s) of every service name; only pulled ones are ever pruned\n",
        r.keep_previous
    );
    if r.images.is_empty() {
        out.push_str("berth knows no image yet\n");
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .images
        .iter()
        .map(|i| {
            let records: Vec<String> = i
                .records
                .iter()
                .map(|d| format!("{}-{}", d.service, d.generation))
                .collect();
            vec![
                short_hash(&i.id),
                i.references.first().cloned().unwrap_or_else(|| "-".into()),
                digest(i),
                if i.present {
                    origin(i.origin).to_string()
                } else {
                    format!("{} (gone)", origin(i.origin))
                },
                list(&i.used_by),
                list(&records),
                if i.prunable { "yes" } else { "no" }.to_string(),
                i.why.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "IMAGE",
            "REFERENCE",
            "DIGEST",
            "ORIGIN",
            "USED BY",
            "RECORDS",
            "PRUNABLE",
            "WHY",
        ],
        &rows,
    ));
    out
}

fn pruned_line(verb: &str, p: &PrunedImage) -> String {
    format!(
        "{verb} {} ({}): {}\n",
        p.reference,
        short_hash(&p.id),
        p.reason
    )
}

pub fn render_prune(r: &PruneResponse) -> String {
    let verb = if r.dry_run { "would prune" } else { "pruned" };
    let mut out = String::new();
    for p in &r.removed {
        out.push_str(&pruned_line(verb, p));
    }
    for p in &r.kept {
        out.push_str(&pruned_line("kept", p));
    }
    if r.removed.is_empty() && r.kept.is_empty() {
        out.push_str(
            "nothing to prune: every image berth pulled is still kept (berthctl images says why)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use berth_core::images::RecordRef;

    use super::*;

    fn row(id: &str, prunable: bool) -> ImageRow {
        ImageRow {
            id: id.into(),
            references: vec!["reg:5000/ns/web:1".into()],
            digest: Some(format!("reg:5000/ns/web@sha256:{}", "d".repeat(64))),
            origin: ImageOrigin::Pulled,
            present: true,
            used_by: Vec::new(),
            records: vec![RecordRef {
                service: "web".into(),
                generation: 2,
            }],
            prunable,
            why: "named by web-2".into(),
        }
    }

    #[test]
    fn images_table_says_who_keeps_what() {
        let mut used = row(&format!("sha256:{}", "b".repeat(64)), false);
        used.used_by = vec!["web".into(), "api".into()];
        let mut gone = row(&format!("sha256:{}", "c".repeat(64)), false);
        gone.present = false;
        let text = render_images(&ImagesResponse {
            keep_previous: 2,
            images: vec![row(&format!("sha256:{}", "a".repeat(64)), true), used, gone],
            problems: Vec::new(),
        });
        assert!(
            text.starts_with("images kept: those the current and 2 previous"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("IMAGE "), "{text}");
        assert!(
            lines[2].starts_with("aaaaaaaaaaaa  reg:5000/ns/web:1  dddddddddddd  pulled"),
            "{text}"
        );
        assert!(lines[2].contains(" yes "), "{text}");
        assert!(lines[3].contains("web,api"), "{text}");
        assert!(lines[3].contains("web-2"), "{text}");
        assert!(lines[4].contains("pulled (gone)"), "{text}");
        let empty = render_images(&ImagesResponse {
            keep_previous: 0,
            images: Vec::new(),
            problems: Vec::new(),
        });
        assert!(empty.contains("berth knows no image yet"), "{empty}");
    }

    #[test]
    fn prune_output_names_each_image_and_why() {
        let p = PrunedImage {
            id: format!("sha256:{}", "a".repeat(64)),
            reference: "reg:5000/ns/web:1".into(),
            reason: "pulled by berth, ...".into(),
        };
        let dry = render_prune(&PruneResponse {
            dry_run: true,
            removed: vec![p.clone()],
            ..Default::default()
        });
        assert_eq!(
            dry,
            "would prune reg:5000/ns/web:1 (aaaaaaaaaaaa): pulled by berth, ...\n"
        );
        let done = render_prune(&PruneResponse {
            dry_run: false,
            removed: vec![p.clone()],
            kept: vec![PrunedImage {
                reason: "the engine keeps it: conflict".into(),
                ..p
            }],
            problems: Vec::new(),
        });
        assert!(done.starts_with("pruned reg:5000/ns/web:1"), "{done}");
        assert!(
            done.contains("kept reg:5000/ns/web:1 (aaaaaaaaaaaa): the engine keeps it"),
            "{done}"
        );
        let none = render_prune(&PruneResponse::default());
        assert!(none.starts_with("nothing to prune"), "{none}");
    }
}
