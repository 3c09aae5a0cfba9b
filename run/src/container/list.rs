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

/// Running containers (all of them with `all`), newest first.
pub fn list(containers: &Containers, all: bool) -> Vec<Listed> {
    containers
        .all()
        .into_iter()
        .map(|(container, meta)| Listed {
            state: container.current_state(),
            container,
            meta,
        })
        .filter(|l| all || l.state.status == Status::Running)
        .collect()
}
