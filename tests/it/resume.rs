//! Interrupted fetches: killed with SIGKILL at several points and rerun with the same
//! arguments, a fetch must end in exactly the archive an undisturbed one writes, downloading
//! only what the killed runs had not.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{FaultProxy, Plan};

use crate::faults::{baseline, fetch_via};
use crate::harness::{Services, fetch_cmd, sha256_file, tempdir};
use crate::require_services;

const IMAGE: &str = "ferry/large:oci";

fn spawn_fetch(proxy: &FaultProxy, home: &Path, out: &Path) -> Child {
    fetch_cmd(home, &proxy.addr, &format!("{}/{IMAGE}", proxy.addr), out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferry")
}

/// A proxy in front of the test registry that has served one undisturbed fetch of [`IMAGE`],
/// now throttled to `bytes_per_sec` with its counters at zero, so that a fetch through it can
/// be stopped part way: the proxy, the undisturbed archive's digest, and its blob bytes.
fn throttled_after_baseline(
    s: &Services,
    home: &Path,
    bytes_per_sec: u64,
) -> (FaultProxy, String, u64) {
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let want = baseline(&proxy, home, IMAGE);
    let total = proxy.blob_bytes();
    proxy.reset_counters();
    proxy.set_plan(Plan {
        bytes_per_sec: Some(bytes_per_sec),
        ..Plan::default()
    });
    (proxy, want, total)
}

/// A stopped fetch into `name` left nothing under that name, and its resumable state.
#[track_caller]
fn assert_left_resumable(home: &Path, name: &str) {
    assert!(
        !home.join(name).exists(),
        "a stopped fetch left a file under the final name"
    );
    assert!(
        home.join(format!("{name}.part")).exists(),
        "no resumable state was left"
    );
}

/// Reruns the fetch of [`IMAGE`] into `name` at full speed: it must say it resumes and end in
/// the undisturbed archive (`want`). Returns the blob bytes the rerun downloaded.
#[track_caller]
fn rerun_resumes(proxy: &FaultProxy, home: &Path, name: &str, want: &str) -> u64 {
    proxy.set_plan(Plan::default());
    proxy.reset_counters();
    let (ran, out) = fetch_via(proxy, home, name, IMAGE, &[]);
    ran.ok().assert_stderr("resuming:");
    assert_eq!(
        sha256_file(&out),
        want,
        "the resumed archive differs from an undisturbed fetch"
    );
    proxy.blob_bytes()
}

/// Kills the fetch with SIGKILL once the proxy has sent `bytes` blob bytes.
fn kill_after(proxy: &FaultProxy, child: &mut Child, bytes: u64) {
    wait_for_bytes(proxy, child, bytes);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until the proxy has sent `bytes` blob bytes, while the fetch runs.
fn wait_for_bytes(proxy: &FaultProxy, child: &mut Child, bytes: u64) {
    let started = Instant::now();
    while proxy.blob_bytes() < bytes {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fetch finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the fetch made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_fetch_killed_at_half_resumes_and_downloads_only_the_rest() {
    let s = require_services!();
    let home = tempdir();
    let (proxy, want, total) = throttled_after_baseline(s, home.path(), 48 << 20);
    let out = home.path().join("half.tar");
    let mut child = spawn_fetch(&proxy, home.path(), &out);
    kill_after(&proxy, &mut child, total / 2);
    assert_left_resumable(home.path(), "half.tar");

    let rerun = rerun_resumes(&proxy, home.path(), "half.tar", &want);
    eprintln!(
        "resume figure: killed after {:.0}% of {total} blob bytes; the rerun downloaded {rerun} bytes = {:.1}% of a full fetch",
        50.0,
        100.0 * rerun as f64 / total as f64
    );
    assert!(
        rerun < total * 7 / 10,
        "the rerun downloaded {rerun} of {total} bytes"
    );
    assert!(
        !home.path().join("half.tar.part").exists(),
        "partial state was not cleaned up"
    );
    assert!(
        !home.path().join("half.tar.part.json").exists(),
        "the journal was not cleaned up"
    );
}

#[test]
fn ctrl_c_stops_a_fetch_and_the_rerun_continues_it() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let s = require_services!();
    let home = tempdir();
    let (proxy, want, total) = throttled_after_baseline(s, home.path(), 48 << 20);
    let out = home.path().join("ctrl-c.tar");
    // In a process group of its own, which gets SIGINT as a terminal's Ctrl-C sends it.
    let mut child = fetch_cmd(
        home.path(),
        &proxy.addr,
        &format!("{}/{IMAGE}", proxy.addr),
        &out,
    )
    .stderr(Stdio::null())
    .process_group(0)
    .spawn()
    .expect("spawn ferry");
    wait_for_bytes(&proxy, &mut child, total / 2);
    let group = child.id() as libc::pid_t;
    // SAFETY: signals the process group of our own child, which is still running.
    assert_eq!(unsafe { libc::killpg(group, libc::SIGINT) }, 0);
    let interrupted = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(10),
            "the fetch went on after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.signal() == Some(libc::SIGINT) || status.code() == Some(130),
        "Ctrl-C ended the fetch with {status:?}"
    );
    assert_left_resumable(home.path(), "ctrl-c.tar");

    let rerun = rerun_resumes(&proxy, home.path(), "ctrl-c.tar", &want);
    assert!(
        rerun < total * 7 / 10,
        "after Ctrl-C at half, the rerun downloaded {rerun} of {total} bytes"
    );
}

#[test]
fn a_fetch_killed_repeatedly_still_ends_byte_identical() {
    let s = require_services!();
    let home = tempdir();
    let (proxy, want, total) = throttled_after_baseline(s, home.path(), 48 << 20);
    let out = home.path().join("again.tar");
    // Kill early (during the first chunks), in the middle, and near the end.
    for fraction in [5, 30, 30] {
        proxy.reset_counters();
        let mut child = spawn_fetch(&proxy, home.path(), &out);
        kill_after(&proxy, &mut child, total * fraction / 100);
    }
    let rerun = rerun_resumes(&proxy, home.path(), "again.tar", &want);
    // The killed runs sent 65% of the bytes; what was in flight at each kill is lost.
    assert!(
        rerun < total * 8 / 10,
        "after three partial runs the last one downloaded {rerun} of {total}"
    );
}

/// `ferry fetch` through `proxy` with the cache of `home`, into `home/name`.
fn fetch_cached(
    proxy: &FaultProxy,
    home: &Path,
    name: &str,
    repo_tag: &str,
) -> (crate::harness::Ran, std::path::PathBuf) {
    fetch_via(proxy, home, name, repo_tag, &[])
}

#[test]
fn a_second_image_reuses_base_layers_from_an_earlier_archive() {
    let s = require_services!();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let fresh = tempdir();
    let want = baseline(&proxy, fresh.path(), "ferry/multilayer:oci");
    let full = proxy.blob_bytes();

    let home = tempdir();
    fetch_cached(&proxy, home.path(), "busybox.tar", "ferry/busybox:oci")
        .0
        .ok();
    proxy.reset_counters();
    let (ran, out) = fetch_cached(
        &proxy,
        home.path(),
        "multilayer.tar",
        "ferry/multilayer:oci",
    );
    let ran = ran.ok();
    assert_eq!(sha256_file(&out), want);
    let base = s.facts("ferry/busybox:oci")["layer_sizes"][0]
        .as_u64()
        .unwrap();
    ran.assert_stderr("reused from earlier archives");
    assert!(
        proxy.blob_bytes() + base <= full,
        "downloaded {} bytes although the {base}-byte base layer was on disk (full fetch: {full})",
        proxy.blob_bytes()
    );
}

#[test]
fn a_changed_earlier_archive_costs_a_download_not_a_wrong_byte() {
    let s = require_services!();
    let proxy = FaultProxy::start(s.registry(), Plan::default()).unwrap();
    let fresh = tempdir();
    let want = baseline(&proxy, fresh.path(), "ferry/multilayer:oci");

    let home = tempdir();
    let (_, earlier) = fetch_cached(&proxy, home.path(), "busybox.tar", "ferry/busybox:oci");
    // Flip bytes in the middle of the layer, keeping the size and modification time, so the
    // index still trusts the file.
    let meta = std::fs::metadata(&earlier).unwrap();
    let mut bytes = std::fs::read(&earlier).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&earlier, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&earlier)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    proxy.reset_counters();
    let (ran, out) = fetch_cached(
        &proxy,
        home.path(),
        "multilayer.tar",
        "ferry/multilayer:oci",
    );
    ran.ok();
    assert_eq!(
        sha256_file(&out),
        want,
        "a corrupted earlier archive leaked into the new one"
    );
    let base = s.facts("ferry/busybox:oci")["layer_sizes"][0]
        .as_u64()
        .unwrap();
    assert!(
        proxy.blob_bytes() >= base,
        "the corrupted base layer was not downloaded again"
    );
}

#[test]
fn a_second_fetch_into_the_same_file_is_refused_while_the_first_runs() {
    let s = require_services!();
    let home = tempdir();
    let (proxy, want, _) = throttled_after_baseline(s, home.path(), 32 << 20);
    let out = home.path().join("same.tar");
    let mut first = spawn_fetch(&proxy, home.path(), &out);
    let started = Instant::now();
    while proxy.blob_bytes() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first fetch never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (second, _) = fetch_via(&proxy, home.path(), "same.tar", IMAGE, &[]);
    let second = second.failed();
    second.assert_stderr("another ferry is already writing");
    kill_after(&proxy, &mut first, 64 << 20);
    // The refused run must not have damaged the first one's state: a rerun completes it.
    rerun_resumes(&proxy, home.path(), "same.tar", &want);
}
