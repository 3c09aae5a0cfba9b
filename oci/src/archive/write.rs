//! Writing a planned archive front to back, for outputs that cannot seek (a pipe, stdout) and
//! for `ferry save`, whose blobs already sit verified in the store; and publishing a finished
//! archive under its name so that a power cut never leaves a named but incomplete one.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::archive::BlobRef;
use crate::archive::plan::{ArchivePlan, Content, padded};

/// Where the bytes of a blob come from when the archive is written.
pub trait BlobSource {
    /// Opens the blob; the reader must yield exactly `blob.size` bytes.
    fn open(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + '_>>;
}

/// Writes the whole archive to `out`, in plan order.
///
/// A blob that yields more or fewer bytes than planned is an error: the tar would be corrupt.
pub fn write_archive(
    plan: &ArchivePlan,
    source: &dyn BlobSource,
    out: &mut dyn Write,
) -> io::Result<()> {
    const ZEROS: [u8; 1024] = [0; 1024];
    for e in plan.entries() {
        out.write_all(e.header().as_bytes())?;
        let size = e.size();
        match &e.content {
            Content::Dir => {}
            Content::Bytes(b) => out.write_all(b)?,
            Content::Blob(blob) => {
                let mut r = source.open(blob)?.take(size + 1);
                let n = io::copy(&mut r, out)?;
                if n != size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("blob {} has {n} bytes, expected {size}", blob.digest),
                    ));
                }
            }
        }
        out.write_all(&ZEROS[..(padded(size) - size) as usize])?;
    }
    out.write_all(&ZEROS)?;
    Ok(())
}

/// Publishes a finished file written at `part` under its final name `dest`: its data reaches
/// the disk first (`fsync`; `FlushFileBuffers` on Windows), then it is renamed, then the rename
/// itself is made durable. A reader, or a power cut, finds at `dest` the previous file (or
/// none) or the complete new one, never a name whose data was still in memory.
pub fn publish(file: File, part: &Path, dest: &Path) -> io::Result<()> {
    file.sync_all()?;
    // Closed before the rename: Windows renames an open file only if every opener allowed it.
    drop(file);
    std::fs::rename(part, dest)?;
    sync_parent(dest)
}

/// Makes the entries of the directory holding `path` durable (a rename into it). Windows has
/// no way to sync a directory from user space; NTFS journals the rename itself.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::archive::{DockerManifestEntry, ImageRecord};
    use crate::digest::sha256;
    use crate::media_type;

    struct Mem(HashMap<String, Vec<u8>>);

    impl BlobSource for Mem {
        fn open(&self, blob: &BlobRef) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(&self.0[&blob.digest.to_string()][..]))
        }
    }

    fn blob(mem: &mut Mem, bytes: &[u8], mt: &str) -> BlobRef {
        let digest = sha256(bytes);
        mem.0.insert(digest.to_string(), bytes.to_vec());
        BlobRef {
            digest,
            size: bytes.len() as u64,
            media_type: mt.into(),
        }
    }

    fn two_images_sharing_a_layer() -> (ArchivePlan, Mem) {
        let mut mem = Mem(HashMap::new());
        let base = blob(&mut mem, &[7u8; 1000], media_type::OCI_LAYER_GZIP);
        let top = blob(&mut mem, b"top layer", media_type::OCI_LAYER_GZIP);
        let mut images = Vec::new();
        for (name, layers) in [
            ("reg.lan/a:1", vec![base.clone()]),
            ("reg.lan/b:2", vec![base.clone(), top.clone()]),
        ] {
            let config = blob(&mut mem, name.as_bytes(), media_type::OCI_CONFIG);
            let manifest = blob(
                &mut mem,
                format!("m {name}").as_bytes(),
                media_type::OCI_MANIFEST,
            );
            images.push(ImageRecord {
                reference: Some(name.parse().unwrap()),
                manifest,
                platform: Some(Default::default()),
                config,
                layers,
                index: None,
            });
        }
        (ArchivePlan::new(images), mem)
    }

    #[test]
    fn archive_reads_back_with_shared_layers_once() {
        let (plan, mem) = two_images_sharing_a_layer();
        let mut out = Vec::new();
        write_archive(&plan, &mem, &mut out).unwrap();
        assert_eq!(out.len() as u64, plan.total_len());

        let mut names = Vec::new();
        let mut manifest = None;
        let mut ar = tar::Archive::new(&out[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path == "manifest.json" {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                manifest = Some(serde_json::from_str::<Vec<DockerManifestEntry>>(&s).unwrap());
            }
            names.push(path);
        }
        assert_eq!(
            &names[..4],
            ["oci-layout", "index.json", "manifest.json", "repositories"]
        );
        // 2 manifests + 2 configs + 2 distinct layers, shared base stored once.
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 14)
                .count(),
            6
        );
        let manifest = manifest.unwrap();
        assert_eq!(manifest[0].repo_tags, ["reg.lan/a:1"]);
        assert_eq!(manifest[1].layers.len(), 2);
        assert_eq!(manifest[0].layers[0], manifest[1].layers[0]);
    }

    #[test]
    fn offsets_in_the_plan_are_where_the_bytes_land() {
        let (plan, mem) = two_images_sharing_a_layer();
        let mut out = Vec::new();
        write_archive(&plan, &mem, &mut out).unwrap();
        for (e, b) in plan.blobs() {
            let start = e.data_offset() as usize;
            let want = &mem.0[&b.digest.to_string()];
            assert_eq!(&out[start..start + want.len()], &want[..]);
        }
    }

    #[test]
    fn a_blob_of_the_wrong_length_is_an_error() {
        let (plan, mut mem) = two_images_sharing_a_layer();
        let (_, victim) = plan.blobs().last().unwrap();
        mem.0.insert(victim.digest.to_string(), b"short".to_vec());
        let err = write_archive(&plan, &mem, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains(&victim.digest.to_string()),
            "{err}"
        );
    }

    #[test]
    fn same_images_give_the_same_fingerprint() {
        let (a, _) = two_images_sharing_a_layer();
        let (b, _) = two_images_sharing_a_layer();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }
}
