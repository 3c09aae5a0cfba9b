//! The image a stage is building: its config and layers so far, and the few facts the
//! builder keeps beside them (whether CMD was set in this stage, MAINTAINER).

use std::path::PathBuf;

use ferry_oci::{Digest, Platform};

use crate::config::{Flavour, ImageConfig, RootFs};
use crate::host::{Layer, StoredImage};

/// A stage's image in the making.
#[derive(Debug, Clone)]
pub struct State {
    /// The current image ID; `None` for `FROM scratch` before any step.
    pub id: Option<Digest>,
    /// The current config.
    pub config: ImageConfig,
    /// The current layers.
    pub layers: Vec<Layer>,
    /// Manifest flavour (the base image's).
    pub flavour: Flavour,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// MAINTAINER of this stage.
    pub maintainer: Option<String>,
}

/// The shell of shell-form commands when SHELL did not set one.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// PATH when the base image sets none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl State {
    /// `FROM scratch`.
    pub fn scratch(platform: &Platform) -> State {
        let mut config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            rootfs: RootFs::default(),
            ..ImageConfig::default()
        };
        config.set_env("PATH", DEFAULT_PATH);
        State {
            id: None,
            config,
            layers: Vec::new(),
            flavour: Flavour::Docker,
            cmd_set: false,
            maintainer: None,
        }
    }

    /// A stored image as the start of a stage.
    pub fn from_image(img: &StoredImage) -> Result<State, serde_json::Error> {
        let mut config = ImageConfig::parse(&img.config)?;
        if !config.env_pairs().iter().any(|(k, _)| k == "PATH") {
            config.set_env("PATH", DEFAULT_PATH);
        }
        Ok(State {
            id: Some(img.id.clone()),
            config,
            layers: img.layers.clone(),
            flavour: Flavour::of(&img.manifest_media_type),
            cmd_set: false,
            maintainer: None,
        })
    }

    /// Takes over a cached image (what this step would have made).
    pub fn adopt(&mut self, img: &StoredImage) -> Result<(), serde_json::Error> {
        self.config = ImageConfig::parse(&img.config)?;
        self.id = Some(img.id.clone());
        self.layers = img.layers.clone();
        self.flavour = Flavour::of(&img.manifest_media_type);
        Ok(())
    }

    /// The shell for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        match &self.config.config.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Snapshot directories, bottom first.
    pub fn snapshots(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.snapshot.clone()).collect()
    }

    /// diff_ids, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// What the cache key calls the parent: the image ID, or the platform for scratch.
    pub fn parent_key(&self) -> String {
        match &self.id {
            Some(id) => id.to_string(),
            None => format!(
                "scratch:{}/{}/{}",
                self.config.os,
                self.config.architecture,
                self.config.variant.clone().unwrap_or_default()
            ),
        }
    }
}
