//! Running a parsed Dockerfile: stages in order (only those the target needs), each
//! instruction a step that is either found in the build cache or executed and committed.
//!
//! Every step's result is an image in the store (config + manifest blobs, its layers
//! committed as blobs and snapshots) recorded under its cache key; only the last one gets the
//! `-t` names. A step's key is its parent image, the instruction as expanded, the build args
//! in scope and, for COPY/ADD, a digest of the sources.

mod args;
mod copy_step;
mod run_step;
mod state;
mod step;

use std::path::PathBuf;

use ferry_oci::{Digest, Hasher, Platform};

use crate::config::{History, manifest, rfc3339};
use crate::dockerfile::{self, Dockerfile, Instruction, Kind};
use crate::error::{BuildError, StepError};
use crate::host::{Host, Layer};
use crate::ignore::Ignore;
use crate::report::Reporter;
use crate::source::Context;

use args::Args;
pub use args::PREDEFINED as PREDEFINED_ARGS;
use state::State;

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// How errors name the Dockerfile (`Dockerfile`, `docker/app.Dockerfile`, `-`).
    pub dockerfile_name: String,
    /// The Dockerfile's path inside the context, if it is there (it stays visible to COPY
    /// whatever `.dockerignore` says, as with Docker).
    pub dockerfile_in_context: Option<String>,
    /// `-t` names.
    pub tags: Vec<String>,
    /// `--build-arg` values.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--network none` for every RUN.
    pub network_none: bool,
    /// `--label`s.
    pub labels: Vec<(String, String)>,
    /// SOURCE_DATE_EPOCH / `--timestamp`: every time in the image (and file times after it)
    /// becomes this, so two builds of the same inputs are byte for byte the same image.
    pub timestamp: Option<i64>,
    /// The platform of `FROM scratch` and the one images are checked against.
    pub platform: Platform,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image ID.
    pub id: Digest,
    /// The names it was given.
    pub tags: Vec<String>,
}

/// Builds `opts`, reporting to `reporter`.
pub fn build(
    opts: &BuildOptions,
    host: &Host<'_>,
    reporter: &mut dyn Reporter,
) -> Result<BuildResult, BuildError> {
    let parsed = dockerfile::parse(&opts.dockerfile).map_err(|e| BuildError::Parse {
        file: opts.dockerfile_name.clone(),
        line: e.line,
        message: e.message,
    })?;
    for l in &parsed.empty_continuations {
        reporter.notice(&format!(
            "[WARNING]: Empty continuation line found at {}:{l}",
            opts.dockerfile_name
        ));
    }
    let context = open_context(opts)?;
    // Digests of context files are remembered per context directory.
    let memory = host.store.memory_dir().map(|d| {
        let ctx = std::fs::canonicalize(&opts.context).unwrap_or_else(|_| opts.context.clone());
        let key = ferry_oci::digest::sha256(ctx.as_os_str().as_encoded_bytes());
        d.join(format!("{}.json", &key.digest()[..16]))
    });
    let mut ex = Executor {
        opts,
        host,
        reporter,
        file: opts.dockerfile_name.clone(),
        escape: parsed.escape,
        context,
        args: Args::new(&opts.build_args),
        results: vec![None; parsed.stages.len()],
        stage_names: parsed
            .stages
            .iter()
            .map(|s| s.name().map(str::to_string))
            .collect(),
        step: 0,
        total: 0,
        seq: 0,
        digests: crate::digests::Digests::load(memory),
    };
    let state = ex.dockerfile(&parsed);
    std::mem::take(&mut ex.digests).save();
    let state = state?;
    let Some(id) = state.id.clone() else {
        return Err(BuildError::Invalid(
            "No image was generated. Is your Dockerfile empty?".into(),
        ));
    };
    let unused = ex.args.unused();
    if !unused.is_empty() {
        ex.reporter.notice(&format!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.join(" ")
        ));
    }
    if !opts.tags.is_empty() {
        let m = manifest_of(&state);
        for t in &opts.tags {
            host.store
                .tag(&m, std::slice::from_ref(t))
                .map_err(|source| BuildError::Tag {
                    name: t.clone(),
                    source,
                })?;
        }
    }
    Ok(BuildResult {
        id,
        tags: opts.tags.clone(),
    })
}

