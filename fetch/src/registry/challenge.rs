//! `WWW-Authenticate` challenges (RFC 7235), as registries send them on `401`.
//!
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"` says where to get
//! a token; `Basic realm="Registry"` asks for the password on every request. The header is
//! parsed rather than the endpoints hard-coded, so any registry works.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` for `service`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// The `service` parameter to send back, if the registry named one.
        service: Option<String>,
        /// The scope the registry says was missing, if any.
        scope: Option<String>,
        /// `error="insufficient_scope"` and friends.
        error: Option<String>,
    },
    /// Send user name and password with each request.
    Basic,
}

/// Parses every challenge in the header values, ignoring schemes ferry does not speak.
pub fn parse(values: &[&str]) -> Vec<Challenge> {
    values.iter().flat_map(|v| parse_one(v)).collect()
}

fn parse_one(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let scheme = rest[..end].to_ascii_lowercase();
        // Trim what ended the scheme, whatever whitespace it was: trimming less (only space
        // and tab) left a form feed in place and the loop never advanced.
        rest = rest[end..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        let (params, after) = parse_params(rest);
        rest = after;
        match scheme.as_str() {
            "bearer" => {
                if let Some(realm) = params.get("realm").filter(|r| !r.is_empty()) {
                    out.push(Challenge::Bearer {
                        realm: realm.clone(),
                        service: params.get("service").cloned(),
                        scope: params.get("scope").cloned(),
                        error: params.get("error").cloned(),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic),
            _ => {}
        }
    }
    out
}

/// Reads `key=value` / `key="quoted, value"` pairs until the next scheme name.
fn parse_params(mut s: &str) -> (BTreeMap<String, String>, &str) {
    let mut params = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', '\t', ',']);
        let Some(eq) = s.find('=') else { break };
        let key = &s[..eq];
        // A token followed by whitespace before `=` is the next challenge's scheme.
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',') {
            break;
        }
        let mut value = String::new();
        let mut chars = s[eq + 1..].char_indices();
        let consumed;
        if s[eq + 1..].starts_with('"') {
            chars.next();
            let mut escaped = false;
            let mut end = s.len() - eq - 1;
            for (i, c) in chars.by_ref() {
                if escaped {
                    value.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = i + 1;
                    break;
                } else {
                    value.push(c);
                }
            }
            consumed = eq + 1 + end;
        } else {
            let v = &s[eq + 1..];
            let end = v.find([',', ' ', '\t']).unwrap_or(v.len());
            value.push_str(&v[..end]);
            consumed = eq + 1 + end;
        }
        params.insert(key.to_ascii_lowercase(), value);
        s = &s[consumed.min(s.len())..];
    }
    (params, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(&[
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ]);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
                error: None,
            }]
        );
    }

    #[test]
    fn basic_and_unquoted_values_and_escapes() {
        assert_eq!(
            parse(&[r#"Basic realm="Registry Realm""#]),
            vec![Challenge::Basic]
        );
        let c = parse(&[
            r#"bearer realm=https://r.lan/t, service="a \"q\" b", error="insufficient_scope""#,
        ]);
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://r.lan/t".into(),
                service: Some(r#"a "q" b"#.into()),
                scope: None,
                error: Some("insufficient_scope".into()),
            }]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let c = parse(&[r#"Basic realm="x", Bearer realm="https://t.lan/token",service="s""#]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], Challenge::Basic);
        assert!(matches!(&c[1], Challenge::Bearer { realm, .. } if realm == "https://t.lan/token"));
    }

    /// Found by fuzzing (`scripts/fuzz`, target `challenge`): whitespace other than space
    /// and tab after a scheme made the parser loop forever.
    #[test]
    fn any_whitespace_after_a_scheme_ends_in_a_result() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let c = parse(&[
                "Bearer\u{c}realm=\"https://t.lan/token\"",
                "Basic \u{a0}x\u{b}",
            ]);
            let _ = tx.send(c);
        });
        let c = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("parsing a header with a form feed never finished");
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(matches!(&c[0], Challenge::Bearer { realm, .. } if realm == "https://t.lan/token"));
        assert_eq!(c[1], Challenge::Basic);
    }

    #[test]
    fn unknown_schemes_and_garbage_are_ignored() {
        assert!(parse(&["Negotiate abc", "", "Bearer"]).is_empty());
    }
}
