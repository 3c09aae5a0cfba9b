//! `ferry container VERB`: Docker's management-command spelling of the container verbs.

use std::process::ExitCode;

use clap::Subcommand;

use crate::cli::GlobalArgs;

/// `ferry container …`.
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Start stopped containers.
    Start(super::start::StartArgs),
    /// Restart containers.
    Restart(super::restart::RestartArgs),
    /// Block until containers stop, then print their exit statuses.
    Wait(super::wait::WaitArgs),
    /// List a container's published ports.
    Port(super::port::PortArgs),
    /// Show containers as `docker inspect` does (the keys ferry has).
    Inspect(InspectArgs),
}

/// Runs the chosen verb.
pub fn run(cmd: ContainerCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::Start(a) => super::start::run(a, global),
        ContainerCommand::Restart(a) => super::restart::run(a, global),
        ContainerCommand::Wait(a) => super::wait::run(a, global),
        ContainerCommand::Port(a) => super::port::run(a, global),
        ContainerCommand::Inspect(a) => inspect(a, global),
    }
}

/// Arguments of `ferry container inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Container names or IDs.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Prints Docker's inspect document of each container, as one JSON array.
fn inspect(args: InspectArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let cs = super::store::containers(global);
    let mut docs = Vec::new();
    for r in &args.containers {
        let (c, meta) = cs.find(r)?;
        docs.push(ferry_run::container::inspect::document(&c, &meta));
    }
    println!("{}", serde_json::to_string_pretty(&docs)?);
    Ok(ExitCode::SUCCESS)
}
