//! `--format`: Docker's Go templates over listings and inspect output.
//!
//! The template engine is the `gotmpl` crate (Go's `text/template` syntax: fields, pipelines,
//! `range`, `with`, `if`, variables, `index`, `printf`, `len`, comparisons), plus the
//! functions Docker adds (`json`, `join`, `split`, `title`, `lower`, `upper`, `pad`,
//! `truncate`). As in Docker:
//!
//! - `table TEMPLATE` prints a header line (the template run over the column names) and lays
//!   the rows out in aligned columns; `\t` and `\n` typed literally become tab and newline;
//! - `table` alone is the command's default table, `json` one JSON object per line;
//! - anything else is run once per row, each row ending with a newline.
//!
//! Data are handed to templates as JSON values; the difference from Go's typed structs is
//! listed in the README ("`--format` templates").

use std::sync::Arc;

use anyhow::anyhow;
use gotmpl::{MissingKey, Template, TemplateError, Value};
use serde_json::Value as Json;

/// One command's columns: the template field, and the heading Docker prints for it.
pub type Columns = &'static [(&'static str, &'static str)];

/// What `--format` asked for.
pub enum Format {
    /// Aligned columns with a header line (`table …`, or the default table): the rows'
    /// template and the same source parsed with the header functions.
    Table(Template, Template),
    /// One JSON object per line.
    Json,
    /// The template once per row.
    Rows(Template),
}

impl Format {
    /// Parses `--format TEXT` for a listing whose default table is `default` (a `table …`
    /// template). `what` names the rows in errors ("container", "image").
    pub fn listing(text: Option<&str>, default: &str) -> anyhow::Result<Format> {
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        match text {
            None | Some("table") => table(strip_table(default)),
            Some("json") => Ok(Format::Json),
            Some(t) if t.starts_with("table ") || t.starts_with("table\t") => {
                table(&unescape(strip_table(t)))
            }
            Some(t) => Ok(Format::Rows(parse(&unescape(t))?)),
        }
    }

    /// `inspect -f`: the template as given (no `table`, no escapes), or JSON when absent.
    pub fn inspect(text: Option<&str>) -> anyhow::Result<Option<Template>> {
        match text.map(str::trim) {
            None | Some("") | Some("json") => Ok(None),
            Some(_) => Ok(Some(parse(text.expect("checked"))?)),
        }
    }

    /// Renders rows (JSON objects with the command's fields). `columns` gives the headings of
    /// a table; `what` names a row in errors about unknown fields.
    pub fn render(&self, rows: &[Json], columns: Columns, what: &str) -> anyhow::Result<String> {
        let mut out = String::new();
        match self {
            Format::Json => {
                for r in rows {
                    out.push_str(&serde_json::to_string(r)?);
                    out.push('\n');
                }
            }
            Format::Rows(t) => {
                for r in rows {
                    out.push_str(&execute(t, r, what)?);
                    out.push('\n');
                }
            }
            Format::Table(t, header) => {
                // The header is the same template over the headings, with Docker's
                // pass-through functions (`{{json .Labels}}` heads its column `LABELS`).
                let headings: serde_json::Map<String, Json> = columns
                    .iter()
                    .map(|(f, h)| ((*f).to_string(), Json::String((*h).to_string())))
                    .collect();
                let mut text = execute(header, &Json::Object(headings), what)?;
                text.push('\n');
                for r in rows {
                    text.push_str(&execute(t, r, what)?);
                    text.push('\n');
                }
                out = crate::table::align(&text);
            }
        }
        Ok(out)
    }
}

fn strip_table(t: &str) -> &str {
    t.strip_prefix("table").unwrap_or(t).trim()
}

/// Docker reads `\t` and `\n` typed in a shell's single quotes as tab and newline.
fn unescape(t: &str) -> String {
    t.replace("\\t", "\t").replace("\\n", "\n")
}

