//! Docker's management commands: `ferry container ls`, `ferry image load`, … Each one *is*
//! a top-level command under another name (`container ls` is `ps`, `image rm` is `rmi`), with
//! the same flags, so it is routed there rather than defined twice.
//!
//! [`ROUTES`] is the whole mapping. A route whose target does not exist in this build is left
//! out (help, completions and parsing alike), so a verb another branch brings —
//! `container start` with `ferry start`, `image build` with `ferry build` — appears as soon as
//! its top-level command does, with no edit here.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::Cli;

/// `(group, verb, aliases, the top-level command line it stands for)`.
pub const ROUTES: &[(&str, &str, &[&str], &[&str])] = &[
    ("container", "attach", &[], &["attach"]),
    ("container", "cp", &[], &["cp"]),
    ("container", "create", &[], &["create"]),
    ("container", "exec", &[], &["exec"]),
    ("container", "export", &[], &["export"]),
    (
        "container",
        "inspect",
        &[],
        &["inspect", "--type", "container"],
    ),
    ("container", "kill", &[], &["kill"]),
    ("container", "logs", &[], &["logs"]),
    ("container", "ls", &["ps", "list"], &["ps"]),
    ("container", "port", &[], &["port"]),
    ("container", "restart", &[], &["restart"]),
    ("container", "rm", &["remove"], &["rm"]),
    ("container", "run", &[], &["run"]),
    ("container", "start", &[], &["start"]),
    ("container", "stop", &[], &["stop"]),
    ("container", "wait", &[], &["wait"]),
    ("image", "build", &[], &["build"]),
    ("image", "history", &[], &["history"]),
    ("image", "import", &[], &["import"]),
    ("image", "inspect", &[], &["inspect", "--type", "image"]),
    ("image", "load", &[], &["load"]),
    ("image", "ls", &["list"], &["images"]),
    ("image", "push", &[], &["push"]),
    ("image", "rm", &["remove"], &["rmi"]),
    ("image", "save", &[], &["save"]),
    ("image", "tag", &[], &["tag"]),
];

/// The whole command line as clap knows it: the derived commands plus every route whose
/// target exists. Help, completions and man pages are generated from this.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let top: Vec<clap::Command> = cmd.get_subcommands().cloned().collect();
    for group in ["container", "image"] {
        if cmd.find_subcommand(group).is_none() {
            continue;
        }
        cmd = cmd.mut_subcommand(group, |mut g| {
            for (_, verb, aliases, target) in ROUTES.iter().filter(|r| r.0 == group) {
                let Some(t) = top.iter().find(|c| c.get_name() == target[0]) else {
                    continue;
                };
                let mut sub = t
                    .clone()
                    .name(*verb)
                    .visible_aliases(aliases.iter().copied());
                // `image inspect` is `inspect --type image`: the type is not the user's to set.
                if target.len() > 1 {
                    sub = sub.mut_arg("kind", |a| a.hide(true));
                }
                g = g.subcommand(sub);
            }
            g
        });
    }
    cmd
}

/// Parses the command line: checks it against [`command`] (so `ferry container ls --help`
/// and errors speak of what the user typed), then rewrites a routed management command into
/// its top-level form and parses that into [`Cli`].
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches_from(&args)?;
    let args = match matches.subcommand() {
        Some((group, sub)) => match sub.subcommand_name() {
            Some(verb) => route(&args, group, verb).unwrap_or(args),
            None => args,
        },
        None => args,
    };
    Cli::try_parse_from(args)
}

/// `ferry [GLOBAL…] GROUP [GLOBAL…] VERB REST…` → `ferry [GLOBAL…] TARGET… REST…`, or `None`
/// when `GROUP VERB` is not a route (a verb the group defines itself, like `image prune`).
fn route(args: &[OsString], group: &str, verb: &str) -> Option<Vec<OsString>> {
    let (_, _, _, target) = ROUTES.iter().find(|r| r.0 == group && r.1 == verb)?;
    let aliases = ROUTES
        .iter()
        .find(|r| r.0 == group && r.1 == verb)
        .map_or(&[][..], |r| r.2);
    let g = positional(args, 1)?;
    let v = positional(args, g + 1)?;
    let typed = args[v].to_str()?;
    if typed != verb && !aliases.contains(&typed) {
        return None;
    }
    let mut out: Vec<OsString> = args[..g].to_vec();
    out.extend_from_slice(&args[g + 1..v]);
    out.extend(target.iter().map(OsString::from));
    out.extend_from_slice(&args[v + 1..]);
    Some(out)
}

/// The index of the first argument at or after `from` that is not a global option (or its
/// value): the subcommand's name.
fn positional(args: &[OsString], from: usize) -> Option<usize> {
    let mut i = from;
    while i < args.len() {
        let a = args[i].to_str()?;
        if a == "--root" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn management_commands_become_their_short_forms() {
        let r = |s: &str, g: &str, v: &str| {
            route(&argv(s), g, v).map(|a| {
                a.iter()
                    .map(|x| x.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        for (line, group, verb, short) in [
            ("ferry container ls -a", "container", "ls", "ferry ps -a"),
            (
                "ferry --root /s container ps -q",
                "container",
                "ls",
                "ferry --root /s ps -q",
            ),
            (
                "ferry image inspect busybox",
                "image",
                "inspect",
                "ferry inspect --type image busybox",
            ),
            ("ferry image rm -f x", "image", "rm", "ferry rmi -f x"),
            // The container's own arguments are never touched.
            (
                "ferry container run img ls -a",
                "container",
                "run",
                "ferry run img ls -a",
            ),
        ] {
            assert_eq!(r(line, group, verb).as_deref(), Some(short), "{line}");
        }
        assert!(r("ferry image prune -f", "image", "prune").is_none());
    }

    #[test]
    fn every_route_that_exists_parses_like_its_short_form() {
        let cmd = command();
        for group in ["container", "image"] {
            let g = cmd.find_subcommand(group).unwrap();
            for (_, verb, _, target) in ROUTES.iter().filter(|r| r.0 == group) {
                let exists = cmd.find_subcommand(target[0]).is_some();
                assert_eq!(
                    g.find_subcommand(verb).is_some(),
                    exists,
                    "{group} {verb} → {target:?}"
                );
            }
        }
        let cli = parse(argv("ferry container ls -a -q")).unwrap();
        assert!(matches!(cli.command, crate::cli::Command::Ps(ref a) if a.all && a.quiet));
        let cli = parse(argv("ferry image ls --digests")).unwrap();
        assert!(matches!(cli.command, crate::cli::Command::Images(ref a) if a.digests));
    }
}
