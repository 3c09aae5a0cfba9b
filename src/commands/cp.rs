//! `ferry cp CONTAINER:SRC DEST` and `ferry cp SRC CONTAINER:DEST`: files between a container
//! and the host, with `docker cp`'s path rules (a directory destination receives the source
//! by name, `SRC/.` copies a directory's content, `-` is a tar stream).
//!
//! Inside the container every path is resolved by `container_fs`: symlinks the container
//! made are followed inside its root, never on the host, and files are created with `*at`
//! calls that refuse symlinks, so a link to `/` or `../../..` in the container cannot make
//! ferry write outside it.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ferry_run::container::{Container, Meta, Status};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid};

use super::store;
use crate::cli::GlobalArgs;
use crate::container_fs::{self, Node, View};

/// Arguments of `ferry cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol links in SRC_PATH.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// `CONTAINER:SRC_PATH`, or a host path (`-`: a tar on standard input).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// `CONTAINER:DEST_PATH`, or a host path (`-`: a tar on standard output).
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `CONTAINER:PATH`, as Docker splits it (a path starting with `/` or `.` is the host's).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

/// Runs `ferry cp`.
pub fn run(args: CpArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match (container_path(&args.src), container_path(&args.dest)) {
        (Some((c, p)), None) => copy_out(&args, global, c, p)?,
        (None, Some((c, p))) => copy_in(&args, global, c, p)?,
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => {
            bail!("must specify at least one container source (CONTAINER:PATH on one side)")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The container's file system as `cp` sees it, and the layer it writes into (the first):
/// a running container through its own root (`/proc/PID/root`, volumes included), a stopped
/// one from its directories.
fn view(global: &GlobalArgs, c: &Container, meta: &Meta) -> anyhow::Result<View> {
    let state = c.current_state();
    let running = state.status == Status::Running && state.alive();
    // Only ferry's own runtime makes the recorded pid the container's: an external runtime's
    // pid is the runtime itself, whose root is the host's.
    let layers = if running && meta.runtime.is_none() {
        vec![PathBuf::from(format!("/proc/{}/root", state.pid))]
    } else {
        layers(global, c, meta, running)?
    };
    View::new(&layers)
        .with_context(|| format!("cannot open the file system of container {}", c.short_id()))
}

/// A container's own layers, top first: the copy rootfs, or the overlay upper directory over
/// the image's snapshots (for a running container of an external runtime: its mounted rootfs).
pub fn layers(
    global: &GlobalArgs,
    c: &Container,
    meta: &Meta,
    running: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    if meta.rootfs_copy || (running && meta.runtime.is_some()) {
        return Ok(vec![c.dir.join("rootfs")]);
    }
    let store = crate::store::open(global)?;
    let img = store
        .image(&meta.image_id)
        .with_context(|| format!("cannot find the image of container {}", c.short_id()))?;
    let mut layers = vec![c.dir.join("upper")];
    layers.extend(img.layers.iter().rev().cloned());
    Ok(layers)
}

fn copy_out(args: &CpArgs, global: &GlobalArgs, container: &str, path: &str) -> anyhow::Result<()> {
    let (c, meta) = store::containers(global).find(container)?;
    let view = view(global, &c, &meta)?;
    let missing = || anyhow::anyhow!("no such container:path: {container}:{path}");
    let found = view
        .resolve(path.as_bytes(), args.follow_link)
        .map_err(|_| missing())?;
    let node = found.node.ok_or_else(missing)?;
    let src_name = found
        .path
        .last()
        .cloned()
        .unwrap_or_else(|| OsString::from("."));
    let contents_only = path.ends_with("/.") || path == ".";
    if args.dest == "-" {
        let out = std::io::stdout().lock();
        if std::io::IsTerminal::is_terminal(&out) {
            bail!("refusing to write a tar archive to a terminal; redirect standard output");
        }
        let mut b = tar::Builder::new(out);
        let name = if contents_only {
            PathBuf::new()
        } else {
            PathBuf::from(&src_name)
        };
        append_node(&mut b, node, &name)?;
        b.finish()?;
        return Ok(());
    }
    let dest = PathBuf::from(&args.dest);
    let is_dir = matches!(node, Node::Dir(_));
    let target = match std::fs::metadata(&dest) {
        Ok(m) if m.is_dir() && is_dir && contents_only => dest.clone(),
        Ok(m) if m.is_dir() => dest.join(&src_name),
        Ok(_) if is_dir => bail!("cannot copy a directory to a file: {}", dest.display()),
        Ok(_) => dest.clone(),
        Err(_) if args.dest.ends_with('/') => bail!("no such directory: {}", dest.display()),
        Err(_) => {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !parent.is_dir() {
                bail!("no such directory: {}", parent.display());
            }
            dest.clone()
        }
    };
    to_host(node, &target, args.archive)
        .with_context(|| format!("cannot copy {container}:{path} to {}", target.display()))
}

/// Writes what is at a container node to `target` on the host.
fn to_host(node: Node, target: &Path, archive: bool) -> anyhow::Result<()> {
    match node {
        Node::Dir(d) => {
            if !target.is_dir() {
                std::fs::create_dir(target)
                    .with_context(|| format!("cannot create {}", target.display()))?;
            }
            for name in d.names()? {
                if let Some(child) = d.lookup(name.as_bytes())? {
                    to_host(child, &target.join(&name), archive)?;
                }
            }
            set_host_meta(target, &rustix::fs::fstat(d.top())?, archive)
        }
        Node::Other { parent, name, stat } => {
            match target.symlink_metadata() {
                Ok(m) if m.is_dir() => {
                    bail!(
                        "cannot overwrite directory {} with a non-directory",
                        target.display()
                    )
                }
                Ok(_) => std::fs::remove_file(target)?,
                Err(_) => {}
            }
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => {
                    let mut src = container_fs::open_file_at(parent.as_fd(), name.as_bytes())?;
                    let mut out = std::fs::File::create(target)?;
                    std::io::copy(&mut src, &mut out)?;
                }
                FileType::Symlink => {
                    let link = rustix::fs::readlinkat(parent.as_fd(), name.as_bytes(), Vec::new())?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(link.as_bytes()), target)?;
                    if archive {
                        std::os::unix::fs::lchown(target, Some(stat.st_uid), Some(stat.st_gid))?;
                    }
                    return Ok(());
                }
                // Devices, fifos and sockets: Docker copies them only in archives.
                _ => return Ok(()),
            }
            set_host_meta(target, &stat, archive)
        }
    }
}

fn set_host_meta(target: &Path, st: &rustix::fs::Stat, archive: bool) -> anyhow::Result<()> {
    if archive {
        std::os::unix::fs::lchown(target, Some(st.st_uid), Some(st.st_gid))?;
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(st.st_mode & 0o7777))?;
    Ok(())
}

/// Appends a container node to a tar as `name` (its content only when `name` is empty).
fn append_node<W: Write>(b: &mut tar::Builder<W>, node: Node, name: &Path) -> anyhow::Result<()> {
    let root = match node {
        Node::Dir(d) => d,
        Node::Other {
            parent,
            name: n,
            stat,
        } => {
            let mut links = Default::default();
            return super::export::append(b, parent.as_fd(), n.as_bytes(), &stat, name, &mut links);
        }
    };
    let mut links = Default::default();
    if !name.as_os_str().is_empty() {
        let st = rustix::fs::fstat(root.top())?;
        super::export::append_dir(b, &st, name)?;
    }
    let mut path = Vec::new();
    container_fs::walk(&root, &mut path, &mut |p, parent, st| {
        let rel: PathBuf = name.join(p.iter().collect::<PathBuf>());
        let last = p.last().expect("walk gives names").as_bytes();
        super::export::append(b, parent, last, st, &rel, &mut links).map_err(std::io::Error::other)
    })?;
    Ok(())
}

fn copy_in(args: &CpArgs, global: &GlobalArgs, container: &str, path: &str) -> anyhow::Result<()> {
    let (c, meta) = store::containers(global).find(container)?;
    let view = view(global, &c, &meta)?;
    let top = view.root()?;
    let found = view
        .resolve(path.as_bytes(), true)
        .with_context(|| format!("no such directory in container {container}: {path}"))?;
    let src = PathBuf::from(&args.src);
    if args.src == "-" {
        // A tar on standard input, unpacked into an existing directory.
        if !matches!(found.node, Some(Node::Dir(_))) {
            bail!("destination {container}:{path} must be a directory");
        }
        let dir = container_fs::open_writable(&view, top.top(), &found.path)?;
        let mut ar = tar::Archive::new(std::io::stdin().lock());
        for e in ar.entries()? {
            let mut e = e?;
            extract(dir.as_fd(), &mut e, args.archive)
                .with_context(|| format!("cannot copy the archive into {container}:{path}"))?;
        }
        return Ok(());
    }
    let meta_src = if args.follow_link {
        std::fs::metadata(&src)
    } else {
        std::fs::symlink_metadata(&src)
    }
    .with_context(|| format!("cannot read {}", src.display()))?;
    let contents_only = args.src.ends_with("/.") && meta_src.is_dir();
    let src_name = src
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| OsString::from("."));
    let (parent, name): (Vec<OsString>, Option<OsString>) = match &found.node {
        Some(Node::Dir(_)) if contents_only => (found.path.clone(), None),
        Some(Node::Dir(_)) => (found.path.clone(), Some(src_name)),
        Some(_) if meta_src.is_dir() => {
            bail!("cannot copy a directory to a file: {container}:{path}")
        }
        Some(_) | None => {
            if found.node.is_none() && path.ends_with('/') {
                bail!("no such directory in container {container}: {path}");
            }
            let mut p = found.path.clone();
            let last = p.pop();
            (p, last)
        }
    };
    let dir = container_fs::open_writable(&view, top.top(), &parent)
        .with_context(|| format!("cannot write into {container}:{path}"))?;
    let result = match name {
        None => copy_dir_content(&src, dir.as_fd(), args),
        Some(n) => copy_entry(&src, dir.as_fd(), n.as_bytes(), args),
    };
    result.with_context(|| format!("cannot copy {} to {container}:{path}", src.display()))
}

/// Copies the host path `src` as `name` into the container directory `dir`.
fn copy_entry(src: &Path, dir: BorrowedFd<'_>, name: &[u8], args: &CpArgs) -> anyhow::Result<()> {
    let m = if args.follow_link {
        std::fs::metadata(src)?
    } else {
        std::fs::symlink_metadata(src)?
    };
    let owner = args.archive.then_some((m.uid(), m.gid()));
    let mode = m.permissions().mode() & 0o7777;
    if m.is_dir() {
        let child = make_dir(dir, name, mode)?;
        copy_dir_content(src, child.as_fd(), args)?;
        set_meta(child.as_fd(), mode, owner)?;
    } else if m.file_type().is_symlink() {
        clear(dir, name)?;
        let target = std::fs::read_link(src)?;
        rustix::fs::symlinkat(&target, dir, name)?;
        link_owner(dir, name, owner)?;
    } else if m.is_file() {
        let mut from = std::fs::File::open(src)?;
        let mut to = create_file(dir, name, mode)?;
        std::io::copy(&mut from, &mut to)?;
        set_meta(to.as_fd(), mode, owner)?;
    }
    Ok(())
}

fn copy_dir_content(src: &Path, dir: BorrowedFd<'_>, args: &CpArgs) -> anyhow::Result<()> {
    let mut names: Vec<OsString> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        copy_entry(&src.join(&n), dir, n.as_bytes(), args)?;
    }
    Ok(())
}

