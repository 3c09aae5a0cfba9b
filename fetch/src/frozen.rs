//! The directory moby's `contrib/download-frozen-image-v2.sh` writes, so runbooks built around
//! that script (`tar -cC DIR . | docker load`) work unchanged with `ferry fetch --dir DIR`:
//!
//! ```text
//! <config hex>.json        each image's config, as served
//! <layer id>/VERSION       "1.0"
//! <layer id>/json          a legacy v1 image record (id, parent; the top one carries the config)
//! <layer id>/layer.tar     the layer blob as served (still compressed; `docker load` unpacks it)
//! manifest.json            [{"Config":"<hex>.json","RepoTags":["name:tag"],"Layers":["<id>/layer.tar",…]}]
//! repositories             {"name": {"tag": "<top layer id>"}}
//! ```
//!
//! A layer ID is `sha256(parent id + "\n" + layer digest + "\n")` (the script's `echo … |
//! sha256sum`), chained from the bottom layer, so one layer reached through two different
//! parents gets two directories, as the script makes.
//!
//! The download itself is ferry's: the blobs go into the usual part file beside the directory
//! (resumable, verified, parallel), and only once every blob is verified are they written out
//! into the directory, from the end of the part file backwards, cutting the part file as each
//! blob leaves it, so the disk never holds much more than one copy. `manifest.json` is written
//! last: a directory without it is not a finished download.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_oci::archive::{ArchivePlan, ImageRecord};
use ferry_oci::digest::Hasher;
use serde::Serialize;
use serde_json::Value;

use crate::error::FetchError;
use crate::partial::{PartFile, with_suffix};

/// The part file of a download into `dir`: beside it, named after it (`DIR.part`).
pub fn part_path(dir: &Path) -> PathBuf {
    with_suffix(&normalised(dir), ".part")
}

/// `dir` without a trailing separator or a final `.`, so `./httpd/` and `.` name a directory
/// whose sibling can hold the part file.
fn normalised(dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// One file the directory gets from the part file, and where its bytes are there.
struct Copy {
    path: PathBuf,
    offset: u64,
    size: u64,
}

/// The legacy layer record the script writes for layers below the top: Docker's own
/// `docker save` output for unimportant layers, fields in that order.
#[derive(Serialize)]
struct StarterJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    created: &'static str,
    container_config: StarterConfig,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct StarterConfig {
    hostname: String,
    domainname: String,
    user: String,
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    open_stdin: bool,
    stdin_once: bool,
    env: Option<()>,
    cmd: Option<()>,
    image: String,
    volumes: Option<()>,
    working_dir: String,
    entrypoint: Option<()>,
    on_build: Option<()>,
    labels: Option<()>,
}

/// `manifest.json`'s entries, fields in the script's order.
#[derive(Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Writes the directory from a finished part file whose every blob was verified, then
/// removes the part file. `configs` are the images' config bytes.
pub fn write(
    part: PartFile,
    plan: &ArchivePlan,
    configs: &dyn Fn(&ImageRecord) -> Vec<u8>,
    dir: &Path,
) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let offsets: BTreeMap<String, u64> = plan
        .blobs()
        .map(|(e, b)| (b.digest.to_string(), e.data_offset()))
        .collect();
    let mut copies = Vec::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for img in plan.images() {
        let config_file = format!("{}.json", img.config.digest.digest());
        let config = configs(img);
        write_file(&dir.join(&config_file), &config)?;
        let mut parent: Option<String> = None;
        let mut layer_files = Vec::new();
        for (i, layer) in img.layers.iter().enumerate() {
            let id = layer_id(parent.as_deref(), layer.digest.as_ref());
            let layer_dir = dir.join(&id);
            std::fs::create_dir_all(&layer_dir).map_err(io("create directory", &layer_dir))?;
            write_file(&layer_dir.join("VERSION"), b"1.0\n")?;
            let json = if i + 1 == img.layers.len() {
                top_json(&id, parent.as_deref(), &config)
            } else {
                pretty(&StarterJson {
                    id: &id,
                    parent: parent.as_deref(),
                    created: "0001-01-01T00:00:00Z",
                    container_config: StarterConfig::default(),
                })
            };
            write_file(&layer_dir.join("json"), &json)?;
            copies.push(Copy {
                path: layer_dir.join("layer.tar"),
                offset: offsets[&layer.digest.to_string()],
                size: layer.size,
            });
            layer_files.push(format!("{id}/layer.tar"));
            parent = Some(id);
        }
        let tag = img
            .reference
            .as_ref()
            .and_then(|r| Some((r.familiar_name(), r.tag()?.to_string())));
        if let (Some((name, tag)), Some(top)) = (&tag, &parent) {
            repositories
                .entry(name.clone())
                .or_default()
                .insert(tag.clone(), top.clone());
        }
        manifest.push(ManifestEntry {
            config: config_file,
            repo_tags: tag.map(|(n, t)| format!("{n}:{t}")).into_iter().collect(),
            layers: layer_files,
        });
    }
    // Last blobs first, each cut off the part file once copied out: the part file shrinks
    // as the directory grows.
    copies.sort_by_key(|c| std::cmp::Reverse(c.offset));
    let mut i = 0;
    while i < copies.len() {
        let offset = copies[i].offset;
        while i < copies.len() && copies[i].offset == offset {
            copy_out(&part, &copies[i])?;
            i += 1;
        }
        part.truncate(offset)?;
    }
    write_file(&dir.join("repositories"), &repositories_text(&repositories))?;
    let mut json = pretty(&manifest);
    json.push(b'\n');
    write_file(&dir.join("manifest.json"), &json)?;
    part.discard();
    Ok(())
}

