//! What every integration test shares: the real services started by `scripts/services-up`,
//! the facts about the test images, and running the `ferry` binary.
//!
//! Services are found through `FERRY_TEST_*` variables, or the `target/services/env` file that
//! `scripts/services-up` writes. When they are missing, a test fails under CI (`CI` set) and is
//! skipped loudly elsewhere: a test that needs a registry must never pass without one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The running services and the facts about the test images.
#[derive(Debug)]
pub struct Services {
    vars: HashMap<String, String>,
    /// `images.json` written by `scripts/testimages.py`.
    pub images: Value,
}

impl Services {
    /// A `FERRY_TEST_*` variable (the prefix is added).
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(&format!("FERRY_TEST_{name}"))
            .unwrap_or_else(|| panic!("FERRY_TEST_{name} is not set by scripts/services-up"))
    }

    /// The plain registry (no auth, HTTP): `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.var("REGISTRY")
    }

    /// The registry `ferry push` tests write into (plain, starts empty): `127.0.0.1:5005`.
    pub fn push_registry(&self) -> &str {
        self.var("PUSH_REGISTRY")
    }

    /// `host/repo:tag` on the plain registry.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.registry())
    }

    /// Facts about one test image, e.g. `ferry/busybox:oci`.
    pub fn facts(&self, repo_tag: &str) -> &Value {
        self.images
            .get(repo_tag)
            .unwrap_or_else(|| panic!("{repo_tag} missing from images.json"))
    }

    /// What running the test image `repo_tag` with its default command prints.
    pub fn expected_stdout(&self, repo_tag: &str) -> &str {
        self.facts(repo_tag)["expect_stdout"]
            .as_str()
            .unwrap_or_else(|| panic!("{repo_tag} has no expect_stdout in images.json"))
    }

    /// The Docker client, talking to the test engine.
    pub fn docker(&self) -> Command {
        Command::new(self.var("DOCKER"))
    }

    /// `ctr` talking to the engine's containerd.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.args(["--address", self.var("CONTAINERD_ADDRESS")]);
        c
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_services() -> Option<Services> {
    let mut vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("FERRY_TEST_"))
        .collect();
    if !vars.contains_key("FERRY_TEST_REGISTRY") {
        let file = workspace().join("target/services/env");
        let text = std::fs::read_to_string(file).ok()?;
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ").trim();
            if let Some((k, v)) = line.split_once('=')
                && k.starts_with("FERRY_TEST_")
            {
                vars.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    let images_path = vars.get("FERRY_TEST_IMAGES")?;
    let images = serde_json::from_slice(&std::fs::read(images_path).ok()?).ok()?;
    // The registry must answer, or the file is stale (services stopped).
    let registry = vars.get("FERRY_TEST_REGISTRY")?;
    std::net::TcpStream::connect(registry).ok()?;
    Some(Services { vars, images })
}

/// The services, or `None` (after a loud notice) outside CI. Under CI, missing services fail.
pub fn services() -> Option<&'static Services> {
    static SERVICES: OnceLock<Option<Services>> = OnceLock::new();
    let s = SERVICES.get_or_init(load_services).as_ref();
    if s.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("test services are not running; run scripts/services-up (CI must start them)");
        }
        eprintln!("SKIPPED: test services are not running; run scripts/services-up first");
    }
    s
}

/// Returns the services or ends the test early (see [`services`]).
#[macro_export]
macro_rules! require_services {
    () => {
        match $crate::harness::services() {
            Some(s) => s,
            None => return,
        }
    };
}

/// A `ferry` command with a private store and cache, so tests never share state by accident.
pub fn ferry(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env("FERRY_ROOT", home.join("store"))
        .env("FERRY_CACHE_DIR", home.join("cache"))
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("xdg-cache"))
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env_remove("FERRY_USERNAME")
        .env_remove("FERRY_PASSWORD")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null());
    c
}

/// `ferry fetch --progress none --insecure-registry REGISTRY`, with the private store and
/// cache of [`ferry`]; the caller adds the images and where they go.
pub fn fetch_from(home: &Path, registry: &str) -> Command {
    let mut c = ferry(home);
    c.args([
        "fetch",
        "--progress",
        "none",
        "--insecure-registry",
        registry,
    ]);
    c
}

/// `ferry fetch --progress none --insecure-registry REGISTRY IMAGE -o OUT` ([`fetch_from`]);
/// add flags before running it.
pub fn fetch_cmd(home: &Path, registry: &str, image: &str, out: &Path) -> Command {
    let mut c = fetch_from(home, registry);
    c.arg(image).arg("-o").arg(out);
    c
}

/// The result of running a command, with readable output.
#[derive(Debug)]
pub struct Ran {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Ran {
    /// Panics with both outputs unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics, showing stderr, unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
    }

    /// Panics unless the command failed (non-zero exit).
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "command unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

impl From<Output> for Ran {
    fn from(o: Output) -> Self {
        Ran {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a command to completion.
pub fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Ran {
    let cmd = cmd.borrow_mut();
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
        .into()
}

/// A repository prefix no other test run uses, for what tests write into shared registries.
pub fn unique(what: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "it-{what}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ferry-it-")
        .tempdir()
        .expect("temp dir")
}

/// A fresh temporary directory that an unprivileged user can reach, for tests that run ferry
/// as another user. `/tmp` may be mode 0700 on a fresh machine (and a checkout may live under
/// a 0700 home), so the directory is made under the first base whose every ancestor others may
/// search; the directory itself is opened to everyone (the tests put only test data in it).
pub fn tempdir_for_any_user() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let bases = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev/shm"),
        std::env::temp_dir(),
    ];
    let searchable = |base: &Path| {
        std::fs::create_dir_all(base).is_ok()
            && base.ancestors().all(|dir| {
                std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
            })
    };
    let base = bases.iter().find(|b| searchable(b)).unwrap_or_else(|| {
        panic!("no temporary directory that other users can reach among {bases:?}")
    });
    let dir = tempfile::Builder::new()
        .prefix("ferry-it-")
        .tempdir_in(base)
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("open the temp dir to every user");
    dir
}

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::io::copy(&mut f, &mut h).expect("hash file");
    hex::encode(h.finalize())
}

/// The entries of a tar file: path → contents (for small entries) or size.
pub fn tar_entries(path: &Path) -> Vec<(String, u64)> {
    let f = std::fs::File::open(path).expect("open tar");
    let mut ar = tar::Archive::new(f);
    ar.entries()
        .expect("tar entries")
        .map(|e| {
            let e = e.expect("tar entry");
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                e.size(),
            )
        })
        .collect()
}

/// Reads one entry of a tar file whole.
pub fn tar_read(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).expect("open tar");
    let mut ar = tar::Archive::new(f);
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        if e.path().expect("path").to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).expect("read entry");
            return Some(v);
        }
    }
    None
}
