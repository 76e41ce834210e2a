use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::Pos;

/// A YAML node with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar exactly as written (after YAML unescaping). `plain` is false
    /// for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
}

/// One step of a path into a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> From<&'a str> for Seg<'a> {
    fn from(k: &'a str) -> Self {
        Seg::Key(k)
    }
}

impl From<usize> for Seg<'_> {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for a plain scalar that YAML reads as null (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// The entry whose key is `key`.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key.as_str() == Some(key))
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The node at `path`, if every step exists.
    pub fn at(&self, path: &[Seg<'_>]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = node.step(*seg)?;
        }
        Some(node)
    }

    fn step(&self, seg: Seg<'_>) -> Option<&Node> {
        match seg {
            Seg::Key(k) => self.get(k),
            Seg::Index(i) => self.items().get(i),
        }
    }

    /// Position of the node at `path`, or of the deepest ancestor that
    /// exists (so a "missing field" error points at the mapping that lacks it).
    pub fn locate(&self, path: &[Seg<'_>]) -> Pos {
        let mut node = self;
        for seg in path {
            match node.step(*seg) {
                Some(next) => node = next,
                None => break,
            }
        }
        node.pos
    }

    /// Position of the *key* of the last step of `path` when it is a mapping
    /// key, else the same as [`Node::locate`]. Use it for "this field is not
    /// allowed here" errors.
    pub fn locate_key(&self, path: &[Seg<'_>]) -> Pos {
        if let Some((Seg::Key(k), parent)) = path.split_last() {
            if let Some(entry) = self.at(parent).and_then(|p| p.entry(k)) {
                return entry.key.pos;
            }
        }
        self.locate(path)
    }
}

/// Bounds on what [`parse_with`] accepts. Every input within them is parsed
/// in time and memory linear in `max_bytes + max_nodes`; anything beyond
/// them is refused with a positioned [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest input, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings (the root collection is
    /// level 1). Keeps every recursive walk over the tree, here and in
    /// callers, far from the end of a thread's stack.
    pub max_depth: usize,
    /// Most nodes (scalars, sequences, mappings, keys included) in the
    /// document *after* alias expansion: an alias costs as many nodes as
    /// the anchored node it copies. This is the alias expansion budget that
    /// stops "billion laughs" documents.
    pub max_nodes: usize,
}

/// Largest YAML input the parsers accept: 1 MiB.
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// Deepest nesting of collections.
pub const MAX_DEPTH: usize = 64;
/// Most nodes after alias expansion.
pub const MAX_NODES: usize = 50_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: MAX_INPUT_BYTES,
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
        }
    }
}

/// Why a document could not be parsed: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
    /// `true` for a YAML syntax error (or a duplicate key), `false` when
    /// the document is well formed but exceeds one of the [`Limits`].
    pub syntax: bool,
}

impl ParseError {
    fn limit(pos: Pos, message: String) -> Self {
        ParseError {
            pos,
            message,
            syntax: false,
        }
    }

    /// The message with its kind, for a diagnostic: `YAML syntax error: …`
    /// or the limit that was exceeded.
    pub fn describe(&self) -> String {
        if self.syntax {
            format!("YAML syntax error: {}", self.message)
        } else {
            self.message.clone()
        }
    }

    /// What to change, for a limit error (callers have their own help for
    /// syntax errors).
    pub fn limit_help(&self) -> &'static str {
        "this file is larger or more deeply nested than Cove reads; \
         simplify it (fewer aliases, less nesting, smaller lists)"
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pos, self.describe())
    }
}

impl std::error::Error for ParseError {}

/// Parse the first document of `text` within the default [`Limits`]. An
/// empty document gives `Ok(None)`. A syntax error, or an input beyond a
/// limit, gives its position and a message.
pub fn parse(text: &str) -> Result<Option<Node>, ParseError> {
    parse_with(text, &Limits::default())
}

/// [`parse`] with explicit limits.
pub fn parse_with(text: &str, limits: &Limits) -> Result<Option<Node>, ParseError> {
    parse_counted(text, limits).map(|(root, _)| root)
}

/// [`parse_with`], also returning how many nodes the document has after
/// alias expansion (for callers that share one budget between files).
pub fn parse_counted(text: &str, limits: &Limits) -> Result<(Option<Node>, usize), ParseError> {
    if text.len() > limits.max_bytes {
        return Err(ParseError::limit(
            Pos::START,
            format!(
                "the file is {} bytes; Cove reads files of at most {} bytes ({} KiB)",
                text.len(),
                limits.max_bytes,
                limits.max_bytes / 1024
            ),
        ));
    }
    let mut builder = Builder {
        limits: *limits,
        text,
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    // Drive the parser event by event (its own `load` recurses once per
    // nesting level) and stop at the end of the first document or at the
    // first error.
    let mut in_document = false;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let pos = pos_of(e.marker());
            if e.info().contains("recursion limit") {
                // the scanner's own guard against deep flow nesting, which
                // it can reach before the builder sees the events
                nested_too_deep(pos, limits)
            } else {
                ParseError {
                    pos,
                    message: e.info().to_string(),
                    syntax: true,
                }
            }
        })?;
        match ev {
            Event::StreamEnd => break,
            Event::DocumentStart => in_document = true,
            Event::DocumentEnd => {
                if in_document {
                    break;
                }
            }
            ev => builder.on_event(ev, mark),
        }
        if let Some(e) = builder.error.take() {
            return Err(e);
        }
        if builder.done {
            break;
        }
    }
    Ok((builder.root, builder.nodes))
}

