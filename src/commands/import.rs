//! `ferry import FILE|- [REPOSITORY[:TAG]]`: a root file system tar (what `debootstrap`,
//! `yum --installroot … && tar -c`, `ferry export` or `docker export` make; plain or
//! compressed) becomes a one-layer image, with `--change` applying Dockerfile instructions
//! to its config, as `docker import` does.
//!
//! The image goes in through `ferry load`'s own path: ferry writes the `docker save` archive
//! the image would have (`manifest.json`, the config, the layer) into a pipe the store loads
//! from, so the layer is verified and unpacked exactly like a loaded one.

mod change;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use ferry_load::{LoadOptions, Silent};
use ferry_oci::{Hasher, ImageReference, Platform};
use serde_json::{Map, Value, json};

use crate::cli::GlobalArgs;

/// Arguments of `ferry import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Set a commit message for the imported image.
    #[arg(short, long)]
    pub message: Option<String>,
    /// The image's platform (default: this machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// The root file system tar (plain, gzip, zstd, xz or bzip2), or `-` for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The new image's name.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub name: Option<String>,
}

/// Runs `ferry import`; prints the new image's ID as Docker does.
pub fn run(args: ImportArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .as_deref()
        .map(|n| {
            n.parse::<ImageReference>()
                .with_context(|| format!("invalid name `{n}`"))
        })
        .transpose()?;
    if let Some(n) = &name
        && n.digest().is_some()
    {
        bail!("invalid name `{n}`: an imported image gets a tag, not a digest");
    }
    let mut config = Map::new();
    for c in &args.changes {
        change::apply(&mut config, c)?;
    }
    let store = crate::store::open(global)?;
    let source = if args.file.as_os_str() == "-" {
        "-".to_string()
    } else {
        args.file.display().to_string()
    };
    let mut input = open(&args.file, store.root())?;
    // One pass for the layer's digest and size, one to hand it to the store.
    let (diff_id, size) = {
        let (_, mut tar) = ferry_load::compression::open_stream(&mut input)
            .with_context(|| format!("cannot read {source}"))?;
        let mut head = [0u8; 512];
        tar.read_exact(&mut head)
            .with_context(|| format!("{source} is not a tar archive"))?;
        if ferry_load::compression::sniff(&head) != ferry_load::compression::Format::Tar {
            bail!("{source} is not a tar archive (a root file system tar, possibly compressed)");
        }
        let mut h = Hasher::sha256();
        h.update(&head);
        let mut size = head.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tar
                .read(&mut buf)
                .with_context(|| format!("cannot read {source}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        (h.finish(), size)
    };
    input.rewind()?;
    let platform = args
        .platform
        .clone()
        .unwrap_or_else(ferry_load::host_platform);
    let now = ferry_oci::time::rfc3339_nanos(std::time::SystemTime::now());
    let comment = args.message.clone().unwrap_or_default();
    let mut image = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": now,
        "config": Value::Object(config),
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": now, "comment": if comment.is_empty() { format!("Imported from {source}") } else { comment.clone() }}],
    });
    if !comment.is_empty() {
        image["comment"] = json!(comment);
    }
    if let Some(v) = &platform.variant {
        image["variant"] = json!(v);
    }
    let config_bytes = serde_json::to_vec(&image)?;
    let config_name = format!("{}.json", ferry_oci::digest::sha256(&config_bytes).digest());
    let layer_name = format!("{}.tar", diff_id.digest());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": name.iter().filter_map(|n| n.familiar_tagged()).collect::<Vec<_>>(),
        "Layers": [layer_name],
    }]))?;
    let (mut reader, writer) = std::io::pipe()?;
    let handle = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        for (path, bytes) in [
            ("manifest.json", &manifest),
            (config_name.as_str(), &config_bytes),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            b.append_data(&mut h, path, bytes.as_slice())?;
        }
        let (_, tar) = ferry_load::compression::open_stream(&mut input)?;
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(size);
        b.append_data(&mut h, &layer_name, tar.take(size))?;
        b.into_inner()?.flush()
    });
    let opts = LoadOptions {
        platform,
        min_free: super::load::min_free()?,
    };
    let loaded = store.load(&mut reader, &opts, &Silent);
    drop(reader);
    let written = handle.join().expect("the archive writer does not panic");
    let loaded = match (loaded, written) {
        (Ok(l), _) => l,
        (Err(e), Err(w)) => {
            return Err(anyhow::Error::new(w)
                .context(e.to_string())
                .context(format!("failed to import {source}")));
        }
        (Err(e), Ok(())) => {
            return Err(anyhow::Error::new(e).context(format!("failed to import {source}")));
        }
    };
    let id = loaded
        .first()
        .map(|i| i.id.to_string())
        .context("the store took no image")?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The input as a file ferry can read twice: the file itself, or standard input copied into
/// a temporary file in the store (removed when done).
fn open(path: &std::path::Path, store_root: &std::path::Path) -> anyhow::Result<File> {
    if path.as_os_str() != "-" {
        return File::open(path).with_context(|| format!("cannot open {}", path.display()));
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no archive given: name a file, or pipe one into standard input with `-`");
    }
    let mut tmp = tempfile::tempfile_in(store_root)
        .with_context(|| format!("cannot make a temporary file in {}", store_root.display()))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tmp).context("cannot read standard input")?;
    tmp.rewind()?;
    Ok(tmp)
}
