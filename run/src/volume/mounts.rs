//! Where each of a new container's mounts comes from: `--mount` parsed as Docker parses it,
//! `-v NAME:/path` and `-v /path` turned into volumes of the store, the image's VOLUMEs given
//! anonymous volumes (as Docker does), bind sources checked. Planned without side effects;
//! the volumes are made once the container is.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Volumes;
use crate::error::RunError;
use crate::options::{RunOptions, Tmpfs, Volume};

/// One `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountArg {
    /// `type=bind` or `type=volume`.
    Volume(Volume),
    /// `type=tmpfs`.
    Tmpfs(Tmpfs),
}

impl FromStr for MountArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut typ = "volume".to_string();
        let mut source: Option<String> = None;
        let mut target: Option<String> = None;
        let mut read_only = false;
        let mut no_copy = false;
        let mut tmpfs_opts = Vec::new();
        for field in s.split(',') {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            let flag = |v: &Option<String>| match v.as_deref() {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(other) => Err(format!("invalid value for {k}: {other}")),
            };
            match k.as_str() {
                "type" => typ = v.unwrap_or_default(),
                "source" | "src" => source = v,
                "target" | "destination" | "dst" => target = v,
                "readonly" | "ro" => read_only = flag(&v)?,
                "volume-nocopy" => no_copy = flag(&v)?,
                "tmpfs-size" => tmpfs_opts.push(format!("size={}", v.unwrap_or_default())),
                "tmpfs-mode" => tmpfs_opts.push(format!("mode={}", v.unwrap_or_default())),
                // Accepted and left to the kernel's defaults, as on a host without SELinux.
                "bind-propagation" | "consistency" | "bind-nonrecursive" | "volume-driver" => {}
                "" => {}
                _ => return Err(format!("unexpected key '{k}' in '{field}'")),
            }
        }
        let target = target.ok_or("target is required")?;
        let invalid = |what: &str| Err(format!("invalid mount config for type \"{typ}\": {what}"));
        if !target.starts_with('/') {
            return invalid(&format!(
                "invalid mount path: '{target}' mount path must be absolute"
            ));
        }
        match typ.as_str() {
            "bind" => {
                let Some(src) = source.filter(|s| !s.is_empty()) else {
                    return invalid("field Source must not be empty");
                };
                if !src.starts_with('/') {
                    return invalid(&format!(
                        "invalid mount path: '{src}' mount path must be absolute"
                    ));
                }
                Ok(MountArg::Volume(Volume {
                    host: Some(PathBuf::from(src)),
                    container: target,
                    read_only,
                    must_exist: true,
                    ..Volume::default()
                }))
            }
            "volume" => Ok(MountArg::Volume(Volume {
                container: target,
                read_only,
                name: source.filter(|s| !s.is_empty()),
                no_copy,
                ..Volume::default()
            })),
            "tmpfs" => {
                if source.is_some() {
                    return invalid("field Source must not be specified");
                }
                if read_only {
                    tmpfs_opts.push("ro".into());
                }
                Ok(MountArg::Tmpfs(Tmpfs {
                    container: target,
                    options: tmpfs_opts,
                }))
            }
            _ => invalid("mount type unknown"),
        }
    }
}

/// One mount of a container, as `ferry.json` keeps it and `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub typ: String,
    /// The volume's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host path.
    pub source: PathBuf,
    /// The path in the container.
    pub destination: String,
    /// Writable.
    pub rw: bool,
    /// An anonymous volume (removed with the container by `--rm`, `rm -v`).
    #[serde(default)]
    pub anonymous: bool,
    /// Filled from the image when empty.
    #[serde(default)]
    pub copy: bool,
}

impl MountRecord {
    /// Docker's `Mounts` entry.
    pub fn inspect(&self) -> serde_json::Value {
        match self.typ.as_str() {
            "volume" => json!({
                "Type": "volume",
                "Name": self.name,
                "Source": self.source,
                "Destination": self.destination,
                "Driver": "local",
                "Mode": "z",
                "RW": self.rw,
                "Propagation": "",
            }),
            _ => json!({
                "Type": self.typ,
                "Source": self.source,
                "Destination": self.destination,
                "Mode": "",
                "RW": self.rw,
                "Propagation": "rprivate",
            }),
        }
    }
}