/// Unpacks one tar entry below `dir`, component by component, never through a symlink.
fn extract<R: std::io::Read>(
    dir: BorrowedFd<'_>,
    e: &mut tar::Entry<'_, R>,
    archive: bool,
) -> anyhow::Result<()> {
    let path = e.path()?.into_owned();
    let parts = container_fs::components(path.as_os_str().as_bytes());
    if parts.iter().any(|p| p == "..") {
        bail!("archive entry {} leaves the destination", path.display());
    }
    let Some((name, parents)) = parts.split_last() else {
        return Ok(());
    };
    let mut cur: OwnedFd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for p in parents {
        cur = make_dir(cur.as_fd(), p.as_bytes(), 0o755)?;
    }
    let h = e.header();
    let mode = h.mode()? & 0o7777;
    let owner = if archive {
        Some((h.uid()? as u32, h.gid()? as u32))
    } else {
        None
    };
    let name = name.as_bytes();
    match h.entry_type() {
        tar::EntryType::Directory => {
            let d = make_dir(cur.as_fd(), name, mode)?;
            set_meta(d.as_fd(), mode, owner)?;
        }
        tar::EntryType::Symlink => {
            clear(cur.as_fd(), name)?;
            let target = h.link_name()?.unwrap_or_default().into_owned();
            rustix::fs::symlinkat(&target, cur.as_fd(), name)?;
            link_owner(cur.as_fd(), name, owner)?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut to = create_file(cur.as_fd(), name, mode)?;
            std::io::copy(e, &mut to)?;
            set_meta(to.as_fd(), mode, owner)?;
        }
        // Hard links, devices, fifos: not from a host's tar into a container (Docker refuses
        // device nodes too without privileges); skipped rather than half-made.
        _ => {}
    }
    Ok(())
}

