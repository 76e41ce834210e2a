//! `cove workflow validate` on the shared workflow corpus, through the real binary.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn validate_gives_the_index_verdict_with_positions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/workflows");
    let index = std::fs::read_to_string(root.join("INDEX.md"))
        .expect("workflow corpus present beside the repository");
    let mut checked = 0;
    for sub in ["codecatalyst", "buildspec"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let row = index
                .lines()
                .find(|l| l.contains(&name))
                .unwrap_or_else(|| panic!("{name} not in INDEX.md"));
            let invalid = row.contains("INVALID");
            let out = Command::new(env!("CARGO_BIN_EXE_cove"))
                .args(["workflow", "validate"])
                .arg(&path)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if invalid {
                assert_eq!(out.status.code(), Some(1), "{name}");
                let first = stdout.lines().next().unwrap();
                let rest = first.strip_prefix(&format!("{}:", path.display())).unwrap();
                let mut p = rest.splitn(3, ':');
                assert!(
                    p.next().unwrap().parse::<usize>().is_ok()
                        && p.next().unwrap().parse::<usize>().is_ok(),
                    "{first}"
                );
            } else {
                // valid for its format; Cove may refuse constructs it does not run
                if out.status.code() != Some(0) {
                    assert!(
                        stdout
                            .lines()
                            .filter(|l| !l.starts_with("  help: ") && !l.contains(": warning: "))
                            .all(|l| l.contains(": error: not supported by Cove: ")),
                        "{name}: {stdout}"
                    );
                }
                let format_only = Command::new(env!("CARGO_BIN_EXE_cove"))
                    .args(["workflow", "validate", "--format-only"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert_eq!(format_only.status.code(), Some(0), "{name}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 27);
}

/// A batch buildspec's builds name other buildspecs: `cove workflow validate` reads them from
/// the git work tree that holds the file (issue 17 item 8), and reports their errors in them.
#[test]
fn validate_reads_a_batch_builds_buildspecs_from_the_work_tree() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join("ci")).unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let batch = "version: 0.2\nbatch:\n  build-graph:\n    - identifier: a\n      buildspec: ci/a.yml\n    - identifier: b\n      buildspec: ci/b.yml\n      depend-on: [a]\n";
    std::fs::write(root.join("sub/batch.yml"), batch).unwrap();
    std::fs::write(
        root.join("ci/a.yml"),
        "version: 0.2\nphases:\n  build:\n    commands: [make]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cove"))
            .args(["workflow", "validate"])
            .args(args)
            .arg(root.join("sub/batch.yml"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // ci/b.yml is missing: an error at the build's `buildspec` value
    let (code, stdout) = run(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "batch.yml:7:18: error: the buildspec of build `b`: there is no file `ci/b.yml`"
        ),
        "{stdout}"
    );
    // an invalid ci/b.yml: its error in its own file
    std::fs::write(
        root.join("ci/b.yml"),
        "version: 0.2\nphases:\n  build:\n    comands: [make]\n",
    )
    .unwrap();
    let (code, stdout) = run(&[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("ci/b.yml:4:5: error: unknown key `comands`"),
        "{stdout}"
    );
    // fixed: valid, two builds, b after a
    std::fs::write(
        root.join("ci/b.yml"),
        "version: 0.2\nphases:\n  build:\n    commands: [make]\n",
    )
    .unwrap();
    let (code, stdout) = run(&["--show"]);
    assert_eq!(code, Some(0), "{stdout}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let actions = shown["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{stdout}");
    assert_eq!(actions[1]["depends_on"][0]["action"], "a");
    assert_eq!(actions[1]["batch"]["buildspec"], "ci/b.yml");
}
