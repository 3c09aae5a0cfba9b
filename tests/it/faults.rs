//! A flaky network between ferry and the real registry: the fault proxy cuts, refuses,
//! throttles and redirects, and every fetch must still end in the archive an undisturbed fetch
//! writes, or in a clear error after its bounded retries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferry_testkit::{FaultProxy, Plan};

use crate::harness::{Ran, ferry, run, sha256_file, tempdir};
use crate::require_services;

/// `ferry fetch` of `repo_tag` through `proxy` into `dir/name`.
pub(crate) fn fetch_via(
    proxy: &FaultProxy,
    home: &Path,
    name: &str,
    repo_tag: &str,
    extra: &[&str],
) -> (Ran, PathBuf) {
    let out = home.join(name);
    let ran = run(ferry(home)
        .args([
            "fetch",
            "--progress",
            "plain",
            "--insecure-registry",
            &proxy.addr,
        ])
        .args(extra)
        .arg("-o")
        .arg(&out)
        .arg(format!("{}/{repo_tag}", proxy.addr)));
    (ran, out)
}

/// The archive an undisturbed fetch through `proxy` writes. It runs with a cache of its own,
/// so the fetches under test cannot reuse its blobs.
pub(crate) fn baseline(proxy: &FaultProxy, home: &Path, repo_tag: &str) -> String {
    proxy.set_plan(Plan::default());
    let own = home.join("baseline");
    std::fs::create_dir_all(&own).unwrap();
    let (ran, out) = fetch_via(proxy, &own, "baseline.tar", repo_tag, &[]);
    ran.ok();
    sha256_file(&out)
}

/// `bytes=START-END` of a `Range` header.
fn range_of(header: Option<&str>) -> Option<(u64, u64)> {
    let (a, b) = header?.trim().strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[test]
fn connections_cut_mid_blob_are_resumed_with_range() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home.path(), "ferry/large:oci");
    proxy.reset_counters();
    // Each of the four 128 MiB layers is cut 5 MiB into its first 16 MiB chunk.
    let cut_at = 5u64 << 20;
    proxy.set_plan(Plan {
        cut_blob_after: Some((cut_at, 4)),
        cut_only_from_start: true,
        ..Plan::default()
    });
    let (ran, out) = fetch_via(&proxy, home.path(), "cut.tar", "ferry/large:oci", &[]);
    let ran = ran.ok();
    assert_eq!(
        sha256_file(&out),
        want,
        "a resumed fetch wrote another archive"
    );
    assert!(
        ran.stderr.contains("retrying blob sha256:"),
        "no retry was reported: {}",
        ran.stderr
    );
    let chunk_end = (16u64 << 20) - 1;
    let seen: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .collect();
    let first_chunks: Vec<_> = seen
        .iter()
        .filter(|r| range_of(r.range.as_deref()) == Some((0, chunk_end)))
        .map(|r| r.path.clone())
        .collect();
    // A resume continues inside the first chunk, from what was received (at most the 5 MiB
    // the proxy let through), up to the chunk's end.
    let resumes: Vec<_> = seen
        .iter()
        .filter(|r| {
            range_of(r.range.as_deref())
                .is_some_and(|(start, end)| start > 0 && start <= cut_at && end == chunk_end)
        })
        .collect();
    assert!(
        resumes.len() >= 4,
        "the 4 cut chunks were not resumed from their last byte: {resumes:?}\n{seen:?}"
    );
    // Restarting a dropped chunk from its start would ask for `bytes=0-…` of a blob again.
    let mut unique = first_chunks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        first_chunks.len(),
        "a cut chunk was downloaded again from its start"
    );
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home.path(), "ferry/multilayer:oci");
    proxy.set_plan(Plan {
        blob_status: Some((503, 3, vec![])),
        manifest_status: Some((502, 1, vec![])),
        ..Plan::default()
    });
    let (ran, out) = fetch_via(&proxy, home.path(), "503.tar", "ferry/multilayer:oci", &[]);
    let ran = ran.ok();
    assert_eq!(sha256_file(&out), want);
    ran.assert_stderr("HTTP 503");
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home.path(), "ferry/busybox:oci");
    proxy.set_plan(Plan {
        manifest_status: Some((429, 1, vec![("Retry-After".into(), "2".into())])),
        ..Plan::default()
    });
    let started = Instant::now();
    let (ran, out) = fetch_via(&proxy, home.path(), "429.tar", "ferry/busybox:oci", &[]);
    let ran = ran.ok();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 2 was not honoured"
    );
    ran.assert_stderr("in 2.0s");
    assert_eq!(sha256_file(&out), want);
}

#[test]
fn persistent_errors_end_in_a_clear_error_after_bounded_retries() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(
        s.registry(),
        Plan {
            blob_status: Some((503, 1000, vec![])),
            ..Plan::default()
        },
    )
    .unwrap();
    let (ran, out) = fetch_via(
        &proxy,
        home.path(),
        "never.tar",
        "ferry/busybox:oci",
        &["--retries", "3"],
    );
    let ran = ran.failed();
    ran.assert_stderr("failed after 3 attempts");
    ran.assert_stderr("HTTP 503");
    assert!(!out.exists(), "an archive appeared despite the failure");
    let tries = proxy
        .seen()
        .iter()
        .filter(|r| r.path.contains("/blobs/") && r.status == 503)
        .count();
    assert_eq!(tries, 3, "the number of tries is not bounded by --retries");
}

