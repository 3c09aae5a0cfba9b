//! What reaches the disk, and in which order: traced with `strace`, since this machine has no
//! device-mapper to cut the power under a real load (no dm-log-writes). A publishing rename
//! (a staged snapshot into the store, index.json, FILE.tar) must come after the syncs of what
//! it publishes; and loading what the store already has must write nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Ran, Services, ferry, fetch_cmd, run, tempdir};
use crate::load_support::docker_save;
use crate::require_services;

/// One completed system call of a trace: its name and its text (paths of descriptors shown,
/// `strace -y`).
#[derive(Debug, Clone)]
struct Call {
    name: String,
    text: String,
}

/// Runs `cmd` under `strace -f -y`, tracing `calls`; returns its result and the calls in the
/// order they completed.
fn traced(cmd: Command, calls: &str, dir: &Path) -> (Ran, Vec<Call>) {
    let out = dir.join(format!("trace-{}.txt", crate::load_support::rand_u64()));
    let mut s = Command::new("strace");
    s.args(["-f", "-y", "-qq", "-s", "0", "-e"])
        .arg(format!("trace={calls}"))
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        s.current_dir(d);
    }
    let ran = run(s);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
        panic!(
            "strace wrote no trace ({e}); is strace installed?\n{}",
            ran.stderr
        )
    });
    (ran, parse(&text))
}

/// strace lines, `PID name(args) = result`, an interrupted call split into `<unfinished ...>`
/// and `<... name resumed>`: each call is placed where it completed.
fn parse(text: &str) -> Vec<Call> {
    let mut started: HashMap<String, String> = HashMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            started.insert(pid.to_string(), head.to_string());
            continue;
        }
        let full = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
                format!("{}{tail}", started.remove(pid).unwrap_or_default())
            }
            None => rest.to_string(),
        };
        let Some((name, _)) = full.split_once('(') else {
            continue;
        };
        // Results are aligned with spaces: `fsync(4</d>)     = 0`.
        let result = full
            .rsplit_once(')')
            .map_or("", |(_, r)| r.trim_start())
            .to_string();
        if !result.starts_with('=') || result.starts_with("= -1") {
            continue;
        }
        calls.push(Call {
            name: name.to_string(),
            text: full,
        });
    }
    calls
}

fn is_rename(c: &Call) -> bool {
    matches!(c.name.as_str(), "rename" | "renameat" | "renameat2")
}

fn is_sync(c: &Call) -> bool {
    matches!(c.name.as_str(), "fsync" | "fdatasync")
}

/// The (from, to) of a rename call.
fn rename_paths(c: &Call) -> (String, String) {
    let quoted: Vec<&str> = c.text.split('"').skip(1).step_by(2).collect();
    assert!(quoted.len() >= 2, "cannot read the paths of {}", c.text);
    (quoted[0].to_string(), quoted[1].to_string())
}

/// Whether a call writes to something whose path starts with `prefix` (with `strace -y`, the
/// path of a descriptor is printed as `fd</path>`).
fn writes_below(c: &Call, prefix: &str) -> bool {
    let creates = match c.name.as_str() {
        "write" | "pwrite64" | "writev" | "mkdirat" | "symlinkat" | "linkat" | "mknodat" => true,
        "openat" => c.text.contains("O_CREAT"),
        _ => false,
    };
    creates && c.text.contains(prefix)
}

/// The index of the first call matching `f` at or after `from`.
fn find(calls: &[Call], from: usize, f: impl Fn(&Call) -> bool) -> Option<usize> {
    calls[from..].iter().position(f).map(|i| i + from)
}

/// Checks that `part` was written, synced, then renamed to `dest`, then the directory synced.
fn assert_published(calls: &[Call], part: &Path, dest: &Path) {
    let (part, dest) = (part.to_str().unwrap(), dest.to_str().unwrap());
    let rename = calls
        .iter()
        .position(|c| is_rename(c) && rename_paths(c) == (part.to_string(), dest.to_string()))
        .unwrap_or_else(|| panic!("no rename of {part} to {dest}"));
    let last_write = calls[..rename]
        .iter()
        .rposition(|c| writes_below(c, &format!("{part}>")))
        .unwrap_or_else(|| panic!("nothing was written to {part}"));
    let synced = calls[last_write..rename]
        .iter()
        .any(|c| is_sync(c) && c.text.contains(&format!("<{part}>")));
    assert!(
        synced,
        "{dest} was published before {part} was synced after its last write:\n{}",
        show(&calls[last_write..=rename])
    );
    let dir = Path::new(dest)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        find(calls, rename, |c| is_sync(c)
            && c.text.contains(&format!("<{dir}>")))
        .is_some(),
        "the rename to {dest} was never made durable (no fsync of {dir} after it):\n{}",
        show(&calls[rename..])
    );
}

