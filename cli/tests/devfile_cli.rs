//! `cove devfile validate|plan` on the shared conformance corpus, through the
//! real binary.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/devfiles")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance corpus missing at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                p.join("devfile-child.yaml")
            } else {
                p
            }
        })
        .collect();
    files.sort();
    files
}

fn cove(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cove"))
        .args(args)
        .output()
        .expect("run cove");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_rejects_each_invalid_file_with_file_line_col() {
    let files = corpus("invalid");
    assert!(files.len() >= 13);
    for f in files {
        let path = f.display().to_string();
        let (code, stdout, _) = cove(&["devfile", "validate", &path]);
        assert_eq!(code, 1, "{path}: {stdout}");
        let first = stdout.lines().next().unwrap_or_default();
        let rest = first
            .strip_prefix(&format!("{path}:"))
            .unwrap_or_else(|| panic!("{first}"));
        let mut parts = rest.splitn(3, ':');
        let line: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{first}"));
        let col: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{first}"));
        assert!(line >= 1 && col >= 1);
        assert!(parts.next().unwrap().starts_with(" error: "), "{first}");
    }
}

#[test]
fn validate_accepts_each_valid_file_and_prints_warnings_on_stderr() {
    for f in corpus("valid") {
        let path = f.display().to_string();
        let (code, stdout, stderr) = cove(&["devfile", "validate", &path]);
        assert_eq!(code, 0, "{path}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{path}: {stdout}");
        assert!(
            stderr
                .lines()
                .all(|l| l.contains(": warning: ") || l.starts_with("  help:")),
            "{stderr}"
        );
    }
}

#[test]
fn plan_prints_json() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfiles/examples/app-with-dynamodb.yaml");
    let (code, stdout, stderr) = cove(&[
        "devfile",
        "plan",
        &example.display().to_string(),
        "--repo",
        "todo",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("JSON plan");
    assert_eq!(plan["containers"][0]["name"], "app");
    assert_eq!(plan["containers"][1]["endpoints"][0]["port"], 8000);
}

#[test]
fn plan_shows_per_container_whether_the_image_entrypoint_is_kept() {
    let sidecar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../devfiles/tests/fidelity/sidecar.yaml")
        .display()
        .to_string();
    let (code, stdout, stderr) = cove(&["devfile", "plan", &sidecar, "--output", "text"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "container app (cove/busybox:latest)\n  entrypoint: keep-alive (commands run here)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "container web (cove/echo-server:latest)\n  entrypoint: image (no command runs here)\n"
        ),
        "{stdout}"
    );
    let (code, stdout, stderr) = cove(&["devfile", "plan", &sidecar]);
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).expect("JSON plan");
    assert_eq!(
        plan["containers"][0]["entrypoint"],
        "keep-alive (commands run here)"
    );
    assert_eq!(
        plan["containers"][1]["entrypoint"],
        "image (no command runs here)"
    );
    assert_eq!(plan["containers"][1]["keep_alive"], false);
}
