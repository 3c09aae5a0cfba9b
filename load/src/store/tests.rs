//! Layer application rules, on real directories. Run as root (as CI does) they also check
//! ownership, device nodes and overlay whiteouts; as a user they check the portable form.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ::tar::{Builder, EntryType, Header as TarHeader};

use crate::error::LayerError;
use crate::scan::LayerSink;
use crate::store::apply::{Applier, ApplyOptions, SnapshotFormat};
use crate::store::fsutil;
use crate::store::materialize::materialize;
use crate::store::snapshot::{find_in_stack, is_opaque, resolve_pending};
use crate::tar::TarReader;

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn opts(format: SnapshotFormat) -> ApplyOptions {
    ApplyOptions {
        format,
        privileged: root(),
        min_free: 0,
    }
}

/// Whether a test that needs root can run: without root it fails under CI (which runs the
/// tests as root) and says loudly that it was skipped elsewhere.
fn root_or_skip(what: &str) -> bool {
    if root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} needs root, and CI runs the tests as root"
    );
    eprintln!("SKIPPED: {what} needs root");
    false
}

/// The snapshot formats this user can test: the overlay form needs root (device-node
/// whiteouts, `trusted.*` attributes), so without root only the portable form is tested, and
/// said so (under CI, a failure).
fn formats() -> Vec<SnapshotFormat> {
    if root_or_skip("the overlay snapshot format") {
        vec![SnapshotFormat::Overlay, SnapshotFormat::Portable]
    } else {
        vec![SnapshotFormat::Portable]
    }
}

/// A layer tar: (path, type, data or link target, mode, uid).
struct Layer(Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(Builder::new(Vec::new()))
    }

    /// Writes the header by hand: the `tar` crate (rightly) refuses `..` and absolute paths,
    /// which is exactly what hostile layers contain.
    fn add(mut self, path: &str, kind: EntryType, data: &[u8], mode: u32, uid: u64) -> Layer {
        let mut h = TarHeader::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_600_000_000);
        let link = matches!(kind, EntryType::Symlink | EntryType::Link);
        h.set_size(if link { 0 } else { data.len() as u64 });
        let raw = h.as_mut_bytes();
        raw[..100].fill(0);
        raw[..path.len()].copy_from_slice(path.as_bytes());
        if link {
            raw[157..257].fill(0);
            raw[157..157 + data.len()].copy_from_slice(data);
        }
        h.set_cksum();
        self.0
            .append(&h, if link { &b""[..] } else { data })
            .unwrap();
        self
    }

    fn dir(self, path: &str) -> Layer {
        self.add(path, EntryType::Directory, b"", 0o755, 0)
    }

    fn file(self, path: &str, data: &str) -> Layer {
        self.add(path, EntryType::Regular, data.as_bytes(), 0o644, 0)
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// Applies `layer` into `dir/fs`; returns the applier (for pending links) or the error.
fn apply(dir: &Path, layer: Vec<u8>, format: SnapshotFormat) -> Result<Applier, LayerError> {
    let fs = dir.join("fs");
    std::fs::create_dir_all(&fs).unwrap();
    std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut a = Applier::new(fsutil::open_dir(&fs).unwrap(), opts(format));
    let mut r = TarReader::new(&layer[..]);
    while let Some(h) = r.next_entry().unwrap() {
        a.entry(&h, &mut r.data())?;
    }
    a.finish()?;
    Ok(a)
}

fn read(p: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(p)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn is_whiteout_at(fs: &Path, rel: &str, format: SnapshotFormat) -> bool {
    let p = fs.join(rel);
    match format {
        SnapshotFormat::Overlay => p
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0),
        SnapshotFormat::Portable => {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            p.with_file_name(format!(".wh.{name}"))
                .symlink_metadata()
                .is_ok()
        }
    }
}

#[test]
fn a_whiteout_hides_lower_layers_only_not_its_own() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        // `kept` exists in this layer before its whiteout, `back` after it: both stay.
        let layer = Layer::new()
            .file("kept", "mine")
            .file(".wh.kept", "")
            .file(".wh.back", "")
            .file("back", "again")
            .file(".wh.gone", "")
            .bytes();
        apply(t.path(), layer, format).unwrap();
        let fs = t.path().join("fs");
        assert_eq!(read(&fs.join("kept")), "mine", "{format:?}");
        assert_eq!(read(&fs.join("back")), "again", "{format:?}");
        assert!(is_whiteout_at(&fs, "gone", format), "{format:?}");
    }
}

#[test]
fn an_opaque_marker_keeps_entries_of_its_own_layer_even_before_it() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let layer = Layer::new()
            .dir("d")
            .file("d/x", "x")
            .file("d/.wh..wh..opq", "")
            .file("d/y", "y")
            .bytes();
        apply(t.path(), layer, format).unwrap();
        let d = t.path().join("fs/d");
        assert!(is_opaque(&d), "{format:?}");
        assert_eq!(read(&d.join("x")), "x");
        assert_eq!(read(&d.join("y")), "y");
    }
}

