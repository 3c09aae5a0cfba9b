//! Integration tests of the `ferry` binary against real services (see `harness`).

mod fake_registry;
mod fetch;
mod harness;
mod load;
mod load_support;
