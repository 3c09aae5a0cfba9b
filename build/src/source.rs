//! Where COPY and ADD read from: the build context (a directory, filtered by
//! `.dockerignore`, which no path or symlink may leave) or an image's layers (`COPY --from`).
//!
//! Both are read in place: the context is never copied or archived first, so a build of a
//! large context only reads the files it copies.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use ferry_oci::Hasher;

use crate::digests::Digests;
use crate::fs::stack::Stack;
use crate::ignore::Ignore;

/// An entry of a source tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Where it is on disk.
    pub path: PathBuf,
    /// Its metadata (not following symlinks).
    pub meta: std::fs::Metadata,
    /// A directory only there because `.dockerignore` excludes it but not everything in it:
    /// it is created with default metadata, as Docker's context archive would.
    pub implicit: bool,
}

/// Why a source path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Nothing there (or excluded).
    #[error(
        "file not found in build context or excluded by .dockerignore: stat {0}: file does not exist"
    )]
    NotFound(String),
    /// Not found in the image `COPY --from` names.
    #[error("{0}: no such file or directory in the source image")]
    NotInImage(String),
    /// The path leaves the context.
    #[error("{path}: {why}")]
    Outside {
        /// The source as written.
        path: String,
        /// How it leaves.
        why: String,
    },
    /// Reading failed.
    #[error("cannot read {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
}

/// A tree sources are read from.
#[derive(Debug, Clone, Copy)]
pub enum Tree<'a> {
    /// The build context.
    Context(&'a Context),
    /// An image's (or a stage's) layers.
    Image(&'a Stack),
}

impl Context {
    /// The context at `root`, filtered by `ignore`.
    pub fn new(root: PathBuf, ignore: Ignore) -> Context {
        Context { root, ignore }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn excluded(&self, rel: &Path) -> bool {
        let s = String::from_utf8_lossy(rel.as_os_str().as_bytes());
        self.ignore.excludes(&s)
    }

    /// `written` as a path inside the context, symlinks followed; an error when it leaves
    /// the context (`..`, an absolute path that is not in it, a symlink leading out).
    pub fn resolve(&self, written: &str) -> Result<PathBuf, SourceError> {
        let outside = |why: &str| SourceError::Outside {
            path: written.to_string(),
            why: why.to_string(),
        };
        let mut out: Vec<OsString> = Vec::new();
        let mut pending: Vec<OsString> = Vec::new();
        for c in Path::new(written).components() {
            match c {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                _ => {}
            }
        }
        pending.reverse();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                if out.pop().is_none() {
                    return Err(outside(
                        "outside the build context (sources are paths inside the context directory)",
                    ));
                }
                continue;
            }
            let mut candidate: PathBuf = out.iter().collect();
            candidate.push(&c);
            let full = self.root.join(&candidate);
            match full.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 255 {
                        return Err(outside("too many levels of symbolic links"));
                    }
                    let target = std::fs::read_link(&full).map_err(|source| SourceError::Io {
                        path: full.clone(),
                        source,
                    })?;
                    if target.is_absolute() {
                        return Err(outside(&format!(
                            "a symbolic link to {} leads outside the build context",
                            target.display()
                        )));
                    }
                    let mut t: Vec<OsString> = Vec::new();
                    for tc in target.components() {
                        match tc {
                            Component::Normal(n) => t.push(n.to_os_string()),
                            Component::ParentDir => t.push("..".into()),
                            _ => {}
                        }
                    }
                    // `..` of a link target counts from the link's directory, and must not
                    // climb above the context either.
                    let depth = out.len() as isize;
                    let mut level = depth;
                    for x in &t {
                        level += if x == ".." { -1 } else { 1 };
                        if level < 0 {
                            return Err(outside(&format!(
                                "a symbolic link to {} leads outside the build context",
                                target.display()
                            )));
                        }
                    }
                    t.reverse();
                    pending.extend(t);
                }
                _ => out.push(c),
            }
        }
        Ok(out.iter().collect())
    }
}

impl<'a> Tree<'a> {
    /// The entry at the resolved path `rel` (`""` is the root).
    pub fn lookup(&self, rel: &Path) -> Option<Entry> {
        match self {
            Tree::Context(c) => {
                if !rel.as_os_str().is_empty() && c.excluded(rel) {
                    // An excluded directory still shows what an exception lets through.
                    let m = c.root.join(rel).symlink_metadata().ok()?;
                    if m.is_dir() && c.ignore.has_exceptions() && self.has_included(rel) {
                        return Some(Entry {
                            path: c.root.join(rel),
                            meta: m,
                            implicit: true,
                        });
                    }
                    return None;
                }
                let path = c.root.join(rel);
                let meta = path.symlink_metadata().ok()?;
                Some(Entry {
                    path,
                    meta,
                    implicit: false,
                })
            }
            Tree::Image(s) => s.lookup(rel).map(|n| Entry {
                path: n.path,
                meta: n.meta,
                implicit: false,
            }),
        }
    }

    fn has_included(&self, rel: &Path) -> bool {
        let Tree::Context(c) = self else { return true };
        let Ok(rd) = std::fs::read_dir(c.root.join(rel)) else {
            return false;
        };
        rd.flatten().any(|e| {
            let r = rel.join(e.file_name());
            (!c.excluded(&r)) || (e.path().is_dir() && self.has_included(&r))
        })
    }

