//! Merging the parent chain into one devfile (root first): strategic merge
//! by name, `parent` overrides, and where each element was written.

use super::*;

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
