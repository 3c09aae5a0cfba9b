//! `ferry ps`: the containers and their states, newest first. The binary lays them out.

use super::{Container, Containers, Meta, State, Status};

/// One container as `ferry ps` lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its directory.
    pub container: Container,
    /// What it was made from.
    pub meta: Meta,
    /// Its state, with a dead supervisor noticed.
    pub state: State,
}

/// Running containers (all of them with `all`), newest first: by creation second, then by
/// when `ferry.json` was written (two made within a second keep their order, as Docker's
/// nanosecond times keep it).
pub fn list(containers: &Containers, all: bool) -> Vec<Listed> {
    let mut listed: Vec<(std::time::SystemTime, Listed)> = containers
        .all()
        .into_iter()
        .map(|(container, meta)| {
            let written = std::fs::metadata(container.dir.join("ferry.json"))
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            let l = Listed {
                state: container.current_state(),
                container,
                meta,
            };
            (written, l)
        })
        .filter(|(_, l)| all || l.state.status == Status::Running)
        .collect();
    listed.sort_by(|(a, x), (b, y)| y.meta.created.cmp(&x.meta.created).then(b.cmp(a)));
    listed.into_iter().map(|(_, l)| l).collect()
}
