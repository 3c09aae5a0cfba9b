//! `ferry fetch IMAGE… -o FILE`: download images into one archive.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_fetch::{
    AgentOptions, Credentials, Destination, DockerConfig, FetchOptions, RetryPolicy,
};
use ferry_oci::{ImageReference, Platform};

use crate::cli::GlobalArgs;
use crate::env;
use crate::progress::{CliReporter, ProgressMode, human_bytes};

/// Arguments of `ferry fetch`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["output", "dir"])))]
pub struct FetchArgs {
    /// Images to fetch.
    #[arg(
        required = true,
        value_name = "IMAGE",
        help = "Images to fetch: [HOST[:PORT]/]NAME[:TAG][@DIGEST]. Docker Hub is the default registry."
    )]
    pub images: Vec<ImageReference>,
    /// The archive to write (`-` for standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Write the directory moby's download-frozen-image-v2.sh writes instead of an archive
    /// (for `tar -cC DIR . | docker load`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub opts: FetchOpts,
}

/// How to reach registries and show progress (shared with `download-frozen-image-v2`).
#[derive(Debug, Args)]
pub struct FetchOpts {
    /// Platform to pick from multi-platform images.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Platform,
    /// Number of blobs downloaded at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Allow plain HTTP and unverified TLS for this registry (repeatable). Never implied.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Also trust the certificate authorities in this PEM file (repeatable), on top of the
    /// system's trust store.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Registry user name (the password is read with --password-stdin, or FERRY_PASSWORD).
    /// Without it, credentials come from Docker's config.json (DOCKER_CONFIG, ~/.docker).
    #[arg(short, long, env = env::FERRY_USERNAME, value_name = "NAME")]
    pub username: Option<String>,
    /// Read the registry password (or token) from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// How many times a failed request or dropped download is tried in all.
    #[arg(long, default_value_t = 6, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub retries: u32,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `ferry fetch`.
pub fn run(args: FetchArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let cache_dir =
        ferry_fetch::cache_dir(std::env::var_os(env::FERRY_CACHE_DIR).map(PathBuf::from));
    let destination = match (&args.output, &args.dir) {
        (_, Some(dir)) => Destination::Directory(crate::paths::native(dir)),
        (Some(o), None) if o.as_os_str() == "-" => {
            if std::io::stdout().is_terminal() {
                bail!(
                    "refusing to write an archive to a terminal; redirect standard output or use -o FILE"
                );
            }
            Destination::Stdout {
                staging: cache_dir.join("partial"),
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
    fetch(&args.images, &destination, &args.opts, &target)?;
    Ok(ExitCode::SUCCESS)
}

/// Fetches `images` into `destination` and reports it (`target` names it for people).
pub fn fetch(
    images: &[ImageReference],
    destination: &Destination,
    args: &FetchOpts,
    target: &str,
) -> anyhow::Result<ferry_fetch::Summary> {
    let credentials = credentials(args)?;
    let cache_dir =
        ferry_fetch::cache_dir(std::env::var_os(env::FERRY_CACHE_DIR).map(PathBuf::from));
    let mode = if args.quiet {
        ProgressMode::None
    } else {
        args.progress.resolve()
    };
    let reporter = Arc::new(CliReporter::new(mode));
    let opts = FetchOptions {
        platform: args.platform.clone(),
        concurrency: args.concurrency.into(),
        insecure_registries: args.insecure_registries.clone(),
        credentials,
        docker_config: Some(Arc::new(docker_config()?)),
        cache_dir: Some(cache_dir),
        agent: AgentOptions {
            ca_certs: args
                .ca_certs
                .iter()
                .map(|p| crate::paths::native(p))
                .collect(),
            ..AgentOptions::default()
        },
        retry: RetryPolicy {
            attempts: args.retries,
            ..RetryPolicy::default()
        },
    };
    let result = ferry_fetch::fetch(images, destination, &opts, reporter.clone());
    reporter.clear();
    let summary = result.with_context(|| match images {
        [one] => format!("failed to fetch {one}"),
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
        eprintln!(
            "fetched {} image{} for {} into {target}: {what} ({} downloaded{}) in {secs:.1}s{}",
            summary.images.len(),
            if summary.images.len() == 1 { "" } else { "s" },
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
            match destination {
                Destination::Directory(_) => String::new(),
                _ => format!(", sha256 {}", &summary.checksum.digest()[..12]),
            },
        );
    }
    Ok(summary)
}

/// Credentials from `--username` + `--password-stdin`, or the FERRY_USERNAME/FERRY_PASSWORD pair.
fn credentials(args: &FetchOpts) -> anyhow::Result<Option<Credentials>> {
    let password = if args.password_stdin {
        if args.username.is_none() {
            bail!("--password-stdin needs --username");
        }
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from standard input")?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        std::env::var(env::FERRY_PASSWORD).ok()
    };
    match (&args.username, password) {
        (Some(u), Some(p)) => Ok(Some(Credentials::new(u.clone(), p))),
        (Some(_), None) => {
            bail!("--username needs a password: use --password-stdin or set FERRY_PASSWORD")
        }
        (None, _) => Ok(None),
    }
}

/// Docker's client configuration, as the Docker client would find it.
fn docker_config() -> anyhow::Result<DockerConfig> {
    match DockerConfig::path(std::env::var_os(env::DOCKER_CONFIG).map(PathBuf::from)) {
        Some(path) => Ok(DockerConfig::load(&path)?),
        None => Ok(DockerConfig::default()),
    }
}
