//! The `--config` file: `[databases.NAME] url = "…"` sections in the file's order and an
//! optional `[retry]` section. Errors name the file, the line and the key, and never quote the
//! line: the line may hold a connection string with its password (TOML's own error snippet
//! prints it, and a wrong-type error quotes the value).

use std::fmt::Display;

use dbretry::{Origin, RawValue, RetryConfig};
use toml_edit::{ImDocument, Item, Table, Value};

/// What a config file says.
#[derive(Debug, Default)]
pub(crate) struct ConfigFile {
    pub(crate) retry: RetryConfig,
    /// Name, connection string, where it was given (`dbretry.toml:7`), in the file's order.
    pub(crate) databases: Vec<Database>,
}

#[derive(Debug)]
pub(crate) struct Database {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) at: String,
}

const TOP_KEYS: [&str; 2] = ["retry", "databases"];
const DATABASE_KEYS: [&str; 1] = ["url"];

/// Reads the file's text; `path` is how messages name the file.
pub(crate) fn parse(path: &str, text: &str) -> Result<ConfigFile, String> {
    let document = ImDocument::parse(text).map_err(|error| syntax_error(path, text, &error))?;
    let lines = Lines { path, text };
    let mut file = ConfigFile::default();
    for (key, item) in document.as_table().iter() {
        let line = lines.of_key(document.as_table(), key);
        match key {
            "retry" => file.retry = retry(&lines, key, item)?,
            "databases" => file.databases = databases(&lines, key, item)?,
            _ => return Err(unknown(&lines.at(line), key, &TOP_KEYS)),
        }
    }
    Ok(file)
}

fn retry(lines: &Lines<'_>, name: &str, item: &Item) -> Result<RetryConfig, String> {
    let table = as_table(lines, name, item, "a table of retry settings")?;
    let mut config = RetryConfig::default();
    for (key, item) in table.iter() {
        let full_key = format!("{name}.{key}");
        let line = lines.of_key(table, key);
        let origin = Origin::file(lines.path, line, &full_key);
        let raw = match item.as_value() {
            Some(Value::String(text)) => RawValue::Text(text.value()),
            Some(Value::Integer(n)) => RawValue::Integer((*n.value()).into()),
            Some(Value::Float(x)) => RawValue::Float(*x.value()),
            Some(Value::Boolean(b)) => RawValue::Bool(*b.value()),
            Some(Value::Datetime(_)) => RawValue::Other("a date"),
            Some(Value::Array(_)) => RawValue::Other("a list"),
            Some(Value::InlineTable(_)) | None => RawValue::Other("a table"),
        };
        config.set(key, raw, origin).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

fn databases(lines: &Lines<'_>, name: &str, item: &Item) -> Result<Vec<Database>, String> {
    let table = as_table(lines, name, item, "a table of [databases.NAME] sections")?;
    let mut databases = Vec::new();
    for (db, item) in table.iter() {
        let section = format!("{name}.{db}");
        if bare_key(db).is_none() {
            let at = lines.at(lines.of_key(table, db));
            return Err(format!(
                "invalid database name {} ({at}): expected letters, digits, `_` or `-`",
                shown_key(db)
            ));
        }
        let entry = as_table_like(lines, &section, item, table, db)?;
        let mut url = None;
        for (key, value) in entry.iter() {
            let full_key = format!("{section}.{key}");
            let at = lines.at(value.line);
            if key != "url" {
                return Err(unknown(&at, &full_key, &DATABASE_KEYS));
            }
            match value.text {
                Some(text) => url = Some((text.to_owned(), at)),
                None => {
                    return Err(format!(
                        "invalid `{full_key}` ({at}): found {}; expected a connection string \
                         (a quoted string)",
                        value.kind
                    ));
                }
            }
        }
        let Some((url, at)) = url else {
            let at = lines.at(lines.of_key(table, db));
            return Err(format!("`{section}` ({at}) has no `url`"));
        };
        databases.push(Database {
            name: db.to_owned(),
            url,
            at,
        });
    }
    Ok(databases)
}

/// One key of a database section, whether written as `[databases.x]` or inline.
struct Entry<'a> {
    line: usize,
    text: Option<&'a str>,
    kind: &'static str,
}

struct EntryTable<'a>(Vec<(&'a str, Entry<'a>)>);

impl<'a> EntryTable<'a> {
    fn iter(&self) -> impl Iterator<Item = (&'a str, &Entry<'a>)> {
        self.0.iter().map(|(key, entry)| (*key, entry))
    }
}

fn as_table_like<'a>(
    lines: &Lines<'_>,
    section: &str,
    item: &'a Item,
    parent: &'a Table,
    name: &str,
) -> Result<EntryTable<'a>, String> {
    let header_line = lines.of_key(parent, name);
    let entries = match item {
        Item::Table(table) => table
            .iter()
            .map(|(key, item)| {
                let entry = Entry {
                    line: lines.of_key(table, key),
                    text: item.as_str(),
                    kind: kind_of(item),
                };
                (key, entry)
            })
            .collect(),
        Item::Value(Value::InlineTable(inline)) => inline
            .iter()
            .map(|(key, value)| {
                let line = inline
                    .key(key)
                    .and_then(toml_edit::Key::span)
                    .map_or(header_line, |span| lines.of_offset(span.start));
                let entry = Entry {
                    line,
                    text: value.as_str(),
                    kind: kind_of_value(value),
                };
                (key, entry)
            })
            .collect(),
        other => {
            return Err(format!(
                "invalid `{section}` ({}): found {}; expected a table with a `url`",
                lines.at(header_line),
                kind_of(other)
            ));
        }
    };
    Ok(EntryTable(entries))
}

