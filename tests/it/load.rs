//! `ferry load` and the store against archives written by the real Docker engine, skopeo and
//! ferry fetch, checked against the root filesystems Docker itself builds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run, sha256_file, tempdir, tempdir_for_any_user};
use crate::load_support::{
    self as sup, FsManifest, OverlayMount, crane_from_ferry, docker_has, docker_rootfs,
    docker_save, docker25_from_legacy, ferry_id, layer, legacy_archive, loaded, raw_entry,
    raw_file, skopeo, snapshot_layers, store_state,
};
use crate::require_services;

fn load(home: &Path, archive: &Path) -> Ran {
    run(ferry(home)
        .args(["load", "--progress", "none", "-i"])
        .arg(archive))
}

fn config_digest(s: &Services, tag: &str) -> String {
    s.facts(tag)["config_digest"].as_str().unwrap().to_string()
}

/// The first `Loaded image:` name of a load.
fn loaded_name(r: &Ran) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("no image named: {}", r.stdout))
        .to_string()
}

fn assert_same_rootfs(want: &FsManifest, got: &FsManifest, what: &str) {
    if want == got {
        return;
    }
    let mut diff = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diff.push(format!("missing {k}: {v}")),
            Some(g) if g != v => diff.push(format!("differs {k}: docker {v}, ferry {g}")),
            _ => {}
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            diff.push(format!("extra {k}: {v}"));
        }
    }
    diff.truncate(20);
    panic!(
        "{what}: root filesystem differs from Docker's:\n{}",
        diff.join("\n")
    );
}

/// Every archive format of one test image loads with the registry's image ID, and both the
/// overlay mount of its snapshots and the materialised tree equal what Docker exports.
fn every_format_matches_docker(repo: &str) {
    let s = require_services!();
    let work = tempdir();
    let dir = work.path();
    let docker_tag = format!("{repo}:docker");
    let oci_tag = format!("{repo}:oci");
    let want_id = config_digest(s, &docker_tag);
    let want = docker_rootfs(s, &docker_has(s, &docker_tag));
    assert!(want.len() > 3, "docker exported nearly nothing: {want:?}");

    let legacy = docker_save(s, &docker_tag, dir);
    let docker25 = dir.join("docker25.tar");
    docker25_from_legacy(&legacy, &docker25);
    let fetched = sup::fetch(s, dir, &docker_tag, dir);
    let crane = dir.join("crane.tar");
    crane_from_ferry(&fetched, &crane);
    let archives = [
        ("docker save (20.10, legacy)", legacy),
        ("docker save (25+, hybrid)", docker25),
        (
            "skopeo docker-archive",
            skopeo(s, &oci_tag, "docker-archive", dir, false),
        ),
        (
            "skopeo oci-archive",
            skopeo(s, &oci_tag, "oci-archive", dir, false),
        ),
        ("ferry fetch (docker media types)", fetched),
        (
            "ferry fetch (oci media types)",
            sup::fetch(s, dir, &oci_tag, dir),
        ),
        ("crane tarball", crane),
    ];
    for (i, (what, archive)) in archives.iter().enumerate() {
        let home = dir.join(format!("home-{i}"));
        std::fs::create_dir_all(&home).unwrap();
        let r = load(&home, archive).ok();
        let name = loaded_name(&r);
        assert_eq!(ferry_id(&home, &name), want_id, "{what}: image ID");
        let layers = snapshot_layers(&home, &name);
        assert_eq!(
            layers.len(),
            s.facts(&docker_tag)["diff_ids"].as_array().unwrap().len(),
            "{what}"
        );
        {
            let m = OverlayMount::new(&layers, &home.join("mnt"));
            assert_same_rootfs(
                &want,
                &sup::dir_manifest(&m.path),
                &format!("{what} (overlay mount)"),
            );
        }
        let materialized = sup::materialize(&home, &name, &home.join("rootfs"));
        assert_same_rootfs(&want, &materialized, &format!("{what} (materialised)"));
        run(ferry(&home)
            .args(["verify", "--progress", "none"])
            .arg(archive))
        .ok();
    }
}

#[test]
fn busybox_from_every_archive_format_matches_docker() {
    every_format_matches_docker("ferry/busybox");
}

#[test]
fn whiteout_image_from_every_archive_format_matches_docker() {
    every_format_matches_docker("ferry/multilayer");
}

#[test]
fn duplicated_layer_image_from_every_archive_format_matches_docker() {
    every_format_matches_docker("ferry/duplayer");
}

#[test]
fn forty_layer_image_from_every_archive_format_matches_docker() {
    every_format_matches_docker("ferry/many");
}

#[test]
fn large_image_from_docker_save_matches_docker() {
    let s = require_services!();
    let work = tempdir();
    let tag = "ferry/large:docker";
    let archive = docker_save(s, tag, work.path());
    let want = docker_rootfs(s, &docker_has(s, tag));
    let r = load(work.path(), &archive).ok();
    let name = loaded_name(&r);
    assert_eq!(ferry_id(work.path(), &name), config_digest(s, tag));
    let m = OverlayMount::new(
        &snapshot_layers(work.path(), &name),
        &work.path().join("mnt"),
    );
    assert_same_rootfs(&want, &sup::dir_manifest(&m.path), "large image");
}

#[test]
fn whiteouts_and_opaque_directories_give_the_merged_view() {
    let s = require_services!();
    let home = tempdir();
    let archive = sup::fetch(s, home.path(), "ferry/multilayer:oci", home.path());
    let name = loaded_name(&load(home.path(), &archive).ok());
    let root = home.path().join("rootfs");
    let m = sup::materialize(home.path(), &name, &root);
    let under = |dir: &str| -> Vec<String> {
        m.keys()
            .filter_map(|k| k.strip_prefix(&format!("{dir}/")))
            .filter(|k| !k.contains('/'))
            .map(String::from)
            .collect()
    };
    // Layer 2 has app/{keep,delete-me}.txt and data/old/{a,b}; layer 3 whites out
    // delete-me.txt and makes data/old opaque with a new c.
    assert_eq!(under("app"), ["keep.txt"]);
    assert_eq!(under("data/old"), ["c"]);
    assert!(
        m["app"].contains("1000:1000"),
        "owner of /app: {}",
        m["app"]
    );
}

