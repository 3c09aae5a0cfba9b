//! `ferry inspect CONTAINER` / `ferry container inspect`: a container as
//! `docker container inspect` shows it, in Docker's field order, from the container's
//! directory (`ferry.json`, `state.json` and its OCI `config.json`).

use std::collections::BTreeMap;

use ferry_load::Store;
use ferry_run::container::{Container, Meta, Status};
use serde::Serialize;
use serde_json::{Value as Json, json};

use super::image::{DockerConfig, ZERO_TIME};

/// `docker container inspect`'s object (the fields ferry's containers have).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerJson {
    pub id: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub image: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub log_path: String,
    pub name: String,
    pub restart_count: u32,
    pub driver: String,
    pub platform: String,
    pub host_config: HostConfig,
    pub graph_driver: super::image::GraphDriver,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<u64>,
    pub mounts: Vec<Json>,
    pub config: DockerConfig,
    pub network_settings: NetworkSettings,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Json>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    pub network_mode: String,
    pub port_bindings: Json,
    pub restart_policy: Json,
    pub auto_remove: bool,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub runtime: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub ports: Json,
}

/// `Config.Env` as Docker records it: the image's and the user's variables, without the
/// `HOSTNAME` and `HOME` the runtime adds (unless the image sets them).
fn config_env(env: &[String], image: Option<&ferry_oci::spec::Config>) -> Vec<String> {
    let image_keys: Vec<String> = image
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
        .iter()
        .map(|e| e.split('=').next().unwrap_or_default().to_string())
        .collect();
    env.iter()
        .filter(|e| {
            let key = e.split('=').next().unwrap_or_default();
            !matches!(key, "HOSTNAME" | "HOME") || image_keys.iter().any(|k| k == key)
        })
        .cloned()
        .collect()
}

fn time(secs: u64) -> String {
    if secs == 0 {
        ZERO_TIME.into()
    } else {
        ferry_oci::time::rfc3339(secs as i64)
    }
}