/// Gives every volume of `opts` its host path (binds checked, volumes named, the image's
/// VOLUMEs not covered by another mount added as anonymous volumes); returns what to record
/// and make. Nothing is created here.
pub fn plan(
    volumes: &Volumes,
    opts: &mut RunOptions,
    image_volumes: &[String],
) -> Result<Vec<MountRecord>, RunError> {
    let covered = |opts: &RunOptions, path: &str| {
        let norm = path.trim_end_matches('/');
        opts.volumes
            .iter()
            .map(|v| v.container.as_str())
            .chain(opts.tmpfs.iter().map(|t| t.container.as_str()))
            .any(|c| c.trim_end_matches('/') == norm)
    };
    let mut extra = Vec::new();
    for path in image_volumes {
        if !covered(opts, path) && !extra.iter().any(|v: &Volume| v.container == *path) {
            extra.push(Volume {
                container: path.clone(),
                ..Volume::default()
            });
        }
    }
    opts.volumes.extend(extra);
    let mut records = Vec::new();
    for v in &mut opts.volumes {
        if let Some(host) = &v.host {
            if v.must_exist && std::fs::symlink_metadata(host).is_err() {
                return Err(RunError::Invalid(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    host.display()
                )));
            }
            records.push(MountRecord {
                typ: "bind".into(),
                name: None,
                source: host.clone(),
                destination: v.container.clone(),
                rw: !v.read_only,
                anonymous: false,
                copy: false,
            });
            continue;
        }
        let (name, anonymous) = match &v.name {
            Some(n) => {
                super::check_name(n)?;
                (n.clone(), false)
            }
            None => (crate::container::random_id()?, true),
        };
        let source = volumes.data_dir(&name);
        v.host = Some(source.clone());
        v.name = Some(name.clone());
        records.push(MountRecord {
            typ: "volume".into(),
            name: Some(name),
            source,
            destination: v.container.clone(),
            rw: !v.read_only,
            anonymous,
            copy: !v.no_copy,
        });
    }
    for t in &opts.tmpfs {
        records.push(MountRecord {
            typ: "tmpfs".into(),
            name: None,
            source: PathBuf::new(),
            destination: t.container.clone(),
            rw: !t.options.iter().any(|o| o == "ro"),
            anonymous: false,
            copy: false,
        });
    }
    Ok(records)
}

/// Makes what `plan` named: the volumes (named ones only if new) and missing `-v` bind
/// directories (Docker creates those).
pub fn make(volumes: &Volumes, records: &[MountRecord]) -> Result<(), RunError> {
    for r in records {
        match r.typ.as_str() {
            "volume" => {
                volumes.create(r.name.as_deref(), Default::default(), r.anonymous)?;
            }
            "bind" if std::fs::symlink_metadata(&r.source).is_err() => {
                std::fs::create_dir_all(&r.source)
                    .map_err(crate::error::io_err("create", &r.source))?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MountArg, String> {
        s.parse()
    }

    #[test]
    fn mount_flags_parse_with_dockers_messages() {
        match parse("type=volume,src=data,dst=/data,readonly,volume-nocopy").unwrap() {
            MountArg::Volume(v) => {
                assert_eq!(v.name.as_deref(), Some("data"));
                assert_eq!(v.container, "/data");
                assert!(v.read_only && v.no_copy && v.host.is_none());
            }
            other => panic!("{other:?}"),
        }
        match parse("type=bind,source=/srv,target=/srv,ro=false").unwrap() {
            MountArg::Volume(v) => assert!(v.must_exist && !v.read_only),
            other => panic!("{other:?}"),
        }
        match parse("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap() {
            MountArg::Tmpfs(t) => assert_eq!(t.options, ["size=64m", "mode=1770"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse("type=bind").unwrap_err(), "target is required");
        assert_eq!(
            parse("type=bind,target=/x").unwrap_err(),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            parse("type=foo,target=/x").unwrap_err(),
            "invalid mount config for type \"foo\": mount type unknown"
        );
        assert_eq!(
            parse("type=volume,target=/x,bogus=1").unwrap_err(),
            "unexpected key 'bogus' in 'bogus=1'"
        );
        assert_eq!(
            parse("type=tmpfs,source=x,target=/x").unwrap_err(),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
    }

    #[test]
    fn image_volumes_get_anonymous_volumes_unless_covered() {
        let dir = tempfile::tempdir().unwrap();
        let vs = Volumes::new(dir.path().join("volumes"));
        let mut opts = RunOptions {
            volumes: vec!["data:/data".parse().unwrap()],
            ..RunOptions::default()
        };
        let recs = plan(&vs, &mut opts, &["/data".into(), "/cache".into()]).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].name.as_deref(), Some("data"));
        assert!(!recs[0].anonymous);
        assert!(recs[1].anonymous && recs[1].destination == "/cache");
        assert!(opts.volumes.iter().all(|v| v.host.is_some()));
        // Nothing made yet.
        assert!(vs.list().is_empty());
        make(&vs, &recs).unwrap();
        assert_eq!(vs.list().len(), 2);
    }
}
