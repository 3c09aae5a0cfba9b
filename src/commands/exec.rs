//! `ferry exec [-i] [-t] CONTAINER COMMAND [ARG…]`.

use std::process::ExitCode;

use clap::Args;
use ferry_run::ExecOptions;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep standard input open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// User and group, names or ids.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Working directory.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Container name or ID.
    pub container: String,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs `ferry exec`; its exit status is the command's.
pub fn run(args: ExecArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let env = args
        .env
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let opts = ExecOptions {
        command: args.command,
        interactive: args.interactive,
        tty: args.tty,
        env,
        user: args.user,
        workdir: args.workdir,
    };
    let code =
        ferry_run::container::exec::exec(&store::containers(global), &args.container, &opts)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
