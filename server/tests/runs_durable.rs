#![allow(clippy::unwrap_used)]
//! Nothing acknowledged is lost (issue 13 §4): runs come from stored push events, so a push
//! that git acknowledged gets its runs even when the real `cove-server` binary is SIGKILLed
//! right after the acknowledgement; processing an event again creates nothing twice.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, free_port, git_ok, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::Run;
use tokio::process::Child;

/// Workflow files in the pushed commit: creating this many runs (one fsync'd transaction
/// each) takes far longer than the moment between the push's acknowledgement and the kill.
const WORKFLOWS: usize = 120;

/// The real binary with `config` (no embedded job loop), ready when it answers.
async fn spawn(data_dir: &Path, config: &Path, port: u16) -> Result<(Child, String)> {
    let options = SpawnOptions {
        config: Some(config),
        inherit_stderr: true,
        ready_within: Duration::from_secs(60),
        ..SpawnOptions::default()
    };
    let Proc { child, url } = spawn_server_with(data_dir, port, options).await?;
    Ok((child, url))
}

/// The runs of `admin/<repo>` at the server at `url`; `query` follows `/runs`.
async fn runs(url: &str, repo: &str, query: &str) -> Result<Vec<Run>> {
    common::api_json_at(url, &format!("/repos/admin/{repo}/runs{query}")).await
}

fn workflow(n: usize) -> String {
    format!(
        "Name: wf{n}\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nTriggers:\n  - Type: PUSH\n    Branches: [main]\n\
         Actions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo {n}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_push_gets_its_runs_after_a_sigkill() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("cove.toml");
    std::fs::write(&config, "[jobs]\nembedded_slots = 0\n")?;
    let port = free_port()?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "cursor"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);

    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    for n in 0..WORKFLOWS {
        let file = work.join(format!(".codecatalyst/workflows/wf{n:03}.yaml"));
        std::fs::create_dir_all(file.parent().unwrap())?;
        std::fs::write(file, workflow(n))?;
    }
    git_ok(&work, &["add", "."]).await?;
    commit_file(&work, "README", b"x", "workflows").await?;
    let host = url.trim_start_matches("http://");
    let git_url = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/cursor.git");
    // `git push` returns once the server acknowledged the push; kill it at once.
    git_ok(&work, &["push", "-q", &git_url, "main"]).await?;
    server.kill().await?;

    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = runs(&url, "cursor", "?limit=500").await?;
        if all.len() >= WORKFLOWS || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every workflow of the acknowledged push has its run, exactly once.
    let mut names: Vec<&str> = all.iter().map(|r| r.workflow.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a workflow got two runs: {names:?}");
    assert_eq!(names.len(), WORKFLOWS, "runs after the restart");

    // Restarting again (every event already done) creates nothing more.
    server.kill().await?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs(&url, "cursor", "?limit=500").await?.len(), WORKFLOWS);
    server.kill().await?;
    Ok(())
}

const SLOW: &str = "Name: slow\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Slow:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo started\n        - Run: sleep 8; echo finished\n";

/// `cove.attempt` labels of the containers of `job` (running or not).
fn job_containers(job: i64) -> Vec<String> {
    common::job_containers(job, "{{.Label \"cove.attempt\"}}")
}

async fn slow_logs(url: &str, run: i64) -> Result<String> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/api/v1/runs/{run}/jobs/Slow/logs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .text()
        .await?)
}