fn nested_too_deep(pos: Pos, limits: &Limits) -> ParseError {
    ParseError::limit(
        pos,
        format!(
            "this collection is nested more than {} levels deep",
            limits.max_depth
        ),
    )
}

fn pos_of(m: &Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos::new(m.line(), m.col() + 1)
}

enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Entry>, Option<Node>, HashSet<String>),
}

/// An open collection: the node count when it started, so its size is
/// known when it ends (an alias to it costs that many nodes).
struct Frame {
    open: Open,
    nodes_at_start: usize,
}

#[derive(Default)]
struct Builder<'t> {
    limits: Limits,
    text: &'t str,
    stack: Vec<Frame>,
    /// anchor id → (node, its size in nodes)
    anchors: HashMap<usize, (Node, usize)>,
    /// nodes so far, aliases counted at their expanded size
    nodes: usize,
    root: Option<Node>,
    done: bool,
    error: Option<ParseError>,
}

impl Builder<'_> {
    fn push_node(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut().map(|f| &mut f.open) {
            None => {
                if !self.done {
                    self.root = Some(node);
                    self.done = true;
                }
            }
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, pending, keys)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Some(k) = key.as_str() {
                        if !keys.insert(k.to_string()) && self.error.is_none() {
                            self.error = Some(ParseError {
                                pos: key.pos,
                                message: format!("duplicate key `{k}` in a mapping"),
                                syntax: true,
                            });
                        }
                    }
                    entries.push(Entry { key, value: node });
                }
            },
        }
    }

    /// Count `n` more nodes; false (and an error at `pos` about `what`)
    /// past the budget.
    fn count(&mut self, n: usize, pos: Pos, what: impl FnOnce(&Self) -> String) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes <= self.limits.max_nodes {
            return true;
        }
        let what = what(self);
        self.error = Some(ParseError::limit(
            pos,
            format!(
                "{what} takes the document past {} nodes",
                self.limits.max_nodes
            ),
        ));
        false
    }

    /// The alias name written at `pos` (`*name`), for messages.
    fn alias_name(&self, pos: Pos) -> String {
        let name: String = self
            .text
            .lines()
            .nth(pos.line.saturating_sub(1))
            .map(|l| {
                l.chars()
                    .skip(pos.column.saturating_sub(1))
                    .skip_while(|c| *c == '*')
                    .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}'))
                    .take(64)
                    .collect()
            })
            .unwrap_or_default();
        format!("the alias `*{name}` (a copy of its anchor)")
    }

    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.count(1, pos, |_| "this value".to_string()) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                self.push_node(
                    Node {
                        pos,
                        value: Value::Scalar { text, plain },
                    },
                    anchor,
                    1,
                );
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= self.limits.max_depth {
                    self.error = Some(nested_too_deep(pos, &self.limits));
                    return;
                }
                if !self.count(1, pos, |_| "this collection".to_string()) {
                    return;
                }
                let open = if matches!(ev, Event::SequenceStart(..)) {
                    Open::Seq(pos, anchor, Vec::new())
                } else {
                    Open::Map(pos, anchor, Vec::new(), None, HashSet::new())
                };
                self.stack.push(Frame {
                    open,
                    nodes_at_start: self.nodes,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let size = self.nodes - frame.nodes_at_start + 1;
                let (node, anchor) = match frame.open {
                    Open::Seq(p, a, items) => (
                        Node {
                            pos: p,
                            value: Value::Seq(items),
                        },
                        a,
                    ),
                    Open::Map(p, a, entries, _, _) => (
                        Node {
                            // a block mapping's start event is marked at its first `:`;
                            // point at the first key instead
                            pos: entries.first().map_or(p, |e| e.key.pos.min(p)),
                            value: Value::Map(entries),
                        },
                        a,
                    ),
                };
                self.push_node(node, anchor, size);
            }
            Event::Alias(id) => {
                let (node, size) = self.anchors.get(&id).cloned().unwrap_or((
                    Node {
                        pos,
                        value: Value::Scalar {
                            text: String::new(),
                            plain: true,
                        },
                    },
                    1,
                ));
                if !self.count(size, pos, |b| b.alias_name(pos)) {
                    return;
                }
                self.push_node(node, 0, size);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("a: 1\nb:\n  - x\n  - {c: d}\n").unwrap().unwrap();
        assert_eq!(doc.locate(&["a".into()]), Pos::new(1, 4));
        assert_eq!(doc.locate_key(&["b".into()]), Pos::new(2, 1));
        assert_eq!(doc.locate(&["b".into(), 0.into()]), Pos::new(3, 5));
        assert_eq!(
            doc.at(&["b".into(), 1.into(), "c".into()])
                .unwrap()
                .as_str(),
            Some("d")
        );
        // a missing step points at the deepest existing ancestor
        assert_eq!(doc.locate(&["b".into(), 7.into()]), Pos::new(3, 3));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(3, 1));
        assert!(err.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1 && err.syntax, "{err:?}");
    }

    #[test]
    fn aliases_resolve_to_the_anchor() {
        let doc = parse("x: &v hello\ny: *v\n").unwrap().unwrap();
        assert_eq!(doc.get("y").unwrap().as_str(), Some("hello"));
    }

    #[test]
    fn empty_document_is_none() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("# only a comment\n").unwrap().is_none());
    }
}
