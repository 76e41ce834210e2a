//! The allowed dependency edges between workspace crates (ARCHITECTURE.md).
//! A new edge fails this test until the table — and the code map — say so.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// crate → workspace crates it may depend on (normal and build deps; tests
/// may use anything, e.g. the CLI's tests start an in-process server).
const ALLOWED: &[(&str, &[&str])] = &[
    ("yamlmap", &[]),
    ("devfiles", &["yamlmap"]),
    ("workflows", &["yamlmap"]),
    ("cove-api", &["devfiles"]),
    (
        "cove-server",
        // the server embeds the local agent by default
        &["cove-agent", "cove-api", "devfiles", "workflows", "yamlmap"],
    ),
    ("cove-agent", &["cove-api", "devfiles", "yamlmap"]),
    ("cove", &["cove-api", "devfiles", "workflows", "yamlmap"]),
    ("cove-tests", &["*"]),
];

/// Crates that must stay pure: no async runtime, no Docker client, no HTTP.
const PURE: &[&str] = &["yamlmap", "devfiles", "workflows"];
const IMPURE_DEPS: &[&str] = &[
    "tokio", "bollard", "axum", "hyper", "reqwest", "git2", "sqlx",
];

#[test]
fn workspace_dependency_edges_are_allowed() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let members: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            panic!("workspace crate `{name}` is not in the dependency table of ARCHITECTURE.md / this test");
        };
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if d["kind"].as_str() == Some("dev") {
                continue;
            }
            if members.contains(dep) {
                assert!(
                    ok.contains(&"*") || ok.contains(&dep),
                    "`{name}` must not depend on `{dep}`"
                );
            }
            if PURE.contains(&name) && d["kind"].is_null() {
                assert!(
                    !IMPURE_DEPS.contains(&dep),
                    "pure crate `{name}` must not depend on `{dep}`"
                );
            }
        }
    }
}
