//! `ferry build`: the seed's last chapter, a corpus of Dockerfiles built side by side with
//! Docker's classic builder (file trees, layers and configs compared), the build cache,
//! reproducible builds, and bad input (one line naming file:line, nothing left behind).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::build_support::{
    BASE, DockerTag, comparable_config, corpus_context, docker_build, ferry_home, read_saved,
    tree_diff,
};
use crate::harness::{Ran, Services, ferry, run, tempdir};
use crate::require_services;

/// A store with the base image, and a context holding `dockerfile`.
fn setup(s: &Services, dockerfile: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let home = ferry_home(s);
    let ctx = tempdir();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    (home, ctx)
}

fn build(home: &Path, ctx: &Path, extra: &[&str]) -> Ran {
    run(ferry(home).arg("build").args(extra).arg(ctx))
}

/// Builds a corpus case with Docker and with ferry and compares the two images.
fn compare_with_docker(case: &str, extra: &[&str]) {
    compare_skipping(case, extra, &[]);
}

/// The same, where ferry skips the stages named `skipped` that no other stage needs (Docker's
/// classic builder runs them all).
fn compare_skipping(case: &str, extra: &[&str], skipped: &[&str]) {
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    corpus_context(case, ctx.path());
    let dockerfile = ctx.path().join("Dockerfile");
    let tag = DockerTag::new(case);
    let d = docker_build(s, ctx.path(), &dockerfile, &tag, extra).ok();
    let mut args = vec!["-t", &tag];
    args.extend_from_slice(extra);
    let f = build(home.path(), ctx.path(), &args).ok();
    let docker_tar = home.path().join("docker.tar");
    let ferry_tar = home.path().join("ferry.tar");
    run(s.docker().args(["save", "-o"]).arg(&docker_tar).arg(&tag)).ok();
    run(s.docker().args(["rmi", &tag])).ok();
    run(ferry(home.path())
        .args(["save", &tag, "-o"])
        .arg(&ferry_tar))
    .ok();
    let docker = read_saved(&docker_tar);
    let ours = read_saved(&ferry_tar);
    let diff = tree_diff(&docker.tree, &ours.tree);
    assert!(
        diff.is_empty(),
        "{case}: the file trees differ:\n{}\n--- docker build:\n{}\n--- ferry build:\n{}",
        diff.join("\n"),
        d.stdout,
        f.stdout
    );
    assert_eq!(docker.layers, ours.layers, "{case}: layer count");
    assert_eq!(
        comparable_config(&docker.config),
        comparable_config(&ours.config),
        "{case}: config"
    );
    // Docker's step lines, the same (numbered among the steps that run).
    let steps = |out: &str| {
        out.lines()
            .filter_map(|l| l.strip_prefix("Step "))
            .map(|l| {
                l.split_once(" : ")
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    let mut want = steps(&d.stdout);
    let mut skipping = false;
    want.retain(|t| {
        if t.starts_with("FROM ") {
            skipping = skipped.iter().any(|s| t.ends_with(&format!(" AS {s}")));
        }
        !skipping
    });
    let got = steps(&f.stdout);
    assert_eq!(want, got, "{case}: steps");
    let total = got.len();
    for (i, l) in f
        .stdout
        .lines()
        .filter(|l| l.starts_with("Step "))
        .enumerate()
    {
        assert!(l.starts_with(&format!("Step {}/{total} : ", i + 1)), "{l}");
    }
}

#[test]
fn seed_chapter_builds_runs_and_loads_into_docker() {
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    std::fs::write(
        ctx.path().join("hello.sh"),
        "#!/bin/bash\necho \"Hello World!\"\n",
    )
    .unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BASE}\n\nCOPY hello.sh /usr/local/bin\nRUN chmod +x /usr/local/bin/hello.sh\n\nCMD [\"/usr/local/bin/hello.sh\"]\n"
        ),
    )
    .unwrap();
    let b = run(ferry(home.path())
        .args(["image", "build", "-t", "my-hello:0.0", "."])
        .current_dir(ctx.path()))
    .ok();
    let lines: Vec<&str> = b.stdout.lines().collect();
    assert_eq!(lines[0], format!("Step 1/4 : FROM {BASE}"));
    assert_eq!(lines[2], "Step 2/4 : COPY hello.sh /usr/local/bin");
    assert_eq!(lines[4], "Step 3/4 : RUN chmod +x /usr/local/bin/hello.sh");
    assert!(lines[5].starts_with(" ---> Running in "), "{}", b.stdout);
    assert!(
        lines[6].starts_with("Removing intermediate container "),
        "{}",
        b.stdout
    );
    assert_eq!(lines[8], "Step 4/4 : CMD [\"/usr/local/bin/hello.sh\"]");
    assert!(lines[10].starts_with("Successfully built "), "{}", b.stdout);
    assert_eq!(lines[11], "Successfully tagged my-hello:0.0");
    let images = run(ferry(home.path()).arg("images")).ok();
    assert!(images.stdout.contains("my-hello"), "{}", images.stdout);
    let r = run(ferry(home.path()).args(["container", "run", "--rm", "my-hello:0.0"])).ok();
    assert_eq!(r.stdout, "Hello World!\n");
    // ferry save → docker load → docker run prints the same.
    let tar = home.path().join("hello.tar");
    run(ferry(home.path())
        .args(["save", "my-hello:0.0", "-o"])
        .arg(&tar))
    .ok();
    let unique = DockerTag::new("my-hello");
    run(s.docker().arg("load").arg("-i").arg(&tar)).ok();
    run(s.docker().args(["tag", "my-hello:0.0", &unique])).ok();
    run(s.docker().args(["rmi", "my-hello:0.0"])).ok();
    let d = run(s
        .docker()
        .args(["run", "--rm", "--network", "none", &unique]))
    .ok();
    run(s.docker().args(["rmi", &unique])).ok();
    assert_eq!(d.stdout, "Hello World!\n");
}

#[test]
fn copy_rules_match_docker() {
    compare_with_docker("copy-rules", &[]);
}

#[test]
fn run_changes_match_docker() {
    compare_with_docker("run-changes", &[]);
}

#[test]
fn env_and_build_args_match_docker() {
    compare_with_docker(
        "env-args",
        &[
            "--build-arg",
            "FROM_CLI=from-cli",
            "--build-arg",
            "VERSION=2.0",
        ],
    );
}

#[test]
fn metadata_instructions_match_docker() {
    compare_with_docker("metadata", &[]);
}

#[test]
fn multistage_matches_docker() {
    compare_skipping("multistage", &[], &["unused"]);
}

#[test]
fn add_archives_and_urls_match_docker() {
    compare_with_docker("add-archive", &[]);
}

#[test]
fn onbuild_triggers_match_docker() {
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    corpus_context("onbuild", ctx.path());
    let parent = DockerTag::new("onbuild-parent");
    let parent_file = ctx.path().join("Dockerfile.parent");
    docker_build(s, ctx.path(), &parent_file, &parent, &[]).ok();
    let p = run(ferry(home.path())
        .args(["build", "-t", &parent, "-f"])
        .arg(&parent_file)
        .arg(ctx.path()))
    .ok();
    assert!(!p.stdout.contains("Executing"), "{}", p.stdout);
    let child = DockerTag::new("onbuild-child");
    let arg = format!("PARENT={parent}");
    let d = docker_build(
        s,
        ctx.path(),
        &ctx.path().join("Dockerfile"),
        &child,
        &["--build-arg", &arg],
    )
    .ok();
    let f = build(
        home.path(),
        ctx.path(),
        &["-t", &child, "--build-arg", &arg],
    )
    .ok();
    assert!(
        f.stdout.contains("# Executing 3 build triggers"),
        "{}",
        f.stdout
    );
    let docker_tar = home.path().join("docker.tar");
    let ferry_tar = home.path().join("ferry.tar");
    run(s.docker().args(["save", "-o"]).arg(&docker_tar).arg(&child)).ok();
    run(s.docker().args(["rmi", &child, &parent])).ok();
    run(ferry(home.path())
        .args(["save", &child, "-o"])
        .arg(&ferry_tar))
    .ok();
    let (docker, ours) = (read_saved(&docker_tar), read_saved(&ferry_tar));
    let diff = tree_diff(&docker.tree, &ours.tree);
    assert!(
        diff.is_empty(),
        "{}\n{}\n{}",
        diff.join("\n"),
        d.stdout,
        f.stdout
    );
    assert_eq!(ours.tree["seen"].size, "trigger\n".len() as u64);
    assert_eq!(docker.layers, ours.layers);
    assert_eq!(
        comparable_config(&docker.config),
        comparable_config(&ours.config)
    );
    assert!(
        ours.config["config"]["OnBuild"].is_null(),
        "triggers are not inherited"
    );
}

#[test]
fn target_label_quiet_and_dockerfile_from_stdin() {
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    corpus_context("multistage", ctx.path());
    // --target stops at that stage; the later ones are not built.
    let b = build(
        home.path(),
        ctx.path(),
        &["-t", "t:build", "--target", "build"],
    )
    .ok();
    assert!(!b.stdout.contains("AS unused"), "{}", b.stdout);
    assert!(b.stdout.contains("Step 2/2 : RUN mkdir"), "{}", b.stdout);
    let r = run(ferry(home.path()).args(["run", "--rm", "t:build", "cat", "/out/artifact"])).ok();
    assert_eq!(r.stdout, "built\n");
    let missing = build(home.path(), ctx.path(), &["--target", "nope"]).failed();
    missing.assert_stderr("target stage \"nope\" could not be found");
    // -f - reads the Dockerfile from stdin; --label adds a step; -q prints only the ID.
    let mut child = ferry(home.path())
        .args([
            "build",
            "-q",
            "--label",
            "org.example=yes",
            "-t",
            "stdin:1",
            "-f",
            "-",
        ])
        .arg(ctx.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {BASE}\nENV FROM_STDIN=1\n").as_bytes())
        .unwrap();
    let out: Ran = child.wait_with_output().unwrap().into();
    let out = out.ok();
    assert!(out.stdout.trim().starts_with("sha256:"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let inspect = run(ferry(home.path()).args(["image", "inspect", "stdin:1"])).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Config"]["Labels"]["org.example"], "yes");
    assert_eq!(v[0]["Id"].as_str().unwrap(), out.stdout.trim());
}

#[test]
fn heredocs_and_chmod() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!(
            "FROM {BASE}\nENV WHO=heredoc\nRUN <<EOF\nset -e\necho \"$WHO\" > /ran\necho two >> /ran\nEOF\nRUN cat > /fed <<'END'\nno $WHO here\nEND\nCOPY <<EOF /copied\nhello $WHO\nEOF\nCOPY --chmod=640 f /modes/\n"
        ),
    );
    std::fs::write(ctx.path().join("f"), "f\n").unwrap();
    build(home.path(), ctx.path(), &["-t", "here:1"]).ok();
    let cat = |p: &str| {
        run(ferry(home.path()).args(["run", "--rm", "here:1", "cat", p]))
            .ok()
            .stdout
    };
    assert_eq!(cat("/ran"), "heredoc\ntwo\n");
    assert_eq!(cat("/fed"), "no $WHO here\n");
    assert_eq!(cat("/copied"), "hello heredoc\n");
    let st =
        run(ferry(home.path()).args(["run", "--rm", "here:1", "stat", "-c", "%a", "/modes/f"]))
            .ok();
    assert_eq!(st.stdout, "640\n");
}

#[test]
fn cache_skips_unchanged_steps_and_reruns_from_a_changed_source() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!(
            "FROM {BASE}\nCOPY a /a\nRUN cat /a > /a2\nCOPY b /b\nRUN cat /b > /b2\nCMD [\"cat\", \"/b2\"]\n"
        ),
    );
    std::fs::write(ctx.path().join("a"), "a\n").unwrap();
    std::fs::write(ctx.path().join("b"), "b\n").unwrap();
    let first = build(home.path(), ctx.path(), &["-t", "c:1"]).ok();
    assert_eq!(first.stdout.matches("Running in").count(), 2);
    let id = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("Successfully built "))
            .unwrap()
            .to_string()
    };
    let t = Instant::now();
    let again = build(home.path(), ctx.path(), &["-t", "c:1"]).ok();
    let cached_time = t.elapsed();
    assert_eq!(
        again.stdout.matches("Running in").count(),
        0,
        "{}",
        again.stdout
    );
    assert_eq!(
        again.stdout.matches("Using cache").count(),
        5,
        "{}",
        again.stdout
    );
    assert_eq!(id(&first.stdout), id(&again.stdout));
    assert!(cached_time < Duration::from_secs(5), "{cached_time:?}");
    // Touching b's content re-runs from COPY b on, and nothing before it.
    std::fs::write(ctx.path().join("b"), "b changed\n").unwrap();
    let changed = build(home.path(), ctx.path(), &["-t", "c:1"]).ok();
    let steps: Vec<&str> = changed.stdout.split("Step ").skip(1).collect();
    assert!(
        steps[1].contains("Using cache") && steps[2].contains("Using cache"),
        "{}",
        changed.stdout
    );
    assert!(
        !steps[3].contains("Using cache") && steps[4].contains("Running in"),
        "{}",
        changed.stdout
    );
    assert!(!steps[5].contains("Using cache"), "{}", changed.stdout);
    let r = run(ferry(home.path()).args(["run", "--rm", "c:1"])).ok();
    assert_eq!(r.stdout, "b changed\n");
    // A mode change of a source is a change too.
    run(Command::new("chmod").arg("600").arg(ctx.path().join("a"))).ok();
    let moded = build(home.path(), ctx.path(), &["-t", "c:1"]).ok();
    assert_eq!(
        moded.stdout.matches("Running in").count(),
        2,
        "{}",
        moded.stdout
    );
    // --no-cache runs everything.
    let nocache = build(home.path(), ctx.path(), &["--no-cache", "-t", "c:1"]).ok();
    assert_eq!(nocache.stdout.matches("Using cache").count(), 0);
    assert_eq!(nocache.stdout.matches("Running in").count(), 2);
}

