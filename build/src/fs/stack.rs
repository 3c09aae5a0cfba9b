//! A stack of layer directories read as the one tree a container would see, without mounting
//! anything: for COPY's destination rules (is `/usr/local/bin` a directory? where does the
//! `/bin` symlink lead?), for `COPY --from` sources, and for the "before" side of a tree
//! comparison on the copy fallback.
//!
//! A directory is tracked as the list of layers that contribute entries to it (top first),
//! which ends at the first layer where it is opaque, and at a whiteout or a non-directory.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{is_opaque, is_whiteout_device, whiteout_target};

/// Layer directories, bottom first.
#[derive(Debug, Clone, Default)]
pub struct Stack {
    layers: Vec<PathBuf>,
}

/// A directory of the merged tree.
#[derive(Debug, Clone)]
pub struct DirView {
    /// Its path below the root.
    pub rel: PathBuf,
    /// Indices of the layers that contribute to it, top first.
    layers: Vec<usize>,
}

/// An entry of the merged tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where its bytes and metadata live (in the topmost layer that has it).
    pub path: PathBuf,
    /// Its metadata (not following symlinks).
    pub meta: std::fs::Metadata,
    /// For a directory, how to read it.
    pub dir: Option<DirView>,
}

/// Too many symlinks on the way (a loop).
#[derive(Debug, thiserror::Error)]
#[error("too many levels of symbolic links resolving {0}")]
pub struct SymlinkLoop(pub String);

