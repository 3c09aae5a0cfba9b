//! Turns an image from ferry's store into a running container, docker-compatible, on any kernel
//! from 3.10 on.
//!
//! Image config + `docker run` flags → [`spec`] (an OCI runtime `config.json`) → a container
//! directory that is an OCI bundle → [`process::spawn`]: `clone` into new namespaces, the
//! [`rootfs`] (overlayfs over the layer snapshots, or a copy), `pivot_root`, [`cgroups`]
//! limits, capabilities and user → the command. A supervisor forwards signals and reports
//! Docker's exit status; a detached [`container::monitor`] keeps logs. `--runtime runc|crun`
//! hands the same bundle to an installed runtime.
//!
//! Every system call on the path to the container goes through [`syscall::Syscall`], so the
//! order of namespace, mount and credential steps is unit-tested with a recording fake.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod image;
pub mod net;
pub mod options;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod syscall;
pub mod userns;
pub mod volume;

pub use container::Containers;
pub use container::exec::ExecOptions;
pub use container::run::Outcome;
pub use error::RunError;
pub use image::{Image, ImageSource, SourceError};
pub use options::{Network, RootfsMode, RunOptions, Runtime, Tmpfs, Volume};

/// An error and its causes on one line (for messages that cross a pipe).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
