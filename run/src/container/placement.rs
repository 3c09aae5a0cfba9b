//! Where a build step's overlay upper directory is made.
//!
//! On ext4 without a journal the kernel does not hand out an inode within a minute of its
//! deletion (`recently_deleted()` in fs/ext4/ialloc.c; five minutes more while its inode
//! table block is unwritten): a file created in a block group full of just-freed inodes scans
//! past every one of them. A new directory goes where the allocator prefers, often the group
//! something just emptied (a prune, another builder's removed containers), and the files a
//! step creates or copies up land in its group: a recursive chmod over 3,000 files then takes
//! 1–2 s instead of 0.2 s. So before a step runs, creating a few files in a new
//! subdirectory of its work directory is timed; where that is slow, the upper and work
//! directories are made under another directory (in another block group) and moved into the
//! container: a directory keeps its group when it is renamed, and files go to their
//! directory's group.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files created to time a directory's block group.
const PROBES: usize = 16;
/// A creation this slow on average means a group full of recently freed inodes: one took
/// 10–13 µs here (16 in 160–210 µs), 35–45 µs and more in such a group, where the step's own
/// creations, scanning further as they go, then ran 4–7 times slower. Moving when it was
/// not needed costs a few hundred microseconds.
const SLOW: Duration = Duration::from_micros(25);

/// Whether creating files in `dir` (an empty directory) is cheap; leaves it empty.
///
/// The files are made in a new subdirectory, as overlayfs makes the step's: its work
/// directory (`work/work`, where every copy-up starts) and each directory it copies up are
/// new directories, which ext4 may place in another block group than their parent when the
/// parent's looks full (its Orlov allocator), and their files follow them. Files made in
/// `dir` itself timed cheap in builds whose recursive chmod then took 1.0 s instead of
/// 0.2 s.
pub(crate) fn creation_is_cheap(dir: &Path) -> bool {
    let sub = dir.join(".probe");
    if std::fs::create_dir(&sub).is_err() {
        return false;
    }
    let started = Instant::now();
    let mut made = 0;
    for i in 0..PROBES {
        if std::fs::File::create(sub.join(i.to_string())).is_ok() {
            made += 1;
        }
    }
    let took = started.elapsed();
    tracing::debug!(dir = %dir.display(), ?took, "timed {PROBES} file creations");
    for i in 0..made {
        let _ = std::fs::remove_file(sub.join(i.to_string()));
    }
    let _ = std::fs::remove_dir(&sub);
    made == PROBES && took < SLOW * PROBES as u32
}

/// Makes `upper` and `work` (empty directories of a step container) anew under the first of
/// `spare` (directories on the same file system) where creating files is cheap, when it is
/// not where they are; `cheap` times a directory ([`creation_is_cheap`]). Returns the
/// directory chosen, `None` when they stayed.
pub(crate) fn place(
    upper: &Path,
    work: &Path,
    spare: &[PathBuf],
    cheap: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if cheap(work) {
        return None;
    }
    let tag = upper
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for parent in spare {
        let new_upper = parent.join(format!(".step-upper-{tag}"));
        let new_work = parent.join(format!(".step-work-{tag}"));
        let made =
            std::fs::create_dir(&new_upper).is_ok() && std::fs::create_dir(&new_work).is_ok();
        if made && cheap(&new_work) && swap(&new_upper, upper) && swap(&new_work, work) {
            return Some(parent.clone());
        }
        let _ = std::fs::remove_dir(&new_upper);
        let _ = std::fs::remove_dir(&new_work);
    }
    None
}

/// Replaces the empty directory `old` by `new`.
fn swap(new: &Path, old: &Path) -> bool {
    std::fs::remove_dir(old).is_ok() && std::fs::rename(new, old).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_slow_place_is_left_for_the_first_cheap_spare_directory() {
        let t = tempfile::tempdir().unwrap();
        let container = t.path().join("containers/abc");
        let (upper, work) = (container.join("upper"), container.join("work"));
        let spares: Vec<PathBuf> = ["a", "b"].iter().map(|s| t.path().join(s)).collect();
        for d in [&upper, &work, &spares[0], &spares[1]] {
            std::fs::create_dir_all(d).unwrap();
        }
        let before = std::fs::metadata(&upper).unwrap().ino();
        // Cheap everywhere: nothing moves.
        assert_eq!(place(&upper, &work, &spares, &|_| true), None);
        assert_eq!(std::fs::metadata(&upper).unwrap().ino(), before);
        // Slow in the container and in the first spare directory: the second one's.
        let cheap = |d: &Path| d.starts_with(&spares[1]);
        assert_eq!(
            place(&upper, &work, &spares, &cheap),
            Some(spares[1].clone())
        );
        assert_ne!(std::fs::metadata(&upper).unwrap().ino(), before);
        for d in [&upper, &work] {
            assert!(d.is_dir() && std::fs::read_dir(d).unwrap().next().is_none());
        }
        // Nothing left behind in either spare directory.
        for s in &spares {
            assert_eq!(std::fs::read_dir(s).unwrap().count(), 0, "{}", s.display());
        }
        // Slow everywhere: they stay.
        let now = std::fs::metadata(&upper).unwrap().ino();
        assert_eq!(place(&upper, &work, &spares, &|_| false), None);
        assert_eq!(std::fs::metadata(&upper).unwrap().ino(), now);
        // The probe leaves the directory empty.
        assert!(creation_is_cheap(&work) || std::fs::read_dir(&work).unwrap().next().is_none());
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
    }
}
