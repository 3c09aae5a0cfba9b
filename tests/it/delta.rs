//! Delta archives for the next trip: `ferry inventory` on the offline side, `ferry fetch --have`
//! (or `--since`) on the online side, and what `ferry load`, `ferry push`, `ferry inspect`,
//! `ferry verify` and `docker load` make of the result. The update case: `ferry/update:2`
//! changes only the top layer of `ferry/update:1`.

use std::path::Path;

use ferry_testkit::{FaultProxy, Plan};
use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run, tar_entries, tempdir, unique};
use crate::load_support::store_state;
use crate::push::{fetch, push, registry_digest};
use crate::require_services;

fn layer(s: &Services, tag: &str, i: usize) -> String {
    s.facts(tag)["layer_digests"][i]
        .as_str()
        .unwrap()
        .to_string()
}

fn blobs_in(archive: &Path) -> Vec<String> {
    tar_entries(archive)
        .into_iter()
        .filter_map(|(p, _)| {
            p.strip_prefix("blobs/sha256/")
                .filter(|h| h.len() == 64)
                .map(|h| format!("sha256:{h}"))
        })
        .collect()
}

fn load(home: &Path, archive: &Path) -> Ran {
    run(ferry(home)
        .args(["load", "--progress", "none", "-i"])
        .arg(archive))
}

/// `ferry fetch --have have.json ferry/update:2 -o out` (a delta against `have`).
fn fetch_delta(s: &Services, home: &Path, have: &Path, out: &Path) -> Ran {
    run(crate::harness::fetch_from(home, s.registry())
        .arg("--have")
        .arg(have)
        .arg("-o")
        .arg(out)
        .arg(s.image("ferry/update:2")))
}

/// A store holding `ferry/update:1`, its inventory, and the delta of `ferry/update:2` against it.
fn far_side_with_update_1(s: &Services, home: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let u1 = home.join("u1.tar");
    fetch(s, home, &u1, &["ferry/update:1"], &[]).ok();
    load(home, &u1).ok();
    // A fresh cache: nothing learnt here may help the other side.
    let _ = std::fs::remove_dir_all(home.join("cache"));
    let have = home.join("have.json");
    run(ferry(home).args(["inventory", "-o"]).arg(&have)).ok();
    (u1, have)
}

#[test]
fn a_delta_holds_only_the_changed_layer_and_loads_where_the_base_is() {
    let s = require_services!();
    let home = tempdir();
    let (u1, have) = far_side_with_update_1(s, home.path());
    let inventory: Value = serde_json::from_slice(&std::fs::read(&have).unwrap()).unwrap();
    let held: Vec<&str> = inventory["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert!(
        held.contains(&layer(s, "ferry/update:1", 1).as_str()),
        "{inventory}"
    );

    let delta = home.path().join("u2-delta.tar");
    let whole = home.path().join("u2.tar");
    fetch(s, home.path(), &whole, &["ferry/update:2"], &[]).ok();
    let delta_ran = fetch_delta(s, home.path(), &have, &delta).ok();
    delta_ran.assert_stderr("2 layers");
    delta_ran.assert_stderr("left out");
    let facts = s.facts("ferry/update:2");
    let mut want = vec![
        facts["manifest_digest"].as_str().unwrap().to_string(),
        facts["config_digest"].as_str().unwrap().to_string(),
        layer(s, "ferry/update:2", 2),
    ];
    want.sort();
    let mut got = blobs_in(&delta);
    got.sort();
    assert_eq!(
        got, want,
        "the delta holds more (or less) than the changed layer"
    );
    let (delta_len, whole_len) = (
        std::fs::metadata(&delta).unwrap().len(),
        std::fs::metadata(&whole).unwrap().len(),
    );
    eprintln!("update delta: {delta_len} bytes, whole archive {whole_len} bytes");
    assert!(delta_len < 64 << 10 && whole_len > 5 << 20);

    // --since the archive the far side loaded leaves out the same.
    let since = home.path().join("u2-since.tar");
    run(crate::harness::fetch_from(home.path(), s.registry())
        .arg("--since")
        .arg(&u1)
        .arg("-o")
        .arg(&since)
        .arg(s.image("ferry/update:2")))
    .ok();
    let mut since_blobs = blobs_in(&since);
    since_blobs.sort();
    assert_eq!(since_blobs, want);

    // inspect and verify say what it is and what it needs.
    let inspect = run(ferry(home.path())
        .args(["inspect", "--progress", "none"])
        .arg(&delta))
    .ok();
    assert!(inspect.stdout.contains("delta:"), "{}", inspect.stdout);
    assert!(
        inspect.stdout.contains(&layer(s, "ferry/update:2", 1)),
        "{}",
        inspect.stdout
    );
    let verify = run(ferry(home.path())
        .args(["verify", "--progress", "none"])
        .arg(&delta))
    .ok();
    assert!(verify.stdout.contains("delta archive"), "{}", verify.stdout);

    // Docker cannot complete it, and says so in its own words.
    let docker = run(s.docker().arg("load").arg("-i").arg(&delta)).failed();
    assert!(
        docker.stderr.contains(&layer(s, "ferry/update:2", 0)[7..])
            || docker.stderr.contains(&layer(s, "ferry/update:2", 1)[7..]),
        "{}",
        docker.stderr
    );

    // The store with update 1 completes it, and it runs.
    load(home.path(), &delta).ok();
    let out = run(ferry(home.path()).args(["run", "--rm", &s.image("ferry/update:2")])).ok();
    assert_eq!(out.stdout.trim(), "update version=2");

    // An empty store refuses it before changing anything, naming what it lacks.
    let empty = home.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    run(ferry(&empty).args(["images"])).ok();
    let before = store_state(&empty.join("store"));
    let refused = load(&empty, &delta).failed();
    refused.assert_stderr(&layer(s, "ferry/update:2", 1));
    refused.assert_stderr("lacks");
    assert_eq!(
        store_state(&empty.join("store")),
        before,
        "a refused delta changed the store"
    );
    // The same through standard input, where nothing can be read ahead.
    let piped = run(ferry(&empty)
        .args(["load", "--progress", "none"])
        .stdin(std::fs::File::open(&delta).unwrap()))
    .failed();
    piped.assert_stderr(&layer(s, "ferry/update:2", 1));
    assert_eq!(store_state(&empty.join("store")), before);
}

