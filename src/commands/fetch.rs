//! `ferry fetch IMAGE… -o FILE`: download images into one archive (whole, split into parts,
//! or a delta leaving out what the far side holds), or into the directory moby's script writes.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_fetch::{Destination, FetchOptions, Have, Wanted};
use ferry_oci::inventory::Inventory;
use ferry_oci::{ImageReference, PlatformChoice};

use crate::cli::GlobalArgs;
use crate::commands::registry::{RegistryArgs, cache_dir, docker_config};
use crate::progress::{CliReporter, ProgressMode, human_bytes};

/// Arguments of `ferry fetch`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["output", "dir"])))]
pub struct FetchArgs {
    /// Images to fetch.
    #[arg(
        required_unless_present = "file",
        value_name = "IMAGE",
        help = "Images to fetch: [HOST[:PORT]/]NAME[:TAG][@DIGEST]. Docker Hub is the default registry."
    )]
    pub images: Vec<ImageReference>,
    /// Also fetch the images listed in FILE: one per line, `#` comments, optionally
    /// `--platform P` after an image.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The archive to write (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the directory moby's download-frozen-image-v2.sh writes instead of an archive
    /// (for `tar -cC DIR . | docker load`).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["split", "have", "since"])]
    pub dir: Option<PathBuf>,
    /// Write the archive as FILE.000, FILE.001, … of at most SIZE bytes each (K, M, G in
    /// powers of 1024; `fat32` is 4 GiB − 1 byte), with one FILE.sha256 for all parts.
    #[arg(long, value_name = "SIZE", value_parser = ferry_fetch::parse_split_size)]
    pub split: Option<u64>,
    /// Leave out the layers the far side holds, as listed by `ferry inventory` there (a
    /// delta archive: `ferry load` and `ferry push` complete it from what they have).
    #[arg(long, value_name = "have.json", conflicts_with = "since")]
    pub have: Option<PathBuf>,
    /// Leave out the layers of an earlier archive the far side loaded (a delta archive).
    #[arg(long, value_name = "ARCHIVE")]
    pub since: Option<PathBuf>,
    #[command(flatten)]
    pub opts: FetchOpts,
}

/// How to reach registries and show progress (shared with `download-frozen-image-v2`).
#[derive(Debug, Args)]
pub struct FetchOpts {
    /// Platform(s) to take from multi-platform images: one (`linux/arm64`), several
    /// (`linux/amd64,linux/arm64`) or `all`; with more than one the image index is kept.
    #[arg(
        long,
        default_value = "linux/amd64",
        value_name = "OS/ARCH[/VARIANT][,…]|all"
    )]
    pub platform: PlatformChoice,
    /// Number of blobs downloaded at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// What besides the images shapes an archive.
#[derive(Debug, Default)]
pub struct Shape {
    /// Parts of at most this many bytes.
    pub split: Option<u64>,
    /// The layers the far side holds (a delta).
    pub have: Option<Have>,
}

/// Images named on the command line: the platforms are the command line's too.
pub(crate) fn named_on_the_command_line(images: &[ImageReference]) -> Vec<Wanted> {
    images
        .iter()
        .map(|r| Wanted {
            reference: r.clone(),
            platform: None,
        })
        .collect()
}

/// Runs `ferry fetch`.
pub fn run(args: FetchArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let destination = match (&args.output, &args.dir) {
        (_, Some(dir)) => Destination::Directory(crate::paths::native(dir)),
        (Some(o), None) if o.as_os_str() == "-" => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write an archive to a terminal; redirect standard output or use -o FILE"
                );
            }
            if args.split.is_some() {
                bail!("--split writes files: use -o FILE");
            }
            Destination::Stdout {
                staging: cache_dir().join("partial"),
            }
        }
        (Some(o), None) => Destination::File(crate::paths::native(o)),
        (None, None) => unreachable!("clap requires -o or --dir"),
    };
    let target = match (&args.output, &args.dir) {
        (_, Some(d)) => d.display().to_string(),
        (Some(o), _) if o.as_os_str() == "-" => "stdout".to_string(),
        (Some(o), _) => o.display().to_string(),
        (None, None) => String::new(),
    };
    let mut wanted = named_on_the_command_line(&args.images);
    if let Some(list) = &args.file {
        wanted.extend(read_list(list)?);
    }
    if wanted.is_empty() {
        bail!(
            "no image to fetch: {} lists none",
            args.file.as_deref().unwrap_or(Path::new("-")).display()
        );
    }
    let several = |w: &Wanted| {
        w.platform
            .as_ref()
            .unwrap_or(&args.opts.platform)
            .keeps_index()
    };
    if args.dir.is_some() && wanted.iter().any(several) {
        bail!(
            "--dir writes one platform per image (the script's format): choose one with --platform"
        );
    }
    let shape = Shape {
        split: args.split,
        have: match (&args.have, &args.since) {
            (Some(inv), _) => Some(have_from_inventory(inv)?),
            (None, Some(old)) => Some(have_from_archive(old)?),
            (None, None) => None,
        },
    };
    fetch(&wanted, &destination, &args.opts, shape, &target)?;
    Ok(ExitCode::SUCCESS)
}

