//! One instruction: expansion, then the config change and history line Docker's classic
//! builder would make (RUN, COPY/ADD and WORKDIR, which touch files, are in their own files).

use std::collections::BTreeMap;

use super::Executor;
use super::state::State;
use crate::config::{Empty, HealthConfig, go_list, go_quote_list, healthcheck_text};
use crate::dockerfile::{CommandLine, Dockerfile, Instruction, KeyValue, Kind};
use crate::error::StepError;

impl Executor<'_> {
    /// Runs one instruction of stage `stage`.
    pub(super) fn instruction(
        &mut self,
        state: &mut State,
        ins: &Instruction,
        stage: usize,
    ) -> Result<(), StepError> {
        self.kind(state, &ins.kind, stage)
    }

    fn kind(&mut self, state: &mut State, kind: &Kind, stage: usize) -> Result<(), StepError> {
        match kind {
            Kind::From(_) => Err(StepError::Invalid("FROM cannot be used here".into())),
            Kind::Run(r) => self.run(state, r),
            Kind::Copy(c) => self.copy(state, c, "COPY", stage),
            Kind::Add(c) => self.copy(state, c, "ADD", stage),
            Kind::Workdir(p) => self.workdir(state, p),
            Kind::Env(kvs) => {
                let pairs = self.expand_pairs(state, kvs)?;
                let comment = std::iter::once("ENV".to_string())
                    .chain(pairs.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta_step(state, &comment, |s| {
                    for (k, v) in &pairs {
                        s.config.set_env(k, v);
                    }
                })
            }
            Kind::Label(kvs) => {
                let pairs = self.expand_pairs(state, kvs)?;
                self.label(state, &pairs)
            }
            Kind::Arg(decls) => {
                let env = self.expansion_env(state);
                let mut parts = Vec::new();
                for d in decls {
                    let name = self.expand(&d.name, &env)?;
                    let default = match &d.default {
                        Some(v) => Some(self.expand(v, &env)?),
                        None => None,
                    };
                    parts.push(match &default {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    self.args.declare(&name, default, false);
                }
                self.meta_step(state, &format!("ARG {}", parts.join(" ")), |_| {})
            }
            Kind::User(u) => {
                let env = self.expansion_env(state);
                let user = self.expand(u, &env)?;
                self.meta_step(state, &format!("USER {user}"), |s| {
                    s.config.config.user = Some(user.clone());
                })
            }
            Kind::Volume(vs) => {
                let env = self.expansion_env(state);
                let mut vols = Vec::new();
                for v in vs {
                    let v = self.expand(v, &env)?;
                    if v.is_empty() {
                        return Err(StepError::Invalid(
                            "VOLUME specified can not be an empty string".into(),
                        ));
                    }
                    vols.push(v);
                }
                self.meta_step(state, &format!("VOLUME {}", go_list(&vols)), |s| {
                    let m = s.config.config.volumes.get_or_insert_with(BTreeMap::new);
                    for v in &vols {
                        m.insert(v.clone(), Empty {});
                    }
                })
            }
            Kind::Expose(ports) => {
                let env = self.expansion_env(state);
                let mut raw = ports.clone();
                raw.sort();
                let mut words = Vec::new();
                for p in &raw {
                    words.extend(crate::expand::words(p, self.escape, &env)?);
                }
                let mut keys = Vec::new();
                for w in &words {
                    keys.extend(port_keys(w).map_err(StepError::Invalid)?);
                }
                self.meta_step(state, &format!("EXPOSE {}", words.join(" ")), |s| {
                    let m = s
                        .config
                        .config
                        .exposed_ports
                        .get_or_insert_with(BTreeMap::new);
                    for k in &keys {
                        m.insert(k.clone(), Empty {});
                    }
                })
            }
            Kind::StopSignal(sig) => {
                let env = self.expansion_env(state);
                let sig = self.expand(sig, &env)?;
                if !valid_signal(&sig) {
                    return Err(StepError::Invalid(format!("Invalid signal: {sig}")));
                }
                self.meta_step(state, &format!("STOPSIGNAL {sig}"), |s| {
                    s.config.config.stop_signal = Some(sig.clone());
                })
            }
            Kind::Healthcheck(h) => {
                if let Some(old) = &state.config.config.healthcheck
                    && old.test.first().is_some_and(|t| t != "NONE")
                {
                    self.reporter.notice(&format!(
                        "Note: overriding previous HEALTHCHECK: {}",
                        go_list(&old.test)
                    ));
                }
                let hc = HealthConfig {
                    test: h.test.clone(),
                    interval: h.interval.unwrap_or(0),
                    timeout: h.timeout.unwrap_or(0),
                    start_period: h.start_period.unwrap_or(0),
                    start_interval: h.start_interval.unwrap_or(0),
                    retries: h.retries.unwrap_or(0),
                };
                self.meta_step(
                    state,
                    &format!("HEALTHCHECK {}", healthcheck_text(&hc)),
                    |s| {
                        s.config.config.healthcheck = Some(hc.clone());
                    },
                )
            }
            // Docker writes SHELL's history line with the new shell already in place.
            Kind::Shell(sh) => {
                self.meta_step_in(state, sh, &format!("SHELL {}", go_list(sh)), |s| {
                    s.config.config.shell = Some(sh.clone());
                })
            }
            Kind::Cmd(cl) => {
                let cmd = command_of(state, cl);
                let set = !cl.args.is_empty();
                let r = self.meta_step(state, &format!("CMD {}", go_quote_list(&cmd)), |s| {
                    s.config.config.cmd = Some(cmd.clone());
                });
                if set {
                    state.cmd_set = true;
                }
                r
            }
            Kind::Entrypoint(cl) => {
                let ep = command_of(state, cl);
                let cmd_set = state.cmd_set;
                self.meta_step(state, &format!("ENTRYPOINT {}", go_quote_list(&ep)), |s| {
                    s.config.config.entrypoint = (!ep.is_empty()).then(|| ep.clone());
                    if !cmd_set {
                        s.config.config.cmd = None;
                    }
                })
            }
            Kind::Onbuild { expression, .. } => {
                self.meta_step(state, &format!("ONBUILD {expression}"), |s| {
                    s.config
                        .config
                        .on_build
                        .get_or_insert_with(Vec::new)
                        .push(expression.clone());
                })
            }
            Kind::Maintainer(m) => {
                state.maintainer = Some(m.clone());
                self.meta_step(state, &format!("MAINTAINER {m}"), |_| {})
            }
        }
    }

    /// LABEL (also `--label`, whose values are not expanded).
    pub(super) fn label(
        &mut self,
        state: &mut State,
        pairs: &[(String, String)],
    ) -> Result<(), StepError> {
        let comment = std::iter::once("LABEL".to_string())
            .chain(pairs.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ");
        self.meta_step(state, &comment, |s| {
            let m = s.config.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                m.insert(k.clone(), v.clone());
            }
        })
    }

    fn expand_pairs(
        &self,
        state: &State,
        kvs: &[KeyValue],
    ) -> Result<Vec<(String, String)>, StepError> {
        // Every pair expands with the environment from before the instruction (`ENV a=1
        // b=$a` gives b the old a), as Docker does.
        let env = self.expansion_env(state);
        kvs.iter()
            .map(|kv| Ok((self.expand(&kv.key, &env)?, self.expand(&kv.value, &env)?)))
            .collect()
    }

    /// FROM: the base of stage `index`.
    pub(super) fn from(&mut self, df: &Dockerfile, index: usize) -> Result<State, StepError> {
        let args = &df.stages[index].from_args;
        let meta = self.args.meta();
        let name = self.expand(&args.image, &meta)?;
        if name.is_empty() {
            return Err(StepError::Invalid(format!(
                "base name ({}) should not be blank",
                args.image
            )));
        }
        let platform = match &args.platform {
            Some(p) => {
                let p = self.expand(p, &meta)?;
                Some(p.parse::<ferry_oci::Platform>().map_err(|e| {
                    StepError::Invalid(format!("failed to parse platform {p}: {e}"))
                })?)
            }
            None => None,
        };
        if name == "scratch" {
            return Ok(State::scratch(
                platform.as_ref().unwrap_or(&self.opts.platform),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if let Some(j) = df.stages[..index]
            .iter()
            .position(|s| s.name() == Some(lower.as_str()))
        {
            let mut s = self.results[j]
                .clone()
                .ok_or_else(|| StepError::Invalid(format!("stage {name} was not built")))?;
            s.cmd_set = false;
            s.maintainer = None;
            return Ok(s);
        }
        let img = self
            .host
            .store
            .image(&name)
            .map_err(StepError::host("look the image up in the store"))?
            .ok_or(StepError::ImageNotFound {
                reference: name.clone(),
            })?;
        let state = State::from_image(&img).map_err(|e| {
            StepError::Invalid(format!("the config of image {name} does not parse: {e}"))
        })?;
        if let Some(want) = platform {
            let have = ferry_oci::Platform {
                os: state.config.os.clone(),
                architecture: state.config.architecture.clone(),
                variant: state.config.variant.clone(),
            };
            if !want.matches(&have) {
                return Err(StepError::Platform {
                    reference: name,
                    wanted: want.to_string(),
                    actual: have.to_string(),
                });
            }
        }
        Ok(state)
    }
}

/// CMD/ENTRYPOINT/RUN's command line: the exec form as is, the shell form after the shell.
pub(super) fn command_of(state: &State, cl: &CommandLine) -> Vec<String> {
    if cl.exec_form {
        return cl.args.clone();
    }
    if cl.args.is_empty() {
        return Vec::new();
    }
    let mut v = state.shell();
    v.push(cl.args.join(" "));
    v
}

/// `80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:8080` → `["80/tcp"]`, …
fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let (port, proto) = match spec.split_once('/') {
        Some((p, pr)) => (p, pr.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // Only the container port counts in an image.
    let port = port.rsplit(':').next().unwrap_or(port);
    if port.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (lo, hi) = match port.split_once('-') {
        Some((a, b)) => (a, b),
        None => (port, port),
    };
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {port}"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if hi < lo {
        return Err(format!("invalid range specified for containerPort: {port}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// A signal name (`SIGTERM`, `TERM`, `SIGRTMIN+3`) or number Linux has.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
    ];
    if NAMES.contains(&name) || name == "SYS" || name == "POLL" {
        return true;
    }
    for (base, max) in [("RTMIN", 15), ("RTMAX", 15)] {
        if name == base {
            return true;
        }
        if let Some(off) = name
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix(if base == "RTMIN" { '+' } else { '-' }))
            .and_then(|n| n.parse::<u32>().ok())
        {
            return off <= max;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port_keys("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_keys("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            port_keys("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(port_keys("80/xyz").is_err());
        assert!(port_keys("http").is_err());
    }

    #[test]
    fn signals() {
        assert!(valid_signal("SIGTERM"));
        assert!(valid_signal("KILL"));
        assert!(valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGNOPE"));
    }
}
