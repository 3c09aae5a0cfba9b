//! `--change 'INSTRUCTION …'`: the Dockerfile instructions `docker import` and `docker commit`
//! apply to an image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER,
//! VOLUME, WORKDIR), applied to the config's JSON.

use anyhow::{bail, ensure};
use serde_json::{Map, Value, json};

/// Applies one `--change` to `config` (the image config's `config` object).
pub fn apply(config: &mut Map<String, Value>, change: &str) -> anyhow::Result<()> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(w, r)| (w, r.trim()));
    let invalid = || anyhow::anyhow!("invalid --change `{change}`");
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), json!(command(rest)?));
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), json!(command(rest)?));
        }
        "ENV" => {
            let env = config
                .entry("Env")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .ok_or_else(invalid)?;
            for (k, v) in pairs(rest)? {
                env.retain(|e| {
                    e.as_str()
                        .and_then(|e| e.split_once('='))
                        .is_none_or(|(ek, _)| ek != k)
                });
                env.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config
                .entry("Labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .ok_or_else(invalid)?;
            for (k, v) in pairs(rest)? {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = config
                .entry("ExposedPorts")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .ok_or_else(invalid)?;
            for p in words(rest)? {
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let volumes = config
                .entry("Volumes")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .ok_or_else(invalid)?;
            let list = if rest.starts_with('[') {
                json_list(rest)?
            } else {
                words(rest)?
            };
            for v in list {
                volumes.insert(v, json!({}));
            }
        }
        "USER" => {
            ensure!(!rest.is_empty(), invalid());
            config.insert("User".into(), json!(rest));
        }
        "WORKDIR" => {
            ensure!(
                rest.starts_with('/'),
                "invalid --change `{change}`: WORKDIR must be absolute"
            );
            config.insert("WorkingDir".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            ensure!(!rest.is_empty(), invalid());
            config.insert("StopSignal".into(), json!(rest));
        }
        "ONBUILD" => {
            ensure!(!rest.is_empty(), invalid());
            let list = config
                .entry("OnBuild")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .ok_or_else(invalid)?;
            list.push(json!(rest));
        }
        other => bail!(
            "--change `{change}`: {other} cannot be applied (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR can)"
        ),
    }
    Ok(())
}

/// The exec form (`["a", "b"]`) as given, or the shell form run by `/bin/sh -c`.
fn command(rest: &str) -> anyhow::Result<Vec<String>> {
    if rest.starts_with('[')
        && let Ok(list) = json_list(rest)
    {
        return Ok(list);
    }
    ensure!(!rest.is_empty(), "a command is missing");
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

fn json_list(rest: &str) -> anyhow::Result<Vec<String>> {
    serde_json::from_str(rest)
        .map_err(|e| anyhow::anyhow!("`{rest}` is not a JSON list of strings: {e}"))
}

/// Words, with double or single quotes grouping and backslash escapes, as the Dockerfile
/// parser splits them.
fn words(s: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    ensure!(quote.is_none(), "unmatched quote in `{s}`");
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `K=V K2="v 2"`, or the old `K some value` form (one pair).
fn pairs(rest: &str) -> anyhow::Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow::anyhow!("`{rest}` needs a value"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    words(rest)?
        .into_iter()
        .map(|w| {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("`{w}` is not KEY=VALUE"))?;
            ensure!(!k.is_empty(), "`{w}` has no name");
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Value {
        let mut c = Map::new();
        for ch in changes {
            apply(&mut c, ch).unwrap();
        }
        Value::Object(c)
    }

    #[test]
    fn dockerfile_instructions_become_config() {
        let c = applied(&[
            "CMD [\"/usr/local/bin/hello.sh\"]",
            "ENTRYPOINT /bin/run it",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "LABEL org.example=yes",
            "EXPOSE 80 53/udp",
            "WORKDIR /srv",
            "USER app",
        ]);
        assert_eq!(c["Cmd"], json!(["/usr/local/bin/hello.sh"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/run it"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["Labels"]["org.example"], "yes");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "app");
    }

    #[test]
    fn other_instructions_are_refused_by_name() {
        let e = apply(&mut Map::new(), "RUN rm -rf /")
            .unwrap_err()
            .to_string();
        assert!(e.contains("RUN cannot be applied"), "{e}");
        assert!(apply(&mut Map::new(), "WORKDIR relative").is_err());
    }
}
