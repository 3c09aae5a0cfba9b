//! One logical line → one typed [`Instruction`], with Docker's argument rules per keyword.

use super::error::ParseError;
use super::lines::{Lines, LogicalLine};
use super::words::{
    heredoc_word, parse_json, parse_words, shell_words, split_command, split_whitespace,
};
use super::{
    ArgDecl, CommandLine, CopyArgs, FromArgs, Healthcheck, Heredoc, Instruction, KeyValue, Kind,
    RunArgs,
};

/// A flag of an instruction: `--name=value` or `--name`.
struct Flags {
    given: Vec<(String, Option<String>)>,
    line: usize,
    keyword: String,
}

impl Flags {
    fn new(raw: Vec<String>, line: usize, keyword: &str) -> Flags {
        let given = raw
            .into_iter()
            .map(|f| {
                let f = f.trim_start_matches('-').to_string();
                match f.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (f, None),
                }
            })
            .collect();
        Flags {
            given,
            line,
            keyword: keyword.to_string(),
        }
    }

    /// Fails on any flag not in `allowed` (and on a repeated one).
    fn check(&self, allowed: &[&str]) -> Result<(), ParseError> {
        for (i, (name, _)) in self.given.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                return Err(ParseError::new(
                    self.line,
                    format!("unknown flag: --{name} ({} takes {})", self.keyword, {
                        if allowed.is_empty() {
                            "no flags".to_string()
                        } else {
                            allowed
                                .iter()
                                .map(|a| format!("--{a}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    }),
                ));
            }
            if self.given[..i].iter().any(|(n, _)| n == name) {
                return Err(ParseError::new(
                    self.line,
                    format!("duplicate flag specified: --{name}"),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, name: &str) -> Result<Option<String>, ParseError> {
        match self.given.iter().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, Some(v))) => Ok(Some(v.clone())),
            Some((_, None)) => Err(ParseError::new(
                self.line,
                format!("missing a value on flag: --{name}"),
            )),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, ParseError> {
        match self.given.iter().find(|(n, _)| n == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ParseError::new(
                    self.line,
                    format!("expecting boolean value for flag {name}, not: {v}"),
                )),
            },
        }
    }
}

/// Parses one logical line (reading heredoc bodies from `lines` when it names any).
pub(crate) fn parse_line(
    logical: &LogicalLine,
    lines: &mut Lines<'_>,
) -> Result<Instruction, ParseError> {
    let escape = lines.escape;
    let line = logical.start;
    let (keyword, flags, args) = split_command(&logical.text, escape);
    let upper = keyword.to_ascii_uppercase();
    let heredocs = if may_hold_heredoc(&upper, &args, escape) && logical.text.contains("<<") {
        read_heredocs(&logical.text, lines, escape, line)?
    } else {
        Vec::new()
    };
    let kind = parse_kind(&upper, flags, &args, heredocs, escape, line)?;
    Ok(Instruction {
        line,
        end_line: logical.end,
        text: logical.text.trim().to_string(),
        kind,
    })
}

/// RUN, COPY and ADD in their shell forms (also as ONBUILD triggers) can carry heredocs.
fn may_hold_heredoc(upper: &str, args: &str, escape: char) -> bool {
    match upper {
        "RUN" | "COPY" | "ADD" => !matches!(parse_json(args), Ok(Some(_))),
        "ONBUILD" => {
            let (inner, _, inner_args) = split_command(args, escape);
            matches!(inner.to_ascii_uppercase().as_str(), "RUN" | "COPY" | "ADD")
                && !matches!(parse_json(&inner_args), Ok(Some(_)))
        }
        _ => false,
    }
}

fn read_heredocs(
    text: &str,
    lines: &mut Lines<'_>,
    escape: char,
    line: usize,
) -> Result<Vec<Heredoc>, ParseError> {
    let mut out = Vec::new();
    for w in shell_words(text, escape) {
        let Some(h) = heredoc_word(&w) else { continue };
        let mut content = lines.heredoc_body(&h.name, h.chomp, line)?;
        if h.chomp {
            content = content
                .split_inclusive('\n')
                .map(|l| l.trim_start_matches('\t'))
                .collect();
        }
        out.push(Heredoc {
            name: h.name,
            content,
            expand: h.expand,
            chomp: h.chomp,
            fd: h.fd,
        });
    }
    Ok(out)
}

fn parse_kind(
    upper: &str,
    raw_flags: Vec<String>,
    args: &str,
    heredocs: Vec<Heredoc>,
    escape: char,
    line: usize,
) -> Result<Kind, ParseError> {
    let err = |m: String| ParseError::new(line, m);
    let flags = Flags::new(raw_flags, line, upper);
    let none = |flags: &Flags| flags.check(&[]);
    let kind = match upper {
        "FROM" => {
            flags.check(&["platform"])?;
            let words = split_whitespace(args);
            let name = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(err(format!(
                            "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
                        )));
                    }
                    Some(lower)
                }
                _ => return Err(err("FROM requires either one or three arguments".into())),
            };
            Kind::From(FromArgs {
                image: words[0].clone(),
                name,
                platform: flags.string("platform")?,
            })
        }
        "RUN" => {
            flags.check(&["network"])?;
            let network = flags.string("network")?;
            if let Some(n) = &network
                && !matches!(n.as_str(), "default" | "host" | "none")
            {
                return Err(err(format!(
                    "RUN --network={n}: ferry supports host and none (it has no bridge)"
                )));
            }
            Kind::Run(RunArgs {
                command: command_line(args, heredocs, line)?,
                network,
            })
        }
        "CMD" => {
            none(&flags)?;
            Kind::Cmd(command_line(args, heredocs, line)?)
        }
        "ENTRYPOINT" => {
            none(&flags)?;
            Kind::Entrypoint(command_line(args, heredocs, line)?)
        }
        "SHELL" => {
            none(&flags)?;
            match parse_json(args).map_err(err)? {
                Some(v) if !v.is_empty() => Kind::Shell(v),
                Some(_) => return Err(err("SHELL requires at least one argument".into())),
                None if args.is_empty() => {
                    return Err(err("SHELL requires at least one argument".into()));
                }
                None => {
                    return Err(err(format!(
                        "SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"], not `{args}`"
                    )));
                }
            }
        }
        "ENV" | "LABEL" => {
            none(&flags)?;
            let pairs = key_values(args, upper, escape, line)?;
            if upper == "ENV" {
                Kind::Env(pairs)
            } else {
                Kind::Label(pairs)
            }
        }
        "ARG" => {
            none(&flags)?;
            let words = parse_words(args, escape);
            if words.is_empty() {
                return Err(err("ARG requires at least one argument".into()));
            }
            let mut decls = Vec::new();
            for w in words {
                let decl = match w.split_once('=') {
                    Some(("", _)) => return Err(err("ARG names can not be blank".into())),
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: w,
                        default: None,
                    },
                };
                decls.push(decl);
            }
            Kind::Arg(decls)
        }
        "COPY" | "ADD" => {
            let allowed: &[&str] = if upper == "COPY" {
                &["from", "chown", "chmod", "link"]
            } else {
                &["chown", "chmod", "link"]
            };
            flags.check(allowed)?;
            let (list, json) = match parse_json(args).map_err(err)? {
                Some(v) => (v, true),
                None => (split_whitespace(args), false),
            };
            if list.len() < 2 {
                return Err(err(format!(
                    "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
                )));
            }
            let dest = list[list.len() - 1].clone();
            if heredoc_word(&dest).is_some() {
                return Err(err(format!(
                    "{upper} cannot accept a heredoc as a destination"
                )));
            }
            let sources = list[..list.len() - 1].to_vec();
            let copy = CopyArgs {
                sources,
                dest,
                from: flags.string("from")?,
                chown: flags.string("chown")?,
                chmod: flags.string("chmod")?,
                link: flags.boolean("link")?,
                heredocs: if json { Vec::new() } else { heredocs },
                json,
            };
            if let Some(m) = &copy.chmod
                && !m.contains('$')
                && parse_chmod(m).is_none()
            {
                return Err(err(format!(
                    "invalid --chmod={m}: give the mode in octal, like 755"
                )));
            }
            if upper == "COPY" {
                Kind::Copy(copy)
            } else {
                Kind::Add(copy)
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
            none(&flags)?;
            // These take the rest of the line as one argument (`WORKDIR /my dir` is one
            // path), as Docker's parser does.
            if args.is_empty() {
                return Err(err(format!("{upper} requires exactly one argument")));
            }
            let a = args.to_string();
            match upper {
                "WORKDIR" => Kind::Workdir(a),
                "USER" => Kind::User(a),
                "STOPSIGNAL" => Kind::StopSignal(a),
                _ => Kind::Maintainer(a),
            }
        }
        "VOLUME" => {
            none(&flags)?;
            let list = match parse_json(args).map_err(err)? {
                Some(v) => v,
                None => split_whitespace(args),
            };
            if list.is_empty() {
                return Err(err("VOLUME requires at least one argument".into()));
            }
            let mut out = Vec::new();
            for v in list {
                let v = v.trim().to_string();
                if v.is_empty() {
                    return Err(err("VOLUME specified can not be an empty string".into()));
                }
                out.push(v);
            }
            Kind::Volume(out)
        }
        "EXPOSE" => {
            none(&flags)?;
            let ports = split_whitespace(args);
            if ports.is_empty() {
                return Err(err("EXPOSE requires at least one argument".into()));
            }
            Kind::Expose(ports)
        }
        "HEALTHCHECK" => Kind::Healthcheck(healthcheck(args, &flags, line)?),
        "ONBUILD" => {
            none(&flags)?;
            if args.is_empty() {
                return Err(err("ONBUILD requires at least one argument".into()));
            }
            let (inner, _, _) = split_command(args, escape);
            match inner.to_ascii_uppercase().as_str() {
                "ONBUILD" => {
                    return Err(err(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()
                    ));
                }
                "MAINTAINER" | "FROM" => {
                    return Err(err(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        inner.to_ascii_uppercase()
                    )));
                }
                _ => {}
            }
            let mut expression = args.to_string();
            for h in &heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            let (k, f, a) = split_command(args, escape);
            let trigger = parse_kind(&k.to_ascii_uppercase(), f, &a, heredocs, escape, line)?;
            Kind::Onbuild {
                expression,
                trigger: Box::new(trigger),
            }
        }
        "" => return Err(err("empty instruction".into())),
        other => {
            return Err(err(format!(
                "unknown instruction: {other}{}",
                suggestion(other)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            )));
        }
    };
    Ok(kind)
}