/// Removes whatever non-directory is at `name` (a file to replace, an overlay whiteout).
fn clear(dir: BorrowedFd<'_>, name: &[u8]) -> anyhow::Result<()> {
    match container_fs::kind_at(dir, name)? {
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            bail!(
                "cannot overwrite directory {} with a non-directory",
                String::from_utf8_lossy(name)
            )
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())?,
        None => {}
    }
    Ok(())
}

/// A new empty file at `name` in `dir` (replacing a file, never following a symlink).
fn create_file(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> anyhow::Result<std::fs::File> {
    clear(dir, name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    Ok(std::fs::File::from(fd))
}

/// The directory `name` in `dir`, made if absent (an overlay whiteout there is replaced).
fn make_dir(dir: BorrowedFd<'_>, name: &[u8], mode: u32) -> anyhow::Result<OwnedFd> {
    match container_fs::kind_at(dir, name)? {
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Some(st) if container_fs::is_whiteout(&st) => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?;
        }
        Some(_) => bail!(
            "cannot overwrite non-directory {} with a directory",
            String::from_utf8_lossy(name)
        ),
        None => rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?,
    }
    Ok(container_fs::open_child_dir(dir, name)?)
}

/// Mode and, in archive mode, owner, set through the handle ferry created: never by name,
/// which a running container could swap for a symlink in between.
fn set_meta(fd: BorrowedFd<'_>, mode: u32, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((u, g)) = owner {
        rustix::fs::fchown(fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// A symlink's owner in archive mode (the link itself, never its target).
fn link_owner(dir: BorrowedFd<'_>, name: &[u8], owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((u, g)) = owner {
        rustix::fs::chownat(
            dir,
            name,
            Some(Uid::from_raw(u)),
            Some(Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_split_as_docker_splits_them() {
        assert_eq!(
            container_path("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path("file.txt"), None);
        assert_eq!(container_path("-"), None);
    }
}
