//! `ferry push` into real registries (a fresh distribution registry, and the token-auth,
//! htpasswd and TLS ones under a prefix of each test's own), checked with the registry's own
//! answers, the real Docker engine, containerd and `ferry fetch`; the fault proxy in front for
//! counting uploads, dropping connections mid-upload and refusing with 413.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_testkit::{FaultProxy, Plan};
use serde_json::Value;

use crate::harness::{Ran, Services, ferry, run, sha256_file, tempdir, unique};
use crate::load_support::docker_save;
use crate::require_services;

/// `ferry fetch IMAGES -o out` from the plain registry (`ferry/busybox:oci` style names).
pub(crate) fn fetch(s: &Services, home: &Path, out: &Path, images: &[&str], extra: &[&str]) -> Ran {
    fetch_from(home, s.registry(), out, images, extra)
}

/// Fetches `images` (`repo:tag`) from the test registry into `home/name`, which must work;
/// returns the archive's path.
fn fetched(s: &Services, home: &Path, name: &str, images: &[&str], extra: &[&str]) -> PathBuf {
    let archive = home.join(name);
    fetch(s, home, &archive, images, extra).ok();
    archive
}

/// `ferry fetch` of `images` (`repo:tag`) from `registry` (plain HTTP) into `out`.
pub(crate) fn fetch_from(
    home: &Path,
    registry: &str,
    out: &Path,
    images: &[&str],
    extra: &[&str],
) -> Ran {
    run(ferry(home)
        .args([
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            registry,
        ])
        .args(extra)
        .arg("-o")
        .arg(out)
        .args(images.iter().map(|i| format!("{registry}/{i}"))))
}

/// `ferry push SOURCES --to TO` (plain HTTP to the target's host).
pub(crate) fn push(home: &Path, to: &str, sources: &[&Path], extra: &[&str]) -> Ran {
    let host = to.split('/').next().unwrap();
    run(ferry(home)
        .args([
            "push",
            "--progress",
            "plain",
            "--insecure-registry",
            host,
            "--to",
            to,
        ])
        .args(extra)
        .args(sources))
}

/// The digest `registry` answers for `repo:reference`, asked with curl (not ferry).
pub(crate) fn registry_digest(registry: &str, repo: &str, reference: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sfI", "--max-time", "10"])
        .args([
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
        ])
        .arg(format!("http://{registry}/v2/{repo}/manifests/{reference}"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("docker-content-digest")
            .then(|| v.trim().to_string())
    })
}

