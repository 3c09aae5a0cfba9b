//! Wildcard matching, in the three dialects a Dockerfile build meets:
//!
//! - [`matches_path`]: COPY/ADD sources, Go's `filepath.Match` (`*` and `?` stop at `/`,
//!   `[a-z]`, `[^a]`, `\` escapes);
//! - [`Pattern`] with `**`: `.dockerignore` lines (`**` spans directories);
//! - [`matches_shell`]: `${VAR#pattern}` and friends (`*` spans anything, no classes).
//!
//! Matching is a dynamic programme over (pattern position, text position), so no pattern can
//! make it take exponential time.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `*` (within a path segment unless `cross`).
    Star {
        cross: bool,
    },
    /// `?`.
    One {
        cross: bool,
    },
    /// `[...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` in the middle: any number of whole directories, or none.
    Dirs,
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    toks: Vec<Tok>,
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern `{0}`")]
pub struct BadPattern(pub String);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Path,
    Ignore,
    Shell,
}

impl Pattern {
    /// A COPY/ADD source pattern.
    pub fn path(text: &str) -> Result<Pattern, BadPattern> {
        compile(text, Dialect::Path)
    }

    /// A `.dockerignore` pattern (already cleaned).
    pub fn ignore(text: &str) -> Result<Pattern, BadPattern> {
        compile(text, Dialect::Ignore)
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        run(&self.toks, &t)
    }
}

/// Whether a COPY/ADD source name contains wildcards (an escaped one does not count).
pub fn has_wildcards(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Go's `filepath.Match`; a malformed pattern matches nothing.
pub fn matches_path(pattern: &str, name: &str) -> bool {
    Pattern::path(pattern).is_ok_and(|p| p.matches(name))
}

/// A shell pattern of `${VAR#…}`: `*` and `?` match anything, `\` escapes.
pub fn matches_shell(pattern: &str, text: &str) -> bool {
    compile(pattern, Dialect::Shell).is_ok_and(|p| p.matches(text))
}

fn compile(text: &str, dialect: Dialect) -> Result<Pattern, BadPattern> {
    let bad = || BadPattern(text.to_string());
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let cross = dialect == Dialect::Shell;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if dialect == Dialect::Ignore && chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    toks.push(Tok::Star { cross: true });
                } else {
                    toks.push(Tok::Dirs);
                }
            }
            '*' => {
                // Consecutive stars mean the same as one.
                if toks.last() != Some(&Tok::Star { cross }) {
                    toks.push(Tok::Star { cross });
                }
            }
            '?' => toks.push(Tok::One { cross }),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    i += 1;
                    toks.push(Tok::Lit(n));
                }
                None if dialect == Dialect::Path => return Err(bad()),
                None => toks.push(Tok::Lit('\\')),
            },
            '[' if dialect != Dialect::Shell => {
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(bad());
                    };
                    i += 1;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let Some(&e) = chars.get(i) else {
                            return Err(bad());
                        };
                        i += 1;
                        e
                    } else {
                        c
                    };
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                        i += 1;
                        let Some(&h) = chars.get(i) else {
                            return Err(bad());
                        };
                        i += 1;
                        hi = if h == '\\' {
                            let Some(&e) = chars.get(i) else {
                                return Err(bad());
                            };
                            i += 1;
                            e
                        } else {
                            h
                        };
                        if hi < lo {
                            return Err(bad());
                        }
                    }
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class { negated, ranges });
            }
            ']' if dialect == Dialect::Path => return Err(bad()),
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(Pattern { toks })
}

/// Whether `toks` match all of `text`: `reach[j]` says the pattern so far can end at `j`.
fn run(toks: &[Tok], text: &[char]) -> bool {
    let n = text.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for tok in toks {
        let mut next = vec![false; n + 1];
        match tok {
            Tok::Star { cross } => {
                let mut open = false;
                for j in 0..=n {
                    if reach[j] {
                        open = true;
                    }
                    if open {
                        next[j] = true;
                    }
                    if j < n && !cross && text[j] == '/' {
                        open = false;
                    }
                }
            }
            Tok::Dirs => {
                // Nothing, or anything ending in `/`.
                let mut open = false;
                for j in 0..=n {
                    if reach[j] {
                        next[j] = true;
                        open = true;
                    }
                    if open && j > 0 && text[j - 1] == '/' {
                        next[j] = true;
                    }
                }
            }
            _ => {
                for j in 0..n {
                    if reach[j] && single(tok, text[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
        if !reach.iter().any(|r| *r) {
            return false;
        }
    }
    reach[n]
}

fn single(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Lit(l) => *l == c,
        Tok::One { cross } => *cross || c != '/',
        Tok::Class { negated, ranges } => {
            c != '/' && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
        Tok::Star { .. } | Tok::Dirs => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match() {
        assert!(matches_path("*.txt", "a.txt"));
        assert!(!matches_path("*.txt", "d/a.txt"));
        assert!(matches_path("d/*.txt", "d/a.txt"));
        assert!(matches_path("file?", "file1"));
        assert!(!matches_path("file?", "file10"));
        assert!(matches_path("[a-c]x", "bx"));
        assert!(!matches_path("[^a-c]x", "bx"));
        assert!(matches_path("a\\*b", "a*b"));
        assert!(!matches_path("[", "["));
        assert!(has_wildcards("a*"));
        assert!(!has_wildcards("a\\*"));
    }

    #[test]
    fn dockerignore_double_star() {
        let p = Pattern::ignore("**/*.go").unwrap();
        assert!(p.matches("a.go"));
        assert!(p.matches("x/y/a.go"));
        assert!(!p.matches("a.gox"));
        let p = Pattern::ignore("dir/**").unwrap();
        assert!(p.matches("dir/a/b"));
        let p = Pattern::ignore("a/**/b").unwrap();
        assert!(p.matches("a/b"));
        assert!(p.matches("a/x/y/b"));
        assert!(!p.matches("a/xb"));
    }

    #[test]
    fn shell_patterns_cross_slashes() {
        assert!(matches_shell("*/", "/usr/"));
        assert!(matches_shell("a?c", "a/c"));
        assert!(matches_shell("[x]", "[x]"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let p = Pattern::path(&"*a".repeat(200)).unwrap();
        assert!(!p.matches(&"a".repeat(150)));
    }
}
