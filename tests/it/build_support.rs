//! What the `ferry build` tests share: the base image (made once per machine with Docker's
//! classic builder, loaded into each test's store), building a corpus Dockerfile with Docker
//! and with ferry, and reading a saved image back as a file tree.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Ran, Services, ferry, run, workspace};

/// The base image's name in the corpus Dockerfiles (and in both Docker and ferry).
pub const BASE: &str = "ferry-build-it/base:1";

/// The base image, saved by Docker: made once (under a file lock, as nextest runs each test
/// in its own process) and kept in the target directory.
pub fn base_archive(s: &Services) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("build-base");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let archive = dir.join("base.tar");
    let present = run(s.docker().args(["image", "inspect", BASE])).code == Some(0);
    if present && archive.is_file() {
        return archive;
    }
    let ctx = dir.join("ctx");
    let _ = std::fs::remove_dir_all(&ctx);
    let root = ctx.join("rootfs");
    for d in [
        "bin",
        "usr/local/bin",
        "etc",
        "tmp",
        "root",
        "home/app",
        "proc",
        "sys",
        "dev",
        "var",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    // The seed's hello.sh starts with #!/bin/bash; Debian's bash-static needs no libraries.
    std::fs::copy("/bin/bash-static", root.join("bin/bash"))
        .expect("bash-static is installed by scripts/services-up");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnobody:x:65534:\n",
    )
    .unwrap();
    let sh = |cmd: &str| {
        run(Command::new("sh").arg("-c").arg(cmd).current_dir(&ctx)).ok();
    };
    sh("chmod 1777 rootfs/tmp && chmod 700 rootfs/root && chown 1000:1000 rootfs/home/app");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    docker_build(s, &ctx, &ctx.join("Dockerfile"), BASE, &[]).ok();
    run(s.docker().args(["save", "-o"]).arg(&archive).arg(BASE)).ok();
    archive
}

/// `docker build` with the classic builder (RUN needs `--network host`: the test engine has
/// no bridge).
pub fn docker_build(s: &Services, ctx: &Path, dockerfile: &Path, tag: &str, extra: &[&str]) -> Ran {
    run(s
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "--network", "host", "-t", tag, "-f"])
        .arg(dockerfile)
        .args(extra)
        .arg(ctx))
}

/// A private ferry home with the base image loaded.
pub fn ferry_home(s: &Services) -> tempfile::TempDir {
    let home = crate::harness::tempdir();
    let archive = base_archive(s);
    run(ferry(home.path()).args(["load", "-i"]).arg(&archive)).ok();
    home
}

/// A tag of Docker's engine that only this test process uses, removed from the engine when
/// dropped (also when the test fails).
pub struct DockerTag(pub String);

impl DockerTag {
    /// `ferry-build-it/CASE:PID`.
    pub fn new(case: &str) -> DockerTag {
        DockerTag(format!("ferry-build-it/{case}:{}", std::process::id()))
    }
}

impl std::ops::Deref for DockerTag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for DockerTag {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_ref()
    }
}

impl std::fmt::Display for DockerTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for DockerTag {
    fn drop(&mut self) {
        if let Some(s) = crate::harness::services() {
            let _ = s.docker().args(["rmi", "-f", &self.0]).output();
        }
    }
}

/// Copies a corpus case into `dest` and runs its `prepare.sh`.
pub fn corpus_context(case: &str, dest: &Path) {
    let src = workspace().join("testdata/build").join(case);
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dest))
    .ok();
    if dest.join("prepare.sh").is_file() {
        run(Command::new("sh").arg("prepare.sh").current_dir(dest)).ok();
        std::fs::remove_file(dest.join("prepare.sh")).unwrap();
    }
}

/// One entry of a file tree, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f`, `d`, `l`, `c`, `b`, `p`.
    pub kind: char,
    /// Permission, set-id and sticky bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size of a file.
    pub size: u64,
    /// sha256 of a file's content.
    pub hash: String,
    /// Link target.
    pub link: String,
}

/// A saved image read back: its merged file tree, config and layer count.
pub struct SavedImage {
    /// path → entry.
    pub tree: BTreeMap<String, Node>,
    /// The config JSON.
    pub config: serde_json::Value,
    /// Layers in the manifest.
    pub layers: usize,
}

