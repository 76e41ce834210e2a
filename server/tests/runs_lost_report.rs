#![allow(clippy::unwrap_used)]
//! A lost report is sent again, and a report sent again changes nothing (issue 13 §4). The
//! real `cove-agent` process talks to the server through an HTTP proxy that loses the first
//! finish report on its way to the server, and the answers to the second finish report and
//! the first log batch after the server took them (502 either way). The job runs exactly once, its
//! log lines are stored once, and an exact replay of the finish report is answered 200.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::{push_workflow, start_for_agent_process, TestServer};
use cove_api::{JobState, Run, RunState};

const WORKFLOW: &str = "Name: once\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Once:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo \"executed the job\"\n        - Run: for i in 1 2 3; do echo line $i; done\n";

/// The proxy's state: where to forward, and what it has seen.
#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    finishes: Arc<AtomicUsize>,
    log_batches: Arc<AtomicUsize>,
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    // The first finish report never reaches the server.
    if path.ends_with("/finish") && p.finishes.fetch_add(1, Ordering::SeqCst) == 0 {
        return (StatusCode::BAD_GATEWAY, "request lost").into_response();
    }
    let mut out = p
        .http
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for name in ["authorization", "content-type"] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    // The server took these; their answers are "lost".
    let lose = if path.ends_with("/finish") {
        p.finishes.load(Ordering::SeqCst) == 2
    } else if path.ends_with("/logs") {
        p.log_batches.fetch_add(1, Ordering::SeqCst) == 0
    } else {
        false
    };
    if lose {
        return (StatusCode::BAD_GATEWAY, "answer lost").into_response();
    }
    Response::builder()
        .status(status.as_u16())
        .header(
            "content-type",
            "application/json", // every agent answer the proxy passes on is JSON or a tar
        )
        .body(Body::from(bytes))
        .unwrap()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn runs(server: &TestServer) -> Result<Vec<Run>> {
    Ok(server
        .http
        .get(server.api("/repos/admin/lost/runs"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_finish_report_is_sent_again_and_the_job_runs_once() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    // A lost job would be run again: the test sees a second execution.
    let server = start_for_agent_process(1).await?;
    let proxy = Proxy {
        upstream: server.url.clone(),
        http: reqwest::Client::new(),
        finishes: Arc::default(),
        log_batches: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let state = tempfile::tempdir()?;
    let registration = server.registration_token(None).await?;
    let _agent = Agent(
        Command::new(&bin)
            .arg("--server")
            .arg(&proxy_url)
            .arg("--state-dir")
            .arg(state.path())
            .args(["--name", "lossy", "--slots", "1"])
            .env("COVE_REGISTRATION_TOKEN", &registration)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let work = tempfile::tempdir()?;
    push_workflow(&server, work.path(), "lost", WORKFLOW).await?;

    let start = Instant::now();
    let done = loop {
        if let Some(r) = runs(&server).await?.into_iter().next() {
            if r.state.is_terminal() {
                break r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the run did not end"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.state, RunState::Succeeded, "{done:#?}");
    // Past a lease and a reaper pass: nothing runs the job again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let run = runs(&server).await?.remove(0);
    let job = &run.jobs[0];
    assert_eq!(job.state, JobState::Succeeded, "{run:#?}");
    assert_eq!(job.attempt, 1, "the job ran again: {run:#?}");
    assert!(
        proxy.finishes.load(Ordering::SeqCst) >= 3,
        "the finish report was sent until its answer arrived"
    );
    assert!(proxy.log_batches.load(Ordering::SeqCst) >= 2);

    let text = server
        .http
        .get(server.api(&format!("/runs/{}/jobs/Once/logs", run.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .text()
        .await?;
    let count = |wanted: &str| text.lines().filter(|l| *l == wanted).count();
    assert_eq!(count("executed the job"), 1, "{text}");
    for i in 1..=3 {
        assert_eq!(count(&format!("line {i}")), 1, "{text}");
    }

    // An exact replay of the report is accepted and changes nothing; another report is 409.
    let agent_token = std::fs::read_to_string(state.path().join("agent-token"))?;
    let replay = server
        .http
        .post(server.api(&format!("/agent/jobs/{}/finish", job.id)))
        .bearer_auth(agent_token.trim())
        .json(&serde_json::json!({"attempt": 1, "outcome": "succeeded"}))
        .send()
        .await?;
    assert!(replay.status().is_success(), "{}", replay.status());
    let other = server
        .http
        .post(server.api(&format!("/agent/jobs/{}/finish", job.id)))
        .bearer_auth(agent_token.trim())
        .json(&serde_json::json!({"attempt": 1, "outcome": "failed"}))
        .send()
        .await?;
    assert_eq!(other.status(), 409);
    let again = runs(&server).await?.remove(0);
    assert_eq!(again.jobs[0].state, JobState::Succeeded);
    Ok(())
}
