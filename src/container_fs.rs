//! A container's file system as its processes see it, read and written from the host without
//! ever leaving it: what `ferry cp` and `ferry export` work on.
//!
//! A [`View`] is a stack of directories, top first: the overlay upper directory over the
//! image's snapshots for a stopped container (merged here in user space, whiteouts and opaque
//! directories of both snapshot formats understood), or one directory — the copy rootfs, or
//! `/proc/PID/root` of a running container. Every path is walked one component at a time with
//! `*at` calls and `O_NOFOLLOW`, from directory handles: a symlink the container made is
//! resolved *inside* the container's root (absolute targets start at its `/`, `..` stops
//! there), never by the kernel on the host's side. This is the class of bug behind
//! CVE-2018-15664 (`docker cp` writing through a swapped symlink) and CVE-2019-14271.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

pub use ferry_load::store::fsutil::{is_whiteout, kind_at, open_child_dir};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// Symlinks followed while resolving one path, as Linux allows.
const MAX_LINKS: usize = 40;

/// A directory as the merged view shows it: its handle in each layer where it exists and
/// merges (top first, stopping below an opaque one).
pub struct Dir {
    fds: Vec<OwnedFd>,
}

/// What a name is in the merged view.
pub enum Node {
    /// A directory.
    Dir(Dir),
    /// Anything else, in the layer directory `parent` (top-most layer that has it).
    Other {
        /// The layer directory holding it.
        parent: OwnedFd,
        /// Its name there.
        name: OsString,
        /// Its status (not followed).
        stat: Stat,
    },
}

/// A resolved path: its components (no symlink among them, no `..`) and what is there.
pub struct Found {
    /// The canonical path inside the container, as components.
    pub path: Vec<OsString>,
    /// What is there, or `None` when the last component does not exist (its parent does).
    pub node: Option<Node>,
}

/// A container's file system.
pub struct View {
    roots: Vec<OwnedFd>,
}

impl View {
    /// A stack of layer directories, top first.
    pub fn new(layers: &[std::path::PathBuf]) -> io::Result<View> {
        let roots = layers
            .iter()
            .map(|p| {
                rustix::fs::open(
                    p,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| {
                    io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", p.display()))
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(View { roots })
    }

    /// The root directory.
    pub fn root(&self) -> io::Result<Dir> {
        Ok(Dir {
            fds: self
                .roots
                .iter()
                .map(|f| f.try_clone())
                .collect::<io::Result<_>>()?,
        })
    }

    /// Resolves `path` (absolute or relative to `/`) inside the container. Symlinks in
    /// directory components are followed inside the root; the last component is followed too
    /// when `follow`. Fails when a directory on the way is missing or not a directory.
    pub fn resolve(&self, path: &[u8], follow: bool) -> io::Result<Found> {
        let mut pending: Vec<OsString> = components(path);
        pending.reverse();
        let mut stack: Vec<(OsString, Dir)> = Vec::new();
        let mut links = 0;
        loop {
            let Some(name) = pending.pop() else {
                let path = stack.iter().map(|(n, _)| n.clone()).collect();
                let node = match stack.pop() {
                    Some((_, d)) => Node::Dir(d),
                    None => Node::Dir(self.root()?),
                };
                return Ok(Found {
                    path,
                    node: Some(node),
                });
            };
            if name == ".." {
                stack.pop();
                continue;
            }
            let last = pending.is_empty();
            let here = match stack.last() {
                Some((_, d)) => d.try_clone()?,
                None => self.root()?,
            };
            match here.lookup(name.as_bytes())? {
                Some(Node::Dir(d)) => stack.push((name, d)),
                Some(Node::Other { parent, stat, .. })
                    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink
                        && (!last || follow) =>
                {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::other(format!(
                            "too many levels of symbolic links at {}",
                            display(&stack, &name)
                        )));
                    }
                    let target =
                        rustix::fs::readlinkat(parent.as_fd(), name.as_bytes(), Vec::new())?;
                    let target = target.into_bytes();
                    if target.starts_with(b"/") {
                        stack.clear();
                    }
                    let mut more = components(&target);
                    more.reverse();
                    pending.extend(more);
                }
                Some(other) if last => {
                    let mut path: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
                    path.push(name);
                    return Ok(Found {
                        path,
                        node: Some(other),
                    });
                }
                None if last => {
                    let mut path: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
                    path.push(name);
                    return Ok(Found { path, node: None });
                }
                _ => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("no such directory: {}", display(&stack, &name)),
                    ));
                }
            }
        }
    }
}