#[test]
fn source_date_epoch_makes_builds_byte_identical() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!("FROM {BASE}\nCOPY f /f\nRUN echo made > /made && mkdir -p /d/e\nENV X=1\n"),
    );
    std::fs::write(ctx.path().join("f"), "f\n").unwrap();
    let id = |r: &Ran| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Successfully built "))
            .unwrap()
            .to_string()
    };
    let b = |env: Option<&str>, extra: &[&str]| {
        let mut c = ferry(home.path());
        c.arg("build").arg("--no-cache").args(extra).arg(ctx.path());
        if let Some(e) = env {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        run(c).ok()
    };
    let one = b(Some("1700000000"), &["-t", "sde:1"]);
    std::thread::sleep(Duration::from_millis(1100));
    let two = b(Some("1700000000"), &[]);
    assert_eq!(id(&one), id(&two), "same inputs, same image");
    let three = b(None, &["--timestamp", "1700000000"]);
    assert_eq!(
        id(&one),
        id(&three),
        "--timestamp is the same as SOURCE_DATE_EPOCH"
    );
    let plain1 = b(None, &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let plain2 = b(None, &[]);
    assert_ne!(
        id(&plain1),
        id(&plain2),
        "without a timestamp, times differ"
    );
    let inspect = run(ferry(home.path()).args(["image", "inspect", "sde:1"])).ok();
    assert!(inspect.stdout.contains(&id(&one)), "{}", inspect.stdout);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Created"], "2023-11-14T22:13:20Z");
}

#[test]
fn copy_fallback_gives_the_same_image_as_overlayfs() {
    // RUN steps made by comparing trees (no overlayfs) and from overlayfs's upper directory:
    // the same layers, each giving the same file tree. (The bytes may differ: overlayfs
    // records a replaced directory as opaque where a comparison lists what vanished.)
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    corpus_context("run-changes", ctx.path());
    let image = |rootfs: &str| {
        let tag = format!("fallback:{rootfs}");
        run(ferry(home.path())
            .env("FERRY_ROOTFS", rootfs)
            .args(["build", "--no-cache", "-t", &tag])
            .arg(ctx.path()))
        .ok();
        let tar = home.path().join(format!("{rootfs}.tar"));
        run(ferry(home.path()).args(["save", &tag, "-o"]).arg(&tar)).ok();
        read_saved(&tar)
    };
    let overlay = image("overlay");
    let copy = image("copy");
    let diff = tree_diff(&overlay.tree, &copy.tree);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
    assert_eq!(overlay.layers, copy.layers);
    assert!(copy.tree.contains_key("data/old/c") && !copy.tree.contains_key("data/old/a"));
}

/// A failed build: one line naming the file and line, a non-zero exit, no new image, no
/// container and nothing staged left.
fn assert_clean_failure(home: &Path, ctx: &Path, dockerfile: &str, expect: &[&str]) -> Ran {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let before = run(ferry(home).args(["images", "-q"])).ok().stdout;
    let r = build(home, ctx, &["-t", "broken:1"]).failed();
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: Dockerfile:"), "{}", r.stderr);
    for e in expect {
        assert!(
            first.contains(e),
            "{e:?} not in the error line: {}",
            r.stderr
        );
    }
    assert!(
        r.stderr.lines().skip(1).all(|l| l.starts_with("hint: ")),
        "one line (and a hint): {}",
        r.stderr
    );
    assert_eq!(run(ferry(home).args(["images", "-q"])).ok().stdout, before);
    assert_eq!(run(ferry(home).args(["ps", "-aq"])).ok().stdout, "");
    let store = home.join("store");
    let leftovers = |dir: &str| {
        std::fs::read_dir(store.join(dir))
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(leftovers("tmp"), Vec::<String>::new());
    assert_eq!(leftovers("containers"), Vec::<String>::new());
    r
}

#[test]
fn bad_dockerfiles_fail_with_one_line_naming_the_place() {
    let s = require_services!();
    let home = ferry_home(s);
    let ctx = tempdir();
    let h = home.path();
    let c = ctx.path();
    std::fs::write(c.join("in"), "in\n").unwrap();
    std::fs::create_dir(c.join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", c.join("sub/out")).unwrap();
    std::os::unix::fs::symlink("../../outside", c.join("sub/up")).unwrap();
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nRUN echo \"unterminated\nCMD [1]\n"),
        &["Dockerfile:3:", "strings only"],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\n\nFLY away\n"),
        &["Dockerfile:3:", "unknown instruction: FLY"],
    );
    let r = assert_clean_failure(
        h,
        c,
        "FROM nothere:1\nRUN true\n",
        &["Dockerfile:1: FROM nothere:1", "not in ferry's store"],
    );
    r.assert_stderr("hint: ferry build uses images of ferry's store only");
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY missing /x\n"),
        &[
            "Dockerfile:2: COPY missing /x",
            "file not found in build context",
        ],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY ../x /x\n"),
        &["Dockerfile:2: COPY ../x /x", "outside the build context"],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY /etc/passwd /x\n"),
        &["Dockerfile:2:", "relative to the context"],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY in /in\nCOPY sub/out /x\n"),
        &[
            "Dockerfile:3: COPY sub/out /x",
            "leads outside the build context",
        ],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY sub /x\nCOPY sub/up /y\n"),
        &["Dockerfile:3:", "outside the build context"],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY in /in\nRUN echo before && exit 3\n"),
        &[
            "Dockerfile:3: RUN echo before && exit 3",
            "The command '/bin/sh -c echo before && exit 3' returned a non-zero code: 3",
        ],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nADD http://127.0.0.1:1/file /file\n"),
        &[
            "Dockerfile:2: ADD http://127.0.0.1:1/file /file",
            "failed to download the file",
        ],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM --platform=linux/arm64 {BASE}\nRUN true\n"),
        &["Dockerfile:1:", "is for linux/amd64, not linux/arm64"],
    );
    assert_clean_failure(
        h,
        c,
        &format!("FROM {BASE}\nCOPY --chown=ghost in /in\n"),
        &["Dockerfile:2:", "no such user: ghost"],
    );
}

