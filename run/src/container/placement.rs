//! Where a build step's overlay upper directory is made.
//!
//! On ext4 without a journal the kernel does not hand out an inode within a minute of its
//! deletion (`recently_deleted()` in fs/ext4/ialloc.c; five minutes more while its inode
//! table block is unwritten): a file created in a block group full of just-freed inodes scans
//! past every one of them. A new directory goes where the allocator prefers, often the group
//! something just emptied (a prune, another builder's removed containers), and the files a
//! step creates or copies up land in its group: a recursive chmod over 3,000 files then takes
//! 1–2 s instead of 0.2 s. So before a step runs, creating a few files in a new
//! subdirectory of its work directory is timed; where that is not plainly cheap, the same is
//! timed under other directories (in other block groups), and where one is clearly faster the
//! upper and work directories are made there and moved into the container: a directory keeps
//! its group when it is renamed, and files go to their directory's group.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Files created to time a directory's block group.
const PROBES: usize = 16;
/// Creations this fast on average need no comparison: 16 took 160–260 µs here where the
/// step then ran at its usual speed.
const CHEAP: Duration = Duration::from_micros(12);

/// How long creating files in `dir` (an empty directory) takes; `None` when they could not
/// be made. Leaves `dir` empty.
///
/// The files are made in a new subdirectory, as overlayfs makes the step's: its work
/// directory (`work/work`, where every copy-up starts) and each directory it copies up are
/// new directories, which ext4 may place in another block group than their parent when the
/// parent's looks full (its Orlov allocator), and their files follow them. Files made in
/// `dir` itself timed cheap in builds whose recursive chmod then took 1.0 s instead of
/// 0.2 s.
pub(crate) fn creation_time(dir: &Path) -> Option<Duration> {
    let sub = dir.join(".probe");
    std::fs::create_dir(&sub).ok()?;
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
    (made == PROBES).then_some(took)
}

/// Makes `upper` and `work` (empty directories of a step container) anew under one of
/// `spare` (directories on the same file system) when creating files is clearly cheaper
/// there; `time` times a directory ([`creation_time`]). Returns the directory chosen, `None`
/// when they stayed.
///
/// Where the container's own directory is not plainly cheap, every spare directory is
/// timed and the fastest taken if it is at least a quarter faster. A fixed limit missed
/// slow groups: 16 files in 288 µs (the usual 160–260 µs) came before a chmod of 0.86 s
/// instead of 0.2 s, and such a group had timed as low as 212 µs.
pub(crate) fn place(
    upper: &Path,
    work: &Path,
    spare: &[PathBuf],
    time: &dyn Fn(&Path) -> Option<Duration>,
) -> Option<PathBuf> {
    let own = time(work).unwrap_or(Duration::MAX);
    if own <= CHEAP * PROBES as u32 {
        return None;
    }
    let tag = upper
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut best: Option<(Duration, &PathBuf, PathBuf, PathBuf)> = None;
    for parent in spare {
        let new_upper = parent.join(format!(".step-upper-{tag}"));
        let new_work = parent.join(format!(".step-work-{tag}"));
        let made =
            std::fs::create_dir(&new_upper).is_ok() && std::fs::create_dir(&new_work).is_ok();
        let took = if made { time(&new_work) } else { None };
        match took {
            Some(t) if best.as_ref().is_none_or(|b| t < b.0) => {
                if let Some((_, _, u, w)) = best.replace((t, parent, new_upper, new_work)) {
                    discard(&u, &w);
                }
            }
            _ => discard(&new_upper, &new_work),
        }
    }
    let (t, parent, new_upper, new_work) = best?;
    if t.saturating_mul(4) < own.saturating_mul(3)
        && swap(&new_upper, upper)
        && swap(&new_work, work)
    {
        return Some(parent.clone());
    }
    discard(&new_upper, &new_work);
    None
}

/// Removes a candidate pair of empty directories (what is not there is fine).
fn discard(upper: &Path, work: &Path) {
    let _ = std::fs::remove_dir(upper);
    let _ = std::fs::remove_dir(work);
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
    fn a_slow_place_is_left_for_the_fastest_spare_directory() {
        let t = tempfile::tempdir().unwrap();
        let container = t.path().join("containers/abc");
        let (upper, work) = (container.join("upper"), container.join("work"));
        let spares: Vec<PathBuf> = ["a", "b", "c"].iter().map(|s| t.path().join(s)).collect();
        for d in [&upper, &work, &spares[0], &spares[1], &spares[2]] {
            std::fs::create_dir_all(d).unwrap();
        }
        let us = Duration::from_micros;
        let before = std::fs::metadata(&upper).unwrap().ino();
        // Cheap in the container: nothing else is timed, nothing moves.
        let timed = std::cell::RefCell::new(Vec::new());
        let fast = |d: &Path| {
            timed.borrow_mut().push(d.to_path_buf());
            Some(us(170))
        };
        assert_eq!(place(&upper, &work, &spares, &fast), None);
        assert_eq!(*timed.borrow(), vec![work.clone()]);
        assert_eq!(std::fs::metadata(&upper).unwrap().ino(), before);
        // Slow in the container: the fastest spare wins, not the first faster one.
        let by_place = |d: &Path| {
            Some(if d.starts_with(&spares[0]) {
                us(200)
            } else if d.starts_with(&spares[1]) {
                us(150)
            } else if d.starts_with(&spares[2]) {
                us(180)
            } else {
                us(300)
            })
        };
        assert_eq!(
            place(&upper, &work, &spares, &by_place),
            Some(spares[1].clone())
        );
        assert_ne!(std::fs::metadata(&upper).unwrap().ino(), before);
        for d in [&upper, &work] {
            assert!(d.is_dir() && std::fs::read_dir(d).unwrap().next().is_none());
        }
        // Nothing left behind in any spare directory.
        for s in &spares {
            assert_eq!(std::fs::read_dir(s).unwrap().count(), 0, "{}", s.display());
        }
        // Not clearly faster anywhere (a quarter at least): they stay.
        let now = std::fs::metadata(&upper).unwrap().ino();
        let close = |d: &Path| Some(if d == work { us(300) } else { us(240) });
        assert_eq!(place(&upper, &work, &spares, &close), None);
        assert_eq!(std::fs::metadata(&upper).unwrap().ino(), now);
        for s in &spares {
            assert_eq!(std::fs::read_dir(s).unwrap().count(), 0, "{}", s.display());
        }
        // The probe times real creations and leaves the directory empty.
        assert!(creation_time(&work).is_some());
        assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0);
        assert!(creation_time(&t.path().join("missing")).is_none());
    }
}
