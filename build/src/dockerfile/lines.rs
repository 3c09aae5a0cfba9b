//! From raw text to logical lines: parser directives (`# escape=`), comments, line
//! continuations and the bodies of heredocs, each logical line with the file line it starts on.
//!
//! The rules are the Dockerfile reference's (and moby/buildkit's parser's), including its
//! quirks: a continuation is the escape character at the end of a line unless another escape
//! character precedes it; comment lines inside a continued instruction are dropped; blank lines
//! inside one are skipped; directives are only recognised before anything else.

use super::error::ParseError;

/// One raw line of the file, without its line ending.
struct RawLine<'a> {
    /// 1-based line number.
    number: usize,
    /// The text without `\n` (and without a `\r` before it).
    text: &'a str,
    /// The text as in the file, with its line ending (heredoc bodies keep it).
    with_ending: &'a str,
}

/// An instruction's text joined from its physical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// The line it starts on.
    pub start: usize,
    /// The last line it uses (before any heredoc body).
    pub end: usize,
    /// The joined text, continuations removed.
    pub text: String,
}

/// Walks a Dockerfile's lines.
pub(crate) struct Lines<'a> {
    raw: Vec<RawLine<'a>>,
    pos: usize,
    /// The escape character (`\` unless a directive says `` ` ``).
    pub escape: char,
    directives_open: bool,
    seen_directives: Vec<String>,
    /// Blank lines found inside continued instructions (Docker warns about them).
    pub empty_continuations: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Lines<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut raw = Vec::new();
        let mut rest = text;
        let mut number = 0;
        while !rest.is_empty() {
            number += 1;
            let (with_ending, next) = match rest.find('\n') {
                Some(i) => rest.split_at(i + 1),
                None => (rest, ""),
            };
            let t = with_ending.strip_suffix('\n').unwrap_or(with_ending);
            let t = t.strip_suffix('\r').unwrap_or(t);
            raw.push(RawLine {
                number,
                text: t,
                with_ending,
            });
            rest = next;
        }
        Lines {
            raw,
            pos: 0,
            escape: '\\',
            directives_open: true,
            seen_directives: Vec::new(),
            empty_continuations: Vec::new(),
        }
    }

    /// The number of the last line read.
    pub fn last_line(&self) -> usize {
        self.pos
    }

    /// The next instruction's logical line, or `None` at the end of the file.
    pub fn next_instruction(&mut self) -> Result<Option<LogicalLine>, ParseError> {
        while self.pos < self.raw.len() {
            let line = &self.raw[self.pos];
            self.pos += 1;
            let number = line.number;
            let trimmed = line.text.trim_start();
            self.directive(trimmed, number)?;
            if is_comment(trimmed) {
                continue;
            }
            let (first, mut done) = self.trim_continuation(trimmed);
            if done && first.is_empty() {
                continue;
            }
            let mut text = first.to_string();
            let mut end = number;
            while !done && self.pos < self.raw.len() {
                let line = &self.raw[self.pos];
                self.pos += 1;
                end = line.number;
                // Directives are over by now; this only closes them.
                self.directives_open = false;
                if is_comment(line.text.trim_start()) {
                    continue;
                }
                if line.text.trim().is_empty() {
                    self.empty_continuations.push(line.number);
                    continue;
                }
                let (part, d) = self.trim_continuation(line.text);
                text.push_str(part);
                done = d;
            }
            return Ok(Some(LogicalLine {
                start: number,
                end,
                text,
            }));
        }
        Ok(None)
    }

    /// Reads a heredoc body up to its terminator line; `start` is the instruction's line, for
    /// the error when the file ends first.
    pub fn heredoc_body(
        &mut self,
        terminator: &str,
        chomp: bool,
        start: usize,
    ) -> Result<String, ParseError> {
        let mut body = String::new();
        while self.pos < self.raw.len() {
            let line = &self.raw[self.pos];
            self.pos += 1;
            let candidate = if chomp {
                line.text.trim_start_matches('\t')
            } else {
                line.text
            };
            if candidate == terminator {
                return Ok(body);
            }
            body.push_str(line.with_ending);
        }
        Err(ParseError::new(
            start,
            format!("unterminated heredoc: no line `{terminator}` ends it"),
        ))
    }

    /// Handles a parser directive (`# escape=\``) while they are allowed.
    fn directive(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if !self.directives_open {
            return Ok(());
        }
        let Some(body) = line.strip_prefix('#') else {
            self.directives_open = false;
            return Ok(());
        };
        let Some((key, value)) = parse_directive(body.trim_start()) else {
            self.directives_open = false;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.directives_open = false;
            return Ok(());
        }
        if self.seen_directives.contains(&key) {
            return Err(ParseError::new(
                number,
                format!("only one {key} parser directive can be used"),
            ));
        }
        self.seen_directives.push(key.clone());
        if key == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::new(
                        number,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Removes a trailing continuation; returns the text and whether the instruction ends here.
    fn trim_continuation<'t>(&self, line: &'t str) -> (&'t str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        let Some(before) = t.strip_suffix(self.escape) else {
            return (line, true);
        };
        if before.is_empty() {
            return ("", false);
        }
        // An escape character before the last one escapes it: no continuation.
        if before.ends_with(self.escape) {
            return (line, true);
        }
        (before, false)
    }
}