/// Parses a template with Docker's functions.
pub fn parse(text: &str) -> anyhow::Result<Template> {
    with_functions(Template::new("").missing_key(MissingKey::Error), false)
        .parse(text)
        .map_err(|e| anyhow!("invalid --format template `{text}`: {e}"))
}

fn table(source: &str) -> anyhow::Result<Format> {
    let header = with_functions(Template::new("").missing_key(MissingKey::Error), true)
        .parse(source)
        .map_err(|e| anyhow!("invalid --format template `{source}`: {e}"))?;
    Ok(Format::Table(parse(source)?, header))
}

/// Runs `t` over one row.
pub fn execute(t: &Template, row: &Json, what: &str) -> anyhow::Result<String> {
    t.execute_to_string(&to_value(row)).map_err(|e| match e {
        TemplateError::MissingKey { key } => {
            let known = match row {
                Json::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
                _ => String::new(),
            };
            anyhow!("template: {what} has no field `{key}` (fields: {known})")
        }
        other => anyhow!("template: {other}"),
    })
}

/// A JSON value as template data.
pub fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .or_else(|| n.as_u64().map(Value::Uint))
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or_default())),
        Json::String(s) => Value::String(s.as_str().into()),
        Json::Array(a) => Value::List(a.iter().map(to_value).collect()),
        Json::Object(m) => Value::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), to_value(v)))
                .collect(),
        )),
    }
}

/// Template data back as JSON (for the `json` function).
fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Uint(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.iter().map(|(k, v)| (k.to_string(), to_json(v))).collect()),
        Value::Function(_) => Json::Null,
    }
}

fn string_arg(name: &str, args: &[Value], i: usize) -> gotmpl::Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.to_string()),
        Some(other) => Ok(other.to_string()),
        None => Err(TemplateError::Exec(format!(
            "{name}: missing argument {}",
            i + 1
        ))),
    }
}

fn int_arg(name: &str, args: &[Value], i: usize) -> gotmpl::Result<usize> {
    match args.get(i) {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as usize),
        Some(Value::Uint(n)) => Ok(*n as usize),
        _ => Err(TemplateError::Exec(format!(
            "{name}: argument {} must be a non-negative number",
            i + 1
        ))),
    }
}

/// Docker's template functions; for headers, the variants that pass the heading through.
fn with_functions(t: Template, headers: bool) -> Template {
    let first = |name: &'static str| move |a: &[Value]| string_arg(name, a, 0).map(str_value);
    if headers {
        return t
            .func("json", first("json"))
            .func("split", first("split"))
            .func("join", first("join"))
            .func("title", first("title"))
            .func("lower", first("lower"))
            .func("upper", first("upper"))
            .func("pad", first("pad"))
            .func("truncate", first("truncate"));
    }
    t.func("json", |a: &[Value]| {
        let v = a.first().map(to_json).unwrap_or(Json::Null);
        Ok(str_value(serde_json::to_string(&v).unwrap_or_default()))
    })
    .func("split", |a: &[Value]| {
        let (s, sep) = (string_arg("split", a, 0)?, string_arg("split", a, 1)?);
        let parts: Vec<Value> = if sep.is_empty() {
            s.chars().map(|c| str_value(c.to_string())).collect()
        } else {
            s.split(sep.as_str())
                .map(|p| str_value(p.to_string()))
                .collect()
        };
        Ok(Value::List(parts.into()))
    })
    .func("join", |a: &[Value]| {
        let sep = string_arg("join", a, 1)?;
        match a.first() {
            Some(Value::List(l)) => Ok(str_value(
                l.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(&sep),
            )),
            Some(Value::Nil) => Ok(str_value(String::new())),
            _ => Err(TemplateError::Exec(
                "join: the first argument must be a list".into(),
            )),
        }
    })
    .func("title", |a: &[Value]| {
        Ok(str_value(title(&string_arg("title", a, 0)?)))
    })
    .func("lower", |a: &[Value]| {
        Ok(str_value(string_arg("lower", a, 0)?.to_lowercase()))
    })
    .func("upper", |a: &[Value]| {
        Ok(str_value(string_arg("upper", a, 0)?.to_uppercase()))
    })
    .func("pad", |a: &[Value]| {
        let s = string_arg("pad", a, 0)?;
        let (before, after) = (int_arg("pad", a, 1)?, int_arg("pad", a, 2)?);
        Ok(str_value(format!(
            "{}{s}{}",
            " ".repeat(before),
            " ".repeat(after)
        )))
    })
    .func("truncate", |a: &[Value]| {
        let s = string_arg("truncate", a, 0)?;
        let n = int_arg("truncate", a, 1)?;
        Ok(str_value(s.chars().take(n).collect()))
    })
    // Go's `index` gives a map's zero value for a missing key: an empty string for the
    // string maps Docker's data have (labels), not an error.
    .func("index", |a: &[Value]| {
        let mut v = a
            .first()
            .cloned()
            .ok_or_else(|| TemplateError::Exec("index: missing argument".into()))?;
        for key in &a[1..] {
            v = match (&v, key) {
                (Value::Map(m), Value::String(k)) => m
                    .get(k.as_ref())
                    .cloned()
                    .unwrap_or_else(|| str_value(String::new())),
                _ => v.index(key)?,
            };
        }
        Ok(v)
    })
}

