//! `--filter KEY=VALUE`, as Docker reads it: values of one key are alternatives (any may
//! match), different keys must all match. Each command says which keys it takes; any other
//! key is refused, naming it.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};

/// The filters of one command line.
#[derive(Debug, Default)]
pub struct Filters {
    values: BTreeMap<String, Vec<String>>,
}

impl Filters {
    /// Parses `--filter` arguments; `accepted` are the keys the command knows.
    pub fn parse(args: &[String], accepted: &[&str]) -> anyhow::Result<Filters> {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((key, value)) = a.split_once('=') else {
                bail!("bad format of filter `{a}` (expected name=value)");
            };
            let key = key.trim().to_ascii_lowercase();
            if !accepted.contains(&key.as_str()) {
                bail!(
                    "invalid filter '{key}' (this command takes: {})",
                    accepted.join(", ")
                );
            }
            values.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters { values })
    }

    /// The values given for `key`.
    pub fn get(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }

    /// Whether `key` was given.
    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// True when `key` was not given, or when `matches` holds for one of its values.
    pub fn any(&self, key: &str, matches: impl Fn(&str) -> bool) -> bool {
        !self.has(key) || self.get(key).iter().any(|v| matches(v))
    }

    /// Docker's `Match`: a value matches `text` exactly or as a regular expression found in it.
    pub fn matches_regex(&self, key: &str, texts: &[&str]) -> bool {
        self.any(key, |pattern| {
            texts
                .iter()
                .any(|t| *t == pattern || regex::Regex::new(pattern).is_ok_and(|re| re.is_match(t)))
        })
    }

    /// `label=KEY` (present) or `label=KEY=VALUE`: every value given must hold.
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.get("label").iter().all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
            None => labels.contains_key(l.as_str()),
        })
    }

    /// A boolean filter (`dangling=true`); refused when the value is not a boolean.
    pub fn bool(&self, key: &str) -> anyhow::Result<Option<bool>> {
        let mut out = None;
        for v in self.get(key) {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(anyhow!(
                        "invalid filter '{key}={v}': expected true or false"
                    ));
                }
            };
            out = Some(b);
        }
        Ok(out)
    }
}

/// Go's `path.Match`: `*` is any run of characters but `/`, `?` one character but `/`,
/// `[…]` a class (`[^…]` negated, ranges `a-z`), `\` escapes.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern).
        let mut i = 1;
        let negate = matches!(p.get(i), Some('^') | Some('!'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let lo = *p.get(i)?;
            if lo == ']' && !first {
                break;
            }
            first = false;
            let lo = if lo == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                lo
            };
            i += 1;
            let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|h| *h != ']') {
                i += 1;
                let h = if p[i] == '\\' {
                    i += 1;
                    *p.get(i)?
                } else {
                    p[i]
                };
                i += 1;
                h
            } else {
                lo
            };
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        Some((matched != negate, i + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len())
                .take_while(|&n| n == 0 || t[n - 1] != '/')
                .any(|n| go(&p[1..], &t[n..])),
            Some('?') => t.first().is_some_and(|c| *c != '/') && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(p, t.first().copied().unwrap_or('\0'))) {
                (Some(c), Some((true, len))) if *c != '/' => go(&p[len..], &t[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&p[2..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("busy*", "ferry/busybox"));
        assert!(glob("*/busybox", "ferry/busybox"));
        assert!(glob("ferry/b?sybox:l[a-c]test", "ferry/busybox:latest"));
        assert!(!glob("ferry/b?sybox:l[^a-c]test", "ferry/busybox:latest"));
        assert!(!glob("*", "a/b"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = Filters::parse(&["colour=red".into()], &["label", "dangling"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid filter 'colour'"), "{e}");
        assert!(Filters::parse(&["nokey".into()], &["label"]).is_err());
        let f = Filters::parse(&["dangling=maybe".into()], &["dangling"]).unwrap();
        assert!(f.bool("dangling").is_err());
    }

    #[test]
    fn values_of_one_key_are_alternatives() {
        let f = Filters::parse(
            &["name=^web".into(), "name=db$".into(), "label=a".into()],
            &["name", "label"],
        )
        .unwrap();
        assert!(f.matches_regex("name", &["web1"]));
        assert!(f.matches_regex("name", &["mydb"]));
        assert!(!f.matches_regex("name", &["cache"]));
        let mut labels = BTreeMap::new();
        assert!(!f.labels_match(&labels));
        labels.insert("a".to_string(), "x".to_string());
        assert!(f.labels_match(&labels));
    }
}
