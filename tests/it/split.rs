//! Archives split into parts for size-limited media: `ferry fetch --split`, `ferry save
//! --split`, read back by `cat | docker load`, `ferry load` and `ferry verify`, with part
//! boundaries cutting through a layer, through a tar header and falling between entries.

use std::io::Read;
use std::path::{Path, PathBuf};

use ferry_testkit::{FaultProxy, Plan};

use crate::harness::{ferry, run, sha256_file, tempdir};
use crate::load_support::store_state;
use crate::push::{entry_offsets, fetch, fetch_from, parts};
use crate::require_services;

/// sha256 of the parts read one after the other.
fn sha256_parts(parts: &[PathBuf]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut h).unwrap();
    }
    hex::encode(h.finalize())
}

fn load(home: &Path, first: &Path) -> crate::harness::Ran {
    run(ferry(home)
        .args(["load", "--progress", "none", "-i"])
        .arg(first))
}

fn verify(home: &Path, first: &Path) -> crate::harness::Ran {
    run(ferry(home)
        .args(["verify", "--progress", "none"])
        .arg(first))
}

#[test]
fn split_fetches_cut_anywhere_and_read_back_whole() {
    let s = require_services!();
    let home = tempdir();
    let image = "ferry/multilayer:oci";
    let whole = home.path().join("whole.tar");
    fetch(s, home.path(), &whole, &[image], &[]).ok();
    let want = sha256_file(&whole);
    let entries = entry_offsets(&whole);
    let layer = s.facts(image)["layer_digests"][0].as_str().unwrap()[7..].to_string();
    let (_, layer_header, _) = entries
        .iter()
        .find(|(p, ..)| p.ends_with(&layer))
        .expect("the busybox layer is in the archive");
    let (_, config_header, _) = entries
        .iter()
        .find(|(p, ..)| p.ends_with(&s.facts(image)["config_digest"].as_str().unwrap()[7..]))
        .unwrap();
    let sizes = [
        ("inside a layer", layer_header + 512 + 100_000),
        ("inside a header", config_header + 100),
        ("between entries", *layer_header),
    ];
    for (what, size) in sizes {
        let dir = home.path().join(format!("split-{size}"));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("x.tar");
        fetch(s, &dir, &base, &[image], &["--split", &size.to_string()]).ok();
        let found = parts(&base);
        assert!(found.len() >= 2, "{what}: {found:?}");
        for (i, p) in found.iter().enumerate() {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(len <= size, "{what}: {} is {len} bytes", p.display());
            if i + 1 < found.len() {
                assert_eq!(len, size, "{what}: a part before the last is short");
            }
        }
        assert_eq!(
            sha256_parts(&found),
            want,
            "{what}: the parts are not the archive"
        );
        assert!(
            !base.exists(),
            "a whole archive was written beside the parts"
        );
        // One checksum file lists every part, in sha256sum's format.
        let sums = std::fs::read_to_string(format!("{}.sha256", base.display())).unwrap();
        for p in &found {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                sums.contains(&format!("{}  {name}\n", sha256_file(p))),
                "{what}: {name} is not in the checksum file:\n{sums}"
            );
        }
        let ran = verify(&dir, &found[0]).ok();
        assert!(
            ran.stdout.contains(&format!("ok  {} parts", found.len())),
            "{}",
            ran.stdout
        );
        load(&dir, &found[0]).ok();
    }
    // cat of the parts is what docker load reads.
    let dir = home.path().join(format!("split-{}", sizes[0].1));
    let mut cat = std::process::Command::new("sh");
    cat.arg("-c")
        .arg(format!("cat x.tar.0* | {} load", s.var("DOCKER")))
        .current_dir(&dir);
    let loaded = run(&mut cat).ok();
    assert!(loaded.stdout.contains("Loaded image"), "{}", loaded.stdout);
    let out = run(s
        .docker()
        .args(["run", "--rm", &format!("{}/{image}", s.registry())]))
    .ok();
    assert_eq!(out.stdout.trim(), s.expected_stdout(image));
}

