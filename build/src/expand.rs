//! Variable expansion in Dockerfile arguments: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR:+alt}`, `${VAR-d}`, `${VAR+a}`, `${VAR:?msg}`, `${VAR#pat}`, `${VAR%pat}` (and `##`,
//! `%%`), `${VAR/pat/rep}`; quote removal and the escape character, as Docker's shell lexer
//! does it for ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG.
//!
//! [`word`] keeps white space (one argument); [`words`] splits the result into words,
//! splitting expanded values too, but not quoted text.

use crate::glob;

/// Why a word cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process \"{word}\": {reason}")]
pub struct ExpandError {
    /// The word as written.
    pub word: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Looks variables up.
pub trait Env {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        // Later entries win, as in Docker's lookup.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Env::get(self.as_slice(), name)
    }
}

/// Expands one word (white space kept).
pub fn word(text: &str, escape: char, env: &dyn Env) -> Result<String, ExpandError> {
    let mut s = Scanner::new(text, escape, env);
    s.run(None).map(|(w, _)| w).map_err(|reason| ExpandError {
        word: text.to_string(),
        reason,
    })
}

/// Expands variables only, keeping quotes as they are (a COPY heredoc's body).
pub fn word_keeping_quotes(text: &str, escape: char, env: &dyn Env) -> Result<String, ExpandError> {
    let mut s = Scanner::new(text, escape, env);
    s.keep_quotes = true;
    s.raw_escapes = true;
    s.run(None).map(|(w, _)| w).map_err(|reason| ExpandError {
        word: text.to_string(),
        reason,
    })
}

/// Expands and splits into words (EXPOSE, FROM's word list).
pub fn words(text: &str, escape: char, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
    let mut s = Scanner::new(text, escape, env);
    s.run(None).map(|(_, w)| w).map_err(|reason| ExpandError {
        word: text.to_string(),
        reason,
    })
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Env,
    /// Whether escape characters are kept (inside `${x#…}` patterns).
    raw_escapes: bool,
    /// Quotes are ordinary characters.
    keep_quotes: bool,
    /// How many `${…}` the scanner is inside (each one a recursion).
    depth: usize,
}

/// How deeply `${…}` may nest: each level recurses, and a Dockerfile nesting thousands
/// overflowed the stack (found by fuzzing). Real ones nest two or three.
const MAX_NESTING: usize = 64;