#[test]
fn a_directory_replacing_its_own_layers_whiteout_stays_opaque() {
    if !root_or_skip("an overlay opaque directory") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layer = Layer::new()
        .file(".wh.d", "")
        .dir("d")
        .file("d/new", "n")
        .bytes();
    apply(t.path(), layer, SnapshotFormat::Overlay).unwrap();
    let d = t.path().join("fs/d");
    assert!(d.is_dir());
    assert!(is_opaque(&d), "the lower d must stay hidden");
}

#[test]
fn whiteouts_are_recognised_whatever_their_tar_type() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let layer = Layer::new()
            .file("target", "t")
            .add(".wh.a", EntryType::Link, b"target", 0o644, 0)
            .add(".wh.b", EntryType::Symlink, b"whatever", 0o777, 0)
            .add(".wh.c", EntryType::Directory, b"", 0o755, 0)
            .bytes();
        apply(t.path(), layer, format).unwrap();
        let fs = t.path().join("fs");
        for n in ["a", "b", "c"] {
            assert!(is_whiteout_at(&fs, n, format), "{n} {format:?}");
        }
    }
}

#[test]
fn ownership_is_set_before_the_mode_so_setuid_bits_survive() {
    if !root_or_skip("setting owners") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layer = Layer::new()
        .add("suid", EntryType::Regular, b"#!", 0o4755, 1000)
        .add("sgid-dir", EntryType::Directory, b"", 0o2775, 1000)
        .bytes();
    apply(t.path(), layer, SnapshotFormat::Overlay).unwrap();
    let m = std::fs::metadata(t.path().join("fs/suid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
    let d = std::fs::metadata(t.path().join("fs/sgid-dir")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o2775);
}

#[test]
fn directory_modes_and_times_are_restored_last() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        // A read-only directory listed before its content: the content must still land.
        let layer = Layer::new()
            .add("ro", EntryType::Directory, b"", 0o555, 0)
            .file("ro/inside", "i")
            .bytes();
        apply(t.path(), layer, format).unwrap();
        let m = std::fs::metadata(t.path().join("fs/ro")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o555);
        assert_eq!(
            m.mtime(),
            1_600_000_000,
            "creating `inside` must not leave a new mtime"
        );
        assert_eq!(read(&t.path().join("fs/ro/inside")), "i");
        let _ = std::fs::set_permissions(
            t.path().join("fs/ro"),
            std::fs::Permissions::from_mode(0o755),
        );
    }
}

#[test]
fn hard_links_within_a_layer_share_the_inode() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let layer = Layer::new()
            .file("a", "content")
            .dir("sub")
            .add("sub/b", EntryType::Link, b"a", 0o644, 0)
            .bytes();
        let mut a = apply(t.path(), layer, format).unwrap();
        assert!(a.take_pending().is_empty());
        let ma = std::fs::metadata(t.path().join("fs/a")).unwrap();
        let mb = std::fs::metadata(t.path().join("fs/sub/b")).unwrap();
        assert_eq!(ma.ino(), mb.ino());
    }
}

#[test]
fn hard_links_to_earlier_layers_are_copied_up_from_the_chain() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("l0");
        apply(
            &lower,
            Layer::new().dir("bin").file("bin/tool", "payload").bytes(),
            format,
        )
        .unwrap();
        let upper = t.path().join("l1");
        let mut a = apply(
            &upper,
            Layer::new()
                .add("tool-link", EntryType::Link, b"bin/tool", 0o755, 0)
                .bytes(),
            format,
        )
        .unwrap();
        let pending = a.take_pending();
        assert_eq!(pending.len(), 1);
        resolve_pending(&upper.join("fs"), &pending, &[lower.join("fs")], root()).unwrap();
        assert_eq!(read(&upper.join("fs/tool-link")), "payload");
        // A target that no layer has is an error naming the link.
        let upper2 = t.path().join("l2");
        let mut a = apply(
            &upper2,
            Layer::new()
                .add("dangling", EntryType::Link, b"nope", 0o644, 0)
                .bytes(),
            format,
        )
        .unwrap();
        let err = resolve_pending(
            &upper2.join("fs"),
            &a.take_pending(),
            &[lower.join("fs")],
            root(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("dangling"), "{err}");
    }
}