#[test]
fn a_missing_or_corrupt_part_is_named_and_nothing_is_loaded() {
    let s = require_services!();
    let home = tempdir();
    let base = home.path().join("x.tar");
    fetch(
        s,
        home.path(),
        &base,
        &["ferry/multilayer:oci"],
        &["--split", "300K"],
    )
    .ok();
    let found = parts(&base);
    assert!(found.len() >= 4, "{found:?}");
    let store = home.path().join("store");
    run(ferry(home.path()).arg("images")).ok();
    let before = store_state(&store);

    // A part in the middle, and the last one (known from the checksum file).
    for missing in [1, found.len() - 1] {
        let aside = home.path().join("aside");
        std::fs::rename(&found[missing], &aside).unwrap();
        let name = found[missing]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for ran in [load(home.path(), &found[0]), verify(home.path(), &found[0])] {
            let ran = ran.failed();
            ran.assert_stderr(&name);
            ran.assert_stderr("missing");
        }
        std::fs::rename(&aside, &found[missing]).unwrap();
    }
    assert_eq!(
        store_state(&store),
        before,
        "a failed load changed the store"
    );

    // A corrupt part: one byte changed in the middle of the second.
    let mut bytes = std::fs::read(&found[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&found[1], &bytes).unwrap();
    let name = found[1].file_name().unwrap().to_string_lossy().into_owned();
    for ran in [verify(home.path(), &found[0]), load(home.path(), &found[0])] {
        let ran = ran.failed();
        ran.assert_stderr(&name);
        ran.assert_stderr("corrupt");
    }
    assert_eq!(
        store_state(&store),
        before,
        "a corrupt archive changed the store"
    );
}

#[test]
fn save_split_writes_parts_of_the_saved_archive() {
    let s = require_services!();
    let home = tempdir();
    let archive = home.path().join("a.tar");
    fetch(s, home.path(), &archive, &["ferry/multilayer:oci"], &[]).ok();
    let ran = run(ferry(home.path())
        .args(["load", "--progress", "none", "-i"])
        .arg(&archive))
    .ok();
    let name = ran
        .stdout
        .trim()
        .strip_prefix("Loaded image: ")
        .unwrap()
        .to_string();
    let base = home.path().join("saved.tar");
    run(ferry(home.path())
        .args(["save", &name, "--split", "256K", "-o"])
        .arg(&base))
    .ok();
    let found = parts(&base);
    assert!(found.len() >= 4, "{found:?}");
    // ferry save of a fetched image is the fetched archive, byte for byte.
    assert_eq!(sha256_parts(&found), sha256_file(&archive));
    let other = home.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    load(&other, &found[0]).ok();
    verify(&other, &found[0]).ok();
}

#[test]
fn a_split_fetch_resumes_like_a_whole_one() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let whole = home.path().join("whole");
    std::fs::create_dir_all(&whole).unwrap();
    let reference = whole.join("u.tar");
    fetch_from(&whole, &proxy.addr, &reference, &["ferry/update:1"], &[]).ok();
    // Every blob response longer than 2 MiB (the 4 MiB layer's) drops there, and no retry
    // is allowed: the fetch stops, with the busybox layer already in.
    proxy.set_plan(Plan {
        cut_blob_after: Some((2 << 20, 100)),
        ..Plan::default()
    });
    let base = home.path().join("u.tar");
    let first = fetch_from(
        home.path(),
        &proxy.addr,
        &base,
        &["ferry/update:1"],
        &["--split", "1M", "--retries", "1", "--concurrency", "1"],
    );
    first.failed();
    assert!(
        parts(&base).is_empty(),
        "parts appeared before the archive was complete"
    );
    proxy.set_plan(Plan::default());
    proxy.reset_counters();
    fetch_from(
        home.path(),
        &proxy.addr,
        &base,
        &["ferry/update:1"],
        &["--split", "1M"],
    )
    .ok();
    let sizes: Vec<u64> = s.facts("ferry/update:1")["layer_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // The busybox layer (the first) was in already; the rest, and the config, come again.
    assert!(
        proxy.blob_bytes() <= sizes[1] + sizes[2] + 4096,
        "the rerun downloaded {} bytes, the busybox layer ({}) again",
        proxy.blob_bytes(),
        sizes[0]
    );
    assert_eq!(sha256_parts(&parts(&base)), sha256_file(&reference));
    let mut first_part = Vec::new();
    std::fs::File::open(&parts(&base)[0])
        .unwrap()
        .read_to_end(&mut first_part)
        .unwrap();
    assert_eq!(first_part.len(), 1 << 20);
}