#[test]
fn compressed_archives_and_standard_input_load() {
    let s = require_services!();
    let work = tempdir();
    let tag = "ferry/busybox:docker";
    let plain = docker_save(s, tag, work.path());
    for (tool, ext) in [
        ("gzip", "gz"),
        ("zstd", "zst"),
        ("xz", "xz"),
        ("bzip2", "bz2"),
    ] {
        let out = work.path().join(format!("busybox.tar.{ext}"));
        let f = std::fs::File::create(&out).unwrap();
        let status = Command::new(tool)
            .args(["-c", "-1"])
            .arg(&plain)
            .stdout(f)
            .status()
            .unwrap();
        assert!(status.success());
        let home = work.path().join(ext);
        std::fs::create_dir_all(&home).unwrap();
        let r = load(&home, &out).ok();
        assert_eq!(
            ferry_id(&home, &loaded_name(&r)),
            config_digest(s, tag),
            "{tool}"
        );
    }
    let home = work.path().join("stdin");
    std::fs::create_dir_all(&home).unwrap();
    let r = run(ferry(&home)
        .args(["load", "-q"])
        .stdin(std::fs::File::open(work.path().join("busybox.tar.zst")).unwrap()));
    let r = r.ok();
    assert!(loaded(&r.stdout, &s.image(tag)), "{}", r.stdout);
}

/// Wraps an OCI archive's top index into another index (index.json → index → index), as
/// `ferry/multiarch:oci-nested` is in the registry; skopeo cannot copy that one itself.
fn nest_index(flat: &Path, out: &Path) -> String {
    let entries = sup::read_tar(flat);
    let index: Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "index.json").unwrap().3).unwrap();
    let mut inner = index["manifests"][0].clone();
    let annotations = inner["annotations"].take();
    inner.as_object_mut().unwrap().remove("annotations");
    let wrapper = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [inner],
    }))
    .unwrap();
    let wd = sup::sha256(&wrapper);
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": wd, "size": wrapper.len(),
        "annotations": annotations,
    }]});
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, _, data) in &entries {
        match (path.as_str(), kind) {
            ("index.json", _) => {}
            (_, b'5') => raw_entry(&mut b, path, tar::EntryType::Directory, b"", ""),
            _ => raw_file(&mut b, path, data),
        }
    }
    raw_file(&mut b, &format!("blobs/sha256/{}", &wd[7..]), &wrapper);
    raw_file(&mut b, "index.json", &serde_json::to_vec(&top).unwrap());
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
    wd
}

