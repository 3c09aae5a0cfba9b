//! `ferry.exe` (built by `scripts/build-windows`) under wine, as on the locked-down Windows PC:
//! native and Cygwin/MobaXterm-style output paths, plain progress (wine's stderr is not a
//! console, except under a pseudo-terminal: then a Japanese console, code page 932), and
//! archives that the Linux side loads and runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Ran, Services, run, sha256_file, tempdir, workspace};
use crate::require_services;

/// `ferry.exe` and the wine prefix, or `None` (loudly) outside CI when not built.
fn windows_build() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let target = workspace().join("target");
    let exe = target.join("x86_64-pc-windows-gnu/release/ferry.exe");
    let shim = target.join("wine/bcryptprimitives.dll");
    let prefix = target.join("wine/prefix");
    if exe.exists() && shim.exists() && which("wine") {
        return Some((exe, shim, prefix));
    }
    if std::env::var_os("CI").is_some() {
        panic!("ferry.exe or wine is missing; scripts/test runs scripts/build-windows first");
    }
    eprintln!("SKIPPED: run scripts/build-windows to test ferry.exe under wine");
    None
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).exists()))
}

/// Runs `ferry.exe ARGS` under wine from `dir` (where the exe and the shim DLL are copied).
fn wine_ferry(dir: &Path, args: &[&str]) -> Ran {
    let (exe, shim, prefix) = windows_build().expect("checked by the caller");
    std::fs::copy(&exe, dir.join("ferry.exe")).unwrap();
    std::fs::copy(&shim, dir.join("bcryptprimitives.dll")).unwrap();
    run(Command::new("wine")
        .arg(dir.join("ferry.exe"))
        .args(args)
        .current_dir(dir)
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // The blob index of this test's own directory: not shared with other tests.
        .env("FERRY_CACHE_DIR", z_path(&dir.join("cache")))
        .env_remove("DOCKER_CONFIG"))
}

/// `ferry.exe fetch IMAGE -o OUT` (OUT as a `Z:\…` path) from the plain registry; the
/// archive must be there.
fn wine_fetch(dir: &Path, s: &Services, image: &str, out: &Path) -> Ran {
    let ran = wine_ferry(
        dir,
        &[
            "fetch",
            "--insecure-registry",
            s.registry(),
            image,
            "-o",
            &z_path(out),
        ],
    )
    .ok();
    assert!(
        out.exists(),
        "no archive at {}: {}",
        out.display(),
        ran.stderr
    );
    ran
}

/// `Z:\…` is the Linux root in wine's default drive mapping.
fn z_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// The Linux side of the trip: the archive loads into Docker and into ferry's own store, and
/// the image runs in both.
fn docker_loads_and_runs(s: &Services, tar: &Path, name: &str, expect: &str) {
    let loaded = run(s.docker().arg("load").arg("-i").arg(tar)).ok();
    assert!(loaded.stdout.contains(name), "{}", loaded.stdout);
    let out = run(s.docker().args(["run", "--rm", "--network", "none", name])).ok();
    assert_eq!(out.stdout.trim_end(), expect);

    let home = tempdir();
    let loaded = run(crate::harness::ferry(home.path())
        .arg("load")
        .arg("-i")
        .arg(tar))
    .ok();
    assert!(
        loaded.stdout.contains(&format!("Loaded image: {name}")),
        "{}",
        loaded.stdout
    );
    let out = run(crate::harness::ferry(home.path()).args(["run", "--rm", name])).ok();
    assert_eq!(out.stdout.trim_end(), expect);
}

#[test]
fn ferry_exe_fetches_into_a_drive_path_with_plain_progress() {
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    let dir = tempdir();
    let out = dir.path().join("multilayer.tar");
    let image = s.image("ferry/multilayer:oci");
    let ran = wine_fetch(dir.path(), s, &image, &out);
    assert!(
        !ran.stderr.contains('\x1b'),
        "terminal escapes in non-console output:\n{}",
        ran.stderr
    );
    let names: Vec<String> = crate::harness::tar_entries(&out)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.iter().all(|n| !n.contains('\\')),
        "backslashes in member names: {names:?}"
    );
    let sidecar = std::fs::read_to_string(dir.path().join("multilayer.tar.sha256")).unwrap();
    assert_eq!(sidecar, format!("{}  multilayer.tar\n", sha256_file(&out)));
    let expect = s.expected_stdout("ferry/multilayer:oci");
    docker_loads_and_runs(s, &out, &image, expect);
}

