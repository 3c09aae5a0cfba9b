//! Resource limits (`--memory`, `--cpus`, `--pids-limit`) through cgroups v1 or v2.
//!
//! Each controller is used where the host has it: its own v1 hierarchy (CentOS 7, and this
//! project's hybrid hosts), or the unified v2 hierarchy when it is enabled there. A container
//! gets `<hierarchy>/ferry/<id>` in each hierarchy it needs; its first process joins them
//! before it builds its rootfs. Without limits no cgroup is made: the container's PID namespace
//! already lets ferry find and kill all of its processes, and creating one costs start-up time.

mod v1;
mod v2;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::RunError;

/// Where one controller lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// A v1 hierarchy mounted here, carrying this controller.
    V1(PathBuf),
    /// The v2 hierarchy mounted here, with the controller available.
    V2(PathBuf),
}

/// The controllers ferry uses and where each is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// `memory`.
    pub memory: Option<Hierarchy>,
    /// `cpu`.
    pub cpu: Option<Hierarchy>,
    /// `pids`.
    pub pids: Option<Hierarchy>,
    /// v1 hierarchies next to a v2 one that has controllers: crun refuses such hosts.
    pub hybrid: bool,
}

impl Layout {
    /// Reads the host's layout from `/proc/self/mountinfo`.
    pub fn detect() -> Layout {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Layout::from_mountinfo(&text, |root| {
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default()
        })
    }