/// The server (with its embedded agent) is SIGKILLed while a job runs. After the restart
/// the job's container is gone, the job ran again exactly once (attempt 2, never two
/// containers at once) and succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_server_mid_job_leaves_no_container_and_retries_once() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("cove.toml");
    std::fs::write(
        &config,
        "[jobs]\nembedded_slots = 1\ndefault_image = \"cove/busybox:latest\"\nretry_on_agent_lost = 1\n\
         [jobs.sandbox]\nprivate_network = false\n",
    )?;
    let port = free_port()?;
    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"name": "slow"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    commit_file(
        &work,
        ".codecatalyst/workflows/slow.yaml",
        SLOW.as_bytes(),
        "wf",
    )
    .await?;
    let host = url.trim_start_matches("http://");
    let git_url = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/slow.git");
    git_ok(&work, &["push", "-q", &git_url, "main"]).await?;

    // Kill the server once the job's first step ran.
    let start = Instant::now();
    let run = loop {
        if let Some(r) = runs(&url, "slow", "").await?.into_iter().next() {
            if slow_logs(&url, r.id).await?.contains("\nstarted\n") {
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
    server.kill().await?;
    assert_eq!(
        job_containers(job),
        vec!["1"],
        "the killed server's job container"
    );

    let (mut server, url) = spawn(&data_dir, &config, port).await?;
    let start = Instant::now();
    let done = loop {
        let attempts = job_containers(job);
        assert!(
            attempts.len() <= 1,
            "two containers of the job at once: {attempts:?}"
        );
        let r = runs(&url, "slow", "").await?.remove(0);
        if r.state.is_terminal() {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{r:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let left = job_containers(job);
    common::remove_job_containers(job);
    assert!(left.is_empty(), "job containers left behind: {left:?}");
    assert_eq!(done.state, cove_api::RunState::Succeeded, "{done:#?}");
    assert_eq!(done.jobs[0].attempt, 2, "retried exactly once: {done:#?}");
    let text = slow_logs(&url, done.id).await?;
    assert_eq!(text.matches("\nstarted\n").count(), 2, "{text}");
    assert_eq!(text.matches("\nfinished\n").count(), 1, "{text}");
    server.kill().await?;
    Ok(())
}

/// Leases the one queued job with agent `token` (waiting up to 10 s).
async fn lease_one(server: &common::TestServer, token: &str) -> Result<cove_api::JobLease> {
    Ok(server
        .http
        .post(server.api("/agent/lease"))
        .bearer_auth(token)
        .json(&serde_json::json!({"wait_ms": 10000}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Many artifacts of one job uploaded at the same time: every one is recorded and its bytes
/// are downloadable (none overwrites another's record).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_artifact_uploads_are_all_kept() -> Result<()> {
    const UPLOADS: usize = 16;
    let server = common::TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let work = tempfile::tempdir()?;
    common::push_workflow(
        &server,
        work.path(),
        "art",
        "Name: art\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi\n",
    )
    .await?;
    let token = server.agent_token().await?;
    let lease = lease_one(&server, &token).await?;
    let job = lease.job_id;
    let uploads = (0..UPLOADS).map(|i| {
        let (http, token) = (server.http.clone(), token.clone());
        let url = server.api(&format!("/agent/jobs/{job}/artifacts/a{i}?attempt=1"));
        async move {
            let body = vec![i as u8; 256 * 1024 + i];
            let resp = http.put(url).bearer_auth(token).body(body).send().await?;
            anyhow::ensure!(resp.status().is_success(), "upload {i}: {}", resp.status());
            Ok::<_, anyhow::Error>(())
        }
    });
    for r in futures_util::future::join_all(uploads).await {
        r?;
    }
    let run: Run = server
        .http
        .get(server.api(&format!("/runs/{}", lease.run_id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut names = run.jobs[0].artifacts.clone();
    names.sort();
    let mut wanted: Vec<String> = (0..UPLOADS).map(|i| format!("a{i}")).collect();
    wanted.sort();
    assert_eq!(names, wanted, "every concurrent upload is recorded");
    for i in 0..UPLOADS {
        let bytes =
            common::artifact_bytes(&server, lease.run_id, "Build", &format!("a{i}")).await?;
        assert_eq!(bytes.len(), 256 * 1024 + i);
        assert!(bytes.iter().all(|b| *b == i as u8));
    }
    // No temporary file is left next to the artifacts.
    let dir = server
        .data_dir
        .join(format!("artifacts/{}/{job}", lease.run_id));
    let stray: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    server.stop().await;
    Ok(())
}

/// A registered agent's lease that ran out while the server was down is extended at start-up
/// (the agent could not heartbeat), so the agent's next heartbeat keeps its job instead of
/// the reaper's first pass taking it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_their_leases_across_a_server_restart() -> Result<()> {
    let server = common::TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.runs.lease = Duration::from_secs(1);
        // One reaper pass at each start, none in between.
        c.runs.reap_interval = Duration::from_secs(3600);
        c.runs.retry_on_agent_lost = 0;
    })
    .await?;
    let work = tempfile::tempdir()?;
    common::push_workflow(
        &server,
        work.path(),
        "keep",
        "Name: keep\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi\n",
    )
    .await?;
    let token = server.agent_token().await?;
    let lease = lease_one(&server, &token).await?;
    // The lease runs out (no heartbeat), then the server restarts: its reaper's first pass
    // would end the job as lost if the lease were not extended at start-up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = server.restart().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = server
        .http
        .post(server.api(&format!("/agent/jobs/{}/heartbeat", lease.job_id)))
        .bearer_auth(&token)
        .json(&serde_json::json!({"attempt": lease.attempt}))
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "the lease survived the restart");
    let resp = server
        .http
        .post(server.api(&format!("/agent/jobs/{}/finish", lease.job_id)))
        .bearer_auth(&token)
        .json(&serde_json::json!({"attempt": lease.attempt, "outcome": "succeeded"}))
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    server.stop().await;
    Ok(())
}
