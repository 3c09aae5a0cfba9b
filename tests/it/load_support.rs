//! What the load tests share: archives of the test images written by the real tools (Docker,
//! skopeo, ferry fetch) or converted from them into the formats no tool here writes (Docker
//! 25+'s hybrid layout, crane's tarball), hand-made archives for hostile cases, and
//! manifests of root filesystems (every path's type, mode, owner, size and content hash) as
//! Docker exports them and as ferry's snapshots show them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::harness::{Services, ferry, fetch_cmd, run};

/// sha256 of bytes, `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Makes sure the Docker engine has the test image `repo_tag` (pulled from the local
/// registry, which Docker trusts as a loopback address) and returns its full name.
pub fn docker_has(s: &Services, repo_tag: &str) -> String {
    let name = s.image(repo_tag);
    if run(s
        .docker()
        .args(["image", "inspect", &name])
        .stdout(Stdio::null()))
    .code
        != Some(0)
    {
        run(s.docker().args(["pull", "-q", &name])).ok();
    }
    name
}

/// `docker save` of a test image (Docker 20.10 here: the legacy layout).
pub fn docker_save(s: &Services, repo_tag: &str, dir: &Path) -> PathBuf {
    let name = docker_has(s, repo_tag);
    let out = dir.join(format!(
        "{}-docker-save.tar",
        repo_tag.replace(['/', ':'], "_")
    ));
    run(s.docker().arg("save").arg("-o").arg(&out).arg(&name)).ok();
    out
}

/// `skopeo copy` of a test image to `docker-archive` or `oci-archive`, named as in the
/// registry (`ferry/busybox:oci`).
pub fn skopeo(s: &Services, repo_tag: &str, transport: &str, dir: &Path, all: bool) -> PathBuf {
    let out = dir.join(format!(
        "{}-{transport}{}.tar",
        repo_tag.replace(['/', ':'], "_"),
        if all { "-all" } else { "" }
    ));
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", "--src-tls-verify=false"]);
    if all {
        c.arg("--all");
    }
    c.arg(format!("docker://{}", s.image(repo_tag)))
        .arg(format!("{transport}:{}:{repo_tag}", out.display()));
    run(&mut c).ok();
    out
}

/// `ferry fetch` of a test image.
pub fn fetch(s: &Services, home: &Path, repo_tag: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{}-fetch.tar", repo_tag.replace(['/', ':'], "_")));
    run(fetch_cmd(home, s.registry(), &s.image(repo_tag), &out)).ok();
    out
}

/// Every entry of a tar file: path → (type flag, link target, data).
pub fn read_tar(path: &Path) -> Vec<(String, u8, String, Vec<u8>)> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type().as_byte();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((p, kind, link, data));
    }
    out
}

/// Appends a regular file entry (no path checks: hostile archives need `..` and `/`).
pub fn raw_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    raw_entry(b, path, tar::EntryType::Regular, data, "");
}

/// Appends an entry with a hand-written header.
pub fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: &str,
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    let raw = h.as_mut_bytes();
    raw[..100].fill(0);
    raw[..path.len()].copy_from_slice(path.as_bytes());
    raw[157..257].fill(0);
    raw[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A `docker save`-style (legacy) archive of an image made of `layers` (tar bytes), named
/// `name`; `extra` adds entries (before manifest.json, as Docker orders them).
pub fn legacy_archive(
    layers: &[Vec<u8>],
    name: &str,
    extra: impl FnOnce(&mut tar::Builder<Vec<u8>>),
) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        raw_file(&mut b, &p, l);
        paths.push(p);
    }
    raw_file(&mut b, "config.json", &config);
    extra(&mut b);
    let manifest = json!([{"Config": "config.json", "RepoTags": [name], "Layers": paths}]);
    raw_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// A small layer tar with the given (path, content) files.
pub fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, c) in files {
        raw_file(&mut b, p, c.as_bytes());
    }
    b.into_inner().unwrap()
}