fn open_context(opts: &BuildOptions) -> Result<Context, BuildError> {
    let meta = std::fs::metadata(&opts.context).map_err(|source| BuildError::Context {
        path: opts.context.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(BuildError::Context {
            path: opts.context.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let ignore_path = opts.context.join(".dockerignore");
    let text = match std::fs::read_to_string(&ignore_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(BuildError::Context {
                path: ignore_path,
                source,
            });
        }
    };
    let mut kept = vec![".dockerignore"];
    if let Some(d) = &opts.dockerfile_in_context {
        kept.push(d.as_str());
    }
    let ignore = Ignore::parse(&text, &kept).map_err(BuildError::Ignore)?;
    Ok(Context::new(opts.context.clone(), ignore))
}

/// The manifest of a state's image.
fn manifest_of(state: &State) -> Vec<u8> {
    let config = state.config.to_bytes();
    let id = ferry_oci::digest::sha256(&config);
    let layers: Vec<_> = state.layers.iter().map(|l| l.blob.clone()).collect();
    manifest(state.flavour, &id, config.len() as u64, &layers)
}

pub(crate) struct Executor<'a> {
    opts: &'a BuildOptions,
    host: &'a Host<'a>,
    reporter: &'a mut dyn Reporter,
    file: String,
    escape: char,
    context: Context,
    args: Args,
    /// Finished stages, by index.
    results: Vec<Option<State>>,
    /// Stage names, by index.
    stage_names: Vec<Option<String>>,
    step: usize,
    total: usize,
    /// Names in the workspace.
    seq: usize,
    /// Source file digests, remembered between builds.
    digests: crate::digests::Digests,
}

impl Executor<'_> {
    fn dockerfile(&mut self, df: &Dockerfile) -> Result<State, BuildError> {
        let target = match &self.opts.target {
            Some(t) => df
                .stages
                .iter()
                .position(|s| s.name() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| BuildError::Target(t.clone()))?,
            None => df.stages.len() - 1,
        };
        // Meta args first: FROM lines (and so the stages a stage needs) depend on them.
        for ins in &df.meta_args {
            let Kind::Arg(decls) = &ins.kind else {
                continue;
            };
            for d in decls {
                let env = self.args.allowed();
                let name = self.expand(&d.name, &env).map_err(|e| self.fail(ins, e))?;
                let default = match &d.default {
                    Some(v) => Some(self.expand(v, &env).map_err(|e| self.fail(ins, e))?),
                    None => None,
                };
                self.args.declare(&name, default, true);
            }
        }
        let needed = self.needed(df, target);
        self.total = df.meta_args.len()
            + needed
                .iter()
                .map(|&i| 1 + df.stages[i].instructions.len())
                .sum::<usize>()
            + self.opts.labels.len();
        for ins in &df.meta_args {
            self.step += 1;
            self.reporter.step(self.step, self.total, &ins.text);
        }
        let mut last = None;
        for &i in &needed {
            let state = self.stage(df, i, i == target)?;
            self.results[i] = Some(state.clone());
            last = Some(state);
        }
        Ok(last.expect("the target stage is always needed"))
    }

    /// The stages the target needs, in order: itself, and those it takes FROM or COPY
    /// `--from`, transitively.
    fn needed(&self, df: &Dockerfile, target: usize) -> Vec<usize> {
        let mut need = vec![false; df.stages.len()];
        need[target] = true;
        let meta = self.args.meta();
        for i in (0..=target).rev() {
            if !need[i] {
                continue;
            }
            let s = &df.stages[i];
            let mut refs = Vec::new();
            let from = self
                .expand(&s.from_args.image, &meta)
                .unwrap_or_else(|_| s.from_args.image.clone());
            refs.push(from);
            for ins in &s.instructions {
                if let Kind::Copy(c) = &ins.kind
                    && let Some(f) = &c.from
                {
                    refs.push(f.clone());
                }
            }
            for r in refs {
                if r.contains('$') {
                    // Cannot tell before the stage runs: keep every earlier stage.
                    need[..i].iter_mut().for_each(|n| *n = true);
                    continue;
                }
                let lower = r.to_ascii_lowercase();
                for (j, other) in df.stages[..i].iter().enumerate() {
                    if other.name() == Some(lower.as_str()) || r == j.to_string() {
                        need[j] = true;
                    }
                }
            }
        }
        (0..df.stages.len()).filter(|&i| need[i]).collect()
    }

    /// Runs one stage.
    fn stage(&mut self, df: &Dockerfile, index: usize, last: bool) -> Result<State, BuildError> {
        let stage = &df.stages[index];
        self.args.enter_stage();
        self.step += 1;
        self.reporter.step(self.step, self.total, &stage.from.text);
        let mut state = self
            .from(df, index)
            .map_err(|e| self.fail(&stage.from, e))?;
        if let Some(id) = &state.id {
            self.reporter.image(id);
        }
        if let Some(triggers) = state
            .config
            .config
            .on_build
            .take()
            .filter(|t| !t.is_empty())
        {
            self.reporter.notice(&format!(
                "# Executing {} build trigger{}",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in &triggers {
                let ins = dockerfile::parse_instruction(t, self.escape).map_err(|e| {
                    self.fail(
                        &stage.from,
                        StepError::Invalid(format!("ONBUILD trigger `{t}`: {}", e.message)),
                    )
                })?;
                self.instruction(&mut state, &ins, index)
                    .map_err(|e| self.fail(&stage.from, e))?;
            }
        }
        for ins in &stage.instructions {
            self.step += 1;
            self.reporter.step(self.step, self.total, &ins.text);
            self.check_interrupt(ins)?;
            self.instruction(&mut state, ins, index)
                .map_err(|e| self.fail(ins, e))?;
            if let Some(id) = &state.id {
                self.reporter.image(id);
            }
        }
        if last {
            for (k, v) in &self.opts.labels {
                let text = format!("LABEL {k}={v}");
                self.step += 1;
                self.reporter.step(self.step, self.total, &text);
                let ins = Instruction {
                    line: stage.from.line,
                    end_line: stage.from.line,
                    text: text.clone(),
                    kind: Kind::Label(Vec::new()),
                };
                self.label(&mut state, &[(k.clone(), v.clone())])
                    .map_err(|e| self.fail(&ins, e))?;
                if let Some(id) = &state.id {
                    self.reporter.image(id);
                }
            }
        }
        Ok(state)
    }

    fn check_interrupt(&self, ins: &Instruction) -> Result<(), BuildError> {
        match self.host.runner.interrupted() {
            Some(sig) => Err(self.fail(ins, StepError::Interrupted(sig))),
            None => Ok(()),
        }
    }

    /// Wraps a step's error with the place it happened.
    fn fail(&self, ins: &Instruction, source: impl Into<StepError>) -> BuildError {
        let mut instruction = ins.text.clone();
        if instruction.chars().count() > 100 {
            instruction = instruction.chars().take(97).collect::<String>() + "...";
        }
        BuildError::Step {
            file: self.file.clone(),
            line: ins.line,
            instruction,
            source: Box::new(source.into()),
        }
    }

    fn expand(&self, text: &str, env: &[(String, String)]) -> Result<String, StepError> {
        Ok(crate::expand::word(text, self.escape, &env.to_vec())?)
    }

    /// The environment instructions expand with: Env, then build args Env does not set.
    fn expansion_env(&self, state: &State) -> Vec<(String, String)> {
        let mut env = state.config.env_pairs();
        env.extend(self.args.not_in_env(&env));
        env
    }

    /// The time of a new step.
    fn now(&self) -> (i64, u32) {
        if let Some(t) = self.opts.timestamp {
            return (t, 0);
        }
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs() as i64, d.subsec_nanos())
    }

    /// A fresh path in the workspace.
    fn scratch_path(&mut self, what: &str) -> PathBuf {
        self.seq += 1;
        self.host
            .store
            .workspace()
            .join(format!("{what}-{}", self.seq))
    }

    /// The cache key of a step.
    fn key(&self, state: &State, kind: &str, text: &str, extra: Option<&Digest>) -> Digest {
        let mut h = Hasher::sha256();
        h.update(b"ferry-build-cache-v1\0");
        h.update(state.parent_key().as_bytes());
        h.update(b"\0");
        h.update(kind.as_bytes());
        h.update(b"\0");
        h.update(text.as_bytes());
        h.update(b"\0");
        for (k, v) in self.args.allowed() {
            if self.args.recorded(&k) {
                h.update(format!("{k}={v}\0").as_bytes());
            }
        }
        if let Some(e) = extra {
            h.update(e.to_string().as_bytes());
        }
        h.finish()
    }

    /// Looks a key up; on a hit the state becomes the cached image.
    fn probe(&mut self, state: &mut State, key: &Digest) -> Result<bool, StepError> {
        if self.opts.no_cache {
            return Ok(false);
        }
        let Some(img) = self
            .host
            .store
            .cached(key)
            .map_err(StepError::host("read the build cache"))?
        else {
            return Ok(false);
        };
        state
            .adopt(&img)
            .map_err(|e| StepError::Invalid(format!("cached image {} is damaged: {e}", img.id)))?;
        self.reporter.cached();
        Ok(true)
    }

    /// Commits the step's image: `state.config` as changed by the step, plus a history
    /// entry and, if any, the new layer.
    fn commit(
        &mut self,
        state: &mut State,
        created_by: String,
        layer: Option<Layer>,
        key: &Digest,
    ) -> Result<(), StepError> {
        let (s, ns) = self.now();
        let created = rfc3339(s, ns);
        let config = &mut state.config;
        config.created = Some(created.clone());
        if let Some(m) = &state.maintainer {
            config.author = Some(m.clone());
        }
        let empty = layer.is_none();
        if let Some(l) = layer {
            config.rootfs.diff_ids.push(l.diff_id.to_string());
            state.layers.push(l);
        }
        config.history.push(History {
            created: Some(created),
            created_by: Some(created_by),
            author: state.maintainer.clone(),
            comment: None,
            empty_layer: empty,
        });
        let bytes = config.to_bytes();
        let id = ferry_oci::digest::sha256(&bytes);
        let layers: Vec<_> = state.layers.iter().map(|l| l.blob.clone()).collect();
        let m = manifest(state.flavour, &id, bytes.len() as u64, &layers);
        self.host
            .store
            .commit_image(&bytes, &m, Some((key, state.id.as_ref())))
            .map_err(StepError::host("store the step's image"))?;
        state.id = Some(id);
        Ok(())
    }

    /// A metadata step: `change` applies to the config; history says `comment`
    /// (`/bin/sh -c #(nop)  ENV A=1`).
    fn meta_step(
        &mut self,
        state: &mut State,
        comment: &str,
        change: impl FnOnce(&mut State),
    ) -> Result<(), StepError> {
        let shell = state.shell();
        self.meta_step_in(state, &shell, comment, change)
    }

    /// A metadata step whose history line starts with `shell` (SHELL names the new one).
    fn meta_step_in(
        &mut self,
        state: &mut State,
        shell: &[String],
        comment: &str,
        change: impl FnOnce(&mut State),
    ) -> Result<(), StepError> {
        let created_by = format!("{} #(nop)  {comment}", shell.join(" "));
        let key = self.key(state, "meta", &created_by, None);
        if self.probe(state, &key)? {
            return Ok(());
        }
        change(state);
        self.commit(state, created_by, None, &key)
    }
}

/// A container path cleaned as Go's `path.Clean` does for absolute paths: `/a/./b/../c` →
/// `/a/c` (no `..` climbs above `/`).
fn clean_abs(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn clean_absolute_paths() {
        assert_eq!(super::clean_abs("/app/./b/../c/"), "/app/c");
        assert_eq!(super::clean_abs("//"), "/");
        assert_eq!(super::clean_abs("/../x"), "/x");
    }
}
