//! Integration tests of the `ferry` binary against real services (see `harness`).

#[cfg(unix)]
mod build;
#[cfg(unix)]
mod build_support;
mod credentials;
mod fake_registry;
mod faults;
mod fetch;
mod fuzz;
mod harness;
mod load;
mod load_support;
mod network;
mod resume;
#[cfg(unix)]
mod run;
#[cfg(unix)]
mod services;
mod windows;