/// Converts a legacy `docker save` archive into what Docker 25+ writes: an OCI layout (OCI
/// manifest with uncompressed layers, index.json with `io.containerd.image.name` and only
/// the tag in `org.opencontainers.image.ref.name`) plus a manifest.json with blob paths, in
/// Docker's lexical order (blobs first, metadata last).
pub fn docker25_from_legacy(legacy: &Path, out: &Path) {
    let entries = read_tar(legacy);
    let get = |p: &str| -> Vec<u8> {
        let mut p = p.to_string();
        loop {
            let e = entries
                .iter()
                .find(|e| e.0 == p)
                .unwrap_or_else(|| panic!("{p} missing"));
            if e.1 == b'2' {
                let base = Path::new(&p).parent().unwrap();
                let t = base.join(&e.2);
                let mut parts: Vec<String> = Vec::new();
                for c in t.components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::Normal(n) => {
                            parts.push(n.to_string_lossy().into_owned())
                        }
                        _ => {}
                    }
                }
                p = parts.join("/");
                continue;
            }
            return e.3.clone();
        }
    };
    let manifest: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let m = &manifest[0];
    let config = get(m["Config"].as_str().unwrap());
    let layers: Vec<Vec<u8>> = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| get(l.as_str().unwrap()))
        .collect();
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let cd = sha256(&config);
    blobs.insert(cd.clone(), config.clone());
    let mut layer_desc = Vec::new();
    for l in &layers {
        let d = sha256(l);
        layer_desc.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
        blobs.insert(d, l.clone());
    }
    let oci_manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": layer_desc,
    }))
    .unwrap();
    let md = sha256(&oci_manifest);
    blobs.insert(md.clone(), oci_manifest.clone());
    let tag: String = m["RepoTags"][0].as_str().unwrap().to_string();
    let full = if tag.split('/').next().unwrap().contains(['.', ':']) {
        tag.clone()
    } else {
        format!("docker.io/{tag}")
    };
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": oci_manifest.len(),
        "annotations": {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag.rsplit(':').next().unwrap()},
    }]});
    let docker_manifest = json!([{
        "Config": format!("blobs/sha256/{}", &cd[7..]),
        "RepoTags": [tag],
        "Layers": layers.iter().map(|l| format!("blobs/sha256/{}", &sha256(l)[7..])).collect::<Vec<_>>(),
    }]);
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, "blobs/", tar::EntryType::Directory, b"", "");
    raw_entry(&mut b, "blobs/sha256/", tar::EntryType::Directory, b"", "");
    for (d, bytes) in &blobs {
        raw_file(&mut b, &format!("blobs/sha256/{}", &d[7..]), bytes);
    }
    raw_file(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    raw_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).unwrap(),
    );
    raw_file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    raw_file(&mut b, "repositories", b"{}");
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