/// Starts `ferry build ARGS CTX`, sends it Ctrl-C once a RUN step printed `started`, and
/// returns how it ended and when the signal was sent.
fn interrupted_build(home: &Path, ctx: &Path, args: &[&str]) -> (std::process::Output, Instant) {
    let mut child = ferry(home)
        .arg("build")
        .args(args)
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    for l in lines.by_ref() {
        if l.unwrap() == "started" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30));
    }
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    (child.wait_with_output().unwrap(), start)
}

#[test]
fn ctrl_c_during_run_stops_the_build_and_leaves_nothing() {
    let s = require_services!();
    let (home, ctx) = setup(s, &format!("FROM {BASE}\nRUN echo started && sleep 60\n"));
    let (out, start) = interrupted_build(home.path(), ctx.path(), &["-t", "interrupted:1"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "the build stopped at once"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.starts_with("error: Dockerfile:2: RUN echo started && sleep 60: interrupted"),
        "{stderr}"
    );
    assert_eq!(run(ferry(home.path()).args(["ps", "-aq"])).ok().stdout, "");
    let images = run(ferry(home.path()).arg("images")).ok();
    assert!(!images.stdout.contains("interrupted"), "{}", images.stdout);
    let tmp = home.path().join("store/tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

/// The store's snapshots (their directories) and what each one's `info.json` says.
fn snapshot_infos(store: &Path) -> Vec<(std::path::PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(store.join("snapshots"))
        .unwrap()
        .flatten()
    {
        if let Ok(info) = std::fs::read(e.path().join("info.json")) {
            out.push((e.path(), serde_json::from_slice(&info).unwrap()));
        }
    }
    out
}

/// The store's snapshots whose layer blob is in the store: each one's recorded head must be
/// the digest of the blob's first 64 KiB once decompressed (what a load matches layers by).
fn assert_snapshot_heads(store: &Path) -> usize {
    use sha2::Digest;
    use std::io::Read;
    let mut by_diff_id = std::collections::HashMap::new();
    for e in std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let bytes = std::fs::read(e.path()).unwrap();
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            continue;
        }
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut tar)
            .unwrap();
        let hex = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
        by_diff_id.insert(hex(&tar), hex(&tar[..tar.len().min(64 << 10)]));
    }
    let mut checked = 0;
    for (_, info) in snapshot_infos(store) {
        let diff_id = info["diff_id"].as_str().unwrap();
        if let Some(head) = by_diff_id.get(diff_id) {
            assert_eq!(info["head"].as_str(), Some(head.as_str()), "{info}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn a_step_before_a_failed_or_interrupted_one_stays_cached_with_its_blob() {
    // A step's layer (blob and snapshot), image and cache record are in the store before the
    // next step starts: also when a later step fails (here a COPY) or is interrupted.
    let s = require_services!();
    let (home, ctx) = setup(s, "");
    let (h, c) = (home.path(), ctx.path());
    let dockerfile = |last: &str| {
        format!(
            "FROM {BASE}\nRUN head -c 3000000 /dev/urandom > /noise && seq 1 300000 > /text\n{last}\n"
        )
    };
    assert_clean_failure(
        h,
        c,
        &dockerfile("COPY missing /x"),
        &[
            "Dockerfile:3: COPY missing /x",
            "file not found in build context",
        ],
    );
    let again = |last: &str| {
        std::fs::write(c.join("Dockerfile"), dockerfile(last)).unwrap();
        build(h, c, &["-t", "kept:1"]).ok()
    };
    let ok = again("RUN echo done");
    assert_eq!(ok.stdout.matches("Using cache").count(), 1, "{}", ok.stdout);
    // Interrupted during the next step: the same.
    std::fs::write(
        c.join("Dockerfile"),
        dockerfile("RUN echo started && sleep 60").replace("3000000", "3000001"),
    )
    .unwrap();
    let (out, _) = interrupted_build(h, c, &[]);
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(
        std::fs::read_dir(h.join("store/tmp")).unwrap().count(),
        0,
        "nothing left in the store's tmp/"
    );
    std::fs::write(
        c.join("Dockerfile"),
        dockerfile("RUN echo other").replace("3000000", "3000001"),
    )
    .unwrap();
    let tag = DockerTag::new("kept");
    let ok = build(h, c, &["-t", &tag]).ok();
    assert_eq!(ok.stdout.matches("Using cache").count(), 1, "{}", ok.stdout);
    // The image's blobs are whole: Docker checks every layer's diff_id as it loads it.
    let tar = h.join("kept.tar");
    run(ferry(h).args(["save", &tag, "-o"]).arg(&tar)).ok();
    run(s.docker().args(["load", "-i"]).arg(&tar)).ok();
    assert!(
        assert_snapshot_heads(&h.join("store")) >= 2,
        "the build's snapshots have their heads checked"
    );
}

#[test]
fn system_df_shows_the_build_cache_and_prune_removes_what_is_unused() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!("FROM {BASE}\nRUN head -c 100000 /dev/urandom > /noise\nENV A=1\n"),
    );
    build(home.path(), ctx.path(), &["-t", "cached:1"]).ok();
    let df = |h: &Path| {
        let out = run(ferry(h).args(["system", "df"])).ok().stdout;
        out.lines()
            .find(|l| l.starts_with("Build Cache"))
            .unwrap_or_else(|| panic!("no Build Cache row:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let row = df(home.path());
    assert_eq!(&row[2..4], ["2", "2"], "{row:?}");
    // Named, the image keeps its steps: prune leaves them, a rebuild uses them.
    run(ferry(home.path()).args(["system", "prune", "-f"])).ok();
    let again = build(home.path(), ctx.path(), &["-t", "cached:1"]).ok();
    assert_eq!(
        again.stdout.matches("Using cache").count(),
        2,
        "{}",
        again.stdout
    );
    // Without the name the steps are unused: df says so, prune removes them.
    run(ferry(home.path()).args(["rmi", "cached:1"])).ok();
    let row = df(home.path());
    assert_eq!(&row[2..4], ["2", "0"], "{row:?}");
    let reclaimable = row.last().map(String::as_str).unwrap_or_default();
    assert!(
        !reclaimable.starts_with("0B"),
        "the unused cache is reclaimable: {row:?}"
    );
    let p = run(ferry(home.path()).args(["system", "prune", "-f"])).ok();
    assert!(
        p.stdout.contains("Deleted build cache objects: 2"),
        "{}",
        p.stdout
    );
    let row = df(home.path());
    assert_eq!(&row[2..4], ["0", "0"], "{row:?}");
    let rebuilt = build(home.path(), ctx.path(), &["-t", "cached:1"]).ok();
    assert_eq!(
        rebuilt.stdout.matches("Using cache").count(),
        0,
        "{}",
        rebuilt.stdout
    );
    // -a removes even the cache of named images.
    run(ferry(home.path()).args(["system", "prune", "-a", "-f"])).ok();
    assert_eq!(&df(home.path())[2..4], ["0", "0"]);
}

#[test]
fn add_url_uses_the_proxy_and_trusts_only_the_cas_it_is_given() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!("FROM {BASE}\nADD https://localhost:5004/v2/ /from-tls.json\n"),
    );
    let proxy = crate::network::Tinyproxy::start(home.path(), None);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let with_proxy = |extra: &[&str]| {
        run(ferry(home.path())
            .env("HTTPS_PROXY", &url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .args(["build", "-t", "tls:1"])
            .args(extra)
            .arg(ctx.path()))
    };
    // TLS is verified: the test registry's CA is not trusted unless given.
    let refused = with_proxy(&[]).failed();
    let first = refused.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: Dockerfile:2: ADD https://localhost:5004/v2/ /from-tls.json: failed to download the file"),
        "{}",
        refused.stderr
    );
    with_proxy(&["--ca-cert", s.var("CA")]).ok();
    assert!(
        proxy.connects_to("localhost:5004") >= 2,
        "the proxy was not used"
    );
    let r = run(ferry(home.path()).args(["run", "--rm", "tls:1", "cat", "/from-tls.json"])).ok();
    assert_eq!(r.stdout, "{}");
}

#[test]
fn network_none_leaves_run_steps_only_loopback() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!(
            "FROM {BASE}\nRUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n"
        ),
    );
    build(
        home.path(),
        ctx.path(),
        &["--network", "none", "-t", "none:1"],
    )
    .ok();
    let cat = |tag: &str| {
        run(ferry(home.path()).args(["run", "--rm", "--network", "none", tag, "cat", "/ifaces"]))
            .ok()
            .stdout
    };
    assert_eq!(cat("none:1"), "lo\n");
    build(home.path(), ctx.path(), &["-t", "host:1"]).ok();
    assert_ne!(cat("host:1"), "lo\n", "the default is the host's network");
}

