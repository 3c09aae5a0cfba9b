//! Containers on disk: `<store>/containers/<id>/` holds `ferry.json` (what it was made from, read
//! by the store's `rmi` and `prune`), `config.json` (the OCI runtime config: the directory is
//! an OCI bundle), `rootfs/`, overlay `upper/` and `work/`, `/etc` files, `state.json` and logs.
//!
//! One file per verb: [`run`], [`exec`], [`kill`], [`stop`], [`remove`], [`list`], [`logs`],
//! [`bundle`]; [`supervise`] and [`monitor`] watch a running container; [`step`] runs one
//! `ferry build` step.

pub mod bundle;
pub mod create;
pub mod exec;
pub mod external;
pub mod health;
pub mod host_config;
pub mod inspect;
pub mod kill;
pub mod list;
pub mod logs;
pub mod monitor;
mod placement;
pub mod policy;
pub mod remove;
pub mod restart;
pub mod run;
pub mod start;
pub mod state;
pub mod step;
pub mod stop;
pub mod supervise;
pub mod systemd;
pub mod tty;
pub mod wait;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{RunError, io_err};
pub use state::{State, Status};

/// What a container was made from; never changes after creation.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Meta {
    /// The image ID (config digest): the store keeps this image while the container exists.
    pub image_id: String,
    /// The full container ID.
    pub id: String,
    /// The container's name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The command line (Entrypoint + Cmd).
    pub command: Vec<String>,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// The external OCI runtime, if one runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
    /// `--rm`.
    #[serde(default)]
    pub auto_remove: bool,
    /// The image's StopSignal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The rootfs is a copy (overlayfs was unavailable).
    #[serde(default)]
    pub rootfs_copy: bool,
    /// cgroup directories made for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<PathBuf>,
    /// How to start it again.
    #[serde(default)]
    pub host: host_config::HostConfig,
}

/// One container's directory.
#[derive(Debug, Clone)]
pub struct Container {
    /// The full ID (64 hex digits).
    pub id: String,
    /// `<containers>/<id>`.
    pub dir: PathBuf,
}

impl Container {
    /// The first 12 digits, as Docker shows IDs.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// Reads `ferry.json`.
    pub fn meta(&self) -> Result<Meta, RunError> {
        read_json(&self.dir.join("ferry.json"))
    }

    /// Writes `ferry.json`.
    pub fn write_meta(&self, meta: &Meta) -> Result<(), RunError> {
        write_json(&self.dir.join("ferry.json"), meta)
    }

    /// Reads `state.json` (`created` when absent).
    pub fn state(&self) -> State {
        read_json(&self.dir.join("state.json")).unwrap_or_default()
    }

    /// Writes `state.json` atomically.
    pub fn write_state(&self, state: &State) -> Result<(), RunError> {
        write_json(&self.dir.join("state.json"), state)
    }

    /// The state with a dead supervisor noticed: `running` whose process is gone reads as
    /// exited with an unknown code.
    pub fn current_state(&self) -> State {
        let mut s = self.state();
        let gone = match s.status {
            // A monitor that is alive records how it ended in a moment: until then it still
            // counts as running, as with Docker's daemon.
            Status::Running => !s.alive() && !s.monitor_alive(),
            Status::Restarting => !s.monitor_alive(),
            _ => false,
        };
        if gone {
            s.status = Status::Exited;
            s.ports.clear();
        }
        s
    }

    /// Marks the container as stopped by the user: its restart policy no longer applies
    /// (Docker's "manually stopped"), until the next `ferry start`. A file of its own, so the
    /// monitor's writes of `state.json` cannot lose it.
    pub fn request_stop(&self) -> Result<(), RunError> {
        let p = self.dir.join("stopped-by-user");
        std::fs::write(&p, b"").map_err(io_err("write", p))
    }

    /// Whether [`request_stop`](Self::request_stop) was called since the last start.
    pub fn stop_requested(&self) -> bool {
        self.dir.join("stopped-by-user").exists()
    }

    /// Forgets a stop request (`ferry start`, `ferry restart`).
    pub fn clear_stop_request(&self) {
        let _ = std::fs::remove_file(self.dir.join("stopped-by-user"));
    }

    /// The log file of a detached container.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
}

