//! `ferry bundle IMAGE DIR`: an OCI runtime bundle (`config.json` + `rootfs/`) for any runtime:
//! `runc run -b DIR ID` runs what `ferry run` would.

use std::path::Path;

use crate::error::{RunError, io_err};
use crate::image::ImageSource;
use crate::options::RunOptions;
use crate::spec::{self, SpecContext};

/// Writes the bundle; `DIR` must be empty or absent.
pub fn bundle(
    source: &dyn ImageSource,
    image_ref: &str,
    dir: &Path,
    opts: &RunOptions,
) -> Result<(), RunError> {
    let (_lock, image) = crate::image::locked_image(source, image_ref)?;
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    if std::fs::read_dir(dir)
        .map_err(io_err("read", dir))?
        .next()
        .is_some()
    {
        return Err(RunError::Invalid(format!(
            "bundle directory `{}` is not empty",
            dir.display()
        )));
    }
    let dir = std::fs::canonicalize(dir).map_err(io_err("resolve", dir))?;
    let (euid, egid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let hostname = opts.hostname.clone().unwrap_or_else(|| "ferry".into());
    let spec = spec::build(
        &image,
        opts,
        &SpecContext {
            container_dir: &dir,
            hostname: &hostname,
            rootless: (euid != 0).then_some((euid, egid)),
            cgroups_path: None,
            image_name: image_ref,
        },
    )?;
    super::run::write_etc_files(&dir, &hostname, &opts.network)?;
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).map_err(io_err("create", &rootfs))?;
    source
        .materialise(&image.layers, &rootfs)
        .map_err(|e| RunError::Io {
            action: "copy the image's layers into",
            path: rootfs.clone(),
            source: std::io::Error::other(e),
        })?;
    super::write_json(&dir.join("config.json"), &spec)
}
