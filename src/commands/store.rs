//! The image store as `ferry run` sees it, and where containers live.
//!
//! Interim: until `ferry-load`'s `Store` lands, images are read from `<root>/dev-images.json`
//! (a list of `{id, names, config, layers}` with the config's path and the layer snapshot
//! directories, overlay format). Switching to the store is this file only: `Store::open`,
//! `Store::image` and `Store::containers_dir` give the same things.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_oci::ImageReference;
use ferry_run::{Containers, Image, ImageSource, SourceError};
use serde_json::Value;

use crate::cli::GlobalArgs;

/// The store root: `--root`/`FERRY_ROOT`, else `/var/lib/ferry` as root, else the user's data
/// directory.
pub fn root(global: &GlobalArgs) -> PathBuf {
    if let Some(r) = &global.root {
        return r.clone();
    }
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/ferry");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("ferry")
}

/// The containers directory of the store at `global`'s root.
pub fn containers(global: &GlobalArgs) -> Containers {
    Containers::new(root(global).join("containers"))
}

/// Opens the image source.
pub fn open(global: &GlobalArgs) -> anyhow::Result<DevImages> {
    Ok(DevImages { root: root(global) })
}

/// Images listed in `<root>/dev-images.json`.
pub struct DevImages {
    root: PathBuf,
}

fn normalise(reference: &str) -> Option<String> {
    let r: ImageReference = reference.parse().ok()?;
    let mut q = r.qualified();
    if r.tag().is_none() && r.digest().is_none() {
        q.push_str(":latest");
    }
    Some(q)
}

impl ImageSource for DevImages {
    fn image(&self, reference: &str) -> Result<Image, SourceError> {
        let path = self.root.join("dev-images.json");
        let list: Value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)?,
            Err(_) => Value::Array(vec![]),
        };
        let entries = list.as_array().cloned().unwrap_or_default();
        let names = |e: &Value| -> Vec<String> {
            e["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        };
        // Exact names and IDs first: parsing a reference compiles oci-spec's reference regex,
        // which costs more than starting the container.
        let by_id = |e: &&Value| {
            let id = e["id"].as_str().unwrap_or_default();
            reference.len() >= 4
                && (id.trim_start_matches("sha256:").starts_with(reference)
                    || id.starts_with(reference))
        };
        let entry = entries
            .iter()
            .find(|e| names(e).iter().any(|n| n == reference))
            .or_else(|| entries.iter().find(by_id))
            .or_else(|| {
                let wanted = normalise(reference)?;
                entries.iter().find(|e| names(e).contains(&wanted))
            })
            .ok_or_else(|| {
                format!(
                    "no image `{reference}` in the store at {}",
                    self.root.display()
                )
            })?;
        let config_path = Path::new(entry["config"].as_str().unwrap_or_default());
        let config = serde_json::from_slice(
            &std::fs::read(config_path)
                .with_context(|| format!("read {}", config_path.display()))?,
        )?;
        Ok(Image {
            id: entry["id"].as_str().unwrap_or_default().parse()?,
            names: entry["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            config,
            layers: entry["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str().map(PathBuf::from))
                .collect(),
        })
    }
}