#[test]
fn slow_links_finish_and_show_plain_progress() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home.path(), "ferry/multilayer:docker");
    proxy.set_plan(Plan {
        bytes_per_sec: Some(200 * 1024),
        ..Plan::default()
    });
    let (ran, out) = fetch_via(
        &proxy,
        home.path(),
        "slow.tar",
        "ferry/multilayer:docker",
        &[],
    );
    let ran = ran.ok();
    assert_eq!(sha256_file(&out), want);
    let lines = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("fetch ") && l.contains("/s, ETA"))
        .count();
    assert!(
        lines >= 2,
        "expected periodic plain progress lines:\n{}",
        ran.stderr
    );
}

#[test]
fn registries_that_ignore_range_still_work() {
    let s = require_services!();
    let home = tempdir();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home.path(), "ferry/large:docker");
    proxy.set_plan(Plan {
        ignore_range: true,
        ..Plan::default()
    });
    let (ran, out) = fetch_via(
        &proxy,
        home.path(),
        "norange.tar",
        "ferry/large:docker",
        &[],
    );
    ran.ok();
    assert_eq!(sha256_file(&out), want);
}

#[test]
fn blob_redirects_to_another_host_never_carry_the_registry_token() {
    let s = require_services!();
    let home = tempdir();
    // The "CDN" serves the same blobs from the plain registry and records what reaches it.
    let cdn = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    // The registry requires tokens (the token-auth registry) and redirects every blob.
    let registry = FaultProxy::start(s.var("TOKEN_REGISTRY"), Plan::default()).unwrap();
    let want = baseline(&registry, home.path(), "ferry/busybox:oci");
    registry.set_plan(Plan {
        redirect_blobs_to: Some(format!("http://{}", cdn.addr)),
        ..Plan::default()
    });
    // The first visit to the CDN finds the presigned URL expired.
    cdn.set_plan(Plan {
        blob_status: Some((403, 1, vec![])),
        ..Plan::default()
    });
    let (ran, out) = fetch_via(&registry, home.path(), "cdn.tar", "ferry/busybox:oci", &[]);
    ran.ok();
    assert_eq!(sha256_file(&out), want);
    let at_registry = registry.seen();
    assert!(
        at_registry
            .iter()
            .any(|r| r.path.contains("/blobs/") && r.authorization.is_some()),
        "the registry never saw a token: the test proves nothing"
    );
    let at_cdn = cdn.seen();
    // The refused URL's blob was fetched again with a URL the registry handed out anew (each
    // redirect carries a fresh signature): retrying the expired URL itself would not do.
    let refused = at_cdn
        .iter()
        .find(|r| r.status == 403)
        .expect("the CDN refused nothing: the test proves nothing");
    let blob = refused.path.split('?').next().unwrap();
    let fresh = at_cdn
        .iter()
        .filter(|r| r.status == 200 && r.path.split('?').next() == Some(blob))
        .collect::<Vec<_>>();
    assert!(
        !fresh.is_empty() && fresh.iter().all(|r| r.path != refused.path),
        "the expired URL {} was retried instead of asking the registry for a fresh one: {at_cdn:?}",
        refused.path
    );
    // The CDN serves the registry's own paths, so the blob's path is the same at both.
    assert!(
        at_registry
            .iter()
            .filter(|r| r.path == blob && r.status == 307)
            .count()
            >= 2,
        "the registry was not asked again for {blob}: {at_registry:?}"
    );
    for r in &at_cdn {
        assert!(
            r.authorization.is_none(),
            "the CDN received an Authorization header: {r:?}"
        );
    }
}

#[test]
fn an_expired_token_is_replaced_mid_download() {
    let s = require_services!();
    let home = tempdir();
    let registry = FaultProxy::start(s.var("TOKEN_REGISTRY"), Plan::default()).unwrap();
    let want = baseline(&registry, home.path(), "ferry/many:oci");
    registry.reset_counters();
    registry.set_plan(Plan {
        revoke_token_after: Some(1),
        ..Plan::default()
    });
    let (ran, out) = fetch_via(&registry, home.path(), "expired.tar", "ferry/many:oci", &[]);
    ran.ok();
    assert_eq!(sha256_file(&out), want);
    let seen = registry.seen();
    assert!(
        seen.iter()
            .any(|r| r.status == 401 && r.path.contains("/blobs/")),
        "no token was refused"
    );
    let tokens: std::collections::HashSet<_> = seen
        .iter()
        .filter(|r| r.path.contains("/blobs/"))
        .filter_map(|r| r.authorization.clone())
        .collect();
    assert!(tokens.len() >= 2, "the expired token was not replaced");
}

#[test]
fn parallel_downloads_share_one_token_per_repository() {
    let s = require_services!();
    let home = tempdir();
    let registry = FaultProxy::start(s.var("TOKEN_REGISTRY"), Plan::default()).unwrap();
    let (ran, _) = fetch_via(
        &registry,
        home.path(),
        "many.tar",
        "ferry/many:oci",
        &["--concurrency", "8"],
    );
    ran.ok();
    let blob_requests: Vec<_> = registry
        .seen()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .collect();
    assert!(
        blob_requests.len() > 40,
        "expected one request per layer, saw {}",
        blob_requests.len()
    );
    let tokens: std::collections::HashSet<_> = blob_requests
        .iter()
        .filter_map(|r| r.authorization.clone())
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "parallel downloads asked for {} tokens",
        tokens.len()
    );
    let claims =
        ferry_testkit::jwt_claims(tokens.iter().next().unwrap().trim_start_matches("Bearer "))
            .unwrap();
    assert_eq!(
        claims["access"][0]["name"], "ferry/many",
        "token scoped to another repository: {claims}"
    );
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull"]),
        "token asks for more than pull: {claims}"
    );
}
