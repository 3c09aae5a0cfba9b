//! The directories of a snapshot while a layer is applied to it.
//!
//! Directories are opened along the walk and kept open: a stack of handles from the
//! snapshot's root down to the last entry's parent, which the next entry of a depth-first tar
//! (what every writer produces) nearly always shares, so an entry costs no `open` of its
//! parents. Each component is opened with `O_NOFOLLOW | O_DIRECTORY` in the one above it, so a
//! symlink is never followed. The stack is keyed by path: a directory that a later entry
//! replaces leaves it together with everything below.
//!
//! A directory is created with its final mode where the umask allows that and the mode lets
//! its owner fill it; its times are set once, when the walk leaves it for good (every entry
//! made in a directory changes its mtime). Other modes — read-only directories, setgid ones —
//! are set at the end, deepest first, so that those directories can still be filled.
//!
//! The tree also knows which paths are directories of this layer: a non-directory entry at
//! such a path replaces a whole subtree, which only this thread may do, after every writer
//! is idle ([`super::writers`]).

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, Timestamps};
use rustix::io::Errno;

use super::writers::Lanes;
use super::{failed, set_opaque};
use crate::error::LayerError;
use crate::path::{self, Components};
use crate::store::fsutil::{open_child_dir, remove_at};

/// Directories left whose times wait for the writers before they are set.
const LEAVING_LIMIT: usize = 128;

/// What a directory entry asked for.
pub(super) struct DirMeta {
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Access and modification times.
    pub times: Timestamps,
    /// The mode could not be given at creation: set at the end.
    deferred: bool,
    /// The times are set, and nothing was made in it since.
    settled: bool,
}

struct Frame {
    name: Vec<u8>,
    fd: Arc<OwnedFd>,
}

/// The snapshot's directories (see the module comment).
pub(super) struct Tree {
    root: Arc<OwnedFd>,
    stack: Vec<Frame>,
    /// Every directory of this layer: entries and the parents they imply.
    dirs: HashSet<Components>,
    /// Directory entries' metadata, by path (the root's is under the empty path).
    metas: HashMap<Components, DirMeta>,
    /// Paths this layer whited out while nothing of its own was there (overlay snapshots: a
    /// directory made there afterwards hides the lower one, so it is opaque).
    whiteouts: HashSet<Components>,
    /// Directories left, with their times, once the writers are done with them.
    leaving: Vec<(Components, Arc<OwnedFd>, Timestamps)>,
    /// The last directory made, not entered yet: an empty one gets its times as soon as the
    /// next entry turns out not to go inside it.
    fresh: Option<Components>,
    overlay: bool,
    umask: u32,
}

impl Tree {
    /// The tree below `root`, an empty directory.
    pub fn new(root: OwnedFd, overlay: bool, umask: u32) -> Tree {
        // A setgid root (inherited from the store's directory) would give every file the
        // directory's group, which `chown` skipping relies on not happening; the layer's own
        // `./` entry sets the root's mode at the end.
        if let Ok(st) = rustix::fs::fstat(&root)
            && st.st_mode & 0o2000 != 0
        {
            let _ = rustix::fs::fchmod(&root, Mode::from_raw_mode(st.st_mode & 0o5777));
        }
        Tree {
            root: Arc::new(root),
            stack: Vec::new(),
            dirs: HashSet::new(),
            metas: HashMap::new(),
            whiteouts: HashSet::new(),
            leaving: Vec::new(),
            fresh: None,
            overlay,
            umask,
        }
    }

    /// The snapshot's root.
    pub fn root(&self) -> &Arc<OwnedFd> {
        &self.root
    }

    /// Whether `path` is a directory of this layer.
    pub fn is_dir(&self, path: &[Vec<u8>]) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    fn top(&self) -> Arc<OwnedFd> {
        self.stack.last().map_or(&self.root, |f| &f.fd).clone()
    }

    fn depth_shared_with(&self, path: &[Vec<u8>]) -> usize {
        self.stack
            .iter()
            .zip(path)
            .take_while(|(f, c)| &f.name == *c)
            .count()
    }

