//! Everything `ferry push` takes from an archive: each named image with its whole object graph
//! (an index with every platform the archive holds, nested indexes, attestations, manifests,
//! configs, layers) and where each blob's bytes lie, read in place without unpacking.
//!
//! Where `ferry load` chooses one platform, a push copies what there is, so the registry gets
//! the index with its digest unchanged. Manifests are read and checked against their digests
//! here; blobs are streamed to the registry later, which checks them itself. Images that come
//! without a manifest (`docker save` before Docker 25, `manifest.json` only) get the one a load
//! would write for them ([`crate::resolve`]), with their layers as stored.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use ferry_oci::archive::{
    BlobRef, DELTA_JSON, DeltaInfo, DockerManifestEntry, INDEX_JSON, MANIFEST_JSON, annotated_name,
};
use ferry_oci::media_type::{self, Kind};
use ferry_oci::spec::{Descriptor, ImageIndex, ImageManifest};
use ferry_oci::{Digest, DigestError, Hasher, ImageReference, digest};

use crate::compression;
use crate::error::LoadError;
use crate::locate::{Located, Span};
use crate::resolve;
use crate::scan::{Contents, FileEntry, LayerOutcome, LayerStats};
use crate::split::Parts;

/// How deep indexes may nest before the archive is refused.
const MAX_NESTING: usize = 4;

/// A manifest or index with its bytes.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its descriptor.
    pub blob: BlobRef,
    /// Its bytes, checked against the digest.
    pub bytes: Vec<u8>,
}

/// One image of the archive, as a push sees it.
#[derive(Debug, Clone)]
pub struct GraphImage {
    /// Its names (possibly none).
    pub names: Vec<ImageReference>,
    /// The manifest or index the names point at.
    pub top: Document,
    /// The manifests and indexes below `top`, each before the index that lists it.
    pub children: Vec<Document>,
    /// The configs and layers the archive holds.
    pub blobs: Vec<BlobRef>,
    /// Configs and layers the manifests name that the archive lacks (a delta archive).
    pub absent: Vec<BlobRef>,
    /// Manifests an index lists that the archive lacks (platforms not fetched).
    pub absent_manifests: Vec<BlobRef>,
    /// Whether ferry wrote the manifest (the archive has none).
    pub synthesized: bool,
}

/// An archive read for pushing.
#[derive(Debug)]
pub struct ArchiveGraph {
    /// Its entries.
    pub located: Located,
    /// Its images.
    pub images: Vec<GraphImage>,
    /// Where each blob's bytes are.
    pub spans: HashMap<Digest, Span>,
    /// What a delta archive leaves out.
    pub delta: Option<DeltaInfo>,
}

/// Reads the images of the (plain tar) archive in `parts`.
pub fn read(parts: Parts) -> Result<ArchiveGraph, LoadError> {
    let located = Located::read(parts)?;
    let mut graph = ArchiveGraph {
        images: Vec::new(),
        spans: HashMap::new(),
        delta: None,
        located,
    };
    if let Some(bytes) = graph.located.read_small(DELTA_JSON)? {
        graph.delta = Some(DeltaInfo::parse(&bytes).map_err(|e| LoadError::Invalid {
            what: DELTA_JSON.into(),
            source: Box::new(e),
        })?);
    }
    let index = graph.located.read_small(INDEX_JSON)?;
    let docker = match graph.located.read_small(MANIFEST_JSON)? {
        Some(b) => Some(parse::<Vec<DockerManifestEntry>>(&b, MANIFEST_JSON)?),
        None => None,
    };
    if index.is_none() && docker.is_none() {
        return Err(LoadError::NotAnArchive(
            "it has neither manifest.json nor index.json".into(),
        ));
    }
    if let Some(bytes) = index {
        let index: ImageIndex = parse(&bytes, INDEX_JSON)?;
        for d in index.manifests() {
            let names: Vec<ImageReference> = annotated_name(d.annotations().as_ref())
                .into_iter()
                .collect();
            let top = descriptor(d, INDEX_JSON)?;
            if let Some(same) = graph
                .images
                .iter_mut()
                .find(|i| i.top.blob.digest == top.digest)
            {
                for n in names {
                    if !same.names.contains(&n) {
                        same.names.push(n);
                    }
                }
                continue;
            }
            let mut image = GraphImage {
                names,
                top: Document {
                    blob: top.clone(),
                    bytes: Vec::new(),
                },
                children: Vec::new(),
                blobs: Vec::new(),
                absent: Vec::new(),
                absent_manifests: Vec::new(),
                synthesized: false,
            };
            graph.walk(&top, 0, &mut image)?;
            graph.images.push(image);
        }
    }
    let entries = docker.unwrap_or_default();
    if entries.iter().any(|e| !graph.covers(e)) {
        graph.add_synthesized()?;
    }
    // manifest.json names images the index left unnamed (Docker 25+ keeps names there).
    for e in &entries {
        graph.add_names(e);
    }
    if graph.images.is_empty() {
        return Err(LoadError::NoImages);
    }
    Ok(graph)
}

