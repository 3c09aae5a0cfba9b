//! `ferry load [-i FILE]`: an archive (file or stdin) into the store, like `docker load`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use ferry_load::{LoadOptions, Reporter};
use ferry_oci::Platform;

use crate::cli::GlobalArgs;
use crate::env;
use crate::load_progress::LoadReporter;
use crate::progress::ProgressMode;

/// Arguments of `ferry load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive from FILE instead of standard input (plain, gzip, zstd, xz or bzip2),
    /// or from a directory holding one unpacked (`download-frozen-image-v2.sh`, `fetch --dir`).
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print only the `Loaded image` lines.
    #[arg(short, long)]
    pub quiet: bool,
    /// Platform to pick from multi-platform archives (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// The free space a load keeps on the store's filesystem (`FERRY_MIN_FREE`, bytes).
pub fn min_free() -> anyhow::Result<u64> {
    match std::env::var(env::FERRY_MIN_FREE) {
        Ok(v) => v.trim().parse().with_context(|| {
            format!(
                "{} must be a number of bytes, not `{v}`",
                env::FERRY_MIN_FREE
            )
        }),
        Err(_) => Ok(LoadOptions::default().min_free),
    }
}

/// Runs `ferry load`.
pub fn run(args: LoadArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let mut writer = None;
    let mut parts = None;
    let (mut input, total, label): (Box<dyn Read>, Option<u64>, String) = match &args.input {
        // A directory (what `download-frozen-image-v2.sh` or `fetch --dir` writes) is read as
        // the tar it would make.
        Some(p) if p.is_dir() => {
            let (r, handle) = crate::dir_tar::stream(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?;
            writer = Some(handle);
            (Box::new(r), None, p.display().to_string())
        }
        Some(p) if p.as_os_str() != "-" => {
            // A split archive is named by its first part (or its name without the suffix).
            let found = ferry_load::split::Parts::find(p)
                .with_context(|| format!("cannot open archive {}", p.display()))?;
            let len = found.len();
            let reader = found.reader();
            parts = Some(found);
            (Box::new(reader), Some(len), p.display().to_string())
        }
        _ => {
            if std::io::stdin().is_terminal() {
                bail!("no archive given: pass -i FILE, or pipe one into standard input");
            }
            (
                Box::new(std::io::stdin().lock()),
                None,
                "standard input".into(),
            )
        }
    };
    let store = crate::store::open(global)?;
    if let Some(delta) = parts.as_ref().and_then(ferry_load::delta::peek) {
        refuse_incomplete_delta(&store, &delta)
            .with_context(|| format!("failed to load {label}"))?;
        if !args.quiet {
            eprintln!(
                "delta archive: {} layer{} ({}) it leaves out come from the store",
                delta.needs.len(),
                if delta.needs.len() == 1 { "" } else { "s" },
                crate::progress::human_bytes(delta.needed_bytes())
            );
        }
    }
    let mode = if args.quiet {
        ProgressMode::None
    } else {
        args.progress.resolve()
    };
    let reporter = LoadReporter::new(mode, "load", args.quiet);
    reporter.on_start(total);
    let opts = LoadOptions {
        platform: args
            .platform
            .clone()
            .unwrap_or_else(ferry_load::host_platform),
        min_free: min_free()?,
    };
    let result = store.load(&mut input, &opts, &reporter);
    reporter.clear();
    drop(input);
    if let Some(w) = writer {
        // The directory's own error (a file unreadable) explains a load that found the
        // stream cut short.
        let read = w.join().expect("the directory reader does not panic");
        if let (Err(e), Err(load)) = (read, &result) {
            return Err(anyhow::Error::new(e)
                .context(load.to_string())
                .context(format!("failed to load {label}")));
        }
    }
    if result.is_err()
        && let Some(parts) = parts.filter(|p| p.is_split())
    {
        // A corrupt part is the cause worth naming, not the blob it broke.
        parts
            .reader()
            .check_rest()
            .with_context(|| format!("failed to load {label}"))?;
    }
    let loaded = result.with_context(|| format!("failed to load {label}"))?;
    for img in &loaded {
        if img.names.is_empty() {
            writeln!(stdout, "Loaded image ID: {}", img.id)?;
        }
        for n in &img.names {
            writeln!(
                stdout,
                "Loaded image: {}",
                n.familiar_tagged().unwrap_or_else(|| n.to_string())
            )?;
        }
    }
    if !args.quiet {
        let layers: usize = loaded.iter().map(|i| i.layers).sum();
        let new: usize = loaded.iter().map(|i| i.new_layers).sum();
        eprintln!(
            "loaded {} image{} ({layers} layer{}, {new} new) into {} in {:.1}s",
            loaded.len(),
            if loaded.len() == 1 { "" } else { "s" },
            if layers == 1 { "" } else { "s" },
            store.root().display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses, before reading it, a delta archive that leaves out layers the store lacks.
fn refuse_incomplete_delta(
    store: &ferry_load::Store,
    delta: &ferry_oci::archive::DeltaInfo,
) -> Result<(), ferry_load::LoadError> {
    let missing = ferry_load::delta::missing_in_store(store.root(), delta);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ferry_load::delta::DeltaError {
        where_: "the store".into(),
        missing,
    }
    .into())
}
