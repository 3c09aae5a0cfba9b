//! `ferry inspect FILE`: what an archive holds, without loading it (any platform).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use ferry_load::Reporter;
use serde_json::json;

use super::InspectArgs;
use crate::commands::verify::{default_platform, open_input};
use crate::load_progress::LoadReporter;
use crate::progress::human_bytes;

/// Lists the archive at `file`: a text listing, `json`, or a Go template over that JSON.
pub fn run(file: &Path, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let input = open_input(file)?;
    let (mut input, total) = (input.reader, input.len);
    let reporter = LoadReporter::new(args.progress.resolve(), "inspect", false);
    reporter.on_start(total);
    let platform = args.platform.clone().unwrap_or_else(default_platform);
    let result = ferry_load::inspect(&mut input, &platform, &reporter);
    reporter.clear();
    let report = result.with_context(|| format!("cannot read {}", file.display()))?;
    let template =
        crate::format::Format::inspect(args.format.as_deref().filter(|f| *f != "table"))?;
    let listing = args.format.as_deref().is_none_or(|f| f == "table");
    if !listing {
        let images: Vec<_> = report
            .images
            .iter()
            .map(|img| {
                json!({
                    "Names": img.names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "Id": img.id().to_string(),
                    "Manifest": {
                        "digest": img.manifest.digest.to_string(),
                        "mediaType": img.manifest.media_type,
                        "size": img.manifest.size,
                        "writtenByFerry": img.synthesized,
                    },
                    "Platform": img.platform.to_string(),
                    "Created": img.created,
                    "Layers": img.layers.iter().map(|l| json!({
                        "digest": l.blob.digest.to_string(),
                        "size": l.blob.size,
                        "mediaType": l.blob.media_type,
                        "diffId": l.diff_id.to_string(),
                        "path": l.path,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v =
            json!({"Compression": report.outer.name(), "Images": images, "Delta": report.delta});
        match template {
            Some(t) => writeln!(stdout, "{}", crate::format::execute(&t, &v, "archive")?)?,
            None => writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        stdout,
        "archive: {} ({})",
        file.display(),
        report.outer.name()
    )?;
    if let Some(delta) = &report.delta {
        writeln!(
            stdout,
            "delta:   leaves out {} layer{} ({}) the far side must hold ({}):",
            delta.needs.len(),
            if delta.needs.len() == 1 { "" } else { "s" },
            human_bytes(delta.needed_bytes()),
            delta.based_on
        )?;
        for n in &delta.needs {
            writeln!(stdout, "  {}  {:>10}", n.digest, human_bytes(n.size))?;
        }
    }
    for img in &report.images {
        let size: u64 = img.layers.iter().map(|l| l.blob.size).sum();
        writeln!(stdout)?;
        writeln!(stdout, "image    {}", img.id())?;
        for n in &img.names {
            writeln!(stdout, "name     {n}")?;
        }
        writeln!(
            stdout,
            "manifest {}{}",
            img.manifest.digest,
            if img.synthesized {
                " (written by ferry: the archive has none)"
            } else {
                ""
            }
        )?;
        writeln!(stdout, "platform {}", img.platform)?;
        if let Some(c) = &img.created {
            writeln!(stdout, "created  {c}")?;
        }
        writeln!(
            stdout,
            "layers   {} ({} as stored)",
            img.layers.len(),
            human_bytes(size)
        )?;
        for l in &img.layers {
            let left_out = report
                .delta
                .as_ref()
                .is_some_and(|d| d.leaves_out(&l.blob.digest));
            writeln!(
                stdout,
                "  {}  {:>10}  {}{}",
                l.blob.digest,
                human_bytes(l.blob.size),
                l.blob.media_type,
                if left_out {
                    "  (left out: the far side holds it)"
                } else {
                    ""
                }
            )?;
        }
    }
    for n in &report.notices {
        eprintln!("notice: {n}");
    }
    Ok(ExitCode::SUCCESS)
}