fn as_table<'a>(
    lines: &Lines<'_>,
    name: &str,
    item: &'a Item,
    expected: &str,
) -> Result<&'a Table, String> {
    item.as_table().ok_or_else(|| {
        let line = item.span().map_or(1, |span| lines.of_offset(span.start));
        format!(
            "invalid `{name}` ({}): found {}; expected {expected}",
            lines.at(line),
            kind_of(item)
        )
    })
}

fn kind_of(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(value) => kind_of_value(value),
    }
}

fn kind_of_value(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::InlineTable(_) => "a table",
    }
}

/// An unknown key; the lists are short, so they are given whole instead of a guess.
fn unknown(at: &str, full_key: &str, known: &[&str]) -> String {
    format!(
        "unknown key {} ({at}): expected {}",
        shown_key(full_key),
        match known {
            [only] => format!("only `{only}` here"),
            _ => format!("one of {}", known.join(", ")),
        }
    )
}

/// A key as messages name it: `` `databases.default.url` ``, or not at all when it is not a
/// plain (bare) key — a quoted key can hold anything, a misplaced secret included.
fn shown_key(key: &str) -> String {
    match bare_key(key) {
        Some(key) => format!("`{key}`"),
        None => "(not shown: not a plain name)".to_owned(),
    }
}

/// Line numbers for spans of the file.
struct Lines<'a> {
    path: &'a str,
    text: &'a str,
}

impl Lines<'_> {
    fn of_offset(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }

    fn of_key(&self, table: &Table, key: &str) -> usize {
        table
            .key(key)
            .and_then(toml_edit::Key::span)
            .map_or(1, |span| self.of_offset(span.start))
    }

    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path)
    }
}

/// A syntax error: TOML's message (which names keys, never values) with the file, the line and
/// the key the line sets, in place of TOML's snippet of the line.
fn syntax_error(path: &str, text: &str, error: &toml_edit::TomlError) -> String {
    let offset = error.span().map_or(0, |span| span.start);
    let lines = Lines { path, text };
    let mut line = lines.of_offset(offset);
    // An unclosed value is noticed at the end of the file or on the blank line after it: point
    // at the line that holds it.
    let all: Vec<&str> = text.lines().collect();
    while line > 1 && all.get(line - 1).is_none_or(|l| l.trim().is_empty()) {
        line -= 1;
    }
    let message = without_odd_keys(&error.message().trim().replace('\n', "; "));
    match key_of_line(text, line) {
        Some(key) => format!("invalid TOML at {path}:{line}, key `{key}`: {message}"),
        None => format!("invalid TOML at {path}:{line}: {message}"),
    }
}

/// TOML's message with every backticked name that is not a plain key hidden (`duplicate key
/// `"…"``): its messages quote keys and expected tokens, never values, but a quoted key can
/// hold anything.
fn without_odd_keys(message: &str) -> String {
    let mut out = String::new();
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for pair in rest.chunks(2) {
        let quoted = pair[0];
        let plain = quoted.chars().count() <= 2 || bare_key(quoted).is_some();
        if pair.len() == 2 {
            if plain {
                out.push('`');
                out.push_str(quoted);
                out.push('`');
            } else {
                out.push_str("(a key not shown)");
            }
            out.push_str(pair[1]);
        } else if plain {
            out.push('`');
            out.push_str(quoted);
        }
    }
    out
}

/// The dotted key that line `line` sets (`databases.default.url`), found from the bare key
/// before its `=` and the last `[table]` header above it; `None` when the line is not that
/// simple. Only names made of key characters are returned, so no value can slip through.
fn key_of_line(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let this = lines.get(line.checked_sub(1)?)?;
    let (key, _) = this.split_once('=')?;
    let key = bare_key(key)?;
    let header = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .and_then(|l| {
            let inner = l.trim_start_matches('[').split(']').next()?;
            bare_key(inner)
        });
    Some(match header {
        Some(header) => format!("{header}.{key}"),
        None => key,
    })
}

fn bare_key(text: &str) -> Option<String> {
    let key: String = text.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    let valid = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    valid.then_some(key)
}

/// A read error for the file, naming it.
pub(crate) fn read_error(path: impl Display, error: &std::io::Error) -> String {
    format!("cannot read {path}: {error}")
}

/// A file name as messages print it: as given, unless it looks like a connection string put
/// in the wrong place (`--config postgres://app:secret@…`), which is then not printed.
pub(crate) fn shown_path(path: &std::path::Path, flag: &str) -> String {
    if looks_like_a_connection_string(path) {
        format!("the {flag} file (its name is not shown: it looks like a connection string)")
    } else {
        path.to_string_lossy().into_owned()
    }
}

/// Whether a file name may hold a password: a URL, a `user@host` or a `password=…`.
pub(crate) fn looks_like_a_connection_string(path: &std::path::Path) -> bool {
    let text = path.to_string_lossy();
    text.contains("://") || text.contains('@') || text.to_ascii_lowercase().contains("password")
}

/// A database name as messages print it: as given if it is a plain name.
pub(crate) fn shown_name(name: &str) -> String {
    match bare_key(name) {
        Some(name) => format!("{name:?}"),
        None => "(not shown: not a plain name)".to_owned(),
    }
}

#[cfg(test)]
mod tests;