/// The object for a container.
pub fn inspect(
    c: &Container,
    meta: &Meta,
    store: Option<&Store>,
    size: bool,
) -> anyhow::Result<Box<ContainerJson>> {
    let state = c.current_state();
    // What the runtime knows best (restarts, health, ports, mounts) comes from its own
    // document; the rest is laid out here in Docker's order.
    let doc = ferry_run::container::inspect::document(c, meta);
    let doc_state = &doc["State"];
    let spec: Json = std::fs::read(c.dir.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Json::Null);
    let process = &spec["process"];
    let strings = |v: &Json| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let image = store.and_then(|s| s.image(&meta.image_id).ok());
    let image_config = image.as_ref().and_then(|i| i.config.config().clone());
    // The command as Docker records it: the image's Entrypoint, if the command starts with
    // it, and the rest as Cmd.
    let entrypoint = image_config
        .as_ref()
        .and_then(|c| c.entrypoint().clone())
        .filter(|e| !e.is_empty() && meta.command.starts_with(e));
    let cmd = match &entrypoint {
        Some(e) => meta.command[e.len()..].to_vec(),
        None => meta.command.clone(),
    };
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let (Some(src), Some(dst)) = (m["source"].as_str(), m["destination"].as_str()) else {
            continue;
        };
        if m["type"] != "bind"
            || src.starts_with(&c.dir.display().to_string()) && !src.contains("/volumes/")
        {
            continue;
        }
        let rw = !strings(&m["options"]).iter().any(|o| o == "ro");
        let volume = src.contains("/volumes/") && src.starts_with(&c.dir.display().to_string());
        if !volume {
            binds.push(format!("{src}:{dst}{}", if rw { "" } else { ":ro" }));
        }
        mounts.push(json!({
            "Type": if volume { "volume" } else { "bind" },
            "Source": src,
            "Destination": dst,
            "Mode": if rw { "" } else { "ro" },
            "RW": rw,
            "Propagation": "rprivate",
        }));
    }
    let labels: Option<BTreeMap<String, String>> = image_config
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect());
    let dir = |name: &str| c.dir.join(name).display().to_string();
    let running = matches!(state.status, Status::Running | Status::Restarting);
    Ok(Box::new(ContainerJson {
        id: c.id.clone(),
        created: ferry_oci::time::rfc3339(meta.created as i64),
        path: meta.command.first().cloned().unwrap_or_default(),
        args: meta.command.iter().skip(1).cloned().collect(),
        state: State {
            status: doc_state["Status"].as_str().unwrap_or("created").into(),
            running: doc_state["Running"].as_bool().unwrap_or(false),
            paused: false,
            restarting: doc_state["Restarting"].as_bool().unwrap_or(false),
            oom_killed: false,
            dead: false,
            pid: doc_state["Pid"].as_i64().unwrap_or(0) as i32,
            exit_code: doc_state["ExitCode"].as_i64().unwrap_or(0) as i32,
            error: String::new(),
            started_at: time(state.started),
            finished_at: if running {
                ZERO_TIME.into()
            } else {
                time(state.finished)
            },
            health: doc_state.get("Health").cloned(),
        },
        image: meta.image_id.clone(),
        resolv_conf_path: dir("resolv.conf"),
        hostname_path: dir("hostname"),
        hosts_path: dir("hosts"),
        log_path: if c.log_path().exists() {
            dir("container.log")
        } else {
            String::new()
        },
        name: format!("/{}", meta.name),
        restart_count: doc["RestartCount"].as_u64().unwrap_or(0) as u32,
        driver: if meta.rootfs_copy {
            "ferry-copy"
        } else {
            "ferry-overlay"
        }
        .into(),
        platform: "linux".into(),
        host_config: HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: super::super::ps::network(meta),
            port_bindings: doc["HostConfig"]["PortBindings"].clone(),
            restart_policy: doc["HostConfig"]["RestartPolicy"].clone(),
            auto_remove: meta.auto_remove,
            privileged: spec["linux"]["maskedPaths"].is_null() && !spec["linux"].is_null(),
            readonly_rootfs: spec["root"]["readonly"].as_bool().unwrap_or(false),
            runtime: meta
                .runtime
                .as_ref()
                .map_or("ferry".into(), |r| r.display().to_string()),
        },
        graph_driver: super::image::GraphDriver {
            data: BTreeMap::from([
                ("UpperDir".to_string(), dir("upper")),
                ("WorkDir".to_string(), dir("work")),
                ("MergedDir".to_string(), dir("rootfs")),
            ]),
            name: "ferry".into(),
        },
        size_rw: size.then(|| super::super::container::dir_bytes(&c.dir.join("upper"))),
        // The run's own record of its mounts (volumes, binds, tmpfs) when it has one.
        mounts: match doc["Mounts"].as_array() {
            Some(m) if !m.is_empty() => m.clone(),
            _ => mounts,
        },
        config: DockerConfig {
            hostname: spec["hostname"].as_str().unwrap_or_default().into(),
            user: match (
                process["user"]["uid"].as_u64(),
                process["user"]["gid"].as_u64(),
            ) {
                (Some(0), Some(0)) | (None, _) => String::new(),
                (Some(u), Some(g)) => format!("{u}:{g}"),
                (Some(u), None) => u.to_string(),
            },
            tty: process["terminal"].as_bool().unwrap_or(false),
            env: Some(config_env(&strings(&process["env"]), image_config.as_ref())),
            cmd: Some(cmd),
            image: meta.image.clone(),
            working_dir: process["cwd"].as_str().unwrap_or_default().into(),
            entrypoint,
            labels,
            stop_signal: meta.stop_signal.clone().unwrap_or_default(),
            exposed_ports: doc["Config"]["ExposedPorts"]
                .as_object()
                .filter(|m| !m.is_empty())
                .map(|m| m.clone().into_iter().collect()),
            stop_timeout: doc["Config"]["StopTimeout"].as_i64(),
            healthcheck: Some(doc["Config"]["Healthcheck"].clone()).filter(|h| !h.is_null()),
            ..DockerConfig::default()
        },
        network_settings: NetworkSettings {
            ports: doc["NetworkSettings"]["Ports"].clone(),
        },
    }))
}