/// Reads an archive `docker save` or `ferry save` wrote (one image).
pub fn read_saved(archive: &Path) -> SavedImage {
    let dir = crate::harness::tempdir();
    tar::Archive::new(std::fs::File::open(archive).unwrap())
        .unpack(dir.path())
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let m = &manifest[0];
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(m["Config"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers: Vec<String> = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let mut tree = BTreeMap::new();
    for l in &layers {
        apply_layer(&mut tree, &dir.path().join(l));
    }
    SavedImage {
        tree,
        config,
        layers: layers.len(),
    }
}

fn apply_layer(tree: &mut BTreeMap<String, Node>, path: &Path) {
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    let file = std::fs::File::open(path).unwrap();
    let reader: Box<dyn Read> = if head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut added: std::collections::HashSet<String> = Default::default();
    let remove_below = |tree: &mut BTreeMap<String, Node>,
                        added: &std::collections::HashSet<String>,
                        dir: &str| {
        let prefix = format!("{dir}/");
        let gone: Vec<String> = tree
            .keys()
            .filter(|k| k.starts_with(&prefix) && !added.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            tree.remove(&k);
        }
    };
    let mut ar = tar::Archive::new(reader);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let raw = e.path().unwrap().to_string_lossy().into_owned();
        let name = raw
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if name.is_empty() || name == "." {
            continue;
        }
        let (parent, base) = match name.rsplit_once('/') {
            Some((p, b)) => (p.to_string(), b.to_string()),
            None => (String::new(), name.clone()),
        };
        if base == ".wh..wh..opq" {
            remove_below(tree, &added, &parent);
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let victim = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            tree.remove(&victim);
            remove_below(tree, &added, &victim);
            continue;
        }
        let h = e.header().clone();
        let t = h.entry_type();
        let node = if t.is_hard_link() {
            let target = e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            tree.get(&target)
                .cloned()
                .unwrap_or_else(|| panic!("hard link {name} to missing {target}"))
        } else {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            Node {
                kind: if t.is_dir() {
                    'd'
                } else if t.is_symlink() {
                    'l'
                } else if t.is_character_special() {
                    'c'
                } else if t.is_block_special() {
                    'b'
                } else if t.is_fifo() {
                    'p'
                } else {
                    'f'
                },
                mode: h.mode().unwrap() & 0o7777,
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                size: if t.is_file() { data.len() as u64 } else { 0 },
                hash: if t.is_file() {
                    use sha2::Digest;
                    hex::encode(sha2::Sha256::digest(&data))
                } else {
                    String::new()
                },
                link: if t.is_symlink() {
                    e.link_name()
                        .unwrap()
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default()
                } else {
                    String::new()
                },
            }
        };
        if node.kind != 'd' {
            remove_below(tree, &added, &name);
        }
        added.insert(name.clone());
        tree.insert(name, node);
    }
}

/// Differences between two trees, one line each (empty when equal).
pub fn tree_diff(docker: &BTreeMap<String, Node>, ferry: &BTreeMap<String, Node>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, d) in docker {
        match ferry.get(k) {
            None => out.push(format!("only in Docker's image: /{k} {d:?}")),
            Some(f) if f != d => out.push(format!("/{k}: Docker {d:?}, ferry {f:?}")),
            _ => {}
        }
    }
    for (k, f) in ferry {
        if !docker.contains_key(k) {
            out.push(format!("only in ferry's image: /{k} {f:?}"));
        }
    }
    out
}

/// The config fields both builders must agree on, normalised (`null` = absent, COPY/ADD
/// source digests blanked: each builder hashes sources its own way).
pub fn comparable_config(c: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let cfg = &c["config"];
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ] {
        let v = &cfg[k];
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_object().is_some_and(|o| o.is_empty())
            || v.as_array().is_some_and(|a| a.is_empty() && k == "OnBuild");
        if !empty {
            out.insert(k.to_string(), v.clone());
        }
    }
    if let Some(a) = c["author"].as_str() {
        out.insert("author".into(), a.into());
    }
    // Source digests (`file:…`, `dir:…`, `multi:…`, a download's bare one): 64 hex digits.
    let hash = |s: &str| -> String {
        s.split(' ')
            .map(|w| {
                let (prefix, hex) = w.rsplit_once(':').unwrap_or(("", w));
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    format!("{prefix}{}HASH", if prefix.is_empty() { "" } else { ":" })
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let history: Vec<serde_json::Value> = c["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            serde_json::json!({
                "created_by": hash(h["created_by"].as_str().unwrap_or_default()),
                "empty_layer": h["empty_layer"].as_bool().unwrap_or(false),
                "author": h["author"],
            })
        })
        .collect();
    out.insert("history".into(), history.into());
    serde_json::Value::Object(out)
}