/// The words being split while a word is built.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.buf.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }

    fn add_raw_str(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

impl<'a> Scanner<'a> {
    fn new(text: &str, escape: char, env: &'a dyn Env) -> Self {
        Scanner {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            env,
            raw_escapes: false,
            keep_quotes: false,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes up to `stop` (consumed) or the end; returns the text and its words.
    fn run(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        if self.depth > MAX_NESTING {
            return Err(format!(
                "substitutions nested deeper than {MAX_NESTING} levels"
            ));
        }
        self.depth += 1;
        let scanned = self.scan(stop);
        self.depth -= 1;
        scanned
    }

    fn scan(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match c {
                '$' => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                    words.add_str(&v);
                }
                '\'' if !self.keep_quotes => {
                    let v = self.single_quote()?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                '"' if !self.keep_quotes => {
                    let v = self.double_quote()?;
                    result.push_str(&v);
                    words.add_raw_str(&v);
                }
                _ => {
                    self.pos += 1;
                    if c == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        let Some(n) = self.next() else { break };
                        words.add_raw_char(n);
                        result.push(n);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c == self.escape {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            Some(_) => out.push(c),
                        }
                        continue;
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && "@*#?-$!0".contains(c) {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.env.get(&name).unwrap_or_default().to_string());
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let Some(c) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let value = self.env.get(&name).map(str::to_string);
        match c {
            '}' => Ok(value.unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (colon, op) = if c == ':' {
                    match self.next() {
                        Some(o) => (true, o),
                        None => return Err("syntax error: missing '}'".into()),
                    }
                } else {
                    (false, c)
                };
                let pattern_op = op == '#' || op == '%';
                if colon && pattern_op {
                    return Err(format!("unsupported modifier (:{op}) in substitution"));
                }
                if !matches!(op, '+' | '-' | '?' | '#' | '%') {
                    return Err(format!(
                        "unsupported modifier ({}{op}) in substitution",
                        if colon { ":" } else { "" }
                    ));
                }
                let saved = self.raw_escapes;
                self.raw_escapes = pattern_op;
                let word = self.run(Some('}'));
                self.raw_escapes = saved;
                let (word, _) = word.map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                let unset = match &value {
                    None => true,
                    Some(v) => colon && v.is_empty(),
                };
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => {
                        if unset {
                            let what = if value.is_none() {
                                "is not allowed to be unset"
                            } else {
                                "is not allowed to be empty"
                            };
                            Err(format!(
                                "{name}: {}",
                                if word.is_empty() { what } else { &word }
                            ))
                        } else {
                            Ok(value.unwrap_or_default())
                        }
                    }
                    _ => {
                        let v = value.unwrap_or_default();
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(p) => (true, p.to_string()),
                            None => (false, word),
                        };
                        Ok(if op == '#' {
                            trim_prefix(&v, &pattern, greedy)
                        } else {
                            trim_suffix(&v, &pattern, greedy)
                        })
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let saved = self.raw_escapes;
                self.raw_escapes = true;
                let pattern = self.run(Some('/'));
                let replacement = match &pattern {
                    Ok(_) => self.run(Some('}')),
                    Err(e) => Err(e.clone()),
                };
                self.raw_escapes = saved;
                let (pattern, _) = pattern.map_err(|_| "syntax error: missing '/' in ${}")?;
                let (replacement, _) = replacement.map_err(|_| "syntax error: missing '}'")?;
                Ok(replace(
                    &value.unwrap_or_default(),
                    &pattern,
                    &replacement,
                    all,
                ))
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }
}

/// Character boundaries of `s`, both ends included.
fn bounds(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

fn trim_prefix(value: &str, pattern: &str, greedy: bool) -> String {
    let b = bounds(value);
    let mut cut: Option<usize> = None;
    for &i in &b {
        if glob::matches_shell(pattern, &value[..i]) {
            cut = Some(i);
            if !greedy {
                break;
            }
        }
    }
    cut.map_or_else(|| value.to_string(), |i| value[i..].to_string())
}

fn trim_suffix(value: &str, pattern: &str, greedy: bool) -> String {
    let b = bounds(value);
    let mut cut: Option<usize> = None;
    for &i in b.iter().rev() {
        if glob::matches_shell(pattern, &value[i..]) {
            cut = Some(i);
            if !greedy {
                break;
            }
        }
    }
    cut.map_or_else(|| value.to_string(), |i| value[..i].to_string())
}

/// `${v/pat/rep}` and `${v//pat/rep}`: leftmost, longest matches.
fn replace(value: &str, pattern: &str, replacement: &str, all: bool) -> String {
    if pattern.is_empty() {
        return value.to_string();
    }
    let b = bounds(value);
    let mut out = String::new();
    let mut start_idx = 0;
    let mut i = 0;
    while i < b.len() {
        let start = b[i];
        let end = b[i..]
            .iter()
            .rev()
            .copied()
            .find(|&e| e > start && glob::matches_shell(pattern, &value[start..e]));
        match end {
            Some(e) => {
                out.push_str(&value[b[start_idx]..start]);
                out.push_str(replacement);
                i = b.iter().position(|&x| x == e).unwrap_or(b.len() - 1);
                start_idx = i;
                if !all {
                    break;
                }
            }
            None => i += 1,
        }
    }
    out.push_str(&value[b[start_idx.min(b.len() - 1)]..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [("A", "x"), ("E", ""), ("P", "/usr/local/bin/tool.tar.gz")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn w(t: &str) -> String {
        word(t, '\\', &env()).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "x");
        assert_eq!(w("${A}y"), "xy");
        assert_eq!(w("$Ay"), "");
        assert_eq!(w("$NOPE-"), "-");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "x b");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${A:-d}"), "x");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${NOPE-d}"), "d");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${E:+alt}"), "");
        assert_eq!(w("${E+alt}"), "alt");
        assert_eq!(w("${NOPE:-$A}"), "x");
        assert_eq!(w("${P#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${P##*/}"), "tool.tar.gz");
        assert_eq!(w("${P%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${P%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${P/local/opt}"), "/usr/opt/bin/tool.tar.gz");
        assert_eq!(w("${P//o/0}"), "/usr/l0cal/bin/t00l.tar.gz");
        let e = word("${NOPE:?must be set}", '\\', &env()).unwrap_err();
        assert_eq!(e.reason, "NOPE: must be set");
        assert!(word("${A", '\\', &env()).is_err());
        assert!(word("${}", '\\', &env()).is_err());
        assert!(word("${A:#x}", '\\', &env()).is_err());
        assert!(word("'open", '\\', &env()).is_err());
    }

    #[test]
    fn word_splitting() {
        let env = vec![("PORTS".to_string(), "80 443/udp".to_string())];
        assert_eq!(
            words("$PORTS 8080", '\\', &env).unwrap(),
            ["80", "443/udp", "8080"]
        );
        assert_eq!(words("\"a b\" c", '\\', &env).unwrap(), ["a b", "c"]);
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(word("c:\\dir `$A", '`', &env()).unwrap(), "c:\\dir $A");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for t in [
            "${", "${A", "${A:", "${A/", "${A//", "$", "\\", "\"", "${A/é/}", "${A#[}",
        ] {
            let _ = word(t, '\\', &env());
        }
    }
}
