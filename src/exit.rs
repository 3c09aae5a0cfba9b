//! How failures reach the user: `error:` with the outermost message, one `caused by:` line per
//! underlying cause, then an optional `hint:`; and which exit code the shell sees.

use std::io::Write;
use std::process::ExitCode;

/// Prints `err` to stderr and returns the exit code for it.
pub fn report(err: &anyhow::Error) -> ExitCode {
    // A closed pipe (`ferry images | head`) is not an error worth a message.
    if err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stderr().lock();
    let mut chain = err.chain();
    if let Some(top) = chain.next() {
        let _ = writeln!(out, "error: {top}");
    }
    let mut last = err.to_string();
    for cause in chain {
        let text = cause.to_string();
        // Libraries put causes in `source()`, never in their own text, but third-party errors
        // sometimes repeat themselves; skip exact repeats.
        if text != last {
            let _ = writeln!(out, "  caused by: {text}");
        }
        last = text;
    }
    if let Some(hint) = hint(err) {
        let _ = writeln!(out, "hint: {hint}");
    }
    #[cfg(unix)]
    if let Some(e) = err
        .chain()
        .find_map(|c| c.downcast_ref::<ferry_run::RunError>())
    {
        // Docker's codes: 125 the tool failed, 126 cannot execute, 127 not found.
        return ExitCode::from(e.exit_code());
    }
    #[cfg(unix)]
    if crate::commands::run::is_container_command() {
        return ExitCode::from(125);
    }
    ExitCode::FAILURE
}

/// A command line clap refused: its message, and exit code 125 for `run` and `exec` as Docker
/// gives (2 elsewhere).
pub fn usage(e: &clap::Error) -> ExitCode {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            ExitCode::SUCCESS
        }
        #[cfg(unix)]
        _ if crate::commands::run::is_container_command() => ExitCode::from(125),
        _ => ExitCode::from(2),
    }
}

/// The first hint any error in the chain offers.
fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|c| {
        let hint = c
            .downcast_ref::<ferry_fetch::FetchError>()
            .and_then(|e| e.hint())
            .or_else(|| {
                c.downcast_ref::<ferry_fetch::push::PushError>()
                    .and_then(|e| e.hint())
            })
            .or_else(|| {
                c.downcast_ref::<ferry_load::LoadError>()
                    .and_then(|e| e.hint())
            })
            .or_else(|| {
                c.downcast_ref::<ferry_load::StoreError>()
                    .and_then(|e| e.hint())
            });
        #[cfg(unix)]
        let hint = hint.or_else(|| {
            c.downcast_ref::<ferry_run::RunError>()
                .and_then(|e| e.hint())
        });
        hint
    })
}