impl Stack {
    /// A stack of layer directories, bottom first.
    pub fn new(layers: Vec<PathBuf>) -> Stack {
        Stack { layers }
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The root directory.
    pub fn root(&self) -> DirView {
        let mut layers = Vec::new();
        for i in (0..self.layers.len()).rev() {
            layers.push(i);
            if is_opaque(&self.layers[i]) {
                break;
            }
        }
        DirView {
            rel: PathBuf::new(),
            layers,
        }
    }

    /// The entry `name` of `dir`, if the merged tree has one.
    pub fn child(&self, dir: &DirView, name: &OsStr) -> Option<Node> {
        for (k, &i) in dir.layers.iter().enumerate() {
            let base = self.layers[i].join(&dir.rel);
            let p = base.join(name);
            match p.symlink_metadata() {
                Ok(m) if is_whiteout_device(&m) => return None,
                Ok(m) => {
                    let view = m.is_dir().then(|| self.dir_view(dir, k, name));
                    return Some(Node {
                        path: p,
                        meta: m,
                        dir: view,
                    });
                }
                Err(_) => {
                    if hidden_by_marker(&base, name) {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// The layers of `dir/name`, found as a directory in `dir.layers[top]`.
    fn dir_view(&self, dir: &DirView, top: usize, name: &OsStr) -> DirView {
        let i = dir.layers[top];
        let mut layers = vec![i];
        let rel = dir.rel.join(name);
        if !is_opaque(&self.layers[i].join(&rel)) {
            for &j in &dir.layers[top + 1..] {
                let base = self.layers[j].join(&dir.rel);
                let q = base.join(name);
                match q.symlink_metadata() {
                    Ok(m) if m.is_dir() => {
                        layers.push(j);
                        if is_opaque(&q) {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(_) => {
                        if hidden_by_marker(&base, name) {
                            break;
                        }
                    }
                }
            }
        }
        DirView { rel, layers }
    }

    /// Every entry of `dir`, by name.
    pub fn children(&self, dir: &DirView) -> io::Result<BTreeMap<OsString, Node>> {
        let mut found: BTreeMap<OsString, (usize, PathBuf, std::fs::Metadata)> = BTreeMap::new();
        let mut hidden: HashSet<OsString> = HashSet::new();
        for (k, &i) in dir.layers.iter().enumerate() {
            let base = self.layers[i].join(&dir.rel);
            let mut markers = Vec::new();
            let rd = match std::fs::read_dir(&base) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let name = e.file_name();
                if let Some(t) = whiteout_target(&name) {
                    markers.push(t.to_os_string());
                    continue;
                }
                if name == super::OPAQUE_MARKER
                    || found.contains_key(&name)
                    || hidden.contains(&name)
                {
                    continue;
                }
                let p = e.path();
                let m = p.symlink_metadata()?;
                if is_whiteout_device(&m) {
                    markers.push(name);
                    continue;
                }
                found.insert(name, (k, p, m));
            }
            // A layer's own entries win over its own markers; lower layers' do not.
            hidden.extend(markers);
        }
        Ok(found
            .into_iter()
            .map(|(name, (k, path, meta))| {
                let dir_view = meta.is_dir().then(|| self.dir_view(dir, k, &name));
                (
                    name,
                    Node {
                        path,
                        meta,
                        dir: dir_view,
                    },
                )
            })
            .collect())
    }

    /// The entry at `rel` (no symlinks followed), if any. `""` is the root.
    pub fn lookup(&self, rel: &Path) -> Option<Node> {
        let mut dir = self.root();
        let mut node = None;
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            let n = self.child(&dir, name)?;
            match &n.dir {
                Some(d) => dir = d.clone(),
                None => {
                    dir = DirView {
                        rel: dir.rel.join(name),
                        layers: Vec::new(),
                    }
                }
            }
            node = Some(n);
        }
        if node.is_none() && rel.components().all(|c| !matches!(c, Component::Normal(_))) {
            return self.root_node();
        }
        node
    }

    fn root_node(&self) -> Option<Node> {
        let top = self.layers.last()?;
        let meta = top.symlink_metadata().ok()?;
        Some(Node {
            path: top.clone(),
            meta,
            dir: Some(self.root()),
        })
    }

    /// Whether `rel` is a directory (following symlinks in scope).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.resolve(rel)
            .ok()
            .and_then(|r| self.lookup(&r))
            .is_some_and(|n| n.meta.is_dir())
    }

    /// `rel` with every symlink resolved inside the tree, as if the root were `/` (an absolute
    /// target starts again at the root, `..` stops there): the path a process chrooted into
    /// the tree would reach. Components that do not exist are kept as they are.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, SymlinkLoop> {
        let mut pending: Vec<OsString> = components(rel);
        pending.reverse();
        let mut out: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let candidate: PathBuf = out.iter().chain(std::iter::once(&c)).collect();
            match self.lookup(&candidate) {
                Some(n) if n.meta.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 255 {
                        return Err(SymlinkLoop(rel.display().to_string()));
                    }
                    let target = std::fs::read_link(&n.path).unwrap_or_default();
                    if target.is_absolute() {
                        out.clear();
                    }
                    let mut t = components(&target);
                    t.reverse();
                    pending.extend(t);
                }
                _ => out.push(c),
            }
        }
        Ok(out.iter().collect())
    }
}

/// Normal, `.` and `..` components of a path (the root and prefixes dropped).
pub fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn hidden_by_marker(base: &Path, name: &OsStr) -> bool {
    let mut marker = OsString::from(super::WHITEOUT_PREFIX);
    marker.push(name);
    base.join(marker).symlink_metadata().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn merged_view_with_portable_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        write(&a.join("etc/keep"), "a");
        write(&a.join("etc/gone"), "a");
        write(&a.join("data/old/x"), "a");
        symlink("usr/bin", a.join("bin")).unwrap();
        write(&a.join("usr/bin/sh"), "sh");
        write(&b.join("etc/.wh.gone"), "");
        write(&b.join("etc/new"), "b");
        write(&b.join("data/old/.wh..wh..opq"), "");
        write(&b.join("data/old/y"), "b");
        let s = Stack::new(vec![a.clone(), b.clone()]);
        let etc = s.lookup(Path::new("etc")).unwrap();
        let names: Vec<_> = s
            .children(etc.dir.as_ref().unwrap())
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(names, ["keep", "new"]);
        assert!(s.lookup(Path::new("etc/gone")).is_none());
        assert_eq!(
            s.lookup(Path::new("etc/keep")).unwrap().path,
            a.join("etc/keep")
        );
        let old = s.lookup(Path::new("data/old")).unwrap();
        let names: Vec<_> = s
            .children(old.dir.as_ref().unwrap())
            .unwrap()
            .into_keys()
            .collect();
        assert_eq!(names, ["y"]);
        assert!(s.lookup(Path::new("data/old/x")).is_none());
        assert_eq!(
            s.resolve(Path::new("bin/sh")).unwrap(),
            PathBuf::from("usr/bin/sh")
        );
        assert!(s.is_dir(Path::new("bin")));
        assert_eq!(
            s.resolve(Path::new("../../etc/./keep")).unwrap(),
            PathBuf::from("etc/keep")
        );
    }

    #[test]
    fn absolute_links_stay_inside_and_loops_end() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::create_dir_all(a.join("x")).unwrap();
        symlink("/x", a.join("abs")).unwrap();
        symlink("loop2", a.join("loop1")).unwrap();
        symlink("loop1", a.join("loop2")).unwrap();
        let s = Stack::new(vec![a]);
        assert_eq!(s.resolve(Path::new("abs/f")).unwrap(), PathBuf::from("x/f"));
        assert!(s.resolve(Path::new("loop1")).is_err());
    }
}
