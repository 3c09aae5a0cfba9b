//! `ferry images`: the store's images, as `docker images` lists them.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use ferry_oci::ImageReference;

use crate::cli::GlobalArgs;
use crate::commands::inspect::Format;
use crate::progress::human_bytes;

/// Arguments of `ferry images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (`NAME` or `NAME:TAG`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Only print image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Do not shorten IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Runs `ferry images`.
pub fn run(args: ImagesArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let store = crate::store::open(global)?;
    let filter = args.repository.as_deref().map(Filter::new).transpose()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut ids = Vec::new();
    for img in store.list()? {
        let id = if args.no_trunc {
            img.id.to_string()
        } else {
            img.id.digest()[..12].to_string()
        };
        let created_at = img.created.clone().unwrap_or_default();
        let since = img
            .created
            .as_deref()
            .and_then(parse_rfc3339)
            .map(|t| ago(now - t))
            .unwrap_or_else(|| "N/A".into());
        let size = human_bytes(img.size);
        let names: Vec<(String, String, String)> = if img.names.is_empty() {
            vec![("<none>".into(), "<none>".into(), "<none>".into())]
        } else {
            img.names
                .iter()
                .filter(|(n, _)| filter.as_ref().is_none_or(|f| f.matches(n)))
                .map(|(n, d)| {
                    (
                        n.familiar_name(),
                        n.tag().unwrap_or("<none>").to_string(),
                        d.to_string(),
                    )
                })
                .collect()
        };
        if img.names.is_empty() && filter.is_some() {
            continue;
        }
        for (repo, tag, digest) in names {
            if !ids.contains(&id) {
                ids.push(id.clone());
            }
            rows.push([
                repo,
                tag,
                digest,
                id.clone(),
                since.clone(),
                size.clone(),
                created_at.clone(),
            ]);
        }
    }
    if args.quiet {
        for id in ids {
            writeln!(stdout, "{id}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == Format::Json {
        for r in rows {
            writeln!(
                stdout,
                "{}",
                serde_json::json!({
                    "Repository": r[0], "Tag": r[1], "Digest": r[2], "ID": r[3],
                    "CreatedSince": r[4], "Size": r[5], "CreatedAt": r[6],
                })
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    let mut cols: Vec<usize> = vec![0, 1];
    if args.digests {
        header.push("DIGEST");
        cols.push(2);
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    cols.extend([3, 4, 5]);
    let widths: Vec<usize> = cols
        .iter()
        .zip(&header)
        .map(|(&c, h)| {
            rows.iter()
                .map(|r| r[c].len())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |stdout: &mut std::io::StdoutLock<'_>, cells: Vec<&str>| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        writeln!(stdout, "{}", s.trim_end())
    };
    line(&mut stdout, header.clone())?;
    for r in &rows {
        line(&mut stdout, cols.iter().map(|&c| r[c].as_str()).collect())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME[:TAG]` as `docker images NAME` matches it.
struct Filter {
    name: String,
    tag: Option<String>,
}

impl Filter {
    fn new(text: &str) -> anyhow::Result<Filter> {
        let r: ImageReference = text.parse()?;
        let after_slash = text.rsplit('/').next().unwrap_or(text);
        Ok(Filter {
            name: r.name(),
            tag: after_slash
                .contains(':')
                .then(|| r.tag().unwrap_or_default().to_string()),
        })
    }

    fn matches(&self, n: &ImageReference) -> bool {
        n.name() == self.name && self.tag.as_deref().is_none_or(|t| n.tag() == Some(t))
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-01T00:00:00Z`, offsets, fractions).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b't' && b[10] != b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r[1..3].parse::<i64>().ok()? * 3600 + r[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// `3 days ago`, as Docker says it.
pub fn ago(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    match secs {
        s if s < 60 => "Less than a minute ago".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s if s < 86_400 * 14 => plural(s / 86_400, "day"),
        s if s < 86_400 * 60 => plural(s / (86_400 * 7), "week"),
        s if s < 86_400 * 365 * 2 => plural(s / (86_400 * 30), "month"),
        s => plural(s / (86_400 * 365), "year"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(
            parse_rfc3339("2024-01-01T01:00:00.123456789+01:00"),
            Some(1_704_067_200)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