    /// The directory `path`, opened, and created where the tar only implies it.
    pub fn open(
        &mut self,
        path: &[Vec<u8>],
        lanes: &mut Lanes,
        entry: &str,
    ) -> Result<Arc<OwnedFd>, LayerError> {
        self.settle_fresh(Some(path), entry)?;
        let keep = self.depth_shared_with(path);
        self.pop_to(keep);
        while self.stack.len() < path.len() {
            let at = &path[..=self.stack.len()];
            let fd = self.child(at, lanes, entry)?;
            if let Some(m) = self.metas.get_mut(at) {
                // Entries will be made in it: its times are set again when the walk leaves.
                m.settled = false;
            }
            self.stack.push(Frame {
                name: at[at.len() - 1].clone(),
                fd: Arc::new(fd),
            });
        }
        Ok(self.top())
    }

    /// Opens the directory `path` (one below the top of the stack), creating it when the tar
    /// did not list it.
    fn child(
        &mut self,
        path: &[Vec<u8>],
        lanes: &mut Lanes,
        entry: &str,
    ) -> Result<OwnedFd, LayerError> {
        let parent = self.top();
        let name = path[path.len() - 1].as_slice();
        let mut flushed = false;
        loop {
            match open_child_dir(parent.as_fd(), name) {
                Ok(fd) => return Ok(fd),
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                    if !flushed {
                        // An earlier entry may still be making a non-directory there, which
                        // must make this entry fail as it would have in tar order.
                        lanes.flush_path(path)?;
                        flushed = true;
                        continue;
                    }
                    // Parents a tar does not list are implied: root-owned, 0755, as Docker
                    // and containerd create them (apple/container#1797).
                    rustix::fs::mkdirat(parent.as_fd(), name, Mode::from_raw_mode(0o755))
                        .map_err(failed("create the parent of", entry))?;
                    self.dirs.insert(path.to_vec());
                    let fd = open_child_dir(parent.as_fd(), name)
                        .map_err(failed("open the parent of", entry))?;
                    if self.overlay && self.whiteouts.contains(path) {
                        // `.wh.d` then `d/x` in one layer: d is a directory that still hides
                        // the lower d.
                        set_opaque(fd.as_fd())
                            .map_err(failed("mark opaque the parent of", entry))?;
                    }
                    return Ok(fd);
                }
                Err(e)
                    if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                        || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
                {
                    if self.overlay && self.whiteouts.contains(path) {
                        lanes.flush_path(path)?;
                        rustix::fs::unlinkat(parent.as_fd(), name, AtFlags::empty())
                            .map_err(failed("replace the whiteout above", entry))?;
                        // Now missing: made as an implied, opaque, parent.
                        flushed = true;
                        continue;
                    }
                    return Err(not_a_directory(&parent, path, entry));
                }
                Err(e) => return Err(failed("open the parent of", entry)(e)),
            }
        }
    }

    /// Leaves the directories of the stack deeper than `len`; their times are set once the
    /// writers are done with them.
    fn pop_to(&mut self, len: usize) {
        while self.stack.len() > len {
            let path: Components = self.stack.iter().map(|f| f.name.clone()).collect();
            let frame = self.stack.pop().expect("longer than len");
            if let Some(m) = self.metas.get_mut(&path)
                && !m.deferred
                && !m.settled
            {
                m.settled = true;
                let times = m.times.clone();
                self.leaving.push((path, frame.fd, times));
            }
        }
    }

    /// Gives the last directory made its times unless `next` (the next entry's parent) goes
    /// inside it; the top of the stack is still that directory's parent.
    fn settle_fresh(&mut self, next: Option<&[Vec<u8>]>, entry: &str) -> Result<(), LayerError> {
        let Some(fresh) = self.fresh.take() else {
            return Ok(());
        };
        if next.is_some_and(|n| n.starts_with(&fresh)) {
            return Ok(());
        }
        let top = self.top();
        let Some(m) = self.metas.get_mut(&fresh) else {
            return Ok(());
        };
        if m.deferred || m.settled {
            return Ok(());
        }
        let name = fresh[fresh.len() - 1].as_slice();
        rustix::fs::utimensat(top.as_fd(), name, &m.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(failed("set times of", entry))?;
        m.settled = true;
        Ok(())
    }

    /// Whether the directories left must get their times now (to keep their handles few).
    pub fn must_flush(&self) -> bool {
        self.leaving.len() >= LEAVING_LIMIT
    }

    /// Sets the times of the directories left, once every writer is done with them.
    pub fn flush(&mut self, lanes: &mut Lanes) -> Result<(), LayerError> {
        lanes.flush_all()?;
        for (path, fd, times) in self.leaving.drain(..) {
            rustix::fs::futimens(&fd, &times)
                .map_err(failed("set times of", &path::display(&path)))?;
        }
        Ok(())
    }

    /// Makes the directory entry `path` (its parent is the top of the stack, see
    /// [`Tree::open`]): a new directory, or new metadata for one this layer already has.
    #[allow(clippy::too_many_arguments)]
    pub fn make_dir(
        &mut self,
        path: &[Vec<u8>],
        mode: u32,
        times: Timestamps,
        owner: Option<(rustix::fs::Uid, rustix::fs::Gid)>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
        lanes: &mut Lanes,
        entry: &str,
    ) -> Result<(), LayerError> {
        let parent = self.top();
        let name = path[path.len() - 1].as_slice();
        let existed = self.dirs.contains(path);
        // A directory its owner can fill gets its final mode now, unless the umask removes
        // bits or the mode has setuid/setgid (mkdir ignores them; setgid would also give
        // children its group before their own owners are set).
        let immediate =
            mode & 0o700 == 0o700 && mode & 0o6000 == 0 && mode & 0o777 & self.umask == 0;
        let mut opaque = false;
        if !existed {
            let create = Mode::from_raw_mode(if immediate { mode & 0o1777 } else { 0o700 });
            match rustix::fs::mkdirat(parent.as_fd(), name, create) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    // A non-directory of an earlier entry (or a whiteout) is replaced; no
                    // writer may be making it at the same time.
                    lanes.flush_path(path)?;
                    rustix::fs::unlinkat(parent.as_fd(), name, AtFlags::empty())
                        .map_err(failed("replace", entry))?;
                    rustix::fs::mkdirat(parent.as_fd(), name, create)
                        .map_err(failed("create directory", entry))?;
                }
                Err(e) => return Err(failed("create directory", entry)(e)),
            }
            self.dirs.insert(path.to_vec());
            opaque = self.overlay && self.whiteouts.contains(path);
        }
        if let Some((u, g)) = owner {
            rustix::fs::chownat(
                parent.as_fd(),
                name,
                Some(u),
                Some(g),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(failed("chown", entry))?;
        }
        let meta = DirMeta {
            mode,
            times,
            // A directory made earlier (or implied) has some other mode already.
            deferred: existed || !immediate,
            settled: false,
        };
        self.metas.insert(path.to_vec(), meta);
        if !xattrs.is_empty() || opaque {
            let fd =
                open_child_dir(parent.as_fd(), name).map_err(failed("open directory", entry))?;
            super::node::set_xattrs(fd.as_fd(), entry, xattrs);
            if opaque {
                set_opaque(fd.as_fd()).map_err(failed("mark opaque", entry))?;
            }
            self.stack.push(Frame {
                name: name.to_vec(),
                fd: Arc::new(fd),
            });
        } else {
            self.fresh = Some(path.to_vec());
        }
        Ok(())
    }

    /// Records the layer root's own entry.
    pub fn root_meta(&mut self, mode: u32, times: Timestamps) {
        self.metas.insert(
            Vec::new(),
            DirMeta {
                mode,
                times,
                deferred: true,
                settled: false,
            },
        );
    }

    /// Records a whiteout of `path`; false when `path` is a directory of this layer, which its
    /// own layer's whiteout does not hide.
    pub fn whiteout(&mut self, path: &[Vec<u8>]) -> bool {
        if self.is_dir(path) {
            return false;
        }
        self.whiteouts.insert(path.to_vec());
        true
    }

    /// Removes the directory `path` of this layer, with its content, for a non-directory
    /// entry that replaces it.
    pub fn remove(
        &mut self,
        path: &[Vec<u8>],
        lanes: &mut Lanes,
        entry: &str,
    ) -> Result<(), LayerError> {
        lanes.flush_all()?;
        let below = |p: &Components| p.starts_with(path);
        self.dirs.retain(|p| !below(p));
        self.metas.retain(|p, _| !below(p));
        self.whiteouts.retain(|p| !below(p));
        if self.fresh.as_ref().is_some_and(below) {
            self.fresh = None;
        }
        let (name, parent) = path.split_last().expect("not the root");
        let dir = self.open(parent, lanes, entry)?;
        remove_at(dir.as_fd(), name).map_err(failed("replace", entry))
    }

    /// The directory `path` if it exists, opened without changing the stack (the target of a
    /// hard link); a symlink on the way is an error.
    pub fn lookup(
        &self,
        path: &[Vec<u8>],
        entry: &str,
    ) -> Result<Option<Arc<OwnedFd>>, LayerError> {
        let keep = self.depth_shared_with(path);
        let mut cur = if keep == 0 {
            self.root.clone()
        } else {
            self.stack[keep - 1].fd.clone()
        };
        for i in keep..path.len() {
            match open_child_dir(cur.as_fd(), &path[i]) {
                Ok(fd) => cur = Arc::new(fd),
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(None),
                Err(e)
                    if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error())
                        || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
                {
                    return Err(not_a_directory(&cur, &path[..=i], entry));
                }
                Err(e) => return Err(failed("open the parent of", entry)(e)),
            }
        }
        Ok(Some(cur))
    }

    /// Sets the times of every directory left, then the modes that could not be given at
    /// creation, deepest first, and the root's own metadata.
    pub fn finish(&mut self, lanes: &mut Lanes) -> Result<(), LayerError> {
        self.settle_fresh(None, "")?;
        self.pop_to(0);
        self.flush(lanes)?;
        let mut late: Vec<(&Components, &DirMeta)> =
            self.metas.iter().filter(|(_, m)| m.deferred).collect();
        // Reverse order puts every directory before its parents.
        late.sort_unstable_by(|a, b| b.0.cmp(a.0));
        for (p, m) in late {
            let entry = path::display(p);
            let fd = match p.split_last() {
                None => self.root.clone(),
                Some((name, parent)) => {
                    // A directory replaced later by something else is simply gone.
                    let Ok(Some(dir)) = self.lookup(parent, &entry) else {
                        continue;
                    };
                    let Ok(fd) = open_child_dir(dir.as_fd(), name) else {
                        continue;
                    };
                    Arc::new(fd)
                }
            };
            rustix::fs::fchmod(&*fd, Mode::from_raw_mode(m.mode))
                .map_err(failed("chmod", &entry))?;
            rustix::fs::futimens(&*fd, &m.times).map_err(failed("set times of", &entry))?;
        }
        Ok(())
    }
}

/// The error for an entry whose parent `path` (found in `dir`'s parent) is not a directory.
fn not_a_directory(parent: &Arc<OwnedFd>, path: &[Vec<u8>], entry: &str) -> LayerError {
    let st = rustix::fs::statat(
        parent.as_fd(),
        path[path.len() - 1].as_slice(),
        AtFlags::SYMLINK_NOFOLLOW,
    );
    let what = match st.map(|s| FileType::from_raw_mode(s.st_mode)) {
        Ok(FileType::Symlink) => "a symlink",
        _ => "not a directory",
    };
    LayerError::Unsafe {
        entry: entry.to_string(),
        reason: format!("its parent `{}` is {what}", path::display(path)),
    }
}
