//! The container's processes: starting the first one (`spawn`), what it does before its
//! command runs (`init`), executing the command (`exec`), the `--init` reaper, capabilities
//! and signal names.

pub mod caps;
pub mod exec;
pub mod init;
pub mod reaper;
pub mod signal;
pub mod spawn;
