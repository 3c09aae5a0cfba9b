//! The container's processes: starting the first one (`spawn`), what it does before its
//! command runs (`init`), dropping to the container's privileges (`privileges`), executing the
//! command (`exec`), the `--init` reaper, capabilities and signals.

pub mod caps;
pub mod exec;
pub mod init;
pub mod privileges;
pub mod reaper;
pub mod signal;
pub mod spawn;