fn show(calls: &[Call]) -> String {
    let mut lines: Vec<&str> = calls.iter().map(|c| c.text.as_str()).collect();
    if lines.len() > 12 {
        let tail = lines.split_off(lines.len() - 6);
        lines.truncate(6);
        lines.push("…");
        lines.extend(tail);
    }
    lines.join("\n")
}

const TRACED: &str = "fsync,fdatasync,syncfs,rename,renameat,renameat2,write,pwrite64,openat,mkdirat,symlinkat,linkat,mknodat";

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap()
}

fn load_traced(home: &Path, archive: &Path) -> Vec<Call> {
    let mut cmd = ferry(home);
    cmd.args(["load", "--progress", "none", "-i"]).arg(archive);
    let (ran, calls) = traced(cmd, TRACED, home);
    ran.ok();
    calls
}

#[test]
fn a_load_syncs_blobs_and_snapshots_before_it_names_them() {
    let s = require_services!();
    let work = tempdir();
    let home = canonical(work.path());
    let archive = docker_save(s, "ferry/multilayer:docker", &home);
    std::fs::create_dir_all(home.join("store")).unwrap();
    let calls = load_traced(&home, &archive);
    let store = home.join("store");
    let (staging, blobs, snapshots) = (
        format!("{}/tmp/", store.display()),
        format!("{}/blobs/sha256", store.display()),
        format!("{}/snapshots", store.display()),
    );
    let publishing: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            is_rename(c) && {
                let (_, to) = rename_paths(c);
                to.starts_with(&blobs) || to.starts_with(&snapshots)
            }
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        publishing.len() >= 4,
        "expected the layers' blobs and snapshots to be renamed into the store, found {} renames",
        publishing.len()
    );
    let first = publishing[0];
    let last_staged = calls[..first]
        .iter()
        .rposition(|c| writes_below(c, &staging))
        .expect("the load staged its layers under tmp/");
    assert!(
        calls[last_staged..first].iter().any(|c| c.name == "syncfs"),
        "blobs and snapshots were renamed into the store before their data was synced:\n{}",
        show(&calls[last_staged..=first])
    );
    assert!(
        calls[first..].iter().all(|c| !writes_below(c, &staging)),
        "the load wrote staged files after it began publishing them"
    );
    let last_publish = *publishing.last().unwrap();
    let index = format!("{}/index.json", store.display());
    let index_rename = find(&calls, last_publish, |c| {
        is_rename(c) && rename_paths(c).1 == index
    })
    .expect("index.json was not replaced after the blobs and snapshots");
    for dir in [&blobs, &snapshots] {
        assert!(
            calls[last_publish..index_rename]
                .iter()
                .any(|c| is_sync(c) && c.text.contains(&format!("<{dir}>"))),
            "index.json names images before the renames into {dir} were synced:\n{}",
            show(&calls[last_publish..=index_rename])
        );
    }
    let (tmp, _) = rename_paths(&calls[index_rename]);
    assert_published(&calls, Path::new(&tmp), Path::new(&index));
}

#[test]
fn fetch_and_save_sync_the_archive_before_its_name_and_its_checksum() {
    let s = require_services!();
    let work = tempdir();
    let home = canonical(work.path());
    let out = home.join("busybox.tar");
    let (ran, calls) = traced(
        fetch_cmd(&home, s.registry(), &s.image("ferry/busybox:oci"), &out),
        TRACED,
        &home,
    );
    ran.ok();
    assert_published(&calls, &home.join("busybox.tar.part"), &out);
    let sidecar = home.join("busybox.tar.sha256");
    assert_published(&calls, &home.join("busybox.tar.sha256.part"), &sidecar);
    let renamed = |to: &Path| {
        calls
            .iter()
            .position(|c| is_rename(c) && rename_paths(c).1 == to.to_str().unwrap())
            .unwrap()
    };
    assert!(
        renamed(&out) < renamed(&sidecar),
        "FILE.sha256 appeared before FILE.tar was published"
    );

    run(ferry(&home)
        .args(["load", "--progress", "none", "-i"])
        .arg(&out))
    .ok();
    let saved = home.join("saved.tar");
    let mut cmd = ferry(&home);
    cmd.args(["save", "-o"])
        .arg(&saved)
        .arg(s.image("ferry/busybox:oci"));
    let (ran, calls) = traced(cmd, TRACED, &home);
    ran.ok();
    assert_published(&calls, &home.join("saved.tar.part"), &saved);
}

/// Inode numbers of the snapshot directories and of their `fs` trees, by path.
fn snapshot_inodes(store: &Path) -> Vec<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64)>) {
        let m = p.symlink_metadata().unwrap();
        out.push((p.to_path_buf(), m.ino()));
        if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
            names.sort_by_key(|e| e.file_name());
            for e in names {
                walk(&e.path(), out);
            }
        }
    }
    walk(&store.join("snapshots"), &mut out);
    out
}

