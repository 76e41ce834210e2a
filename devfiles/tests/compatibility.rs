//! Keeps the "## Devfiles" half of docs/compatibility.md true: every
//! property of every official devfile schema (2.0.0–2.3.0) has a row (or
//! sits under a `path.*` row), every row names a real property, and every
//! row says runs, warns or refuses.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

mod schema_walk;

const VERSIONS: &[&str] = &["2.0.0", "2.1.0", "2.2.0", "2.2.1", "2.2.2", "2.3.0"];

/// (path, behaviour) of each row of the first table under "## Devfiles".
fn rows() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/compatibility.md"),
    )
    .expect("docs/compatibility.md");
    let section = page
        .split("\n## ")
        .find(|s| s.starts_with("Devfiles"))
        .expect("a `## Devfiles` section");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in section.lines() {
        if line.starts_with('|') {
            in_table = true;
            let cells: Vec<&str> = line.split(" | ").collect();
            if let Some(path) = cells[0]
                .strip_prefix("| `")
                .and_then(|c| c.strip_suffix('`'))
            {
                rows.push((path.to_string(), cells[1].trim().to_string()));
            }
        } else if in_table {
            break; // the first table only
        }
    }
    rows
}

#[test]
fn every_devfile_construct_has_its_behaviour_on_the_compatibility_page() {
    let mut all = BTreeSet::new();
    for v in VERSIONS {
        all.extend(schema_walk::paths_of(v).into_keys());
    }
    // deeper `parent.<section>…` paths are overrides of the same fields
    let required: Vec<&String> = all
        .iter()
        .filter(|p| {
            !p.strip_prefix("parent.")
                .is_some_and(|rest| rest.contains(['.', '[']))
        })
        .collect();
    let rows = rows();
    assert!(rows.len() > 100, "only {} rows", rows.len());
    let listed: BTreeSet<&str> = rows.iter().map(|(p, _)| p.as_str()).collect();
    let covered = |p: &str| {
        listed.contains(p)
            || listed.iter().any(|row| {
                row.strip_suffix(".*").is_some_and(|q| {
                    p == q || p.starts_with(&format!("{q}.")) || p.starts_with(&format!("{q}["))
                })
            })
    };
    let missing: Vec<&&String> = required.iter().filter(|p| !covered(p)).collect();
    assert!(
        missing.is_empty(),
        "devfile properties missing from docs/compatibility.md: {missing:?}"
    );
    for (path, behaviour) in &rows {
        let bare = path.strip_suffix(".*").unwrap_or(path);
        assert!(all.contains(bare), "`{path}` is in no devfile schema");
        assert!(
            ["runs", "warns", "refuses"].contains(&behaviour.as_str()),
            "`{path}`: `{behaviour}` is not runs, warns or refuses"
        );
    }
    let mut seen = BTreeSet::new();
    for (path, _) in &rows {
        assert!(seen.insert(path), "`{path}` is listed twice");
    }
}
