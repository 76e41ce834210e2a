//! Keeps the field table true: re-derives, from the official JSON schemas in
//! `../shared/devfile/schema/`, every property path and the first schema
//! version that allows it, and compares with what the engine accepts.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

mod schema_walk;
use schema_walk::walk;

const VERSIONS: &[&str] = &["2.0.0", "2.1.0", "2.2.0", "2.2.1", "2.2.2", "2.3.0"];
/// Removed in 2.1.0 and refused by Cove.
const REMOVED: &[&str] = &["plugin", "vscodeTask", "vscodeLaunch"];
/// Removed in 2.1.0 and accepted in 2.0.0 files.
const ONLY_2_0_0: &[&str] = &["github", "sparseCheckoutDirs"];

#[test]
fn field_table_matches_the_official_schemas() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/devfile/schema");
    let mut derived: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let mut only_2_0_0: BTreeMap<String, bool> = BTreeMap::new();
    for v in VERSIONS {
        let text = std::fs::read_to_string(dir.join(format!("devfile-{v}.json")))
            .expect("official schema present");
        let root: Value = serde_json::from_str(&text).unwrap();
        let mut paths = BTreeMap::new();
        walk(&root, "", &root, &mut paths, 0);
        for (p, free) in paths {
            if p.split(['.', '[']).any(|seg| REMOVED.contains(&seg)) {
                continue;
            }
            if p.split(['.', '[']).any(|seg| ONLY_2_0_0.contains(&seg)) {
                assert_eq!(*v, "2.0.0", "{p} is in the {v} schema");
                only_2_0_0.insert(p, free);
                continue;
            }
            derived.entry(p).or_insert_with(|| (v.to_string(), free));
        }
    }
    let ours: BTreeMap<String, (String, bool)> = devfiles::schema_field_table()
        .iter()
        .map(|(p, s, f)| (p.to_string(), (s.to_string(), *f)))
        .collect();
    let missing: Vec<_> = derived.keys().filter(|k| !ours.contains_key(*k)).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !derived.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "fields in the schemas but not accepted: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "fields accepted but not in any schema: {extra:?}"
    );
    for (p, (since, free)) in &derived {
        assert_eq!(&ours[p], &(since.clone(), *free), "{p}");
    }
    let ours_2_0_0: BTreeMap<String, bool> = devfiles::schema_field_table_2_0_only()
        .iter()
        .map(|(p, f)| (p.to_string(), *f))
        .collect();
    assert_eq!(ours_2_0_0, only_2_0_0, "the 2.0.0-only fields");
}
