//! RUN (a container of the runtime over the parent's layers) and WORKDIR (a directory made in
//! a new layer), and turning a step's changes into a committed layer.
//!
//! A RUN container gets one more lower directory on top of the image's, the "init layer":
//! the mount points the runtime needs (`/proc`, `/sys`, `/dev`, `/etc/hosts`,
//! `/etc/hostname`, `/etc/resolv.conf`) where the image lacks them, so that making them does
//! not show up as a change of the step, as with Docker's init layer.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_oci::archive::BlobRef;

use super::Executor;
use super::state::State;
use crate::dockerfile::{RunArgs, words};
use crate::error::StepError;
use crate::fs::stack::Stack;
use crate::fs::writer::{Writer, remove_any, set_mtime};
use crate::host::{ContainerChanges, Layer, NewLayer, RunStep, StepEvents};
use crate::layer::{self, Changes, DiffOptions, LayerFile};
use crate::report::Reporter;

struct Events<'r> {
    reporter: &'r mut dyn Reporter,
}

impl StepEvents for Events<'_> {
    fn started(&mut self, id: &str) {
        self.reporter.running(&id[..id.len().min(12)]);
    }

    fn output(&mut self, bytes: &[u8]) {
        self.reporter.output(bytes);
    }
}

impl Executor<'_> {
    /// RUN.
    pub(super) fn run(&mut self, state: &mut State, r: &RunArgs) -> Result<(), StepError> {
        let cl = &r.command;
        let command: Vec<String> = if cl.exec_form {
            cl.args.clone()
        } else {
            let mut v = state.shell();
            v.push(shell_script(&cl.args.join(" "), &cl.heredocs, self.escape));
            v
        };
        let env_pairs = state.config.env_pairs();
        let build_env = self.args.not_in_env(&env_pairs);
        let mut recorded: Vec<String> = build_env
            .iter()
            .filter(|(k, _)| self.args.recorded(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        recorded.sort();
        let created_by = if recorded.is_empty() {
            command.join(" ")
        } else {
            format!(
                "|{} {} {}",
                recorded.len(),
                recorded.join(" "),
                command.join(" ")
            )
        };
        let network_none = self.opts.network_none || r.network.as_deref() == Some("none");
        let key = self.key(
            state,
            if network_none { "run-none" } else { "run" },
            &created_by,
            None,
        );
        if self.probe(state, &key)? {
            return Ok(());
        }
        let Some(image) = state.id.clone() else {
            return Err(StepError::Invalid(
                "RUN on an empty image (FROM scratch): there is no shell to run".into(),
            ));
        };
        let init = self.scratch_path("init");
        let lowers = state.snapshots();
        make_init_layer(&init, &Stack::new(lowers.clone()))
            .map_err(StepError::io("prepare the mount points in", &init))?;
        let volumes = match self.volume_dirs(state, &init) {
            Ok(v) => v,
            Err(e) => {
                let _ = remove_any(&init);
                return Err(e);
            }
        };
        let mut layers = lowers;
        layers.push(init.clone());
        let step = RunStep {
            image: &image,
            config: &state.config,
            layers: layers.clone(),
            overlay_ready: self.host.store.overlay_snapshots(),
            command: command.clone(),
            env: build_env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            network_none,
            volumes: volumes.clone(),
        };
        let mut events = Events {
            reporter: &mut *self.reporter,
        };
        let started = std::time::Instant::now();
        let result = self.host.runner.run(&step, &mut events);
        tracing::debug!(elapsed = ?started.elapsed(), "RUN step's command finished");
        let (container, exit) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = remove_any(&init);
                return Err(StepError::Host {
                    action: "run the step's container",
                    source: e,
                });
            }
        };
        let outcome = (|| {
            if let Some(sig) = exit.interrupted {
                return Err(StepError::Interrupted(sig));
            }
            if exit.code != 0 {
                return Err(StepError::NonZero {
                    command: command.join(" "),
                    code: exit.code,
                });
            }
            let before = Stack::new(layers.clone());
            self.take_layer(state, container.changes(), &before)
        })();
        let id = container.id().to_string();
        drop(container);
        let _ = remove_any(&init);
        for (_, dir) in &volumes {
            let _ = remove_any(dir);
        }
        let layer = outcome?;
        self.reporter.removed(&id[..id.len().min(12)]);
        self.commit(state, created_by, layer, &key)
    }

    /// A directory per VOLUME of the config, holding a copy of what the image has at that
    /// path (as a new Docker volume starts with it).
    fn volume_dirs(
        &mut self,
        state: &State,
        init: &Path,
    ) -> Result<Vec<(String, PathBuf)>, StepError> {
        let Some(vols) = &state.config.config.volumes else {
            return Ok(Vec::new());
        };
        let stack = Stack::new(state.snapshots());
        let mut out = Vec::new();
        for path in vols.keys() {
            let dir = init.with_file_name(format!(
                "{}-volume-{}",
                init.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                out.len()
            ));
            std::fs::create_dir(&dir).map_err(StepError::io("create", &dir))?;
            out.push((path.clone(), dir.clone()));
            let rel = stack
                .resolve(Path::new(path.trim_start_matches('/')))
                .map_err(|e| StepError::Invalid(e.to_string()))?;
            let Some(node) = stack.lookup(&rel).filter(|n| n.meta.is_dir()) else {
                continue;
            };
            let now = self.now();
            let mut writer = Writer::new(dir.clone(), &[], (now.0, i64::from(now.1)));
            let source = crate::copy::Source::Tree {
                tree: crate::source::Tree::Image(&stack),
                rel: rel.clone(),
                name: Default::default(),
                entry: crate::source::Entry {
                    path: node.path,
                    meta: node.meta,
                    implicit: false,
                },
            };
            let mode = crate::copy::CopyMode {
                owner: None,
                chmod: None,
                unpack: false,
                now: (now.0, i64::from(now.1)),
            };
            crate::copy::copy(&mut writer, &[source], "/", mode)
                .and_then(|()| writer.finish().map(|_| ()))
                .map_err(StepError::Copy)?;
        }
        Ok(out)
    }

    /// WORKDIR: the directory is made (as root, mode 755) when the image lacks it, in a layer
    /// of its own; the config's WorkingDir changes either way.
    pub(super) fn workdir(&mut self, state: &mut State, path: &str) -> Result<(), StepError> {
        let env = self.expansion_env(state);
        let p = self.expand(path, &env)?;
        if p.is_empty() {
            return Err(StepError::Invalid(
                "WORKDIR requires exactly one argument".into(),
            ));
        }
        let dir = if p.starts_with('/') {
            p
        } else {
            let cur = state.config.config.working_dir.clone().unwrap_or_default();
            super::clean_abs(&format!("/{cur}/{p}"))
        };
        let created_by = format!("{} #(nop) WORKDIR {dir}", state.shell().join(" "));
        let key = self.key(state, "workdir", &created_by, None);
        if self.probe(state, &key)? {
            return Ok(());
        }
        let changes = self.scratch_path("workdir");
        std::fs::create_dir(&changes).map_err(StepError::io("create", &changes))?;
        let now = self.now();
        let mut writer = Writer::new(
            changes.clone(),
            &state.snapshots(),
            (now.0, i64::from(now.1)),
        );
        let made = (|| -> io::Result<bool> {
            let canon = writer.resolve(Path::new(dir.trim_start_matches('/')))?;
            match writer.view().lookup(&canon) {
                Some(n) if n.meta.is_dir() => Ok(false),
                Some(_) => Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("Cannot mkdir: /{} is not a directory", canon.display()),
                )),
                None => {
                    writer.ensure_dir(&canon, (0, 0))?;
                    Ok(true)
                }
            }
        })();
        let made = match made.and_then(|m| writer.finish().map(|_| m)) {
            Ok(m) => m,
            Err(e) => {
                let _ = remove_any(&changes);
                return Err(StepError::Invalid(e.to_string()));
            }
        };
        let layer = if made {
            self.changes_layer(state, &changes)?
        } else {
            None
        };
        let _ = remove_any(&changes);
        state.config.config.working_dir = Some(dir);
        self.commit(state, created_by, layer, &key)
    }

    fn diff_options(&self) -> DiffOptions {
        let euid = rustix::process::geteuid();
        DiffOptions {
            clamp_mtime: self.opts.timestamp,
            map_user_to_root: (!euid.is_root())
                .then(|| (euid.as_raw(), rustix::process::getegid().as_raw())),
            strip_overlay_xattrs: false,
            now: self.now().0,
        }
    }

    /// The layer of a changes directory the builder wrote (COPY, ADD, WORKDIR).
    pub(super) fn changes_layer(
        &mut self,
        state: &State,
        dir: &Path,
    ) -> Result<Option<Layer>, StepError> {
        let dest = self.scratch_path("layer");
        let file = layer::write(
            Changes::Upper {
                dir,
                strip_overlay_xattrs: false,
            },
            &dest,
            self.diff_options(),
        )?;
        self.finish_layer(state, file, Some(dir))
    }

    /// The layer of a RUN container.
    fn take_layer(
        &mut self,
        state: &State,
        changes: ContainerChanges,
        before: &Stack,
    ) -> Result<Option<Layer>, StepError> {
        let started = std::time::Instant::now();
        let layer = self.take_layer_timed(state, changes, before);
        tracing::debug!(elapsed = ?started.elapsed(), "RUN step's layer taken and stored");
        layer
    }

    fn take_layer_timed(
        &mut self,
        state: &State,
        changes: ContainerChanges,
        before: &Stack,
    ) -> Result<Option<Layer>, StepError> {
        let dest = self.scratch_path("layer");
        let opts = self.diff_options();
        match changes {
            ContainerChanges::Upper(dir) => {
                let file = layer::write(
                    Changes::Upper {
                        dir: &dir,
                        strip_overlay_xattrs: true,
                    },
                    &dest,
                    opts,
                )?;
                self.finish_layer(state, file, Some(&dir))
            }
            ContainerChanges::Tree(root) => {
                let file = layer::write(
                    Changes::Trees {
                        after: &root,
                        before,
                    },
                    &dest,
                    opts,
                )?;
                self.finish_layer(state, file, None)
            }
        }
    }

    /// Moves a non-empty layer into the store; an empty one is dropped (the step only adds
    /// history, as Docker does).
    fn finish_layer(
        &mut self,
        state: &State,
        file: LayerFile,
        tree: Option<&Path>,
    ) -> Result<Option<Layer>, StepError> {
        if file.is_empty() {
            let _ = std::fs::remove_file(&file.path);
            return Ok(None);
        }
        tracing::debug!(
            entries = file.stats.entries,
            bytes = file.size,
            "layer written"
        );
        // A directory with overlayfs whiteouts cannot be a snapshot of a store that keeps
        // the portable form; the store unpacks the blob instead.
        let tree = tree.filter(|_| self.host.store.overlay_snapshots() || !file.stats.whiteouts);
        let media_type = state.flavour.layer_type();
        let snapshot = self
            .host
            .store
            .commit_layer(
                &state.diff_ids(),
                NewLayer {
                    blob: &file,
                    media_type,
                    tree,
                },
            )
            .map_err(StepError::host("store the layer"));
        let _ = std::fs::remove_file(&file.path);
        Ok(Some(Layer {
            diff_id: file.diff_id.clone(),
            blob: BlobRef {
                digest: file.digest.clone(),
                size: file.size,
                media_type: media_type.to_string(),
            },
            snapshot: snapshot?,
        }))
    }
}

