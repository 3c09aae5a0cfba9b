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
    /// Show debug logs on stderr (as --verbose; before the subcommand, whose `-v` may mean
    /// something else, like `run -v HOST:CTR`).
    #[arg(short = 'v', action = clap::ArgAction::Count, hide = true)]
    pub verbose_short: u8,
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Show debug logs on stderr (twice for everything); FERRY_LOG overrides.
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Store directory (default: /var/lib/ferry as root, else the user's data directory).
    #[arg(long, global = true, env = env::FERRY_ROOT, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download images from a registry into one archive for `docker load` or `ferry load`.
    Fetch(commands::fetch::FetchArgs),
    /// Copy images from archives or the store into a registry, digests unchanged.
    Push(commands::push::PushArgs),
    /// List what the store (or an internal registry) holds, for `ferry fetch --have`.
    Inventory(commands::inventory::InventoryArgs),
    /// moby's download-frozen-image-v2.sh, same arguments: images into a directory for
    /// `tar -cC DIR . | docker load`.
    #[command(name = "download-frozen-image-v2")]
    DownloadFrozenImageV2(commands::frozen::FrozenArgs),
    /// Run a command in a new container from a loaded image (docker run's flags).
    #[cfg(unix)]
    Run(commands::run::RunArgs),
    /// Create a container from an image without starting it (`ferry start` starts it).
    #[cfg(unix)]
    Create(commands::run::RunArgs),
    /// Run a command in a running container.
    #[cfg(unix)]
    Exec(commands::exec::ExecArgs),
    /// List containers.
    #[cfg(unix)]
    Ps(commands::ps::PsArgs),
    /// Show the output of a container started with -d.
    #[cfg(unix)]
    Logs(commands::logs::LogsArgs),
    /// Stop running containers: the stop signal, then SIGKILL after a grace period.
    #[cfg(unix)]
    Stop(commands::stop::StopArgs),
    /// Send a signal to running containers.
    #[cfg(unix)]
    Kill(commands::kill::KillArgs),
    /// Remove containers.
    #[cfg(unix)]
    Rm(commands::rm::RmArgs),
    /// Copy files between a container and the host (CONTAINER:PATH on one side).
    #[cfg(unix)]
    Cp(commands::cp::CpArgs),
    /// Write a container's file system as a tar archive.
    #[cfg(unix)]
    Export(commands::export::ExportArgs),
    /// Start stopped containers.
    #[cfg(unix)]
    Start(commands::start::StartArgs),
    /// Restart containers.
    #[cfg(unix)]
    Restart(commands::restart::RestartArgs),
    /// Block until containers stop, then print their exit statuses.
    #[cfg(unix)]
    Wait(commands::wait::WaitArgs),
    /// List a container's published ports.
    #[cfg(unix)]
    Port(commands::port::PortArgs),
    /// Manage named volumes.
    #[cfg(unix)]
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Write service-manager files for containers (`generate systemd`).
    #[cfg(unix)]
    #[command(subcommand)]
    Generate(commands::generate::GenerateCommand),
    /// Write an OCI runtime bundle (config.json + rootfs) for an image.
    #[cfg(unix)]
    Bundle(commands::bundle::BundleArgs),
    /// Build an image from a Dockerfile, without a daemon (docker build's flags).
    #[cfg(unix)]
    Build(commands::build::BuildArgs),
    /// Load images from an archive (file, directory or stdin) into the store, like `docker load`.
    #[cfg(unix)]
    Load(commands::load::LoadArgs),
    /// Make an image from a root file system tar (debootstrap, `yum --installroot`, export).
    #[cfg(unix)]
    Import(commands::import::ImportArgs),
    /// List the store's images.
    #[cfg(unix)]
    Images(commands::images::ImagesArgs),
    /// Show the history of an image (its layers and the steps that made them).
    #[cfg(unix)]
    History(commands::history::HistoryArgs),
    /// Remove images from the store.
    #[cfg(unix)]
    Rmi(commands::rmi::RmiArgs),
    /// Give an image of the store another name.
    #[cfg(unix)]
    Tag(commands::tag::TagArgs),
    /// Manage containers (`ferry container ls`, `… run`, `… rm`: the commands above).
    #[cfg(unix)]
    #[command(subcommand)]
    Container(commands::container::ContainerCommand),
    /// Manage images (`ferry image ls`, `… load`, `… inspect`: the commands above).
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
    /// Show containers and images as JSON, like `docker inspect`; an archive file is listed.
    Inspect(commands::inspect::InspectArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completion(commands::completion::CompletionArgs),
    /// Write the man pages (`scripts/man` runs this).
    #[command(hide = true)]
    ManPages(commands::completion::ManArgs),
}
