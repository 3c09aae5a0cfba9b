//! TLS trust and proxies, against the real TLS registry and a real HTTP proxy (tinyproxy).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Ran, Services, ferry, run, tempdir};
use crate::require_services;

fn fetch_tls(s: &Services, home: &Path, extra: &[&str], envs: &[(&str, &str)]) -> (Ran, PathBuf) {
    let out = home.join("tls.tar");
    let _ = std::fs::remove_file(&out);
    let mut cmd = ferry(home);
    cmd.args(["fetch", "--progress", "none"])
        .args(extra)
        .arg("-o")
        .arg(&out);
    cmd.arg(format!("{}/ferry/busybox:oci", s.var("TLS_REGISTRY")));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    (run(&mut cmd), out)
}

#[test]
fn an_untrusted_certificate_is_refused_with_a_hint() {
    let s = require_services!();
    let home = tempdir();
    let (ran, out) = fetch_tls(s, home.path(), &[], &[]);
    let ran = ran.failed();
    assert!(
        ran.stderr
            .contains("TLS handshake with localhost:5004 failed"),
        "{}",
        ran.stderr
    );
    ran.assert_stderr("--ca-cert FILE");
    assert!(!out.exists());
}

#[test]
fn a_ca_certificate_file_makes_the_registry_trusted() {
    let s = require_services!();
    let home = tempdir();
    let (ran, out) = fetch_tls(s, home.path(), &["--ca-cert", s.var("CA")], &[]);
    ran.ok();
    assert!(out.exists());
    // A file that holds no certificate is an error, not a silent no-op.
    let empty = home.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let (ran, _) = fetch_tls(s, home.path(), &["--ca-cert", empty.to_str().unwrap()], &[]);
    assert!(ran.failed().stderr.contains("no PEM certificate"));
}

#[test]
fn insecure_registry_skips_verification_for_that_host_only() {
    let s = require_services!();
    let home = tempdir();
    let (ran, out) = fetch_tls(
        s,
        home.path(),
        &["--insecure-registry", s.var("TLS_REGISTRY")],
        &[],
    );
    ran.ok();
    assert!(out.exists());
    let (ran, _) = fetch_tls(
        s,
        home.path(),
        &["--insecure-registry", "other.example:5004"],
        &[],
    );
    // Refused because the certificate is not trusted: the other host's exemption does not
    // reach this one.
    let ran = ran.failed();
    ran.assert_stderr("TLS handshake with localhost:5004 failed");
}

/// A tinyproxy on a port of its own, killed when dropped (also used by the build tests).
pub(crate) struct Tinyproxy {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy on a port below the kernel's ephemeral range (which hands ports to
    /// `bind(0)` and outgoing connections: a port found free there and released can be taken
    /// again before tinyproxy binds it). A port someone else holds makes tinyproxy exit, and
    /// the next one is tried.
    pub(crate) fn start(dir: &Path, basic_auth: Option<(&str, &str)>) -> Tinyproxy {
        let spread = (std::process::id() as u64 * 7919
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64)
            % 10_000;
        for attempt in 0..20u64 {
            let port = 20_000 + ((spread + attempt * 499) % 10_000) as u16;
            if let Some(proxy) = Self::start_on(dir, port, basic_auth) {
                return proxy;
            }
        }
        panic!("tinyproxy found no free port in 20 tries");
    }

    fn start_on(dir: &Path, port: u16, basic_auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let log = dir.join(format!("tinyproxy-{port}.log"));
        let conf = dir.join(format!("tinyproxy-{port}.conf"));
        let mut text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\nConnectPort 5004\nConnectPort 5000\n",
            log.display()
        );
        if let Some((u, p)) = basic_auth {
            text.push_str(&format!("BasicAuth {u} {p}\n"));
        }
        std::fs::write(&conf, text).unwrap();
        let mut child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy is installed by scripts/services-up");
        let started = Instant::now();
        loop {
            // Exited: the port was taken (or tinyproxy failed; then every try fails).
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            // It logs this once its own socket listens: the port is tinyproxy's.
            if std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Accepting connections")) {
                return Some(Tinyproxy { child, port, log });
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tinyproxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn connects_to(&self, target: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("CONNECT {target}")))
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_proxy_is_used_and_no_proxy_is_honoured() {
    let s = require_services!();
    let home = tempdir();
    let proxy = Tinyproxy::start(home.path(), None);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let target = s.var("TLS_REGISTRY");
    let ca = ["--ca-cert", s.var("CA")];
    for var in ["HTTPS_PROXY", "https_proxy"] {
        let before = proxy.connects_to(target);
        let (ran, _) = fetch_tls(s, home.path(), &ca, &[(var, &url)]);
        ran.ok();
        assert!(proxy.connects_to(target) > before, "{var} was not used");
    }
    let before = proxy.connects_to(target);
    let (ran, _) = fetch_tls(
        s,
        home.path(),
        &ca,
        &[("HTTPS_PROXY", &url), ("NO_PROXY", "localhost")],
    );
    ran.ok();
    assert_eq!(
        proxy.connects_to(target),
        before,
        "NO_PROXY=localhost was ignored"
    );
}

#[test]
fn http_proxy_and_all_proxy_are_used() {
    let s = require_services!();
    let home = tempdir();
    let proxy = Tinyproxy::start(home.path(), None);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    // HTTP_PROXY carries a plain-HTTP registry's requests (tunnelled with CONNECT, as the
    // HTTP client does for every scheme).
    let registry = s.registry();
    for var in ["HTTP_PROXY", "http_proxy"] {
        let before = proxy.connects_to(registry);
        let out = home.path().join("plain.tar");
        let _ = std::fs::remove_file(&out);
        run(
            crate::harness::fetch_cmd(home.path(), registry, &s.image("ferry/busybox:oci"), &out)
                .env(var, &url),
        )
        .ok();
        assert!(out.exists());
        assert!(
            proxy.connects_to(registry) > before,
            "{var} was not used for http://{registry}"
        );
    }
    // ALL_PROXY serves every scheme: the TLS registry is reached through CONNECT.
    let target = s.var("TLS_REGISTRY");
    let ca = ["--ca-cert", s.var("CA")];
    for var in ["ALL_PROXY", "all_proxy"] {
        let before = proxy.connects_to(target);
        let (ran, _) = fetch_tls(s, home.path(), &ca, &[(var, &url)]);
        ran.ok();
        assert!(proxy.connects_to(target) > before, "{var} was not used");
    }
}

#[test]
fn proxy_credentials_in_the_url_are_used() {
    let s = require_services!();
    let home = tempdir();
    let proxy = Tinyproxy::start(home.path(), Some(("corp", "proxy-pass-123")));
    let ca = ["--ca-cert", s.var("CA")];
    let without = format!("http://127.0.0.1:{}", proxy.port);
    let (ran, _) = fetch_tls(s, home.path(), &ca, &[("HTTPS_PROXY", &without)]);
    // Refused by the proxy, which wants its credentials (407), not for any other reason.
    let ran = ran.failed();
    ran.assert_stderr("407");
    assert!(!ran.stderr.contains("proxy-pass-123"));
    let with = format!("http://corp:proxy-pass-123@127.0.0.1:{}", proxy.port);
    let (ran, out) = fetch_tls(
        s,
        home.path(),
        &["--verbose", "--ca-cert", s.var("CA")],
        &[("HTTPS_PROXY", &with)],
    );
    let ran = ran.ok();
    assert!(out.exists());
    assert!(
        !ran.stderr.contains("proxy-pass-123"),
        "proxy password in the log: {}",
        ran.stderr
    );
}
