//! Registry credentials from Docker's config.json, a credential helper, `--password-stdin` and
//! the environment, against the real basic-auth and token-auth registries; and proof that no
//! secret reaches any output, debug logs included, or the archive.

use std::path::{Path, PathBuf};

use crate::harness::{Ran, Services, ferry, run, tempdir};
use crate::require_services;

fn docker_config(dir: &Path, json: &str) -> PathBuf {
    let d = dir.join("docker-config");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), json).unwrap();
    d
}

fn basic_auth(s: &Services) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        s.var("USER"),
        s.var("PASSWORD")
    ))
}

/// `ferry -vv fetch` of `image` with `DOCKER_CONFIG=config`.
fn fetch_with_config(home: &Path, config: &Path, registry: &str, image: &str) -> (Ran, PathBuf) {
    let out = home.join("creds.tar");
    let _ = std::fs::remove_file(&out);
    let ran = run(ferry(home)
        .args([
            "-vv",
            "fetch",
            "--progress",
            "plain",
            "--insecure-registry",
            registry,
            "-o",
        ])
        .arg(&out)
        .arg(format!("{registry}/{image}"))
        .env("DOCKER_CONFIG", config)
        .env("FERRY_LOG", "trace"));
    (ran, out)
}

/// No password, base64 credential or bearer token (JWTs start with `eyJ`) in the text.
fn assert_no_secret(s: &Services, text: &str) {
    assert!(
        !text.contains(s.var("PASSWORD")),
        "the password leaked:\n{text}"
    );
    assert!(
        !text.contains(&basic_auth(s)),
        "the base64 credentials leaked:\n{text}"
    );
    assert!(!text.contains("eyJ"), "a token leaked:\n{text}");
}

fn assert_archive_has_no_secret(s: &Services, tar: &Path) {
    let bytes = std::fs::read(tar).unwrap();
    let hay = String::from_utf8_lossy(&bytes);
    assert!(
        !hay.contains(s.var("PASSWORD")),
        "the password is in the archive"
    );
    assert!(
        !hay.contains(&basic_auth(s)),
        "the credentials are in the archive"
    );
}

#[test]
fn docker_config_auths_serve_basic_and_token_registries() {
    let s = require_services!();
    let home = tempdir();
    let auth = basic_auth(s);
    let basic = s.var("BASIC_REGISTRY");
    let token = s.var("TOKEN_REGISTRY");
    let config = docker_config(
        home.path(),
        &format!(
            r#"{{"auths":{{"{basic}":{{"auth":"{auth}"}},"http://{token}":{{"auth":"{auth}"}}}}}}"#
        ),
    );
    let (ran, out) = fetch_with_config(home.path(), &config, basic, "ferry/busybox:docker");
    let ran = ran.ok();
    assert_no_secret(s, &format!("{}{}", ran.stdout, ran.stderr));
    assert_archive_has_no_secret(s, &out);
    // private/ needs the user's token; anonymous tokens are refused there.
    let (ran, out) = fetch_with_config(home.path(), &config, token, "private/busybox:oci");
    let ran = ran.ok();
    assert_no_secret(s, &format!("{}{}", ran.stdout, ran.stderr));
    assert_archive_has_no_secret(s, &out);
}

#[test]
fn a_credential_helper_is_asked_like_docker_does() {
    let s = require_services!();
    let home = tempdir();
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-ferrytest");
    let asked = home.path().join("asked");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\ncat > '{}'\nprintf '{{\"Username\":\"%s\",\"Secret\":\"%s\"}}' '{}' '{}'\n",
            asked.display(),
            s.var("USER"),
            s.var("PASSWORD")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let basic = s.var("BASIC_REGISTRY");
    let config = docker_config(
        home.path(),
        &format!(r#"{{"credHelpers":{{"{basic}":"ferrytest"}}}}"#),
    );
    let out = home.path().join("helper.tar");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran = run(ferry(home.path())
        .args([
            "-vv",
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            basic,
            "-o",
        ])
        .arg(&out)
        .arg(format!("{basic}/ferry/busybox:docker"))
        .env("DOCKER_CONFIG", &config)
        .env("PATH", path))
    .ok();
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap(),
        basic,
        "the helper was asked for another server"
    );
    assert_no_secret(s, &ran.stderr);
}

#[test]
fn wrong_credentials_are_a_clear_error_without_the_password() {
    let s = require_services!();
    let home = tempdir();
    let token = s.var("TOKEN_REGISTRY");
    let out = home.path().join("x.tar");
    let ran = run(ferry(home.path())
        .args([
            "-vv",
            "fetch",
            "--progress",
            "none",
            "--insecure-registry",
            token,
            "-o",
        ])
        .arg(&out)
        .arg(format!("{token}/private/busybox:oci"))
        .env("FERRY_USERNAME", s.var("USER"))
        .env("FERRY_PASSWORD", "wrong-password-xyz"))
    .failed();
    assert!(
        ran.stderr
            .contains("rejected the credentials for user `ferry`"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("wrong-password-xyz"), "{}", ran.stderr);
    assert!(!out.exists());
}

#[test]
fn password_stdin_against_the_basic_registry() {
    let s = require_services!();
    let home = tempdir();
    let basic = s.var("BASIC_REGISTRY");
    let out = home.path().join("stdin.tar");
    let ran = run(ferry(home.path())
        .args([
            "-vv",
            "fetch",
            "--progress",
            "plain",
            "--insecure-registry",
            basic,
            "-u",
            s.var("USER"),
            "--password-stdin",
            "-o",
        ])
        .arg(&out)
        .arg(format!("{basic}/ferry/busybox:oci"))
        .stdin(std::fs::File::open(s.var("PASSWORD_FILE")).unwrap()))
    .ok();
    assert_no_secret(s, &ran.stderr);
    assert_archive_has_no_secret(s, &out);
}
