//! `ferry build`: a Dockerfile and a context in, an image in ferry's store out, without a daemon.
//!
//! ```text
//! Dockerfile ─► dockerfile::parse ─► stages of typed instructions
//! context + .dockerignore ─► sources of COPY/ADD
//! each step: cache key ─► hit: the cached image │ miss: RUN in a container of the runtime
//!            (overlay upper directory) or COPY/ADD into a new directory ─► layer tar (gzip)
//!            + config ─► committed to the store, recorded in the cache
//! last step ─► image named with -t
//! ```
//!
//! The store and the runtime are reached through small traits ([`host`]); the binary implements
//! them over `ferry-load` and `ferry-run`. Nothing here prints: progress goes to a [`Reporter`].

pub mod config;
pub mod copy;
pub mod digests;
pub mod dockerfile;
pub mod error;
pub mod executor;
pub mod expand;
pub mod fs;
pub mod glob;
pub mod host;
pub mod ignore;
pub mod layer;
pub mod report;
pub mod source;

pub use error::{BuildError, StepError};
pub use executor::{BuildOptions, BuildResult, build};
pub use report::{Reporter, Silent};
