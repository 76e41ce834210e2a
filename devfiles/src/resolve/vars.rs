//! `{{variables}}`: collected root-first along the parent chain, then
//! substituted in each file's substitutable strings within one byte budget.

use super::*;

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
