//! `ferry restart [-t N] C`: stop (as `ferry stop`), then start under a monitor.

use std::time::Duration;

use super::Containers;
use super::start::{StartOptions, start};
use super::stop::stop;
use crate::error::RunError;
use crate::image::ImageSource;

/// Restarts the container named `reference`; `timeout` as for `ferry stop` (`None`: the
/// container's `--stop-timeout`, else 10 seconds).
pub fn restart(
    source: &dyn ImageSource,
    containers: &Containers,
    reference: &str,
    timeout: Option<Duration>,
) -> Result<(), RunError> {
    stop(containers, reference, timeout)?;
    start(source, containers, reference, StartOptions::default())?;
    Ok(())
}