fn manifest_digest(s: &Services, repo_tag: &str) -> String {
    s.facts(repo_tag)["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sum of the distinct blob sizes (config and layers) of single-platform test images.
fn blob_bytes(s: &Services, repo_tags: &[&str]) -> u64 {
    let mut seen = Vec::new();
    let mut total = 0;
    for t in repo_tags {
        let f = s.facts(t);
        let config = (
            f["config_digest"].as_str().unwrap(),
            f["config_size"].as_u64().unwrap(),
        );
        let layers = f["layer_digests"]
            .as_array()
            .unwrap()
            .iter()
            .zip(f["layer_sizes"].as_array().unwrap());
        for (d, size) in std::iter::once(config)
            .chain(layers.map(|(d, s)| (d.as_str().unwrap(), s.as_u64().unwrap())))
        {
            if !seen.contains(&d) {
                seen.push(d);
                total += size;
            }
        }
    }
    total
}

/// The number in `N what` of a push's summary line (`3 blobs uploaded`, `1 mounted`).
fn counted(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pushed ") || l.starts_with("would push "))
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} not in {line}"));
    line[..at]
        .trim_end()
        .rsplit([' ', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {line}"))
}

#[test]
fn pushed_images_keep_their_digests_and_pull_by_tag_and_digest_with_docker_and_containerd() {
    let s = require_services!();
    let home = tempdir();
    let archive = fetched(
        s,
        home.path(),
        "a.tar",
        &["ferry/busybox:docker", "ferry/multilayer:oci"],
        &[],
    );
    let prefix = unique("digests");
    let to = format!("{}/{prefix}", s.push_registry());
    let ran = push(home.path(), &to, &[&archive], &[]).ok();
    for tag in ["ferry/busybox:docker", "ferry/multilayer:oci"] {
        let want = manifest_digest(s, tag);
        let (repo, reference) = tag.split_once(':').unwrap();
        assert_eq!(
            registry_digest(s.push_registry(), &format!("{prefix}/{repo}"), reference).as_deref(),
            Some(want.as_str()),
            "the registry reports another digest for {tag}"
        );
        assert!(
            ran.stdout.contains(&format!("{to}/{tag}  {want}")),
            "push did not report {tag} with its digest:\n{}",
            ran.stdout
        );
    }
    // Docker pulls and runs them, by tag and by digest.
    let by_tag = format!("{to}/ferry/busybox:docker");
    let by_digest = format!(
        "{to}/ferry/multilayer@{}",
        manifest_digest(s, "ferry/multilayer:oci")
    );
    for (image, facts) in [
        (&by_tag, "ferry/busybox:docker"),
        (&by_digest, "ferry/multilayer:oci"),
    ] {
        run(s.docker().args(["pull", "-q", image])).ok();
        let out = run(s.docker().args(["run", "--rm", image])).ok();
        assert_eq!(out.stdout.trim(), s.expected_stdout(facts));
        run(s.docker().args(["rmi", image]));
    }
    // containerd pulls them, by tag and by digest, and keeps the digests.
    // A namespace of this run's own: engineers' and CI's runs share one containerd.
    let ns = format!("ferry-it-push-{}", std::process::id());
    let ns = ["-n", ns.as_str()];
    for (image, facts) in [
        (&by_tag, "ferry/busybox:docker"),
        (&by_digest, "ferry/multilayer:oci"),
    ] {
        run(s
            .ctr()
            .args(ns)
            .args(["images", "pull", "--plain-http", image]))
        .ok();
        let listed = run(s.ctr().args(ns).args(["images", "ls"])).ok();
        let line = listed
            .stdout
            .lines()
            .find(|l| l.starts_with(image.as_str()))
            .unwrap_or_else(|| panic!("containerd lists no {image}:\n{}", listed.stdout));
        assert!(line.contains(&manifest_digest(s, facts)), "{line}");
        run(s.ctr().args(ns).args(["images", "rm", image]));
    }
}

#[test]
fn fetching_back_from_the_target_gives_the_same_archive_byte_for_byte() {
    let s = require_services!();
    let home = tempdir();
    // One address for the origin, then for the target, so the names in both archives agree.
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let images = [
        "ferry/multilayer:oci",
        "ferry/busybox:docker",
        "ferry/many:oci",
    ];
    let original = home.path().join("original.tar");
    fetch_from(home.path(), &proxy.addr, &original, &images, &[]).ok();
    // The target: a fresh place in the push registry, under the same names.
    proxy.set_upstream(s.push_registry());
    proxy.set_upstream_prefix(Some(&unique("back")));
    let pushing = home.path().join("pushing");
    std::fs::create_dir_all(&pushing).unwrap();
    let pushed = push(&pushing, &proxy.addr, &[&original], &[]).ok();
    assert!(
        counted(&pushed.stderr, "blobs uploaded") > 40,
        "{}",
        pushed.stderr
    );
    // A fresh cache: every blob comes from the target, none from the first archive.
    let again = home.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    proxy.reset_counters();
    let back = again.join("back.tar");
    fetch_from(&again, &proxy.addr, &back, &images, &[]).ok();
    assert!(
        proxy.blob_bytes() > 1 << 20,
        "the second fetch did not download from the target"
    );
    assert_eq!(
        sha256_file(&back),
        sha256_file(&original),
        "the archive fetched back from the target differs from the original"
    );
}

#[test]
fn a_second_push_uploads_nothing_and_a_dry_run_says_so() {
    let s = require_services!();
    let home = tempdir();
    let archive = home.path().join("a.tar");
    let tags = ["ferry/many:oci", "ferry/multilayer:docker"];
    fetch(s, home.path(), &archive, &tags, &[]).ok();
    let proxy = FaultProxy::start(s.push_registry(), Plan::default()).unwrap();
    let to = format!("{}/{}", proxy.addr, unique("again"));
    let first = push(home.path(), &to, &[&archive], &[]).ok();
    assert!(
        proxy.upload_bytes() >= blob_bytes(s, &tags) - (1 << 20),
        "the first push sent too little"
    );
    assert!(
        counted(&first.stderr, "blobs uploaded") > 40,
        "{}",
        first.stderr
    );
    proxy.reset_counters();
    let dry = push(home.path(), &to, &[&archive], &["--dry-run"]).ok();
    assert!(
        !dry.stdout
            .lines()
            .any(|l| l.starts_with("upload") || l.starts_with("mount")),
        "a dry run of a pushed archive plans uploads:\n{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .lines()
            .filter(|l| l.starts_with("exists"))
            .count()
            > 40
    );
    assert!(dry.stdout.contains("(already there)"));
    let second = push(home.path(), &to, &[&archive], &[]).ok();
    assert_eq!(
        counted(&second.stderr, "blobs uploaded"),
        0,
        "{}",
        second.stderr
    );
    assert_eq!(
        counted(&second.stderr, "manifests put"),
        0,
        "{}",
        second.stderr
    );
    let writes: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(
        writes.is_empty(),
        "a push of what is there wrote: {writes:?}"
    );
    assert_eq!(proxy.upload_bytes(), 0);
}

/// Pushes `ferry/update:1` through a proxy following `plan`, its 4 MiB base layer in 1 MiB
/// chunks, one blob at a time; returns the push, the proxy and the prefix pushed to.
fn push_update_through(s: &Services, home: &Path, plan: Plan) -> (Ran, FaultProxy, String) {
    let archive = home.join("u.tar");
    fetch(s, home, &archive, &["ferry/update:1"], &[]).ok();
    let proxy = FaultProxy::start(s.push_registry(), plan).unwrap();
    let prefix = unique("cut");
    let to = format!("{}/{prefix}", proxy.addr);
    let ran = push(
        home,
        &to,
        &[&archive],
        &["--chunk-size", "1M", "--concurrency", "1"],
    );
    (ran, proxy, prefix)
}

/// The registry names `ferry/update:1` under `prefix` with its original digest.
fn assert_update_pushed(s: &Services, prefix: &str) {
    assert_eq!(
        registry_digest(s.push_registry(), &format!("{prefix}/ferry/update"), "1").as_deref(),
        Some(manifest_digest(s, "ferry/update:1").as_str())
    );
}

#[test]
fn a_push_cut_mid_upload_resumes_where_the_registry_stands() {
    let s = require_services!();
    let home = tempdir();
    // The chunk at 1 MiB of the base layer is cut 300 KiB in, before the (buffering) proxy
    // passed it on.
    let cut = 300 << 10;
    let plan = Plan {
        cut_upload_after: Some((cut, 1)),
        ..Plan::default()
    };
    let (ran, proxy, prefix) = push_update_through(s, home.path(), plan);
    ran.ok().assert_stderr("retrying blob sha256:");
    let seen = proxy.seen();
    assert!(
        seen.iter().any(|r| r.status == 0),
        "no upload was cut: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|r| r.method == "GET" && r.path.contains("/blobs/uploads/")),
        "ferry did not ask the registry where the upload stood"
    );
    // Everything once, plus the part of the chunk that was lost: nothing the registry held
    // was sent again.
    assert_eq!(
        proxy.upload_bytes(),
        blob_bytes(s, &["ferry/update:1"]) + cut,
        "bytes the registry already had were sent again"
    );
    assert_update_pushed(s, &prefix);
}

#[test]
fn an_upload_the_registry_dropped_after_a_cut_starts_over_and_succeeds() {
    let s = require_services!();
    let home = tempdir();
    // This time the registry gets part of the chunk: distribution then refuses to go on with
    // that upload, and only a fresh one succeeds.
    let plan = Plan {
        cut_upload_after: Some((300 << 10, 1)),
        cut_forwards_partial: true,
        ..Plan::default()
    };
    let (ran, proxy, prefix) = push_update_through(s, home.path(), plan);
    ran.ok();
    // One upload per blob (config and three layers), and one more for the dropped one.
    let posts = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/blobs/uploads/"))
        .count();
    assert_eq!(posts, 5, "the dropped upload was not started again");
    assert_update_pushed(s, &prefix);
}

#[test]
fn blobs_another_repository_holds_are_mounted_and_counted() {
    let s = require_services!();
    let home = tempdir();
    // Both share the busybox layer.
    let archive = fetched(
        s,
        home.path(),
        "two.tar",
        &["ferry/busybox:oci", "ferry/multilayer:oci"],
        &[],
    );
    let proxy = FaultProxy::start(s.push_registry(), Plan::default()).unwrap();
    let to = format!("{}/{}", proxy.addr, unique("mount"));
    let ran = push(home.path(), &to, &[&archive], &[]).ok();
    assert_eq!(counted(&ran.stderr, "mounted"), 1, "{}", ran.stderr);
    let layer = s.facts("ferry/busybox:oci")["layer_digests"][0]
        .as_str()
        .unwrap()
        .to_string();
    let mounted = |seen: &[ferry_testkit::Seen]| {
        seen.iter()
            .filter(|r| {
                r.method == "POST"
                    && r.path.contains("mount=")
                    && r.path.contains(&layer[7..])
                    && r.status == 201
            })
            .count()
    };
    assert_eq!(mounted(&proxy.seen()), 1, "{:?}", proxy.seen());
    // A later push to another prefix mounts from where the first push put it.
    let update = home.path().join("update.tar");
    fetch(s, home.path(), &update, &["ferry/update:2"], &[]).ok();
    proxy.reset_counters();
    let to2 = format!("{}/{}", proxy.addr, unique("mount2"));
    let ran = push(home.path(), &to2, &[&update], &[]).ok();
    assert_eq!(counted(&ran.stderr, "mounted"), 1, "{}", ran.stderr);
    assert_eq!(mounted(&proxy.seen()), 1, "{:?}", proxy.seen());
    assert!(
        proxy.upload_bytes() < blob_bytes(s, &["ferry/update:2"]) - 1_000_000,
        "the mounted busybox layer was uploaded too"
    );
}

/// Pushes with `--username NAME --password-stdin` to a registry needing credentials.
fn push_with_password(
    s: &Services,
    home: &Path,
    to: &str,
    archive: &Path,
    password: &str,
    extra: &[&str],
) -> Ran {
    use std::io::Write;
    let mut child = ferry(home)
        .args(["push", "--progress", "none", "--to", to])
        .args(extra)
        .args(["-u", s.var("USER"), "--password-stdin"])
        .arg(archive)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

#[test]
fn token_auth_basic_auth_and_tls_registries_take_pushes() {
    let s = require_services!();
    let home = tempdir();
    let archive = fetched(s, home.path(), "bb.tar", &["ferry/busybox:oci"], &[]);
    let want = manifest_digest(s, "ferry/busybox:oci");
    let prefix = format!("push-it/{}", unique("auth"));
    for registry in [s.var("TOKEN_REGISTRY"), s.var("BASIC_REGISTRY")] {
        let to = format!("{registry}/{prefix}");
        let ran = push_with_password(
            s,
            home.path(),
            &to,
            &archive,
            s.var("PASSWORD"),
            &["--insecure-registry", registry],
        )
        .ok();
        assert!(ran.stdout.contains(&want), "{}", ran.stdout);
        // Read back with credentials: the same manifest.
        let back = home.path().join("back.tar");
        let fetched = run(ferry(home.path())
            .args([
                "fetch",
                "--progress",
                "none",
                "--insecure-registry",
                registry,
                "-o",
            ])
            .arg(&back)
            .arg(format!("{to}/ferry/busybox:oci"))
            .env("FERRY_USERNAME", s.var("USER"))
            .env("FERRY_PASSWORD", s.var("PASSWORD")));
        fetched.ok();
        let index: Value =
            serde_json::from_slice(&crate::harness::tar_read(&back, "index.json").unwrap())
                .unwrap();
        assert_eq!(index["manifests"][0]["digest"], want.as_str());
        // Wrong or no credentials: a one-line refusal naming what was pushed and the code.
        let wrong = push_with_password(
            s,
            home.path(),
            &format!("{registry}/{}", unique("wrong")),
            &archive,
            "not-the-password",
            &["--insecure-registry", registry],
        )
        .failed();
        assert!(
            wrong.stderr.contains(registry)
                && (wrong.stderr.contains("UNAUTHORIZED")
                    || wrong.stderr.contains("rejected the credentials")),
            "{}",
            wrong.stderr
        );
        assert!(!wrong.stderr.contains("not-the-password"));
    }
    let anonymous = push(
        home.path(),
        &format!("{}/push-it/{}", s.var("TOKEN_REGISTRY"), unique("anon")),
        &[&archive],
        &[],
    )
    .failed();
    assert!(
        anonymous.stderr.contains("UNAUTHORIZED") || anonymous.stderr.contains("DENIED"),
        "{}",
        anonymous.stderr
    );
    anonymous.assert_stderr("blob sha256:");

    // TLS: the test CA must be named; the registry's certificate is otherwise refused.
    let tls = s.var("TLS_REGISTRY");
    let to = format!("{tls}/push-it/{}", unique("tls"));
    let refused = run(ferry(home.path())
        .args(["push", "--progress", "none", "--to", &to])
        .arg(&archive))
    .failed();
    refused.assert_stderr(&format!("TLS handshake with {tls} failed"));
    let ran = run(ferry(home.path())
        .args([
            "push",
            "--progress",
            "none",
            "--to",
            &to,
            "--ca-cert",
            s.var("CA"),
        ])
        .arg(&archive))
    .ok();
    assert!(ran.stdout.contains(&want), "{}", ran.stdout);
}

#[test]
fn a_multi_platform_index_is_pushed_and_fetched_back_with_its_digest_and_load_picks_amd64() {
    let s = require_services!();
    let home = tempdir();
    let archive = fetched(
        s,
        home.path(),
        "all.tar",
        &["ferry/multiarch:oci", "ferry/multiarch:docker"],
        &["--platform", "all"],
    );
    // docker load gets the default platform's image from manifest.json.
    run(s.docker().arg("load").arg("-i").arg(&archive)).ok();
    let out = run(s
        .docker()
        .args(["run", "--rm", &s.image("ferry/multiarch:oci")]))
    .ok();
    assert_eq!(out.stdout.trim(), "multiarch linux/amd64");
    let prefix = unique("multi");
    let to = format!("{}/{prefix}", s.push_registry());
    push(home.path(), &to, &[&archive], &[]).ok();
    for tag in ["oci", "docker"] {
        assert_eq!(
            registry_digest(s.push_registry(), &format!("{prefix}/ferry/multiarch"), tag)
                .as_deref(),
            Some(manifest_digest(s, &format!("ferry/multiarch:{tag}")).as_str()),
            "the index of ferry/multiarch:{tag} changed on its way"
        );
    }
    let back = home.path().join("back.tar");
    fetch_from(
        home.path(),
        s.push_registry(),
        &back,
        &[&format!("{prefix}/ferry/multiarch:oci")],
        &["--platform", "all"],
    )
    .ok();
    let index: Value =
        serde_json::from_slice(&crate::harness::tar_read(&back, "index.json").unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        manifest_digest(s, "ferry/multiarch:oci").as_str()
    );
    let platforms = s.facts("ferry/multiarch:oci")["platforms"]
        .as_array()
        .unwrap()
        .clone();
    let config_of = |platform: &str| {
        platforms
            .iter()
            .find(|p| p["platform"] == platform)
            .unwrap_or_else(|| panic!("no {platform} in {platforms:?}"))["config_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    run(ferry(home.path())
        .args(["load", "--progress", "none", "-i"])
        .arg(&back))
    .ok();
    let id = run(ferry(home.path()).args(["images", "-q", "--no-trunc"])).ok();
    assert_eq!(
        id.stdout.trim(),
        config_of("linux/amd64"),
        "ferry load did not pick linux/amd64"
    );
    let arm = home.path().join("arm");
    std::fs::create_dir_all(&arm).unwrap();
    run(ferry(&arm)
        .args([
            "load",
            "--progress",
            "none",
            "--platform",
            "linux/arm64",
            "-i",
        ])
        .arg(&back))
    .ok();
    let id = run(ferry(&arm).args(["images", "-q", "--no-trunc"])).ok();
    assert_eq!(id.stdout.trim(), config_of("linux/arm64/v8"));
}

#[test]
fn refusals_are_one_line_naming_the_object_and_the_registry_code() {
    let s = require_services!();
    let home = tempdir();
    let archive = fetched(s, home.path(), "bb.tar", &["ferry/busybox:docker"], &[]);
    // An unknown registry.
    let ran = push(
        home.path(),
        "127.0.0.1:9/x",
        &[&archive],
        &["--retries", "1"],
    )
    .failed();
    ran.assert_stderr("cannot connect to registry 127.0.0.1:9");
    // 413 from a size-limiting proxy.
    let proxy = FaultProxy::start(s.push_registry(), Plan::default()).unwrap();
    proxy.set_plan(Plan {
        upload_status: Some((413, 1000, vec![])),
        ..Plan::default()
    });
    let ran = push(
        home.path(),
        &format!("{}/{}", proxy.addr, unique("413")),
        &[&archive],
        &[],
    )
    .failed();
    ran.assert_stderr("registry answered HTTP 413");
    ran.assert_stderr("blob sha256:");
    ran.assert_stderr("--chunk-size");
    // A manifest the registry does not accept: its descriptor says OCI, its body says Docker.
    let crafted = home.path().join("mislabelled.tar");
    relabel_manifest(
        &archive,
        &crafted,
        "application/vnd.oci.image.manifest.v1+json",
    );
    let to = format!("{}/{}", s.push_registry(), unique("refused"));
    let ran = push(home.path(), &to, &[&crafted], &[]).failed();
    ran.assert_stderr("MANIFEST_INVALID");
    ran.assert_stderr(&format!("manifest {}", to.split_once('/').unwrap().1));
}

/// A copy of `archive` whose index.json gives its manifest the media type `media_type`.
fn relabel_manifest(archive: &Path, out: &Path, media_type: &str) {
    use std::io::Read;
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if path == "index.json" {
            let mut v: Value = serde_json::from_slice(&data).unwrap();
            v["manifests"][0]["mediaType"] = media_type.into();
            data = serde_json::to_vec(&v).unwrap();
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    std::fs::write(out, b.into_inner().unwrap()).unwrap();
}

#[test]
fn legacy_docker_save_archives_get_a_manifest_and_store_images_push_too() {
    let s = require_services!();
    let home = tempdir();
    let saved = docker_save(s, "ferry/busybox:docker", home.path());
    let prefix = unique("legacy");
    let to = format!("{}/{prefix}", s.push_registry());
    let ran = push(home.path(), &to, &[&saved], &[]).ok();
    ran.assert_stderr("has no manifest in the archive");
    let pushed = format!("{to}/ferry/busybox:docker");
    run(s.docker().args(["pull", "-q", &pushed])).ok();
    let out = run(s.docker().args(["run", "--rm", &pushed])).ok();
    assert_eq!(out.stdout.trim(), "hello from ferry busybox");
    run(s.docker().args(["rmi", &pushed]));

    // An image of ferry's store, by its name.
    let archive = fetched(s, home.path(), "ml.tar", &["ferry/multilayer:docker"], &[]);
    run(ferry(home.path())
        .args(["load", "--progress", "none", "-i"])
        .arg(&archive))
    .ok();
    let name = format!("{}/ferry/multilayer:docker", s.registry());
    let ran = push(home.path(), &to, &[Path::new(&name)], &[]).ok();
    let want = manifest_digest(s, "ferry/multilayer:docker");
    assert!(ran.stdout.contains(&want), "{}", ran.stdout);
    assert_eq!(
        registry_digest(
            s.push_registry(),
            &format!("{prefix}/ferry/multilayer"),
            "docker"
        )
        .as_deref(),
        Some(want.as_str())
    );
}

#[test]
fn image_lists_choose_what_fetch_and_push_take() {
    let s = require_services!();
    let home = tempdir();
    let list = home.path().join("images.txt");
    let reg = s.registry();
    std::fs::write(
        &list,
        format!(
            "# what the site needs\n{reg}/ferry/busybox:oci\n\n{reg}/ferry/multiarch:oci --platform linux/arm64   # the ARM boards\n"
        ),
    )
    .unwrap();
    let archive = home.path().join("list.tar");
    run(ferry(home.path())
        .args([
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            reg,
            "-f",
        ])
        .arg(&list)
        .arg("-o")
        .arg(&archive))
    .ok();
    let index: Value =
        serde_json::from_slice(&crate::harness::tar_read(&archive, "index.json").unwrap()).unwrap();
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    let arm = s.facts("ferry/multiarch:oci")["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "linux/arm64/v8")
        .unwrap()["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        digests,
        [
            manifest_digest(s, "ferry/busybox:oci").as_str(),
            arm.as_str()
        ]
    );
    // The same kind of list picks images out of an archive for a push.
    let one = home.path().join("one.txt");
    std::fs::write(&one, format!("{reg}/ferry/multiarch:oci\n")).unwrap();
    let ran = run(ferry(home.path())
        .args([
            "push",
            "--progress",
            "none",
            "--insecure-registry",
            s.push_registry(),
            "--to",
        ])
        .arg(format!("{}/{}", s.push_registry(), unique("list")))
        .arg("-f")
        .arg(&one)
        .arg(&archive))
    .ok();
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    assert!(ran.stdout.contains(&arm), "{}", ran.stdout);
}

/// Where each entry of a tar starts (its header) and its data ends.
pub(crate) fn entry_offsets(tar: &Path) -> Vec<(String, u64, u64)> {
    let mut ar = tar::Archive::new(std::fs::File::open(tar).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let data = e.raw_file_position();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.raw_header_position(),
                data + e.size(),
            )
        })
        .collect()
}

/// The parts `base.000`, `base.001`, … that exist.
pub(crate) fn parts(base: &Path) -> Vec<PathBuf> {
    (0..)
        .map(|i| PathBuf::from(format!("{}.{i:03}", base.display())))
        .take_while(|p| p.exists())
        .collect()
}

#[test]
fn containerd_nodes_pull_the_origin_names_from_the_internal_registry_through_hosts_toml() {
    let s = require_services!();
    let home = tempdir();
    let archive = fetched(s, home.path(), "bb.tar", &["ferry/busybox:oci"], &[]);
    let prefix = unique("mirror");
    push(
        home.path(),
        &format!("{}/{prefix}", s.push_registry()),
        &[&archive],
        &[],
    )
    .ok();
    // The cluster recipe: the origin registry is out of reach (server), the internal one
    // serves its names below a prefix.
    let hosts = home.path().join("certs.d");
    let dir = hosts.join(s.registry());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:9\"\n\n[host.\"http://{}/v2/{prefix}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
            s.push_registry()
        ),
    )
    .unwrap();
    let ns = format!("ferry-it-mirror-{}", std::process::id());
    let ns = ["-n", ns.as_str()];
    let image = s.image("ferry/busybox:oci");
    run(s.ctr().args(ns).args(["images", "rm", &image]));
    run(s
        .ctr()
        .args(ns)
        .args(["images", "pull", "--hosts-dir"])
        .arg(&hosts)
        .arg(&image))
    .ok();
    let listed = run(s.ctr().args(ns).args(["images", "ls"])).ok();
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&image))
        .unwrap_or_else(|| panic!("containerd lists no {image}:\n{}", listed.stdout));
    assert!(
        line.contains(&manifest_digest(s, "ferry/busybox:oci")),
        "{line}"
    );
    run(s.ctr().args(ns).args(["images", "rm", &image]));
}
