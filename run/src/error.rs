//! What can go wrong running containers, each error naming the operation and the object, with
//! the cause in `source()`; and the exit code Docker would give for it.

use std::path::PathBuf;

use crate::image::SourceError;
use crate::spec::user::UserError;

/// A failed container operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The image is not in the store.
    #[error("cannot find image `{reference}`")]
    Image {
        /// What the user asked for.
        reference: String,
        /// The store's answer.
        #[source]
        source: SourceError,
    },
    /// Neither the image nor the command line gives a command.
    #[error("no command specified: image `{image}` has no Entrypoint or Cmd")]
    NoCommand {
        /// The image.
        image: String,
    },
    /// `-u` names a user or group the image does not have. Docker's words come first (they
    /// are what users search for); the cause is in the text, so it has no `source()`.
    #[error("{missing} (image `{image}`)")]
    User {
        /// The image.
        image: String,
        /// Which name was missing.
        missing: UserError,
    },
    /// A flag's value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// `create`, `write`, `remove`, …
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A system call in the supervisor failed.
    #[error("cannot {action}")]
    Sys {
        /// What was being done (`create the container process`).
        action: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The container's own setup failed before its command started.
    #[error("cannot start container {id}: {message}")]
    Start {
        /// Short container ID.
        id: String,
        /// What failed, from inside the container.
        message: String,
        /// 125, 126 (not executable) or 127 (not found).
        code: u8,
    },
    /// `ferry exec`'s command could not be started in the container.
    #[error("cannot exec in container {id}: {message}")]
    Exec {
        /// Short container ID.
        id: String,
        /// What failed, from inside the container.
        message: String,
        /// 126 (not executable), 127 (not found) or 125.
        code: u8,
    },
    /// The container kept no output (it ran in the foreground, attached to a terminal).
    #[error("container {0} has no logs: its output went to the terminal it ran in")]
    NoLogs(String),
    /// User namespaces are needed (rootless) but the kernel refuses them.
    #[error("cannot create a user namespace for a rootless container: {reason}")]
    UserNamespaces {
        /// Which setting forbids it.
        reason: String,
        /// What to change.
        setting: String,
    },
    /// Resource limits need a cgroup ferry can write.
    #[error("cannot apply resource limits ({what})")]
    Cgroup {
        /// Which file or controller.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No container has this name or ID.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// A name or prefix matches more than one container.
    #[error("container reference `{0}` is ambiguous; use more of the ID")]
    Ambiguous(String),
    /// `--name` is taken.
    #[error("the container name `{name}` is already in use by container {id}")]
    NameInUse {
        /// The name.
        name: String,
        /// The short ID of the container that has it.
        id: String,
    },
    /// The operation needs a running container.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// `rm` without `-f` on a running container.
    #[error("cannot remove running container {0}: stop it first or use rm -f")]
    Running(String),
    /// An external runtime failed to start.
    #[error("cannot run the OCI runtime `{}`", runtime.display())]
    Runtime {
        /// The runtime's path or name.
        runtime: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A port to publish is taken (the cause is Docker's message).
    #[error("cannot publish the ports of container {name} ({id})")]
    Publish {
        /// The container's name.
        name: String,
        /// Its short ID.
        id: String,
        /// Which port, and why.
        #[source]
        source: Box<crate::net::listen::BindError>,
    },
    /// No volume has this name.
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    /// `volume rm` of a volume a container names.
    #[error("remove {name}: volume is in use - [{}]", containers.join(", "))]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The full IDs of the containers that name it.
        containers: Vec<String>,
    },
    /// A valid request ferry does not implement.
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A seccomp profile cannot be used.
    #[error("cannot use the seccomp profile {profile}")]
    Seccomp {
        /// Which one (a file, or Docker's default).
        profile: String,
        /// Why.
        #[source]
        source: crate::seccomp::SeccompError,
    },
    /// `-i -t` in the foreground with a standard input that is not a terminal.
    #[error("the input device is not a TTY")]
    NotATty,
}

impl RunError {
    /// The exit code Docker gives for this failure: 126 when the command cannot be executed,
    /// 127 when it is not found, 1 for what Docker's client or a container's state refuses,
    /// 125 for everything that is the tool's own failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Start { code, .. } | RunError::Exec { code, .. } => *code,
            // What Docker's client refuses, or its daemon refuses about an existing container
            // (`rm` of a running one, `exec` into a stopped or missing one), exits 1.
            RunError::NotATty
            | RunError::NoSuchContainer(_)
            | RunError::Ambiguous(_)
            | RunError::NotRunning(_)
            | RunError::Running(_) => 1,
            _ => 125,
        }
    }

    /// What the user can do about it, if there is something.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RunError::Image { .. } => {
                "load it first: `ferry load -i ARCHIVE`; `ferry images` lists what the store has"
                    .into()
            }
            RunError::UserNamespaces { setting, .. } => format!(
                "as root, run `sysctl -w {setting}` (and add it to /etc/sysctl.d/ to keep it), or run ferry as root"
            ),
            RunError::NoCommand { .. } => "give a command after the image name".into(),
            RunError::NameInUse { .. } => {
                "choose another --name, or remove the old container with `ferry rm`".into()
            }
            RunError::Running(_) => "`ferry stop` it, or `ferry rm -f` to kill and remove".into(),
            RunError::NoLogs(_) => {
                "only containers started with -d keep their output: run it with `ferry run -d`".into()
            }
            RunError::NotATty => {
                "drop -t (keep -i) to pipe input into the container, or run it from a terminal"
                    .into()
            }
            RunError::VolumeInUse { .. } => {
                "remove the containers that use it first (`ferry rm`)".into()
            }
            RunError::Start { code: 127, .. } | RunError::Exec { code: 127, .. } => {
                "check the command's spelling and that the image contains it (PATH inside the container is used)".into()
            }
            _ => return None,
        })
    }
}

/// Wraps an I/O error with its action and path.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RunError {
    let path = path.into();
    move |source| RunError::Io {
        action,
        path,
        source,
    }
}
