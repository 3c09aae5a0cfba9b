//! `ferry build [OPTIONS] CONTEXT` (and `ferry image build`): Docker's `build` flags, its
//! classic builder's output, on ferry's store and runtime.

mod host;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ferry_build::{BuildError, BuildOptions, Reporter};
use ferry_fetch::AgentOptions;
use ferry_fetch::http::agent::Agents;
use ferry_oci::{Digest, ImageReference};
use ferry_run::{Network, RootfsMode};

use crate::cli::GlobalArgs;
use crate::env;

/// Arguments of `ferry build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name (and tag) of the image (repeatable).
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<ImageReference>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from standard input).
    #[arg(short, long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A build-time variable (KEY=VALUE, or KEY to take ferry's own value).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build up to this stage (by name) of a multi-stage Dockerfile.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step, even those the build cache has.
    #[arg(long)]
    pub no_cache: bool,
    /// Network of RUN steps: `host` (default; ferry has no bridge) or `none`.
    #[arg(long, default_value = "host", value_name = "host|none")]
    pub network: Network,
    /// Set metadata on the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print nothing but the image ID.
    #[arg(short, long)]
    pub quiet: bool,
    /// Every time in the image (config, history, file times after it) becomes this Unix time,
    /// so builds of the same inputs are byte-identical (also SOURCE_DATE_EPOCH).
    #[arg(long, env = env::SOURCE_DATE_EPOCH, value_name = "SECONDS")]
    pub timestamp: Option<i64>,
    /// Also trust the certificate authorities in this PEM file for `ADD URL` (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// How RUN steps get a root file system: overlayfs with a copy fallback (auto), overlay,
    /// copy.
    #[arg(long, env = env::FERRY_ROOTFS, default_value = "auto", value_name = "auto|overlay|copy")]
    pub rootfs: RootfsMode,
    /// Accepted for Docker compatibility: intermediate containers are always removed.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub rm: Option<bool>,
    /// Accepted for Docker compatibility: intermediate containers are always removed.
    #[arg(long, hide = true)]
    pub force_rm: bool,
    /// The build context: a directory.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// Runs `ferry build`.
pub fn run(args: BuildArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let context = args.context.clone();
    if !context.is_dir() {
        bail!(
            "unable to prepare context: path \"{}\" is not a directory",
            context.display()
        );
    }
    let (dockerfile, name, in_context) = read_dockerfile(&args, &context)?;
    let build_args = args
        .build_args
        .iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            // A bare KEY takes ferry's own value, and is left out when ferry has none.
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect();
    let labels = args
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let opts = BuildOptions {
        context: context.clone(),
        dockerfile,
        dockerfile_name: name,
        dockerfile_in_context: in_context,
        tags: args.tags.iter().map(|t| t.qualified()).collect(),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        network_none: args.network == Network::None,
        labels,
        timestamp: args.timestamp,
        platform: ferry_load::host_platform(),
    };
    let store = crate::store::open(global)?;
    let session = store
        .build_session()
        .context("cannot start a build in the store")?;
    let store_host = host::StoreHost {
        store: &store,
        session,
    };
    // The build's own directory, the store's temporary directory and its root: three
    // places, likely in three block groups, for a step whose container's group is slow.
    let spare_dirs = vec![
        store_host.session.dir().to_path_buf(),
        store.root().join("tmp"),
        store.root().to_path_buf(),
    ];
    let runner = host::Runner {
        source: crate::commands::store::StoreSource(store.clone()),
        containers: crate::commands::store::containers(global),
        rootfs: args.rootfs,
        spare_dirs,
    };
    let agents = Agents::new(&AgentOptions {
        ca_certs: args.ca_certs.clone(),
        ..AgentOptions::default()
    })?;
    let http = host::Http { agents };
    let build_host = ferry_build::host::Host {
        store: &store_host,
        runner: &runner,
        downloader: &http,
    };
    ferry_run::container::step::catch_interrupts();
    let mut out = Output {
        quiet: args.quiet,
        stdout: std::io::stdout(),
        at_line_start: true,
    };
    match ferry_build::build(&opts, &build_host, &mut out) {
        Ok(result) => {
            if args.quiet {
                println!("{}", result.id);
            } else {
                out.line(&format!("Successfully built {}", short(&result.id)));
                for t in &args.tags {
                    out.line(&format!(
                        "Successfully tagged {}",
                        t.familiar_tagged().unwrap_or_else(|| t.to_string())
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out.finish_line();
            report(&e);
            Ok(match e.interrupted() {
                Some(sig) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
                None => ExitCode::FAILURE,
            })
        }
    }
}

/// The Dockerfile's text, how errors name it, and its path inside the context (if it is
/// there).
fn read_dockerfile(
    args: &BuildArgs,
    context: &Path,
) -> anyhow::Result<(String, String, Option<String>)> {
    let path = match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the Dockerfile from standard input")?;
            return Ok((text, "Dockerfile".into(), None));
        }
        Some(f) => f.clone(),
        None => context.join("Dockerfile"),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "unable to prepare context: unable to evaluate the Dockerfile path {}",
            path.display()
        )
    })?;
    let name = match &args.file {
        Some(f) => f.display().to_string(),
        None => "Dockerfile".into(),
    };
    let in_context = std::fs::canonicalize(&path)
        .ok()
        .zip(std::fs::canonicalize(context).ok())
        .and_then(|(p, c)| p.strip_prefix(&c).ok().map(|r| r.display().to_string()));
    Ok((text, name, in_context))
}

/// One line: where it failed, then why (every cause), and a hint when there is one.
fn report(e: &BuildError) {
    let mut line = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {line}");
    if let Some(h) = e.hint() {
        let _ = writeln!(err, "hint: {h}");
    }
}

fn short(id: &Digest) -> &str {
    &id.digest()[..12]
}

/// Docker's classic builder output on standard output.
struct Output {
    quiet: bool,
    stdout: std::io::Stdout,
    /// Whether the last byte written ended a line (a RUN's output may not).
    at_line_start: bool,
}

impl Output {
    fn line(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        self.finish_line();
        let mut o = self.stdout.lock();
        let _ = writeln!(o, "{text}");
        let _ = o.flush();
    }

    fn finish_line(&mut self) {
        if !self.at_line_start {
            let _ = writeln!(self.stdout.lock());
            self.at_line_start = true;
        }
    }
}

impl Reporter for Output {
    fn step(&mut self, index: usize, total: usize, text: &str) {
        self.line(&format!("Step {index}/{total} : {text}"));
    }

    fn cached(&mut self) {
        self.line(" ---> Using cache");
    }

    fn running(&mut self, container: &str) {
        self.line(&format!(" ---> Running in {container}"));
    }

    fn output(&mut self, bytes: &[u8]) {
        if self.quiet || bytes.is_empty() {
            return;
        }
        let mut o = self.stdout.lock();
        let _ = o.write_all(bytes);
        let _ = o.flush();
        self.at_line_start = bytes.ends_with(b"\n");
    }

    fn removed(&mut self, container: &str) {
        self.line(&format!("Removing intermediate container {container}"));
    }

    fn image(&mut self, id: &Digest) {
        self.line(&format!(" ---> {}", short(id)));
    }

    fn notice(&mut self, text: &str) {
        self.line(text);
    }
}
