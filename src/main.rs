//! `ferry`: the one command-line program. It parses arguments, sets up output, calls one
//! library function per subcommand and turns errors into messages and exit codes.

#![forbid(unsafe_code)]

mod cli;
mod commands;
#[cfg(unix)]
mod container_fs;
#[cfg(unix)]
mod dir_tar;
mod env;
mod exit;
#[cfg(unix)]
mod filter;
// Listings are Linux-only; Windows uses the templates for archives only.
#[cfg_attr(not(unix), allow(dead_code))]
mod format;
#[cfg(unix)]
mod human;
mod load_progress;
mod management;
#[cfg(unix)]
mod output;
mod paths;
mod progress;
#[cfg(unix)]
mod store;
#[cfg_attr(not(unix), allow(dead_code))]
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match management::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => return exit::usage(&e),
    };
    init_logging(cli.global.verbose + cli.verbose_short);
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => exit::report(&err),
    }
}

/// Debug logs go to stderr, only when asked for (`-v`, or `FERRY_LOG=debug`).
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info,ferry=debug,ferry_fetch=debug,ferry_load=debug,ferry_run=debug",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env(env::FERRY_LOG).unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
