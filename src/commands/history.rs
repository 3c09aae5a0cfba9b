//! `ferry history IMAGE` (`ferry image history`): the steps that made an image, newest first,
//! with the size of the layer each added, as `docker history` shows them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ferry_load::store::snapshot::SnapshotInfo;
use serde_json::{Value as Json, json};

use crate::cli::GlobalArgs;
use crate::format::{Columns, Format};
use crate::human;

/// Arguments of `ferry history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format.
    #[arg(short = 'H', long, default_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub human: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pretty-print using a Go template (`table …`, `json`).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// The image (name or ID).
    pub image: String,
}

/// The template fields of a history row, with their column headings.
pub const COLUMNS: Columns = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

const DEFAULT: &str = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";

/// Runs `ferry history`.
pub fn run(args: HistoryArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let format = if args.quiet {
        Format::listing(Some("{{.ID}}"), DEFAULT)?
    } else {
        Format::listing(args.format.as_deref(), DEFAULT)?
    };
    let store = crate::store::open(global)?;
    let img = store
        .image(&args.image)
        .with_context(|| format!("cannot show the history of {}", args.image))?;
    // The layers' sizes, bottom first; each non-empty step added the next one.
    let mut sizes = img.layers.iter().map(|fs| {
        fs.parent()
            .and_then(SnapshotInfo::read)
            .map_or(0, |i| i.size)
    });
    let history = img.config.history().clone().unwrap_or_default();
    let mut steps: Vec<(Option<String>, String, u64, String)> = history
        .iter()
        .map(|h| {
            let size = if h.empty_layer().unwrap_or(false) {
                0
            } else {
                sizes.next().unwrap_or(0)
            };
            (
                h.created().clone(),
                h.created_by().clone().unwrap_or_default(),
                size,
                h.comment().clone().unwrap_or_default(),
            )
        })
        .collect();
    // Layers no history entry accounts for (images without history) still get a row each.
    steps.extend(sizes.map(|s| (None, String::new(), s, String::new())));
    let id = if args.no_trunc {
        img.id.to_string()
    } else {
        img.id.digest()[..12].to_string()
    };
    let rows: Vec<Json> = steps
        .iter()
        .rev()
        .enumerate()
        .map(|(i, (created, by, size, comment))| {
            let t = created.as_deref().and_then(ferry_oci::time::parse_rfc3339);
            let (since, at) = match t {
                Some(t) if args.human => (human::ago(t), super::ps::go_time(t)),
                Some(t) => (ferry_oci::time::rfc3339(t), ferry_oci::time::rfc3339(t)),
                None => ("N/A".into(), "N/A".into()),
            };
            let by = by.replace('\t', " ");
            json!({
                "ID": if i == 0 { id.clone() } else { "<missing>".to_string() },
                "CreatedSince": since,
                "CreatedAt": at,
                "CreatedBy": if args.no_trunc { by } else { super::ps::ellipsis(&by, 45) },
                "Size": if args.human { human::size(*size) } else { size.to_string() },
                "Comment": comment,
            })
        })
        .collect();
    let text = format.render(&rows, COLUMNS, "history row")?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