/// The directory of all containers.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    /// Containers under `dir` (`<store>/containers`).
    pub fn new(dir: PathBuf) -> Self {
        Containers { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every container, newest first.
    pub fn all(&self) -> Vec<(Container, Meta)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        let mut v: Vec<(Container, Meta)> = rd
            .filter_map(|e| {
                let e = e.ok()?;
                let id = e.file_name().to_str()?.to_string();
                // `.<id>.removing`: on its way out (see `run::remove_in_background`).
                if id.starts_with('.') {
                    return None;
                }
                let c = Container { id, dir: e.path() };
                let m = c.meta().ok()?;
                Some((c, m))
            })
            .collect();
        v.sort_by_key(|(_, m)| std::cmp::Reverse(m.created));
        v
    }

    /// Finds a container by full ID, name, or unique ID prefix.
    pub fn find(&self, reference: &str) -> Result<(Container, Meta), RunError> {
        let all = self.all();
        if let Some(found) = all
            .iter()
            .find(|(c, m)| c.id == reference || m.name == reference)
        {
            return Ok(found.clone());
        }
        let mut prefixed = all.into_iter().filter(|(c, _)| c.id.starts_with(reference));
        match (prefixed.next(), prefixed.next()) {
            (Some(one), None) if !reference.is_empty() => Ok(one),
            (Some(_), Some(_)) => Err(RunError::Ambiguous(reference.to_string())),
            _ => Err(RunError::NoSuchContainer(reference.to_string())),
        }
    }

    /// Makes a new container directory with a fresh ID; fails if `name` is taken.
    pub fn create(&self, name: Option<&str>) -> Result<(Container, String), RunError> {
        let id = random_id()?;
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(RunError::Invalid(format!(
                        "invalid container name `{n}`: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some((c, _)) = self.all().into_iter().find(|(_, m)| m.name == n) {
                    return Err(RunError::NameInUse {
                        name: n.to_string(),
                        id: c.short_id().to_string(),
                    });
                }
                n.to_string()
            }
            None => generated_name(&id),
        };
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok((Container { id, dir }, name))
    }
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// 64 random hex digits (container IDs, anonymous volume names).
pub(crate) fn random_id() -> Result<String, RunError> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err("read", "/dev/urandom"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Docker-style `adjective_noun` names, chosen from the ID's bytes.
fn generated_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble",
        "proud", "quiet", "sharp", "steady", "swift", "witty",
    ];
    const NOUN: [&str; 16] = [
        "barge", "canoe", "dinghy", "ferry", "galley", "junk", "ketch", "launch", "punt", "raft",
        "schooner", "skiff", "sloop", "tender", "tug", "yawl",
    ];
    let b = u64::from_str_radix(&id[..8], 16).unwrap_or(0);
    format!(
        "{}_{}_{}",
        ADJ[(b & 15) as usize],
        NOUN[((b >> 4) & 15) as usize],
        &id[8..12]
    )
}

/// Reads a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let bytes = std::fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
        action: "parse",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Writes a JSON file through a temporary file and a rename: readers never see half of it.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    // One temporary file per writer: a detached container's monitor recording its end and a
    // `ferry start` recording the new run may write the same state at once, and a shared
    // name let one rename the other's file away ("cannot rename … No such file").
    let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RunError::Io {
        action: "serialise",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    // Synced before the rename, so a power cut leaves the old state or the new, never an
    // empty file (`ferry ps` reads these).
    let mut f = std::fs::File::create(&tmp).map_err(io_err("write", &tmp))?;
    std::io::Write::write_all(&mut f, &bytes).map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let cs = Containers::new(dir.path().to_path_buf());
        let (c, name) = cs.create(Some("web")).unwrap();
        c.write_meta(&Meta {
            id: c.id.clone(),
            name,
            ..Meta::default()
        })
        .unwrap();
        assert!(matches!(
            cs.create(Some("web")),
            Err(RunError::NameInUse { .. })
        ));
        assert!(matches!(cs.create(Some("-x")), Err(RunError::Invalid(_))));
        assert_eq!(cs.find("web").unwrap().0.id, c.id);
        assert_eq!(cs.find(&c.id[..6]).unwrap().0.id, c.id);
        assert!(matches!(cs.find("nope"), Err(RunError::NoSuchContainer(_))));
    }
}
