//! `ferry container inspect C`: the container as Docker's `docker inspect` shows it, for the
//! keys ferry has (State with Health, RestartCount, HostConfig's restart policy and port
//! bindings, NetworkSettings.Ports, Config's exposed ports, stop signal and healthcheck).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Container, Meta, Status};
use crate::net::ports::{ContainerPort, PublishedPort};
use crate::options::Network;
use ferry_oci::time::rfc3339_nanos as rfc3339;

fn time(secs: u64) -> String {
    if secs == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The document for one container.
pub fn document(c: &Container, meta: &Meta) -> Value {
    let s = c.current_state();
    let status = match s.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
        Status::Restarting => "restarting",
    };
    let network = match &meta.host.network {
        Network::Default | Network::Private => "default".to_string(),
        Network::Host => "host".into(),
        Network::None => "none".into(),
        Network::Container(n) => format!("container:{n}"),
    };
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in &meta.host.publish {
        bindings
            .entry(p.container.to_string())
            .or_default()
            .push(json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }));
    }
    let exposed: BTreeMap<String, Value> = meta
        .host
        .exposed
        .iter()
        .map(|p| (p.to_string(), json!({})))
        .collect();
    let mut doc = json!({
        "Id": c.id,
        "Created": time(meta.created),
        "Path": meta.command.first().cloned().unwrap_or_default(),
        "Args": meta.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": status,
            "Running": matches!(s.status, Status::Running | Status::Restarting),
            "Paused": false,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": false,
            "Dead": false,
            "Pid": if s.status == Status::Running { s.pid } else { 0 },
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": "",
            "StartedAt": time(s.started),
            "FinishedAt": time(s.finished),
        },
        "Image": meta.image_id,
        "Name": format!("/{}", meta.name),
        "RestartCount": s.restart_count,
        "HostConfig": {
            "NetworkMode": network,
            "PortBindings": bindings,
            "RestartPolicy": {
                "Name": meta.host.restart.name(),
                "MaximumRetryCount": meta.host.restart.max_retries(),
            },
            "AutoRemove": meta.auto_remove,
        },
        "Config": {
            "Image": meta.image,
            "ExposedPorts": exposed,
            "StopSignal": meta.stop_signal,
            "StopTimeout": meta.host.stop_timeout,
            "Healthcheck": meta.host.health,
        },
        "NetworkSettings": { "Ports": network_ports(&s.ports, &meta.host.exposed) },
    });
    if let Some(obj) = doc.as_object_mut() {
        let mounts: Vec<Value> = meta.host.mounts.iter().map(|m| m.inspect()).collect();
        obj.insert("Mounts".into(), json!(mounts));
        if let Some(h) = &s.health
            && let Some(state) = obj.get_mut("State").and_then(Value::as_object_mut)
        {
            state.insert("Health".into(), json!(h));
        }
    }
    doc
}

/// Docker's `NetworkSettings.Ports`: every exposed port, with its host bindings or `null`.
fn network_ports(published: &[PublishedPort], exposed: &[ContainerPort]) -> Value {
    let mut m: BTreeMap<String, Value> = exposed
        .iter()
        .map(|p| (p.to_string(), Value::Null))
        .collect();
    for p in published {
        let entry = m.entry(p.container.to_string()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({
                "HostIp": p.host_ip.to_string(),
                "HostPort": p.host_port.to_string(),
            }));
        }
    }
    json!(m)
}
