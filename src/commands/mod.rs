//! One module per subcommand; each turns parsed arguments into one library call.

#[cfg(unix)]
pub mod build;
#[cfg(unix)]
pub mod bundle;
pub mod completion;
#[cfg(unix)]
pub mod container;
#[cfg(unix)]
pub mod cp;
#[cfg(unix)]
pub mod exec;
#[cfg(unix)]
pub mod export;
pub mod fetch;
pub mod frozen;
#[cfg(unix)]
pub mod generate;
#[cfg(unix)]
pub mod history;
#[cfg(unix)]
pub mod image;
#[cfg(unix)]
pub mod images;
#[cfg(unix)]
pub mod import;
pub mod inspect;
pub mod inventory;
#[cfg(unix)]
pub mod kill;
#[cfg(unix)]
pub mod load;
#[cfg(unix)]
pub mod logs;
#[cfg(unix)]
pub mod port;
#[cfg(unix)]
pub mod ps;
pub mod push;
pub mod registry;
#[cfg(unix)]
pub mod restart;
#[cfg(unix)]
pub mod rm;
#[cfg(unix)]
pub mod rmi;
#[cfg(unix)]
pub mod run;
#[cfg(unix)]
pub mod save;
#[cfg(unix)]
pub mod start;
#[cfg(unix)]
pub mod stop;
#[cfg(unix)]
mod store;
#[cfg(unix)]
pub mod system;
#[cfg(unix)]
pub mod tag;
pub mod verify;
#[cfg(unix)]
pub mod volume;
#[cfg(unix)]
pub mod wait;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Fetch(args) => fetch::run(args, &cli.global),
        Command::Push(args) => push::run(args, &cli.global),
        Command::Inventory(args) => inventory::run(args, &cli.global),
        Command::DownloadFrozenImageV2(args) => frozen::run(args, &cli.global),
        #[cfg(unix)]
        Command::Run(args) => run::run(args, &cli.global),
        #[cfg(unix)]
        Command::Create(args) => run::create(args, &cli.global),
        #[cfg(unix)]
        Command::Exec(args) => exec::run(args, &cli.global),
        #[cfg(unix)]
        Command::Ps(args) => ps::run(args, &cli.global),
        #[cfg(unix)]
        Command::Logs(args) => logs::run(args, &cli.global),
        #[cfg(unix)]
        Command::Stop(args) => stop::run(args, &cli.global),
        #[cfg(unix)]
        Command::Kill(args) => kill::run(args, &cli.global),
        #[cfg(unix)]
        Command::Rm(args) => rm::run(args, &cli.global),
        #[cfg(unix)]
        Command::Cp(args) => cp::run(args, &cli.global),
        #[cfg(unix)]
        Command::Export(args) => export::run(args, &cli.global),
        #[cfg(unix)]
        Command::Start(args) => start::run(args, &cli.global),
        #[cfg(unix)]
        Command::Restart(args) => restart::run(args, &cli.global),
        #[cfg(unix)]
        Command::Wait(args) => wait::run(args, &cli.global),
        #[cfg(unix)]
        Command::Port(args) => port::run(args, &cli.global),
        #[cfg(unix)]
        Command::Generate(cmd) => generate::run(cmd, &cli.global),
        #[cfg(unix)]
        Command::Volume(cmd) => volume::run(cmd, &cli.global),
        #[cfg(unix)]
        Command::Bundle(args) => bundle::run(args, &cli.global),
        #[cfg(unix)]
        Command::Build(args) => build::run(args, &cli.global),
        #[cfg(unix)]
        Command::Load(args) => load::run(args, &cli.global),
        #[cfg(unix)]
        Command::Import(args) => import::run(args, &cli.global),
        #[cfg(unix)]
        Command::Images(args) => images::run(args, &cli.global),
        #[cfg(unix)]
        Command::History(args) => history::run(args, &cli.global),
        #[cfg(unix)]
        Command::Rmi(args) => rmi::run(args, &cli.global),
        #[cfg(unix)]
        Command::Tag(args) => tag::run(args, &cli.global),
        #[cfg(unix)]
        Command::Container(cmd) => container::run(cmd, &cli.global),
        #[cfg(unix)]
        Command::Image(cmd) => image::run(cmd, &cli.global),
        #[cfg(unix)]
        Command::Save(args) => save::run(args, &cli.global),
        #[cfg(unix)]
        Command::System(cmd) => system::run(cmd, &cli.global),
        Command::Verify(args) => verify::run(args, &cli.global),
        Command::Inspect(args) => inspect::run(args, &cli.global),
        Command::Completion(args) => completion::run(args),
        Command::ManPages(args) => completion::man_pages(args),
    }
}
