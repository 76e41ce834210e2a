//! Loading one devfile file, following its `parent` chain, substituting
//! `{{variables}}` and flattening everything into one document.
//!
//! Order (devfile rules 8 and 9): every file of the chain is schema-checked
//! on its own; variables are collected root-first (parent, then the child's
//! `parent.variables` overrides, then the child's own, then the caller's);
//! they are substituted in each file before merging, which gives the same
//! result as substituting after the merge but lets a warning point at the
//! file and line where the unknown variable is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_yaml::{Mapping, Value as Yaml};
use yamlmap::{Diagnostic, Node, Pos, Seg};

use crate::model::Devfile;
use crate::version::Version;
use crate::{schema, Resolver};

mod merge;
mod vars;

pub(crate) use merge::merge_chain;
pub(crate) use vars::{collect_variables, substitute_doc, SubstBudget};
pub use vars::{replace_vars, MAX_SUBSTITUTED_BYTES};

/// One file of a parent chain, parsed and schema-checked.
pub(crate) struct SourceDoc {
    pub file: String,
    pub node: Node,
    pub value: Yaml,
    pub version: Version,
}

/// A path step that owns its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

pub(crate) type OwnedPath = Vec<PathSeg>;

fn borrow(path: &[PathSeg]) -> Vec<Seg<'_>> {
    path.iter()
        .map(|s| match s {
            PathSeg::Key(k) => Seg::Key(k),
            PathSeg::Index(i) => Seg::Index(*i),
        })
        .collect()
}

/// Where each element of the flattened devfile was written.
#[derive(Default)]
pub(crate) struct Origins {
    /// (section, key) → (doc index, path of the element in that doc)
    pub elements: BTreeMap<(String, String), (usize, OwnedPath)>,
    /// (event kind, index in the merged list) → (doc index, path)
    pub events: BTreeMap<(String, usize), (usize, OwnedPath)>,
    /// (section, key) → the `parent:` overrides of that element, in the
    /// order applied (the last one wins)
    pub overrides: BTreeMap<(String, String), Vec<(usize, OwnedPath)>>,
}

/// The flattened devfile plus what is needed to point back into the files.
pub(crate) struct Flattened {
    pub docs: Vec<SourceDoc>,
    pub origins: Origins,
    pub devfile: Devfile,
    pub version: Version,
}

