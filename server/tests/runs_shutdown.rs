//! A graceful stop (SIGTERM) of the real `cove-server` while its embedded agent runs a job
//! removes that job's container before the process exits: nothing it started keeps running
//! after it. (Before, the container kept running until the same server started again.)

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, free_port, git_ok, job_container_ids, spawn_server, ADMIN_TOKEN};
use cove_api::Run;

const WORKFLOW: &str = "Name: slow\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Slow:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo started\n        - Run: sleep 120\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_removes_the_running_jobs_container() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let data = tempfile::tempdir()?;
    let mut proc = spawn_server(data.path(), free_port()?).await?;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}/api/v1{path}", proc.url);
    let r = http
        .post(api("/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "name": "s" }))
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.text().await?);
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        dir,
        ".codecatalyst/workflows/slow.yaml",
        WORKFLOW.as_bytes(),
        "wf",
    )
    .await?;
    let url = format!(
        "{}/git/admin/s.git",
        proc.url
            .replace("http://", &format!("http://admin:{ADMIN_TOKEN}@"))
    );
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    // Wait until the job's container exists and its first step ran.
    let start = Instant::now();
    let job = loop {
        let runs: Vec<Run> = http
            .get(api("/repos/admin/s/runs"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if let Some(run) = runs.first() {
            let log = http
                .get(api(&format!("/runs/{}/jobs/Slow/logs", run.id)))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await?
                .text()
                .await?;
            if log.contains("started") && !job_container_ids(run.jobs[0].id).is_empty() {
                break run.jobs[0].id;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the job did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // SIGTERM: the server's graceful stop; wait for the process to exit.
    let pid = proc.child.id().expect("the server runs").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(status.success());
    let stopping = Instant::now();
    while proc.child.try_wait()?.is_none() {
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "the server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = job_container_ids(job);
    if !left.is_empty() {
        common::remove_job_containers(job);
    }
    assert!(
        left.is_empty(),
        "the job's container outlived the server: {left:?}"
    );
    Ok(())
}
