//! `ferry push SOURCE… --to REGISTRY[/PREFIX]`: images from archives (whole, split, delta, any
//! format `ferry load` reads) or from the store into a registry, bytes unchanged, so every
//! digest is the origin's.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use ferry_fetch::push::{Action, BlobReader, ManifestBlob, PushImage, PushOptions};
use ferry_load::graph::{self, ArchiveGraph, Document};
use ferry_load::locate::Span;
use ferry_load::split::Parts;
use ferry_oci::archive::BlobRef;
use ferry_oci::{Digest, ImageReference, digest};

use crate::cli::GlobalArgs;
use crate::commands::registry::{RegistryArgs, cache_dir};
use crate::progress::{CliReporter, ProgressMode, human_bytes};

/// Arguments of `ferry push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Archives (FILE, or FILE.000 of a split one) or images of ferry's store.
    #[arg(required = true, value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// The registry to push into, and an optional repository prefix: each image keeps its
    /// repository path below it (`docker.io/library/nginx:1.27` → REGISTRY/PREFIX/library/nginx:1.27).
    #[arg(long, value_name = "REGISTRY[/PREFIX]")]
    pub to: String,
    /// Push only the images this list names (one per line, `#` comments), from the sources.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Show what would be uploaded, mounted or left alone, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Number of blobs sent at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Bytes per upload request of a large blob (K, M, G); smaller blobs go in one request.
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = ferry_fetch::parse_split_size)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// Print nothing but errors and the pushed references.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Where images go: `host[:port]` and a repository prefix.
struct Target {
    host: String,
    prefix: Option<String>,
}

impl Target {
    fn parse(s: &str) -> anyhow::Result<Target> {
        let s = s.trim_end_matches('/');
        let (host, prefix) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p.to_string())),
            None => (s, None),
        };
        let probe = format!("{host}/x/y");
        let ok = !host.is_empty()
            && probe
                .parse::<ImageReference>()
                .is_ok_and(|r| r.registry() == host);
        if !ok || !(host.contains('.') || host.contains(':') || host == "localhost") {
            bail!(
                "--to {s}: expected a registry host (registry.lan, 10.0.0.5:5000, localhost:5000), optionally followed by /PREFIX"
            );
        }
        Ok(Target {
            host: host.to_string(),
            prefix,
        })
    }

    /// Where `name` goes: same repository path (and tag or digest) below the prefix.
    fn of(&self, name: &ImageReference) -> anyhow::Result<ImageReference> {
        let repo = match &self.prefix {
            Some(p) => format!("{p}/{}", name.repository()),
            None => name.repository().to_string(),
        };
        let text = match (name.tag(), name.digest()) {
            (Some(t), _) => format!("{}/{repo}:{t}", self.host),
            (None, Some(d)) => format!("{}/{repo}@{d}", self.host),
            (None, None) => format!("{}/{repo}:latest", self.host),
        };
        text.parse()
            .with_context(|| format!("{text} is not a valid image name"))
    }
}

/// Blobs by digest, from whichever source holds them.
#[derive(Default)]
struct Sources {
    archives: Vec<(String, Parts, HashMap<Digest, Span>)>,
    store_root: Option<PathBuf>,
    /// Held while blobs are read from the store, so none goes away meanwhile.
    #[cfg(unix)]
    store_lock: Option<ferry_load::StoreLock>,
    /// Temporary decompressed copies, removed at the end.
    temporary: Vec<PathBuf>,
}

impl BlobReader for Sources {
    fn open(&self, blob: &BlobRef, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        for (_, parts, spans) in &self.archives {
            if let Some(span) = spans.get(&blob.digest) {
                let r = parts.open_at(span.offset + offset)?;
                return Ok(Box::new(r.take(span.size - offset)));
            }
        }
        if let Some(root) = &self.store_root {
            let path = root.join(digest::blob_path(&blob.digest));
            let mut f = File::open(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            f.seek(SeekFrom::Start(offset))?;
            return Ok(Box::new(f.take(blob.size - offset)));
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no source holds blob {}", blob.digest),
        ))
    }