/// The shell or exec form of RUN, CMD and ENTRYPOINT.
fn command_line(
    args: &str,
    heredocs: Vec<Heredoc>,
    line: usize,
) -> Result<CommandLine, ParseError> {
    match parse_json(args).map_err(|m| ParseError::new(line, m))? {
        Some(v) => Ok(CommandLine {
            args: v,
            exec_form: true,
            heredocs: Vec::new(),
        }),
        None => Ok(CommandLine {
            args: if args.is_empty() {
                Vec::new()
            } else {
                vec![args.to_string()]
            },
            exec_form: false,
            heredocs,
        }),
    }
}

/// `ENV`/`LABEL`: `KEY=VALUE …`, or the old `KEY VALUE` (the rest of the line).
fn key_values(
    args: &str,
    upper: &str,
    escape: char,
    line: usize,
) -> Result<Vec<KeyValue>, ParseError> {
    let err = |m: String| ParseError::new(line, m);
    let words = parse_words(args, escape);
    if words.is_empty() {
        return Err(err(format!("{upper} requires at least one argument")));
    }
    if !words[0].contains('=') {
        let mut parts = args.splitn(2, |c: char| {
            matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
        });
        let key = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches([' ', '\t', '\u{b}', '\u{c}', '\r']))
            .unwrap_or_default();
        if value.is_empty() {
            return Err(err(format!("{upper} must have two arguments")));
        }
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            delimited: false,
        }]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(err(format!(
                "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            )));
        };
        if k.is_empty() {
            return Err(err(format!("{upper} names can not be blank")));
        }
        out.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            delimited: true,
        });
    }
    Ok(out)
}

