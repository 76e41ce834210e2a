//! An agent's labels (issue 20, docs/agents.md): what it declares (`--label k=v`, `labels:`
//! in agent.yaml) plus what it always reports — `backend=docker|kubernetes` and its CPU architecture
//! (`arch=amd64|arm64`). The server checks label syntax and owns the `pool` label.

use std::collections::BTreeMap;

/// The label keys the agent sets itself (a declared value is replaced).
pub const BACKEND: &str = "backend";
pub const ARCH: &str = "arch";

/// This host's architecture as a label value (`amd64`, `arm64`, else Rust's name).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `declared` plus `backend=docker` and `arch=<host>`.
pub fn standard(declared: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    standard_for(declared, crate::backend::BackendKind::Docker)
}

/// `declared` plus `backend=<backend>` and `arch=<host>`.
pub fn standard_for(
    declared: &BTreeMap<String, String>,
    backend: crate::backend::BackendKind,
) -> BTreeMap<String, String> {
    let mut labels = declared.clone();
    labels.insert(BACKEND.to_string(), backend.label().to_string());
    labels.insert(ARCH.to_string(), host_arch().to_string());
    labels
}

/// `KEY=VALUE` → `(KEY, VALUE)`, both non-empty and trimmed.
pub fn parse(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!(
            "label {text:?}: expected KEY=VALUE, e.g. region=eu"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_labels_are_added_over_declared_ones() {
        let declared = BTreeMap::from([
            ("backend".to_string(), "kubernetes".to_string()),
            ("region".to_string(), "eu".to_string()),
        ]);
        let l = standard(&declared);
        assert_eq!(l["backend"], "docker");
        assert_eq!(l["region"], "eu");
        assert!(!l["arch"].is_empty());
        assert_eq!(parse("pool=gpu"), Ok(("pool".into(), "gpu".into())));
        assert!(parse("pool").is_err() && parse("=x").is_err() && parse("k=").is_err());
    }
}
