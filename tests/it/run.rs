//! `ferry run` and the container verbs against real containers (these tests run as root).
//!
//! Images come from the local test registry. Until `ferry load` lands, `install` unpacks them
//! into overlay-format layer snapshots itself and lists them in `<store>/dev-images.json`,
//! the interim image source of `src/commands/store.rs`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Ran, Services, ferry, run, tempdir};
use crate::require_services;

/// Pulls `repo_tag` from the test registry and makes it runnable as `repo_tag` in `home`'s
/// store; returns the image reference to pass to `ferry run`.
pub fn install(s: &Services, home: &Path, repo_tag: &str) -> String {
    let oci = home.join("oci");
    let reference = s.image(repo_tag);
    let st = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:img", oci.display()))
        .status()
        .expect("skopeo");
    assert!(st.success(), "skopeo copy {reference}");
    let blob = |d: &str| oci.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let index: Value = serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let snapshots = home.join("store/snapshots");
    let mut layers = Vec::new();
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let dir = snapshots.join(format!("{}-{i}", &config_digest[7..19]));
        if !dir.exists() {
            unpack_layer(&blob(l["digest"].as_str().unwrap()), &dir);
        }
        layers.push(dir.to_string_lossy().into_owned());
    }
    let list_path = home.join("store/dev-images.json");
    let mut list: Vec<Value> = std::fs::read(&list_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    list.push(json!({
        "id": config_digest,
        "names": [reference.clone()],
        "config": blob(config_digest),
        "layers": layers,
    }));
    std::fs::write(&list_path, serde_json::to_vec(&list).unwrap()).unwrap();
    reference
}

/// Extracts a gzip layer into `dir` in overlayfs format: `.wh.X` becomes a 0:0 character
/// device, `.wh..wh..opq` the `trusted.overlay.opaque` attribute of its directory.
fn unpack_layer(blob: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(blob).unwrap());
    let mut ar = tar::Archive::new(gz);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_permissions(true);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if name == ".wh..wh..opq" {
            std::fs::create_dir_all(&parent).unwrap();
            xattr_set(&parent, "trusted.overlay.opaque", b"y");
        } else if let Some(target) = name.strip_prefix(".wh.") {
            std::fs::create_dir_all(&parent).unwrap();
            let c = std::ffi::CString::new(parent.join(target).to_string_lossy().as_bytes()).unwrap();
            // SAFETY: NUL-terminated path.
            assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
        } else {
            e.unpack_in(dir).unwrap();
        }
    }
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer with its length.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(rc, 0, "setxattr {}", path.display());
}

/// `ferry run ARGS…` in `home`.
fn ferry_run(home: &Path, args: &[&str]) -> Ran {
    run(ferry(home).arg("run").args(args))
}

#[test]
fn run_echo_prints_and_exits_zero() {
    let s = require_services!();
    let home = tempdir();
    let img = install(s, home.path(), "ferry/busybox:oci");
    let r = ferry_run(home.path(), &["--rm", &img]).ok();
    assert_eq!(r.stdout.trim(), s.facts("ferry/busybox:oci")["expect_stdout"].as_str().unwrap());
    let r = ferry_run(home.path(), &["--rm", &img, "echo", "hi", "there"]).ok();
    assert_eq!(r.stdout, "hi there\n");
}
