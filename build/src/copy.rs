//! COPY and ADD: which sources, and how they land, by Docker's rules.
//!
//! - a file goes to `DEST/NAME` when DEST ends with `/` or is a directory, else to DEST;
//! - a directory's *contents* go into DEST (created when missing);
//! - wildcards match inside the context (or the `--from` image) with Go's `filepath.Match`;
//!   several sources need a DEST ending in `/`;
//! - owners become root's (or `--chown`'s); `COPY --from` without `--chown` keeps them;
//!   directories made on the way belong to root, or to `--chown`'s user for a file copy;
//! - ADD unpacks local tar archives (plain, gzip, bzip2, xz, zstd) into DEST, keeping the
//!   archive's owners, and downloads URLs (mode 600, time from `Last-Modified`).

use std::ffi::OsString;
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ferry_load::compression::{self, Format};
use ferry_load::tar::{Kind as TarKind, TarReader};

use crate::fs::writer::{Item, Meta, Writer};
use crate::source::{Entry, SourceError, Tree};

/// One source, found and checked.
#[allow(clippy::large_enum_variant)]
pub enum Source<'a> {
    /// A file or directory of a tree.
    Tree {
        /// Where it is read from.
        tree: Tree<'a>,
        /// Its resolved path in the tree.
        rel: PathBuf,
        /// The name it lands under (the last component as written, not a link's target).
        name: OsString,
        /// What it is.
        entry: Entry,
    },
    /// A heredoc's body.
    Inline {
        /// The file name (the heredoc's terminator word).
        name: String,
        /// The content.
        data: Vec<u8>,
    },
    /// A file `ADD` downloaded.
    Downloaded {
        /// Where it was saved.
        path: PathBuf,
        /// The name it lands under.
        name: String,
        /// Last-Modified, if the server said.
        mtime: Option<i64>,
    },
}

/// How the copied entries are owned and moded.
#[derive(Debug, Clone, Copy)]
pub struct CopyMode {
    /// `Some`: every entry belongs to this uid:gid; `None`: owners are kept (`COPY --from`).
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub chmod: Option<u32>,
    /// ADD: unpack local archives.
    pub unpack: bool,
    /// The time of directories made on the way.
    pub now: (i64, i64),
}

impl CopyMode {
    fn dir_owner(&self) -> (u32, u32) {
        self.owner.unwrap_or((0, 0))
    }

    /// A file the step makes itself (a heredoc, a download): `--chown`'s owner or root,
    /// `--chmod`'s mode or `default`.
    fn new_file(&self, default: u32, mtime: (i64, i64)) -> Meta {
        let (uid, gid) = self.dir_owner();
        Meta {
            mode: self.chmod.unwrap_or(default),
            uid,
            gid,
            mtime,
        }
    }

    fn meta(&self, m: &std::fs::Metadata) -> Meta {
        let mut meta = Meta::of(m);
        if let Some((u, g)) = self.owner {
            meta.uid = u;
            meta.gid = g;
        }
        if let Some(c) = self.chmod
            && !m.file_type().is_symlink()
        {
            meta.mode = c;
        }
        meta
    }
}