fn healthcheck(args: &str, flags: &Flags, line: usize) -> Result<Healthcheck, ParseError> {
    let err = |m: String| ParseError::new(line, m);
    let (typ, rest) = match args.find(char::is_whitespace) {
        Some(i) => (&args[..i], args[i..].trim_start()),
        None => (args, ""),
    };
    if typ.is_empty() {
        return Err(err("HEALTHCHECK requires at least one argument".into()));
    }
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        flags.check(&[])?;
        if !rest.is_empty() {
            return Err(err("HEALTHCHECK NONE takes no arguments".into()));
        }
        return Ok(Healthcheck {
            test: vec!["NONE".into()],
            ..Healthcheck::default()
        });
    }
    flags.check(&[
        "interval",
        "timeout",
        "start-period",
        "start-interval",
        "retries",
    ])?;
    if typ != "CMD" {
        return Err(err(format!(
            "Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"
        )));
    }
    let cmd = command_line(rest, Vec::new(), line)?;
    if cmd.args.is_empty() {
        return Err(err("Missing command after HEALTHCHECK CMD".into()));
    }
    let mut test = vec![if cmd.exec_form { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(cmd.args);
    let duration = |name: &str| -> Result<Option<i64>, ParseError> {
        let Some(v) = flags.string(name)? else {
            return Ok(None);
        };
        let ns = parse_duration(&v)
            .ok_or_else(|| err(format!("invalid duration for --{name}: \"{v}\"")))?;
        if ns != 0 && ns < 1_000_000 {
            return Err(err(format!("Interval \"{name}\" cannot be less than 1ms")));
        }
        Ok((ns != 0).then_some(ns))
    };
    let retries = match flags.string("retries")? {
        None => None,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| err(format!("invalid value for --retries: \"{v}\"")))?;
            if n < 0 {
                return Err(err(format!("--retries cannot be negative ({n})")));
            }
            Some(n)
        }
    };
    Ok(Healthcheck {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Go's `time.ParseDuration` (`1m30s`, `0.5s`, `300ms`) in nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    let (neg, mut s) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_len = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = s[..num_len].parse().ok()?;
        s = &s[num_len..];
        let unit_len = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = match &s[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        s = &s[unit_len..];
        total += n * unit;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if neg { -ns } else { ns })
}

/// An octal `--chmod` value.
pub(crate) fn parse_chmod(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// The instruction an unknown keyword was probably meant to be.
fn suggestion(word: &str) -> Option<&'static str> {
    const ALL: [&str; 18] = [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    let w: Vec<char> = word.to_ascii_uppercase().chars().collect();
    ALL.iter()
        .map(|c| (distance(&w, &c.chars().collect::<Vec<_>>()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours counts as one edit (`RNU` is one from `RUN`).
fn distance(a: &[char], b: &[char]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("0.5s"), Some(500_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(suggestion("RNU"), Some("RUN"));
        assert_eq!(suggestion("COPPY"), Some("COPY"));
        assert_eq!(suggestion("XYZZYX"), None);
    }
}