/// Fetches `images` into `destination` and reports it (`target` names it for people).
pub fn fetch(
    images: &[Wanted],
    destination: &Destination,
    args: &FetchOpts,
    shape: Shape,
    target: &str,
) -> anyhow::Result<ferry_fetch::Summary> {
    let mode = if args.quiet {
        ProgressMode::None
    } else {
        args.progress.resolve()
    };
    let reporter = Arc::new(CliReporter::new(mode));
    let split = shape.split;
    let opts = FetchOptions {
        platform: args.platform.clone(),
        concurrency: args.concurrency.into(),
        insecure_registries: args.registry.insecure_registries.clone(),
        credentials: args.registry.credentials()?,
        docker_config: Some(docker_config()?),
        cache_dir: Some(cache_dir()),
        agent: args.registry.agent(),
        retry: args.registry.retry(),
        split: shape.split,
        have: shape.have,
    };
    let result = ferry_fetch::fetch_list(images, destination, &opts, reporter.clone());
    reporter.clear();
    let summary = result.with_context(|| match images {
        [one] => format!("failed to fetch {}", one.reference),
        many => format!("failed to fetch {} images", many.len()),
    })?;
    if !args.quiet {
        let secs = summary.elapsed.as_secs_f64();
        let what = match destination {
            Destination::Directory(_) => format!(
                "{} of blobs",
                human_bytes(summary.downloaded_bytes + summary.reused_bytes)
            ),
            _ => human_bytes(summary.archive_bytes),
        };
        let parts = match (split, summary.checksums.len()) {
            (Some(size), n) => format!(
                " ({n} part{} of at most {})",
                if n == 1 { "" } else { "s" },
                human_bytes(size)
            ),
            (None, _) => String::new(),
        };
        let checksum = match (destination, summary.checksums.as_slice()) {
            (Destination::Directory(_), _) => String::new(),
            (_, [one]) if split.is_none() => format!(", sha256 {}", &one.digest()[..12]),
            _ => String::new(),
        };
        let images = summary.images.len();
        eprintln!(
            "fetched {images} image{} for {} into {target}{parts}: {what} ({} downloaded{}) in {secs:.1}s{checksum}",
            if images == 1 { "" } else { "s" },
            args.platform,
            human_bytes(summary.downloaded_bytes),
            if summary.reused_bytes > 0 {
                format!(
                    ", {} reused from earlier archives",
                    human_bytes(summary.reused_bytes)
                )
            } else {
                String::new()
            },
        );
        if let Some(delta) = &summary.delta {
            eprintln!(
                "delta archive: {} layer{} ({}) left out, which the far side must hold ({}); {} travels",
                delta.needs.len(),
                if delta.needs.len() == 1 { "" } else { "s" },
                human_bytes(delta.needed_bytes()),
                delta.based_on,
                human_bytes(summary.archive_bytes),
            );
        }
    }
    Ok(summary)
}

/// The images of an image list file.
pub fn read_list(path: &Path) -> anyhow::Result<Vec<Wanted>> {
    let text = std::fs::read_to_string(crate::paths::native(path))
        .with_context(|| format!("cannot read the image list {}", path.display()))?;
    ferry_fetch::image_list::parse(&text)
        .with_context(|| format!("cannot read the image list {}", path.display()))
}

/// What an inventory (`ferry inventory` on the far side) says is there.
fn have_from_inventory(path: &Path) -> anyhow::Result<Have> {
    let bytes = std::fs::read(crate::paths::native(path))
        .with_context(|| format!("cannot read the inventory {}", path.display()))?;
    let inv = Inventory::parse(&bytes).with_context(|| {
        format!(
            "{} is not an inventory written by ferry inventory",
            path.display()
        )
    })?;
    let repositories: HashMap<String, Vec<String>> = inv
        .blobs
        .iter()
        .filter(|b| !b.repositories.is_empty())
        .map(|b| (b.digest.clone(), b.repositories.clone()))
        .collect();
    Ok(Have {
        digests: inv.digests(),
        based_on: inv.source.clone(),
        repositories,
    })
}

/// What the far side holds after loading an earlier archive: its blobs, and what it needed
/// if it was a delta itself.
fn have_from_archive(path: &Path) -> anyhow::Result<Have> {
    let native = crate::paths::native(path);
    let digests = ferry_load::delta::archive_blobs(&native)
        .with_context(|| format!("cannot read the earlier archive {}", path.display()))?;
    Ok(Have {
        digests,
        based_on: format!(
            "archive {}",
            native
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
        repositories: HashMap::new(),
    })
}
