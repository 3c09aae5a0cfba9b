//! `ferry ps` (`ferry container ls`): containers as `docker ps` lists them, with its columns,
//! quoting, `--filter` keys and `--format` fields.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use ferry_run::container::Status;
use ferry_run::container::list::Listed;
use serde_json::{Value as Json, json};

use super::store;
use crate::cli::GlobalArgs;
use crate::filter::Filters;
use crate::format::{Columns, Format};
use crate::human;

/// Arguments of `ferry ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (id, name, label, status, exited, ancestor,
    /// before, since, network).
    #[arg(short, long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Pretty-print containers using a Go template (`table …`, `json`).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long, value_name = "N", allow_negative_numbers = true)]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states).
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Display total file sizes.
    #[arg(short, long)]
    pub size: bool,
}

/// `docker ps`'s filter keys that ferry's containers have.
const FILTERS: &[&str] = &[
    "ancestor", "before", "exited", "health", "id", "label", "name", "network", "since", "status",
];

/// The template fields of a container row, with their column headings.
pub const COLUMNS: Columns = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

const DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Prints the containers.
pub fn run(args: PsArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let filters = Filters::parse(&args.filter, FILTERS)?;
    for s in filters.get("status") {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&s.as_str())
        {
            bail!("invalid filter 'status={s}': not a container state");
        }
    }
    for e in filters.get("exited") {
        if e.parse::<i32>().is_err() {
            bail!("invalid filter 'exited={e}': not an exit code");
        }
    }
    let default = if args.size {
        format!("{DEFAULT}\t{{{{.Size}}}}")
    } else {
        DEFAULT.to_string()
    };
    let format = if args.quiet {
        Format::listing(Some("{{.ID}}"), &default)?
    } else {
        Format::listing(args.format.as_deref(), &default)?
    };
    let limit = if args.latest {
        Some(1)
    } else {
        args.last.filter(|n| *n > 0)
    };
    // A status filter shows stopped containers too, as Docker's does; so does a limit.
    let all = args.all || filters.has("status") || limit.is_some();
    let containers = store::containers(global);
    let listed = ferry_run::container::list::list(&containers, true);
    let images = ImageFacts::new(global, &listed, &filters)?;
    let mut selected = select(&listed, &filters, &images, all)?;
    if let Some(n) = limit {
        selected.truncate(n as usize);
    }
    let rows: Vec<Json> = selected
        .iter()
        .map(|l| row(l, &images, !args.no_trunc, args.size))
        .collect();
    let text = format.render(&rows, COLUMNS, "container")?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The containers `filters` let through, newest first. `before`/`since` name containers and
/// cut the list there, as Docker's do.
fn select<'a>(
    listed: &'a [Listed],
    filters: &Filters,
    images: &ImageFacts,
    all: bool,
) -> anyhow::Result<Vec<&'a Listed>> {
    let position = |key: &str| -> anyhow::Result<Option<usize>> {
        match filters.get(key).last() {
            None => Ok(None),
            Some(r) => listed
                .iter()
                .position(|l| {
                    l.container.id == *r
                        || l.meta.name == *r
                        || l.container.id.starts_with(r.as_str())
                })
                .map(Some)
                .ok_or_else(|| anyhow::anyhow!("no such container: {r}")),
        }
    };
    let before = position("before")?;
    let since = position("since")?;
    let mut out = Vec::new();
    for (i, l) in listed.iter().enumerate() {
        if before.is_some_and(|b| i <= b) || since.is_some_and(|s| i >= s) {
            continue;
        }
        let running = l.state.status == Status::Running;
        if !all && !running {
            continue;
        }
        let name = l.meta.name.as_str();
        let slashed = format!("/{name}");
        let keep = filters.matches_regex("name", &[name, &slashed])
            && filters.matches_regex("id", &[&l.container.id])
            && filters.labels_match(&images.labels(&l.meta.image_id))
            && filters.any("status", |s| s == state(l))
            && filters.any("exited", |e| {
                l.state.status == Status::Exited
                    && l.state.exit_code.is_some_and(|c| e.parse() == Ok(c))
            })
            && filters.any("ancestor", |a| images.descends(&l.meta.image_id, a))
            && filters.any("network", |n| n == network(&l.meta))
            && filters.any("health", |h| {
                l.state
                    .health
                    .as_ref()
                    .map_or("none", |x| x.status.as_str())
                    == h
            });
        if keep {
            out.push(l);
        }
    }
    Ok(out)
}

/// What ps needs from the store: image labels and layer chains, read only when a filter or
/// field needs them (`ps` alone never opens the store).
struct ImageFacts {
    images: BTreeMap<String, (BTreeMap<String, String>, Vec<String>)>,
    /// `ancestor=` values resolved to their layer chains.
    ancestors: BTreeMap<String, Vec<String>>,
}