#[test]
fn paths_that_leave_the_snapshot_are_refused_and_nothing_is_written_outside() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let victim_s = victim.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            Layer::new().file("../../victim/pwned", "x").bytes(),
        ),
        (
            "absolute",
            Layer::new().file(&format!("{victim_s}/pwned"), "x").bytes(),
        ),
        (
            "symlink-then-write",
            Layer::new()
                .add("evil", EntryType::Symlink, victim_s.as_bytes(), 0o777, 0)
                .file("evil/pwned", "x")
                .bytes(),
        ),
        (
            "relative-symlink-then-write",
            Layer::new()
                .add("evil", EntryType::Symlink, b"../../victim", 0o777, 0)
                .file("evil/pwned", "x")
                .bytes(),
        ),
        (
            "hardlink-dotdot",
            Layer::new()
                .add("l", EntryType::Link, b"../../victim/secret", 0o644, 0)
                .bytes(),
        ),
        (
            "hardlink-absolute",
            Layer::new()
                .add("l", EntryType::Link, b"/etc/passwd", 0o644, 0)
                .bytes(),
        ),
        ("whiteout-dotdot", Layer::new().file("a/.wh...", "").bytes()),
    ];
    for format in formats() {
        for (name, layer) in &cases {
            let dir = t.path().join(format!("snap-{name}-{format:?}"));
            let err = match apply(&dir, layer.clone(), format) {
                Ok(_) => panic!("{name}: accepted"),
                Err(e) => e,
            };
            assert!(matches!(err, LayerError::Unsafe { .. }), "{name}: {err}");
            assert!(
                std::fs::read_dir(&victim).unwrap().next().is_none(),
                "{name} wrote outside"
            );
        }
    }
}

#[test]
fn symlinks_are_created_never_followed_and_replace_what_was_there() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let layer = Layer::new()
            .file("x", "file first")
            .add("x", EntryType::Symlink, b"/etc/passwd", 0o777, 0)
            .bytes();
        apply(t.path(), layer, format).unwrap();
        let l = t.path().join("fs/x");
        assert_eq!(
            std::fs::read_link(&l).unwrap(),
            PathBuf::from("/etc/passwd")
        );
    }
}

#[test]
fn xattrs_are_set_and_forged_overlay_ones_dropped() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.user.note", &b"hello"[..]),
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
    ])
    .unwrap();
    let mut h = TarHeader::new_ustar();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    let format = formats()[0];
    apply(t.path(), b.into_inner().unwrap(), format).unwrap();
    let p = t.path().join("fs/f");
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(&p, "user.note", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(rustix::fs::getxattr(&p, "trusted.overlay.redirect", &mut buf[..]).is_err());
}

#[test]
fn device_nodes_are_created_as_root_and_skipped_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let mut b = Builder::new(Vec::new());
    let mut h = TarHeader::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_mode(0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_size(0);
    b.append_data(&mut h, "null", &b""[..]).unwrap();
    let mut a = Applier::new(
        {
            std::fs::create_dir(t.path().join("fs")).unwrap();
            fsutil::open_dir(&t.path().join("fs")).unwrap()
        },
        opts(formats()[0]),
    );
    let bytes = b.into_inner().unwrap();
    let mut r = TarReader::new(&bytes[..]);
    while let Some(h) = r.next_entry().unwrap() {
        a.entry(&h, &mut r.data()).unwrap();
    }
    let stats = a.finish().unwrap();
    let m = t.path().join("fs/null").symlink_metadata();
    if root() {
        let m = m.unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(stats.devices_skipped, 0);
    } else {
        assert!(m.is_err());
        assert_eq!(stats.devices_skipped, 1);
    }
}

#[test]
fn materialize_merges_like_overlayfs_in_both_formats() {
    for format in formats() {
        let t = tempfile::tempdir().unwrap();
        let l0 = t.path().join("l0");
        apply(
            &l0,
            Layer::new()
                .dir("app")
                .file("app/keep", "k")
                .file("app/delete-me", "d")
                .dir("data")
                .dir("data/old")
                .file("data/old/a", "a")
                .file("replace-dir-by-file/inner", "i")
                .bytes(),
            format,
        )
        .unwrap();
        let l1 = t.path().join("l1");
        apply(
            &l1,
            Layer::new()
                .file("app/.wh.delete-me", "")
                .file("data/old/.wh..wh..opq", "")
                .file("data/old/c", "c")
                .file("replace-dir-by-file", "now a file")
                .bytes(),
            format,
        )
        .unwrap();
        // Which file a lower path resolves to, through the stack.
        let stack = vec![l1.join("fs"), l0.join("fs")];
        assert!(find_in_stack(&stack, &[b"app".to_vec(), b"delete-me".to_vec()]).is_none());
        assert!(
            find_in_stack(&stack, &[b"data".to_vec(), b"old".to_vec(), b"a".to_vec()]).is_none()
        );
        assert_eq!(
            find_in_stack(&stack, &[b"app".to_vec(), b"keep".to_vec()]).unwrap(),
            l0.join("fs/app/keep")
        );
        let dest = t.path().join("rootfs");
        std::fs::create_dir(&dest).unwrap();
        materialize(&[l0.join("fs"), l1.join("fs")], &dest).unwrap();
        let mut names = Vec::new();
        for e in walkdir(&dest) {
            names.push(
                e.strip_prefix(&dest)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        names.sort();
        assert_eq!(
            names,
            [
                "app",
                "app/keep",
                "data",
                "data/old",
                "data/old/c",
                "replace-dir-by-file"
            ],
            "{format:?}"
        );
        assert_eq!(read(&dest.join("replace-dir-by-file")), "now a file");
    }
}

fn walkdir(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap().flatten() {
        out.push(e.path());
        if e.file_type().unwrap().is_dir() {
            out.extend(walkdir(&e.path()));
        }
    }
    out
}
