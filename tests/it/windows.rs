//! `ferry.exe` (built by `scripts/build-windows`) under wine, as on the locked-down Windows PC:
//! native and Cygwin/MobaXterm-style output paths, plain progress (wine's stderr is not a
//! console), and archives that the Linux side loads and runs.

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
    let ran = wine_ferry(
        dir.path(),
        &[
            "fetch",
            "--insecure-registry",
            s.registry(),
            &image,
            "-o",
            &z_path(&out),
        ],
    )
    .ok();
    assert!(
        out.exists(),
        "no archive at {}: {}",
        out.display(),
        ran.stderr
    );
    assert!(
        ran.stderr.contains("fetch ") && ran.stderr.contains("/s, ETA"),
        "no plain progress:\n{}",
        ran.stderr
    );
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
    let expect = s.facts("ferry/multilayer:oci")["expect_stdout"]
        .as_str()
        .unwrap();
    docker_loads_and_runs(s, &out, &image, expect);
}

#[test]
fn ferry_exe_understands_cygwin_mobaxterm_and_relative_paths() {
    let s = require_services!();
    if windows_build().is_none() {
        return;
    }
    let dir = tempdir();
    let image = s.image("ferry/multiarch:oci");
    let expect = s.facts("ferry/multiarch:oci")["expect_stdout"]
        .as_str()
        .unwrap();
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
    run(crate::harness::ferry(dir.path())
        .args([
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            s.registry(),
            &image,
            "-o",
        ])
        .arg(&linux))
    .ok();
    assert_eq!(
        sha256_file(&dir.path().join("cyg.tar")),
        sha256_file(&linux)
    );
    docker_loads_and_runs(s, &dir.path().join("moba.tar"), &image, expect);
}
