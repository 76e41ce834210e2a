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