/// Converts a ferry archive (registry blobs, gzip layers) into crane's `tarball` format:
/// `sha256:<hex>` config, `<hex>.tar.gz` layers, manifest.json naming them.
pub fn crane_from_ferry(ferry_archive: &Path, out: &Path) {
    let entries = read_tar(ferry_archive);
    let get = |p: &str| entries.iter().find(|e| e.0 == p).unwrap().3.clone();
    let m: Value = serde_json::from_slice(&get("manifest.json")).unwrap();
    let m = &m[0];
    let config_path = m["Config"].as_str().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let config_name = format!("sha256:{}", config_path.rsplit('/').next().unwrap());
    raw_file(&mut b, &config_name, &get(config_path));
    let mut layers = Vec::new();
    for l in m["Layers"].as_array().unwrap() {
        let l = l.as_str().unwrap();
        let name = format!("{}.tar.gz", l.rsplit('/').next().unwrap());
        if !layers.contains(&name) {
            raw_file(&mut b, &name, &get(l));
        }
        layers.push(name);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": m["RepoTags"], "Layers": layers}]);
    raw_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

/// A root filesystem as a manifest: path → "type mode uid:gid size content".
pub type FsManifest = BTreeMap<String, String>;

/// Paths Docker adds to every container (its init layer): not part of the image.
const DOCKER_INIT: [&str; 10] = [
    ".dockerenv",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
];

fn init_path(p: &str) -> bool {
    DOCKER_INIT
        .iter()
        .any(|i| p == *i || p.starts_with(&format!("{i}/")))
}

/// The root filesystem Docker builds for `image`: `docker create` + `docker export`.
pub fn docker_rootfs(s: &Services, image: &str) -> FsManifest {
    let name = format!("ferry-it-export-{}-{}", std::process::id(), rand_u64());
    run(s.docker().args(["create", "--name", &name, image])).ok();
    let mut child = s
        .docker()
        .args(["export", &name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = FsManifest::new();
    let mut links: Vec<(String, String)> = Vec::new();
    {
        let mut ar = tar::Archive::new(child.stdout.take().unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            if path.is_empty() || init_path(&path) {
                continue;
            }
            let h = e.header().clone();
            let mode = h.mode().unwrap() & 0o7777;
            let owner = format!("{}:{}", h.uid().unwrap(), h.gid().unwrap());
            let desc = match h.entry_type() {
                tar::EntryType::Directory => format!("d {mode:o} {owner}"),
                tar::EntryType::Symlink => format!(
                    "l {owner} -> {}",
                    e.link_name().unwrap().unwrap().to_string_lossy()
                ),
                tar::EntryType::Link => {
                    links.push((
                        path,
                        e.link_name()
                            .unwrap()
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    ));
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block => format!(
                    "{} {mode:o} {owner} {}:{}",
                    if h.entry_type() == tar::EntryType::Char {
                        'c'
                    } else {
                        'b'
                    },
                    h.device_major().unwrap().unwrap_or(0),
                    h.device_minor().unwrap().unwrap_or(0)
                ),
                tar::EntryType::Fifo => format!("p {mode:o} {owner}"),
                _ => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    format!("f {mode:o} {owner} {} {}", data.len(), sha256(&data))
                }
            };
            out.insert(path, desc);
        }
    }
    child.wait().unwrap();
    for (path, target) in links {
        let desc = out
            .get(target.trim_end_matches('/'))
            .cloned()
            .unwrap_or_else(|| format!("link to missing {target}"));
        out.insert(path, desc);
    }
    run(s.docker().args(["rm", &name])).ok();
    out
}

/// The manifest of a directory tree (hard links show as the files they are).
pub fn dir_manifest(root: &Path) -> FsManifest {
    let mut out = FsManifest::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut FsManifest) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let m = p.symlink_metadata().unwrap();
        let mode = m.mode() & 0o7777;
        let owner = format!("{}:{}", m.uid(), m.gid());
        let ft = m.file_type();
        let desc = if ft.is_dir() {
            format!("d {mode:o} {owner}")
        } else if ft.is_symlink() {
            format!(
                "l {owner} -> {}",
                std::fs::read_link(&p).unwrap().to_string_lossy()
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!(
                "{} {mode:o} {owner} {}:{}",
                if ft.is_char_device() { 'c' } else { 'b' },
                ((m.rdev() >> 8) & 0xfff) | ((m.rdev() >> 32) & !0xfff),
                (m.rdev() & 0xff) | ((m.rdev() >> 12) & !0xff)
            )
        } else if ft.is_fifo() {
            format!("p {mode:o} {owner}")
        } else {
            let data = std::fs::read(&p).unwrap();
            format!("f {mode:o} {owner} {} {}", data.len(), sha256(&data))
        };
        if !init_path(&rel) {
            out.insert(rel, desc);
        }
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// A read-only overlayfs mount of snapshot directories (bottom first), unmounted on drop.
pub struct OverlayMount {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl OverlayMount {
    /// Mounts `layers` at `at` the way a runner would: top layer first in `lowerdir`, paths
    /// relative to the snapshots directory so that 40+ layers fit in the option page.
    pub fn new(layers: &[PathBuf], at: &Path) -> OverlayMount {
        std::fs::create_dir_all(at).unwrap();
        let base = layers[0].parent().unwrap().parent().unwrap();
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.strip_prefix(base).unwrap().to_string_lossy().into_owned())
            .collect();
        // A single lower directory is not an overlay; a second, empty one makes it one.
        let mut opts = format!("ro,lowerdir={}", lower.join(":"));
        if lower.len() == 1 {
            let empty = at.with_extension("empty");
            std::fs::create_dir_all(&empty).unwrap();
            opts.push(':');
            opts.push_str(empty.to_str().unwrap());
        }
        run(Command::new("mount")
            .current_dir(base)
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(at))
        .ok();
        OverlayMount {
            path: at.to_path_buf(),
        }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// The snapshot directories of an image, from `ferry image inspect`.
pub fn snapshot_layers(home: &Path, image: &str) -> Vec<PathBuf> {
    let out = run(ferry(home).args(["image", "inspect", image])).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v[0]["Snapshots"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect()
}

/// The image ID `ferry images` shows for `image` (full).
pub fn ferry_id(home: &Path, image: &str) -> String {
    let out = run(ferry(home).args(["image", "inspect", image])).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// A pseudo-random number (no rand crate needed for picking kill times and names).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Everything in a store directory that a failed command must not change: index.json, the
/// names of blobs and snapshots, and leftovers in tmp/.
pub fn store_state(store: &Path) -> (Vec<u8>, Vec<String>, Vec<String>, Vec<String>) {
    let list = |p: PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (
        std::fs::read(store.join("index.json")).unwrap_or_default(),
        list(store.join("blobs/sha256")),
        list(store.join("snapshots")),
        list(store.join("tmp")),
    )
}

/// Whether `stdout` names `image` in a `Loaded image:` line.
pub fn loaded(stdout: &str, image: &str) -> bool {
    stdout
        .lines()
        .any(|l| l == format!("Loaded image: {image}"))
}

/// Reads one file of the store's snapshots of `image` through the materialised tree.
pub fn materialize(home: &Path, image: &str, dest: &Path) -> FsManifest {
    std::fs::create_dir_all(dest).unwrap();
    ferry_load::store::materialize(&snapshot_layers(home, image), dest).unwrap();
    dir_manifest(dest)
}
