//! Every environment variable ferry reads, declared once.

/// Log filter (`debug`, `ferry_fetch=trace`, …); `-v` sets a default.
pub const FERRY_LOG: &str = "FERRY_LOG";
/// Where fetched blobs are cached between runs.
pub const FERRY_CACHE_DIR: &str = "FERRY_CACHE_DIR";
/// Registry user name for scripts (with `FERRY_PASSWORD`).
pub const FERRY_USERNAME: &str = "FERRY_USERNAME";
/// Registry password for scripts (with `FERRY_USERNAME`).
pub const FERRY_PASSWORD: &str = "FERRY_PASSWORD";
/// Store root, as `--root`.
pub const FERRY_ROOT: &str = "FERRY_ROOT";
/// Free bytes `ferry load` keeps on the store's filesystem (a decompression bomb stops there).
#[cfg_attr(not(unix), allow(dead_code))]
pub const FERRY_MIN_FREE: &str = "FERRY_MIN_FREE";
/// Directory of Docker's client configuration (`config.json`), read for registry credentials.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// How `ferry run` makes a root file system: `auto` (overlayfs, else a copy), `overlay`, `copy`.
#[cfg(unix)]
pub const FERRY_ROOTFS: &str = "FERRY_ROOTFS";
/// Reproducible builds: the time `ferry build` puts into images (as `--timestamp`).
#[cfg(unix)]
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";