fn display(stack: &[(OsString, Dir)], name: &OsStr) -> String {
    let mut s = String::new();
    for (n, _) in stack {
        s.push('/');
        s.push_str(&n.to_string_lossy());
    }
    s.push('/');
    s.push_str(&name.to_string_lossy());
    s
}

/// The normal components of a path (`.` and empty ones dropped, `..` kept).
pub fn components(path: &[u8]) -> Vec<OsString> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

impl Dir {
    /// Another handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fds: self
                .fds
                .iter()
                .map(|f| f.try_clone())
                .collect::<io::Result<_>>()?,
        })
    }

    /// The top-most layer's handle (where the directory is written in a one-layer view).
    pub fn top(&self) -> BorrowedFd<'_> {
        self.fds[0].as_fd()
    }

    /// What `name` is here in the merged view, or `None`.
    pub fn lookup(&self, name: &[u8]) -> io::Result<Option<Node>> {
        let mut dirs = Vec::new();
        for fd in &self.fds {
            if whited_out(fd.as_fd(), name)? {
                break;
            }
            let Some(st) = kind_at(fd.as_fd(), name)? else {
                continue;
            };
            if is_whiteout(&st) {
                break;
            }
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                if dirs.is_empty() {
                    return Ok(Some(Node::Other {
                        parent: fd.try_clone()?,
                        name: OsString::from_vec(name.to_vec()),
                        stat: st,
                    }));
                }
                // Something else below a directory ends the merge.
                break;
            }
            let child = open_child_dir(fd.as_fd(), name)?;
            let opaque = is_opaque(child.as_fd());
            dirs.push(child);
            if opaque {
                break;
            }
        }
        Ok((!dirs.is_empty()).then_some(Node::Dir(Dir { fds: dirs })))
    }

    /// The names in the merged directory, sorted, without whiteouts and what they hide.
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut seen: std::collections::BTreeMap<Vec<u8>, bool> = Default::default();
        for fd in &self.fds {
            let mut here: Vec<(Vec<u8>, bool)> = Vec::new();
            let dir = rustix::fs::Dir::read_from(fd.as_fd())?;
            for e in dir {
                let e = e?;
                let name = e.file_name().to_bytes().to_vec();
                if name == b"." || name == b".." || name == OPAQUE_MARKER {
                    continue;
                }
                if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                    here.push((hidden.to_vec(), false));
                    continue;
                }
                let visible = kind_at(fd.as_fd(), &name)?.is_none_or(|st| !is_whiteout(&st));
                here.push((name, visible));
            }
            for (name, visible) in here {
                seen.entry(name).or_insert(visible);
            }
        }
        Ok(seen
            .into_iter()
            .filter(|(_, v)| *v)
            .map(|(n, _)| OsString::from_vec(n))
            .collect())
    }
}

/// A portable (`.wh.NAME`) whiteout for `name` in this layer directory.
fn whited_out(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    let mut wh = WHITEOUT_PREFIX.to_vec();
    wh.extend_from_slice(name);
    Ok(kind_at(dir, &wh)?.is_some())
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    if kind_at(dir, OPAQUE_MARKER).ok().flatten().is_some() {
        return true;
    }
    let mut buf = [0u8; 4];
    OPAQUE_XATTRS
        .iter()
        .any(|x| matches!(rustix::fs::fgetxattr(dir, *x, &mut buf[..]), Ok(1) if buf[0] == b'y'))
}

/// Opens the regular file `name` in `dir` for reading, refusing a symlink.
pub fn open_file_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<std::fs::File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

/// What [`walk`] calls for each entry: its path, its layer directory and its status.
pub type Visitor<'a> = dyn FnMut(&[OsString], BorrowedFd<'_>, &Stat) -> io::Result<()> + 'a;

