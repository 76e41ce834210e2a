use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
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

/// Parse the first document of `text`. An empty document gives `Ok(None)`.
/// A syntax error gives its position and the parser's message.
pub fn parse(text: &str) -> Result<Option<Node>, (Pos, String)> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| (pos_of(e.marker()), e.info().to_string()))?;
    if let Some((pos, msg)) = builder.error {
        return Err((pos, msg));
    }
    Ok(builder.root)
}

fn pos_of(m: &Marker) -> Pos {
    // yaml-rust2 lines are 1-based, columns 0-based.
    Pos::new(m.line(), m.col() + 1)
}

enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Entry>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    done: bool,
    error: Option<(Pos, String)>,
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if !self.done {
                    self.root = Some(node);
                    self.done = true;
                }
            }
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if self.error.is_none() {
                        if let Some(k) = key.as_str() {
                            if entries.iter().any(|e| e.key.as_str() == Some(k)) {
                                self.error =
                                    Some((key.pos, format!("duplicate key `{k}` in a mapping")));
                            }
                        }
                    }
                    entries.push(Entry { key, value: node });
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                self.push_node(
                    Node {
                        pos,
                        value: Value::Scalar { text, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(p, a, items)) => (
                        Node {
                            pos: p,
                            value: Value::Seq(items),
                        },
                        a,
                    ),
                    Some(Open::Map(p, a, entries, _)) => (
                        Node {
                            // a block mapping's start event is marked at its first `:`;
                            // point at the first key instead
                            pos: entries.first().map_or(p, |e| e.key.pos.min(p)),
                            value: Value::Map(entries),
                        },
                        a,
                    ),
                    None => return,
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    pos,
                    value: Value::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                });
                self.push_node(node, 0);
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
        assert_eq!(err.0, Pos::new(3, 1));
        assert!(err.1.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.0.line >= 1, "{err:?}");
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