/// The script's layer ID: `sha256` of `PARENT\nDIGEST\n`.
pub fn layer_id(parent: Option<&str>, digest: &str) -> String {
    let mut h = Hasher::sha256();
    h.update(format!("{}\n{digest}\n", parent.unwrap_or("")).as_bytes());
    h.finish().digest().to_string()
}

/// The top layer's record: `{id, parent}` plus the image config without `history` and
/// `rootfs` (what older daemons read instead of the config).
fn top_json(id: &str, parent: Option<&str>, config: &[u8]) -> Vec<u8> {
    let mut v: serde_json::Map<String, Value> = serde_json::from_slice(config).unwrap_or_default();
    v.remove("history");
    v.remove("rootfs");
    v.insert("id".into(), id.into());
    if let Some(p) = parent {
        v.insert("parent".into(), p.into());
    }
    pretty(&v)
}

/// JSON as `jq` prints it: two-space indentation, one trailing newline.
fn pretty<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("metadata serializes");
    out.push(b'\n');
    out
}

/// `repositories` in the script's layout: `{` newline, tab, `"name": { "tag": "id" }`, …
fn repositories_text(map: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<u8> {
    let entries: Vec<String> = map
        .iter()
        .map(|(name, tags)| {
            let tags: Vec<String> = tags
                .iter()
                .map(|(t, id)| format!("{}: {}", quoted(t), quoted(id)))
                .collect();
            format!("\n\t{}: {{ {} }}", quoted(name), tags.join(", "))
        })
        .collect();
    format!("{{{}\n}}\n", entries.join(",")).into_bytes()
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// Copies a blob out of the part file into its file, through a temporary name.
fn copy_out(part: &PartFile, c: &Copy) -> Result<(), FetchError> {
    use std::io::Write;
    let tmp = with_suffix(&c.path, ".part");
    let file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < c.size {
        let n = buf.len().min((c.size - done) as usize);
        part.read_at(c.offset + done, &mut buf[..n])?;
        w.write_all(&buf[..n]).map_err(io("write", &tmp))?;
        done += n as u64;
    }
    w.flush().map_err(io("write", &tmp))?;
    drop(w);
    std::fs::rename(&tmp, &c.path).map_err(io("rename", &tmp))
}

/// Writes a small file through a temporary name, so no reader sees half of it.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let tmp = with_suffix(path, ".part");
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename", &tmp))
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FetchError + 'a {
    move |source| FetchError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_chain_as_the_script_computes_them() {
        // printf '\nsha256:aa\n' | sha256sum, then printf '<that>\nsha256:bb\n' | sha256sum
        let first = layer_id(None, "sha256:aa");
        let mut h = Hasher::sha256();
        h.update(b"\nsha256:aa\n");
        assert_eq!(first, h.finish().digest());
        let mut h = Hasher::sha256();
        h.update(format!("{first}\nsha256:bb\n").as_bytes());
        assert_eq!(layer_id(Some(&first), "sha256:bb"), h.finish().digest());
    }

    #[test]
    fn repositories_are_laid_out_as_the_script_writes_them() {
        let mut m = BTreeMap::new();
        m.entry("httpd".to_string())
            .or_insert_with(BTreeMap::new)
            .insert("alpine".to_string(), "abc".to_string());
        assert_eq!(
            String::from_utf8(repositories_text(&m)).unwrap(),
            "{\n\t\"httpd\": { \"alpine\": \"abc\" }\n}\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn part_files_sit_beside_the_directory() {
        let p = part_path(Path::new("/x/httpd/."));
        assert_eq!(p, Path::new("/x/httpd.part"));
        let p = part_path(Path::new("/x/httpd/"));
        assert_eq!(p, Path::new("/x/httpd.part"));
    }
}
