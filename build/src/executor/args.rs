//! Build arguments and their scopes, as Docker's builder keeps them:
//!
//! - an `ARG` before the first `FROM` (a meta arg) is visible in `FROM` lines only, and in a
//!   stage that declares it again without a default (`ARG NAME`);
//! - an `ARG` inside a stage is visible from there to the end of the stage;
//! - `--build-arg` overrides the default of a declared arg; the proxy variables
//!   (`HTTP_PROXY`, `no_proxy`, …) need no declaration and are left out of history unless
//!   declared;
//! - a `--build-arg` nothing declared is reported at the end.

use std::collections::{BTreeMap, BTreeSet};

/// The proxy variables every build accepts without an `ARG`.
pub const PREDEFINED: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Build args of the build, and the ones in scope in the current stage.
#[derive(Debug, Clone, Default)]
pub struct Args {
    cli: BTreeMap<String, String>,
    meta: BTreeMap<String, Option<String>>,
    allowed: BTreeMap<String, Option<String>>,
    referenced: BTreeSet<String>,
}

impl Args {
    /// The `--build-arg` values.
    pub fn new(cli: &[(String, String)]) -> Args {
        Args {
            cli: cli.iter().cloned().collect(),
            ..Args::default()
        }
    }

    fn get(&self, key: &str, mapping: &BTreeMap<String, Option<String>>) -> Option<String> {
        if let Some(v) = self.cli.get(key) {
            return Some(v.clone());
        }
        match mapping.get(key) {
            Some(Some(v)) => Some(v.clone()),
            _ => self.meta.get(key).cloned().flatten(),
        }
    }

    fn all(&self, mapping: &BTreeMap<String, Option<String>>) -> Vec<(String, String)> {
        let mut keys: BTreeSet<&str> = mapping.keys().map(String::as_str).collect();
        keys.extend(PREDEFINED);
        keys.into_iter()
            .filter_map(|k| {
                // Predefined args are there only when given.
                if !mapping.contains_key(k) && !self.cli.contains_key(k) {
                    return None;
                }
                self.get(k, mapping).map(|v| (k.to_string(), v))
            })
            .collect()
    }

    /// Args in scope in the stage, with their values.
    pub fn allowed(&self) -> Vec<(String, String)> {
        self.all(&self.allowed)
    }

    /// Args visible in `FROM` lines.
    pub fn meta(&self) -> Vec<(String, String)> {
        self.all(&self.meta)
    }

    /// An `ARG` in a stage (or before the first `FROM`, with `meta`).
    pub fn declare(&mut self, key: &str, default: Option<String>, meta: bool) {
        if meta {
            self.meta.insert(key.to_string(), default.clone());
        }
        self.allowed.insert(key.to_string(), default);
        self.referenced.insert(key.to_string());
    }

    /// A new stage: only meta args stay visible (after being declared again).
    pub fn enter_stage(&mut self) {
        self.allowed.clear();
    }

    /// Args in scope that Env does not set: what a RUN sees and expansion uses on top of Env.
    pub fn not_in_env(&self, env: &[(String, String)]) -> Vec<(String, String)> {
        self.allowed()
            .into_iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .collect()
    }

    /// Whether an arg goes into history (predefined ones only when declared).
    pub fn recorded(&self, key: &str) -> bool {
        self.allowed.contains_key(key) || !PREDEFINED.contains(&key)
    }

    /// `--build-arg`s no stage declared.
    pub fn unused(&self) -> Vec<String> {
        self.cli
            .keys()
            .filter(|k| !self.referenced.contains(*k) && !PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let mut a = Args::new(&[
            ("V".into(), "cli".into()),
            ("HTTP_PROXY".into(), "http://p:3128".into()),
            ("UNUSED".into(), "x".into()),
        ]);
        a.declare("BASE", Some("alpine".into()), true);
        a.declare("V", Some("1".into()), true);
        assert_eq!(
            a.meta(),
            [
                ("BASE".to_string(), "alpine".to_string()),
                ("HTTP_PROXY".into(), "http://p:3128".into()),
                ("V".into(), "cli".into())
            ]
        );
        a.enter_stage();
        assert_eq!(
            a.allowed(),
            [("HTTP_PROXY".to_string(), "http://p:3128".to_string())]
        );
        a.declare("BASE", None, false);
        assert!(a.allowed().contains(&("BASE".into(), "alpine".into())));
        assert!(!a.recorded("HTTP_PROXY"));
        assert!(a.recorded("BASE"));
        assert_eq!(a.unused(), ["UNUSED"]);
        let env = vec![("BASE".to_string(), "env".to_string())];
        assert!(!a.not_in_env(&env).iter().any(|(k, _)| k == "BASE"));
    }
}
