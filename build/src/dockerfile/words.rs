//! Splitting an instruction's text: the keyword, its `--flags`, and its arguments in the
//! forms the reference defines (JSON arrays, white-space lists, quoted words, `KEY=VALUE`).
//!
//! Quotes are kept here; they are removed later, when variables are expanded, exactly as
//! Docker does it (so `ENV A="x y"` keeps its space and loses its quotes at the same time).

/// White space between words, as Docker's `[\t\v\f\r ]+`.
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of white space (no quoting).
pub(crate) fn split_whitespace(text: &str) -> Vec<String> {
    text.split(is_separator)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `KEYWORD rest` → the keyword, the leading `--flags`, and the rest (trimmed).
pub(crate) fn split_command(line: &str, escape: char) -> (String, Vec<String>, String) {
    let line = line.trim();
    let (cmd, rest) = match line.find(is_separator) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_separator)),
        None => (line, ""),
    };
    let (flags, args) = extract_flags(rest, escape);
    (cmd.to_string(), flags, args.trim().to_string())
}

/// Takes the words starting with `--` off the front of `line` (quotes and escapes removed
/// inside them); a bare `--` ends the flags.
fn extract_flags(line: &str, escape: char) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace());
        if !trimmed.starts_with("--") {
            return (flags, trimmed.to_string());
        }
        let (word, after) = take_word(trimmed, escape);
        rest = after;
        if word == "--" {
            return (flags, rest.to_string());
        }
        if !word.is_empty() {
            flags.push(word);
        }
        if rest.is_empty() {
            return (flags, String::new());
        }
    }
}

/// One flag word: up to unquoted white space, quotes removed, escapes applied.
fn take_word(text: &str, escape: char) -> (String, &str) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match quote {
            None if c.is_whitespace() => return (word, &text[i..]),
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ if c == escape => {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
            }
            _ => word.push(c),
        }
    }
    (word, "")
}

/// Words separated by white space, quotes and escapes kept (removed later by expansion).
pub(crate) fn parse_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            // The escape character escapes anything inside double quotes, nothing inside
            // single quotes.
            if c == escape && q != '\'' {
                match chars.next() {
                    Some(n) => {
                        word.push(c);
                        word.push(n);
                    }
                    None => quote = None,
                }
                continue;
            }
            word.push(c);
            continue;
        }
        if c.is_whitespace() {
            if in_word && (blank_ok || !word.is_empty()) {
                words.push(std::mem::take(&mut word));
            }
            word.clear();
            in_word = false;
            blank_ok = false;
            continue;
        }
        in_word = true;
        if c == '\'' || c == '"' {
            quote = Some(c);
            blank_ok = true;
            word.push(c);
            continue;
        }
        if c == escape {
            if let Some(n) = chars.next() {
                word.push(c);
                word.push(n);
            }
            continue;
        }
        word.push(c);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// The JSON-array form: `Some` when `text` is a JSON array (of strings, or an error).
pub(crate) fn parse_json(text: &str) -> Result<Option<Vec<String>>, String> {
    let t = text.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(t) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A heredoc named in an instruction: `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    /// The terminator (quotes removed).
    pub name: String,
    /// `<<-`: leading tabs are removed from the body and the terminator line.
    pub chomp: bool,
    /// No quotes around the name: variables in the body are expanded (by the shell for RUN).
    pub expand: bool,
    /// The file descriptor it feeds (0 unless written `N<<`).
    pub fd: u32,
}

/// Recognises a heredoc word (as split by [`shell_words`]).
pub(crate) fn heredoc_word(word: &str) -> Option<HeredocWord> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let raw = rest.trim_start();
    if raw.is_empty() || raw.contains('<') {
        return None;
    }
    let mut name = String::new();
    let mut quotes = 0;
    let mut quote: Option<char> = None;
    for c in raw.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                quotes += 1;
            }
            None if c.is_whitespace() => return None,
            _ => name.push(c),
        }
    }
    if quote.is_some() || name.is_empty() {
        return None;
    }
    Some(HeredocWord {
        name,
        chomp,
        expand: quotes == 0,
        fd: word[..digits].parse().unwrap_or(0),
    })
}

/// Shell-like words of a whole line, quotes kept, for finding heredocs: `<< EOF` stays one
/// word as it does for the shell.
pub(crate) fn shell_words(line: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                } else if c == escape
                    && q == '"'
                    && let Some(n) = chars.next()
                {
                    word.push(n);
                }
            }
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                word.push(c);
            }
            None if c == escape => {
                word.push(c);
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            None if c == '<' && chars.peek() == Some(&'<') => {
                chars.next();
                word.push_str("<<");
                if chars.peek() == Some(&'-') {
                    chars.next();
                    word.push('-');
                }
                while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                    chars.next();
                }
            }
            None => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_off_the_front() {
        let (cmd, flags, args) = split_command("COPY --from=build --chown=\"a b\" x /y", '\\');
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, ["--from=build", "--chown=a b"]);
        assert_eq!(args, "x /y");
        let (_, flags, args) = split_command("RUN -- --x", '\\');
        assert!(flags.is_empty());
        assert_eq!(args, "--x");
        let (cmd, flags, args) = split_command("  CMD  ", '\\');
        assert_eq!((cmd.as_str(), flags.len(), args.as_str()), ("CMD", 0, ""));
    }

    #[test]
    fn words_keep_their_quotes() {
        assert_eq!(
            parse_words(r#"A="x y" B=z\ w C='q'"#, '\\'),
            [r#"A="x y""#, r"B=z\ w", "C='q'"]
        );
        assert_eq!(parse_words(r#"A="""#, '\\'), [r#"A="""#]);
    }

    #[test]
    fn json_arrays_of_strings_only() {
        assert_eq!(
            parse_json(r#" ["a", "b c"]"#).unwrap(),
            Some(vec!["a".into(), "b c".into()])
        );
        assert_eq!(parse_json("echo [x]").unwrap(), None);
        assert_eq!(parse_json("[not json").unwrap(), None);
        assert!(parse_json("[1, 2]").is_err());
    }

    #[test]
    fn heredoc_words() {
        let w = shell_words("RUN cat <<-\"EOT\" > x << END", '\\');
        assert_eq!(w, ["RUN", "cat", "<<-\"EOT\"", ">", "x", "<<END"]);
        let h = heredoc_word(&w[2]).unwrap();
        assert_eq!((h.name.as_str(), h.chomp, h.expand), ("EOT", true, false));
        let h = heredoc_word(&w[5]).unwrap();
        assert_eq!((h.name.as_str(), h.chomp, h.expand), ("END", false, true));
        assert_eq!(heredoc_word("3<<X").unwrap().fd, 3);
        assert!(heredoc_word("<<").is_none());
        assert!(heredoc_word("a<<b").is_none());
    }
}
