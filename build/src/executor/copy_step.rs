//! COPY and ADD as steps: find and check the sources, hash them for the cache key, then
//! write them into a new layer (see [`crate::copy`] for where files land).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ferry_oci::Hasher;

use super::Executor;
use super::state::State;
use crate::copy::{self, CopyMode, Source};
use crate::dockerfile::{CopyArgs, parse_chmod, words};
use crate::error::StepError;
use crate::fs::stack::Stack;
use crate::fs::writer::{Writer, remove_any};
use crate::glob::{Pattern, has_wildcards};
use crate::source::{SourceError, Tree};

/// Where COPY reads from.
enum Origin {
    Context,
    Image(Stack),
}

impl Executor<'_> {
    /// COPY and ADD.
    pub(super) fn copy(
        &mut self,
        state: &mut State,
        c: &CopyArgs,
        keyword: &'static str,
        stage: usize,
    ) -> Result<(), StepError> {
        let env = self.expansion_env(state);
        let mut dest = self.expand(&c.dest, &env)?;
        let chown = match &c.chown {
            Some(x) => Some(self.expand(x, &env)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(x) => {
                let m = self.expand(x, &env)?;
                Some(parse_chmod(&m).ok_or_else(|| {
                    StepError::Invalid(format!(
                        "invalid --chmod={m}: give the mode in octal, like 755"
                    ))
                })?)
            }
            None => None,
        };
        let origin = match &c.from {
            Some(f) => {
                let f = self.expand(f, &env)?;
                Origin::Image(self.copy_origin(&f, stage)?)
            }
            None => Origin::Context,
        };
        let downloads = self.scratch_path("download");
        let result = self.copy_with(
            state, c, keyword, &origin, &env, &mut dest, chown, chmod, &downloads,
        );
        let _ = remove_any(&downloads);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_with(
        &mut self,
        state: &mut State,
        c: &CopyArgs,
        keyword: &'static str,
        origin: &Origin,
        env: &[(String, String)],
        dest: &mut String,
        chown: Option<String>,
        chmod: Option<u32>,
        downloads: &Path,
    ) -> Result<(), StepError> {
        let context = self.context.clone();
        let tree = match origin {
            Origin::Context => Tree::Context(&context),
            Origin::Image(s) => Tree::Image(s),
        };
        let mut sources: Vec<Source<'_>> = Vec::new();
        let mut hasher = Hasher::sha256();
        for written in &c.sources {
            if let Some(h) = words::heredoc_word(written)
                .and_then(|w| c.heredocs.iter().find(|d| d.name == w.name))
            {
                let data = if h.expand {
                    crate::expand::word_keeping_quotes(&h.content, self.escape, &env.to_vec())?
                } else {
                    h.content.clone()
                };
                hasher.update(format!("inline\0{}\0", h.name).as_bytes());
                hasher.update(data.as_bytes());
                sources.push(Source::Inline {
                    name: h.name.clone(),
                    data: data.into_bytes(),
                });
                continue;
            }
            let s = self.expand(written, env)?;
            if s.starts_with("http://") || s.starts_with("https://") {
                if keyword == "COPY" {
                    return Err(StepError::Invalid("source can't be a URL for COPY".into()));
                }
                sources.push(self.download(&s, dest, downloads, &mut hasher)?);
                continue;
            }
            let found = find_sources(tree, &s)?;
            for (rel, name) in found {
                let entry = tree
                    .lookup(&rel)
                    .ok_or_else(|| SourceError::NotFound(rel.display().to_string()))?;
                hasher.update(b"tree\0");
                hasher.update(name.as_encoded_bytes());
                hasher.update(b"\0");
                tree.hash(&rel, &mut hasher, &mut self.digests)?;
                sources.push(Source::Tree {
                    tree,
                    rel,
                    name,
                    entry,
                });
            }
        }
        if sources.is_empty() {
            return Err(StepError::Invalid("no source files were specified".into()));
        }
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(StepError::Invalid(format!(
                "When using {keyword} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        // History names the destination as written, as Docker's does.
        let written_dest = dest.clone();
        if !dest.starts_with('/') {
            let slash = dest.ends_with('/');
            let wd = state.config.config.working_dir.clone().unwrap_or_default();
            let mut joined = super::clean_abs(&format!("/{wd}/{dest}"));
            if slash && !joined.ends_with('/') {
                joined.push('/');
            }
            *dest = joined;
        }
        let digest = hasher.finish();
        let desc = match sources.as_slice() {
            [Source::Tree { entry, .. }] if entry.meta.is_dir() => {
                format!("dir:{}", digest.digest())
            }
            // A download is named by its bare digest, as in Docker's history.
            [Source::Downloaded { .. }] => digest.digest().to_string(),
            [_] => format!("file:{}", digest.digest()),
            _ => format!("multi:{}", digest.digest()),
        };
        // Docker 20.10 writes no space after the --chown value; kept, so histories match.
        let chown_text = chown
            .as_ref()
            .map(|c| format!("--chown={c}"))
            .unwrap_or_default();
        let created_by = format!(
            "{} #(nop) {keyword} {chown_text}{desc} in {written_dest} ",
            state.shell().join(" ")
        );
        let extra = format!("{chmod:?}");
        let key = self.key(state, keyword, &format!("{created_by}\0{extra}"), None);
        if self.probe(state, &key)? {
            return Ok(());
        }
        let changes = self.scratch_path("copy");
        std::fs::create_dir(&changes).map_err(StepError::io("create", &changes))?;
        let now = self.now();
        let now = (now.0, i64::from(now.1));
        let mut writer = Writer::new(changes.clone(), &state.snapshots(), now);
        let owner = match &chown {
            Some(spec) => Some(chown_ids(writer.view(), spec)?),
            None if matches!(origin, Origin::Image(_)) => None,
            None => Some((0, 0)),
        };
        let mode = CopyMode {
            owner,
            chmod,
            unpack: keyword == "ADD",
            now,
        };
        let done = copy::copy(&mut writer, &sources, dest, mode).and_then(|()| writer.finish());
        let layer = match done {
            Ok(_) => self.changes_layer(state, &changes),
            Err(e) => Err(StepError::Copy(e)),
        };
        let _ = remove_any(&changes);
        let layer = layer?;
        self.commit(state, created_by, layer, &key)
    }

    /// The layers `COPY --from=NAME` reads: an earlier stage (by name or index) or an image
    /// of the store.
    fn copy_origin(&self, from: &str, stage: usize) -> Result<Stack, StepError> {
        let lower = from.to_ascii_lowercase();
        let stage_index = self
            .stage_names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
            .or_else(|| from.parse::<usize>().ok());
        if let Some(j) = stage_index {
            if j == stage {
                return Err(StepError::Invalid(format!(
                    "invalid from flag value {from}: refers to current build stage"
                )));
            }
            if j > stage {
                return Err(StepError::Invalid(format!(
                    "invalid from flag value {from}: stage {j} comes later in the Dockerfile"
                )));
            }
            let s = self.results.get(j).cloned().flatten().ok_or_else(|| {
                StepError::Invalid(format!(
                    "invalid from flag value {from}: index out of bounds"
                ))
            })?;
            return Ok(Stack::new(s.snapshots()));
        }
        let img = self
            .host
            .store
            .image(from)
            .map_err(StepError::host("look the image up in the store"))?
            .ok_or(StepError::ImageNotFound {
                reference: from.to_string(),
            })?;
        Ok(Stack::new(
            img.layers.iter().map(|l| l.snapshot.clone()).collect(),
        ))
    }

    fn download(
        &mut self,
        url: &str,
        dest: &str,
        dir: &Path,
        hasher: &mut Hasher,
    ) -> Result<Source<'static>, StepError> {
        std::fs::create_dir_all(dir).map_err(StepError::io("create", dir))?;
        self.seq += 1;
        let file = dir.join(format!("url-{}", self.seq));
        let info = self
            .host
            .downloader
            .download(url, &file)
            .map_err(StepError::host("download the file"))?;
        // The name: the URL's last path component, else Content-Disposition's.
        let path_part = url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(url)
            .split(['?', '#'])
            .next()
            .unwrap_or_default();
        let from_url = path_part
            .split_once('/')
            .map(|(_, p)| p)
            .filter(|p| !p.ends_with('/') && !p.is_empty())
            .and_then(|p| p.rsplit('/').next())
            .map(str::to_string);
        let name = match from_url.or(info.file_name) {
            Some(n) => n,
            None if dest.ends_with('/') => {
                return Err(StepError::Invalid(format!(
                    "cannot determine filename for source {url}"
                )));
            }
            None => "__unnamed__".to_string(),
        };
        hasher.update(format!("url\0{name}\0").as_bytes());
        let bytes = std::fs::read(&file).map_err(StepError::io("read", &file))?;
        hasher.update(&bytes);
        Ok(Source::Downloaded {
            path: file,
            name,
            mtime: info.last_modified,
        })
    }
}

/// The resolved paths (and landing names) a written source stands for.
fn find_sources(tree: Tree<'_>, written: &str) -> Result<Vec<(PathBuf, OsString)>, StepError> {
    let trimmed = written.trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if has_wildcards(trimmed) {
        let pattern =
            Pattern::path(trimmed).map_err(|e| StepError::Invalid(format!("{written}: {e}")))?;
        let depth = trimmed.split('/').filter(|p| !p.is_empty()).count();
        let matches = tree.glob(&pattern, depth)?;
        let mut out = Vec::new();
        for m in matches {
            let name = m.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let rel = match tree {
                Tree::Context(c) => c.resolve(&m.to_string_lossy())?,
                Tree::Image(s) => s
                    .resolve(&m)
                    .map_err(|e| StepError::Invalid(e.to_string()))?,
            };
            out.push((rel, name));
        }
        return Ok(out);
    }
    let name = Path::new(trimmed)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .next_back()
        .unwrap_or_default();
    let rel = match tree {
        Tree::Context(c) => c.resolve(written)?,
        Tree::Image(s) => s
            .resolve(Path::new(trimmed))
            .map_err(|e| StepError::Invalid(e.to_string()))?,
    };
    if tree.lookup(&rel).is_none() {
        return Err(match tree {
            Tree::Context(_) if written.starts_with('/') => SourceError::Outside {
                path: written.to_string(),
                why: "no such file in the build context (a source path is relative to the context, even when it starts with /)".into(),
            }
            .into(),
            Tree::Context(_) => SourceError::NotFound(rel.display().to_string()).into(),
            Tree::Image(_) => SourceError::NotInImage(written.to_string()).into(),
        });
    }
    Ok(vec![(rel, name)])
}

/// `--chown` names looked up in the image the files land in.
fn chown_ids(view: &Stack, spec: &str) -> Result<(u32, u32), StepError> {
    let read = |p: &str| -> String {
        view.resolve(Path::new(p))
            .ok()
            .and_then(|r| view.lookup(&r))
            .and_then(|n| std::fs::read_to_string(n.path).ok())
            .unwrap_or_default()
    };
    copy::chown_ids(spec, &read("etc/passwd"), &read("etc/group")).map_err(|e| {
        StepError::Invalid(format!(
            "unable to convert uid/gid chown string to host mapping: {e}"
        ))
    })
}
