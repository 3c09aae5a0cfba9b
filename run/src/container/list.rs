//! `ferry ps [-a]`: the containers, as `docker ps` shows them.

use std::io::Write;

use super::{Containers, Status, now};

/// One row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Short ID.
    pub id: String,
    /// The image as named at `run`.
    pub image: String,
    /// The command, quoted like Docker's.
    pub command: String,
    /// "5 seconds ago".
    pub created: String,
    /// "Up 3 seconds", "Exited (0) 2 minutes ago".
    pub status: String,
    /// The name.
    pub name: String,
    /// Published and exposed ports, as Docker's PORTS column shows them.
    pub ports: String,
    /// Restarts made by its restart policy (Docker's `RestartCount`).
    pub restart_count: u32,
}

/// Running containers (all of them with `all`), newest first.
pub fn rows(containers: &Containers, all: bool) -> Vec<Row> {
    containers
        .all()
        .into_iter()
        .filter_map(|(c, m)| {
            let s = c.current_state();
            if !all && s.status != Status::Running {
                return None;
            }
            let status = match s.status {
                Status::Created => "Created".to_string(),
                Status::Running => format!(
                    "Up {}{}",
                    ago(s.started).trim_end_matches(" ago"),
                    super::health::ps_suffix(s.health.as_ref())
                ),
                Status::Restarting => format!(
                    "Restarting ({}) {}",
                    s.exit_code.unwrap_or(0),
                    ago(s.finished.max(s.started))
                ),
                Status::Exited => match s.exit_code {
                    Some(code) => format!("Exited ({code}) {}", ago(s.finished.max(s.started))),
                    None => "Exited (unknown)".to_string(),
                },
            };
            let mut command = m.command.join(" ");
            if command.chars().count() > 20 {
                command = command.chars().take(19).collect::<String>() + "…";
            }
            Some(Row {
                id: c.short_id().to_string(),
                image: m.image,
                command: format!("\"{command}\""),
                created: ago(m.created),
                status,
                name: m.name,
                // Like Docker: ports only while it runs.
                // Exposed ports show only where Docker would show them: a namespace of its
                // own, not the host's network.
                ports: match (s.status, &m.host.network) {
                    (Status::Running, crate::options::Network::Private) => {
                        crate::net::ports::ps_column(&s.ports, &m.host.exposed)
                    }
                    _ => String::new(),
                },
                restart_count: s.restart_count,
            })
        })
        .collect()
}

/// Prints rows as a table.
pub fn print(rows: &[Row], out: &mut dyn Write) -> std::io::Result<()> {
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.image.clone(),
                r.command.clone(),
                r.created.clone(),
                r.status.clone(),
                r.ports.clone(),
                r.name.clone(),
            ]
        })
        .collect();
    let mut width = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        cols.iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == cols.len() - 1 {
                    c.to_string()
                } else {
                    format!("{c}{}", " ".repeat(w - c.chars().count() + 3))
                }
            })
            .collect::<String>()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &cells {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// "3 seconds ago", "2 minutes ago", like Docker's humanised durations.
fn ago(t: u64) -> String {
    let d = now().saturating_sub(t);
    let (n, unit) = match d {
        0 => return "Less than a second ago".into(),
        1..=59 => (d, "second"),
        60..=3599 => (d / 60, "minute"),
        3600..=86399 => (d / 3600, "hour"),
        _ => (d / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}