#[test]
fn multiplatform_oci_archives_pick_the_platform_and_tolerate_missing_blobs() {
    let s = require_services!();
    let work = tempdir();
    let w = work.path();
    let tag = "ferry/multiarch:oci";
    let flat = skopeo(s, tag, "oci-archive", w, true);
    let nested = w.join("nested.tar");
    let wrapper = nest_index(&flat, &nested);
    let platforms = s.facts(tag)["platforms"].as_array().unwrap().clone();
    let config_of = |p: &str| {
        platforms.iter().find(|x| x["platform"] == p).unwrap()["config_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (kind, archive) in [("index", &flat), ("nested index", &nested)] {
        for (asked, platform) in [
            (None, "linux/amd64"),
            (Some("linux/arm64"), "linux/arm64/v8"),
            (Some("linux/arm/v7"), "linux/arm/v7"),
        ] {
            let home = w.join(format!(
                "{}-{}",
                kind.replace(' ', "-"),
                platform.replace('/', "-")
            ));
            std::fs::create_dir_all(&home).unwrap();
            let mut c = ferry(&home);
            c.args(["load", "--progress", "none", "-i"]).arg(archive);
            if let Some(p) = asked {
                c.args(["--platform", p]);
            }
            let r = run(&mut c).ok();
            // skopeo names the index `ferry/multiarch:oci` in ref.name.
            assert!(loaded(&r.stdout, tag), "{kind}: {}", r.stdout);
            assert_eq!(
                ferry_id(&home, tag),
                config_of(platform),
                "{kind} {platform}"
            );
        }
    }
    let home = w.join("s390x");
    std::fs::create_dir_all(&home).unwrap();
    let r = run(ferry(&home)
        .args([
            "load",
            "--progress",
            "none",
            "--platform",
            "linux/s390x",
            "-i",
        ])
        .arg(&nested))
    .failed();
    assert!(
        r.stderr.contains("no image for linux/s390x") && r.stderr.contains("linux/arm64/v8"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("unknown/unknown"),
        "the attestation was offered: {}",
        r.stderr
    );

    // Drop every blob only other platforms need: amd64 must still load, arm64 must say what
    // is missing.
    let amd64 = platforms
        .iter()
        .find(|x| x["platform"] == "linux/amd64")
        .unwrap();
    let mut keep: Vec<String> = vec![
        amd64["manifest_digest"].as_str().unwrap().into(),
        amd64["config_digest"].as_str().unwrap().into(),
        s.facts(tag)["manifest_digest"].as_str().unwrap().into(),
        wrapper,
    ];
    keep.extend(
        amd64["layer_digests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string()),
    );
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, _, data) in sup::read_tar(&nested) {
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty())
            && !keep.iter().any(|k| k.ends_with(hex))
        {
            continue;
        }
        if kind == b'5' {
            raw_entry(&mut b, &path, tar::EntryType::Directory, b"", "");
        } else {
            raw_file(&mut b, &path, &data);
        }
    }
    let stripped = w.join("stripped.tar");
    std::fs::write(&stripped, b.into_inner().unwrap()).unwrap();
    let home = w.join("stripped");
    std::fs::create_dir_all(&home).unwrap();
    load(&home, &stripped).ok();
    assert_eq!(ferry_id(&home, tag), config_of("linux/amd64"));
    let failed = run(ferry(&home)
        .args([
            "load",
            "--progress",
            "none",
            "--platform",
            "linux/arm64",
            "-i",
        ])
        .arg(&stripped))
    .failed();
    failed.assert_stderr("missing from the archive");
}

#[test]
fn zstd_layers_load() {
    let s = require_services!();
    let home = tempdir();
    let tag = "ferry/zstd:oci";
    let archive = sup::fetch(s, home.path(), tag, home.path());
    let name = loaded_name(&load(home.path(), &archive).ok());
    assert_eq!(ferry_id(home.path(), &name), config_digest(s, tag));
    let m = sup::materialize(home.path(), &name, &home.path().join("rootfs"));
    let busybox = std::fs::read("/bin/busybox").unwrap();
    assert!(
        m["bin/busybox"].ends_with(&sup::sha256(&busybox)),
        "{}",
        m["bin/busybox"]
    );
}

/// A zstd-compressed layer holding one file of `size` bytes of `x`: kilobytes that unpack to
/// `size`. Returns the layer and its diff_id.
fn zstd_bomb(size: u64) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-1", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut h = tar::Header::new_gnu();
        h.set_path("bomb").unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        stdin.write_all(h.as_bytes()).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stdin.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        stdin.write_all(&[0u8; 1024]).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

#[test]
fn hostile_archives_are_refused_and_change_nothing() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    // A store with an image in it, so "unchanged" means something.
    let good = sup::fetch(s, h, "ferry/busybox:oci", h);
    load(h, &good).ok();
    let victim = h.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("secret"), "host file").unwrap();
    let v = victim.to_str().unwrap().to_string();
    // A snapshot being filled is <home>/store/tmp/<load>/snap-N/fs: five levels below home.
    let up = "../../../../../victim";
    let ok_layer = layer(&[("ok", "fine")]);
    let one = |l: Vec<u8>| legacy_archive(&[l], "hostile:latest", |_| {});
    let with_layer = |f: &dyn Fn(&mut tar::Builder<Vec<u8>>)| {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        one(b.into_inner().unwrap())
    };
    let mut cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "archive entry with ..",
            legacy_archive(std::slice::from_ref(&ok_layer), "hostile:latest", |b| {
                raw_file(b, "../escape", b"x")
            }),
            "`../escape`".into(),
        ),
        (
            "absolute archive entry",
            legacy_archive(std::slice::from_ref(&ok_layer), "hostile:latest", |b| {
                raw_file(b, &format!("{v}/pwned"), b"x")
            }),
            format!("`{v}/pwned`"),
        ),
        (
            "manifest.json path with ..",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_file(&mut b, "config.json", b"{\"rootfs\":{\"diff_ids\":[]}}");
                raw_file(
                    &mut b,
                    "manifest.json",
                    br#"[{"Config":"../../../../etc/passwd","RepoTags":["x:y"],"Layers":[]}]"#,
                );
                b.into_inner().unwrap()
            },
            "`../../../../etc/passwd`".into(),
        ),
        (
            "archive symlink to a host file",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    "layer0/layer.tar",
                    tar::EntryType::Symlink,
                    b"",
                    "/etc/passwd",
                );
                b.into_inner().unwrap()
            },
            "`layer0/layer.tar`".into(),
        ),
        (
            "archive symlink climbing out",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(
                    &mut b,
                    "layer0/layer.tar",
                    tar::EntryType::Symlink,
                    b"",
                    "../../../etc/shadow",
                );
                b.into_inner().unwrap()
            },
            "`layer0/layer.tar`".into(),
        ),
        (
            "device node in the archive",
            {
                let mut b = tar::Builder::new(Vec::new());
                raw_entry(&mut b, "dev-sda", tar::EntryType::Block, b"", "");
                b.into_inner().unwrap()
            },
            "`dev-sda`".into(),
        ),
        (
            "layer entry with ..",
            with_layer(&|b| raw_file(b, &format!("{up}/pwned"), b"x")),
            format!("`{up}/pwned`"),
        ),
        (
            "absolute layer entry",
            with_layer(&|b| raw_file(b, &format!("{v}/pwned"), b"x")),
            format!("`{v}/pwned`"),
        ),
        (
            "symlink then write through it",
            with_layer(&|b| {
                raw_entry(b, "evil", tar::EntryType::Symlink, b"", &v);
                raw_file(b, "evil/pwned", b"x");
            }),
            "`evil/pwned`".into(),
        ),
        (
            "hard link to a host file",
            with_layer(&|b| raw_entry(b, "l", tar::EntryType::Link, b"", &format!("{up}/secret"))),
            "`l`".into(),
        ),
        (
            "absolute hard link",
            with_layer(&|b| raw_entry(b, "passwd", tar::EntryType::Link, b"", "/etc/passwd")),
            "`passwd`".into(),
        ),
        (
            "whiteout of ..",
            with_layer(&|b| raw_file(b, "a/.wh...", b"")),
            "`a/.wh...`".into(),
        ),
        (
            "absurd header size",
            {
                let mut hd = tar::Header::new_gnu();
                hd.set_path("huge").unwrap();
                hd.set_size(1 << 50);
                hd.set_cksum();
                let mut l = hd.as_bytes().to_vec();
                l.extend_from_slice(&[0u8; 1024]);
                one(l)
            },
            "`huge`".into(),
        ),
        (
            "oversized PAX header",
            {
                let mut hd = tar::Header::new_ustar();
                hd.set_entry_type(tar::EntryType::XHeader);
                hd.set_path("PaxHeaders/bomb").unwrap();
                hd.set_size(1 << 33);
                hd.set_cksum();
                let mut l = hd.as_bytes().to_vec();
                l.extend_from_slice(&[0u8; 1024]);
                one(l)
            },
            "PAX header".into(),
        ),
    ];
    // A decompression bomb: 2 GiB of one byte in a few KiB of zstd. The reserve is set so
    // that unpacking may use only the next 64 MiB of free space.
    let bomb_size: u64 = 2 << 30;
    cases.push((
        "decompression bomb",
        one(zstd_bomb(bomb_size)),
        "`bomb`".into(),
    ));
    let df = run(Command::new("df").args(["-B1", "--output=avail"]).arg(h)).ok();
    let avail: u64 = df.stdout.lines().nth(1).unwrap().trim().parse().unwrap();
    let reserve = avail.saturating_sub(64 << 20);

    for (what, bytes, entry) in cases {
        let archive = h.join("hostile.tar");
        std::fs::write(&archive, &bytes).unwrap();
        let before = store_state(&h.join("store"));
        let r = run(ferry(h)
            .args(["load", "--progress", "none", "-i"])
            .arg(&archive)
            .env("FERRY_MIN_FREE", reserve.to_string()))
        .failed();
        assert!(
            r.stderr.contains(&entry),
            "{what}: the error does not name {entry}:\n{}",
            r.stderr
        );
        assert!(r.stderr.starts_with("error: "), "{what}: {}", r.stderr);
        assert_eq!(
            store_state(&h.join("store")),
            before,
            "{what}: the store changed"
        );
        let mut left: Vec<_> = std::fs::read_dir(&victim)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["secret"], "{what}: wrote next to the host file");
        assert_eq!(
            std::fs::read_to_string(victim.join("secret")).unwrap(),
            "host file"
        );
        let nlink = std::os::unix::fs::MetadataExt::nlink(
            &std::fs::metadata(victim.join("secret")).unwrap(),
        );
        assert_eq!(nlink, 1, "{what}: the host file got a hard link");
        // verify refuses the same archives (except the bomb, which only a disk can refuse).
        if what != "decompression bomb" {
            run(ferry(h)
                .args(["verify", "--progress", "none"])
                .arg(&archive))
            .failed();
        }
    }
}