/// Copies `sources` to `dest` (an absolute container path; a trailing `/` matters).
pub fn copy(
    writer: &mut Writer,
    sources: &[Source<'_>],
    dest: &str,
    mode: CopyMode,
) -> io::Result<()> {
    let dest_rel = PathBuf::from(dest.trim_start_matches('/'));
    let into_dir = dest.ends_with('/');
    for s in sources {
        match s {
            Source::Tree {
                tree, rel, entry, ..
            } if entry.meta.is_dir() => copy_dir(writer, *tree, rel, &dest_rel, mode)?,
            Source::Tree { entry, .. } if mode.unpack && is_archive(&entry.path) => {
                unpack(writer, &entry.path, &dest_rel, mode)?;
            }
            Source::Tree { entry, name, .. } => {
                let meta = mode.meta(&entry.meta);
                let target = file_target(writer, &dest_rel, into_dir, name)?;
                put_entry(writer, &target, entry, meta, mode.dir_owner(), None)?;
            }
            Source::Inline { name, data } => {
                let target = file_target(writer, &dest_rel, into_dir, name.as_ref())?;
                let meta = mode.new_file(0o644, mode.now);
                writer.put(&target, Item::File(&mut &data[..]), meta, mode.dir_owner())?;
            }
            Source::Downloaded { path, name, mtime } => {
                let target = file_target(writer, &dest_rel, into_dir, name.as_ref())?;
                let meta = mode.new_file(0o600, (mtime.unwrap_or(0), 0));
                let mut f = std::fs::File::open(path)?;
                writer.put(&target, Item::File(&mut f), meta, mode.dir_owner())?;
            }
        }
    }
    Ok(())
}

/// Where a single file goes.
fn file_target(
    writer: &Writer,
    dest: &Path,
    into_dir: bool,
    name: &std::ffi::OsStr,
) -> io::Result<PathBuf> {
    let canon = writer.resolve(dest)?;
    if into_dir || writer.view().is_dir(&canon) {
        Ok(canon.join(name))
    } else {
        Ok(canon)
    }
}

fn copy_dir(
    writer: &mut Writer,
    tree: Tree<'_>,
    rel: &Path,
    dest: &Path,
    mode: CopyMode,
) -> io::Result<()> {
    let canon = writer.resolve(dest)?;
    match writer.view().lookup(&canon) {
        Some(n) if n.meta.is_dir() => writer.ensure_dir(&canon, (0, 0))?,
        Some(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "cannot copy a directory to /{}: it exists and is not a directory",
                    canon.display()
                ),
            ));
        }
        None => {
            let (uid, gid) = mode.dir_owner();
            let meta = Meta {
                mode: mode.chmod.unwrap_or(0o755),
                uid,
                gid,
                mtime: mode.now,
            };
            // Directories made above it belong to root, as Docker's MkdirAll leaves them.
            writer.put(&canon, Item::Dir, meta, (0, 0))?;
        }
    }
    let mut links = std::collections::HashMap::new();
    copy_children(writer, tree, rel, &canon, mode, &mut links)
}

fn copy_children(
    writer: &mut Writer,
    tree: Tree<'_>,
    rel: &Path,
    target: &Path,
    mode: CopyMode,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    let children = tree.children(rel).map_err(source_io)?;
    for (name, entry) in children {
        let t = target.join(&name);
        let meta = if entry.implicit {
            let (uid, gid) = mode.dir_owner();
            Meta {
                mode: 0o755,
                uid,
                gid,
                mtime: mode.now,
            }
        } else {
            mode.meta(&entry.meta)
        };
        put_entry(writer, &t, &entry, meta, mode.dir_owner(), Some(links))?;
        if entry.meta.is_dir() {
            copy_children(writer, tree, &rel.join(&name), &t, mode, links)?;
        }
    }
    Ok(())
}

/// Writes one entry of a tree, with the extended attributes a layer carries (`user.*`, file
/// capabilities), as BuildKit's copy keeps them. With `links`, files hard-linked to each
/// other in the source stay hard links.
fn put_entry(
    writer: &mut Writer,
    target: &Path,
    entry: &Entry,
    meta: Meta,
    parent_owner: (u32, u32),
    links: Option<&mut std::collections::HashMap<(u64, u64), PathBuf>>,
) -> io::Result<PathBuf> {
    let m = &entry.meta;
    let ft = m.file_type();
    let link_key = (ft.is_file() && m.nlink() > 1).then(|| (m.dev(), m.ino()));
    if let (Some(key), Some(links)) = (link_key, links.as_deref())
        && let Some(first) = links.get(&key)
    {
        return writer.put(target, Item::HardLink(first.clone()), meta, parent_owner);
    }
    let mut file;
    let item = if ft.is_dir() {
        Item::Dir
    } else if ft.is_file() {
        file = std::fs::File::open(&entry.path)?;
        Item::File(&mut file)
    } else if ft.is_symlink() {
        Item::Symlink(std::fs::read_link(&entry.path)?)
    } else if ft.is_fifo() {
        Item::Fifo
    } else if ft.is_char_device() {
        Item::Char(m.rdev())
    } else if ft.is_block_device() {
        Item::Block(m.rdev())
    } else {
        // Sockets are not copied.
        return Ok(target.to_path_buf());
    };
    let written = writer.put(target, item, meta, parent_owner)?;
    if let (Some(key), Some(links)) = (link_key, links) {
        links.insert(key, written.clone());
    }
    if !entry.implicit && !ft.is_symlink() {
        let xattrs = crate::fs::layer_xattrs(&entry.path);
        if !xattrs.is_empty() {
            writer.set_xattrs(&written, &xattrs)?;
        }
    }
    Ok(written)
}

fn source_io(e: SourceError) -> io::Error {
    io::Error::other(e)
}

/// Whether a file is a tar archive, plain or compressed (what ADD unpacks).
pub fn is_archive(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok((format, decoded)) = compression::open_stream(BufReader::new(f)) else {
        return false;
    };
    if format == Format::Other {
        return false;
    }
    let mut r = TarReader::new(decoded);
    matches!(r.next_entry(), Ok(Some(_)))
}

