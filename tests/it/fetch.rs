//! `ferry fetch` against the real registries, checked with the real Docker engine, containerd
//! and skopeo.

use std::path::Path;

use serde_json::Value;

use crate::harness::{
    self, Ran, Services, ferry, fetch_cmd, fetch_from, run, sha256_file, tar_entries, tar_read,
    tempdir,
};
use crate::require_services;

/// `ferry fetch` from the plain registry into `out`.
fn fetch(s: &Services, home: &Path, out: &Path, args: &[&str]) -> Ran {
    run(fetch_from(home, s.registry()).arg("-o").arg(out).args(args))
}

/// Every blob in the archive hashes to its name, and every path the metadata names exists.
fn assert_archive_consistent(tar: &Path) {
    use sha2::Digest;
    let f = std::fs::File::open(tar).unwrap();
    let mut ar = tar::Archive::new(f);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| h.len() == 64) {
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut e, &mut h).unwrap();
            assert_eq!(
                hex::encode(h.finalize()),
                hex,
                "blob {name} does not match its digest"
            );
        }
        assert!(
            !names.contains(&name),
            "{name} appears twice in the archive"
        );
        names.push(name);
    }
    let manifest: Value = serde_json::from_slice(&tar_read(tar, "manifest.json").unwrap()).unwrap();
    for entry in manifest.as_array().unwrap() {
        let config = entry["Config"].as_str().unwrap();
        assert!(
            names.iter().any(|n| n == config),
            "manifest.json names missing {config}"
        );
        for l in entry["Layers"].as_array().unwrap() {
            assert!(
                names.iter().any(|n| n == l.as_str().unwrap()),
                "missing layer {l}"
            );
        }
    }
    let index: Value = serde_json::from_slice(&tar_read(tar, "index.json").unwrap()).unwrap();
    for d in index["manifests"].as_array().unwrap() {
        let path = format!("blobs/sha256/{}", &d["digest"].as_str().unwrap()[7..]);
        assert!(names.contains(&path), "index.json names missing {path}");
    }
    assert_eq!(
        std::fs::read_to_string(tar.with_extension("tar.sha256")).unwrap(),
        format!(
            "{}  {}\n",
            sha256_file(tar),
            tar.file_name().unwrap().to_string_lossy()
        ),
        "the .sha256 file does not match the archive"
    );
}

/// `docker load` accepts the archive, and the loaded image prints what it was built to print.
fn assert_docker_runs(s: &Services, tar: &Path, name: &str, config_digest: &str, expect: &str) {
    let loaded = run(s.docker().arg("load").arg("-i").arg(tar)).ok();
    assert!(
        loaded.stdout.contains(&format!("Loaded image: {name}")),
        "docker load did not name {name}: {}",
        loaded.stdout
    );
    let id = run(s
        .docker()
        .args(["image", "inspect", "--format", "{{.Id}}", name]))
    .ok();
    assert_eq!(
        id.stdout.trim(),
        config_digest,
        "docker's image ID is not the registry's config digest"
    );
    let out = run(s
        .docker()
        .args(["run", "--rm", "--network", "none", config_digest]))
    .ok();
    assert_eq!(out.stdout.trim_end(), expect);
}

fn fetch_load_run(repo: &str) {
    let s = require_services!();
    let home = tempdir();
    for flavour in ["docker", "oci"] {
        let tag = format!("{repo}:{flavour}");
        let facts = s.facts(&tag);
        let facts = facts["platforms"]
            .as_array()
            .map(|p| &p[0])
            .unwrap_or(facts);
        let out = home.path().join(format!("{flavour}.tar"));
        fetch(s, home.path(), &out, &[&s.image(&tag)]).ok();
        assert_archive_consistent(&out);
        assert_docker_runs(
            s,
            &out,
            &s.image(&tag),
            facts["config_digest"].as_str().unwrap(),
            facts["expect_stdout"].as_str().unwrap(),
        );
    }
}

#[test]
fn busybox_loads_into_docker_and_runs() {
    fetch_load_run("ferry/busybox");
}

#[test]
fn multilayer_image_keeps_whiteouts_user_workdir_and_env() {
    // The expected line lists /app and /data/old: deleted and opaque-hidden files are absent.
    fetch_load_run("ferry/multilayer");
}

#[test]
fn forty_layer_image_loads_and_runs() {
    fetch_load_run("ferry/many");
}