#[test]
fn a_delta_against_a_registry_pushes_into_it_and_is_refused_where_the_base_is_missing() {
    let s = require_services!();
    let home = tempdir();
    let u1 = home.path().join("u1.tar");
    fetch(s, home.path(), &u1, &["ferry/update:1"], &[]).ok();
    let prefix = unique("delta");
    let to = format!("{}/{prefix}", s.push_registry());
    push(home.path(), &to, &[&u1], &[]).ok();
    let have = home.path().join("registry.json");
    run(ferry(home.path())
        .args([
            "inventory",
            "--insecure-registry",
            s.push_registry(),
            "--registry",
            &to,
            "-o",
        ])
        .arg(&have))
    .ok();
    let inv: Value = serde_json::from_slice(&std::fs::read(&have).unwrap()).unwrap();
    let base = layer(s, "ferry/update:1", 1);
    let entry = inv["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["digest"] == base.as_str())
        .unwrap_or_else(|| panic!("the registry's inventory lacks the base layer: {inv}"));
    assert_eq!(
        entry["repositories"][0],
        format!("{prefix}/ferry/update").as_str()
    );

    let delta = home.path().join("u2-delta.tar");
    fetch_delta(s, home.path(), &have, &delta).ok();
    push(home.path(), &to, &[&delta], &[]).ok();
    assert_eq!(
        registry_digest(s.push_registry(), &format!("{prefix}/ferry/update"), "2").as_deref(),
        s.facts("ferry/update:2")["manifest_digest"].as_str()
    );

    // Into a registry that lacks the base (and a cache that knows nothing): refused before
    // anything is written.
    let fresh = home.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let (_, store_have) = far_side_with_update_1(s, &fresh);
    let store_delta = fresh.join("store-delta.tar");
    fetch_delta(s, &fresh, &store_have, &store_delta).ok();
    let proxy = FaultProxy::start(s.push_registry(), Plan::default()).unwrap();
    let empty_prefix = unique("delta-empty");
    let refused = push(
        &fresh,
        &format!("{}/{empty_prefix}", proxy.addr),
        &[&store_delta],
        &[],
    )
    .failed();
    refused.assert_stderr(&base);
    refused.assert_stderr("lacks 2 blobs");
    let writes: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "a refused delta push wrote: {writes:?}");
    assert_eq!(
        registry_digest(
            s.push_registry(),
            &format!("{empty_prefix}/ferry/update"),
            "2"
        ),
        None
    );
}
