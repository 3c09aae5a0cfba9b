//! `ferry completion SHELL`: a completion script generated from the command definitions
//! (management commands included), so it never falls behind the flags.

use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

/// Arguments of `ferry completion`.
#[derive(Debug, Args)]
#[command(after_help = "Install, for example:\n  \
    ferry completion bash > /etc/bash_completion.d/ferry\n  \
    ferry completion zsh > \"${fpath[1]}/_ferry\"\n  \
    ferry completion fish > ~/.config/fish/completions/ferry.fish\n  \
    ferry completion powershell >> $PROFILE")]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the script to standard output.
pub fn run(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::management::command();
    clap_complete::generate(args.shell, &mut cmd, "ferry", &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}