/// Walks the merged tree below `dir` (at container path `path`), depth first, names sorted,
/// calling `visit` with each entry's path, its layer directory and status; a directory is
/// visited before its content.
pub fn walk(dir: &Dir, path: &mut Vec<OsString>, visit: &mut Visitor<'_>) -> io::Result<()> {
    for name in dir.names()? {
        match dir.lookup(name.as_bytes())? {
            Some(Node::Dir(child)) => {
                path.push(name.clone());
                // A directory's own status comes from its top-most layer.
                let parent_fd = dir
                    .fds
                    .iter()
                    .find(|fd| {
                        kind_at(fd.as_fd(), name.as_bytes())
                            .ok()
                            .flatten()
                            .is_some()
                    })
                    .map(|fd| fd.as_fd())
                    .unwrap_or(dir.top());
                let st = rustix::fs::statat(parent_fd, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW)?;
                visit(path, parent_fd, &st)?;
                walk(&child, path, visit)?;
                path.pop();
            }
            Some(Node::Other { parent, stat, .. }) => {
                path.push(name);
                visit(path, parent.as_fd(), &stat)?;
                path.pop();
            }
            None => {}
        }
    }
    Ok(())
}

/// Makes sure the directory `path` exists in the writable top layer `top` (a copy-up of the
/// merged view's directories: same mode and owner), and opens it there.
pub fn open_writable(view: &View, top: BorrowedFd<'_>, path: &[OsString]) -> io::Result<OwnedFd> {
    let mut cur = rustix::fs::openat(
        top,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut merged = view.root()?;
    for name in path {
        let b = name.as_bytes();
        let next = match merged.lookup(b)? {
            Some(Node::Dir(d)) => d,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} is not a directory", name.to_string_lossy()),
                ));
            }
        };
        match kind_at(cur.as_fd(), b)? {
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Some(st) if is_whiteout(&st) => {
                rustix::fs::unlinkat(cur.as_fd(), b, AtFlags::empty())?;
                copy_up_dir(cur.as_fd(), b, &next)?;
            }
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is not a directory", name.to_string_lossy()),
                ));
            }
            None => copy_up_dir(cur.as_fd(), b, &next)?,
        }
        cur = open_child_dir(cur.as_fd(), b)?;
        merged = next;
    }
    Ok(cur)
}

fn copy_up_dir(parent: BorrowedFd<'_>, name: &[u8], merged: &Dir) -> io::Result<()> {
    let st = rustix::fs::fstat(merged.top())?;
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    let _ = rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "inside").unwrap();
        symlink("/", r.join("hostroot")).unwrap();
        symlink("../../../../etc", r.join("up")).unwrap();
        let view = View::new(&[r.to_path_buf()]).unwrap();
        let found = view.resolve(b"/hostroot/etc/passwd", true).unwrap();
        assert_eq!(
            found.path,
            [OsString::from("etc"), OsString::from("passwd")]
        );
        let found = view.resolve(b"up/passwd", true).unwrap();
        assert_eq!(
            found.path,
            [OsString::from("etc"), OsString::from("passwd")]
        );
        let found = view.resolve(b"/etc/new", true).unwrap();
        assert!(found.node.is_none());
        assert!(view.resolve(b"/nope/new", true).is_err());
    }

    #[test]
    fn layers_merge_with_whiteouts_and_opaque_dirs() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        let (l, u) = (lower.path(), upper.path());
        std::fs::create_dir_all(l.join("a")).unwrap();
        std::fs::write(l.join("a/old"), "x").unwrap();
        std::fs::write(l.join("a/gone"), "x").unwrap();
        std::fs::create_dir_all(l.join("b")).unwrap();
        std::fs::write(l.join("b/hidden"), "x").unwrap();
        std::fs::create_dir_all(u.join("a")).unwrap();
        std::fs::write(u.join("a/new"), "y").unwrap();
        std::fs::write(u.join("a/.wh.gone"), "").unwrap();
        std::fs::create_dir_all(u.join("b")).unwrap();
        std::fs::write(u.join("b/.wh..wh..opq"), "").unwrap();
        let view = View::new(&[u.to_path_buf(), l.to_path_buf()]).unwrap();
        let Some(Node::Dir(a)) = view.root().unwrap().lookup(b"a").unwrap() else {
            panic!("a is a directory");
        };
        assert_eq!(
            a.names().unwrap(),
            [OsString::from("new"), OsString::from("old")]
        );
        let Some(Node::Dir(b)) = view.root().unwrap().lookup(b"b").unwrap() else {
            panic!("b is a directory");
        };
        assert!(b.names().unwrap().is_empty());
        // Writing /a/deep into the upper layer copies /a up only where needed.
        let fd = open_writable(&view, view.roots[0].as_fd(), &[OsString::from("b")]).unwrap();
        drop(fd);
        assert!(u.join("b").is_dir());
    }
}
