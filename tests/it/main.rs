//! Integration tests of the `ferry` binary against real services (see `harness`).

#[cfg(unix)]
mod build;
#[cfg(unix)]
mod build_support;
mod cli;
mod credentials;
#[cfg(unix)]
mod delta;
#[cfg(unix)]
mod durability;
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
mod run_interface;
#[cfg(unix)]
mod security;
#[cfg(unix)]
mod services;
mod split;
#[cfg(unix)]
mod store_location;
mod windows;