impl ArchiveGraph {
    /// Follows one descriptor down to its blobs, filling `image`.
    fn walk(
        &mut self,
        desc: &BlobRef,
        depth: usize,
        image: &mut GraphImage,
    ) -> Result<(), LoadError> {
        let what = format!("{} {}", kind_name(&desc.media_type), desc.digest);
        let path = digest::blob_path(&desc.digest);
        let Some(bytes) = self.located.read_small(&path)? else {
            if depth == 0 {
                return Err(LoadError::Missing { what });
            }
            image.absent_manifests.push(desc.clone());
            return Ok(());
        };
        check(&bytes, desc, &what)?;
        let mut kind = media_type::kind(&desc.media_type);
        if kind == Kind::Other {
            kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                .map(|v| media_type::kind_of_json(&v))
                .unwrap_or(Kind::Other);
        }
        match kind {
            Kind::Index => {
                if depth >= MAX_NESTING {
                    return Err(LoadError::Invalid {
                        what,
                        source: format!("indexes nested deeper than {MAX_NESTING} levels").into(),
                    });
                }
                let index: ImageIndex = parse(&bytes, &what)?;
                for m in index.manifests() {
                    let child = descriptor(m, &what)?;
                    self.walk(&child, depth + 1, image)?;
                }
            }
            Kind::Manifest => {
                let manifest: ImageManifest = parse(&bytes, &what)?;
                let blobs = std::iter::once(manifest.config()).chain(manifest.layers().iter());
                for d in blobs {
                    let b = descriptor(d, &what)?;
                    if image.blobs.contains(&b) || image.absent.contains(&b) {
                        continue;
                    }
                    match self.located.file(&digest::blob_path(&b.digest)) {
                        Some((_, span)) => {
                            if span.size != b.size {
                                return Err(LoadError::Corrupt {
                                    what: format!("blob {} of {what}", b.digest),
                                    source: DigestError::Size {
                                        expected: b.size,
                                        actual: span.size,
                                    },
                                });
                            }
                            self.spans.insert(b.digest.clone(), span);
                            image.blobs.push(b);
                        }
                        None => image.absent.push(b),
                    }
                }
            }
            _ => {
                return Err(LoadError::Invalid {
                    what,
                    source: format!(
                        "media type `{}` is neither a manifest nor an index",
                        desc.media_type
                    )
                    .into(),
                });
            }
        }
        let doc = Document {
            blob: desc.clone(),
            bytes,
        };
        if depth == 0 {
            image.top = doc;
        } else if !image.children.iter().any(|c| c.blob.digest == desc.digest) {
            image.children.push(doc);
        }
        Ok(())
    }

    /// Whether a manifest.json entry's image is one the index already has (same config).
    fn covers(&self, entry: &DockerManifestEntry) -> bool {
        let Some(config) = self.config_digest(entry) else {
            return false;
        };
        self.images
            .iter()
            .any(|i| i.blobs.iter().chain(&i.absent).any(|b| b.digest == config) && !i.synthesized)
    }

    /// The digest of a manifest.json entry's config, from its path (`blobs/sha256/…`) or by
    /// hashing it (legacy `<id>.json`).
    fn config_digest(&self, entry: &DockerManifestEntry) -> Option<Digest> {
        let clean = crate::path::archive_path("", &entry.config).ok()?;
        let (at, span) = self.located.file(&clean)?;
        if let Some(d) = crate::scan::named_digest(at) {
            return Some(d);
        }
        let bytes = self.located.read_span(span).ok()?;
        Some(digest::sha256(&bytes))
    }

    /// Gives an image the names a manifest.json entry lists for it that no image has yet
    /// (index.json's names win: of a multi-platform image, manifest.json lists the default
    /// platform's config under every name, and several images may hold that config).
    fn add_names(&mut self, entry: &DockerManifestEntry) {
        let Some(config) = self.config_digest(entry) else {
            return;
        };
        for tag in &entry.repo_tags {
            let Ok(n) = tag.parse::<ImageReference>() else {
                continue;
            };
            if self.images.iter().any(|i| i.names.contains(&n)) {
                continue;
            }
            if let Some(img) = self
                .images
                .iter_mut()
                .find(|i| i.blobs.iter().chain(&i.absent).any(|b| b.digest == config))
            {
                img.names.push(n);
            }
        }
    }

    /// The images only manifest.json describes, with the manifest a load writes for them.
    fn add_synthesized(&mut self) -> Result<(), LoadError> {
        let contents = self.contents()?;
        let mut notices = Vec::new();
        let images = resolve::resolve(&contents, &crate::scan::host_platform(), &mut notices)?;
        for img in images.into_iter().filter(|i| i.synthesized) {
            let mut blobs = vec![img.config.clone()];
            let config_path = contents
                .files
                .iter()
                .find(|(_, f)| f.digest.as_ref() == Some(&img.config.digest))
                .map(|(p, _)| p.clone());
            if let Some((_, span)) = config_path.as_deref().and_then(|p| self.located.file(p)) {
                self.spans.insert(img.config.digest.clone(), span);
            }
            for l in &img.layers {
                if let Some((_, span)) = self.located.file(&l.path) {
                    self.spans.insert(l.blob.digest.clone(), span);
                }
                if !blobs.contains(&l.blob) {
                    blobs.push(l.blob.clone());
                }
            }
            self.images.push(GraphImage {
                names: img.names,
                top: Document {
                    blob: img.manifest,
                    bytes: img.manifest_bytes,
                },
                children: Vec::new(),
                blobs,
                absent: Vec::new(),
                absent_manifests: Vec::new(),
                synthesized: true,
            });
        }
        Ok(())
    }

