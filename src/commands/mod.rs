//! One module per subcommand; each turns parsed arguments into one library call.

pub mod fetch;
#[cfg(unix)]
pub mod image;
#[cfg(unix)]
pub mod images;
pub mod inspect;
#[cfg(unix)]
pub mod load;
#[cfg(unix)]
pub mod rmi;
#[cfg(unix)]
pub mod save;
#[cfg(unix)]
pub mod system;
#[cfg(unix)]
pub mod tag;
pub mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fetch(args) => fetch::run(args, &cli.global),
        #[cfg(unix)]
        Command::Load(args) => load::run(args, &cli.global),
        #[cfg(unix)]
        Command::Images(args) => images::run(args, &cli.global),
        #[cfg(unix)]
        Command::Rmi(args) => rmi::run(args, &cli.global),
        #[cfg(unix)]
        Command::Tag(args) => tag::run(args, &cli.global),
        #[cfg(unix)]
        Command::Image(cmd) => image::run(cmd, &cli.global),
        #[cfg(unix)]
        Command::Save(args) => save::run(args, &cli.global),
        #[cfg(unix)]
        Command::System(cmd) => system::run(cmd, &cli.global),
        Command::Verify(args) => verify::run(args, &cli.global),
        Command::Inspect(args) => inspect::run(args, &cli.global),
    }
}