    fn name(&self) -> String {
        let mut names: Vec<String> = self.archives.iter().map(|(n, ..)| n.clone()).collect();
        if self.store_root.is_some() {
            names.push("the store".into());
        }
        names.join(", ")
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for p in &self.temporary {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs `ferry push`.
pub fn run(args: PushArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::parse(&args.to)?;
    let client = args.registry.client()?;
    let wanted: Option<Vec<ImageReference>> = match &args.file {
        Some(f) => Some(
            crate::commands::fetch::read_list(f)?
                .into_iter()
                .map(|w| w.reference)
                .collect(),
        ),
        None => None,
    };
    let mut sources = Sources::default();
    let mut images: Vec<PushImage> = Vec::new();
    let mut mount_hints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for source in &args.sources {
        let path = crate::paths::native(Path::new(source));
        if path.exists() || ferry_load::split::part_name(&path, 0).exists() {
            let graph = open_archive(&path, &mut sources)?;
            add_archive(&graph, &target, wanted.as_deref(), &mut images)?;
            if let Some(delta) = &graph.delta {
                for n in &delta.needs {
                    mount_hints.insert(n.digest.clone(), n.repositories.clone());
                }
            }
            sources
                .archives
                .push((path.display().to_string(), graph.located.parts, graph.spans));
        } else {
            add_stored(source, global, &target, &mut sources, &mut images)?;
        }
    }
    if let Some(list) = &wanted {
        for w in list {
            if !images.iter().any(|i| names_match(&i.target, w, &target)) {
                bail!(
                    "{w} is in the image list but in none of {}",
                    args.sources.join(", ")
                );
            }
        }
    }
    if images.is_empty() {
        bail!(
            "nothing to push: {} holds no named image",
            args.sources.join(", ")
        );
    }
    let mode = if args.quiet {
        ProgressMode::None
    } else {
        args.progress.resolve()
    };
    let reporter = Arc::new(CliReporter::for_push(mode));
    let opts = PushOptions {
        concurrency: args.concurrency.into(),
        chunk_size: args.chunk_size,
        client,
        cache_dir: Some(cache_dir()),
        mount_hints,
        dry_run: args.dry_run,
    };
    let result = ferry_fetch::push::push(&images, &sources, &opts, reporter.clone());
    reporter.clear();
    let summary = result.with_context(|| format!("failed to push to {}", target.host))?;
    let mut stdout = std::io::stdout().lock();
    if args.dry_run {
        for a in &summary.actions {
            writeln!(stdout, "{}", describe(a))?;
        }
    } else {
        for img in &summary.images {
            writeln!(stdout, "{}  {}", img.target, img.digest)?;
        }
    }
    if !args.quiet {
        let (up, up_bytes) = summary.count(|a| matches!(a, Action::Upload { .. }));
        let (mounted, mounted_bytes) = summary.count(|a| matches!(a, Action::Mount { .. }));
        let (there, _) = summary.count(|a| matches!(a, Action::Exists { .. }));
        let (put, _) = summary.count(|a| matches!(a, Action::Manifest { existed: false, .. }));
        let (kept, _) = summary.count(|a| matches!(a, Action::Manifest { existed: true, .. }));
        let n = summary.images.len();
        eprintln!(
            "{} {n} image{} to {} in {:.1}s: {up} blob{} uploaded ({}{}), {mounted} mounted ({}), {there} already there; {put} manifest{} put, {kept} already there",
            if args.dry_run { "would push" } else { "pushed" },
            if n == 1 { "" } else { "s" },
            target.host,
            summary.elapsed.as_secs_f64(),
            if up == 1 { "" } else { "s" },
            human_bytes(up_bytes),
            if summary.sent_bytes > up_bytes {
                format!(", {} sent", human_bytes(summary.sent_bytes))
            } else {
                String::new()
            },
            human_bytes(mounted_bytes),
            if put == 1 { "" } else { "s" },
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `--dry-run`.
fn describe(a: &Action) -> String {
    match a {
        Action::Upload { blob, repo } => format!(
            "upload    {}  {:>10}  {repo}",
            blob.digest,
            human_bytes(blob.size)
        ),
        Action::Mount { blob, repo, from } => format!(
            "mount     {}  {:>10}  {repo} (from {from})",
            blob.digest,
            human_bytes(blob.size)
        ),
        Action::Exists { blob, repo } => format!(
            "exists    {}  {:>10}  {repo}",
            blob.digest,
            human_bytes(blob.size)
        ),
        Action::Manifest {
            reference,
            digest,
            existed,
        } => format!(
            "manifest  {digest}  {reference}{}",
            if *existed { " (already there)" } else { "" }
        ),
    }
}

/// Whether the image pushed to `pushed` is the one a list names as `wanted`.
fn names_match(pushed: &ImageReference, wanted: &ImageReference, target: &Target) -> bool {
    target.of(wanted).is_ok_and(|t| &t == pushed)
}

/// Reads an archive for pushing; a compressed one is decompressed to a temporary file first.
fn open_archive(path: &Path, sources: &mut Sources) -> anyhow::Result<ArchiveGraph> {
    let parts = Parts::find(path).with_context(|| format!("cannot open {}", path.display()))?;
    match graph::read(parts.clone()) {
        Ok(g) => Ok(g),
        Err(ferry_load::LoadError::NotAnArchive(why)) if why.contains("compressed") => {
            let tmp = decompress(&parts, path)?;
            sources.temporary.push(tmp.clone());
            let parts = Parts::single(&tmp)?;
            graph::read(parts).with_context(|| format!("cannot read {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Decompresses an archive into ferry's cache directory, saying so.
fn decompress(parts: &Parts, path: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!("push-{}.tar", std::process::id()));
    eprintln!(
        "{} is compressed: decompressing it to {} first",
        path.display(),
        tmp.display()
    );
    let (_, mut stream) = ferry_load::compression::open_stream(parts.reader())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    std::io::copy(&mut stream, &mut out)
        .with_context(|| format!("cannot decompress {}", path.display()))?;
    Ok(tmp)
}

fn manifest_blob(d: &Document) -> ManifestBlob {
    ManifestBlob {
        blob: d.blob.clone(),
        bytes: d.bytes.clone(),
    }
}

/// The images of an archive, as pushes to `target` (only those `wanted` names, if given).
fn add_archive(
    graph: &ArchiveGraph,
    target: &Target,
    wanted: Option<&[ImageReference]>,
    images: &mut Vec<PushImage>,
) -> anyhow::Result<()> {
    for img in &graph.images {
        if img.names.is_empty() {
            eprintln!(
                "notice: skipping the unnamed image {} (load it and name it with ferry tag, then push it from the store)",
                img.top.blob.digest
            );
            continue;
        }
        if !img.absent_manifests.is_empty() {
            eprintln!(
                "notice: index {} lists {} manifest{} the archive lacks ({}); the registry must have them, or it refuses the index (fetch with --platform all to carry every one)",
                img.top.blob.digest,
                img.absent_manifests.len(),
                if img.absent_manifests.len() == 1 {
                    ""
                } else {
                    "s"
                },
                img.absent_manifests
                    .iter()
                    .map(|b| b.digest.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        for name in &img.names {
            if let Some(list) = wanted
                && !list.iter().any(|w| w == name)
            {
                continue;
            }
            if img.synthesized {
                eprintln!(
                    "notice: {} has no manifest in the archive (docker save before Docker 25): pushing the one ferry writes for it, {}, with the layers as stored",
                    name.familiar_tagged().unwrap_or_else(|| name.to_string()),
                    img.top.blob.digest
                );
            }
            images.push(PushImage {
                target: target.of(name)?,
                top: manifest_blob(&img.top),
                children: img.children.iter().map(manifest_blob).collect(),
                blobs: img.blobs.clone(),
                absent: img.absent.clone(),
            });
        }
    }
    Ok(())
}

/// An image of the store, as a push to `target`.
#[cfg(unix)]
fn add_stored(
    reference: &str,
    global: &GlobalArgs,
    target: &Target,
    sources: &mut Sources,
    images: &mut Vec<PushImage>,
) -> anyhow::Result<()> {
    let name: ImageReference = reference.parse().with_context(|| {
        format!("{reference} is neither an archive nor the name of an image in the store")
    })?;
    let store = crate::store::open(global)?;
    let stored = store
        .image(reference)
        .with_context(|| format!("{reference} is neither an archive nor an image in the store"))?;
    let root = store.root().to_path_buf();
    let read = |d: &Digest| -> anyhow::Result<Vec<u8>> {
        let p = root.join(digest::blob_path(d));
        std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let bytes = read(&stored.manifest.digest)?;
    let manifest: ferry_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest {} in the store", stored.manifest.digest))?;
    let mut blobs = Vec::new();
    for d in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
        blobs.push(BlobRef {
            digest: digest::parse(d.digest().as_ref())?,
            size: d.size(),
            media_type: d.media_type().to_string(),
        });
    }
    if sources.store_lock.is_none() {
        sources.store_lock = Some(store.lock_shared()?);
    }
    sources.store_root = Some(root);
    images.push(PushImage {
        target: target.of(&name)?,
        top: ManifestBlob {
            blob: stored.manifest.clone(),
            bytes,
        },
        children: Vec::new(),
        blobs,
        absent: Vec::new(),
    });
    Ok(())
}

/// No store on Windows: only archives can be pushed.
#[cfg(not(unix))]
fn add_stored(
    reference: &str,
    _global: &GlobalArgs,
    _target: &Target,
    _sources: &mut Sources,
    _images: &mut Vec<PushImage>,
) -> anyhow::Result<()> {
    bail!("{reference}: no such archive (ferry on Windows pushes archives only)")
}