    /// Parses mountinfo; `controllers` reads a v2 root's `cgroup.controllers`.
    pub fn from_mountinfo(text: &str, controllers: impl Fn(&Path) -> String) -> Layout {
        let mut v1: Vec<(PathBuf, Vec<String>)> = Vec::new();
        let mut v2: Option<PathBuf> = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mountpoint = pre.split(' ').nth(4).map(unescape);
            let mut post = post.split(' ');
            let (fstype, _source, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
            match (fstype, mountpoint) {
                (Some("cgroup"), Some(mp)) => {
                    v1.push((mp, opts.split(',').map(str::to_string).collect()))
                }
                (Some("cgroup2"), Some(mp)) if v2.is_none() => v2 = Some(mp),
                _ => {}
            }
        }
        let v2_controllers: Vec<String> = v2
            .as_deref()
            .map(|r| {
                controllers(r)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let find = |name: &str| {
            v1.iter()
                .find(|(_, o)| o.iter().any(|x| x == name))
                .map(|(mp, _)| Hierarchy::V1(mp.clone()))
                .or_else(|| {
                    v2_controllers
                        .iter()
                        .any(|c| c == name)
                        .then(|| Hierarchy::V2(v2.clone().unwrap_or_default()))
                })
        };
        Layout {
            memory: find("memory"),
            cpu: find("cpu"),
            pids: find("pids"),
            hybrid: !v1.is_empty() && !v2_controllers.is_empty(),
        }
    }
}

fn unescape(s: &str) -> PathBuf {
    PathBuf::from(s.replace("\\040", " "))
}

/// A container's cgroups, created with its limits.
#[derive(Debug, Default, Clone)]
pub struct Cgroup {
    /// Each directory made (one per hierarchy used).
    pub dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// The `cgroup.procs` files the container's first process writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Removes the directories (the processes must be gone).
    pub fn remove(&self) {
        for d in &self.dirs {
            // The kernel may need a moment after the last task exits before rmdir works.
            for _ in 0..50 {
                match std::fs::remove_dir(d) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(2))
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Whether `r` limits anything ferry enforces with cgroups (memory, cpu, pids); device rules
/// alone are for other runtimes, ferry's own mounts everything `nodev` instead.
pub fn limits(r: &LinuxResources) -> bool {
    r.memory().is_some() || r.cpu().is_some() || r.pids().is_some()
}

/// The relative cgroup path of a container (`/ferry/<id>`), as `cgroupsPath` in config.json.
pub fn path_for(id: &str) -> String {
    format!("/ferry/{id}")
}

/// Creates the container's cgroups under `layout` and writes `resources` into them.
pub fn create(layout: &Layout, id: &str, resources: &LinuxResources) -> Result<Cgroup, RunError> {
    let mut cg = Cgroup::default();
    let result = (|| {
        let mut need: Vec<(&Hierarchy, &str)> = Vec::new();
        let missing = |what: &str| RunError::Cgroup {
            what: format!("the {what} controller is not available on this host"),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        if resources.memory().is_some() {
            need.push((
                layout.memory.as_ref().ok_or_else(|| missing("memory"))?,
                "memory",
            ));
        }
        if resources.cpu().is_some() {
            need.push((layout.cpu.as_ref().ok_or_else(|| missing("cpu"))?, "cpu"));
        }
        if resources.pids().is_some() {
            need.push((layout.pids.as_ref().ok_or_else(|| missing("pids"))?, "pids"));
        }
        for (h, controller) in need {
            let dir = match h {
                Hierarchy::V1(root) => v1::make(root, id)?,
                Hierarchy::V2(root) => v2::make(root, id, controller)?,
            };
            if !cg.dirs.contains(&dir) {
                cg.dirs.push(dir.clone());
            }
            match h {
                Hierarchy::V1(_) => v1::apply(&dir, controller, resources)?,
                Hierarchy::V2(_) => v2::apply(&dir, controller, resources)?,
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(cg),
        Err(e) => {
            cg.remove();
            Err(e)
        }
    }
}

/// `pids.max` for a limit: Docker's `--pids-limit 0` or less means no limit.
fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), RunError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|source| RunError::Cgroup {
        what: format!("write {value} to {}", p.display()),
        source,
    })
}

fn mkdir(p: &Path) -> Result<(), RunError> {
    match std::fs::create_dir(p) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(RunError::Cgroup {
            what: format!("create {}", p.display()),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 24 0:26 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
31 24 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
32 24 0:28 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids
33 24 0:29 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw
";
    const UNIFIED: &str =
        "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn hybrid_hosts_use_v1_controllers() {
        let l = Layout::from_mountinfo(HYBRID, |_| "hugetlb".into());
        assert!(l.hybrid);
        assert!(!Layout::from_mountinfo(HYBRID, |_| String::new()).hybrid);
        assert!(!Layout::from_mountinfo(UNIFIED, |_| "cpu memory".into()).hybrid);
        assert_eq!(
            l.memory,
            Some(Hierarchy::V1("/sys/fs/cgroup/memory".into()))
        );
        assert_eq!(l.pids, Some(Hierarchy::V1("/sys/fs/cgroup/pids".into())));
    }

    #[test]
    fn unified_hosts_use_v2_where_enabled() {
        let l = Layout::from_mountinfo(UNIFIED, |_| "cpu memory".into());
        assert_eq!(l.memory, Some(Hierarchy::V2("/sys/fs/cgroup".into())));
        assert_eq!(l.cpu, Some(Hierarchy::V2("/sys/fs/cgroup".into())));
        assert_eq!(l.pids, None);
    }

    fn resources() -> LinuxResources {
        use oci_spec::runtime::*;
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .swap(128i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn v1_limits_are_written_per_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let h = |n: &str| {
            let p = root.path().join(n);
            std::fs::create_dir(&p).unwrap();
            Some(Hierarchy::V1(p))
        };
        let layout = Layout {
            memory: h("memory"),
            cpu: h("cpu"),
            pids: h("pids"),
            ..Layout::default()
        };
        let cg = create(&layout, "abc", &resources()).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(
            read("memory/ferry/abc/memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read("cpu/ferry/abc/cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu/ferry/abc/cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids/ferry/abc/pids.max"), "20");
        assert_eq!(cg.procs_files().len(), 3);
    }

    #[test]
    fn v2_limits_go_into_one_directory_with_controllers_enabled() {
        let root = tempfile::tempdir().unwrap();
        let h = Some(Hierarchy::V2(root.path().to_path_buf()));
        let layout = Layout {
            memory: h.clone(),
            cpu: h.clone(),
            pids: h,
            ..Layout::default()
        };
        let cg = create(&layout, "abc", &resources()).unwrap();
        let read = |p: &str| std::fs::read_to_string(root.path().join(p)).unwrap();
        assert_eq!(cg.dirs, [root.path().join("ferry/abc")]);
        assert_eq!(read("ferry/abc/memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("ferry/abc/cpu.max"), "50000 100000");
        assert_eq!(read("ferry/abc/pids.max"), "20");
        // Enabling is per write in the real file; the fake keeps the last one.
        assert_eq!(read("ferry/cgroup.subtree_control"), "+pids");
    }
}
