//! The command line: global options and one subcommand per verb, with Docker's names and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::env;

/// ferry carries container images across an air gap: fetch them on a connected PC (Windows or
/// Linux), carry one archive over, then load and run them on the offline Linux host.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Show debug logs on stderr (twice for everything); FERRY_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Store directory (default: /var/lib/ferry as root, else the user's data directory).
    #[arg(long, global = true, env = env::FERRY_ROOT, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download images from a registry into one archive for `docker load` or `ferry load`.
    Fetch(commands::fetch::FetchArgs),
    /// Load images from an archive (file or stdin) into the store, like `docker load`.
    #[cfg(unix)]
    Load(commands::load::LoadArgs),
    /// List the store's images.
    #[cfg(unix)]
    Images(commands::images::ImagesArgs),
    /// Remove images from the store.
    #[cfg(unix)]
    Rmi(commands::rmi::RmiArgs),
    /// Give an image of the store another name.
    #[cfg(unix)]
    Tag(commands::tag::TagArgs),
    /// Manage the store's images.
    #[cfg(unix)]
    #[command(subcommand)]
    Image(commands::image::ImageCommand),
    /// Write images of the store to an archive (the same format as fetch), like `docker save`.
    #[cfg(unix)]
    Save(commands::save::SaveArgs),
    /// Manage the store's disk space.
    #[cfg(unix)]
    #[command(subcommand)]
    System(commands::system::SystemCommand),
    /// Check an archive completely (digests, layers, paths) without loading it.
    Verify(commands::verify::VerifyArgs),
    /// List what an archive holds without loading it.
    Inspect(commands::inspect::InspectArgs),
}
