//! The pool of writers changes when entries are created, never what the snapshot holds: a
//! layer full of replacements of one path by another kind, applied by the pool, gives the tree
//! applying it in tar order on one thread gives.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use ::tar::{Builder, EntryType, Header as TarHeader};

use super::writers::Writers;
use super::{Applier, ApplyOptions, SnapshotFormat};
use crate::scan::LayerSink;
use crate::store::fsutil;
use crate::tar::TarReader;

fn entry(b: &mut Builder<Vec<u8>>, path: &str, kind: EntryType, data: &[u8], mode: u32) {
    let mut h = TarHeader::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(1_600_000_000);
    let link = matches!(kind, EntryType::Symlink | EntryType::Link);
    h.set_size(if link { 0 } else { data.len() as u64 });
    if link {
        h.set_link_name(std::str::from_utf8(data).unwrap()).unwrap();
    }
    b.append_data(&mut h, path, if link { &b""[..] } else { data })
        .unwrap();
}

/// A layer that replaces paths by other kinds over and over, between many ordinary files.
fn churning_layer() -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    entry(&mut b, "d", EntryType::Directory, b"", 0o755);
    for round in 0..20 {
        let dir = format!("d/r{round}");
        entry(&mut b, &dir, EntryType::Directory, b"", 0o750);
        for i in 0..15 {
            let body = format!("{round}-{i}").repeat(i + 1);
            entry(
                &mut b,
                &format!("{dir}/f{i}"),
                EntryType::Regular,
                body.as_bytes(),
                0o644,
            );
        }
        // One path, five kinds in a row: the last one wins.
        let p = format!("{dir}/x");
        entry(&mut b, &p, EntryType::Regular, b"first", 0o600);
        entry(&mut b, &p, EntryType::Symlink, b"f1", 0o777);
        entry(&mut b, &p, EntryType::Regular, b"third", 0o640);
        entry(&mut b, &p, EntryType::Directory, b"", 0o700);
        entry(
            &mut b,
            &format!("{p}/inner"),
            EntryType::Regular,
            b"in",
            0o644,
        );
        entry(&mut b, &p, EntryType::Regular, b"last", 0o604);
        // A directory with content replaced by a symlink, then made again.
        let q = format!("{dir}/sub");
        entry(&mut b, &q, EntryType::Directory, b"", 0o755);
        entry(&mut b, &format!("{q}/a"), EntryType::Regular, b"a", 0o644);
        entry(&mut b, &q, EntryType::Symlink, b"x", 0o777);
        entry(&mut b, &q, EntryType::Directory, b"", 0o711);
        entry(&mut b, &format!("{q}/b"), EntryType::Regular, b"b", 0o644);
        // Hard links to files a writer may still be making; a whiteout of a sibling.
        entry(
            &mut b,
            &format!("{dir}/link"),
            EntryType::Link,
            format!("{dir}/f3").as_bytes(),
            0o644,
        );
        entry(
            &mut b,
            &format!("{dir}/.wh.gone"),
            EntryType::Regular,
            b"",
            0o644,
        );
        entry(
            &mut b,
            &format!("{dir}/f7"),
            EntryType::Symlink,
            b"f8",
            0o777,
        );
    }
    b.into_inner().unwrap()
}

fn apply(fs: &Path, layer: &[u8], writers: Option<Arc<Writers>>) {
    std::fs::create_dir_all(fs).unwrap();
    let opts = ApplyOptions {
        format: SnapshotFormat::Portable,
        privileged: false,
        min_free: 0,
    };
    let mut a = Applier::new(fsutil::open_dir(fs).unwrap(), opts);
    if let Some(w) = writers {
        a = a.with_writers(w);
    }
    let mut r = TarReader::new(layer);
    while let Some(h) = r.next_entry().unwrap() {
        a.entry(&h, &mut r.data()).unwrap();
    }
    a.finish().unwrap();
}

/// Every path below `root` with its type, mode, mtime, content or target, and which paths
/// share an inode.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    fn walk(
        root: &Path,
        p: &Path,
        out: &mut Vec<String>,
        inodes: &mut std::collections::HashMap<u64, String>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let m = path.symlink_metadata().unwrap();
            let what = if m.is_dir() {
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if m.file_type().is_char_device() {
                "whiteout".to_string()
            } else {
                let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
                format!(
                    "{:?} same as {first}",
                    std::fs::read_to_string(&path).unwrap()
                )
            };
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            // Whiteout markers are made when seen, with the time of the day.
            let mtime = if rel.contains(".wh.") { 0 } else { m.mtime() };
            out.push(format!("{rel} {mode:o} {mtime} {what}"));
            if m.is_dir() {
                walk(root, &path, out, inodes);
            }
        }
    }
    walk(root, root, &mut out, &mut inodes);
    out
}

#[test]
fn the_pool_of_writers_gives_the_tree_tar_order_gives() {
    let t = tempfile::tempdir().unwrap();
    let layer = churning_layer();
    apply(&t.path().join("inline"), &layer, None);
    let want = tree(&t.path().join("inline"));
    assert!(
        want.iter().any(|l| l.ends_with("\"last\" same as d/r0/x")),
        "{want:?}"
    );
    let writers = Writers::new(4);
    // Races show up now and then, not every time: many runs.
    for run in 0..6 {
        let fs = t.path().join(format!("pooled-{run}"));
        apply(&fs, &layer, Some(writers.clone()));
        let got = tree(&fs);
        if got != want {
            let diff: Vec<_> = want
                .iter()
                .zip(&got)
                .filter(|(a, b)| a != b)
                .take(5)
                .collect();
            panic!("run {run}: the pool's tree differs from tar order: {diff:?}");
        }
    }
}
