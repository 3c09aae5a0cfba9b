//! `ferry inspect NAME…`: containers and images as `docker inspect` shows them (a JSON array,
//! or a Go template per object with `-f`), and — for a path to an archive — what the archive
//! holds without loading it (on every platform).

mod archive;
#[cfg(unix)]
mod container;
#[cfg(unix)]
mod image;

#[cfg(unix)]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ferry_oci::Platform;

use crate::cli::GlobalArgs;
use crate::progress::ProgressMode;

/// What kind of object a name is looked up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A container.
    Container,
    /// An image of the store.
    Image,
}

/// Arguments of `ferry inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers or images (names or IDs); or an archive file (`-` for standard input),
    /// listed without loading it.
    #[arg(required = true, value_name = "NAME|ID|FILE")]
    pub names: Vec<String>,
    /// Only look for objects of this type.
    #[arg(long = "type", value_enum, value_name = "container|image")]
    pub kind: Option<Kind>,
    /// Format the output using a Go template (an archive: `json`, `table` or a template).
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Display total file sizes if the type is container.
    #[arg(short, long)]
    pub size: bool,
    /// Platform to pick in multi-platform archives.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// How progress is shown while an archive is read.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// Runs `ferry inspect`.
pub fn run(args: InspectArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let archives: Vec<PathBuf> = args
        .names
        .iter()
        .filter(|n| args.kind.is_none() && is_archive(n))
        .map(|n| crate::paths::native(Path::new(n)))
        .collect();
    if !archives.is_empty() {
        if archives.len() != args.names.len() {
            anyhow::bail!("inspect either archive files or containers and images, not both");
        }
        for a in &archives {
            archive::run(a, &args)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    objects(&args, global)
}

/// `-` (standard input) or an existing file: today's archive listing, so nothing breaks.
fn is_archive(name: &str) -> bool {
    let path = crate::paths::native(Path::new(name));
    // A split archive may be named without its part suffix.
    name == "-" || path.is_file() || ferry_load::split::part_name(&path, 0).is_file()
}

#[cfg(not(unix))]
fn objects(args: &InspectArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "no such archive: {} (on Windows, ferry inspects archive files only)",
        args.names.join(", ")
    )
}

/// Looks every name up (containers first, then images, as Docker does) and prints them.
#[cfg(unix)]
fn objects(args: &InspectArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let template = crate::format::Format::inspect(args.format.as_deref())?;
    let containers = super::store::containers(global);
    let store = crate::store::open(global).ok();
    let mut found: Vec<Inspected> = Vec::new();
    let mut missing = Vec::new();
    for name in &args.names {
        let as_container = || {
            containers.find(name).ok().map(|(c, m)| {
                container::inspect(&c, &m, store.as_ref(), args.size).map(Inspected::Container)
            })
        };
        let as_image = || {
            store.as_ref().and_then(|s| {
                s.image(name)
                    .ok()
                    .map(|img| image::inspect(s, &img).map(Inspected::Image))
            })
        };
        let v = match args.kind {
            Some(Kind::Container) => as_container(),
            Some(Kind::Image) => as_image(),
            None => as_container().or_else(as_image),
        };
        match v {
            Some(v) => found.push(v?),
            None => missing.push(name.clone()),
        }
    }
    let mut stdout = std::io::stdout().lock();
    match &template {
        Some(t) => {
            for v in &found {
                let what = match v {
                    Inspected::Container(_) => "container",
                    Inspected::Image(_) => "image",
                };
                let data = serde_json::to_value(v)?;
                writeln!(stdout, "{}", crate::format::execute(t, &data, what)?)?;
            }
        }
        None => writeln!(stdout, "{}", docker_json(&found)?)?,
    }
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Docker names every missing object and fails once the others are printed.
    let what = match args.kind {
        Some(Kind::Container) => "container",
        Some(Kind::Image) => "image",
        None => "object",
    };
    for m in &missing {
        eprintln!("error: no such {what}: {m}");
    }
    Ok(ExitCode::FAILURE)
}

/// One object found, in Docker's shape (fields in Docker's order).
#[cfg(unix)]
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Inspected {
    Container(Box<container::ContainerJson>),
    Image(Box<image::ImageJson>),
}

/// JSON indented with four spaces, as `docker inspect` prints it.
#[cfg(unix)]
fn docker_json(v: &[Inspected]) -> anyhow::Result<String> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}
