#![allow(clippy::unwrap_used)]
//! Approval gates survive SIGKILL of the real `cove-server` binary (issue 15), on SQLite and
//! on PostgreSQL: a run waiting for approval is still waiting after the restart (never
//! leased, never approved by itself), a decision answered 200 just before the kill is still
//! recorded, and approving after the restart lets the run finish (the next action runs on
//! the embedded agent, real Docker).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, free_port, git_ok, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::{JobState, Run, RunState};
use serde_json::json;
use tokio::process::Child;

const WORKFLOW: &str = r#"Name: gate
SchemaVersion: "1.0"
Triggers:
  - Type: PUSH
    Branches: [main]
Actions:
  Approve:
    Identifier: aws/approval@v1
    Configuration:
      ApprovalsRequired: 2
      Approvers: [alice, bob]
  Deploy:
    Identifier: aws/build@v1
    DependsOn: [Approve]
    Configuration:
      Steps:
        - Run: echo deployed
"#;

async fn spawn(data_dir: &Path, config: &Path, port: u16) -> Result<(Child, String)> {
    let options = SpawnOptions {
        config: Some(config),
        ready_within: Duration::from_secs(60),
        ..SpawnOptions::default()
    };
    let Proc { child, url } = spawn_server_with(data_dir, port, options).await?;
    Ok((child, url))
}

async fn get_run(url: &str, id: i64) -> Result<Run> {
    common::api_json_at(url, &format!("/runs/{id}")).await
}

fn gate(run: &Run) -> &cove_api::Job {
    run.jobs.iter().find(|j| j.action == "Approve").unwrap()
}

fn deploy(run: &Run) -> &cove_api::Job {
    run.jobs.iter().find(|j| j.action == "Deploy").unwrap()
}

/// A user with a token, a reader of `admin/<repo>`.
async fn user(url: &str, name: &str, repo: &str) -> Result<String> {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/v1/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"username": name, "password": "correct horse battery"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let token: serde_json::Value = http
        .post(format!("{url}/api/v1/tokens"))
        .basic_auth(name, Some("correct horse battery"))
        .json(&json!({"name": "t", "scopes": ["read", "write"]}))
        .send()
        .await?
        .json()
        .await?;
    let r = http
        .put(format!("{url}/api/v1/repos/admin/{repo}/members/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"role": "reader"}))
        .send()
        .await?;
    assert!(r.status().is_success());
    Ok(token["token"].as_str().unwrap().to_string())
}

async fn approve(url: &str, token: &str, run: i64, comment: &str) -> Result<reqwest::StatusCode> {
    Ok(reqwest::Client::new()
        .post(format!("{url}/api/v1/runs/{run}/actions/Approve/approve"))
        .bearer_auth(token)
        .json(&json!({ "comment": comment }))
        .send()
        .await?
        .status())
}

async fn waiting_survives_sigkill(database_url: Option<String>) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("cove.toml");
    let mut text = "[jobs]\ndefault_image = \"cove/busybox:latest\"\n".to_string();
    if let Some(db) = &database_url {
        text = format!("database_url = \"{db}\"\n{text}");
    }
    std::fs::write(&config, text)?;
    let port = free_port()?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let r = reqwest::Client::new()
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "gated"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let alice = user(&url, "alice", "gated").await?;
    let bob = user(&url, "bob", "gated").await?;

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        &work,
        ".codecatalyst/workflows/gate.yaml",
        WORKFLOW.as_bytes(),
        "wf",
    )
    .await?;
    let host = url.trim_start_matches("http://");
    git_ok(
        &work,
        &[
            "push",
            "-q",
            &format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/gated.git"),
            "main",
        ],
    )
    .await?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let runs: Vec<Run> = reqwest::Client::new()
            .get(format!("{url}/api/v1/repos/admin/gated/runs"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if let Some(r) = runs.first() {
            if gate(r).state == JobState::WaitingApproval {
                break r.id;
            }
        }
        assert!(Instant::now() < deadline, "no waiting gate: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // SIGKILL while waiting.
    server.kill().await?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let run = get_run(&url, id).await?;
        assert_eq!(gate(&run).state, JobState::WaitingApproval, "{run:#?}");
        assert_eq!(gate(&run).attempt, 0, "the gate was leased");
        assert_eq!(deploy(&run).state, JobState::Pending);
        assert_eq!(run.state, RunState::Running);
    }

    // A decision answered 200 is committed: SIGKILL right after it loses nothing.
    assert_eq!(approve(&url, &alice, id, "first").await?, 200);
    server.kill().await?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let run = get_run(&url, id).await?;
    assert_eq!(
        gate(&run).state,
        JobState::WaitingApproval,
        "one of two approvals"
    );
    let a = gate(&run).approval.clone().unwrap();
    assert_eq!(a.approvals, 1);
    assert_eq!(a.decisions.len(), 1);
    assert_eq!(
        (
            a.decisions[0].user.as_str(),
            a.decisions[0].comment.as_str()
        ),
        ("alice", "first")
    );

    // The second approver after the restart: the run goes on and succeeds.
    assert_eq!(approve(&url, &bob, id, "second").await?, 200);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let run = get_run(&url, id).await?;
        if run.state.is_terminal() {
            break run;
        }
        assert!(Instant::now() < deadline, "run did not finish: {run:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(deploy(&run).state, JobState::Succeeded);
    assert_eq!(gate(&run).approval.as_ref().unwrap().decisions.len(), 2);
    server.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_gate_survives_sigkill_on_sqlite() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    waiting_survives_sigkill(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_gate_survives_sigkill_on_postgres() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let Some(db) = common::postgres_db_or_skip("cove_approval").await? else {
        return Ok(());
    };
    waiting_survives_sigkill(Some(db)).await
}