fn str_value(s: String) -> Value {
    Value::String(s.into())
}

/// Go's `strings.Title`: the first letter of each word in upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COLUMNS: Columns = &[
        ("ID", "IMAGE ID"),
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
    ];

    fn rows() -> Vec<Json> {
        vec![
            json!({"ID": "0123456789ab", "Repository": "busybox", "Tag": "latest",
                   "Labels": {"a": "1"}, "Env": ["A=1", "B=2"]}),
            json!({"ID": "ba9876543210", "Repository": "ferry/multilayer", "Tag": "oci",
                   "Labels": {}, "Env": null}),
        ]
    }

    fn render(fmt: &str) -> anyhow::Result<String> {
        Format::listing(Some(fmt), "table {{.ID}}")?.render(&rows(), COLUMNS, "image")
    }

    #[test]
    fn rows_tables_and_json() {
        assert_eq!(
            render("{{.Repository}}:{{.Tag}}").unwrap(),
            "busybox:latest\nferry/multilayer:oci\n"
        );
        assert_eq!(
            render(r"table {{.Repository}}\t{{.Tag}}").unwrap(),
            "REPOSITORY         TAG\nbusybox            latest\nferry/multilayer   oci\n"
        );
        assert_eq!(
            render("{{json .Env}} {{index .Labels \"a\"}}|{{index .Labels \"zz\"}}|").unwrap(),
            "[\"A=1\",\"B=2\"] 1||\nnull ||\n"
        );
        assert_eq!(
            render("{{range .Env}}{{.}},{{end}}{{len .Labels}}").unwrap(),
            "A=1,B=2,1\n0\n"
        );
        assert_eq!(
            render("{{truncate (upper .Repository) 3}} {{pad .Tag 1 1}}|{{join (split .Repository \"/\") \"+\"}}").unwrap(),
            "BUS  latest |busybox\nFER  oci |ferry+multilayer\n"
        );
        assert_eq!(
            render("json").unwrap().lines().next().unwrap(),
            r#"{"Env":["A=1","B=2"],"ID":"0123456789ab","Labels":{"a":"1"},"Repository":"busybox","Tag":"latest"}"#
        );
    }

    #[test]
    fn unknown_fields_and_bad_syntax_are_one_line_errors_naming_them() {
        let e = render("{{.Nope}}").unwrap_err().to_string();
        assert!(e.contains("image has no field `Nope`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = render("{{.ID").unwrap_err().to_string();
        assert!(e.contains("invalid --format template `{{.ID`"), "{e}");
    }
}