#[test]
fn layers_keep_xattrs_and_hard_links() {
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!("FROM {BASE}\nCOPY x /x\nRUN ln /x /y && echo more >> /y\n"),
    );
    let x = ctx.path().join("x");
    std::fs::write(&x, "x\n").unwrap();
    let name = std::ffi::CString::new("user.ferry").unwrap();
    let path = std::ffi::CString::new(x.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated strings and a value of the length given.
    let r = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), b"kept".as_ptr().cast(), 4, 0) };
    assert_eq!(r, 0, "the test directory takes user xattrs");
    build(home.path(), ctx.path(), &["-t", "xattr:1"]).ok();
    let tar = home.path().join("x.tar");
    run(ferry(home.path()).args(["save", "xattr:1", "-o"]).arg(&tar)).ok();
    let dir = tempdir();
    tar::Archive::new(std::fs::File::open(&tar).unwrap())
        .unpack(dir.path())
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let entries = |layer: &str| {
        let f = std::fs::File::open(dir.path().join(layer)).unwrap();
        let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let kind = e.header().entry_type();
            let mut xattr = None;
            if let Some(exts) = e.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    if ext.key().unwrap() == "SCHILY.xattr.user.ferry" {
                        xattr = Some(ext.value_bytes().to_vec());
                    }
                }
            }
            out.push((path, kind, link, xattr));
        }
        out
    };
    let copy = entries(&layers[1]);
    let x_entry = copy.iter().find(|e| e.0 == "x").unwrap();
    assert_eq!(x_entry.3.as_deref(), Some(&b"kept"[..]), "{copy:?}");
    let run_layer = entries(&layers[2]);
    let y = run_layer
        .iter()
        .find(|e| e.0 == "y")
        .expect("y in the RUN layer");
    let x_again = run_layer.iter().find(|e| e.0 == "x").expect("x copied up");
    // One of the two names is the file, the other a hard link to it.
    let (file, link) = if y.1.is_hard_link() {
        (x_again, y)
    } else {
        (y, x_again)
    };
    assert!(link.1.is_hard_link(), "{run_layer:?}");
    assert_eq!(link.2.as_deref(), Some(file.0.as_str()), "{run_layer:?}");
    // overlayfs copied the xattr up with the file: the RUN layer has it too.
    assert_eq!(file.3.as_deref(), Some(&b"kept"[..]), "{run_layer:?}");
    let r = run(ferry(home.path()).args(["run", "--rm", "xattr:1", "cat", "/x"])).ok();
    assert_eq!(r.stdout, "x\nmore\n", "/x and /y are one file in the image");
    assert!(assert_snapshot_sizes(&home.path().join("store")) >= 3);
}

