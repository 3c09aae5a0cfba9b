//! Where the store lives (README: "Where the store lives"): `/var/lib/ferry` for root, the XDG
//! data directory for other users, and a store moved or copied elsewhere keeps working.

use std::path::Path;
use std::process::Command;

use crate::harness::{Ran, Services, ferry, run, tempdir, tempdir_for_any_user};
use crate::require_services;

/// `ferry fetch` of `repo_tag` into `dir/NAME.tar`, readable by every user.
fn archive(s: &Services, dir: &Path, repo_tag: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{}.tar", repo_tag.replace(['/', ':'], "_")));
    run(crate::harness::fetch_cmd(
        dir,
        s.registry(),
        &s.image(repo_tag),
        &out,
    ))
    .ok();
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn root_stores_images_in_var_lib_ferry_by_default() {
    let s = require_services!();
    assert!(
        is_root() || std::env::var_os("CI").is_none(),
        "needs root, and CI runs the tests as root"
    );
    if !is_root() {
        eprintln!("SKIPPED: the default store of root needs root");
        return;
    }
    let work = tempdir();
    let tar = archive(s, work.path(), "ferry/busybox:oci");
    // In a mount namespace of its own whose /var/lib is an empty tmpfs, so that the machine's
    // real /var/lib/ferry is neither used nor changed.
    let script = r#"
        mount -t tmpfs ferry-default-store /var/lib || exit 125
        "$FERRY" load -q -i "$ARCHIVE" || exit 1
        "$FERRY" image inspect "$NAME" >/dev/null && echo "image found"
        test -f /var/lib/ferry/index.json && echo "index at /var/lib/ferry"
    "#;
    let r = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_remove("FERRY_ROOT")
        .env("HOME", work.path())
        .env("FERRY_CACHE_DIR", work.path().join("cache"))
        .env("FERRY", env!("CARGO_BIN_EXE_ferry"))
        .env("ARCHIVE", &tar)
        .env("NAME", s.image("ferry/busybox:oci")))
    .ok();
    assert!(r.stdout.contains("image found"), "{}", r.stdout);
    assert!(r.stdout.contains("index at /var/lib/ferry"), "{}", r.stdout);
}

/// `ferry load -i TAR` as the unprivileged user 65534 with `HOME` (and `XDG_DATA_HOME`)
/// set, nothing else from our environment.
fn load_as_nobody(tar: &Path, home: &Path, xdg: Option<&Path>) -> Ran {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(["load", "-q", "-i"])
        .arg(tar)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir(home);
    if let Some(x) = xdg {
        c.env("XDG_DATA_HOME", x);
    }
    run(c)
}

#[test]
fn other_users_store_images_in_their_xdg_data_directory_by_default() {
    let s = require_services!();
    assert!(
        is_root() || std::env::var_os("CI").is_none(),
        "needs root to switch users, and CI runs the tests as root"
    );
    if !is_root() {
        eprintln!("SKIPPED: switching to an unprivileged user needs root");
        return;
    }
    let work = tempdir_for_any_user();
    let tar = archive(s, work.path(), "ferry/busybox:oci");
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    run(Command::new("chown").arg("65534:65534").arg(&home)).ok();
    let r = load_as_nobody(&tar, &home, None).ok();
    assert!(r.stdout.contains("Loaded image"), "{}", r.stdout);
    assert!(
        home.join(".local/share/ferry/index.json").is_file(),
        "no store in ~/.local/share/ferry"
    );
    let xdg = home.join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    run(Command::new("chown").arg("65534:65534").arg(&xdg)).ok();
    let r = load_as_nobody(&tar, &home, Some(&xdg)).ok();
    assert!(r.stdout.contains("Loaded image"), "{}", r.stdout);
    assert!(
        xdg.join("ferry/index.json").is_file(),
        "XDG_DATA_HOME was not used"
    );
}

#[test]
fn a_moved_or_copied_store_keeps_its_images_and_runs_them() {
    let s = require_services!();
    let work = tempdir();
    let w = work.path();
    let tag = "ferry/multilayer:oci";
    let tar = archive(s, w, tag);
    let image = s.image(tag);
    let expect = s.expected_stdout(tag);
    let at = |root: &Path| {
        let mut c = ferry(w);
        c.env("FERRY_ROOT", root);
        c
    };
    let first = w.join("first");
    run(at(&first).args(["load", "-q", "-i"]).arg(&tar)).ok();
    let listed = run(at(&first).args(["images", "--format", "json"]))
        .ok()
        .stdout;
    let saved = w.join("saved.tar");
    run(at(&first).args(["save", &image, "-o"]).arg(&saved)).ok();

    // Moved with mv: nothing in it names the old place.
    let moved = w.join("moved");
    std::fs::rename(&first, &moved).unwrap();
    let old = first.to_str().unwrap().as_bytes().to_vec();
    let naming_old = files_containing(&moved, &old);
    assert!(
        naming_old.is_empty(),
        "files of the store name its old path: {naming_old:?}"
    );
    let same = run(at(&moved).args(["images", "--format", "json"]))
        .ok()
        .stdout;
    assert_eq!(same, listed, "the moved store lists other images");
    let r = run(at(&moved).args(["run", "--rm", &image])).ok();
    assert_eq!(r.stdout.trim(), expect);
    let again = w.join("again.tar");
    run(at(&moved).args(["save", &image, "-o"]).arg(&again)).ok();
    assert_eq!(
        crate::harness::sha256_file(&again),
        crate::harness::sha256_file(&saved),
        "the moved store saves another archive"
    );

    // Copied with cp -a (hard links, owners, xattrs and device nodes kept), then a symlink at
    // the old place pointing to the copy.
    let copied = w.join("copied");
    run(Command::new("cp").arg("-a").arg(&moved).arg(&copied)).ok();
    std::os::unix::fs::symlink(&copied, &first).unwrap();
    // The image's default command shows its whiteout and opaque directory applied.
    for root in [&copied, &first] {
        let r = run(at(root).args(["run", "--rm", &image])).ok();
        assert_eq!(r.stdout.trim(), expect, "{}", root.display());
    }
}

/// Files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                if target
                    .to_string_lossy()
                    .as_bytes()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    out.push(p);
                }
            } else if t.is_file()
                && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                out.push(p);
            }
        }
    }
    out
}
