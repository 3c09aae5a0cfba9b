//! A build's errors. Every failure of an instruction names the file, the line and the
//! instruction ([`BuildError::Step`]); its cause ([`StepError`]) says what went wrong, in
//! Docker's words where Docker has some.

use std::path::PathBuf;

use crate::expand::ExpandError;
use crate::host::HostError;
use crate::layer::DiffError;
use crate::source::SourceError;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The Dockerfile as named on the command line.
        file: String,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An instruction failed.
    #[error("{file}:{line}: {instruction}")]
    Step {
        /// The Dockerfile.
        file: String,
        /// The instruction's line.
        line: usize,
        /// The instruction (shortened when long).
        instruction: String,
        /// What went wrong.
        #[source]
        source: Box<StepError>,
    },
    /// `.dockerignore` does not parse.
    #[error("invalid .dockerignore")]
    Ignore(#[source] crate::glob::BadPattern),
    /// The context is not a directory we can read.
    #[error("cannot read the build context {path}")]
    Context {
        /// The context.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--target` names no stage.
    #[error("target stage \"{0}\" could not be found")]
    Target(String),
    /// `--build-arg`, `--label` or `--platform` is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed when naming the image.
    #[error("failed to name the image {name}")]
    Tag {
        /// The name.
        name: String,
        /// The cause.
        #[source]
        source: HostError,
    },
}

impl BuildError {
    /// The signal that interrupted the build, if that is what ended it.
    pub fn interrupted(&self) -> Option<i32> {
        match self {
            BuildError::Step { source, .. } => match **source {
                StepError::Interrupted(sig) => Some(sig),
                _ => None,
            },
            _ => None,
        }
    }

    /// A hint for the user, when there is an obvious next step.
    pub fn hint(&self) -> Option<String> {
        let BuildError::Step { source, .. } = self else {
            return None;
        };
        match &**source {
            StepError::ImageNotFound { .. } => Some(
                "ferry build uses images of ferry's store only: load the base image first, e.g. `ferry load -i IMAGE.tar`"
                    .into(),
            ),
            StepError::Source(SourceError::Outside { .. }) => Some(
                "COPY and ADD read only from the build context (the directory given to ferry build)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Why an instruction failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// FROM or `--from` names an image the store does not have.
    #[error("image {reference} is not in ferry's store")]
    ImageNotFound {
        /// The reference as expanded.
        reference: String,
    },
    /// The base image is for another platform than `--platform` says.
    #[error("image {reference} is for {actual}, not {wanted}")]
    Platform {
        /// The image.
        reference: String,
        /// What was asked for.
        wanted: String,
        /// What the image is.
        actual: String,
    },
    /// RUN's command failed (Docker's words).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    NonZero {
        /// The command line, joined with spaces.
        command: String,
        /// Its exit status.
        code: i32,
    },
    /// The user interrupted the build (Ctrl-C) during this step.
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
    /// A COPY/ADD source is missing or outside the context.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Variable expansion failed.
    #[error(transparent)]
    Expand(#[from] ExpandError),
    /// The instruction cannot work as written.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Copying into the new layer failed.
    #[error("failed to copy files")]
    Copy(#[source] std::io::Error),
    /// Taking the layer failed.
    #[error(transparent)]
    Layer(#[from] DiffError),
    /// The runtime, the store or the network failed.
    #[error("failed to {action}")]
    Host {
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: HostError,
    },
}

impl StepError {
    pub(crate) fn host(action: &'static str) -> impl FnOnce(HostError) -> StepError {
        move |source| StepError::Host { action, source }
    }

    pub(crate) fn io<'p>(
        action: &'static str,
        path: &'p std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> StepError + 'p {
        move |source| StepError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
