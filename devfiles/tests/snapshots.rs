//! Snapshot tests of plans: one `check` per devfile, the expected JSON kept in
//! `tests/snapshots/`. Refresh with `UPDATE_EXPECT=1 cargo test -p devfiles --test snapshots`.

#![allow(clippy::unwrap_used)]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::path::Path;

use devfiles::{LoadOptions, PlanOptions};
use expect_test::{expect_file, ExpectFile};

fn check(path: &Path, repo: Option<&str>, expect: ExpectFile) {
    let loaded = devfile_fs::load_file(path, &LoadOptions::default(), &devfile_fs::FsResolver)
        .unwrap_or_else(|r| panic!("{r}"));
    let (plan, _) = loaded.plan(&PlanOptions {
        repo: repo.map(str::to_string),
    });
    expect.assert_eq(&(serde_json::to_string_pretty(&plan).unwrap() + "\n"));
}

fn corpus(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/devfiles")
        .join(rel)
}

#[test]
fn app_with_dynamodb_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app-with-dynamodb.yaml");
    check(
        &path,
        Some("todo-app"),
        expect_file!["snapshots/app-with-dynamodb.json"],
    );
}

#[test]
fn nodejs_mongodb() {
    check(
        &corpus("valid/registry--nodejs-mongodb.yaml"),
        None,
        expect_file!["snapshots/nodejs-mongodb.json"],
    );
}

#[test]
fn local_parent_and_child() {
    check(
        &corpus("valid/odo--local-parent/devfile-child.yaml"),
        None,
        expect_file!["snapshots/local-parent.json"],
    );
}

#[test]
fn ollama() {
    check(
        &corpus("valid/registry--ollama.yaml"),
        None,
        expect_file!["snapshots/ollama.json"],
    );
}

#[test]
fn composite_multi_container_shared_volume() {
    check(
        &corpus("valid/odo--devfileCompositeBuildRunDebugInMultiContainersAndSharedVolume.yaml"),
        None,
        expect_file!["snapshots/composite-multi-container.json"],
    );
}

#[test]
fn codecatalyst_default_universal() {
    check(
        &corpus("valid/codecatalyst--todoapp-codecatalyst-demo.yaml"),
        Some("todoapp"),
        expect_file!["snapshots/codecatalyst-universal.json"],
    );
}

#[test]
fn default_devfile() {
    let (plan, warnings) = devfiles::default_devfile().plan(&PlanOptions {
        repo: Some("repo".into()),
    });
    assert!(warnings.is_empty());
    expect_file!["snapshots/default-devfile.json"]
        .assert_eq(&(serde_json::to_string_pretty(&plan).unwrap() + "\n"));
}
