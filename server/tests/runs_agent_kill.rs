#![allow(clippy::unwrap_used)]
//! SIGKILL of an agent mid-job (design notes §6 rule 9). The agent is the real `cove-agent`
//! binary in its own process, registered with a one-time registration token and talking to
//! the server over HTTP with its own agent token; the server's embedded agent is off. After
//! the kill the job ends `agent_lost` once its lease expires, it never runs twice, the dead
//! attempt's report gets 409, and the restarted agent (same stored token) removes the killed
//! attempt's orphaned container and runs the next push.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{
    commit_file, git_ok, job_container_ids, remove_job_containers, start_for_agent_process,
    TestServer,
};
use cove_api::{JobState, Run, RunState};
use serde_json::json;

const WORKFLOW: &str = "Name: slow\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Slow:\n    Identifier: aws/build@v1\n    Inputs: {Sources: [WorkflowSource]}\n    Configuration:\n      Steps:\n        - Run: echo \"started $(cat mode.txt)\"\n        - Run: if [ \"$(cat mode.txt)\" = slow ]; then sleep 60; fi; echo finished\n";

/// The agent process; killed (SIGKILL) and reaped on drop.
struct Agent(Child);

impl Agent {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `cove-agent` with `state_dir`; `registration` is only needed on the first start.
fn spawn_agent(
    bin: &Path,
    server: &TestServer,
    state_dir: &Path,
    registration: Option<&str>,
) -> Agent {
    let mut cmd = Command::new(bin);
    cmd.arg("--server")
        .arg(&server.url)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--name", "kill-test", "--slots", "1"])
        .env_remove("COVE_REGISTRATION_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(token) = registration {
        cmd.env("COVE_REGISTRATION_TOKEN", token);
    }
    Agent(cmd.spawn().unwrap())
}

async fn runs(server: &TestServer) -> Result<Vec<Run>> {
    Ok(server
        .http
        .get(server.api("/repos/admin/k/runs"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?)
}

async fn logs(server: &TestServer, run: i64) -> Result<String> {
    Ok(server
        .http
        .get(server.api(&format!("/runs/{run}/jobs/Slow/logs")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_an_http_agent_mid_job_ends_agent_lost() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let server = start_for_agent_process(0).await?;
    server.create_repo(&server.admin_token, "k").await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    std::fs::write(dir.join("mode.txt"), "slow")?;
    git_ok(dir, &["add", "mode.txt"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/slow.yaml",
        WORKFLOW.as_bytes(),
        "wf",
    )
    .await?;
    let url = server.git_url("admin/k", Some(&server.admin_token));
    let state = tempfile::tempdir()?;
    let registration = server.registration_token(None).await?;
    let mut agent = spawn_agent(&bin, &server, state.path(), Some(&registration));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;

    // The job runs in the agent process; its first line arrives over HTTP.
    let start = Instant::now();
    let run = loop {
        if let Some(r) = runs(&server).await?.into_iter().next() {
            if logs(&server, r.id).await?.contains("started slow") {
                break r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let job = run.jobs[0].id;
    agent.kill(); // SIGKILL
    let killed = Instant::now();

    let lost = loop {
        let r = runs(&server).await?.into_iter().next().unwrap();
        if r.state.is_terminal() {
            break r;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "{r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let waited = killed.elapsed();
    assert_eq!(lost.jobs[0].state, JobState::AgentLost, "{lost:#?}");
    assert_eq!(lost.state, RunState::Failed);
    assert_eq!(lost.jobs[0].attempt, 1, "never leased twice");
    assert!(
        waited >= Duration::from_millis(2000),
        "not before the lease: {waited:?}"
    );
    // The dead attempt's report is refused (sent with the killed agent's own token).
    let agent_token = std::fs::read_to_string(state.path().join("agent-token"))?;
    let resp = server
        .http
        .post(server.api(&format!("/agent/jobs/{job}/finish")))
        .bearer_auth(agent_token.trim())
        .json(&json!({"attempt": 1, "outcome": "succeeded"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 409);
    // The orphaned container of the killed agent is found by its label (job and owner)...
    assert_eq!(
        job_container_ids(job).len(),
        1,
        "the killed agent's container"
    );

    // ... and the restarted agent (its stored token, no registration token) removes it
    // before it leases anything, then runs the next push.
    let mut agent = spawn_agent(&bin, &server, state.path(), None);
    let restarted = Instant::now();
    while !job_container_ids(job).is_empty() {
        if restarted.elapsed() > Duration::from_secs(30) {
            remove_job_containers(job);
            panic!("the restarted agent left its orphaned job container");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(dir.join("mode.txt"), "fast")?;
    commit_file(dir, "mode.txt", b"fast", "fast").await?;
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    let start = Instant::now();
    let done = loop {
        let all = runs(&server).await?;
        if all.len() == 2 && all[0].state.is_terminal() {
            break all[0].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{all:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    let text = logs(&server, done.id).await?;
    assert!(
        text.contains("started fast") && text.contains("finished"),
        "{text}"
    );
    // The first run did not change.
    let first = runs(&server).await?.pop().unwrap();
    assert_eq!(first.jobs[0].state, JobState::AgentLost);
    agent.kill();
    server.stop().await;
    Ok(())
}
