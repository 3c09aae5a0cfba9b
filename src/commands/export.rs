//! `ferry export [-o FILE] CONTAINER`: a container's file system as one tar (what
//! `docker export` writes; `ferry import` or `docker import` make it an image again). The
//! layers are merged in user space (`container_fs`), so a stopped container exports without
//! mounting anything, and a running one without what is mounted into it (`/proc`, volumes).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ferry_run::container::Status;
use rustix::fs::{FileType, Stat};

use super::store;
use crate::cli::GlobalArgs;
use crate::container_fs::{self, View};

/// Arguments of `ferry export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The container (name or ID).
    pub container: String,
}

/// Hard links already written: (device, inode) → the first path.
pub type Links = HashMap<(u64, u64), PathBuf>;

/// Runs `ferry export`.
pub fn run(args: ExportArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (c, meta) = store::containers(global).find(&args.container)?;
    let state = c.current_state();
    let running = state.status == Status::Running && state.alive();
    let view = View::new(&super::cp::layers(global, &c, &meta, running)?)
        .with_context(|| format!("cannot open the file system of container {}", c.short_id()))?;
    let what = format!("container {}", args.container);
    let export =
        |w: &mut dyn Write| write(&view, w).with_context(|| format!("failed to export {what}"));
    match args.output.as_ref().filter(|o| o.as_os_str() != "-") {
        Some(path) => crate::output::to_file(path, |w| export(w))?,
        None => crate::output::to_stdout(|w| export(w))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write(view: &View, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut b = tar::Builder::new(out);
    let mut links = Links::new();
    let mut path = Vec::new();
    container_fs::walk(&view.root()?, &mut path, &mut |p, parent, st| {
        let rel: PathBuf = p.iter().collect();
        let name = p.last().expect("walk gives names").as_bytes();
        append(&mut b, parent, name, st, &rel, &mut links).map_err(std::io::Error::other)
    })?;
    let out = b.into_inner()?;
    out.flush()?;
    Ok(())
}

fn header(st: &Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    // With the file type bits, as Go's archive/tar (Docker) writes the mode.
    h.set_mode(st.st_mode & 0o177_777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Appends a directory entry.
pub fn append_dir<W: Write>(b: &mut tar::Builder<W>, st: &Stat, path: &Path) -> anyhow::Result<()> {
    let mut h = header(st, tar::EntryType::Directory);
    b.append_data(&mut h, path, std::io::empty())?;
    Ok(())
}

/// Appends the entry `name` of the layer directory `parent` as `path`.
pub fn append<W: Write>(
    b: &mut tar::Builder<W>,
    parent: BorrowedFd<'_>,
    name: &[u8],
    st: &Stat,
    path: &Path,
    links: &mut Links,
) -> anyhow::Result<()> {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => append_dir(b, st, path)?,
        FileType::RegularFile => {
            if st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = links.get(&key) {
                    let mut h = header(st, tar::EntryType::Link);
                    b.append_link(&mut h, path, first)?;
                    return Ok(());
                }
                links.insert(key, path.to_path_buf());
            }
            let file = container_fs::open_file_at(parent, name)?;
            let mut h = header(st, tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            // Exactly the size announced, even if the file changes while it is read.
            b.append_data(&mut h, path, std::io::Read::take(file, st.st_size as u64))?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(parent.as_fd(), name, Vec::new())?;
            let target = target.as_bytes();
            let mut h = header(st, tar::EntryType::Symlink);
            if target.len() <= 100 {
                // As the link says, byte for byte (`append_link` would rewrite `/` as `//`).
                h.set_link_name_literal(target)?;
                b.append_data(&mut h, path, std::io::empty())?;
            } else {
                b.append_link(&mut h, path, std::ffi::OsStr::from_bytes(target))?;
            }
        }
        kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
            let entry = match kind {
                FileType::CharacterDevice => tar::EntryType::Char,
                FileType::BlockDevice => tar::EntryType::Block,
                _ => tar::EntryType::Fifo,
            };
            let mut h = header(st, entry);
            h.set_device_major(rustix::fs::major(st.st_rdev))?;
            h.set_device_minor(rustix::fs::minor(st.st_rdev))?;
            b.append_data(&mut h, path, std::io::empty())?;
        }
        // Sockets belong to a running process, not to a file system image.
        _ => {}
    }
    Ok(())
}