#[test]
fn ferry_exe_prints_plain_progress_lines_while_it_downloads() {
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    // Through a link of 100 KiB/s per connection the 1 MiB base layer takes about ten
    // seconds: long enough for the plain lines that come every three seconds.
    let proxy = ferry_testkit::FaultProxy::start(
        s.registry(),
        ferry_testkit::Plan {
            bytes_per_sec: Some(100 * 1024),
            ..Default::default()
        },
    )
    .unwrap();
    let dir = tempdir();
    let out = dir.path().join("slow.tar");
    let ran = wine_ferry(
        dir.path(),
        &[
            "fetch",
            "--insecure-registry",
            &proxy.addr,
            &format!("{}/ferry/multilayer:oci", proxy.addr),
            "-o",
            &z_path(&out),
        ],
    )
    .ok();
    // Lines written while bytes were still coming (below 100 %), not only the summary.
    let periodic = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("fetch ") && l.contains("/s, ETA") && !l.contains("(100%)"))
        .count();
    assert!(
        periodic >= 2,
        "expected periodic plain progress lines while downloading:\n{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains('\x1b'),
        "terminal escapes in non-console output:\n{}",
        ran.stderr
    );
    assert!(out.exists());
}

#[test]
fn ferry_exe_understands_cygwin_mobaxterm_and_relative_paths() {
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    let dir = tempdir();
    let image = s.image("ferry/multiarch:oci");
    let expect = s.expected_stdout("ferry/multiarch:oci");
    let cyg = format!("/cygdrive/z{}/cyg.tar", dir.path().display());
    let moba = format!("/drives/z{}/moba.tar", dir.path().display());
    for (arg, file) in [
        (cyg.as_str(), "cyg.tar"),
        (moba.as_str(), "moba.tar"),
        (r".\rel.tar", "rel.tar"),
    ] {
        let ran = wine_ferry(
            dir.path(),
            &[
                "fetch",
                "--insecure-registry",
                s.registry(),
                &image,
                "-o",
                arg,
            ],
        );
        let ran = ran.ok();
        let out = dir.path().join(file);
        assert!(
            out.exists(),
            "-o {arg} did not write {}: {}",
            out.display(),
            ran.stderr
        );
    }
    // The Windows-fetched archive is the same one Linux would have written.
    let linux = dir.path().join("linux.tar");
    run(crate::harness::fetch_cmd(
        dir.path(),
        s.registry(),
        &image,
        &linux,
    ))
    .ok();
    assert_eq!(
        sha256_file(&dir.path().join("cyg.tar")),
        sha256_file(&linux)
    );
    docker_loads_and_runs(s, &dir.path().join("moba.tar"), &image, expect);
}

/// A path below `base` longer than Windows' old 260-character limit (`MAX_PATH`), made of
/// directories with Japanese and ASCII names.
fn long_path(base: &Path, at_least: usize) -> PathBuf {
    let mut p = base.join("長いパス");
    let mut i = 0;
    while z_path(&p).chars().count() < at_least {
        p.push(format!(
            "{i:02}-{}",
            "フォルダ名".repeat(4) + &"x".repeat(20)
        ));
        i += 1;
    }
    p
}

