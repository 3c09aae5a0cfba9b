//! `ferry port CONTAINER [PRIVATE_PORT[/PROTO]]`.

use std::process::ExitCode;

use clap::Args;
use ferry_run::net::ports::{ContainerPort, port_lines};

use super::store;
use crate::cli::GlobalArgs;

/// Arguments of `ferry port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container name or ID.
    pub container: String,
    /// Only this container port (`80`, `53/udp`).
    pub private_port: Option<String>,
}

/// Prints the container's published ports, as Docker does.
pub fn run(args: PortArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (c, meta) = store::containers(global).find(&args.container)?;
    let published = c.current_state().ports;
    let only = match &args.private_port {
        Some(p) => {
            let ports = ContainerPort::parse_range(p).map_err(anyhow::Error::msg)?;
            match ports.as_slice() {
                [one] => Some(*one),
                _ => anyhow::bail!("invalid port `{p}`: give one port"),
            }
        }
        None => None,
    };
    let lines = port_lines(&published, only);
    if let Some(port) = only {
        if lines.is_empty() {
            anyhow::bail!("No public port '{port}' published for {}", meta.name);
        }
        // With a port named, Docker prints only the host side.
        for l in &lines {
            println!("{}", l.split(" -> ").nth(1).unwrap_or(l));
        }
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
