//! What a layer tar entry means (image-spec `layer.md`), decided from its header alone, and
//! the checks every entry must pass before anything is written. Portable: `ferry verify` runs
//! the same checks on Windows that `ferry load` runs before unpacking on Linux.
//!
//! Whiteouts are recognised by name whatever their type flag: some writers emit `.wh.` entries
//! as hard links or character devices (vmware/vic#5997, smol-machines/smolvm#397).

use std::collections::HashSet;
use std::io::Read;

use crate::error::LayerError;
use crate::path::{self, Components};
use crate::scan::{LayerSink, LayerStats};
use crate::tar::{Header, Kind};

/// The prefix of whiteout names.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of the opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// AUFS's own metadata names start with this (`.wh..wh.plnk`, `.wh..wh.aufs`); ignored.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// What an entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create (or replace) the entry itself.
    Create,
    /// Hide `name` (from lower layers) in `parent`.
    Whiteout,
    /// Hide everything lower layers have in `parent` (the marker's directory).
    Opaque,
    /// Nothing (AUFS metadata).
    Ignore,
}

/// A layer entry, parsed and confined.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// The directory the entry is in.
    pub parent: Components,
    /// Its name in `parent`: for a whiteout, the name it hides; `None` for the layer's root
    /// (and for the opaque marker, which acts on `parent`).
    pub name: Option<Vec<u8>>,
    /// What to do.
    pub action: Action,
    /// For hard links: the target, confined like any path.
    pub link: Option<Components>,
}

impl LayerEntry {
    /// The entry's full path.
    pub fn components(&self) -> Components {
        let mut c = self.parent.clone();
        c.extend(self.name.clone());
        c
    }
}

/// Parses and checks one header: paths confined, whiteout names well-formed.
pub fn classify(h: &Header) -> Result<LayerEntry, LayerError> {
    let unsafe_entry = |reason: String| LayerError::Unsafe {
        entry: h.display_path(),
        reason,
    };
    let mut parts = path::layer_components(&h.path).map_err(|e| unsafe_entry(e.to_string()))?;
    let name = parts.pop();
    let (action, name) = match name {
        Some(n) if n == OPAQUE_MARKER => (Action::Opaque, None),
        Some(n) if n.starts_with(AUFS_META_PREFIX) => (Action::Ignore, Some(n)),
        Some(n) if n.starts_with(WHITEOUT_PREFIX) => {
            let target = n[WHITEOUT_PREFIX.len()..].to_vec();
            if target.is_empty() || target == b"." || target == b".." {
                return Err(unsafe_entry("whiteout of an invalid name".into()));
            }
            (Action::Whiteout, Some(target))
        }
        other => (Action::Create, other),
    };
    let link = if action == Action::Create && h.kind == Kind::Hardlink {
        let target = path::layer_components(&h.link).map_err(|e| {
            unsafe_entry(format!(
                "hard link to `{}` ({e}): links must stay inside the layer",
                String::from_utf8_lossy(&h.link)
            ))
        })?;
        if target.is_empty() {
            return Err(unsafe_entry("hard link to the layer's root".into()));
        }
        Some(target)
    } else {
        None
    };
    if action == Action::Create && name.is_none() && h.kind != Kind::Dir {
        return Err(unsafe_entry("the layer's root must be a directory".into()));
    }
    if action == Action::Create
        && let Kind::Other(t) = h.kind
    {
        return Err(unsafe_entry(format!(
            "unsupported entry type `{}`",
            t as char
        )));
    }
    Ok(LayerEntry {
        parent: parts,
        name,
        action,
        link,
    })
}

/// Tracks symlinks a layer created, so that an entry below one is refused: writing
/// `a/passwd` after `a -> /etc` would write to the host (CVE-2018-15664-style escapes; moby
/// and umoci resolve every component without following links for the same reason).
#[derive(Debug, Default)]
pub struct SymlinkGuard {
    links: HashSet<Components>,
}

