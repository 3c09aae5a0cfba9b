//! Container networking beyond sharing the host's: a private network namespace with its
//! loopback up ([`loopback`]), published ports held on the host and forwarded into the
//! namespace by a user-space proxy ([`ports`], [`listen`], [`proxy`], [`relay`]), sharing
//! another container's namespace ([`join`]), and `/etc/hosts` and `/etc/resolv.conf` entries
//! ([`etc`]).

pub mod etc;
pub mod join;
pub mod listen;
pub mod loopback;
pub mod ports;
pub mod proxy;
pub mod relay;

use crate::container::{Container, Containers, Status};
use crate::error::RunError;
use crate::options::Network;
use listen::{BindError, Listener};
use ports::{PortSpec, PublishedPort};
pub use proxy::Proxy;

/// The network a container gets: `--network` as given, where the default is the host's
/// network, or a namespace of its own when it publishes ports (as Docker's default bridge
/// gives one; ferry has no bridge, so the namespace has only `lo`, reached through the
/// proxy).
pub fn resolve(network: &Network, publishing: bool) -> Network {
    match network {
        Network::Default if publishing => Network::Private,
        Network::Default => Network::Host,
        other => other.clone(),
    }
}

/// Binds the ports a container publishes, on the host, before it starts.
pub fn bind(
    container: &Container,
    name: &str,
    specs: &[PortSpec],
) -> Result<Vec<Listener>, RunError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let taken = held_by_others(container);
    listen::bind_all(specs, &taken).map_err(|source| publish_error(container, name, source))
}

fn publish_error(container: &Container, name: &str, source: BindError) -> RunError {
    RunError::Publish {
        name: name.to_string(),
        id: container.short_id().to_string(),
        source: Box::new(source),
    }
}

/// Ports that the other running containers of the same store hold.
fn held_by_others(me: &Container) -> Vec<PublishedPort> {
    let Some(dir) = me.dir.parent() else {
        return Vec::new();
    };
    Containers::new(dir.to_path_buf())
        .all()
        .into_iter()
        .filter(|(c, _)| c.id != me.id)
        .filter_map(|(c, _)| {
            let s = c.current_state();
            (s.status == Status::Running).then_some(s.ports)
        })
        .flatten()
        .collect()
}

/// Hands `listeners` to a proxy in the network namespace of the process `pid`.
pub fn start_proxy(
    container: &Container,
    listeners: Vec<Listener>,
    pid: i32,
    rootless: bool,
) -> Result<Option<Proxy>, RunError> {
    if listeners.is_empty() {
        return Ok(None);
    }
    let fail = |source| RunError::Sys {
        action: format!("start the port proxy of container {}", container.short_id()),
        source,
    };
    let target = proxy::Target::of_pid(pid, rootless).map_err(fail)?;
    Proxy::start(listeners, target).map(Some).map_err(fail)
}

/// What `prepare` learns about a new container's network before writing it.
#[derive(Debug, Default)]
pub struct Plan {
    /// Its exposed ports (the image's EXPOSE, `--expose`, and every published one).
    pub exposed: Vec<ports::ContainerPort>,
    /// For `container:NAME`: NAME's namespace and files.
    pub shared: Option<Shared>,
}

/// The container whose network namespace a new one joins.
#[derive(Debug)]
pub struct Shared {
    /// `/proc/<pid>/ns/net`.
    pub path: std::path::PathBuf,
    /// Its directory (its `hosts`, `resolv.conf`, `hostname` are the new one's too).
    pub dir: std::path::PathBuf,
    /// Its hostname, which the new container takes (as in Docker).
    pub hostname: String,
}

/// Checks the network flags together, resolves the network (see [`resolve`]) and the ports
/// to publish (`-P` adds every exposed port on a free host port) into `opts`.
pub fn plan(
    containers: &Containers,
    image_exposed: &[String],
    opts: &mut crate::options::RunOptions,
    rootless: bool,
) -> Result<Plan, RunError> {
    let conflict = |what: &str| {
        Err(RunError::Invalid(format!(
            "conflicting options: {what} and the network mode"
        )))
    };
    let mut exposed = Vec::new();
    for e in image_exposed {
        exposed.extend(ports::ContainerPort::parse_range(e).map_err(RunError::Invalid)?);
    }
    exposed.extend(opts.expose.iter().copied());
    exposed.extend(opts.publish.iter().map(|p| p.container));
    exposed.sort();
    exposed.dedup();
    if opts.publish_all {
        for e in &exposed {
            if !opts.publish.iter().any(|p| p.container == *e) {
                opts.publish.push(PortSpec {
                    host_ip: None,
                    host_port: 0,
                    container: *e,
                });
            }
        }
    }
    let mut shared = None;
    if let Network::Container(name) = &opts.network {
        if !opts.publish.is_empty() {
            return Err(RunError::Invalid(
                "conflicting options: port publishing and the container type network mode".into(),
            ));
        }
        if opts.hostname.is_some() {
            return conflict("hostname");
        }
        if !opts.dns.is_empty() {
            return conflict("dns");
        }
        if !opts.add_hosts.is_empty() {
            return conflict("custom host-to-IP mapping");
        }
        if rootless {
            return Err(RunError::Unsupported(
                "--network container:NAME without root".into(),
            ));
        }
        let (c, _) = containers.find(name)?;
        let path = join::namespace_of(containers, name)?;
        let hostname = std::fs::read_to_string(c.dir.join("hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        shared = Some(Shared {
            path,
            dir: c.dir,
            hostname,
        });
    }
    opts.network = resolve(&opts.network, !opts.publish.is_empty());
    // Host and none publish nothing (Docker discards the ports; the CLI warns for host).
    if matches!(opts.network, Network::Host | Network::None) {
        opts.publish.clear();
    }
    Ok(Plan { exposed, shared })
}

/// Gives a container that shares another's network that one's `hosts`, `resolv.conf` and
/// `hostname` files.
pub fn copy_shared_files(dir: &std::path::Path, shared: &Shared) -> Result<(), RunError> {
    for f in ["hosts", "resolv.conf", "hostname"] {
        let from = shared.dir.join(f);
        let to = dir.join(f);
        std::fs::copy(&from, &to).map_err(crate::error::io_err("copy", &from))?;
    }
    Ok(())
}