/// The script a shell-form RUN hands to the shell. With heredocs the shell reads them
/// itself, except when the command is nothing but one heredoc: its body is the script.
fn shell_script(line: &str, heredocs: &[crate::dockerfile::Heredoc], escape: char) -> String {
    if heredocs.is_empty() {
        return line.to_string();
    }
    let w = words::shell_words(line, escape);
    if w.len() == 1 && heredocs.len() == 1 && words::heredoc_word(&w[0]).is_some() {
        return heredocs[0].content.clone();
    }
    let mut s = line.to_string();
    s.push('\n');
    for h in heredocs {
        s.push_str(&h.content);
        s.push_str(&h.name);
        s.push('\n');
    }
    s
}

/// Makes the init layer in `dir` (see the module comment).
fn make_init_layer(dir: &Path, stack: &Stack) -> io::Result<()> {
    std::fs::create_dir(dir)?;
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    'points: for (point, is_dir) in [
        ("proc", true),
        ("sys", true),
        ("dev", true),
        ("etc/hosts", false),
        ("etc/hostname", false),
        ("etc/resolv.conf", false),
    ] {
        let resolved = stack.resolve(Path::new(point)).map_err(io::Error::other)?;
        if resolved.as_os_str().is_empty() || stack.lookup(&resolved).is_some() {
            continue;
        }
        let comps: Vec<_> = resolved.components().collect();
        let mut cur = PathBuf::new();
        for c in &comps[..comps.len() - 1] {
            cur.push(c);
            let d = dir.join(&cur);
            if d.symlink_metadata().is_ok() {
                continue;
            }
            match stack.lookup(&cur) {
                Some(n) if n.meta.is_dir() => {
                    std::fs::create_dir(&d)?;
                    dirs.push((d, n.meta));
                }
                // A file where a directory should be: the runtime will say so.
                Some(_) => continue 'points,
                None => std::fs::create_dir(&d)?,
            }
        }
        let leaf = dir.join(&resolved);
        if is_dir {
            std::fs::create_dir(&leaf)?;
        } else {
            std::fs::write(&leaf, b"")?;
        }
    }
    // Copied directories look exactly like the image's, so a container that copies one up
    // (writing into /etc) records the image's owner and mode.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    let root = rustix::process::geteuid().is_root();
    for (d, m) in dirs {
        if root {
            std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()))?;
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        set_mtime(&d, (m.mtime(), m.mtime_nsec()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Heredoc;

    fn h(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
            chomp: false,
            fd: 0,
        }
    }

    #[test]
    fn heredoc_scripts() {
        assert_eq!(
            shell_script("<<EOF", &[h("EOF", "echo a\necho b\n")], '\\'),
            "echo a\necho b\n"
        );
        assert_eq!(
            shell_script("cat <<EOF > /x", &[h("EOF", "hi\n")], '\\'),
            "cat <<EOF > /x\nhi\nEOF\n"
        );
        assert_eq!(shell_script("echo hi", &[], '\\'), "echo hi");
    }
}
