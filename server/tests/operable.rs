#![allow(clippy::unwrap_used)]
//! Operations (issue 13 "Operable" and "Bounded everything"): `/metrics` series change when an
//! environment is created and a run completes (real Docker), who may read `/metrics`, the
//! `/healthz` and `/readyz` probes, the per-job log cap, the push deadline and run retention.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git, git_ok, runs_of, TestServer};
use cove_api::{JobLease, RunState};
use serde_json::json;

const WORKFLOW: &str = "Name: one\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Only:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo hi\n";

async fn scrape(server: &TestServer) -> Result<String> {
    let resp = server
        .http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    if resp.status() != 200 {
        bail!("/metrics: {} {}", resp.status(), resp.text().await?);
    }
    Ok(resp.text().await?)
}

/// The value of one series (`name{labels}` exactly as exposed), 0 when absent.
fn series(text: &str, key: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

async fn agent_post(
    server: &TestServer,
    path: &str,
    body: serde_json::Value,
) -> Result<(u16, String)> {
    let resp = server
        .http
        .post(server.api(path))
        .bearer_auth(server.agent_token().await?)
        .json(&body)
        .send()
        .await?;
    Ok((resp.status().as_u16(), resp.text().await?))
}

async fn lease(server: &TestServer) -> Result<JobLease> {
    let start = Instant::now();
    loop {
        let resp = server
            .http
            .post(server.api("/agent/lease"))
            .bearer_auth(server.agent_token().await?)
            .json(&json!({ "wait_ms": 1000 }))
            .send()
            .await?;
        if resp.status() == 200 {
            return Ok(resp.json().await?);
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("no job to lease: {}", resp.status());
        }
    }
}

// ---------------------------------------------------------------------------------------
// /metrics with real Docker
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_change_when_an_environment_is_created_and_a_run_completes() -> Result<()> {
    assert!(
        common::docker_available().await,
        "no Docker engine: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    let server = TestServer::start_configured(|c| {
        c.runs.default_image = "cove/busybox:latest".into();
        c.runs.heartbeat = Duration::from_millis(500);
    })
    .await?;
    let before = scrape(&server).await?;
    assert_eq!(series(&before, "cove_agents{kind=\"embedded\"}"), 1.0);

    // One repository with a devfile and a workflow, pushed with the real git.
    let work = tempfile::tempdir()?;
    let dir = work.path();
    server.create_repo(&server.admin_token, "ops").await?;
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    std::fs::write(
        dir.join("devfile.yaml"),
        "schemaVersion: 2.2.0\ncomponents:\n  - name: main\n    container: {image: cove/busybox:latest}\n",
    )?;
    commit_file(
        dir,
        ".codecatalyst/workflows/one.yaml",
        WORKFLOW.as_bytes(),
        "devfile and workflow",
    )
    .await?;
    let url = server.git_url("admin/ops", Some(&server.admin_token));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;

    let resp = server
        .http
        .post(server.api("/repos/admin/ops/environments"))
        .bearer_auth(&server.admin_token)
        .json(&json!({"name": "ops-dev"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    let env: cove_api::Environment = resp.json().await?;
    let _cleanup = cove_tests::EnvCleanup(env.id.clone());

    // Wait for the environment to run and the run to succeed.
    let start = Instant::now();
    loop {
        let e: cove_api::Environment = server
            .http
            .get(server.api(&format!("/environments/{}", env.id)))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .json()
            .await?;
        let runs = runs_of(&server, "admin/ops").await?;
        let run_done = runs.iter().any(|r| r.state.is_terminal());
        if e.state == cove_api::EnvState::Running && run_done {
            assert!(
                runs.iter().all(|r| r.state == RunState::Succeeded),
                "{runs:#?}"
            );
            break;
        }
        assert_ne!(e.state, cove_api::EnvState::Failed, "{e:#?}");
        if start.elapsed() > Duration::from_secs(180) {
            bail!("environment {:?} / runs {runs:#?} did not finish", e.state);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let after = scrape(&server).await?;
    let changed = |key: &str| (series(&before, key), series(&after, key));
    assert_eq!(
        changed("cove_environments{state=\"running\"}"),
        (0.0, 1.0),
        "{after}"
    );
    assert_eq!(
        changed(
            "cove_environment_operation_duration_seconds_count{op=\"create\",result=\"running\"}"
        ),
        (0.0, 1.0),
        "{after}"
    );
    assert_eq!(
        changed("cove_runs{state=\"succeeded\"}"),
        (0.0, 1.0),
        "{after}"
    );
    assert_eq!(
        changed("cove_jobs{state=\"succeeded\"}"),
        (0.0, 1.0),
        "{after}"
    );
    assert_eq!(changed("cove_job_queue_depth"), (0.0, 0.0), "{after}");
    assert_eq!(
        changed("cove_git_pushes_total{result=\"ok\"}"),
        (0.0, 1.0),
        "{after}"
    );
    assert_eq!(
        changed("cove_git_push_size_bytes_count"),
        (0.0, 1.0),
        "{after}"
    );
    assert!(
        series(&after, "cove_git_push_size_bytes_sum") > 100.0,
        "{after}"
    );
    // Requests are labelled with the matched route, never the raw URL.
    assert_eq!(
        series(
            &after,
            "cove_http_requests_total{method=\"POST\",route=\"/api/v1/repos/{owner}/{name}/environments\",status=\"201\"}"
        ),
        1.0,
        "{after}"
    );
    assert!(
        series(
            &after,
            "cove_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/environments/{env}\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(!after.contains(&env.id), "a raw URL leaked into a label");

    // A restart is timed too, from the request to Running again.
    let resp = server
        .http
        .post(server.api(&format!("/environments/{}/restart", env.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.text().await?);
    let key =
        "cove_environment_operation_duration_seconds_count{op=\"restart\",result=\"running\"}";
    let start = Instant::now();
    loop {
        let text = scrape(&server).await?;
        // the operation's timing and the state gauge (read from the store) may be one
        // scrape apart: both must show the restart
        if series(&text, key) == 1.0 && series(&text, "cove_environments{state=\"running\"}") == 1.0
        {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("no restart observed: {text}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let resp = server
        .http
        .delete(server.api(&format!("/environments/{}", env.id)))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Probes and who may read /metrics
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_who_may_read_metrics() -> Result<()> {
    let port = common::free_port()?;
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await?;
    let get = |url: String, token: Option<String>| {
        let http = server.http.clone();
        async move {
            let mut req = http.get(url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await?;
            anyhow::Ok((resp.status().as_u16(), resp.text().await?))
        }
    };

    assert_eq!(get(format!("{}/healthz", server.url), None).await?.0, 200);
    // No Docker agent and no registered agent: not ready, and it says why.
    let (status, body) = get(format!("{}/readyz", server.url), None).await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no agent"), "{body}");

    // /metrics on the main listener: administrators only.
    assert_eq!(get(format!("{}/metrics", server.url), None).await?.0, 401);
    let user = server.create_user("bob").await?;
    assert_eq!(
        get(format!("{}/metrics", server.url), Some(user)).await?.0,
        403
    );
    let (status, text) = get(
        format!("{}/metrics", server.url),
        Some(server.admin_token.clone()),
    )
    .await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(series(&text, "cove_agents{kind=\"registered\"}"), 0.0);

    // A registered agent (seen when it registered) makes the server ready.
    server.agent_token().await?;
    let (status, body) = get(format!("{}/readyz", server.url), None).await?;
    assert_eq!(status, 200, "{body}");

    // The separate metrics listener needs no credential and serves nothing else.
    let metrics_url = format!("http://127.0.0.1:{port}");
    let (status, text) = get(format!("{metrics_url}/metrics"), None).await?;
    assert_eq!(status, 200, "{text}");
    assert_eq!(series(&text, "cove_agents{kind=\"registered\"}"), 1.0);
    assert_eq!(series(&text, "cove_agents{kind=\"active\"}"), 1.0);
    assert_eq!(get(format!("{metrics_url}/readyz"), None).await?.0, 200);
    assert_eq!(
        get(format!("{metrics_url}/api/v1/user"), None).await?.0,
        404
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_the_store_is_gone() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.agent_token().await?;
    let resp = server
        .http
        .get(format!("{}/readyz", server.url))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    server.state.store().close().await;
    let resp = server
        .http
        .get(format!("{}/readyz", server.url))
        .send()
        .await?;
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await?.contains("store"));
    let resp = server
        .http
        .get(format!("{}/healthz", server.url))
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "liveness does not depend on the store");
    Ok(())
}

/// A lease that expires (the agent went silent) is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_counted() -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.runs.lease = Duration::from_secs(10);
        c.runs.reap_interval = Duration::from_secs(3600);
    })
    .await?;
    let work = tempfile::tempdir()?;
    common::push_workflow(&server, work.path(), "lost", WORKFLOW).await?;
    let job = lease(&server).await?;
    let text = scrape(&server).await?;
    assert_eq!(series(&text, "cove_jobs{state=\"running\"}"), 1.0, "{text}");
    assert_eq!(series(&text, "cove_lease_expiries_total"), 0.0, "{text}");
    server.state.runs().clock().advance(Duration::from_secs(11));
    let expired = cove_server::runs::reap_expired(&server.state).await?;
    assert_eq!(expired, vec![job.job_id]);
    let text = scrape(&server).await?;
    assert_eq!(series(&text, "cove_lease_expiries_total"), 1.0, "{text}");
    assert_eq!(series(&text, "cove_jobs{state=\"running\"}"), 0.0, "{text}");
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The per-job log cap
// ---------------------------------------------------------------------------------------

/// A new, empty PostgreSQL database on the test cluster (`COVE_TEST_POSTGRES_URL`, set by
/// `eval "$(bash scripts/setup-postgres.sh)"`; required, never skipped).
async fn fresh_postgres() -> Result<String> {
    let base = common::postgres_base_url()
        .expect("COVE_TEST_POSTGRES_URL: run eval \"$(bash scripts/setup-postgres.sh)\" first");
    common::create_postgres_db(&base, "cove_operable").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_log_is_capped_with_a_visible_marker() -> Result<()> {
    log_cap_scenario(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_log_cap_and_retention_on_postgres() -> Result<()> {
    log_cap_scenario(Some(fresh_postgres().await?)).await?;
    retention_scenario(Some(fresh_postgres().await?)).await
}

async fn log_cap_scenario(database_url: Option<String>) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.database_url = database_url;
        c.embedded_agent = false;
        c.limits.max_job_log_bytes = 100;
    })
    .await?;
    let work = tempfile::tempdir()?;
    common::push_workflow(&server, work.path(), "logs", WORKFLOW).await?;
    let job = lease(&server).await?;
    let line = |seq: u64| json!({"seq": seq, "stream": "stdout", "ts": seq, "text": format!("{seq:02}{}", "x".repeat(28))});
    let path = format!("/agent/jobs/{}/logs", job.job_id);
    // 30 bytes a line: three fit in 100, the fourth becomes the marker, the rest is dropped.
    let batch = json!({"attempt": job.attempt, "lines": (0..5).map(line).collect::<Vec<_>>()});
    assert_eq!(agent_post(&server, &path, batch.clone()).await?.0, 204);
    // A resend changes nothing; later lines are dropped.
    assert_eq!(agent_post(&server, &path, batch).await?.0, 204);
    let later = json!({"attempt": job.attempt, "lines": (5..50).map(line).collect::<Vec<_>>()});
    assert_eq!(agent_post(&server, &path, later).await?.0, 204);

    let check = |lines: Vec<cove_api::JobLogLine>| {
        let seqs: Vec<u64> = lines.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3], "{lines:#?}");
        assert!(lines[2].text.starts_with("02x"), "{lines:#?}");
        assert_eq!(lines[3].stream, cove_api::LogStreamKind::System);
        assert!(
            lines[3].text.contains("log truncated") && lines[3].text.contains("100 bytes"),
            "{}",
            lines[3].text
        );
    };
    check(
        server
            .state
            .store()
            .job_logs(job.job_id, None, 1000)
            .await?,
    );
    let text = scrape(&server).await?;
    assert_eq!(
        series(&text, "cove_job_log_lines_dropped_total"),
        47.0,
        "{text}"
    );

    // After a restart the cap still holds (usage is re-read from the store).
    let agent = server.agent_token().await?;
    let server = server.restart().await?;
    let more = json!({"attempt": job.attempt, "lines": (50..52).map(line).collect::<Vec<_>>()});
    let resp = server
        .http
        .post(server.api(&path))
        .bearer_auth(&agent)
        .json(&more)
        .send()
        .await?;
    assert_eq!(resp.status(), 204, "{}", resp.text().await?);
    check(
        server
            .state
            .store()
            .job_logs(job.job_id, None, 1000)
            .await?,
    );
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The push deadline
// ---------------------------------------------------------------------------------------

/// A client that sends its push body one byte at a time (never idle long enough for the body
/// idle timeout) holds the repository lock only until the push deadline; another push to the
/// same repository then succeeds, and the slow client gets 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickling_push_cannot_hold_the_repository_lock() -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.embedded_agent = false;
        c.limits.push_deadline = Duration::from_secs(2);
    })
    .await?;
    server.create_repo(&server.admin_token, "slow").await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    commit_file(dir, "a.txt", b"a", "first").await?;
    let url = server.git_url("admin/slow", Some(&server.admin_token));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;

    // The slow client: headers, the start of a pkt-line that announces 65516 bytes, then one
    // byte every 200 ms for up to 90 s.
    let addr = server.url.trim_start_matches("http://").to_string();
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", server.admin_token))
    };
    let slow = std::thread::spawn(move || -> String {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /git/admin/slow.git/git-receive-pack HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Basic {auth}\r\nContent-Type: application/x-git-receive-pack-request\r\n\
             Content-Length: 65520\r\n\r\nfff0"
        )
        .unwrap();
        s.set_nonblocking(true).unwrap();
        let mut answer = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(90) {
            let mut buf = [0u8; 4096];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
            if s.write_all(b"0").is_err() {
                // The server answered and closed: read what it sent.
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.read_to_end(&mut answer);
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Let the slow push take the lock first.
    tokio::time::sleep(Duration::from_millis(700)).await;

    commit_file(dir, "b.txt", b"b", "second").await?;
    let pushed = tokio::time::timeout(
        Duration::from_secs(60),
        git(dir, &["push", "-q", &url, "main"]),
    )
    .await;
    let out = match pushed {
        Ok(out) => out?,
        Err(_) => bail!("the second push waited more than 60 s for the repository lock"),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = tokio::task::spawn_blocking(move || slow.join().unwrap()).await?;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "slow client got: {answer:?}"
    );
    let text = scrape(&server).await?;
    assert_eq!(
        series(&text, "cove_git_pushes_total{result=\"deadline\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        series(&text, "cove_git_pushes_total{result=\"ok\"}"),
        2.0,
        "{text}"
    );
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_runs_with_their_logs_and_artifacts() -> Result<()> {
    retention_scenario(None).await
}

async fn retention_scenario(database_url: Option<String>) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.database_url = database_url;
        c.embedded_agent = false;
    })
    .await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    common::push_workflow(&server, dir, "keep", WORKFLOW).await?;
    let url = server.git_url("admin/keep", Some(&server.admin_token));
    for i in 0..2 {
        commit_file(dir, "n.txt", format!("{i}").as_bytes(), "more").await?;
        git_ok(dir, &["push", "-q", &url, "main"]).await?;
    }
    let start = Instant::now();
    let runs = loop {
        let runs = runs_of(&server, "admin/keep").await?;
        if runs.len() == 3 {
            break runs;
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("expected 3 runs: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every run ends (cancelled); each gets an artifact directory and a log line.
    for run in &runs {
        let resp = server
            .http
            .post(server.api(&format!("/runs/{}/cancel", run.id)))
            .bearer_auth(&server.admin_token)
            .send()
            .await?;
        assert!(resp.status().is_success(), "{}", resp.text().await?);
        let art = server
            .data_dir
            .join("artifacts")
            .join(run.id.to_string())
            .join("1");
        std::fs::create_dir_all(&art)?;
        std::fs::write(art.join("out.tar"), b"tar")?;
    }
    // The default is 90 days / 100 runs; the repository keeps only its newest run.
    let retention = |body: serde_json::Value| {
        let http = server.http.clone();
        let url = server.api("/repos/admin/keep/retention");
        let token = server.admin_token.clone();
        async move {
            let resp = http.put(url).bearer_auth(token).json(&body).send().await?;
            anyhow::Ok((resp.status().as_u16(), resp.text().await?))
        }
    };
    let current: serde_json::Value = server
        .http
        .get(server.api("/repos/admin/keep/retention"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(current, json!({"days": 90, "runs": 100}));
    assert_eq!(retention(json!({"days": 0, "runs": 1})).await?.0, 200);
    assert!(retention(json!({"days": -1, "runs": 1})).await?.0 >= 400);
    assert!(
        retention(json!({"days": 1, "runs": 1, "extra": 1}))
            .await?
            .0
            >= 400
    );
    assert_eq!(retention(json!({"days": 40000, "runs": 1})).await?.0, 400);
    // A run that has not ended is never deleted.
    commit_file(dir, "n.txt", b"last", "queued").await?;
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    let start = Instant::now();
    while runs_of(&server, "admin/keep").await?.len() < 4 {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("no fourth run");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let now = cove_server::store::now_ms();
    let pass = cove_server::retention::run_once(&server.state, now).await?;
    assert_eq!(pass.runs, 2, "{pass:?}");
    let left = runs_of(&server, "admin/keep").await?;
    assert_eq!(left.len(), 2, "{left:#?}");
    let newest_done = runs.iter().map(|r| r.id).max().unwrap();
    assert!(left.iter().any(|r| r.id == newest_done));
    assert!(left.iter().any(|r| !r.state.is_terminal()));
    for run in &runs {
        let dir = server.data_dir.join("artifacts").join(run.id.to_string());
        assert_eq!(dir.exists(), run.id == newest_done, "{}", dir.display());
        if run.id != newest_done {
            let resp = server
                .http
                .get(server.api(&format!("/runs/{}", run.id)))
                .bearer_auth(&server.admin_token)
                .send()
                .await?;
            assert_eq!(resp.status(), 404);
        }
    }

    // By age: with no count limit, a finished run older than a day goes two days later.
    assert_eq!(retention(json!({"days": 1, "runs": 0})).await?.0, 200);
    let pass = cove_server::retention::run_once(&server.state, now + 2 * 86_400_000).await?;
    assert_eq!(pass.runs, 1, "{pass:?}");
    let left = runs_of(&server, "admin/keep").await?;
    assert_eq!(left.len(), 1);
    assert!(!left[0].state.is_terminal());
    let text = scrape(&server).await?;
    assert_eq!(series(&text, "cove_retention_deleted_runs_total"), 3.0);

    // Deleting the repository removes its runs and their artifact files, not only the row.
    let last = left[0].id;
    let art = server.data_dir.join("artifacts").join(last.to_string());
    std::fs::create_dir_all(art.join("1"))?;
    std::fs::write(art.join("1").join("out.tar"), b"tar")?;
    let resp = server
        .http
        .delete(server.api("/repos/admin/keep"))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 204, "{}", resp.text().await?);
    assert!(!art.exists(), "artifacts of a deleted repository remain");
    let resp = server
        .http
        .get(server.api(&format!("/runs/{last}")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?;
    assert_eq!(resp.status(), 404);
    server.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The standalone agent's own metrics
// ---------------------------------------------------------------------------------------

/// The real `cove-agent` with `metrics_listen` in agent.yaml serves its job counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standalone_agent_serves_its_own_metrics() -> Result<()> {
    assert!(
        common::docker_available().await,
        "no Docker engine: run `bash scripts/test-env.sh` and export DOCKER_HOST"
    );
    let agent_bin = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let server = TestServer::start_configured(|c| {
        c.runs.embedded_slots = 0;
        c.runs.default_image = "cove/busybox:latest".into();
    })
    .await?;
    let tmp = tempfile::tempdir()?;
    let reg_file = tmp.path().join("registration-token");
    std::fs::write(&reg_file, server.registration_token(None).await?)?;
    let port = common::free_port()?;
    let config = tmp.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "name: metrics-agent\nstate_dir: {}\nmetrics_listen: 127.0.0.1:{port}\nsandbox:\n  private_network: false\n",
            tmp.path().join("state").display()
        ),
    )?;
    let _agent = tokio::process::Command::new(&agent_bin)
        .arg("--config")
        .arg(&config)
        .arg("--server")
        .arg(&server.url)
        .arg("--registration-token-file")
        .arg(&reg_file)
        .env_remove("COVE_REGISTRATION_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let start = Instant::now();
    let before = loop {
        if let Ok(resp) = server.http.get(&metrics_url).send().await {
            break resp.text().await?;
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the agent's metrics listener did not answer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        series(&before, "cove_agent_jobs_started_total"),
        0.0,
        "{before}"
    );

    let work = tempfile::tempdir()?;
    common::push_workflow(&server, work.path(), "agentmetrics", WORKFLOW).await?;
    let start = Instant::now();
    loop {
        let runs = runs_of(&server, "admin/agentmetrics").await?;
        if runs.first().is_some_and(|r| r.state.is_terminal()) {
            assert_eq!(runs[0].state, RunState::Succeeded, "{runs:#?}");
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("the run did not end: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = server.http.get(&metrics_url).send().await?.text().await?;
    assert_eq!(
        series(&after, "cove_agent_jobs_started_total"),
        1.0,
        "{after}"
    );
    assert_eq!(
        series(
            &after,
            "cove_agent_jobs_finished_total{outcome=\"succeeded\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(
        series(
            &after,
            "cove_agent_job_duration_seconds_count{outcome=\"succeeded\"}"
        ),
        1.0,
        "{after}"
    );
    assert_eq!(series(&after, "cove_agent_jobs_running"), 0.0, "{after}");
    assert!(
        after.contains("cove_agent_gateway_denials_total 0"),
        "{after}"
    );
    server.stop().await;
    Ok(())
}
