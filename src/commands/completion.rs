//! `ferry completion SHELL`: a completion script generated from the command definitions
//! (management commands included), so it never falls behind the flags; and the man pages
//! `scripts/man` writes from the same definitions.

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
    // Into memory first: clap_complete panics on a write error (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ferry", &mut script);
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `ferry man-pages` (hidden: `scripts/man` runs it).
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write `ferry.1`, `ferry-fetch.1`, `ferry-container-ls.1`, … into.
    pub dir: std::path::PathBuf,
}

/// Writes one man page per command, management commands included.
pub fn man_pages(args: ManArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    // `help` subcommands would each get a page repeating another one.
    fn without_help(cmd: clap::Command) -> clap::Command {
        let subs: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
        let mut cmd = cmd.disable_help_subcommand(true);
        for s in subs {
            let name = s.get_name().to_string();
            cmd = cmd.mut_subcommand(name, without_help);
        }
        cmd
    }
    let mut cmd = without_help(crate::management::command());
    cmd.build();
    clap_mangen::generate_to(cmd, &args.dir)
        .with_context(|| format!("cannot write man pages into {}", args.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
