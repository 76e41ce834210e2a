#![allow(clippy::unwrap_used)]
//! Leases over the agent HTTP protocol, without Docker: the test plays a registered agent. Time is the
//! engine's injectable clock, so lease expiry needs no long sleeps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use cove_api::{JobLease, JobState, Run, RunState};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(10);

async fn start(retry_lost: bool) -> Result<TestServer> {
    start_on(retry_lost, None).await
}

async fn start_on(retry_lost: bool, database_url: Option<String>) -> Result<TestServer> {
    TestServer::start_configured(|c| {
        c.database_url = database_url;
        c.embedded_agent = false;
        c.runs.lease = LEASE;
        c.runs.reap_interval = Duration::from_secs(3600);
        c.runs.retry_on_agent_lost = u32::from(retry_lost);
    })
    .await
}

const WORKFLOW: &str = "Name: one\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Only:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi\n";

async fn push_workflow(server: &TestServer, dir: &Path, repo: &str) -> Result<()> {
    common::push_workflow(server, dir, repo, WORKFLOW).await
}

async fn lease(server: &TestServer, wait_ms: u64) -> Result<Option<JobLease>> {
    let resp = server
        .http
        .post(server.api("/agent/lease"))
        .bearer_auth(server.agent_token().await?)
        .json(&json!({ "wait_ms": wait_ms }))
        .send()
        .await?;
    if resp.status() == 204 {
        return Ok(None);
    }
    assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    Ok(Some(resp.json().await?))
}