/// Offset and length of the data of the largest entry of a tar file.
fn largest_entry(path: &Path) -> (u64, u64) {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.raw_file_position(), e.size())
        })
        .max_by_key(|(_, size)| *size)
        .unwrap()
}

fn flip_byte(path: &Path, offset: u64) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
}

#[test]
fn corrupt_and_truncated_archives_are_refused_and_change_nothing() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let fetched = sup::fetch(s, h, "ferry/multilayer:oci", h);
    let legacy = docker_save(s, "ferry/busybox:docker", h);
    load(h, &sup::fetch(s, h, "ferry/duplayer:oci", h)).ok();
    let facts = s.facts("ferry/busybox:docker");

    let corrupt_blob = h.join("corrupt-blob.tar");
    std::fs::copy(&fetched, &corrupt_blob).unwrap();
    let (off, len) = largest_entry(&corrupt_blob);
    flip_byte(&corrupt_blob, off + len / 2);
    let big_layer = s.facts("ferry/multilayer:oci")["layer_digests"][0]
        .as_str()
        .unwrap()
        .to_string();

    let corrupt_layer = h.join("corrupt-layer.tar");
    std::fs::copy(&legacy, &corrupt_layer).unwrap();
    let (off, len) = largest_entry(&corrupt_layer);
    // Inside some file's content, far from any tar header of the layer.
    flip_byte(&corrupt_layer, off + len / 2 + 100);
    let diff_id = facts["diff_ids"][0].as_str().unwrap().to_string();

    let truncated = h.join("truncated.tar");
    let bytes = std::fs::read(&fetched).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let garbage = h.join("garbage.tar");
    std::fs::write(&garbage, vec![0x42u8; 100_000]).unwrap();

    for (what, archive, needles) in [
        (
            "corrupt blob",
            &corrupt_blob,
            vec!["corrupt", &big_layer[..], "got sha256:"],
        ),
        (
            "corrupt layer content",
            &corrupt_layer,
            vec!["diff_id", &diff_id[..], "hashes to sha256:"],
        ),
        ("truncated", &truncated, vec!["damaged", "ends inside"]),
        ("not an archive", &garbage, vec!["not an image archive"]),
    ] {
        let before = store_state(&h.join("store"));
        let r = load(h, archive).failed();
        for n in needles {
            assert!(r.stderr.contains(n), "{what}: no `{n}` in:\n{}", r.stderr);
        }
        assert!(
            r.stderr.contains("hint:") || what == "truncated",
            "{what}: {}",
            r.stderr
        );
        assert_eq!(
            store_state(&h.join("store")),
            before,
            "{what}: the store changed"
        );
        run(ferry(h).args(["verify", "--progress", "none"]).arg(archive)).failed();
    }
}

