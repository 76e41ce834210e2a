#![allow(clippy::unwrap_used)]
//! End to end: a real `git push` to the server creates runs, the embedded agent runs their
//! jobs on the real Docker engine, logs and artifacts come back through the API.
//! Needs `DOCKER_HOST` (skipped with a message when no engine answers).

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git_ok, runs_of, TestServer};
use cove_api::{JobState, Run, RunState};

pub async fn start_server() -> Result<TestServer> {
    TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
        c.runs.lease = Duration::from_secs(10);
        c.runs.reap_interval = Duration::from_millis(500);
    })
    .await
}

async fn init_repo(server: &TestServer, dir: &Path, name: &str) -> Result<()> {
    server.create_repo(&server.admin_token, name).await?;
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url(&format!("admin/{name}"), Some(&server.admin_token));
    git_ok(dir, &["remote", "add", "origin", &url]).await?;
    Ok(())
}

async fn get_run(server: &TestServer, id: i64) -> Result<Run> {
    common::api_json(server, &format!("/runs/{id}")).await
}

/// Waits for `count` runs of the repository and for all of them to end.
async fn wait_runs_done(
    server: &TestServer,
    repo: &str,
    count: usize,
    limit: Duration,
) -> Result<Vec<Run>> {
    let start = Instant::now();
    loop {
        let runs = runs_of(server, repo).await?;
        if runs.len() >= count && runs.iter().all(|r| r.state.is_terminal()) {
            return Ok(runs);
        }
        if start.elapsed() > limit {
            bail!("runs did not end in {limit:?}: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const WORKFLOW: &str = r#"Name: ci
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Build:
    Identifier: aws/build@v1
    Inputs:
      Sources: [WorkflowSource]
    Outputs:
      Variables: [VERSION]
    Configuration:
      Steps:
        - Run: echo "building $(cat hello.txt)"
        - Run: VERSION=1.2.3
  Test:
    Identifier: aws/managed-test@v1
    DependsOn: [Build]
    Inputs:
      Sources: [WorkflowSource]
    Configuration:
      Steps:
        - Run: echo "testing ${Build.VERSION}"
        - Run: test "$(cat verdict.txt)" = pass
  Package:
    Identifier: aws/build@v1
    DependsOn: [Build]
    Inputs:
      Sources: [WorkflowSource]
    Outputs:
      Artifacts:
        - Name: pkg
          Files: [out/**]
    Configuration:
      Steps:
        - Run: mkdir -p out && echo "package ${Build.VERSION}" > out/app.txt
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Test, Package]
    Configuration:
      Steps:
        - Run: echo deploying
"#;

fn untar(bytes: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        out.push((path, text));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_runs_a_workflow_with_logs_artifacts_and_skips() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server = start_server().await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    init_repo(&server, dir, "app").await?;
    std::fs::write(dir.join("hello.txt"), "world")?;
    std::fs::write(dir.join("verdict.txt"), "pass")?;
    git_ok(dir, &["add", "."]).await?;
    let sha = commit_file(
        dir,
        ".codecatalyst/workflows/ci.yaml",
        WORKFLOW.as_bytes(),
        "ci",
    )
    .await?;
    git_ok(dir, &["push", "-q", "origin", "main"]).await?;

    let runs = wait_runs_done(&server, "admin/app", 1, Duration::from_secs(180)).await?;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.trigger, "push");
    assert_eq!(run.commit, sha);
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    for job in &run.jobs {
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    }
    let build_log = common::log_text(&server, run.id, "Build").await?;
    assert!(build_log.contains("building world"), "{build_log}");
    let test_log = common::log_text(&server, run.id, "Test").await?;
    assert!(test_log.contains("testing 1.2.3"), "{test_log}");
    let build = run.jobs.iter().find(|j| j.action == "Build").unwrap();
    assert_eq!(
        build.variables.get("VERSION").map(String::as_str),
        Some("1.2.3")
    );

    // The artifact, byte for byte.
    let package = run.jobs.iter().find(|j| j.action == "Package").unwrap();
    assert_eq!(package.artifacts, vec!["pkg".to_string()]);
    let tar = common::artifact_bytes(&server, run.id, "Package", "pkg").await?;
    let files = untar(&tar);
    assert!(
        files
            .iter()
            .any(|(p, t)| p.ends_with("app.txt") && t == "package 1.2.3\n"),
        "{files:?}"
    );

    // Commit status.
    let status: serde_json::Value = server
        .http
        .get(server.api(&format!("/repos/admin/app/commits/{sha}/status")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(status["state"], "succeeded");

    // A failing test step: Test fails, Deploy (depends on it) is skipped, Package runs.
    std::fs::write(dir.join("verdict.txt"), "fail")?;
    let sha2 = commit_file(dir, "verdict.txt", b"fail", "break the tests").await?;
    git_ok(dir, &["push", "-q", "origin", "main"]).await?;
    let runs = wait_runs_done(&server, "admin/app", 2, Duration::from_secs(180)).await?;
    let run = runs.iter().find(|r| r.commit == sha2).unwrap();
    assert_eq!(run.state, RunState::Failed);
    let state_of = |a: &str| run.jobs.iter().find(|j| j.action == a).unwrap().state;
    assert_eq!(state_of("Build"), JobState::Succeeded);
    assert_eq!(state_of("Test"), JobState::Failed);
    assert_eq!(state_of("Package"), JobState::Succeeded);
    assert_eq!(state_of("Deploy"), JobState::Skipped);
    let deploy_log = common::log_text(&server, run.id, "Deploy").await?;
    assert!(!deploy_log.contains("deploying"));

    // An invalid workflow file: no run, a workflow error with file:line:col.
    commit_file(
        dir,
        ".codecatalyst/workflows/broken.yaml",
        b"Name: broken\nSchemaVersion: \"1.0\"\nActions:\n  A:\n    Identifier: aws/build@v1\n    DependsOn: [Nope]\n    Configuration: {Steps: [{Run: x}]}\n",
        "broken workflow",
    )
    .await?;
    git_ok(dir, &["push", "-q", "origin", "main"]).await?;
    let start = Instant::now();
    let errors = loop {
        let errors: Vec<cove_api::WorkflowError> = server
            .http
            .get(server.api("/repos/admin/app/workflow-errors"))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .json()
            .await?;
        if !errors.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break errors;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, ".codecatalyst/workflows/broken.yaml");
    assert!(
        errors[0]
            .message
            .starts_with(".codecatalyst/workflows/broken.yaml:6:"),
        "{}",
        errors[0].message
    );
    // The valid workflow still ran for that push.
    wait_runs_done(&server, "admin/app", 3, Duration::from_secs(180)).await?;
    let _ = get_run(&server, run.id).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_root_buildspec_runs_its_phases_on_push_to_main() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let server = start_server().await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    init_repo(&server, dir, "bs").await?;
    let buildspec = "version: 0.2\nphases:\n  install:\n    commands:\n      - echo phase-install\n  build:\n    commands:\n      - echo phase-build $(cat name.txt)\n      - false\n  post_build:\n    commands:\n      - echo phase-post-build succeeding=$CODEBUILD_BUILD_SUCCEEDING\n";
    std::fs::write(dir.join("name.txt"), "cove")?;
    git_ok(dir, &["add", "name.txt"]).await?;
    commit_file(dir, "buildspec.yml", buildspec.as_bytes(), "buildspec").await?;
    git_ok(dir, &["push", "-q", "origin", "main"]).await?;
    let runs = wait_runs_done(&server, "admin/bs", 1, Duration::from_secs(120)).await?;
    let run = &runs[0];
    assert_eq!(run.workflow, "buildspec");
    assert_eq!(run.state, RunState::Failed, "the build phase fails");
    let log = common::log_text(&server, run.id, &run.jobs[0].action).await?;
    assert!(log.contains("phase-install"), "{log}");
    assert!(log.contains("phase-build cove"), "{log}");
    assert!(log.contains("phase-post-build succeeding=0"), "{log}");

    // Another branch: no run (the implicit workflow triggers on the default branch only).
    git_ok(dir, &["checkout", "-q", "-b", "feature"]).await?;
    commit_file(dir, "more.txt", b"x", "more").await?;
    git_ok(dir, &["push", "-q", "origin", "feature"]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(runs_of(&server, "admin/bs").await?.len(), 1);
    server.stop().await;
    Ok(())
}