#[test]
fn image_with_two_identical_layers_loads_and_runs() {
    fetch_load_run("ferry/duplayer");
}

#[test]
fn multiplatform_index_picks_amd64_by_default_and_runs() {
    fetch_load_run("ferry/multiarch");
}

#[test]
fn large_image_loads_and_runs() {
    let s = require_services!();
    let home = tempdir();
    let tag = "ferry/large:oci";
    let facts = s.facts(tag);
    let out = home.path().join("large.tar");
    fetch(s, home.path(), &out, &[&s.image(tag)]).ok();
    assert_archive_consistent(&out);
    let layer_bytes: u64 = facts["layer_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(
        std::fs::metadata(&out).unwrap().len() > layer_bytes,
        "archive smaller than its layers"
    );
    assert_docker_runs(
        s,
        &out,
        &s.image(tag),
        facts["config_digest"].as_str().unwrap(),
        facts["expect_stdout"].as_str().unwrap(),
    );
}

#[test]
fn containerd_imports_the_archive_with_the_registry_manifest_digest() {
    let s = require_services!();
    let home = tempdir();
    for flavour in ["docker", "oci"] {
        let tag = format!("ferry/multilayer:{flavour}");
        let out = home.path().join(format!("{flavour}.tar"));
        fetch(s, home.path(), &out, &[&s.image(&tag)]).ok();
        let ns = format!("ferry-it-{flavour}-{}", std::process::id());
        run(s
            .ctr()
            .args(["-n", &ns, "images", "import", "--no-unpack"])
            .arg(&out))
        .ok();
        let listed = run(s.ctr().args(["-n", &ns, "images", "ls"])).ok();
        let _ = run(s.ctr().args(["-n", &ns, "images", "rm", &s.image(&tag)]));
        let want = s.facts(&tag)["manifest_digest"].as_str().unwrap();
        let line = listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&s.image(&tag)))
            .unwrap_or_else(|| panic!("ctr does not list {tag}:\n{}", listed.stdout));
        assert!(
            line.contains(want),
            "ctr shows another digest than the registry's {want}: {line}"
        );
    }
}

#[test]
fn skopeo_reads_the_archive_as_oci() {
    let s = require_services!();
    let home = tempdir();
    for flavour in ["docker", "oci"] {
        let tag = format!("ferry/busybox:{flavour}");
        let out = home.path().join(format!("{flavour}.tar"));
        fetch(s, home.path(), &out, &[&s.image(&tag)]).ok();
        let inspected = run(std::process::Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", out.display())))
        .ok();
        let v: Value = serde_json::from_str(&inspected.stdout).unwrap();
        assert_eq!(
            v["Digest"],
            s.facts(&tag)["manifest_digest"],
            "{}",
            inspected.stdout
        );
        assert_eq!(v["Architecture"], "amd64");
    }
}

#[test]
fn platform_flag_picks_arm_variants_and_never_the_attestation() {
    let s = require_services!();
    let home = tempdir();
    for tag in [
        "ferry/multiarch:docker",
        "ferry/multiarch:oci",
        "ferry/multiarch:oci-nested",
    ] {
        let facts = s.facts(tag);
        let platforms = facts["platforms"].as_array().unwrap();
        for (asked, expected) in [
            ("linux/arm64", "linux/arm64/v8"),
            ("linux/arm64/v8", "linux/arm64/v8"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("linux/amd64", "linux/amd64"),
        ] {
            let want = platforms
                .iter()
                .find(|p| p["platform"] == expected)
                .unwrap();
            let out = home.path().join("p.tar");
            fetch(s, home.path(), &out, &["--platform", asked, &s.image(tag)]).ok();
            let manifest: Value =
                serde_json::from_slice(&tar_read(&out, "manifest.json").unwrap()).unwrap();
            assert_eq!(
                manifest[0]["Config"].as_str().unwrap(),
                format!(
                    "blobs/sha256/{}",
                    &want["config_digest"].as_str().unwrap()[7..]
                ),
                "{tag} --platform {asked} chose the wrong manifest"
            );
            let index: Value =
                serde_json::from_slice(&tar_read(&out, "index.json").unwrap()).unwrap();
            assert_eq!(index["manifests"][0]["digest"], want["manifest_digest"]);
        }
        let out = home.path().join("none.tar");
        let failed = fetch(
            s,
            home.path(),
            &out,
            &["--platform", "linux/s390x", &s.image(tag)],
        )
        .failed();
        failed.assert_stderr("no image for linux/s390x");
        for p in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"] {
            assert!(
                failed.stderr.contains(p),
                "listing lacks {p}: {}",
                failed.stderr
            );
        }
        assert!(
            !failed.stderr.contains("unknown/unknown"),
            "attestation listed: {}",
            failed.stderr
        );
        assert!(!out.exists(), "an archive was written for a failed fetch");
        let failed = fetch(
            s,
            home.path(),
            &out,
            &["--platform", "unknown/unknown", &s.image(tag)],
        )
        .failed();
        failed.assert_stderr("no image for unknown/unknown");
    }
}

#[test]
fn several_images_share_layers_in_one_archive() {
    let s = require_services!();
    let home = tempdir();
    let out = home.path().join("multi.tar");
    let tags = [
        "ferry/busybox:docker",
        "ferry/multilayer:oci",
        "ferry/many:docker",
        "ferry/duplayer:oci",
    ];
    let images: Vec<String> = tags.iter().map(|t| s.image(t)).collect();
    let args: Vec<&str> = images.iter().map(String::as_str).collect();
    fetch(s, home.path(), &out, &args).ok();
    assert_archive_consistent(&out);
    let base = s.facts("ferry/busybox:docker")["layer_digests"][0]
        .as_str()
        .unwrap();
    let base_entry = format!("blobs/sha256/{}", &base[7..]);
    let copies = tar_entries(&out)
        .iter()
        .filter(|(n, _)| *n == base_entry)
        .count();
    assert_eq!(
        copies, 1,
        "the shared busybox layer is stored {copies} times"
    );
    let loaded = run(s.docker().arg("load").arg("-i").arg(&out)).ok();
    for image in &images {
        assert!(
            loaded.stdout.contains(&format!("Loaded image: {image}")),
            "{image} not loaded: {}",
            loaded.stdout
        );
    }
    let index: Value = serde_json::from_slice(&tar_read(&out, "index.json").unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), tags.len());
}

