//! Integration tests of the `ferry` binary against real services (see `harness`).

mod credentials;
#[cfg(unix)]
mod delta;
mod fake_registry;
mod faults;
mod fetch;
mod fuzz;
mod harness;
mod load;
mod load_support;
mod network;
mod push;
mod resume;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod services;
mod split;
mod windows;
