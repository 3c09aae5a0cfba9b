//! Named volumes: directories the store keeps apart from any container, laid out as
//! Docker's `local` driver lays them out (`<store>/volumes/<name>/_data`, with the volume's
//! facts in `volume.json`). A volume is made on first use (`-v NAME:/path`, `--mount
//! type=volume`) or by `ferry volume create`, filled from the image's content at its mount
//! point when it is empty ([`fill`]), shared by every container that mounts it, and kept when
//! they are removed; `volume rm` refuses one a container still names.

pub mod fill;
pub mod mounts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::{Containers, now};
use crate::error::{RunError, io_err};

/// What `volume.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// The name (64 hex digits for an anonymous volume).
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// `--label KEY=VALUE`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container's `-v /path` or image VOLUME (removed with it by `--rm`, `rm -v`).
    #[serde(default)]
    pub anonymous: bool,
}

/// The volumes of one store.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

/// Docker's rule for local volume names.
fn check_name(name: &str) -> Result<(), RunError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(RunError::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    if name.len() < 2 {
        return Err(RunError::Invalid(format!(
            "create {name}: volume name is too short, names should be at least two alphanumeric characters"
        )));
    }
    Ok(())
}

impl Volumes {
    /// Volumes under `dir` (`<store>/volumes`).
    pub fn new(dir: PathBuf) -> Self {
        Volumes { dir }
    }

    /// The volumes of the store whose containers are `containers`.
    pub fn of(containers: &Containers) -> Self {
        let store = containers.dir().parent().unwrap_or(Path::new("."));
        Volumes::new(store.join("volumes"))
    }

    /// Where a volume's files are (what containers mount).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates the volume `name` (a random name when `None`), or returns the existing one
    /// (as `docker volume create` does).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<VolumeInfo, RunError> {
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.to_string()
            }
            None => crate::container::random_id()?,
        };
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let dir = self.dir.join(&name);
        let data = dir.join("_data");
        std::fs::create_dir_all(&data).map_err(io_err("create", &data))?;
        let info = VolumeInfo {
            name: name.clone(),
            created: now(),
            labels,
            anonymous,
        };
        // Two containers may make the same volume at once: the first `volume.json` stays.
        let tmp = dir.join(format!("volume.json.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&info).map_err(|e| RunError::Io {
            action: "serialise",
            path: tmp.clone(),
            source: e.into(),
        })?;
        std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
        match std::fs::hard_link(&tmp, dir.join("volume.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("write", dir.join("volume.json"))(e)),
        }
        let _ = std::fs::remove_file(&tmp);
        self.get(&name)
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<VolumeInfo, RunError> {
        if check_name(name).is_err() {
            return Err(RunError::NoSuchVolume(name.to_string()));
        }
        let path = self.dir.join(name).join("volume.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RunError::Io {
                action: "parse",
                path,
                source: e.into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RunError::NoSuchVolume(name.to_string()))
            }
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeInfo> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<VolumeInfo> = rd
            .filter_map(|e| self.get(e.ok()?.file_name().to_str()?).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The full IDs of the containers (running or not) that mount `name`.
    pub fn users(&self, name: &str, containers: &Containers) -> Vec<String> {
        containers
            .all()
            .into_iter()
            .filter(|(_, m)| m.host.volumes().any(|v| v == name))
            .map(|(c, _)| c.id)
            .collect()
    }

    /// Removes the volume `name` and its files; refused while a container names it (as
    /// Docker's, even with `volume rm -f`).
    pub fn remove(&self, name: &str, containers: &Containers) -> Result<(), RunError> {
        self.get(name)?;
        let users = self.users(name, containers);
        if !users.is_empty() {
            return Err(RunError::VolumeInUse {
                name: name.to_string(),
                containers: users,
            });
        }
        let dir = self.dir.join(name);
        // Out of sight first: a half-deleted volume must not look like an empty one.
        let trash = self.dir.join(format!(".{name}.removing"));
        std::fs::rename(&dir, &trash).map_err(io_err("remove", &dir))?;
        std::fs::remove_dir_all(&trash).map_err(io_err("remove", &trash))
    }

    /// Removes every volume no container names; returns their names and the bytes freed.
    pub fn prune(&self, containers: &Containers) -> (Vec<String>, u64) {
        let used: std::collections::HashSet<String> = containers
            .all()
            .into_iter()
            .flat_map(|(_, m)| m.host.volumes().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in self.list() {
            if used.contains(&v.name) {
                continue;
            }
            let size = du(&self.dir.join(&v.name));
            if self.remove(&v.name, containers).is_ok() {
                bytes += size;
                removed.push(v.name);
            }
        }
        (removed, bytes)
    }

    /// Removes the anonymous volumes among `names` (a container's, on `--rm` or `rm -v`)
    /// that no other container names.
    pub fn remove_anonymous(&self, names: &[String], containers: &Containers) {
        for n in names {
            if self.get(n).is_ok_and(|v| v.anonymous) {
                let _ = self.remove(n, containers);
            }
        }
    }
}

/// Fills a new container's empty volumes from its image (see [`fill`]).
pub fn fill_new(
    p: &crate::container::run::Prepared,
    source: &dyn crate::image::ImageSource,
) -> Result<(), RunError> {
    for m in &p.meta.host.mounts {
        if m.typ == "volume" && m.copy {
            fill::fill(source, &p.layers, &m.destination, &m.source)?;
        }
    }
    Ok(())
}

/// Removes the anonymous volumes of a container that is gone (`--rm`, `rm -v`).
pub fn release(container: &crate::container::Container, meta: &crate::container::Meta) {
    let Some(dir) = container.dir.parent() else {
        return;
    };
    let containers = Containers::new(dir.to_path_buf());
    Volumes::of(&containers).remove_anonymous(&meta.host.anonymous_volumes(), &containers);
}

/// Bytes under `path` (files only, hard links counted once per name).
fn du(path: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        let dir = tempfile::tempdir().unwrap();
        let cs = Containers::new(dir.path().join("containers"));
        let vs = Volumes::of(&cs);
        assert!(vs.create(Some("data"), BTreeMap::new(), false).is_ok());
        // Creating it again returns the same volume.
        let again = vs.create(Some("data"), BTreeMap::new(), false).unwrap();
        assert_eq!(again.name, "data");
        assert!(vs.data_dir("data").is_dir());
        assert!(
            vs.create(Some("a b"), BTreeMap::new(), false)
                .unwrap_err()
                .to_string()
                .contains("includes invalid characters for a local volume name")
        );
        assert!(
            vs.create(Some("x"), BTreeMap::new(), false)
                .unwrap_err()
                .to_string()
                .contains("volume name is too short")
        );
        let anon = vs.create(None, BTreeMap::new(), true).unwrap();
        assert_eq!(anon.name.len(), 64);
        assert_eq!(vs.list().len(), 2);
        let (gone, _) = vs.prune(&cs);
        assert_eq!(gone.len(), 2);
        assert!(matches!(vs.get("data"), Err(RunError::NoSuchVolume(_))));
    }
}