#[test]
fn archives_are_reproducible_and_stdout_gets_the_same_bytes() {
    let s = require_services!();
    // Three fetches, each with a cache of its own so that none copies blobs from another's
    // archive: what is compared is three real downloads, counted by a proxy in front of the
    // registry.
    let proxy = ferry_testkit::FaultProxy::start(s.registry(), Default::default()).unwrap();
    let image = format!("{}/ferry/multilayer:oci", proxy.addr);
    let blobs: u64 = s.facts("ferry/multilayer:oci")["layer_sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let downloaded = |what: &str| {
        let bytes = proxy.blob_bytes();
        proxy.reset_counters();
        assert!(
            bytes >= blobs,
            "the {what} fetch downloaded {bytes} blob bytes, less than the image's {blobs} layer bytes: it reused something"
        );
    };
    let homes = [tempdir(), tempdir(), tempdir()];
    let a = homes[0].path().join("a.tar");
    let b = homes[1].path().join("b.tar");
    run(fetch_cmd(homes[0].path(), &proxy.addr, &image, &a)).ok();
    downloaded("first");
    run(fetch_cmd(homes[1].path(), &proxy.addr, &image, &b)).ok();
    downloaded("second");
    assert_eq!(sha256_file(&a), sha256_file(&b));
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .env("FERRY_CACHE_DIR", homes[2].path().join("cache"))
        .args([
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            &proxy.addr,
            "-o",
            "-",
            &image,
        ])
        .output()
        .unwrap();
    assert!(
        piped.status.success(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    downloaded("piped");
    assert_eq!(
        piped.stdout,
        std::fs::read(&a).unwrap(),
        "stdout differs from the file"
    );
    let leftovers: Vec<_> = walk(&homes[2].path().join("cache/partial"));
    assert!(
        leftovers.is_empty(),
        "staging files left behind: {leftovers:?}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn tls_is_required_unless_the_registry_is_named_insecure() {
    let s = require_services!();
    let home = tempdir();
    let out = home.path().join("x.tar");
    let failed = run(ferry(home.path())
        .args(["fetch", "--progress", "none", "-o"])
        .arg(&out)
        .arg(s.image("ferry/busybox:oci")))
    .failed();
    failed.assert_stderr("TLS handshake with");
    assert!(
        failed.stderr.contains("--insecure-registry"),
        "no hint: {}",
        failed.stderr
    );
    assert!(!out.exists());
}

#[test]
fn unknown_tag_and_repository_give_one_line_errors_with_hints() {
    let s = require_services!();
    let home = tempdir();
    let out = home.path().join("x.tar");
    let failed = fetch(
        s,
        home.path(),
        &out,
        &[&s.image("ferry/busybox:no-such-tag")],
    )
    .failed();
    assert!(
        failed.stderr.starts_with("error: failed to fetch"),
        "{}",
        failed.stderr
    );
    failed.assert_stderr("MANIFEST_UNKNOWN");
    failed.assert_stderr("hint: check the tag");
    let failed = fetch(
        s,
        home.path(),
        &out,
        &[&s.image("ferry/no-such-repo:latest")],
    )
    .failed();
    assert!(
        failed.stderr.contains("NAME_UNKNOWN") || failed.stderr.contains("MANIFEST_UNKNOWN"),
        "{}",
        failed.stderr
    );
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let failed = fetch(
        s,
        home.path(),
        &out,
        &[&format!("{}@{wrong}", s.image("ferry/busybox"))],
    )
    .failed();
    failed.assert_stderr("MANIFEST_UNKNOWN");
    assert!(!out.exists());
}

#[test]
fn pinned_digest_fetches_exactly_that_manifest() {
    let s = require_services!();
    let home = tempdir();
    let facts = s.facts("ferry/busybox:oci");
    let digest = facts["manifest_digest"].as_str().unwrap();
    let out = home.path().join("pinned.tar");
    fetch(
        s,
        home.path(),
        &out,
        &[&format!("{}@{digest}", s.image("ferry/busybox"))],
    )
    .ok();
    let index: Value = serde_json::from_slice(&tar_read(&out, "index.json").unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        format!("{}@{digest}", s.image("ferry/busybox"))
    );
    let manifest: Value =
        serde_json::from_slice(&tar_read(&out, "manifest.json").unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([]));
}

#[test]
fn token_auth_registry_anonymous_pull_and_private_repositories() {
    let s = require_services!();
    let home = tempdir();
    let reg = s.var("TOKEN_REGISTRY");
    let out = home.path().join("t.tar");
    run(fetch_cmd(
        home.path(),
        reg,
        &format!("{reg}/ferry/busybox:oci"),
        &out,
    ))
    .ok();
    assert_archive_consistent(&out);

    let private = home.path().join("p.tar");
    let failed = run(fetch_cmd(
        home.path(),
        reg,
        &format!("{reg}/private/busybox:oci"),
        &private,
    ))
    .failed();
    // Refused for want of credentials, and told so: not any failure.
    failed.assert_stderr("HTTP 401 UNAUTHORIZED");
    failed.assert_stderr("hint: this registry wants credentials");
    assert!(!private.exists());

    let with_password = run(fetch_cmd(
        home.path(),
        reg,
        &format!("{reg}/private/busybox:oci"),
        &private,
    )
    .args(["--username", s.var("USER"), "--password-stdin"])
    .stdin(std::fs::File::open(s.var("PASSWORD_FILE")).unwrap()))
    .ok();
    assert!(!with_password.stderr.contains(s.var("PASSWORD")));
    assert_archive_consistent(&private);
}

#[test]
fn basic_auth_registry_needs_and_accepts_credentials() {
    let s = require_services!();
    let home = tempdir();
    let reg = s.var("BASIC_REGISTRY");
    let out = home.path().join("b.tar");
    let failed = run(fetch_cmd(
        home.path(),
        reg,
        &format!("{reg}/ferry/busybox:docker"),
        &out,
    ))
    .failed();
    failed.assert_stderr("UNAUTHORIZED");
    failed.assert_stderr("--username");
    let ok = run(ferry(home.path())
        .args([
            "fetch",
            "--verbose",
            "--progress",
            "plain",
            "--insecure-registry",
            reg,
            "-o",
        ])
        .arg(&out)
        .arg(format!("{reg}/ferry/busybox:docker"))
        .env("FERRY_USERNAME", s.var("USER"))
        .env("FERRY_PASSWORD", s.var("PASSWORD")))
    .ok();
    assert!(
        !ok.stderr.contains(s.var("PASSWORD")),
        "password in debug output"
    );
    assert_archive_consistent(&out);
}

mod lying {
    //! What only a lying server can show.
    use super::*;
    use crate::fake_registry::{FakeRegistry, Reply};

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn sha(b: &[u8]) -> String {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
    }

    /// A registry serving one image whose layer is `served` but announced as `announced`.
    fn image_with_layer(announced: &[u8], served: &[u8]) -> (FakeRegistry, String) {
        let fake = FakeRegistry::start();
        let layer_digest = sha(announced);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            sha(config.as_bytes()),
            config.len(),
            announced.len()
        );
        fake.set(
            "/v2/lie/manifests/latest",
            Reply::ok(OCI_MANIFEST, manifest.clone()),
        );
        fake.set(
            &format!("/v2/lie/blobs/{}", sha(config.as_bytes())),
            Reply::ok("application/octet-stream", config),
        );
        fake.set(
            &format!("/v2/lie/blobs/{layer_digest}"),
            Reply::ok("application/octet-stream", served),
        );
        (fake, layer_digest)
    }

    fn fetch_fake(fake: &FakeRegistry, home: &Path, out: &Path, image: &str) -> Ran {
        run(ferry(home)
            .args([
                "fetch",
                "--progress",
                "none",
                "--retries",
                "2",
                "--insecure-registry",
                &fake.addr,
                "-o",
            ])
            .arg(out)
            .arg(format!("{}/{image}", fake.addr)))
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_refused() {
        let (fake, digest) = image_with_layer(b"the real layer bytes", b"THE REAL LAYER BYTES");
        let home = tempdir();
        let out = home.path().join("x.tar");
        let failed = fetch_fake(&fake, home.path(), &out, "lie:latest").failed();
        failed.assert_stderr(&format!("blob {digest}"));
        failed.assert_stderr("digest mismatch: expected");
        assert!(!out.exists(), "archive written despite a bad blob");
        assert!(!out.with_extension("tar.sha256").exists());
    }

    #[test]
    fn a_blob_longer_than_announced_is_cut_off_and_refused() {
        let announced = b"short".to_vec();
        let mut served = announced.clone();
        served.extend(std::iter::repeat_n(b'x', 100_000));
        let (fake, _) = image_with_layer(&announced, &served);
        let home = tempdir();
        let out = home.path().join("x.tar");
        let failed = fetch_fake(&fake, home.path(), &out, "lie:latest").failed();
        failed.assert_stderr("size mismatch: expected 5 bytes");
        assert!(!out.exists());
    }

    #[test]
    fn a_manifest_that_does_not_match_the_pinned_digest_is_refused() {
        let (fake, _) = image_with_layer(b"layer", b"layer");
        let pinned = sha(b"some other manifest");
        let manifest = fake.seen.lock().unwrap().len(); // nothing requested yet
        assert_eq!(manifest, 0);
        let (_, body) = {
            let r = crate::fake_registry::Reply::ok(OCI_MANIFEST, "{\"schemaVersion\":2}");
            (r.status, r.body)
        };
        fake.set(
            &format!("/v2/lie/manifests/{pinned}"),
            Reply::ok(OCI_MANIFEST, body),
        );
        let home = tempdir();
        let out = home.path().join("x.tar");
        let failed = fetch_fake(&fake, home.path(), &out, &format!("lie@{pinned}")).failed();
        failed.assert_stderr(&format!("expected {pinned}"));
        assert!(!out.exists());
    }

    #[test]
    fn schema1_manifests_are_refused_clearly() {
        let fake = FakeRegistry::start();
        fake.set(
            "/v2/old/manifests/latest",
            Reply::ok(
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                r#"{"schemaVersion":1,"name":"old","tag":"latest","fsLayers":[]}"#,
            ),
        );
        let home = tempdir();
        let out = home.path().join("x.tar");
        let failed = fetch_fake(&fake, home.path(), &out, "old:latest").failed();
        failed.assert_stderr("schema1");
        assert!(!out.exists());
    }
}

#[test]
fn every_test_image_is_in_the_facts_file() {
    // Guards the harness itself: a renamed image would otherwise skip assertions silently.
    let s = require_services!();
    for tag in [
        "ferry/busybox:docker",
        "ferry/busybox:oci",
        "ferry/large:oci",
        "ferry/multiarch:oci-nested",
    ] {
        assert!(s.images.get(tag).is_some(), "{tag}");
    }
    let _ = harness::workspace();
}