/// `key=value` of a directive line (after the `#`): a key of letters and digits starting
/// with a letter, `=`, and a value without surrounding white space.
fn parse_directive(body: &str) -> Option<(&str, &str)> {
    let (key, value) = body.split_once('=')?;
    let key = key.trim_end();
    let mut chars = key.chars();
    if !chars.next()?.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

fn is_comment(trimmed: &str) -> bool {
    trimmed.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<(usize, String)> {
        let mut l = Lines::new(text);
        let mut out = Vec::new();
        while let Some(x) = l.next_instruction().unwrap() {
            out.push((x.start, x.text));
        }
        out
    }

    #[test]
    fn continuations_join_and_comments_inside_are_dropped() {
        let got = all("FROM a\nRUN echo \\\n  one \\\n# a comment\n\n  two\nCMD x\n");
        assert_eq!(
            got,
            vec![
                (1, "FROM a".to_string()),
                (2, "RUN echo   one   two".to_string()),
                (7, "CMD x".to_string()),
            ]
        );
    }

    #[test]
    fn an_escaped_escape_is_not_a_continuation() {
        assert_eq!(
            all("RUN a \\\\\nCMD b"),
            vec![(1, "RUN a \\\\".into()), (2, "CMD b".into())]
        );
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let got = all("# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\n");
        assert_eq!(got[1], (3, "RUN dir c:\\   /w".to_string()));
    }

    #[test]
    fn directives_only_count_before_anything_else() {
        let got = all("FROM a\n# escape=`\nRUN a `\nRUN b\n");
        assert_eq!(got.len(), 3);
        let mut l = Lines::new("# escape=\\\n# escape=`\nFROM a");
        assert!(l.next_instruction().is_err());
        let mut l = Lines::new("# escape=x\nFROM a");
        assert!(l.next_instruction().is_err());
    }

    #[test]
    fn heredoc_bodies_end_at_their_terminator() {
        let mut l = Lines::new("RUN <<EOF\necho hi\n\tEOF\nEOF\nCMD x");
        let first = l.next_instruction().unwrap().unwrap();
        assert_eq!(first.text, "RUN <<EOF");
        assert_eq!(l.heredoc_body("EOF", false, 1).unwrap(), "echo hi\n\tEOF\n");
        assert_eq!(l.next_instruction().unwrap().unwrap().text, "CMD x");
        let mut l = Lines::new("RUN <<EOF\necho");
        l.next_instruction().unwrap();
        assert!(l.heredoc_body("EOF", false, 1).is_err());
    }
}