impl ImageFacts {
    fn new(global: &GlobalArgs, listed: &[Listed], filters: &Filters) -> anyhow::Result<Self> {
        let mut facts = ImageFacts {
            images: BTreeMap::new(),
            ancestors: BTreeMap::new(),
        };
        let Ok(store) = crate::store::open(global) else {
            return Ok(facts);
        };
        let chain = |img: &ferry_load::StoredImage| {
            img.diff_ids
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
        };
        for l in listed {
            if facts.images.contains_key(&l.meta.image_id) {
                continue;
            }
            if let Ok(img) = store.image(&l.meta.image_id) {
                let labels = super::store::labels(&img);
                facts
                    .images
                    .insert(l.meta.image_id.clone(), (labels, chain(&img)));
            }
        }
        for a in filters.get("ancestor") {
            // Docker ignores an ancestor it cannot find (nothing matches it).
            if let Ok(img) = store.image(a) {
                facts.ancestors.insert(a.clone(), chain(&img));
            }
        }
        Ok(facts)
    }

    fn labels(&self, image_id: &str) -> BTreeMap<String, String> {
        self.images
            .get(image_id)
            .map(|i| i.0.clone())
            .unwrap_or_default()
    }

    /// Whether the image is `ancestor` or built on it (its layers start with the ancestor's).
    fn descends(&self, image_id: &str, ancestor: &str) -> bool {
        match (self.images.get(image_id), self.ancestors.get(ancestor)) {
            (Some((_, layers)), Some(base)) => layers.starts_with(base),
            _ => false,
        }
    }
}

/// Docker's state word.
fn state(l: &Listed) -> &'static str {
    match l.state.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
        Status::Restarting => "restarting",
    }
}

/// The network as Docker's `NetworkMode` names it.
pub fn network(meta: &ferry_run::container::Meta) -> String {
    use ferry_run::Network;
    match &meta.host.network {
        Network::Default | Network::Private => "default".into(),
        Network::Host => "host".into(),
        Network::None => "none".into(),
        Network::Container(n) => format!("container:{n}"),
    }
}

/// `Up 3 minutes (healthy)`, `Exited (0) 2 hours ago`, `Restarting (1) 5 seconds ago`,
/// `Created`.
pub fn status(l: &Listed) -> String {
    let s = &l.state;
    let ended = || human::ago(s.finished.max(s.started) as i64);
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            human::duration(ferry_oci::time::now() - s.started as i64),
            ferry_run::container::health::ps_suffix(s.health.as_ref())
        ),
        Status::Restarting => format!("Restarting ({}) {}", s.exit_code.unwrap_or(0), ended()),
        Status::Exited => match s.exit_code {
            Some(code) => format!("Exited ({code}) {}", ended()),
            None => "Exited (unknown)".into(),
        },
    }
}

/// The PORTS column: while it runs in a network namespace of its own, the ports it holds
/// and the exposed ones nothing publishes, as Docker lists them.
fn ports(l: &Listed) -> String {
    match (l.state.status, &l.meta.host.network) {
        (Status::Running, ferry_run::Network::Private) => {
            ferry_run::net::ports::ps_column(&l.state.ports, &l.meta.host.exposed)
        }
        _ => String::new(),
    }
}

/// One row's template data.
fn row(l: &Listed, images: &ImageFacts, trunc: bool, size: bool) -> Json {
    let command = command(&l.meta.command);
    let command = if trunc {
        ellipsis(&command, 20)
    } else {
        command
    };
    let labels = images.labels(&l.meta.image_id);
    let created = l.meta.created as i64;
    json!({
        "ID": if trunc { l.container.short_id() } else { l.container.id.as_str() },
        "Image": l.meta.image,
        "Command": go_quote(&command),
        "CreatedAt": go_time(created),
        "RunningFor": human::ago(created),
        "Ports": ports(l),
        "State": state(l),
        "Status": status(l),
        "Size": if size { human::size(dir_size(&l.container.dir.join("upper"))) } else { "0B".into() },
        "Names": l.meta.name,
        "Labels": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        "Mounts": "",
        "Networks": network(&l.meta),
        "LocalVolumes": "0",
    })
}

/// Go's `time.Time.String()` of a UTC time, as `CreatedAt` reads in Docker.
pub fn go_time(secs: i64) -> String {
    let t = ferry_oci::time::rfc3339(secs);
    format!("{} {} +0000 UTC", &t[..10], &t[11..19])
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

/// The command as Docker's container list joins it: the path, then the arguments, those
/// with a space in single quotes (`sh -c 'exit 3'`).
pub fn command(argv: &[String]) -> String {
    let mut out = argv.first().cloned().unwrap_or_default();
    for a in argv.iter().skip(1) {
        out.push(' ');
        if a.contains(' ') {
            out.push_str(&format!("'{a}'"));
        } else {
            out.push_str(a);
        }
    }
    out
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote`: double quotes, with `"`, `\` and unprintable characters escaped.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_cut_and_quoted_as_docker_does() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command(&argv(&["sh", "-c", "exit 3"])), "sh -c 'exit 3'");
        assert_eq!(command(&argv(&["/hello"])), "/hello");
        assert_eq!(go_quote("/hello"), "\"/hello\"");
        assert_eq!(
            go_quote(&ellipsis("sh -c \"echo hi\" && sleep 100", 20)),
            r#""sh -c \"echo hi\" && …""#
        );
        assert_eq!(go_quote("a\tb\\c\x01"), r#""a\tb\\c\x01""#);
        assert_eq!(ellipsis("日本語のコマンド", 20), "日本語のコマンド");
    }
}