#[test]
fn ferry_exe_writes_japanese_and_overlong_paths_that_load() {
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    let dir = tempdir();
    let image = s.image("ferry/multilayer:oci");
    let expect = s.expected_stdout("ferry/multilayer:oci");
    // C:\Users\山田\ダウンロード\… as the seed's users have them.
    let jp = dir.path().join("日本語フォルダ");
    let out = jp.join("イメージ.tar");
    let ran = wine_fetch(dir.path(), s, &image, &out);
    // Progress and summary name the file as given: UTF-8 on a pipe (what mintty and
    // MobaXterm read), nothing but the names outside ASCII.
    assert!(ran.stderr.contains("イメージ.tar"), "{}", ran.stderr);
    let without_names = ran.stderr.replace(&z_path(&out), "");
    assert!(
        without_names.is_ascii(),
        "non-ASCII beside the names:\n{}",
        ran.stderr
    );
    let sidecar = std::fs::read_to_string(jp.join("イメージ.tar.sha256")).unwrap();
    assert_eq!(sidecar, format!("{}  イメージ.tar\n", sha256_file(&out)));
    // The archive verifies on both sides of the trip.
    wine_ferry(dir.path(), &["verify", &z_path(&out)]).ok();
    run(crate::harness::ferry(dir.path()).arg("verify").arg(&out)).ok();
    docker_loads_and_runs(s, &out, &image, expect);

    // Over 260 characters, the archive and the moby-script directory.
    let deep = long_path(dir.path(), 300);
    let long_out = deep.join("アーカイブ.tar");
    assert!(z_path(&long_out).chars().count() > 300);
    wine_ferry(
        dir.path(),
        &[
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            s.registry(),
            &image,
            "-o",
            &z_path(&long_out),
        ],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(deep.join("アーカイブ.tar.sha256")).unwrap(),
        format!("{}  アーカイブ.tar\n", sha256_file(&long_out))
    );
    wine_ferry(dir.path(), &["verify", &z_path(&long_out)]).ok();
    let frozen = deep.join("ダウンロード");
    let r = wine_ferry(
        dir.path(),
        &[
            "download-frozen-image-v2",
            "--progress",
            "none",
            "--insecure-registry",
            s.registry(),
            &z_path(&frozen),
            &image,
        ],
    )
    .ok();
    assert!(
        r.stdout.contains("Download of images into 'Z:"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ダウンロード' complete."), "{}", r.stdout);
    // `tar -cC DIR . | docker load` on the Linux side.
    let loaded = crate::cli::docker_load_dir(s, &frozen);
    assert!(loaded.stdout.contains(&image), "{}", loaded.stdout);
    let out = run(s
        .docker()
        .args(["run", "--rm", "--network", "none", &image]))
    .ok();
    assert_eq!(out.stdout.trim_end(), expect);
    let home = tempdir();
    let r = run(crate::harness::ferry(home.path())
        .args(["load", "-q", "-i"])
        .arg(&frozen))
    .ok();
    assert_eq!(r.stdout, format!("Loaded image: {image}\n"));
}

#[test]
fn ferry_exe_in_a_cp932_console_prints_japanese_names_readably() {
    // A Japanese Windows console runs code page 932: bytes written to it are read as
    // Shift-JIS, so a program that wrote its UTF-8 names as bytes would print them garbled.
    // ferry.exe writes to a console as UTF-16 (WriteConsoleW), whatever its code page. Under a
    // pseudo-terminal wine gives the program a real console; `chcp 932` sets its code page, and
    // wine shows the console's text on the terminal as UTF-8.
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    let dir = tempdir();
    let image = s.image("ferry/busybox:oci");
    let out = dir.path().join("日本語フォルダ").join("イメージ.tar");
    let (exe, shim, prefix) = windows_build().unwrap();
    std::fs::copy(&exe, dir.path().join("ferry.exe")).unwrap();
    std::fs::copy(&shim, dir.path().join("bcryptprimitives.dll")).unwrap();
    let inside = format!(
        "chcp 932 && ferry.exe fetch --insecure-registry {} {image} -o {}",
        s.registry(),
        z_path(&out)
    );
    let ran = run(Command::new("script")
        // A wide terminal, so that the console does not wrap the summary line.
        .args([
            "-qec",
            &format!("stty cols 1000; wine cmd /c '{inside}'"),
            "/dev/null",
        ])
        .current_dir(dir.path())
        .env("LANG", "C.UTF-8")
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        .env("FERRY_CACHE_DIR", z_path(&dir.path().join("cache"))))
    .ok();
    assert!(
        ran.stdout.contains("Active code page: 932"),
        "the console did not switch to code page 932:\n{}",
        ran.stdout
    );
    assert!(out.exists(), "no archive: {}", ran.stdout);
    let text = without_escapes(&ran.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("fetched 1 image"))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    assert!(
        summary.contains("日本語フォルダ\\イメージ.tar"),
        "the name is garbled in a cp932 console: {summary:?}"
    );
}

/// The terminal's text without its control sequences (`ESC [ … letter`), as a reader sees it:
/// a cursor moved forward (`ESC [ N C`, what wine's console writes for spaces) is N spaces.
fn without_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() != Some('[') {
            continue;
        }
        let mut param = String::new();
        for c in chars.by_ref() {
            if c.is_ascii_alphabetic() {
                if c == 'C' {
                    out.push_str(&" ".repeat(param.parse().unwrap_or(1)));
                }
                break;
            }
            param.push(c);
        }
    }
    out
}