    /// What a scan would have learnt, for the loader's resolver: each file's digest (named by
    /// its `blobs/` path, else hashed), small JSON in memory, what compression layers have.
    fn contents(&self) -> Result<Contents, LoadError> {
        let diff_ids = self.plain_layer_diff_ids();
        let mut files = BTreeMap::new();
        for (id, (path, span)) in self.located.files.iter().enumerate() {
            let mut head = vec![0u8; 512.min(span.size as usize)];
            let mut r = self
                .located
                .parts
                .open_at(span.offset)
                .map_err(LoadError::Read)?;
            r.read_exact(&mut head).map_err(LoadError::Read)?;
            let format = compression::sniff(&head);
            let (digest, data) = match crate::scan::named_digest(path) {
                Some(d) if format.is_tar_stream() => (d, None),
                // An uncompressed layer's digest is its diff_id: no need to read it (the
                // registry checks the bytes when they are uploaded).
                _ if format == compression::Format::Tar && diff_ids.contains_key(path) => {
                    (diff_ids[path].clone(), None)
                }
                _ if !format.is_tar_stream() && span.size <= 16 << 20 => {
                    let bytes = self.located.read_span(*span)?;
                    (digest::sha256(&bytes), Some(bytes))
                }
                _ => (self.hash_span(*span)?, None),
            };
            files.insert(
                path.clone(),
                FileEntry {
                    id,
                    size: span.size,
                    digest: Some(digest),
                    data,
                    layer: format.is_tar_stream().then(|| LayerOutcome {
                        format,
                        diff_id: None,
                        unpacked: false,
                        result: Ok(LayerStats::default()),
                        head: None,
                    }),
                },
            );
        }
        Ok(Contents {
            files,
            links: self.located.links.clone(),
            outer: Some(compression::Format::Tar),
        })
    }

    /// The diff_id of each layer file manifest.json names, by path: for the uncompressed
    /// layers of `docker save` archives, the blob digest itself.
    fn plain_layer_diff_ids(&self) -> HashMap<String, Digest> {
        let mut out = HashMap::new();
        let Ok(Some(bytes)) = self.located.read_small(MANIFEST_JSON) else {
            return out;
        };
        let Ok(entries) = serde_json::from_slice::<Vec<DockerManifestEntry>>(&bytes) else {
            return out;
        };
        for e in entries {
            let Some(config) = crate::path::archive_path("", &e.config)
                .ok()
                .and_then(|p| self.located.read_small(&p).ok().flatten())
                .and_then(|b| ferry_oci::ImageConfig::parse(&b).ok())
            else {
                continue;
            };
            for (layer, diff_id) in e.layers.iter().zip(config.diff_ids) {
                if let Some((at, _)) = crate::path::archive_path("", layer)
                    .ok()
                    .and_then(|p| self.located.file(&p).map(|(at, s)| (at.to_string(), s)))
                {
                    out.insert(at, diff_id);
                }
            }
        }
        out
    }

    fn hash_span(&self, span: Span) -> Result<Digest, LoadError> {
        let mut r = self
            .located
            .parts
            .open_at(span.offset)
            .map_err(LoadError::Read)?
            .take(span.size);
        let mut h = Hasher::sha256();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).map_err(LoadError::Read)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finish())
    }
}

fn kind_name(media: &str) -> &'static str {
    match media_type::kind(media) {
        Kind::Index => "index",
        _ => "manifest",
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, LoadError> {
    serde_json::from_slice(bytes).map_err(|e| LoadError::Invalid {
        what: what.to_string(),
        source: Box::new(e),
    })
}

fn descriptor(d: &Descriptor, what: &str) -> Result<BlobRef, LoadError> {
    Ok(BlobRef {
        digest: digest::parse(d.digest().as_ref()).map_err(|e| LoadError::Invalid {
            what: what.to_string(),
            source: Box::new(e),
        })?,
        size: d.size(),
        media_type: d.media_type().to_string(),
    })
}

/// A manifest's bytes must be what its descriptor names.
fn check(bytes: &[u8], desc: &BlobRef, what: &str) -> Result<(), LoadError> {
    let mut h = Hasher::for_digest(&desc.digest).map_err(|source| LoadError::Corrupt {
        what: what.to_string(),
        source,
    })?;
    h.update(bytes);
    h.verify(&desc.digest, Some(desc.size))
        .map_err(|source| LoadError::Corrupt {
            what: what.to_string(),
            source,
        })
}
