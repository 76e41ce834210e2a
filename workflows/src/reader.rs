//! Reading a `yamlmap::Node` tree while collecting diagnostics.
//!
//! Every helper reports what it could not read at the offending node and
//! returns `None`/empty, so one pass finds all errors instead of stopping at
//! the first.

use yamlmap::{Diagnostic, Dropped, Entry, Node, Pos, Value};

use crate::yaml11;

pub(crate) struct Reader<'a> {
    pub file: &'a str,
    lines: Vec<&'a str>,
    pub diags: Vec<Diagnostic>,
    /// Diagnostics past [`KEEP`], counted but not stored.
    pub dropped: Dropped,
}

/// How many diagnostics a reader stores; the list returned is cut to
/// [`yamlmap::MAX_DIAGNOSTICS`] after sorting, so this only needs to be
/// large enough that the earliest positions are among the stored ones.
const KEEP: usize = 10 * yamlmap::MAX_DIAGNOSTICS;

impl<'a> Reader<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Reader {
            file,
            lines: text.lines().collect(),
            diags: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let mut d = Diagnostic::error(self.file, pos, message);
        if !help.is_empty() {
            d = d.with_help(help);
        }
        self.push(d);
    }

    fn push(&mut self, d: Diagnostic) {
        if self.diags.len() < KEEP {
            self.diags.push(d);
        } else {
            self.dropped.add(&d);
        }
    }

    /// The diagnostics sorted by position, at most
    /// [`yamlmap::MAX_DIAGNOSTICS`] of them plus an "and N more".
    pub fn finish(self) -> Vec<Diagnostic> {
        let mut diags = self.diags;
        diags.sort_by_key(|d| (d.line, d.column));
        yamlmap::cap_diagnostics(&mut diags, yamlmap::MAX_DIAGNOSTICS, self.dropped);
        diags
    }

    pub fn warn(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        let help = help.into();
        let mut d = Diagnostic::warning(self.file, pos, message);
        if !help.is_empty() {
            d = d.with_help(help);
        }
        self.push(d);
    }

    /// True once the reader stores no more diagnostics: callers skip
    /// expensive hints and position look-ups for ones that are dropped.
    pub fn is_full(&self) -> bool {
        self.diags.len() >= KEEP
    }

    /// Where `needle` first occurs in the source at or after `from` (within
    /// a few lines and [`FIND_WINDOW`] bytes), so a diagnostic about part of
    /// a long or multi-line scalar points at that part. Falls back to
    /// `from`. Costs at most the window plus the column of `from`.
    pub fn find_from(&self, from: Pos, needle: &str) -> Pos {
        if needle.is_empty() || from.column > FIND_WINDOW {
            return from;
        }
        let first = from.line.saturating_sub(1);
        let mut budget = FIND_WINDOW;
        for (i, line) in self.lines.iter().enumerate().skip(first).take(64) {
            let start_char = if i == first {
                from.column.saturating_sub(1)
            } else {
                0
            };
            let start_byte = line
                .char_indices()
                .nth(start_char)
                .map(|(b, _)| b)
                .unwrap_or(line.len());
            let mut end = line.len().min(start_byte.saturating_add(budget));
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            if let Some(b) = line[start_byte..end].find(needle) {
                let col = from_col(i == first, start_char, &line[start_byte..start_byte + b]);
                return Pos::new(i + 1, col);
            }
            budget = budget.saturating_sub(end - start_byte + 1);
            if budget == 0 {
                break;
            }
        }
        from
    }

    /// The entries of a mapping. A null value (`Key:` with nothing after
    /// it) is an empty mapping; anything else is an error.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Entry]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.error(
                    node.pos,
                    format!(
                        "{what} must be a mapping (`key: value` lines), found {}",
                        kind(node)
                    ),
                    "put the entries on their own lines, indented under the key",
                );
                None
            }
        }
    }

    /// The items of a sequence; null is an empty sequence.
    pub fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a list, found {}", kind(node)),
                    "write one `- item` per line, or `[a, b]`",
                );
                None
            }
        }
    }

    /// Report every key of `node` (a mapping) not in `allowed`.
    pub fn check_keys(&mut self, node: &Node, allowed: &[&str], context: &str) {
        for e in node.entries() {
            let Some(key) = e.key.as_str() else {
                self.error(
                    e.key.pos,
                    format!("{context}: keys must be plain names"),
                    "write the key as a plain word followed by `:`",
                );
                continue;
            };
            if allowed.contains(&key) {
                continue;
            }
            let canon = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
            let help = match allowed.iter().find(|a| canon(a) == canon(key)) {
                Some(a) => format!("did you mean `{a}`? (keys are case-sensitive)"),
                None => format!(
                    "allowed here: {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(e.key.pos, format!("unknown key `{key}` in {context}"), help);
        }
    }

    /// The value under `key`, or an error at the mapping if it is missing.
    pub fn required<'n>(&mut self, map: &'n Node, key: &str, context: &str) -> Option<&'n Node> {
        match map.get(key) {
            Some(v) => Some(v),
            None => {
                self.error(
                    map.pos,
                    format!("{context} is missing the required key `{key}`"),
                    format!("add `{key}:`"),
                );
                None
            }
        }
    }

    /// A scalar's text. Null gives `None` without an error when
    /// `null_ok`; a mapping or list is an error.
    pub fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a single value, found {}", kind(node)),
                    "write the value on the same line as its key (quote it if it contains `: ` or starts with `-`, `[` or `{`)",
                );
                None
            }
        }
    }

    /// A non-empty scalar's text.
    pub fn nonempty_text(&mut self, node: &Node, what: &str) -> Option<String> {
        if node.is_null() {
            self.error(
                node.pos,
                format!("{what} must not be empty"),
                "give it a value",
            );
            return None;
        }
        let t = self.text(node, what)?;
        if t.trim().is_empty() {
            self.error(
                node.pos,
                format!("{what} must not be empty"),
                "give it a value",
            );
            return None;
        }
        Some(t)
    }

    /// A list of scalars (text).
    pub fn text_list(&mut self, node: &Node, what: &str) -> Vec<String> {
        let Some(items) = self.seq(node, what) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| self.nonempty_text(i, &format!("an entry of {what}")))
            .collect()
    }

    /// A YAML 1.1 boolean (`yes`/`no`, `true`/`false`, `on`/`off`).
    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let b = node.as_str().and_then(yaml11::bool_of);
        if b.is_none() {
            self.error(
                node.pos,
                format!("{what} must be a boolean, found `{}`", show(node)),
                "write `true`/`false` (YAML 1.1 `yes`/`no` also work)",
            );
        }
        b
    }

    /// A positive integer.
    pub fn positive(&mut self, node: &Node, what: &str) -> Option<u32> {
        let n = node
            .as_str()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|n| *n > 0);
        if n.is_none() {
            self.error(
                node.pos,
                format!(
                    "{what} must be a positive whole number, found `{}`",
                    show(node)
                ),
                "write a number such as `60`",
            );
        }
        n
    }
}