impl SymlinkGuard {
    /// Fails when a parent of `entry` is a symlink this layer created; records `entry` when
    /// it is one (and forgets it when something else replaces it).
    pub fn check(&mut self, h: &Header, entry: &LayerEntry) -> Result<(), LayerError> {
        if !self.links.is_empty() {
            for depth in 1..=entry.parent.len() {
                if self.links.contains(&entry.parent[..depth]) {
                    return Err(LayerError::Unsafe {
                        entry: h.display_path(),
                        reason: format!(
                            "its parent `{}` is a symlink in the same layer; writing through it could leave the snapshot",
                            path::display(&entry.parent[..depth])
                        ),
                    });
                }
            }
        }
        if entry.action == Action::Create && entry.name.is_some() {
            let full = entry.components();
            if h.kind == Kind::Symlink {
                self.links.insert(full);
            } else if !self.links.is_empty() {
                self.links.remove(&full);
            }
        }
        Ok(())
    }
}

/// The sink `ferry verify` uses: every check, nothing written.
#[derive(Debug, Default)]
pub struct LayerCheck {
    guard: SymlinkGuard,
    stats: LayerStats,
}

impl LayerSink for LayerCheck {
    fn entry(&mut self, h: &Header, data: &mut dyn Read) -> Result<(), LayerError> {
        let entry = classify(h)?;
        self.guard.check(h, &entry)?;
        self.stats.entries += 1;
        match h.kind {
            Kind::File => {
                // The data is read (and so hashed into the diff_id) by the caller's skip.
                let n = std::io::copy(data, &mut std::io::sink()).map_err(|e| LayerError::Io {
                    action: "read",
                    entry: h.display_path(),
                    source: e,
                })?;
                self.stats.bytes += n;
            }
            Kind::Char | Kind::Block => self.stats.devices_skipped += 1,
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<LayerStats, LayerError> {
        Ok(std::mem::take(&mut self.stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, kind: Kind, link: &str) -> Header {
        Header {
            path: path.as_bytes().to_vec(),
            link: link.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            atime: None,
            size: 0,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn whiteouts_are_recognised_whatever_their_type() {
        for kind in [Kind::File, Kind::Hardlink, Kind::Char, Kind::Symlink] {
            let e = classify(&header("a/b/.wh.c", kind, "x")).unwrap();
            assert_eq!(e.action, Action::Whiteout, "{kind:?}");
            assert_eq!(e.name.as_deref(), Some(&b"c"[..]));
            assert_eq!(e.parent, vec![b"a".to_vec(), b"b".to_vec()]);
            assert_eq!(e.link, None);
        }
        let e = classify(&header("d/.wh..wh..opq", Kind::File, "")).unwrap();
        assert_eq!(e.action, Action::Opaque);
        assert_eq!(e.parent, vec![b"d".to_vec()]);
        assert_eq!(
            classify(&header(".wh..wh.plnk", Kind::Dir, ""))
                .unwrap()
                .action,
            Action::Ignore
        );
    }

    #[test]
    fn escaping_paths_links_and_whiteouts_are_refused() {
        for (path, kind, link) in [
            ("../etc/passwd", Kind::File, ""),
            ("/etc/passwd", Kind::File, ""),
            ("a/.wh...", Kind::File, ""),
            ("link", Kind::Hardlink, "../../etc/shadow"),
            ("link", Kind::Hardlink, "/etc/shadow"),
            ("./", Kind::File, ""),
        ] {
            let err = classify(&header(path, kind, link)).unwrap_err();
            assert!(matches!(err, LayerError::Unsafe { .. }), "{path}: {err}");
        }
    }

    #[test]
    fn writing_through_a_symlink_of_the_same_layer_is_refused() {
        let mut g = SymlinkGuard::default();
        let link = header("etc", Kind::Symlink, "/etc");
        g.check(&link, &classify(&link).unwrap()).unwrap();
        let through = header("etc/passwd", Kind::File, "");
        let err = g.check(&through, &classify(&through).unwrap()).unwrap_err();
        assert!(err.to_string().contains("`etc` is a symlink"), "{err}");
        // A directory replacing the symlink makes it safe again.
        let dir = header("etc", Kind::Dir, "");
        g.check(&dir, &classify(&dir).unwrap()).unwrap();
        g.check(&through, &classify(&through).unwrap()).unwrap();
    }
}