    /// The entries of the directory at `rel`, by name.
    pub fn children(&self, rel: &Path) -> Result<Vec<(OsString, Entry)>, SourceError> {
        let io = |path: PathBuf| move |source| SourceError::Io { path, source };
        let mut out = Vec::new();
        match self {
            Tree::Context(c) => {
                let dir = c.root.join(rel);
                for e in std::fs::read_dir(&dir).map_err(io(dir.clone()))? {
                    let e = e.map_err(io(dir.clone()))?;
                    let name = e.file_name();
                    if let Some(entry) = self.lookup(&rel.join(&name)) {
                        out.push((name, entry));
                    }
                }
            }
            Tree::Image(s) => {
                let Some(dir) = s.lookup(rel).and_then(|n| n.dir) else {
                    return Ok(out);
                };
                for (name, n) in s.children(&dir).map_err(io(rel.to_path_buf()))? {
                    out.push((
                        name,
                        Entry {
                            path: n.path,
                            meta: n.meta,
                            implicit: false,
                        },
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every path (relative, resolved) below the root that matches a COPY wildcard, in
    /// walk order. Only as deep as the pattern reaches.
    pub fn glob(
        &self,
        pattern: &crate::glob::Pattern,
        depth: usize,
    ) -> Result<Vec<PathBuf>, SourceError> {
        let mut out = Vec::new();
        self.glob_into(Path::new(""), pattern, depth, &mut out)?;
        Ok(out)
    }

    fn glob_into(
        &self,
        rel: &Path,
        pattern: &crate::glob::Pattern,
        depth: usize,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), SourceError> {
        if depth == 0 {
            return Ok(());
        }
        for (name, e) in self.children(rel)? {
            let r = rel.join(&name);
            if pattern.matches(&String::from_utf8_lossy(r.as_os_str().as_bytes())) {
                out.push(r.clone());
            }
            if e.meta.is_dir() {
                self.glob_into(&r, pattern, depth - 1, out)?;
            }
        }
        Ok(())
    }

    /// A digest of everything a copy of `rel` would take: names, types, modes, owners,
    /// sizes, contents and link targets (times are left out, as Docker's cache does).
    pub fn hash(
        &self,
        rel: &Path,
        hasher: &mut Hasher,
        digests: &mut Digests,
    ) -> Result<(), SourceError> {
        let Some(e) = self.lookup(rel) else {
            return Err(SourceError::NotFound(rel.display().to_string()));
        };
        self.hash_entry(Path::new(""), &e, hasher, digests)?;
        if e.meta.is_dir() {
            self.hash_dir(rel, Path::new(""), hasher, digests)?;
        }
        Ok(())
    }

    fn hash_dir(
        &self,
        rel: &Path,
        inner: &Path,
        hasher: &mut Hasher,
        digests: &mut Digests,
    ) -> Result<(), SourceError> {
        for (name, e) in self.children(rel)? {
            let i = inner.join(&name);
            self.hash_entry(&i, &e, hasher, digests)?;
            if e.meta.is_dir() {
                self.hash_dir(&rel.join(&name), &i, hasher, digests)?;
            }
        }
        Ok(())
    }

    fn hash_entry(
        &self,
        inner: &Path,
        e: &Entry,
        hasher: &mut Hasher,
        digests: &mut Digests,
    ) -> Result<(), SourceError> {
        let m = &e.meta;
        let head = format!(
            "{}\0{:o}\0{}\0{}\0{}\0{}\0{}\n",
            inner.display(),
            m.mode(),
            m.uid(),
            m.gid(),
            if m.is_file() { m.len() } else { 0 },
            m.rdev(),
            u8::from(e.implicit),
        );
        hasher.update(head.as_bytes());
        if m.file_type().is_symlink() {
            let t = std::fs::read_link(&e.path).map_err(|source| SourceError::Io {
                path: e.path.clone(),
                source,
            })?;
            hasher.update(t.as_os_str().as_bytes());
        } else if m.is_file() {
            // Only context files are remembered (an image's files never change).
            let mut once = Digests::default();
            let memory = match self {
                Tree::Context(_) => digests,
                Tree::Image(_) => &mut once,
            };
            let sha256 = memory.file(&e.path, m).map_err(|source| SourceError::Io {
                path: e.path.clone(),
                source,
            })?;
            hasher.update(sha256.as_bytes());
        }
        hasher.update(b"\n");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx(dir: &Path, ignore: &str) -> Context {
        Context::new(dir.to_path_buf(), Ignore::parse(ignore, &[]).unwrap())
    }

    #[test]
    fn paths_and_links_may_not_leave_the_context() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("ctx");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a"), "a").unwrap();
        symlink("../a", root.join("sub/up")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("../../outside", root.join("sub/out")).unwrap();
        let c = ctx(&root, "");
        assert_eq!(c.resolve("sub/up").unwrap(), PathBuf::from("a"));
        assert_eq!(c.resolve("/a").unwrap(), PathBuf::from("a"));
        assert_eq!(c.resolve("./sub/../a").unwrap(), PathBuf::from("a"));
        assert!(matches!(
            c.resolve("../x"),
            Err(SourceError::Outside { .. })
        ));
        assert!(matches!(c.resolve("abs"), Err(SourceError::Outside { .. })));
        assert!(matches!(
            c.resolve("sub/out"),
            Err(SourceError::Outside { .. })
        ));
    }

    #[test]
    fn ignored_files_are_invisible() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/keep.md"), "k").unwrap();
        std::fs::write(root.join("docs/drop.md"), "d").unwrap();
        std::fs::write(root.join("secret"), "s").unwrap();
        let c = ctx(root, "secret\ndocs\n!docs/keep.md\n");
        let tree = Tree::Context(&c);
        assert!(tree.lookup(Path::new("secret")).is_none());
        let docs = tree.lookup(Path::new("docs")).unwrap();
        assert!(docs.implicit);
        let names: Vec<_> = tree
            .children(Path::new("docs"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["keep.md"]);
        let all: Vec<_> = tree
            .children(Path::new(""))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(all, ["docs"]);
    }
}
