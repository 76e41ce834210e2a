//! Every property path of an official devfile JSON schema (`name`,
//! `components[].container.image`, …) with whether it is a free-form map.
//! Shared by the tests that keep the field table and the compatibility page
//! true.

use std::collections::BTreeMap;

use serde_json::Value;

/// Walk `node` (a schema or part of one) and record each property path
/// under `prefix` in `out`, `$ref`s and `oneOf`/`anyOf`/`allOf` followed.
pub fn walk(
    node: &Value,
    prefix: &str,
    root: &Value,
    out: &mut BTreeMap<String, bool>,
    depth: usize,
) {
    if depth > 14 {
        return;
    }
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        let target = r
            .trim_start_matches("#/")
            .split('/')
            .fold(root, |n, k| &n[k]);
        return walk(target, prefix, root, out, depth + 1);
    }
    for k in ["oneOf", "anyOf", "allOf"] {
        for s in node.get(k).and_then(Value::as_array).into_iter().flatten() {
            walk(s, prefix, root, out, depth + 1);
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let free = v.get("properties").is_none()
                && (v.get("type").and_then(Value::as_str) == Some("object")
                    || v.get("additionalProperties") == Some(&Value::Bool(true)));
            out.insert(p.clone(), free && p != "metadata");
            if !free || p == "metadata" {
                walk(v, &p, root, out, depth + 1);
            }
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{prefix}[]"), root, out, depth + 1);
    }
}

/// The paths of the schema of `version` in `../shared/devfile/schema`.
#[allow(dead_code)]
pub fn paths_of(version: &str) -> BTreeMap<String, bool> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/devfile/schema");
    let text = std::fs::read_to_string(dir.join(format!("devfile-{version}.json")))
        .expect("official schema present");
    let root: Value = serde_json::from_str(&text).unwrap();
    let mut paths = BTreeMap::new();
    walk(&root, "", &root, &mut paths, 0);
    paths
}
