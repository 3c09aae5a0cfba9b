//! Integration tests of the `ferry` binary against real services (see `harness`).

mod credentials;
#[cfg(unix)]
mod delta;
mod fake_registry;
mod faults;
mod fetch;
mod harness;
mod load;
mod load_support;
mod network;
mod push;
mod resume;
#[cfg(unix)]
mod run;
mod split;
mod windows;
