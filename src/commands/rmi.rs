//! `ferry rmi IMAGE…`: remove images (names or IDs), as `docker rmi` does.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use ferry_load::store::Removal;

use crate::cli::GlobalArgs;

/// Arguments of `ferry rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove: names or (prefixes of) IDs.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Remove even when a container uses the image (it is only untagged then), or when an ID
    /// has several names.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs `ferry rmi`; every image is tried, the exit code says whether all went.
pub fn run(args: RmiArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let store = crate::store::open(global)?;
    let mut failed = false;
    for image in &args.images {
        match store.remove(image, args.force) {
            Ok(steps) => {
                for s in steps {
                    match s {
                        Removal::Untagged(n) => writeln!(stdout, "Untagged: {n}")?,
                        Removal::Deleted(id) => writeln!(stdout, "Deleted: {id}")?,
                    }
                }
            }
            Err(e) => {
                failed = true;
                crate::exit::report(
                    &anyhow::Error::new(e).context(format!("cannot remove {image}")),
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