/// Every listed image is complete (snapshots with info.json, blobs), `tmp/` is empty, and no
/// snapshot or blob is left that no image needs.
fn assert_store_consistent(home: &Path) {
    let store = home.join("store");
    let images = run(ferry(home).args(["images", "-q", "--no-trunc"])).ok();
    let mut needed_snapshots = std::collections::BTreeSet::new();
    let mut needed_blobs = std::collections::BTreeSet::new();
    for id in images.stdout.lines() {
        let out = run(ferry(home).args(["image", "inspect", id])).ok();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        for l in v[0]["Snapshots"]["Layers"].as_array().unwrap() {
            let fs = PathBuf::from(l.as_str().unwrap());
            assert!(
                fs.join("..").join("info.json").is_file(),
                "{id}: snapshot {} incomplete",
                fs.display()
            );
            needed_snapshots.insert(
                fs.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        needed_blobs.insert(v[0]["Manifest"]["digest"].as_str().unwrap()[7..].to_string());
        needed_blobs.insert(id[7..].to_string());
    }
    let (_, blobs, snapshots, tmp) = store_state(&store);
    assert!(tmp.is_empty(), "leftovers in tmp: {tmp:?}");
    let snapshots: std::collections::BTreeSet<String> = snapshots.into_iter().collect();
    assert_eq!(
        snapshots, needed_snapshots,
        "snapshots no image needs, or missing ones"
    );
    for b in needed_blobs {
        assert!(blobs.contains(&b), "blob {b} missing");
    }
}

#[test]
fn concurrent_loads_and_rmi_keep_the_store_consistent() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let archives: Vec<PathBuf> = [
        "ferry/busybox:oci",
        "ferry/multilayer:oci",
        "ferry/duplayer:docker",
        "ferry/many:oci",
    ]
    .iter()
    .map(|t| sup::fetch(s, h, t, h))
    .chain([docker_save(s, "ferry/multilayer:docker", h)])
    .collect();
    // Six loads at once, all sharing the busybox base layer, one archive twice.
    let children: Vec<_> = archives
        .iter()
        .chain([&archives[1]])
        .map(|a| {
            ferry(h)
                .args(["load", "--progress", "none", "-i"])
                .arg(a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let r: Ran = c.wait_with_output().unwrap().into();
        r.ok();
    }
    assert_store_consistent(h);
    let listed = run(ferry(h).args(["images", "--format", "json"])).ok();
    assert_eq!(listed.stdout.lines().count(), 5, "{}", listed.stdout);

    // rmi while a large load runs: both finish, the store stays consistent. The load reads
    // the archive from a pipe that the test holds half-fed until rmi has finished, so the
    // load is certainly still running while rmi works.
    let large = docker_save(s, "ferry/large:docker", h);
    let mut big = ferry(h)
        .args(["load", "--progress", "none"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&large).unwrap();
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    let mut feed = big.stdin.take().unwrap();
    // Returns once the load has taken all but a pipe's buffer of the first half.
    feed.write_all(first).unwrap();
    let mut rmi = ferry(h)
        .args([
            "rmi",
            &s.image("ferry/busybox:oci"),
            &s.image("ferry/multilayer:oci"),
            &s.image("ferry/multilayer:docker"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while rmi.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rmi waited for the running load to finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let removed: Ran = rmi.wait_with_output().unwrap().into();
    removed.ok();
    assert!(
        big.try_wait().unwrap().is_none(),
        "the load ended before rmi did: nothing ran concurrently"
    );
    feed.write_all(rest).unwrap();
    drop(feed);
    let r: Ran = big.wait_with_output().unwrap().into();
    let r = r.ok();
    assert!(
        loaded(&r.stdout, &s.image("ferry/large:docker"))
            || loaded(&r.stdout, &s.image("ferry/large:oci")),
        "{}",
        r.stdout
    );
    // Collection was put off while the load ran; a prune now does it.
    run(ferry(h).args(["system", "prune", "-f"])).ok();
    assert_store_consistent(h);
    let left = run(ferry(h).args(["images"])).ok();
    assert!(!left.stdout.contains("ferry/multilayer"), "{}", left.stdout);
    assert!(left.stdout.contains("ferry/large"), "{}", left.stdout);
}

#[test]
fn kill_9_at_any_moment_leaves_no_image_or_the_complete_one() {
    let s = require_services!();
    let work = tempdir();
    let w = work.path();
    let tag = "ferry/large:docker";
    let archive = docker_save(s, tag, w);
    let id = config_digest(s, tag);
    // How long a whole load takes here, to spread the kills over it.
    let probe = w.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let t0 = Instant::now();
    load(&probe, &archive).ok();
    let full = t0.elapsed();
    std::fs::remove_dir_all(&probe).unwrap();

    let home = w.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut outcomes = Vec::new();
    for i in 0..8 {
        // Spread over the whole load, the last ones near its end (commit).
        let frac = if i < 5 {
            (sup::rand_u64() % 1000) as f64 / 1000.0
        } else {
            0.85 + (sup::rand_u64() % 200) as f64 / 1000.0
        };
        let delay = full.mul_f64(frac);
        let mut child = ferry(&home)
            .args(["load", "--progress", "none", "-i"])
            .arg(&archive)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        // The next command recovers; the image is either absent or complete.
        let ids = run(ferry(&home).args(["images", "-q", "--no-trunc"])).ok();
        let present = ids.stdout.lines().any(|l| l == id);
        outcomes.push((delay, status.code(), present));
        assert_store_consistent(&home);
        if present {
            let layers = snapshot_layers(&home, &id);
            assert_eq!(layers.len(), 5);
            run(ferry(&home).args(["rmi", &id])).ok();
            assert_store_consistent(&home);
        }
        let (index, blobs, snapshots, tmp) = store_state(&home.join("store"));
        assert!(
            blobs.is_empty() && snapshots.is_empty() && tmp.is_empty(),
            "{outcomes:?}: leftovers {blobs:?} {snapshots:?} {tmp:?}"
        );
        let _ = index;
    }
    eprintln!("kill -9 outcomes (delay, exit code, image present): {outcomes:?}");
    assert!(
        outcomes.iter().any(|(_, code, _)| code.is_none()),
        "no load was actually killed: {outcomes:?}"
    );
    let r = load(&home, &archive).ok();
    let name = loaded_name(&r);
    let m = OverlayMount::new(&snapshot_layers(&home, &name), &home.join("mnt"));
    for n in 1..=4 {
        assert_eq!(
            std::fs::metadata(m.path.join(format!("data/{n}.bin")))
                .unwrap()
                .len(),
            128 << 20
        );
    }
}

#[test]
fn save_round_trips_through_ferry_and_docker() {
    let s = require_services!();
    let work = tempdir();
    let w = work.path();

    // A fetched archive, loaded and saved again, comes back byte for byte: blobs are kept
    // exactly as loaded and the layout is ferry fetch's.
    let tag = "ferry/multilayer:oci";
    let fetched = sup::fetch(s, w, tag, w);
    load(w, &fetched).ok();
    let saved = w.join("saved.tar");
    run(ferry(w).args(["save", &s.image(tag), "-o"]).arg(&saved)).ok();
    assert_eq!(
        sha256_file(&saved),
        sha256_file(&fetched),
        "save of a fetched image differs from the fetch"
    );

    // docker save (no manifest in the archive) → ferry load → ferry save → docker load and
    // ferry load: the same image ID everywhere.
    let docker_tag = "ferry/multilayer:docker";
    let legacy = docker_save(s, docker_tag, w);
    let home = w.join("from-docker");
    std::fs::create_dir_all(&home).unwrap();
    let name = loaded_name(&load(&home, &legacy).ok());
    let unique = format!("ferry-it/roundtrip-{}:v1", sup::rand_u64() % 1_000_000);
    run(ferry(&home).args(["tag", &name, &unique])).ok();
    let out = w.join("roundtrip.tar");
    run(ferry(&home).args(["save", &unique, "-o"]).arg(&out)).ok();
    let d = run(s.docker().arg("load").arg("-i").arg(&out)).ok();
    assert!(d.stdout.contains(&unique), "{}", d.stdout);
    let docker_id = run(s
        .docker()
        .args(["image", "inspect", "--format", "{{.Id}}", &unique]))
    .ok();
    run(s.docker().args(["rmi", &unique])).ok();
    assert_eq!(docker_id.stdout.trim(), config_digest(s, docker_tag));
    let again = w.join("again");
    std::fs::create_dir_all(&again).unwrap();
    let r = load(&again, &out).ok();
    assert!(loaded(&r.stdout, &unique), "{}", r.stdout);
    assert_eq!(ferry_id(&again, &unique), config_digest(s, docker_tag));
    let first = run(ferry(&home).args(["image", "inspect", &unique])).ok();
    let second = run(ferry(&again).args(["image", "inspect", &unique])).ok();
    let manifest = |o: &Ran| {
        serde_json::from_str::<Value>(&o.stdout).unwrap()[0]["Manifest"]["digest"].clone()
    };
    assert_eq!(
        manifest(&first),
        manifest(&second),
        "the manifest changed on the way"
    );

    // Saved by ID: no name, as with docker save ID.
    let by_id = w.join("by-id.tar");
    let id = config_digest(s, docker_tag);
    run(ferry(&home).args(["save", &id[7..19], "-o"]).arg(&by_id)).ok();
    let fresh = w.join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let r = load(&fresh, &by_id).ok();
    assert!(
        r.stdout.contains(&format!("Loaded image ID: {id}")),
        "{}",
        r.stdout
    );
}

#[test]
fn images_tag_rmi_and_prune_behave_like_docker() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let tag = "ferry/busybox:oci";
    let name = s.image(tag);
    let id = config_digest(s, tag);
    load(h, &sup::fetch(s, h, tag, h)).ok();
    run(ferry(h).args(["tag", &name, "busybox"])).ok();
    for alias in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        &id,
        &id[7..19],
        &name,
    ] {
        assert_eq!(ferry_id(h, alias), id, "{alias}");
    }
    let table = run(ferry(h).args(["images", "--digests"])).ok();
    assert!(table.stdout.starts_with("REPOSITORY"), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains(s.facts(tag)["manifest_digest"].as_str().unwrap()),
        "{}",
        table.stdout
    );
    assert_eq!(table.stdout.lines().count(), 3, "{}", table.stdout);
    let json = run(ferry(h).args(["images", "--format", "json", "busybox"])).ok();
    let row: Value = serde_json::from_str(json.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(row["Repository"], "busybox");
    assert_eq!(row["Tag"], "latest");
    assert_eq!(
        run(ferry(h).args(["images", "-q"])).ok().stdout.trim(),
        &id[7..19]
    );

    // By ID with two names: refused without -f.
    let r = run(ferry(h).args(["rmi", &id])).failed();
    assert!(
        r.stderr.contains("several names") && r.stderr.contains("hint:"),
        "{}",
        r.stderr
    );
    // By name: only that name goes.
    let r = run(ferry(h).args(["rmi", "busybox"])).ok();
    assert_eq!(r.stdout.trim(), "Untagged: busybox:latest");

    // A container uses it: refused, then -f only untags, prune keeps it.
    let c = h.join("store/containers/c0ffee");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("ferry.json"), format!("{{\"image_id\":\"{id}\"}}")).unwrap();
    let r = run(ferry(h).args(["rmi", &name])).failed();
    r.assert_stderr("used by container c0ffee");
    let r = run(ferry(h).args(["rmi", "-f", &name])).ok();
    assert!(
        r.stdout.contains("Untagged:") && !r.stdout.contains("Deleted:"),
        "{}",
        r.stdout
    );
    let none = run(ferry(h).args(["images"])).ok();
    assert!(none.stdout.contains("<none>"), "{}", none.stdout);
    run(ferry(h).args(["system", "prune", "-f"])).ok();
    assert_eq!(
        ferry_id(h, &id),
        id,
        "prune removed an image a container uses"
    );
    let layers = snapshot_layers(h, &id);
    assert!(layers.iter().all(|l| l.is_dir()));
    let df = run(ferry(h).args(["system", "df"])).ok();
    assert!(
        df.stdout.contains("Images") && df.stdout.contains("Containers"),
        "{}",
        df.stdout
    );

    // The container is gone: prune removes the image and everything it had.
    std::fs::remove_dir_all(&c).unwrap();
    let r = run(ferry(h).args(["system", "prune", "-f"])).ok();
    assert!(r.stdout.contains(&format!("deleted: {id}")), "{}", r.stdout);
    let (_, blobs, snapshots, tmp) = store_state(&h.join("store"));
    assert!(
        blobs.is_empty() && snapshots.is_empty() && tmp.is_empty(),
        "{blobs:?} {snapshots:?} {tmp:?}"
    );

    // Loading another image under a taken name moves the name; the old image stays unnamed.
    load(h, &sup::fetch(s, h, tag, h)).ok();
    let other = legacy_archive(&[layer(&[("x", "y")])], &name, |_| {});
    let other_path = h.join("other.tar");
    std::fs::write(&other_path, other).unwrap();
    load(h, &other_path).ok();
    assert_ne!(ferry_id(h, &name), id);
    assert_eq!(ferry_id(h, &id), id);
    let listed = run(ferry(h).args(["images"])).ok();
    assert!(listed.stdout.contains("<none>"), "{}", listed.stdout);
    // A name that moves to another manifest of the same image (Docker and OCI flavours share
    // the config) leaves no unnamed copy behind: removing the name removes the image.
    let other_store = h.join("second");
    std::fs::create_dir_all(&other_store).unwrap();
    let docker_flavour = s.image("ferry/busybox:docker");
    load(&other_store, &sup::fetch(s, h, "ferry/busybox:docker", h)).ok();
    run(ferry(&other_store).args(["tag", &docker_flavour, "x:1"])).ok();
    let x_docker = h.join("x-docker.tar");
    run(ferry(&other_store)
        .args(["save", "x:1", "-o"])
        .arg(&x_docker))
    .ok();
    let third = h.join("third");
    std::fs::create_dir_all(&third).unwrap();
    load(&third, &sup::fetch(s, h, tag, h)).ok();
    run(ferry(&third).args(["tag", &name, "x:1"])).ok();
    run(ferry(&third).args(["rmi", &name])).ok();
    load(&third, &x_docker).ok();
    let r = run(ferry(&third).args(["rmi", "x:1"])).ok();
    assert_eq!(r.stdout.trim(), format!("Untagged: x:1\nDeleted: {id}"));

    let missing = run(ferry(h).args(["image", "inspect", "nope:nope"])).failed();
    missing.assert_stderr("no such image: nope:nope");
}

#[test]
fn verify_and_inspect_read_archives_without_a_store() {
    let s = require_services!();
    let home = tempdir();
    let h = home.path();
    let tag = "ferry/multilayer:docker";
    let archive = sup::fetch(s, h, tag, h);
    let r = run(ferry(h)
        .args(["verify", "--progress", "none"])
        .arg(&archive))
    .ok();
    assert!(r.stdout.contains("matches"), "{}", r.stdout);
    assert!(r.stdout.contains(&s.image(tag)), "{}", r.stdout);
    assert!(!h.join("store").exists(), "verify created a store");

    let j = run(ferry(h)
        .args(["inspect", "--format", "json", "--progress", "none"])
        .arg(&archive))
    .ok();
    let v: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["Images"][0]["Id"], s.facts(tag)["config_digest"]);
    assert_eq!(
        v["Images"][0]["Manifest"]["digest"],
        s.facts(tag)["manifest_digest"]
    );
    assert_eq!(v["Images"][0]["Names"][0], s.image(tag));
    let legacy = docker_save(s, tag, h);
    let t = run(ferry(h)
        .args(["inspect", "--progress", "none"])
        .arg(&legacy))
    .ok();
    assert!(t.stdout.contains("written by ferry"), "{}", t.stdout);

    // A changed byte anywhere: the .sha256 beside it no longer matches.
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    let r = run(ferry(h)
        .args(["verify", "--progress", "none"])
        .arg(&archive))
    .failed();
    r.assert_stderr("does not match");
}

#[test]
fn a_user_without_root_gets_portable_snapshots_that_materialise_correctly() {
    let s = require_services!();
    if !root_or_skip("switching to an unprivileged user") {
        return;
    }
    let work = tempdir_for_any_user();
    let w = work.path();
    // A directory the unprivileged user owns, with the archives readable in it.
    let user_dir = w.join("user");
    std::fs::create_dir(&user_dir).unwrap();
    run(Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&user_dir))
    .ok();
    let archive = sup::fetch(s, w, "ferry/multilayer:oci", &user_dir);
    let mut devices = tar::Builder::new(Vec::new());
    raw_entry(&mut devices, "dev/", tar::EntryType::Directory, b"", "");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_path("dev/null").unwrap();
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_cksum();
    devices.append(&h, &b""[..]).unwrap();
    let dev_archive = user_dir.join("devices.tar");
    std::fs::write(
        &dev_archive,
        legacy_archive(
            &[devices.into_inner().unwrap(), layer(&[("ok", "fine")])],
            "devices:latest",
            |_| {},
        ),
    )
    .unwrap();
    run(Command::new("chmod").args(["-R", "a+rX"]).arg(&user_dir)).ok();
    let store = user_dir.join("store");
    let as_user = |args: &[&str]| -> Ran {
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_ferry"))
            .arg("--root")
            .arg(&store)
            .args(args)
            .env("HOME", &user_dir)
            .stdin(Stdio::null()))
    };
    let r = as_user(&[
        "load",
        "--progress",
        "none",
        "-i",
        archive.to_str().unwrap(),
    ])
    .ok();
    let name = loaded_name(&r);
    let r = as_user(&[
        "load",
        "--progress",
        "none",
        "-i",
        dev_archive.to_str().unwrap(),
    ])
    .ok();
    r.assert_stderr("skipped 1 device node");

    // As root, read the user's store: portable snapshots, and the merged view is right.
    let layers = {
        let out = as_user(&["image", "inspect", &name]).ok();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v[0]["Snapshots"]["Format"], "portable");
        v[0]["Snapshots"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| PathBuf::from(p.as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    assert!(
        layers[2].join("app/.wh.delete-me.txt").exists(),
        "no portable whiteout in {}",
        layers[2].display()
    );
    assert!(layers[2].join("data/old/.wh..wh..opq").exists());
    let root = w.join("rootfs");
    std::fs::create_dir(&root).unwrap();
    ferry_load::store::materialize(&layers, &root).unwrap();
    let m = sup::dir_manifest(&root);
    assert!(
        m.contains_key("app/keep.txt") && !m.contains_key("app/delete-me.txt"),
        "{m:?}"
    );
    assert!(
        m.contains_key("data/old/c") && !m.contains_key("data/old/a"),
        "{m:?}"
    );
    assert!(
        !m.keys().any(|k| k.contains(".wh.")),
        "whiteout files leaked into the rootfs"
    );
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the test can run as root; without root it fails under CI (where scripts/test runs
/// as root) and is skipped loudly elsewhere.
fn root_or_skip(what: &str) -> bool {
    if rustix_is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} needs root, and CI runs the tests as root");
    }
    eprintln!("SKIPPED: {what} needs root");
    false
}

/// `ferry.exe` (from `scripts/build-windows`) under wine, as `windows.rs` runs it; `None` when
/// it was not built (outside CI).
fn wine_ferry(dir: &Path, args: &[&str]) -> Option<Ran> {
    let target = crate::harness::workspace().join("target");
    let exe = target.join("x86_64-pc-windows-gnu/release/ferry.exe");
    let shim = target.join("wine/bcryptprimitives.dll");
    if !exe.exists() || !shim.exists() {
        if std::env::var_os("CI").is_some() {
            panic!("ferry.exe is missing; scripts/test runs scripts/build-windows first");
        }
        eprintln!("SKIPPED: run scripts/build-windows to test ferry.exe under wine");
        return None;
    }
    std::fs::copy(&exe, dir.join("ferry.exe")).unwrap();
    std::fs::copy(&shim, dir.join("bcryptprimitives.dll")).unwrap();
    Some(run(Command::new("wine")
        .arg(dir.join("ferry.exe"))
        .args(args)
        .current_dir(dir)
        .env("WINEPREFIX", target.join("wine/prefix"))
        .env("WINEDEBUG", "-all")))
}

#[test]
fn ferry_exe_verifies_and_inspects_archives_on_windows() {
    let s = require_services!();
    let work = tempdir();
    let w = work.path();
    let tag = "ferry/multilayer:oci";
    let archive = sup::fetch(s, w, tag, w);
    let name = archive.file_name().unwrap().to_str().unwrap().to_string();
    let Some(r) = wine_ferry(w, &["verify", "--progress", "none", &name]) else {
        return;
    };
    let r = r.ok();
    assert!(
        r.stdout.contains("matches") && r.stdout.contains(&s.image(tag)),
        "{}",
        r.stdout
    );
    let r = wine_ferry(
        w,
        &["inspect", "--format", "json", "--progress", "none", &name],
    )
    .unwrap()
    .ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["Images"][0]["Id"], s.facts(tag)["config_digest"]);
    // A damaged copy fails on Windows too, naming the blob.
    let (off, len) = largest_entry(&archive);
    flip_byte(&archive, off + len / 2);
    let r = wine_ferry(w, &["verify", "--progress", "none", &name])
        .unwrap()
        .failed();
    let blob = s.facts(tag)["layer_digests"][0].as_str().unwrap();
    r.assert_stderr(blob);
}

/// Absolute symlinks in layers name host files (Debian's `/etc/alternatives/*`, a hostile
/// layer's link to `/`). Replacing a directory that holds such links during a load, and
/// removing the image afterwards, must delete the links and never change what they point at.
#[test]
fn replacing_and_removing_symlinks_never_touches_their_host_targets() {
    use std::os::unix::fs::PermissionsExt;
    let _s = require_services!();
    let home = tempdir();
    let h = home.path();
    let canary = h.join("canary");
    std::fs::write(&canary, "host file").unwrap();
    std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = canary.to_str().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    // A directory with absolute links, replaced by a file later in the same layer.
    raw_entry(&mut b, "d/", tar::EntryType::Directory, b"", "");
    raw_entry(&mut b, "d/x", tar::EntryType::Symlink, b"", c);
    raw_entry(&mut b, "d", tar::EntryType::Regular, b"now a file", "");
    // A link that stays in the snapshot until the image is removed.
    raw_entry(&mut b, "kept", tar::EntryType::Symlink, b"", c);
    let archive = h.join("links.tar");
    std::fs::write(
        &archive,
        legacy_archive(&[b.into_inner().unwrap()], "links:latest", |_| {}),
    )
    .unwrap();
    load(h, &archive).ok();
    let mode = || std::fs::metadata(&canary).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(),
        0o644,
        "loading changed the mode of a symlink's host target"
    );
    run(ferry(h).args(["rmi", "links:latest"])).ok();
    run(ferry(h).args(["system", "prune", "-a", "-f"])).ok();
    assert_eq!(
        mode(),
        0o644,
        "removing the image changed a symlink's host target"
    );
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host file");
}
