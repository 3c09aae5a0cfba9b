//! `ferry download-frozen-image-v2 DIR image[:tag][@digest]…`: moby's
//! `contrib/download-frozen-image-v2.sh` with the same arguments and the same directory, so
//! scripts and runbooks written around it switch to ferry line for line. The download is
//! ferry's (any registry, resumable, verified, parallel); the platform is `linux/amd64` unless
//! the script's own `TARGETARCH` (and `TARGETVARIANT`) or `--platform` say otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ferry_fetch::Destination;
use ferry_oci::{ImageReference, Platform, PlatformChoice};

use super::fetch::FetchOpts;
use crate::cli::GlobalArgs;

/// Arguments of `ferry download-frozen-image-v2`.
#[derive(Debug, Args)]
pub struct FrozenArgs {
    /// The directory to write (created if needed; other images already there stay).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Images: `image[:tag][@digest]` (Docker Hub unless a registry is named).
    #[arg(required = true, value_name = "IMAGE[:TAG][@DIGEST]")]
    pub images: Vec<ImageReference>,
    #[command(flatten)]
    pub opts: FetchOpts,
}

/// Runs the script's equivalent and prints its closing hint.
pub fn run(mut args: FrozenArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    if let Ok(arch) = std::env::var("TARGETARCH")
        && !arch.is_empty()
    {
        let variant = std::env::var("TARGETVARIANT").unwrap_or_default();
        let text = if variant.is_empty() {
            format!("linux/{arch}")
        } else {
            format!("linux/{arch}/{variant}")
        };
        args.opts.platform = PlatformChoice::One(
            text.parse::<Platform>()
                .map_err(|e| anyhow::anyhow!("TARGETARCH={arch}: {e}"))?,
        );
    }
    let dir = crate::paths::native(&args.dir);
    let shown = args.dir.display().to_string();
    let images = super::fetch::named_on_the_command_line(&args.images);
    super::fetch::fetch(
        &images,
        &Destination::Directory(dir),
        &args.opts,
        Default::default(),
        &shown,
    )?;
    println!("Download of images into '{shown}' complete.");
    println!("Use something like the following to load the result into a Docker daemon:");
    println!("  tar -cC '{shown}' . | docker load");
    Ok(ExitCode::SUCCESS)
}