fn second_load_writes_nothing(s: &Services, home: &Path, archive: &Path, what: &str) {
    let store = home.join("store");
    run(ferry(home)
        .args(["load", "--progress", "none", "-i"])
        .arg(archive))
    .ok();
    let before = snapshot_inodes(&store);
    assert!(
        before.len() > 10,
        "{what}: the first load made no snapshot files"
    );
    let calls = load_traced(home, archive);
    let made: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            matches!(
                c.name.as_str(),
                "mkdirat" | "symlinkat" | "linkat" | "mknodat"
            ) || (c.name == "openat" && c.text.contains("O_CREAT"))
        })
        .filter(|c| c.text.contains(store.to_str().unwrap()))
        // The staged copy of an unnamed blob (hashed, then dropped unsynced), the locks, and
        // the probe of what the filesystem supports are all a load writes.
        .filter(|c| {
            !["/blob-", "/lock", "/tmp/probe-"]
                .iter()
                .any(|k| c.text.contains(k))
        })
        .collect();
    assert!(
        made.is_empty(),
        "{what}: the second load created files ({} of them), e.g.:\n{}",
        made.len(),
        made.iter()
            .take(8)
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !calls.iter().any(|c| c.name == "syncfs"),
        "{what}: a load that adds nothing has nothing to sync"
    );
    assert_eq!(
        snapshot_inodes(&store),
        before,
        "{what}: the snapshots changed"
    );
    let _ = s;
}

#[test]
fn loading_what_the_store_has_writes_no_snapshot_files() {
    let s = require_services!();
    let work = tempdir();
    let home = canonical(work.path());
    // docker save: plain layer tars, metadata last (the diff_id is known only at the end).
    let saved = docker_save(s, "ferry/multilayer:docker", &home);
    second_load_writes_nothing(s, &home, &saved, "docker save");
    // ferry fetch: gzip layers named by digest, metadata first (the store has the blobs).
    let fetched = crate::load_support::fetch(s, &home, "ferry/busybox:oci", &home);
    second_load_writes_nothing(s, &home, &fetched, "ferry fetch");
}

#[test]
fn a_build_syncs_a_layer_blob_before_a_cache_record_names_it() {
    // A step's cache record (and the next step's, whose manifest names the blob too) must
    // come after the step's layer blob was synced (its own fsync, or the store's one syncfs
    // per layer) and renamed into the store, and that rename synced.
    let s = require_services!();
    let home_dir = crate::build_support::ferry_home(s);
    let home = canonical(home_dir.path());
    let ctx = tempdir();
    let base = crate::build_support::BASE;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nCOPY big /big\nENV X=1\n"),
    )
    .unwrap();
    let text: String = (0..400_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(ctx.path().join("big"), text).unwrap();
    let mut cmd = ferry(&home);
    cmd.args(["build", "-q"]).arg(ctx.path());
    let (ran, calls) = traced(cmd, TRACED, &home);
    ran.ok();
    let store = home.join("store");
    let blobs = format!("{}/blobs/sha256/", store.display());
    let cache = format!("{}/build-cache/", store.display());
    let layer = calls
        .iter()
        .position(|c| {
            is_rename(c) && {
                let (from, to) = rename_paths(c);
                from.contains("/layer-") && to.starts_with(&blobs)
            }
        })
        .expect("the COPY's layer blob was not moved into the store");
    let (from, _) = rename_paths(&calls[layer]);
    let last_write = calls[..layer]
        .iter()
        .rposition(|c| writes_below(c, &format!("{from}>")))
        .expect("nothing was written to the layer blob");
    assert!(
        calls[last_write..layer]
            .iter()
            .any(|c| c.name == "syncfs" || is_sync(c) && c.text.contains(&format!("<{from}>"))),
        "the layer blob was renamed into the store before its data was synced:\n{}",
        show(&calls[last_write..=layer])
    );
    let dir = blobs.trim_end_matches('/');
    let dir_synced = find(&calls, layer, |c| {
        is_sync(c) && c.text.contains(&format!("<{dir}>"))
    })
    .expect("the rename into blobs/ was never made durable");
    let records: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            is_rename(c) && {
                let (_, to) = rename_paths(c);
                to.strip_prefix(&cache)
                    .is_some_and(|n| !n.contains('/') && n.ends_with(".json"))
            }
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(records.len(), 2, "one cache record per step (COPY, ENV)");
    assert!(
        records.iter().all(|&r| r > dir_synced),
        "a cache record was written before the layer blob it names was in the store:\n{}",
        show(&calls[records[0].min(layer)..=records[1].max(layer)])
    );
}
