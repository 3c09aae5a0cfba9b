//! `ferry inventory [-o have.json] [--registry REGISTRY[/PREFIX]]`: what this side holds (the
//! store, or an internal registry), for `ferry fetch --have` on the online side to leave out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ferry_oci::inventory::Inventory;

use crate::cli::GlobalArgs;
use crate::commands::registry::RegistryArgs;
use crate::progress::{CliReporter, ProgressMode, human_bytes};

/// Arguments of `ferry inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Write the inventory to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// List an internal registry (the repositories below PREFIX, or all) instead of the store.
    #[arg(long, value_name = "REGISTRY[/PREFIX]")]
    pub registry: Option<String>,
    #[command(flatten)]
    pub client: RegistryArgs,
}

/// Runs `ferry inventory`.
pub fn run(args: InventoryArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let inv = match &args.registry {
        Some(r) => {
            let r = r.trim_end_matches('/');
            let (host, prefix) = match r.split_once('/') {
                Some((h, p)) => (h, Some(p)),
                None => (r, None),
            };
            let opts = args.client.client()?;
            let reporter = Arc::new(CliReporter::new(ProgressMode::Plain));
            ferry_fetch::inventory::registry_inventory(host, prefix, &opts, reporter)
                .with_context(|| format!("cannot list what {r} holds"))?
        }
        None => of_store(global)?,
    };
    let json = serde_json::to_vec_pretty(&inv)?;
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            let path = crate::paths::native(path);
            let mut tmp = path.clone().into_os_string();
            tmp.push(".part");
            std::fs::write(&tmp, &json)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)?;
            writeln!(out)?;
        }
    }
    eprintln!(
        "{}: {} image{}, {} blob{} ({})",
        inv.source,
        inv.images.len(),
        if inv.images.len() == 1 { "" } else { "s" },
        inv.blobs.len(),
        if inv.blobs.len() == 1 { "" } else { "s" },
        human_bytes(inv.blobs.iter().map(|b| b.size).sum()),
    );
    Ok(ExitCode::SUCCESS)
}

/// The store's images and every blob they use.
#[cfg(unix)]
fn of_store(global: &GlobalArgs) -> anyhow::Result<Inventory> {
    let store = crate::store::open(global)?;
    let _lock = store.lock_shared()?;
    ferry_load::store_inventory::inventory(&store)
        .with_context(|| format!("cannot list the store at {}", store.root().display()))
}

/// No store on Windows.
#[cfg(not(unix))]
fn of_store(_global: &GlobalArgs) -> anyhow::Result<Inventory> {
    anyhow::bail!("there is no store on Windows: list an internal registry with --registry")
}