/// Bytes of source [`Reader::find_from`] looks through.
const FIND_WINDOW: usize = 16 * 1024;

fn from_col(first_line: bool, start_char: usize, before: &str) -> usize {
    let base = if first_line { start_char } else { 0 };
    base + before.chars().count() + 1
}

/// `names` joined with `, `, at most [`LIST_NAMES`] of them and a count of
/// the rest, for hints that list what exists.
pub(crate) fn list_names<'s>(names: impl Iterator<Item = &'s str>) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for n in names {
        if shown.len() < LIST_NAMES {
            shown.push(n);
        } else {
            more += 1;
        }
    }
    let mut out = shown.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

const LIST_NAMES: usize = 20;

/// A short description of a node's shape for messages.
pub(crate) fn kind(node: &Node) -> &'static str {
    match &node.value {
        Value::Scalar { .. } if node.is_null() => "nothing",
        Value::Scalar { .. } => "a single value",
        Value::Seq(_) => "a list",
        Value::Map(_) => "a mapping",
    }
}

/// The node's text for messages (scalars only).
pub(crate) fn show(node: &Node) -> String {
    match &node.value {
        Value::Scalar { text, .. } => text.clone(),
        _ => kind(node).to_string(),
    }
}

/// `[A-Za-z0-9_-]+`: the charset of CodeCatalyst names (workflow, action,
/// group, artifact).
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
