//! `ferry verify FILE`: check an archive completely without loading it, on any platform, so
//! it can be checked before the trip and again after it.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ferry_load::Reporter;
use ferry_load::split::Parts;
use ferry_oci::{Hasher, Platform, VerifyingReader};

use crate::cli::GlobalArgs;
use crate::load_progress::LoadReporter;
use crate::progress::{ProgressMode, human_bytes};

/// Arguments of `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive (`-` for standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Platform to check in multi-platform archives (default: linux/amd64 on Windows, this
    /// machine's elsewhere).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// The platform archive commands choose by default.
pub fn default_platform() -> Platform {
    if cfg!(windows) {
        Platform::default()
    } else {
        ferry_load::host_platform()
    }
}

/// An archive opened for reading.
pub struct Input {
    /// Its bytes.
    pub reader: Box<dyn Read>,
    /// Its size, when known.
    pub len: Option<u64>,
    /// The file or parts it is in (none for standard input).
    pub parts: Option<Parts>,
}

/// Opens FILE (or stdin for `-`; the first part, or the name without suffix, of a split
/// archive).
pub fn open_input(file: &Path) -> anyhow::Result<Input> {
    if file.as_os_str() == "-" {
        if std::io::stdin().is_terminal() {
            bail!("no archive on standard input");
        }
        return Ok(Input {
            reader: Box::new(std::io::stdin().lock()),
            len: None,
            parts: None,
        });
    }
    let parts =
        Parts::find(file).with_context(|| format!("cannot open archive {}", file.display()))?;
    Ok(Input {
        reader: Box::new(std::io::BufReader::with_capacity(
            1024 * 1024,
            parts.reader(),
        )),
        len: Some(parts.len()),
        parts: Some(parts),
    })
}

/// Runs `ferry verify`.
pub fn run(args: VerifyArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let Input {
        reader: input,
        len: total,
        parts,
    } = open_input(&args.file)?;
    let split = parts.as_ref().filter(|p| p.is_split());
    // Hashed while it is verified, so the `FILE.sha256` of `ferry fetch` is checked in the
    // same pass.
    let mut input = VerifyingReader::hashing(input, Hasher::sha256());
    let mode = if args.quiet {
        ProgressMode::None
    } else {
        args.progress.resolve()
    };
    let reporter = LoadReporter::new(mode, "verify", args.quiet);
    reporter.on_start(total);
    let platform = args.platform.clone().unwrap_or_else(default_platform);
    let result = ferry_load::verify(&mut input, &platform, &reporter);
    reporter.clear();
    if result.is_err()
        && let Some(parts) = split
    {
        // A corrupt part is the cause worth naming, not the blob it broke.
        parts
            .reader()
            .check_rest()
            .with_context(|| format!("{} failed verification", args.file.display()))?;
    }
    let report = result.with_context(|| format!("{} failed verification", args.file.display()))?;
    // The end of the tar may leave padding unread; the checksum covers the whole file.
    std::io::copy(&mut input, &mut std::io::sink())
        .context("cannot read the archive to its end")?;
    let (checksum, _) = input.into_digest();
    let mut sidecar = args.file.clone().into_os_string();
    sidecar.push(".sha256");
    let sidecar = PathBuf::from(sidecar);
    let sidecar_ok = match std::fs::read_to_string(&sidecar) {
        // Each part was checked against the parts' checksum file as it was read.
        _ if split.is_some() => None,
        Ok(text) => {
            let want = text
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if want != checksum.digest() {
                bail!(
                    "{} does not match {}: expected sha256 {want}, the file hashes to {}",
                    args.file.display(),
                    sidecar.display(),
                    checksum.digest()
                );
            }
            Some(sidecar)
        }
        Err(_) => None,
    };
    if !args.quiet {
        for n in &report.notices {
            eprintln!("notice: {n}");
        }
        for (img, stats) in report.images.iter().zip(&report.layer_stats) {
            let unpacked: u64 = stats.iter().flatten().map(|s| s.bytes).sum();
            let devices: u64 = stats.iter().flatten().map(|s| s.devices_skipped).sum();
            writeln!(
                stdout,
                "ok  {:<50} {}  {}  {} layer{}, {} unpacked{}",
                img.label(),
                &img.id().digest()[..12],
                img.platform,
                img.layers.len(),
                if img.layers.len() == 1 { "" } else { "s" },
                human_bytes(unpacked),
                if devices > 0 {
                    format!(", {devices} device nodes")
                } else {
                    String::new()
                }
            )?;
        }
        if let Some(delta) = &report.delta {
            writeln!(
                stdout,
                "ok  delta archive: leaves out {} layer{} ({}) the far side must hold ({})",
                delta.needs.len(),
                if delta.needs.len() == 1 { "" } else { "s" },
                human_bytes(delta.needed_bytes()),
                delta.based_on
            )?;
        }
        match (split, sidecar_ok) {
            (Some(parts), _) => writeln!(
                stdout,
                "ok  {} parts{}",
                parts.files().len(),
                match parts.sums_file() {
                    Some(f) => format!(", each matches {}", f.display()),
                    None => " (no .sha256 file beside them to compare)".into(),
                }
            )?,
            (None, Some(p)) => writeln!(
                stdout,
                "ok  archive sha256 {} matches {}",
                checksum.digest(),
                p.display()
            )?,
            (None, None) => writeln!(
                stdout,
                "ok  archive sha256 {} (no .sha256 file beside it to compare)",
                checksum.digest()
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
