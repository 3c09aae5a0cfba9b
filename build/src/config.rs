//! The image config a build writes, with the Docker fields the OCI model lacks (Healthcheck,
//! OnBuild, Shell), the manifest beside it, and history lines in Docker's classic style
//! (`/bin/sh -c #(nop)  ENV A=1`).

use std::collections::BTreeMap;

use ferry_oci::Digest;
use ferry_oci::archive::BlobRef;
use ferry_oci::media_type;
use serde::{Deserialize, Serialize};

/// An empty JSON object (`"80/tcp": {}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The image config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// MAINTAINER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// What a container gets.
    #[serde(default)]
    pub config: RunConfig,
    /// The layers' diff_ids.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// The `config` part: what `docker run` starts with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// USER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// ENV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// VOLUME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// WORKDIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// ONBUILD triggers.
    #[serde(default, rename = "OnBuild", skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields ferry does not interpret, kept as they came (from a base image).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// HEALTHCHECK in the config (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", …]`, `["CMD-SHELL", "…"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// `--interval`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// `--timeout`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// `--start-period`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// `--start-interval`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// `--retries`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Bottom layer first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The step, in Docker's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// MAINTAINER at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The step added no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The config blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an image config serializes")
    }

    /// The config's Env as `(key, value)` pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect()
    }

    /// Sets `key=value` in Env, replacing an earlier value in place.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }
}

/// Which manifest format an image uses (a build keeps its base image's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Docker schema 2.
    Docker,
    /// OCI.
    Oci,
}

impl Flavour {
    /// The flavour of a manifest media type.
    pub fn of(manifest_media_type: &str) -> Flavour {
        if manifest_media_type == media_type::OCI_MANIFEST {
            Flavour::Oci
        } else {
            Flavour::Docker
        }
    }

    /// The manifest media type.
    pub fn manifest_type(self) -> &'static str {
        match self {
            Flavour::Docker => media_type::DOCKER_MANIFEST,
            Flavour::Oci => media_type::OCI_MANIFEST,
        }
    }

    /// The media type of a gzip layer.
    pub fn layer_type(self) -> &'static str {
        match self {
            Flavour::Docker => media_type::DOCKER_LAYER_GZIP,
            Flavour::Oci => media_type::OCI_LAYER_GZIP,
        }
    }

    fn config_type(self) -> &'static str {
        match self {
            Flavour::Docker => media_type::DOCKER_CONFIG,
            Flavour::Oci => media_type::OCI_CONFIG,
        }
    }
}

/// The manifest of an image: its config and layers.
pub fn manifest(
    flavour: Flavour,
    config: &Digest,
    config_size: u64,
    layers: &[BlobRef],
) -> Vec<u8> {
    let desc = |media: &str, digest: &Digest, size: u64| serde_json::json!({"mediaType": media, "size": size, "digest": digest.to_string()});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": flavour.manifest_type(),
        "config": desc(flavour.config_type(), config, config_size),
        "layers": layers.iter().map(|l| desc(&l.media_type, &l.digest, l.size)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).expect("a manifest serializes")
}

/// RFC 3339 in UTC, with nanoseconds when there are any (Go's `RFC3339Nano`).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Go's `%q` of a string.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration` string (`1m30s`, `500ms`, `0s`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", trim_frac(u, 1_000))
    } else if u < 1_000_000_000 {
        format!("{}ms", trim_frac(u, 1_000_000))
    } else {
        let h = u / 3_600_000_000_000;
        let m = u / 60_000_000_000 % 60;
        let s = trim_frac(u % 60_000_000_000, 1_000_000_000);
        match (h, m) {
            (0, 0) => format!("{s}s"),
            (0, m) => format!("{m}m{s}s"),
            (h, m) => format!("{h}h{m}m{s}s"),
        }
    };
    if neg { format!("-{body}") } else { body }
}

fn trim_frac(v: u64, unit: u64) -> String {
    let whole = v / unit;
    let frac = v % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// A healthcheck as Docker 20.10's classic builder writes it into history: Go's `%q` of the
/// config struct (each field quoted, the retry count as a character literal).
pub fn healthcheck_text(h: &HealthConfig) -> String {
    format!(
        "&{{{} {} {} {} {}}}",
        go_quote_list(&h.test),
        go_quote(&go_duration(h.interval)),
        go_quote(&go_duration(h.timeout)),
        go_quote(&go_duration(h.start_period)),
        go_char(h.retries)
    )
}

/// Go's `%q` of an integer: a quoted character literal (`'\x02'`, `'A'`).
fn go_char(n: i64) -> String {
    match u32::try_from(n).ok().and_then(char::from_u32) {
        Some('\'') => "'\\''".into(),
        Some('\\') => "'\\\\'".into(),
        Some(c) if c.is_ascii_graphic() || c == ' ' => format!("'{c}'"),
        Some(c) if (c as u32) < 0x80 => format!("'\\x{:02x}'", c as u32),
        Some(c) if !c.is_control() => format!("'{c}'"),
        Some(c) if (c as u32) <= 0xffff => format!("'\\u{:04x}'", c as u32),
        Some(c) => format!("'\\U{:08x}'", c as u32),
        None => "'\\ufffd'".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339(1_704_067_200, 0), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(0, 500_000_000), "1970-01-01T00:00:00.5Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn go_formats() {
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_list(&["/data".into()]), "[/data]");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        let h = HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5_000_000_000,
            retries: 2,
            ..HealthConfig::default()
        };
        assert_eq!(
            healthcheck_text(&h),
            r#"&{["CMD-SHELL" "true"] "5s" "0s" "0s" '\x02'}"#
        );
    }

    #[test]
    fn configs_round_trip_unknown_fields() {
        let text = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Hostname":"x","OnBuild":["RUN x"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(text).unwrap();
        assert_eq!(
            c.config.on_build.as_deref(),
            Some(&["RUN x".to_string()][..])
        );
        let back = String::from_utf8(c.to_bytes()).unwrap();
        assert!(back.contains("\"Hostname\":\"x\""), "{back}");
        let mut c = c;
        c.set_env("A", "2");
        c.set_env("B", "3");
        assert_eq!(c.config.env.unwrap(), ["A=2", "B=3"]);
    }
}
