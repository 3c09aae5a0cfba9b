//! `.dockerignore`: which files of the build context a build may see.
//!
//! Docker's rules: one pattern per line; `#` lines are comments; patterns are cleaned like
//! paths (`./a/` is `a`, a leading `/` is dropped); `!` makes an exception; the last pattern
//! that matches a path, or one of its parent directories, decides. The Dockerfile and
//! `.dockerignore` themselves are always sent, as the Docker CLI does.

use crate::glob::{BadPattern, Pattern};

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(Pattern, bool)>,
    exceptions: bool,
}

impl Ignore {
    /// Parses a `.dockerignore` file's text; `always_kept` are paths that stay visible
    /// whatever it says (the Dockerfile, `.dockerignore`).
    pub fn parse(text: &str, always_kept: &[&str]) -> Result<Ignore, BadPattern> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let cleaned = clean(p);
            if exception && cleaned.is_empty() {
                return Err(BadPattern("!".into()));
            }
            if cleaned.is_empty() {
                continue;
            }
            rules.push((Pattern::ignore(&cleaned)?, exception));
        }
        let mut ignore = Ignore {
            exceptions: rules.iter().any(|(_, e)| *e),
            rules,
        };
        for kept in always_kept {
            let k = clean(kept);
            if !k.is_empty() && ignore.excludes(&k) {
                ignore.rules.push((Pattern::ignore(&escape(&k))?, true));
                ignore.exceptions = true;
            }
        }
        Ok(ignore)
    }

    /// Whether the context path `rel` (with `/` separators, no leading `/`) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        if rel.is_empty() || rel == "." {
            return false;
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let mut matched = false;
        for (pattern, exception) in &self.rules {
            if *exception != matched {
                continue;
            }
            let hit = pattern.matches(rel)
                || (1..parts.len()).any(|n| pattern.matches(&parts[..n].join("/")));
            if hit {
                matched = !exception;
            }
        }
        matched
    }

    /// Whether an excluded directory may still hold included files (an exception exists), so
    /// a walk must look inside it.
    pub fn has_exceptions(&self) -> bool {
        self.exceptions
    }
}

/// `filepath.Clean` for patterns, then the leading `/` removed.
fn clean(p: &str) -> String {
    let absolute = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !absolute {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

fn escape(path: &str) -> String {
    let mut s = String::new();
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text, &["Dockerfile", ".dockerignore"]).unwrap()
    }

    #[test]
    fn patterns_and_exceptions() {
        let i = ig("# comment\n*.md\n!README.md\ntmp/\n/build\n**/*.o\n");
        assert!(i.excludes("notes.md"));
        assert!(!i.excludes("README.md"));
        assert!(!i.excludes("docs/notes.md"));
        assert!(i.excludes("tmp"));
        assert!(i.excludes("tmp/a/b"));
        assert!(i.excludes("build/x"));
        assert!(i.excludes("src/x/y.o"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn exceptions_reach_into_excluded_directories() {
        let i = ig("docs\n!docs/keep.md\n");
        assert!(i.excludes("docs"));
        assert!(i.excludes("docs/other.md"));
        assert!(!i.excludes("docs/keep.md"));
        assert!(i.has_exceptions());
    }

    #[test]
    fn the_build_files_are_always_sent() {
        let i = ig("*\n");
        assert!(i.excludes("anything"));
        assert!(!i.excludes("Dockerfile"));
        assert!(!i.excludes(".dockerignore"));
    }

    #[test]
    fn a_lone_bang_is_an_error() {
        assert!(Ignore::parse("!\n", &[]).is_err());
    }
}
