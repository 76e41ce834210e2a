//! A pushed workflow that uses a construct Cove would not run (a cache glob, a
//! managed deploy action, a GitHub Actions runner step, a buildspec
//! `run-as`) becomes a workflow error `not supported by Cove: …` at the
//! construct's line and column, and no run: never a run that silently skips
//! it. Before `workflows::validate_for_cove`, each of these started a run.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{admin_git_url, create_repo_http, free_port, git_blocking, spawn_server, Proc};
use cove_api::{Run, WorkflowError};

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const CACHED: &str = "Name: cached\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Caching:\n      FileCaching:\n        deps: {Path: '*.jar'}\n    Configuration: {Steps: [{Run: echo built}]}\n";
const DEPLOY: &str = "Name: deploy\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Deploy:\n    Identifier: aws/cdk-deploy@v1\n    Configuration: {StackName: app, Region: us-east-1}\n";
const GITHUB: &str = "Name: gh\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Scan:\n    Identifier: aws/github-actions-runner@v1\n    Configuration:\n      Steps:\n        - uses: actions/checkout@v4\n";
const BUILDSPEC: &str =
    "version: 0.2\nphases:\n  build:\n    commands: [echo built]\nrun-as: builder\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_constructs_are_workflow_errors_and_start_no_run() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let Proc {
        child: _server,
        url,
    } = spawn_server(data.path(), port).await.unwrap();
    let http = reqwest::Client::new();
    create_repo_http(&http, &url, "s").await;

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let git = |args: &[&str]| {
        let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@example.com"];
        all.extend_from_slice(args);
        git_blocking(dir, &all);
    };
    git(&["init", "-q", "-b", "main"]);
    write(dir, ".codecatalyst/workflows/cached.yaml", CACHED);
    write(dir, ".codecatalyst/workflows/deploy.yaml", DEPLOY);
    write(dir, ".codecatalyst/workflows/gh.yaml", GITHUB);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "unsupported"]);
    git(&["push", "-q", &admin_git_url(&url, "s"), "main"]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let errors: Vec<WorkflowError> = loop {
        let errors: Vec<WorkflowError> =
            common::admin_get(&http, format!("{url}/api/v1/repos/admin/s/workflow-errors")).await;
        if errors.len() >= 3 {
            break errors;
        }
        assert!(Instant::now() < deadline, "workflow errors: {errors:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let message = |file: &str| {
        errors
            .iter()
            .find(|e| e.file.ends_with(file))
            .unwrap_or_else(|| panic!("no workflow error for {file}: {errors:?}"))
            .message
            .clone()
    };
    for (file, at, what) in [
        (
            "cached.yaml",
            "cached.yaml:10:22: error: not supported by Cove: ",
            "cache path `*.jar`",
        ),
        (
            "deploy.yaml",
            "deploy.yaml:7:17: error: not supported by Cove: ",
            "aws/cdk-deploy@v1",
        ),
        (
            "gh.yaml",
            "gh.yaml:7:17: error: not supported by Cove: ",
            "GitHub Actions runner",
        ),
    ] {
        let m = message(file);
        assert!(m.contains(at) && m.contains(what), "{file}: {m}");
    }
    // a root buildspec (the implicit workflow of a repository without
    // CodeCatalyst workflows) is judged the same way
    create_repo_http(&http, &url, "b").await;
    let work_b = tempfile::tempdir().unwrap();
    let dir_b = work_b.path();
    let git_b = |args: &[&str]| {
        let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@example.com"];
        all.extend_from_slice(args);
        git_blocking(dir_b, &all);
    };
    git_b(&["init", "-q", "-b", "main"]);
    write(dir_b, "buildspec.yml", BUILDSPEC);
    git_b(&["add", "."]);
    git_b(&["commit", "-q", "-m", "reports"]);
    git_b(&["push", "-q", &admin_git_url(&url, "b"), "main"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let errors: Vec<WorkflowError> =
            common::admin_get(&http, format!("{url}/api/v1/repos/admin/b/workflow-errors")).await;
        if let Some(e) = errors.iter().find(|e| e.file == "buildspec.yml") {
            assert!(
                e.message
                    .contains("buildspec.yml:5:1: error: not supported by Cove: `run-as`"),
                "{}",
                e.message
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no error for buildspec.yml: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for repo in ["s", "b"] {
        let runs: Vec<Run> =
            common::admin_get(&http, format!("{url}/api/v1/repos/admin/{repo}/runs")).await;
        assert!(runs.is_empty(), "no run may start in {repo}: {runs:?}");
    }
}
