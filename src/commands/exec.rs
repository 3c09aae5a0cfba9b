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
    /// The container (name or ID), then the command and its arguments. Options end at the
    /// container: everything after it is the command's.
    #[arg(
        value_name = "CONTAINER COMMAND [ARG",
        required = true,
        num_args = 2..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

/// Runs `ferry exec`; its exit status is the command's.
pub fn run(args: ExecArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let env = super::run::resolve_env(&args.env)?;
    let (container, command) = args.args.split_first().expect("clap requires two values");
    let opts = ExecOptions {
        command: command.to_vec(),
        interactive: args.interactive,
        tty: args.tty,
        env,
        user: args.user,
        workdir: args.workdir,
    };
    let code = ferry_run::container::exec::exec(&store::containers(global), container, &opts)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