impl Flattened {
    /// File and position of `rel` inside the element `key` of `section`
    /// (e.g. `("components", "runtime")`), or of the element itself.
    /// A value set by a child's `parent:` override is found in the child.
    pub fn locate(&self, section: &str, key: &str, rel: &[Seg<'_>]) -> (&str, Pos) {
        let id = (section.to_string(), key.to_lowercase());
        if !rel.is_empty() {
            for (doc, path) in self.origins.overrides.get(&id).into_iter().flatten().rev() {
                let d = &self.docs[*doc];
                let mut full = borrow(path);
                full.extend_from_slice(rel);
                if let Some(node) = d.node.at(&full) {
                    return (&d.file, node.pos);
                }
            }
        }
        match self
            .origins
            .elements
            .get(&(section.to_string(), key.to_lowercase()))
        {
            Some((doc, path)) => {
                let d = &self.docs[*doc];
                let mut full = borrow(path);
                full.extend_from_slice(rel);
                (&d.file, d.node.locate(&full))
            }
            None => self.top(&[Seg::Key(section)]),
        }
    }

    /// Position of an event reference.
    pub fn locate_event(&self, kind: &str, index: usize) -> (&str, Pos) {
        match self.origins.events.get(&(kind.to_string(), index)) {
            Some((doc, path)) => {
                let d = &self.docs[*doc];
                (&d.file, d.node.locate(&borrow(path)))
            }
            None => self.top(&[Seg::Key("events")]),
        }
    }

    /// Position of `path` in the top (child) file.
    pub fn top(&self, path: &[Seg<'_>]) -> (&str, Pos) {
        let d = &self.docs[0];
        (&d.file, d.node.locate(path))
    }
}

const SECTIONS: &[(&str, &str)] = &[
    ("components", "name"),
    ("commands", "id"),
    ("projects", "name"),
    ("starterProjects", "name"),
    ("dependentProjects", "name"),
];

const MAX_PARENT_DEPTH: usize = 8;

/// Parse and schema-check one file within `limits`; also returns its node
/// count.
pub(crate) fn parse_one(
    file: &str,
    text: &str,
    limits: &yamlmap::Limits,
) -> Result<(SourceDoc, usize), Vec<Diagnostic>> {
    let (node, nodes) = match yamlmap::parse_counted(text, limits) {
        Ok((Some(node), nodes)) => (node, nodes),
        Ok((None, _)) => {
            return Err(vec![Diagnostic::error(
                file,
                Pos::START,
                "the devfile is empty",
            )
            .with_help(
                "start it with `schemaVersion: 2.2.0` and a `components:` list",
            )])
        }
        Err(e) => {
            let help = if e.syntax {
                "fix the indentation or quoting at this position".to_string()
            } else {
                format!(
                    "{} (a devfile and its parents share one budget of {} bytes and {} nodes)",
                    e.limit_help(),
                    yamlmap::MAX_INPUT_BYTES,
                    yamlmap::MAX_NODES
                )
            };
            return Err(vec![
                Diagnostic::error(file, e.pos, e.describe()).with_help(help)
            ]);
        }
    };
    if !matches!(node.value, yamlmap::Value::Map(_)) {
        return Err(vec![Diagnostic::error(
            file,
            node.pos,
            "a devfile must be a YAML mapping (key: value pairs)",
        )]);
    }
    let version = match node.get("schemaVersion") {
        None => {
            return Err(vec![Diagnostic::error(
                file,
                node.pos,
                "missing required field `schemaVersion`",
            )
            .with_help("add `schemaVersion: 2.2.0` as the first line")])
        }
        Some(v) => {
            let text = v.as_str().unwrap_or_default();
            match Version::parse(text) {
                None => {
                    return Err(vec![Diagnostic::error(
                        file,
                        v.pos,
                        format!("schemaVersion `{text}` is not a version of the form 2.x.y"),
                    )
                    .with_help("use one of 2.0.0, 2.1.0, 2.2.0, 2.2.1, 2.2.2, 2.3.0")])
                }
                Some(ver) if !ver.is_supported() => {
                    return Err(vec![Diagnostic::error(
                        file,
                        v.pos,
                        format!(
                        "schemaVersion {ver} is not supported; Cove reads devfile 2.0.0 to 2.3.0"
                    ),
                    )
                    .with_help("use one of 2.0.0, 2.1.0, 2.2.0, 2.2.1, 2.2.2, 2.3.0")])
                }
                Some(ver) => ver,
            }
        }
    };
    let errors = schema::check(file, &node, version);
    if !errors.is_empty() {
        return Err(errors);
    }
    // Types, required fields and enum values.
    if let Err(e) = serde_yaml::from_str::<Devfile>(text) {
        return Err(vec![typed_error(file, &e)]);
    }
    let value: Yaml = serde_yaml::from_str(text).map_err(|e| vec![typed_error(file, &e)])?;
    Ok((
        SourceDoc {
            file: file.to_string(),
            node,
            value,
            version,
        },
        nodes,
    ))
}

fn typed_error(file: &str, e: &serde_yaml::Error) -> Diagnostic {
    let d = Diagnostic::from_serde(file, e);
    let help = if d.message.contains("missing field") {
        Some("add the missing field at this place")
    } else if d.message.contains("unknown variant") {
        Some("use one of the values listed")
    } else if d.message.contains("repetition limit") || d.message.contains("recursion limit") {
        Some("the aliases here expand too far: write the values out or use fewer aliases")
    } else if d.message.contains("invalid type") {
        Some("check the value's type: quote strings, write numbers and true/false without quotes")
    } else {
        None
    };
    match help {
        Some(h) => d.with_help(h),
        None => d,
    }
}

/// Load the child and every ancestor: `[child, parent, grandparent, …]`.
pub(crate) fn load_chain(
    file: &str,
    text: &str,
    resolver: &dyn Resolver,
) -> Result<Vec<SourceDoc>, Vec<Diagnostic>> {
    // one budget of bytes and nodes for the devfile and all its parents
    let mut limits = yamlmap::Limits::default();
    let (child, nodes) = parse_one(file, text, &limits)?;
    limits.max_bytes -= text.len();
    limits.max_nodes -= nodes;
    let mut chain = vec![child];
    loop {
        let current = chain.last().expect("chain starts with the child");
        let Some(parent) = current.node.get("parent") else {
            break;
        };
        let at = |key: &str| current.node.locate(&[Seg::Key("parent"), Seg::Key(key)]);
        let from_registry = parent.get("id").and_then(Node::as_str);
        if parent.get("kubernetes").is_some() {
            return Err(vec![Diagnostic::error(
                &current.file,
                at("kubernetes"),
                "a parent from a Kubernetes DevWorkspaceTemplate (`parent.kubernetes`) cannot be read by Cove's Docker backend",
            )
            .with_help("copy the parent devfile into the repository and point to it with `parent.uri`")]);
        }
        let (key, uri) = match (from_registry, parent.get("uri").and_then(Node::as_str)) {
            (Some(id), _) => ("id", id),
            (None, Some(uri)) => ("uri", uri),
            (None, None) => break,
        };
        if chain.len() > MAX_PARENT_DEPTH {
            return Err(vec![Diagnostic::error(
                &current.file,
                at(key),
                format!("the parent chain is deeper than {MAX_PARENT_DEPTH} devfiles"),
            )]);
        }
        let read = if key == "id" {
            let registry = parent.get("registryUrl").and_then(Node::as_str);
            let version = parent.get("version").and_then(Node::as_str);
            resolver
                .read_registry(registry, uri, version)
                .map_err(|reason| {
                    vec![Diagnostic::error(
                        &current.file,
                        at(key),
                        format!("cannot read parent `{uri}` from a devfile registry: {reason}"),
                    )
                    .with_help("check `parent.registryUrl` and `parent.version`, or copy the parent into the repository and use `parent.uri`")]
                })
        } else {
            resolver.read(&current.file, uri).map_err(|reason| {
                vec![Diagnostic::error(
                    &current.file,
                    at(key),
                    format!("cannot read parent devfile `{uri}`: {reason}"),
                )
                .with_help("`parent.uri` is resolved relative to this devfile's directory")]
            })
        };
        let (parent_file, parent_text) = read?;
        if chain
            .iter()
            .any(|d| resolver.same_file(&d.file, &parent_file))
        {
            return Err(vec![Diagnostic::error(
                &current.file,
                at(key),
                format!("parent `{uri}` is already part of this parent chain (a cycle)"),
            )]);
        }
        let (parent_doc, nodes) = parse_one(&parent_file, &parent_text, &limits)?;
        limits.max_bytes = limits.max_bytes.saturating_sub(parent_text.len());
        limits.max_nodes = limits.max_nodes.saturating_sub(nodes);
        if parent_doc.version > current.version {
            return Err(vec![Diagnostic::error(
                &current.file,
                at(key),
                format!(
                    "the parent devfile uses schemaVersion {} which is newer than this devfile's {}",
                    parent_doc.version, current.version
                ),
            )
            .with_help(format!("raise this devfile's schemaVersion to {} or later", parent_doc.version))]);
        }
        chain.push(parent_doc);
    }
    Ok(chain)
}
