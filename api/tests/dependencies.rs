//! Architecture invariant: `cove-api` is plain data with serde, so the CLI and the agent can
//! use it without pulling in HTTP servers, databases or git. Fails on any new dependency.

use std::process::Command;

#[test]
fn cove_api_depends_on_serde_only() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages array");
    let api = packages
        .iter()
        .find(|p| p["name"] == "cove-api")
        .expect("cove-api in the workspace");
    let mut normal: Vec<&str> = api["dependencies"]
        .as_array()
        .expect("dependencies array")
        .iter()
        .filter(|d| d["kind"].is_null())
        .filter_map(|d| d["name"].as_str())
        .collect();
    normal.sort();
    assert_eq!(normal, ["serde"], "cove-api must depend on serde only");

    // And the server never depends on the CLI.
    let server = packages
        .iter()
        .find(|p| p["name"] == "cove-server")
        .expect("cove-server in the workspace");
    let names: Vec<&str> = server["dependencies"]
        .as_array()
        .expect("dependencies array")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"cove"),
        "cove-server must not depend on the CLI"
    );
}
