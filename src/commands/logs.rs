//! `ferry logs [-f] [-t] [--tail N] CONTAINER`: what a detached container wrote, each stream to
//! its own (stdout to stdout, stderr to stderr), as `docker logs` replays them.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use ferry_run::container::logs::Record;

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep following the output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs ("all" for every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Container name or ID.
    pub container: String,
}

/// Replays the log.
pub fn run(args: LogsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let tail: Option<usize> = match args.tail.as_str() {
        "all" => None,
        n => Some(n.parse().map_err(|_| {
            anyhow::anyhow!("invalid value `{n}` for --tail: a number of lines or `all`")
        })?),
    };
    let (c, _) = store::containers(global).find(&args.container)?;
    // --tail: skip what lies before the last n records present now; what comes later is
    // printed as it arrives.
    let skip = match tail {
        Some(n) => ferry_run::container::logs::records(&c, false)?
            .count()
            .saturating_sub(n),
        None => 0,
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    for r in ferry_run::container::logs::records(&c, args.follow)?.skip(skip) {
        let r: Record = r?;
        let w: &mut dyn Write = if r.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if args.timestamps {
            write!(w, "{} ", r.time)?;
        }
        w.write_all(r.log.as_bytes())?;
        w.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
