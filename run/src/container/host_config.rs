//! What it takes to start a container again (`ferry start`, the monitor's restarts), kept in
//! its `ferry.json` next to what it was made from: the flags that are not in `config.json`.

use serde::{Deserialize, Serialize};

use super::policy::RestartPolicy;
use crate::net::ports::{ContainerPort, PortSpec};
use crate::options::{Network, RootfsMode, RunOptions, Runtime};
use crate::volume::mounts::MountRecord;

/// Docker's `HostConfig`, the part ferry needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    /// `--restart`.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The network, resolved (`private` when it publishes ports).
    #[serde(default)]
    pub network: Network,
    /// Ports to publish at each start (`-p`, and `-P`'s with host port 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PortSpec>,
    /// Exposed ports (the image's EXPOSE, `--expose`, `-p`'s), for `ps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<ContainerPort>,
    /// `-t`.
    #[serde(default)]
    pub tty: bool,
    /// `-i`.
    #[serde(default)]
    pub interactive: bool,
    /// `--init`.
    #[serde(default)]
    pub init: bool,
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// How the root file system is made.
    #[serde(default)]
    pub rootfs: RootfsMode,
    /// `--stop-timeout`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    /// Binds, volumes and tmpfs mounts (the volumes it names are in use while it exists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountRecord>,
    /// Its healthcheck (the image's, with `--health-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::HealthConfig>,
}

impl HostConfig {
    /// The flags to keep from `opts` (whose network is already resolved).
    pub fn from_options(
        opts: &RunOptions,
        exposed: Vec<ContainerPort>,
        mounts: Vec<MountRecord>,
        health: Option<super::health::HealthConfig>,
    ) -> Self {
        HostConfig {
            restart: opts.restart,
            network: opts.network.clone(),
            publish: opts.publish.clone(),
            exposed,
            tty: opts.tty,
            interactive: opts.interactive,
            init: opts.init,
            privileged: opts.privileged,
            rootfs: opts.rootfs,
            stop_timeout: opts.stop_timeout,
            mounts,
            health,
        }
    }

    /// The volumes it mounts, by name.
    pub fn volumes(&self) -> impl Iterator<Item = &str> {
        self.mounts
            .iter()
            .filter(|m| m.typ == "volume")
            .filter_map(|m| m.name.as_deref())
    }

    /// Its anonymous volumes, by name.
    pub fn anonymous_volumes(&self) -> Vec<String> {
        self.mounts
            .iter()
            .filter(|m| m.typ == "volume" && m.anonymous)
            .filter_map(|m| m.name.clone())
            .collect()
    }

    /// The options a new start of the container runs with (the rest is in `config.json`).
    pub fn options(&self, runtime: Runtime, auto_remove: bool) -> RunOptions {
        RunOptions {
            restart: self.restart,
            network: self.network.clone(),
            publish: self.publish.clone(),
            tty: self.tty,
            interactive: self.interactive,
            init: self.init,
            privileged: self.privileged,
            rootfs: self.rootfs,
            stop_timeout: self.stop_timeout,
            runtime,
            rm: auto_remove,
            ..RunOptions::default()
        }
    }
}
