//! Opening the store the global options point at.

use anyhow::Context;
use ferry_load::Store;

use crate::cli::GlobalArgs;

/// The store at `--root` / `FERRY_ROOT`, else the default location.
pub fn open(global: &GlobalArgs) -> anyhow::Result<Store> {
    let root = global.root.clone().unwrap_or_else(Store::default_root);
    Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))
}