/// Every snapshot's recorded size and entry count (what `system df` adds up) must be what
/// its directory holds: the bytes of its regular files and its entries at every depth.
/// Returns how many snapshots were checked.
fn assert_snapshot_sizes(store: &Path) -> usize {
    fn walk(dir: &Path, acc: &mut (u64, u64)) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            acc.1 += 1;
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), acc);
            } else if m.is_file() {
                acc.0 += m.len();
            }
        }
    }
    let mut checked = 0;
    for (dir, info) in snapshot_infos(store) {
        let mut acc = (0, 0);
        walk(&dir.join("fs"), &mut acc);
        assert_eq!(
            (info["size"].as_u64(), info["entries"].as_u64()),
            (Some(acc.0), Some(acc.1)),
            "{info}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn run_steps_mount_their_overlay_volatile_and_containers_do_not() {
    // overlayfs fsyncs every file it copies up unless mounted `volatile` (Linux 5.10 on); a
    // build step's upper directory becomes a layer that the store syncs once. Containers of
    // `ferry run` keep the default.
    let s = require_services!();
    let (home, ctx) = setup(
        s,
        &format!("FROM {BASE}\nRUN grep ' / / ' /proc/self/mountinfo > /root-mount\n"),
    );
    build(home.path(), ctx.path(), &["-t", "volatile:1"]).ok();
    let step = run(ferry(home.path()).args(["run", "--rm", "volatile:1", "cat", "/root-mount"]))
        .ok()
        .stdout;
    let here = run(ferry(home.path()).args([
        "run",
        "--rm",
        "volatile:1",
        "grep",
        " / / ",
        "/proc/self/mountinfo",
    ]))
    .ok()
    .stdout;
    assert!(step.contains(" overlay "), "{step}");
    assert!(here.contains(" overlay "), "{here}");
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let kernel = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    assert_eq!(
        step.contains("volatile"),
        kernel >= (5, 10),
        "{release}: {step}"
    );
    assert!(!here.contains("volatile"), "{here}");
}
