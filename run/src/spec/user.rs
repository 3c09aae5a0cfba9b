//! `USER[:GROUP]` → uid, gid and supplementary groups, through the image's own `/etc/passwd`
//! and `/etc/group`, the way Docker (runc's `GetExecUser`) resolves it.
//!
//! The files are read from the layer snapshots before any container exists, top layer first,
//! honouring whiteouts and opaque directories, so the config written for `--runtime` carries
//! numeric ids as the OCI spec wants.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Home directory, for `HOME`.
    pub home: String,
}

/// Why a user could not be resolved (Docker's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name with no passwd entry.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name with no group entry.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
}

/// Reads `rel` (like `etc/passwd`) as the merged view of overlay-format `layers` (bottom first)
/// shows it, or `None`.
pub fn read_from_layers(layers: &[PathBuf], rel: &str) -> Option<Vec<u8>> {
    let components: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    'layers: for layer in layers.iter().rev() {
        let mut p = layer.clone();
        for (i, c) in components.iter().enumerate() {
            p.push(c);
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                // Absent here; an opaque parent would have hidden lower layers, checked below.
                Err(_) => {
                    if components[..i]
                        .iter()
                        .scan(layer.clone(), |acc, c| {
                            acc.push(c);
                            Some(acc.clone())
                        })
                        .any(|d| is_opaque(&d))
                    {
                        return None;
                    }
                    continue 'layers;
                }
            };
            if is_whiteout(&meta) {
                return None;
            }
            if i + 1 == components.len() {
                return std::fs::read(&p).ok();
            }
            if !meta.is_dir() {
                return None;
            }
        }
    }
    None
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

pub(crate) fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    let n = rustix::fs::lgetxattr(dir, c"trusted.overlay.opaque", &mut buf);
    matches!(n, Ok(1)) && buf[0] == b'y'
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A group by name or id (`--group-add`), through the group file's contents.
pub fn group_id(name_or_id: &str, group: &str) -> Result<u32, UserError> {
    if let Ok(n) = name_or_id.parse::<u32>() {
        return Ok(n);
    }
    parse_group(group)
        .iter()
        .find(|e| e.name == name_or_id)
        .map(|e| e.gid)
        .ok_or_else(|| UserError::NoGroup(name_or_id.to_string()))
}

/// Resolves `spec` (`""` = root) against the passwd and group files' contents.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let groups = parse_group(group);

    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|u| u.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|u| u.name == user_part)
                .ok_or_else(|| UserError::NoUser(user_part.to_string()))?,
        ),
    };
    let uid = entry.map_or_else(|| user_part.parse().unwrap_or(0), |e| e.uid);
    let mut gid = entry.map_or(0, |e| e.gid);
    let home = entry.map_or_else(|| "/".to_string(), |e| e.home.clone());

    let mut additional_gids = Vec::new();
    match group_part.filter(|g| !g.is_empty()) {
        Some(g) => {
            // An explicit group replaces the primary group and, as in runc, the supplementary
            // groups are not looked up.
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    groups
                        .iter()
                        .find(|e| e.name == g)
                        .ok_or_else(|| UserError::NoGroup(g.to_string()))?
                        .gid
                }
            };
        }
        None => {
            if let Some(e) = entry {
                for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
                    if !additional_gids.contains(&g.gid) {
                        additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root\napp:x:1000:\nextra:x:1001:app\n";

    #[test]
    fn names_and_ids_resolve_with_supplementary_groups() {
        let by_name = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            by_name,
            ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1001],
                home: "/home/app".into()
            }
        );
        assert_eq!(resolve("1000", PASSWD, GROUP).unwrap(), by_name);
        let root = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.additional_gids), (0, 0, vec![10]));
        assert_eq!(root.home, "/root");
    }

    #[test]
    fn explicit_groups_replace_the_primary_and_drop_supplementary() {
        let u = resolve("app:extra", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids), (1000, 1001, vec![]));
        let u = resolve("1000:5", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 5));
    }

    #[test]
    fn added_groups_resolve_by_name_or_id() {
        assert_eq!(group_id("wheel", GROUP), Ok(10));
        assert_eq!(group_id("4242", GROUP), Ok(4242));
        assert_eq!(
            group_id("nope", GROUP),
            Err(UserError::NoGroup("nope".into()))
        );
    }

    #[test]
    fn unknown_ids_are_allowed_but_unknown_names_are_not() {
        let u = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        assert_eq!(
            resolve("nobody", PASSWD, GROUP).unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert!(matches!(
            resolve("app:nogroup", PASSWD, GROUP),
            Err(UserError::NoGroup(_))
        ));
    }

    #[test]
    fn layers_are_read_top_down_with_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l1");
        let upper = dir.path().join("l2");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "lower").unwrap();
        std::fs::write(lower.join("etc/group"), "lower").unwrap();
        std::fs::write(upper.join("etc/passwd"), "upper").unwrap();
        let layers = vec![lower, upper];
        assert_eq!(read_from_layers(&layers, "etc/passwd").unwrap(), b"upper");
        assert_eq!(read_from_layers(&layers, "/etc/group").unwrap(), b"lower");
        assert!(read_from_layers(&layers, "etc/shadow").is_none());
    }
}