/// POSTs as the agent on agent routes, else as the administrator.
async fn post(server: &TestServer, path: &str, body: serde_json::Value) -> Result<(u16, String)> {
    let token = if path.starts_with("/agent/") {
        server.agent_token().await?
    } else {
        server.admin_token.clone()
    };
    let resp = server
        .http
        .post(server.api(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn run_of(server: &TestServer, repo: &str) -> Result<Run> {
    let runs: Vec<Run> = server
        .http
        .get(server.api(&format!("/repos/{repo}/runs")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    Ok(runs.into_iter().next().expect("a run"))
}

/// A new, empty PostgreSQL database on the test cluster (`COVE_TEST_POSTGRES_URL`).
async fn fresh_postgres() -> Result<Option<String>> {
    let Some(base) = common::postgres_base_url() else {
        return Ok(None);
    };
    Ok(Some(common::create_postgres_db(&base, "cove_runs").await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_ends_agent_lost_and_late_reports_get_409() -> Result<()> {
    silent_agent_scenario(start(false).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agent_scenario_on_postgres() -> Result<()> {
    let Some(url) = fresh_postgres().await? else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must set COVE_TEST_POSTGRES_URL"
        );
        eprintln!("SKIP: COVE_TEST_POSTGRES_URL not set");
        return Ok(());
    };
    silent_agent_scenario(start_on(false, Some(url)).await?).await
}

async fn silent_agent_scenario(server: TestServer) -> Result<()> {
    let work = tempfile::tempdir()?;
    // A poller waiting before the push is woken by it (long poll, no busy loop).
    let waiting = {
        let (url, token) = (server.api("/agent/lease"), server.agent_token().await?);
        let http = server.http.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"wait_ms": 30_000}))
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.json::<JobLease>().await.ok(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pushed = Instant::now();
    push_workflow(&server, work.path(), "app").await?;
    let (status, leased, _) = waiting.await?;
    assert_eq!(status, 200);
    let leased = leased.expect("a lease");
    assert!(
        pushed.elapsed() < Duration::from_secs(5),
        "the poller was woken"
    );
    assert_eq!(leased.attempt, 1);
    assert_eq!(leased.action, "Only");
    assert_eq!(
        leased.script,
        cove_api::JobScript::Steps(vec!["echo hi".into()])
    );
    let job = leased.job_id;

    // No second lease while this one is valid.
    assert!(lease(&server, 200).await?.is_none());

    // Heartbeat renews; logs of the current attempt are accepted.
    let (s, body) = post(
        &server,
        &format!("/agent/jobs/{job}/heartbeat"),
        json!({"attempt": 1}),
    )
    .await?;
    assert_eq!(s, 200, "{body}");
    let hb: cove_api::HeartbeatResponse = serde_json::from_str(&body)?;
    assert!(!hb.cancel);
    let line =
        json!({"attempt": 1, "lines": [{"seq": 0, "stream": "stdout", "ts": 1, "text": "hi"}]});
    assert_eq!(
        post(&server, &format!("/agent/jobs/{job}/logs"), line.clone())
            .await?
            .0,
        204
    );
    // Idempotent resend.
    assert_eq!(
        post(&server, &format!("/agent/jobs/{job}/logs"), line)
            .await?
            .0,
        204
    );
    // A wrong attempt is refused.
    assert_eq!(
        post(
            &server,
            &format!("/agent/jobs/{job}/heartbeat"),
            json!({"attempt": 2})
        )
        .await?
        .0,
        409
    );

    // The agent goes silent: just before the lease ends nothing happens, after it the job
    // is agent_lost.
    let runs = server.state.runs();
    runs.clock().advance(LEASE - Duration::from_secs(1));
    assert!(cove_server::runs::reap_expired(&server.state)
        .await?
        .is_empty());
    runs.clock().advance(Duration::from_secs(2));
    assert_eq!(
        cove_server::runs::reap_expired(&server.state).await?,
        vec![job]
    );
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.jobs[0].state, JobState::AgentLost);
    assert!(run.jobs[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("agent lost"));
    assert_eq!(run.state, RunState::Failed);

    // The stale attempt's late reports: 409, and nothing changes.
    let late =
        json!({"attempt": 1, "lines": [{"seq": 1, "stream": "stdout", "ts": 2, "text": "late"}]});
    assert_eq!(
        post(&server, &format!("/agent/jobs/{job}/logs"), late)
            .await?
            .0,
        409
    );
    let (s, body) = post(
        &server,
        &format!("/agent/jobs/{job}/finish"),
        json!({"attempt": 1, "outcome": "succeeded"}),
    )
    .await?;
    assert_eq!(s, 409, "{body}");
    assert_eq!(
        post(
            &server,
            &format!("/agent/jobs/{job}/heartbeat"),
            json!({"attempt": 1})
        )
        .await?
        .0,
        409
    );
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.jobs[0].state, JobState::AgentLost);
    let logs = server
        .http
        .get(server.api(&format!("/runs/{}/jobs/Only/logs", run.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(logs, "hi\n");

    // User tokens — administrators' too — cannot act as agents.
    let bob = server.create_user("bob").await?;
    for token in [&bob, &server.admin_token] {
        let resp = server
            .http
            .post(server.api("/agent/lease"))
            .bearer_auth(token)
            .json(&json!({"wait_ms": 0}))
            .send()
            .await?;
        assert_eq!(resp.status(), 403);
    }
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_is_retried_once_when_allowed_and_the_old_attempt_is_fenced() -> Result<()> {
    let server = start(true).await?;
    let work = tempfile::tempdir()?;
    push_workflow(&server, work.path(), "app").await?;
    let first = lease(&server, 5000).await?.expect("lease");
    let job = first.job_id;
    server
        .state
        .runs()
        .clock()
        .advance(LEASE + Duration::from_secs(1));
    cove_server::runs::reap_expired(&server.state).await?;
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.jobs[0].state, JobState::Pending, "requeued once");

    let second = lease(&server, 5000).await?.expect("second attempt");
    assert_eq!(second.job_id, job);
    assert_eq!(second.attempt, 2);
    // The first attempt (e.g. an agent that was only partitioned) cannot report.
    let (s, _) = post(
        &server,
        &format!("/agent/jobs/{job}/finish"),
        json!({"attempt": 1, "outcome": "failed"}),
    )
    .await?;
    assert_eq!(s, 409);
    let (s, body) = post(
        &server,
        &format!("/agent/jobs/{job}/finish"),
        json!({"attempt": 2, "outcome": "succeeded", "variables": {"X": "1"}}),
    )
    .await?;
    assert_eq!(s, 204, "{body}");
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.jobs[0].attempt, 2);
    // Finished twice? No: a repeated finish is stale.
    let (s, _) = post(
        &server,
        &format!("/agent/jobs/{job}/finish"),
        json!({"attempt": 2, "outcome": "succeeded"}),
    )
    .await?;
    assert_eq!(s, 409);

    // With retries, a second loss ends agent_lost.
    commit_file(work.path(), "x.txt", b"x", "x").await?;
    let url = server.git_url("admin/app", Some(&server.admin_token));
    git_ok(work.path(), &["push", "-q", &url, "main"]).await?;
    for _ in 0..2 {
        lease(&server, 5000).await?.expect("lease");
        server
            .state
            .runs()
            .clock()
            .advance(LEASE + Duration::from_secs(1));
        cove_server::runs::reap_expired(&server.state).await?;
    }
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.jobs[0].state, JobState::AgentLost);
    assert_eq!(run.jobs[0].attempt, 2);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_travels_in_heartbeats_and_the_server_finalizes_it_for_a_silent_agent() -> Result<()>
{
    let server = start(false).await?;
    let work = tempfile::tempdir()?;
    push_workflow(&server, work.path(), "app").await?;
    let leased = lease(&server, 5000).await?.expect("lease");
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.state, RunState::Running);
    let (s, _) = post(&server, &format!("/runs/{}/cancel", run.id), json!({})).await?;
    assert_eq!(s, 200);
    let (_, body) = post(
        &server,
        &format!("/agent/jobs/{}/heartbeat", leased.job_id),
        json!({"attempt": 1}),
    )
    .await?;
    let hb: cove_api::HeartbeatResponse = serde_json::from_str(&body)?;
    assert!(hb.cancel, "cancel is delivered in the heartbeat answer");
    // The agent never confirms: after the lease the server ends the job itself.
    server
        .state
        .runs()
        .clock()
        .advance(LEASE + Duration::from_secs(1));
    cove_server::runs::reap_expired(&server.state).await?;
    let run = run_of(&server, "admin/app").await?;
    assert_eq!(run.jobs[0].state, JobState::Cancelled);
    assert_eq!(run.state, RunState::Cancelled);
    server.stop().await;
    Ok(())
}
