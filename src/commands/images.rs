//! `ferry images` (`ferry image ls`): the store's images, as `docker images` lists them, with
//! its columns, `--filter` keys and `--format` fields.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use ferry_load::store::ImageSummary;
use ferry_oci::ImageReference;
use serde_json::{Value as Json, json};

use crate::cli::GlobalArgs;
use crate::filter::{Filters, glob};
use crate::format::{Columns, Format};
use crate::human;

/// Arguments of `ferry images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (`NAME` or `NAME:TAG`, wildcards as in `reference=`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Show all images (ferry keeps no intermediate images: the same as without).
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided (dangling, label, reference, before, since).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Pretty-print images using a Go template (`table …`, `json`).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

const FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since"];

/// The template fields of an image row, with their column headings.
pub const COLUMNS: Columns = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

const DEFAULT: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// Runs `ferry images`.
pub fn run(args: ImagesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut filters = args.filter.clone();
    if let Some(r) = &args.repository {
        filters.push(format!("reference={r}"));
    }
    let filters = Filters::parse(&filters, FILTERS)?;
    let dangling = filters.bool("dangling")?;
    let default = if args.digests { DIGESTS } else { DEFAULT };
    let format = if args.quiet {
        Format::listing(Some("{{.ID}}"), default)?
    } else {
        Format::listing(args.format.as_deref(), default)?
    };
    let store = crate::store::open(global)?;
    let mut images = store.list()?;
    // Newest first, as Docker lists them.
    images.sort_by_key(|i| std::cmp::Reverse(created(i)));
    let find = |key: &str| -> anyhow::Result<Option<i64>> {
        match filters.get(key).last() {
            None => Ok(None),
            Some(r) => {
                let img = store.image(r)?;
                Ok(Some(
                    images.iter().find(|i| i.id == img.id).map_or(0, created),
                ))
            }
        }
    };
    let (before, since) = (find("before")?, find("since")?);
    let in_use: BTreeMap<String, usize> =
        store
            .images_in_use()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (_, id)| {
                *m.entry(id.to_string()).or_default() += 1;
                m
            });
    let mut rows = Vec::new();
    let mut ids_seen = Vec::new();
    for img in &images {
        let t = created(img);
        if before.is_some_and(|b| t >= b) || since.is_some_and(|s| t <= s) {
            continue;
        }
        if dangling.is_some_and(|d| d != img.names.is_empty()) {
            continue;
        }
        if filters.has("label")
            && !filters.labels_match(&super::store::labels_of(&store, img.id.as_ref()))
        {
            continue;
        }
        let names: Vec<&(ImageReference, ferry_oci::Digest)> = img
            .names
            .iter()
            .filter(|(n, _)| filters.any("reference", |p| reference_matches(p, n)))
            .collect();
        if names.is_empty() && (filters.has("reference") || !img.names.is_empty()) {
            continue;
        }
        if args.quiet {
            // One ID per image, however many names it has.
            if ids_seen.contains(&img.id) {
                continue;
            }
            ids_seen.push(img.id.clone());
        }
        let containers = in_use.get(&img.id.to_string()).copied().unwrap_or(0);
        if names.is_empty() {
            rows.push(row(img, None, args.no_trunc, containers));
        }
        for (n, digest) in names {
            rows.push(row(img, Some((n, digest)), args.no_trunc, containers));
            if args.quiet {
                break;
            }
        }
    }
    let text = format.render(&rows, COLUMNS, "image")?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn created(img: &ImageSummary) -> i64 {
    img.created
        .as_deref()
        .and_then(ferry_oci::time::parse_rfc3339)
        .unwrap_or(0)
}

/// Docker's `reference=` (and `docker images NAME[:TAG]`): a `path.Match` pattern against
/// the familiar `name:tag`, or against the name alone.
fn reference_matches(pattern: &str, name: &ImageReference) -> bool {
    let familiar = name.familiar_name();
    let tagged = name.familiar_tagged().unwrap_or_else(|| familiar.clone());
    // A pattern may be typed in full (`docker.io/library/busybox`): compare it normalised.
    let normalised = pattern
        .parse::<ImageReference>()
        .ok()
        .filter(|_| !pattern.contains(['*', '?', '[']))
        .map(|r| {
            let p = r.familiar_name();
            if pattern.rsplit('/').next().unwrap_or(pattern).contains(':') {
                r.familiar_tagged().unwrap_or(p)
            } else {
                p
            }
        });
    let pattern = normalised.as_deref().unwrap_or(pattern);
    glob(pattern, &tagged) || glob(pattern, &familiar)
}

/// One row's template data.
fn row(
    img: &ImageSummary,
    name: Option<(&ImageReference, &ferry_oci::Digest)>,
    no_trunc: bool,
    containers: usize,
) -> Json {
    let id = if no_trunc {
        img.id.to_string()
    } else {
        img.id.digest()[..12].to_string()
    };
    let (repo, tag, digest) = match name {
        Some((n, d)) => (
            n.familiar_name(),
            n.tag().unwrap_or("<none>").to_string(),
            d.to_string(),
        ),
        None => ("<none>".into(), "<none>".into(), "<none>".into()),
    };
    let t = created(img);
    let (since, at) = if img.created.is_some() {
        (human::ago(t), super::ps::go_time(t))
    } else {
        ("N/A".into(), "N/A".into())
    };
    json!({
        "ID": id,
        "Repository": repo,
        "Tag": tag,
        "Digest": digest,
        "CreatedSince": since,
        "CreatedAt": at,
        "Size": human::size(img.size),
        "Containers": if containers == 0 { "N/A".to_string() } else { containers.to_string() },
        "SharedSize": "N/A",
        "UniqueSize": "N/A",
        // Docker prints this one with four digits (go-units' HumanSize).
        "VirtualSize": human::size_with_precision(img.size, 4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_match_as_docker_images_name_does() {
        let n: ImageReference = "busybox:latest".parse().unwrap();
        assert!(reference_matches("busybox", &n));
        assert!(reference_matches("busybox:latest", &n));
        assert!(reference_matches("docker.io/library/busybox", &n));
        assert!(reference_matches("busy*", &n));
        assert!(!reference_matches("busybox:1.36", &n));
        let r: ImageReference = "127.0.0.1:5000/ferry/busybox:oci".parse().unwrap();
        assert!(reference_matches("127.0.0.1:5000/ferry/busybox", &r));
        assert!(reference_matches("127.0.0.1:5000/ferry/*:oci", &r));
        assert!(!reference_matches("ferry/*", &r));
    }
}
