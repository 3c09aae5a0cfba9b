//! `ferry image inspect IMAGE…`: what the store knows about images, as JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::GlobalArgs;

/// `ferry image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show images' configs and layers as JSON (an array, like `docker image inspect`).
    Inspect(InspectArgs),
    /// Build an image from a Dockerfile (as `ferry build`).
    Build(super::build::BuildArgs),
}

/// Arguments of `ferry image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images: names or (prefixes of) IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Runs `ferry image …`.
pub fn run(cmd: ImageCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let args = match cmd {
        ImageCommand::Inspect(args) => args,
        ImageCommand::Build(args) => return super::build::run(args, global),
    };
    let mut stdout = std::io::stdout().lock();
    let store = crate::store::open(global)?;
    let mut out = Vec::new();
    for name in &args.images {
        let img = store
            .image(name)
            .with_context(|| format!("cannot inspect {name}"))?;
        let config = serde_json::to_value(&img.config)?;
        out.push(json!({
            "Id": img.id.to_string(),
            "RepoTags": img.names,
            "Manifest": {
                "digest": img.manifest.digest.to_string(),
                "mediaType": img.manifest.media_type,
                "size": img.manifest.size,
            },
            "Created": config.get("created"),
            "Architecture": config.get("architecture"),
            "Os": config.get("os"),
            "Variant": config.get("variant"),
            "Author": config.get("author"),
            "Config": config.get("config"),
            "History": config.get("history"),
            "RootFS": {
                "Type": "layers",
                "Layers": img.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            },
            "Snapshots": {
                "Format": img.snapshot_format,
                "Layers": img.layers,
            },
        }));
    }
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    Ok(ExitCode::SUCCESS)
}