/// Unpacks a tar archive into `dest` (ADD): entries keep the archive's owners and modes
/// (`--chown` does not apply to archives, as in Docker); `..` may not climb out.
fn unpack(writer: &mut Writer, archive: &Path, dest: &Path, mode: CopyMode) -> io::Result<()> {
    let canon = writer.resolve(dest)?;
    if writer.view().lookup(&canon).is_none() {
        let meta = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: mode.now,
        };
        writer.put(&canon, Item::Dir, meta, (0, 0))?;
    } else {
        writer.ensure_dir(&canon, (0, 0))?;
    }
    let f = std::fs::File::open(archive)?;
    let (_, decoded) = compression::open_stream(BufReader::with_capacity(256 * 1024, f))?;
    let mut r = TarReader::new(decoded);
    let mut written: std::collections::HashMap<Vec<u8>, PathBuf> = Default::default();
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        let h = match r.next_entry() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(bad(format!("{}: {e}", archive.display()))),
        };
        let Some(rel) = clean_archive_path(&h.path) else {
            return Err(bad(format!(
                "{}: entry {} would land outside the destination",
                archive.display(),
                h.display_path()
            )));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = canon.join(&rel);
        let meta = Meta {
            mode: h.mode & 0o7777,
            uid: h.uid as u32,
            gid: h.gid as u32,
            mtime: (h.mtime, i64::from(h.mtime_nsec)),
        };
        let item = match h.kind {
            TarKind::Dir => Item::Dir,
            TarKind::File => {
                let mut data = r.data();
                let p = writer.put(&target, Item::File(&mut data), meta, (0, 0))?;
                written.insert(rel.as_os_str().as_bytes().to_vec(), p);
                continue;
            }
            TarKind::Symlink => Item::Symlink(PathBuf::from(std::ffi::OsStr::from_bytes(&h.link))),
            TarKind::Hardlink => {
                let Some(to) = clean_archive_path(&h.link)
                    .and_then(|l| written.get(l.as_os_str().as_bytes()).cloned())
                else {
                    return Err(bad(format!(
                        "{}: hard link {} points at an entry not in the archive",
                        archive.display(),
                        h.display_path()
                    )));
                };
                Item::HardLink(to)
            }
            TarKind::Fifo => Item::Fifo,
            TarKind::Char => Item::Char(libc::makedev(h.dev_major, h.dev_minor)),
            TarKind::Block => Item::Block(libc::makedev(h.dev_major, h.dev_minor)),
            TarKind::Other(_) => continue,
        };
        let p = writer.put(&target, item, meta, (0, 0))?;
        written.insert(rel.as_os_str().as_bytes().to_vec(), p);
    }
    Ok(())
}

/// A tar path made relative (`./`, `/` dropped); `None` if `..` climbs out.
fn clean_archive_path(raw: &[u8]) -> Option<PathBuf> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            p => out.push(p),
        }
    }
    Some(out.iter().map(|p| std::ffi::OsStr::from_bytes(p)).collect())
}

/// `--chown=USER[:GROUP]` → ids, names looked up in the image's `/etc/passwd` and
/// `/etc/group` (a lone user also names the group, as in Docker).
pub fn chown_ids(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => {
            if g.contains(':') {
                return Err(format!("invalid chown string format: {spec}"));
            }
            (u, g)
        }
        None => (spec, spec),
    };
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(passwd, user, 2)
            .ok_or_else(|| format!("can't find uid for user {user}: no such user: {user}"))?,
    };
    let gid = match grp.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(group, grp, 2)
            .ok_or_else(|| format!("can't find gid for group {grp}: no such group: {grp}"))?,
    };
    Ok((uid, gid))
}

/// The numeric field `field` of the line of `/etc/passwd`-like `text` named `name`.
fn lookup(text: &str, name: &str, field: usize) -> Option<u32> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(field)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_lookups() {
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";
        assert_eq!(chown_ids("app", passwd, group), Ok((1000, 1000)));
        assert_eq!(chown_ids("app:staff", passwd, group), Ok((1000, 50)));
        assert_eq!(chown_ids("5:6", passwd, group), Ok((5, 6)));
        assert!(chown_ids("nobody", passwd, group).is_err());
        assert!(chown_ids("a:b:c", passwd, group).is_err());
    }

    #[test]
    fn archive_paths_stay_inside() {
        assert_eq!(clean_archive_path(b"./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(clean_archive_path(b"/a/../b").unwrap(), PathBuf::from("b"));
        assert!(clean_archive_path(b"../x").is_none());
    }
}
