//! Access to the shared conformance corpus, read at test time from
//! `shared/conformance/workflows/` beside the repository checkout.

#![allow(dead_code)]

use std::path::PathBuf;

pub const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/workflows"
);

pub fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(CORPUS);
    assert!(
        dir.join("INDEX.md").is_file(),
        "conformance corpus not found at {} (expected shared/conformance/workflows/ beside the repository checkout)",
        dir.display()
    );
    dir
}

/// Every corpus file as (path relative to the corpus, text), sorted.
pub fn corpus_files() -> Vec<(String, String)> {
    let dir = corpus_dir();
    let mut out = Vec::new();
    for sub in ["codecatalyst", "buildspec"] {
        let entries = std::fs::read_dir(dir.join(sub))
            .unwrap_or_else(|e| panic!("cannot list {}/{sub}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("readable directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("UTF-8 file name")
                .to_string();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            out.push((format!("{sub}/{name}"), text));
        }
    }
    out.sort();
    assert!(
        !out.is_empty(),
        "conformance corpus at {} is empty",
        dir.display()
    );
    out
}

pub fn corpus_file(rel: &str) -> String {
    let path = corpus_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
