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

/// Collect the variables of the chain, root first; the caller's overrides win.
pub(crate) fn collect_variables(
    chain: &[SourceDoc],
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for doc in chain.iter().rev() {
        if let Some(pv) = doc.value.get("parent").and_then(|p| p.get("variables")) {
            extend_vars(&mut vars, pv);
        }
        if let Some(v) = doc.value.get("variables") {
            extend_vars(&mut vars, v);
        }
    }
    vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

fn extend_vars(vars: &mut BTreeMap<String, String>, v: &Yaml) {
    if let Some(map) = v.as_mapping() {
        for (k, v) in map {
            if let (Some(k), Some(v)) = (k.as_str(), scalar_text(v)) {
                vars.insert(k.to_string(), v);
            }
        }
    }
}

fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How many bytes `{{variable}}` substitution may add to one devfile
/// chain (a value of 1 KiB used a thousand times is 1 MiB of text).
pub const MAX_SUBSTITUTED_BYTES: usize = yamlmap::MAX_INPUT_BYTES;

/// What substitution has left to spend, across the files of a chain.
pub(crate) struct SubstBudget {
    pub left: usize,
}

impl Default for SubstBudget {
    fn default() -> Self {
        SubstBudget {
            left: MAX_SUBSTITUTED_BYTES,
        }
    }
}

/// Substitute `{{key}}` in the substitutable strings of `doc`; unknown keys
/// become warnings and stay as written. Fails (at the string where it
/// happens) when substitution grows the text past [`MAX_SUBSTITUTED_BYTES`].
pub(crate) fn substitute_doc(
    doc: &mut SourceDoc,
    vars: &BTreeMap<String, String>,
    warnings: &mut Vec<Diagnostic>,
    budget: &mut SubstBudget,
) -> Result<(), Diagnostic> {
    let mut found = Vec::new();
    let mut path = Vec::new();
    let mut over = None;
    for (section, _) in SECTIONS {
        if let Some(v) = doc.value.get_mut(*section) {
            path.push(PathSeg::Key((*section).to_string()));
            substitute(v, &mut path, vars, &mut found, budget, &mut over);
            path.pop();
        }
        if let Some(v) = doc
            .value
            .get_mut("parent")
            .and_then(|p| p.get_mut(*section))
        {
            path.push(PathSeg::Key("parent".into()));
            path.push(PathSeg::Key((*section).to_string()));
            substitute(v, &mut path, vars, &mut found, budget, &mut over);
            path.truncate(path.len() - 2);
        }
    }
    if let Some(p) = over {
        return Err(Diagnostic::error(
            &doc.file,
            doc.node.locate(&borrow(&p)),
            format!(
                "substituting `{{{{variables}}}}` makes the devfile more than {MAX_SUBSTITUTED_BYTES} bytes larger"
            ),
        )
        .with_help("use shorter variable values or fewer references"));
    }
    for (i, (p, name)) in found.into_iter().enumerate() {
        // past the cap the warning is only counted: skip finding where it is
        let pos = if i < yamlmap::MAX_DIAGNOSTICS {
            doc.node.locate(&borrow(&p))
        } else {
            Pos::START
        };
        warnings.push(
            Diagnostic::warning(
                &doc.file,
                pos,
                format!("variable `{name}` is not defined; the text `{{{{{name}}}}}` is kept as written"),
            )
            .with_help(format!("define `{name}` under `variables:` or pass it with --var {name}=VALUE")),
        );
    }
    Ok(())
}

/// Keys whose values are identifiers, references or enums: never substituted.
fn is_reference(path: &[PathSeg]) -> bool {
    let key_at = |back: usize| match path.len().checked_sub(back).and_then(|i| path.get(i)) {
        Some(PathSeg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match key_at(1) {
        Some("name") => key_at(3) != Some("env"),
        Some("id" | "component" | "kind" | "exposure" | "protocol" | "attributes") => true,
        _ => key_at(2) == Some("commands") && key_at(3) == Some("composite"),
    }
}

fn substitute(
    v: &mut Yaml,
    path: &mut OwnedPath,
    vars: &BTreeMap<String, String>,
    found: &mut Vec<(OwnedPath, String)>,
    budget: &mut SubstBudget,
    over: &mut Option<OwnedPath>,
) {
    if is_reference(path) || over.is_some() {
        return;
    }
    match v {
        Yaml::String(s) if s.contains("{{") => {
            let limit = s.len().saturating_add(budget.left);
            let Some((out, missing)) = replace_vars_within(s, vars, limit) else {
                *over = Some(path.clone());
                return;
            };
            budget.left -= out.len().saturating_sub(s.len());
            *s = out;
            for m in missing {
                found.push((path.clone(), m));
            }
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSeg::Index(i));
                substitute(item, path, vars, found, budget, over);
                path.pop();
            }
        }
        Yaml::Mapping(map) => {
            let keys: Vec<Yaml> = map.keys().cloned().collect();
            for k in keys {
                let (Some(name), true) = (k.as_str().map(str::to_string), map.get(&k).is_some())
                else {
                    continue;
                };
                // keys that are themselves variables (env names live in values, so map keys stay)
                path.push(PathSeg::Key(name));
                if let Some(val) = map.get_mut(&k) {
                    substitute(val, path, vars, found, budget, over);
                }
                path.pop();
            }
        }
        _ => {}
    }
}

/// Replace every `{{ key }}` whose key is defined; return the unknown keys.
pub fn replace_vars(text: &str, vars: &BTreeMap<String, String>) -> (String, Vec<String>) {
    replace_vars_within(text, vars, usize::MAX).expect("no limit")
}

/// [`replace_vars`], or `None` as soon as the result would be longer than
/// `limit` bytes.
fn replace_vars_within(
    text: &str,
    vars: &BTreeMap<String, String>,
    limit: usize,
) -> Option<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut missing = Vec::new();
    let mut missing_set = std::collections::HashSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match vars.get(key) {
                    Some(v) if !key.is_empty() => {
                        if out.len().saturating_add(v.len()) > limit {
                            return None;
                        }
                        out.push_str(v)
                    }
                    _ => {
                        if !key.is_empty() && missing_set.insert(key) {
                            missing.push(key.to_string());
                        }
                        out.push_str(&rest[start..start + 2 + end + 2]);
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Some((out, missing))
}

/// Merge the chain into one devfile (root first).
pub(crate) fn merge_chain(chain: Vec<SourceDoc>) -> Result<Flattened, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut origins = Origins::default();
    let n = chain.len();
    let root_idx = n - 1;
    let mut flat = chain[root_idx].value.clone();
    if let Some(m) = flat.as_mapping_mut() {
        m.remove("parent");
    }
    record_origins(&flat, root_idx, &mut origins, &[]);
    for idx in (0..root_idx).rev() {
        let doc = &chain[idx];
        // the variables and attributes of the ancestors (before this file's
        // `parent:` overrides, which may only change them)
        let inherited_keys: HashMap<&str, HashSet<String>> = ["variables", "attributes"]
            .into_iter()
            .map(|key| {
                let keys = flat
                    .get(key)
                    .and_then(Yaml::as_mapping)
                    .map(|m| {
                        m.keys()
                            .filter_map(Yaml::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                (key, keys)
            })
            .collect();
        // 1. overrides under `parent:` change existing elements only
        if let Some(parent) = doc.value.get("parent") {
            for (section, key_field) in SECTIONS {
                let Some(overrides) = parent.get(*section).and_then(Yaml::as_sequence) else {
                    continue;
                };
                // key → position in the merged list (the first one), so overrides are linear
                let index = key_index(&flat, section, key_field);
                for (i, ov) in overrides.iter().enumerate() {
                    let key = ov
                        .get(*key_field)
                        .and_then(Yaml::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let at = doc.node.locate(&[
                        Seg::Key("parent"),
                        Seg::Key(section),
                        Seg::Index(i),
                        Seg::Key(key_field),
                    ]);
                    let base = index.get(&key.to_ascii_lowercase()).and_then(|&j| {
                        flat.get_mut(*section)
                            .and_then(Yaml::as_sequence_mut)
                            .and_then(|items| items.get_mut(j))
                    });
                    match base {
                        None => errors.push(
                            Diagnostic::error(
                                &doc.file,
                                at,
                                format!("`parent.{section}` overrides `{key}`, which the parent devfile does not define"),
                            )
                            .with_help(format!("overrides can only change existing elements; to add `{key}`, list it under the top-level `{section}:`")),
                        ),
                        Some(base) => {
                            if let Some(kind_err) = kind_mismatch(base, ov) {
                                errors.push(Diagnostic::error(&doc.file, at, format!("override of `{key}` {kind_err}")));
                            } else {
                                merge_value(base, ov, None);
                                origins
                                    .overrides
                                    .entry(((*section).to_string(), key.to_lowercase()))
                                    .or_default()
                                    .push((
                                        idx,
                                        vec![
                                            PathSeg::Key("parent".into()),
                                            PathSeg::Key((*section).to_string()),
                                            PathSeg::Index(i),
                                        ],
                                    ));
                            }
                        }
                    }
                }
            }
            if let Some(attrs) = parent.get("attributes") {
                merge_into(&mut flat, "attributes", attrs);
            }
        }
        // 2. the child's own elements are additions
        for (section, key_field) in SECTIONS {
            let Some(items) = doc.value.get(*section).and_then(Yaml::as_sequence) else {
                continue;
            };
            let mut existing = key_index(&flat, section, key_field);
            for (i, item) in items.iter().enumerate() {
                let key = item
                    .get(*key_field)
                    .and_then(Yaml::as_str)
                    .unwrap_or_default()
                    .to_string();
                let exists = existing
                    .insert(key.to_ascii_lowercase(), usize::MAX)
                    .is_some();
                if exists {
                    let at =
                        doc.node
                            .locate(&[Seg::Key(section), Seg::Index(i), Seg::Key(key_field)]);
                    errors.push(
                        Diagnostic::error(
                            &doc.file,
                            at,
                            format!("`{key}` is already defined in {section} of the parent devfile"),
                        )
                        .with_help(format!("to change it, override it under `parent: {section}:` instead of redefining it")),
                    );
                    continue;
                }
                let list = flat
                    .as_mapping_mut()
                    .expect("a devfile is a mapping")
                    .entry(Yaml::String((*section).to_string()))
                    .or_insert_with(|| Yaml::Sequence(Vec::new()));
                if !list.is_sequence() {
                    *list = Yaml::Sequence(Vec::new());
                }
                if let Some(seq) = list.as_sequence_mut() {
                    seq.push(item.clone());
                }
                origins.elements.insert(
                    ((*section).to_string(), key.to_lowercase()),
                    (
                        idx,
                        vec![PathSeg::Key((*section).to_string()), PathSeg::Index(i)],
                    ),
                );
            }
        }
        // 3. events concatenate parent → child
        if let Some(events) = doc.value.get("events").and_then(Yaml::as_mapping) {
            for (kind, ids) in events {
                let (Some(kind), Some(ids)) = (kind.as_str(), ids.as_sequence()) else {
                    continue;
                };
                let ev = flat
                    .as_mapping_mut()
                    .expect("a devfile is a mapping")
                    .entry(Yaml::String("events".into()))
                    .or_insert_with(|| Yaml::Mapping(Mapping::new()));
                let list = ev.as_mapping_mut().map(|m| {
                    m.entry(Yaml::String(kind.to_string()))
                        .or_insert_with(|| Yaml::Sequence(Vec::new()))
                });
                if let Some(Yaml::Sequence(seq)) = list {
                    for (i, id) in ids.iter().enumerate() {
                        origins.events.insert(
                            (kind.to_string(), seq.len()),
                            (
                                idx,
                                vec![
                                    PathSeg::Key("events".into()),
                                    PathSeg::Key(kind.to_string()),
                                    PathSeg::Index(i),
                                ],
                            ),
                        );
                        seq.push(id.clone());
                    }
                }
            }
        }
        // 4. the rest of the top level comes from the child; a top-level
        //    variable or attribute the parent chain defines is an error
        //    (overrides belong under `parent:`), as in devfile/library
        for key in ["variables", "attributes"] {
            let (Some(mine), Some(inherited)) = (
                doc.value.get(key).and_then(Yaml::as_mapping),
                inherited_keys.get(key),
            ) else {
                continue;
            };
            for k in mine.keys().filter_map(Yaml::as_str) {
                if inherited.contains(k) {
                    let what = if key == "variables" {
                        "variable"
                    } else {
                        "attribute"
                    };
                    errors.push(
                        Diagnostic::error(
                            &doc.file,
                            doc.node.locate_key(&[Seg::Key(key), Seg::Key(k)]),
                            format!("{what} `{k}` is already defined in parent"),
                        )
                        .with_help(format!(
                            "to change it, set it under `parent: {key}:` instead of the top-level `{key}:`"
                        )),
                    );
                }
            }
        }
        if let Some(m) = doc.value.as_mapping() {
            for key in ["schemaVersion", "metadata", "variables"] {
                if let Some(v) = m.get(key) {
                    if key == "variables" {
                        merge_into(&mut flat, key, v);
                    } else if let Some(fm) = flat.as_mapping_mut() {
                        fm.insert(Yaml::String(key.into()), v.clone());
                    }
                }
            }
            if let Some(v) = m.get("attributes") {
                merge_into(&mut flat, "attributes", v);
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let version = chain[0].version;
    let devfile: Devfile = serde_yaml::from_value(flat).map_err(|e| {
        vec![Diagnostic::error(
            &chain[0].file,
            Pos::START,
            format!("the devfile and its parent do not combine into a valid devfile: {e}"),
        )]
    })?;
    Ok(Flattened {
        docs: chain,
        origins,
        devfile,
        version,
    })
}

fn record_origins(flat: &Yaml, doc: usize, origins: &mut Origins, _prefix: &[PathSeg]) {
    for (section, key_field) in SECTIONS {
        if let Some(items) = flat.get(*section).and_then(Yaml::as_sequence) {
            for (i, item) in items.iter().enumerate() {
                if let Some(key) = item.get(*key_field).and_then(Yaml::as_str) {
                    origins.elements.insert(
                        ((*section).to_string(), key.to_lowercase()),
                        (
                            doc,
                            vec![PathSeg::Key((*section).to_string()), PathSeg::Index(i)],
                        ),
                    );
                }
            }
        }
    }
    if let Some(events) = flat.get("events").and_then(Yaml::as_mapping) {
        for (kind, ids) in events {
            if let (Some(kind), Some(ids)) = (kind.as_str(), ids.as_sequence()) {
                for i in 0..ids.len() {
                    origins.events.insert(
                        (kind.to_string(), i),
                        (
                            doc,
                            vec![
                                PathSeg::Key("events".into()),
                                PathSeg::Key(kind.to_string()),
                                PathSeg::Index(i),
                            ],
                        ),
                    );
                }
            }
        }
    }
}

/// The elements of `section` by their lowercased `key_field`: the position
/// of the first one with each key.
fn key_index(flat: &Yaml, section: &str, key_field: &str) -> HashMap<String, usize> {
    let mut index = HashMap::new();
    for (j, item) in flat
        .get(section)
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(k) = item.get(key_field).and_then(Yaml::as_str) {
            index.entry(k.to_ascii_lowercase()).or_insert(j);
        }
    }
    index
}

const KINDS: &[&str] = &[
    "container",
    "kubernetes",
    "openshift",
    "volume",
    "image",
    "exec",
    "apply",
    "composite",
    "git",
    "github",
    "zip",
];

fn kind_mismatch(base: &Yaml, ov: &Yaml) -> Option<String> {
    let kind_of = |v: &Yaml| KINDS.iter().copied().find(|k| v.get(*k).is_some());
    match (kind_of(base), kind_of(ov)) {
        (Some(b), Some(o)) if b != o => Some(format!(
            "changes its type from `{b}` to `{o}`; an override must keep the type"
        )),
        _ => None,
    }
}

fn merge_into(flat: &mut Yaml, key: &str, v: &Yaml) {
    if let Some(m) = flat.as_mapping_mut() {
        match m.get_mut(key) {
            Some(existing) => merge_value(existing, v, Some(key)),
            None => {
                m.insert(Yaml::String(key.into()), v.clone());
            }
        }
    }
}

/// Strategic merge: maps merge recursively, `env`/`endpoints`/`volumeMounts`
/// merge by `name`, everything else (including `command` and `args`) is
/// replaced.
fn merge_value(base: &mut Yaml, over: &Yaml, key: Option<&str>) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                let ks = k.as_str();
                match b.get_mut(k) {
                    Some(existing) if !matches!(ks, Some("command" | "args")) => {
                        merge_value(existing, v, ks)
                    }
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Yaml::Sequence(b), Yaml::Sequence(o))
            if matches!(key, Some("env" | "endpoints" | "volumeMounts")) =>
        {
            for item in o {
                let name = item.get("name").and_then(Yaml::as_str).unwrap_or_default();
                match b
                    .iter_mut()
                    .find(|x| x.get("name").and_then(Yaml::as_str) == Some(name))
                {
                    Some(existing) => merge_value(existing, item, None),
                    None => b.push(item.clone()),
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_replace_known_and_keep_unknown() {
        let vars = BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b-c".to_string(), "x".to_string()),
        ]);
        let (out, missing) = replace_vars("{{a}}-{{ b-c }}-{{nope}}-{{", &vars);
        assert_eq!(out, "1-x-{{nope}}-{{");
        assert_eq!(missing, vec!["nope".to_string()]);
        let (out, _) = replace_vars("${PROJECT_SOURCE} $HOME", &vars);
        assert_eq!(out, "${PROJECT_SOURCE} $HOME");
    }
}
