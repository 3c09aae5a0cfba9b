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
}

/// Runs the chosen verb.
pub fn run(cmd: ContainerCommand, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match cmd {
        ContainerCommand::Start(a) => super::start::run(a, global),
        ContainerCommand::Restart(a) => super::restart::run(a, global),
        ContainerCommand::Wait(a) => super::wait::run(a, global),
        ContainerCommand::Port(a) => super::port::run(a, global),
    }
}
