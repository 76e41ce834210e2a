#![allow(clippy::unwrap_used)]
//! Two `cove-server` replicas (real binaries on two ports, one PostgreSQL database, one data
//! directory) and one real `cove-agent` that talks to replica A only (docs/replicas.md).
//!
//! - B starts first and leads (`cove_replica_leader 1`), A follows (`0`).
//! - A push through A creates its run (the leader's push consumer, woken over NOTIFY) and
//!   the repository clones through B at the same commit.
//! - A run's log, followed from B, arrives line by line while the agent reports to A.
//! - Concurrent pushes through A and B each record only their own ref update.
//! - A due SCHEDULE slot fires exactly once.
//! - SIGKILL of the leader B: A leads within seconds, a run queued before the kill completes,
//!   and the next due slot fires exactly once again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, free_port, git_ok, spawn_server_with, Proc, SpawnOptions, ADMIN_TOKEN};
use cove_api::{JobState, Run, RunState};
use cove_server::runs::schedules;
use cove_server::store::Store;

/// Five lines two seconds apart, naming the commit's `n.txt`.
const SLOW: &str = "Name: slow\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\n    Branches: [main]\nActions:\n  Slow:\n    Identifier: aws/build@v1\n    Inputs: {Sources: [WorkflowSource]}\n    Configuration:\n      Steps:\n        - Run: for i in 1 2 3 4 5; do echo \"line $i of $(cat n.txt)\"; sleep 2; done\n";

/// A daily schedule: its slots in this test are the ones the test makes due.
const DAILY: &str = "Name: daily\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: SCHEDULE\n    Expression: \"0 3 * * ? *\"\n    Branches: [main]\nActions:\n  Tick:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo tick\n";

/// The agent process; SIGKILLed and reaped on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str, path: &str) -> Result<T> {
    let resp = http()
        .get(format!("{url}/api/v1{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("GET {path}: {} {}", resp.status(), resp.text().await?);
    }
    Ok(resp.json().await?)
}

async fn runs_of(url: &str) -> Result<Vec<Run>> {
    get_json(url, "/repos/admin/r/runs").await
}

/// The runs of workflow `name`, oldest first.
async fn runs_named(url: &str, name: &str) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = runs_of(url)
        .await?
        .into_iter()
        .filter(|r| r.workflow == name)
        .collect();
    runs.sort_by_key(|r| r.number);
    Ok(runs)
}

/// `cove_replica_leader` of the replica at `url` (None: not served, or no answer).
async fn leader_gauge(url: &str) -> Option<i64> {
    let resp = http()
        .get(format!("{url}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let text = resp.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("cove_replica_leader "))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_for_gauge(url: &str, want: i64, within: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if leader_gauge(url).await == Some(want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!(
                "{url}: cove_replica_leader is {:?}, not {want}, after {within:?}",
                leader_gauge(url).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds for the runs of `name` (read from `url`).
async fn wait_runs(
    url: &str,
    name: &str,
    within: Duration,
    check: impl Fn(&[Run]) -> bool,
) -> Result<Vec<Run>> {
    let start = Instant::now();
    loop {
        let runs = runs_named(url, name).await?;
        if check(&runs) {
            return Ok(runs);
        }
        if start.elapsed() > within {
            bail!("runs of {name} after {within:?}: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn push(work: &Path, url: &str, n: u32) -> Result<String> {
    std::fs::write(work.join("n.txt"), n.to_string())?;
    git_ok(work, &["add", "n.txt"]).await?;
    let head = commit_file(work, "n.txt", n.to_string().as_bytes(), &format!("n = {n}")).await?;
    let host = url.trim_start_matches("http://");
    let remote = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/r.git");
    git_ok(work, &["push", "-q", &remote, "main"]).await?;
    Ok(head)
}

/// Makes the schedule of `daily` due (a slot `minutes_ago` minutes back) behind the
/// servers' backs, as if its time had come.
async fn make_due(database_url: &str, minutes_ago: i64) -> Result<()> {
    let store = Store::open(database_url).await?;
    let repo = store.repo("admin", "r").await?.unwrap();
    let rows = store.repo_schedules(repo.id).await?;
    assert_eq!(rows.len(), 1, "one schedule");
    let slot = (cove_server::store::now_ms() / 60_000 - minutes_ago) * 60_000;
    store.set_schedule_next(rows[0].id, Some(slot)).await?;
    store.close().await;
    Ok(())
}

fn spawn_agent(bin: &Path, server: &str, state_dir: &Path, registration: &str) -> Agent {
    let child = Command::new(bin)
        .arg("--server")
        .arg(server)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--name", "replicas", "--slots", "2"])
        .env("COVE_REGISTRATION_TOKEN", registration)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Agent(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_work_and_survive_the_leaders_sigkill() -> Result<()> {
    let Some(db) = common::postgres_db_or_skip("cove_replicas").await? else {
        return Ok(());
    };
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let agent_bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("shared-data");
    let config = tmp.path().join("cove.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{db}\"\n[jobs]\nembedded_slots = 0\ndefault_image = \"cove/busybox:latest\"\n"
        ),
    )?;
    // The replicas get no Docker engine (no embedded agent): jobs run on the one agent.
    let envs = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let spawn = |port: u16| {
        let config = config.clone();
        let data_dir = data_dir.clone();
        async move {
            let options = SpawnOptions {
                config: Some(&config),
                envs: &envs,
                inherit_stderr: true,
                ready_within: Duration::from_secs(60),
            };
            spawn_server_with(&data_dir, port, options).await
        }
    };

    // B first: it leads; A follows.
    let Proc {
        child: mut b,
        url: b_url,
    } = spawn(free_port()?).await?;
    wait_for_gauge(&b_url, 1, Duration::from_secs(15)).await?;
    let Proc {
        child: mut a,
        url: a_url,
    } = spawn(free_port()?).await?;
    wait_for_gauge(&a_url, 0, Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(leader_gauge(&b_url).await, Some(1), "B still leads");
    assert_eq!(leader_gauge(&a_url).await, Some(0), "A follows");

    // One agent, registered with and reporting to A.
    let resp = http()
        .post(format!("{a_url}/api/v1/agents/registration-tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let registration = resp.json::<cove_api::RegistrationToken>().await?.token;
    let agent_state = tempfile::tempdir()?;
    let _agent = spawn_agent(&agent_bin, &a_url, agent_state.path(), &registration);

    // Push through A (a follower): the run is created and runs.
    let resp = http()
        .post(format!("{a_url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "name": "r" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    git_ok(&work, &["init", "-q", "-b", "main"]).await?;
    std::fs::create_dir_all(work.join(".codecatalyst/workflows"))?;
    std::fs::write(work.join(".codecatalyst/workflows/slow.yaml"), SLOW)?;
    std::fs::write(work.join(".codecatalyst/workflows/daily.yaml"), DAILY)?;
    git_ok(&work, &["add", "."]).await?;
    let head = push(&work, &a_url, 1).await?;

    // Clone through B: the same commit from the shared data directory.
    let host_b = b_url.trim_start_matches("http://");
    let clone_dir = tmp.path().join("clone");
    git_ok(
        tmp.path(),
        &[
            "clone",
            "-q",
            &format!("http://cove:{ADMIN_TOKEN}@{host_b}/git/admin/r.git"),
            clone_dir.to_str().unwrap(),
        ],
    )
    .await?;
    assert_eq!(
        git_ok(&clone_dir, &["rev-parse", "HEAD"]).await?.trim(),
        head
    );
    assert_eq!(std::fs::read_to_string(clone_dir.join("n.txt"))?, "1");

    // The first run's log, followed from B while the agent reports to A.
    let first = wait_runs(&a_url, "slow", Duration::from_secs(30), |r| r.len() == 1).await?;
    let first = first[0].clone();
    let mut follow = http()
        .get(format!(
            "{b_url}/api/v1/runs/{}/jobs/Slow/logs?follow=true",
            first.id
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(follow.status(), 200);
    let mut text = String::new();
    let mut live = false;
    let started = Instant::now();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), follow.chunk()).await?? {
        text.push_str(std::str::from_utf8(&chunk)?);
        if !live && text.contains("line 1 of 1") {
            // The first line came through B before the job ended on the agent (A's view).
            let run: Run = get_json(&a_url, &format!("/runs/{}", first.id)).await?;
            assert!(
                !run.jobs[0].state.is_terminal(),
                "the log reached B only after the job ended: {run:#?}"
            );
            live = true;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{text}");
    }
    assert!(live, "no live line: {text}");
    for i in 1..=5 {
        assert!(text.contains(&format!("line {i} of 1")), "{text}");
    }
    let first: Run = get_json(&b_url, &format!("/runs/{}", first.id)).await?;
    assert_eq!(first.state, RunState::Succeeded, "{first:#?}");

    // Pushes through both replicas at once, to new branches: the repository's lock holds
    // across replicas, so each push records its own ref update and nothing else.
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..8 {
        let url = if i % 2 == 0 { &a_url } else { &b_url };
        let host = url.trim_start_matches("http://").to_string();
        let work = work.clone();
        pushes.spawn(async move {
            let remote = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/r.git");
            git_ok(
                &work,
                &["push", "-q", &remote, &format!("HEAD:refs/heads/b{i}")],
            )
            .await
        });
    }
    while let Some(done) = pushes.join_next().await {
        done??;
    }
    let events: Vec<cove_api::PushEvent> =
        get_json(&b_url, "/repos/admin/r/events?limit=1000").await?;
    for i in 0..8 {
        let branch = format!("refs/heads/b{i}");
        let n = events.iter().filter(|e| e.ref_name == branch).count();
        assert_eq!(n, 1, "{branch} recorded {n} times: {events:#?}");
    }
    assert_eq!(events.len(), 9, "{events:#?}");

    // A due slot fires exactly once (the leader fires; A does not).
    make_due(&db, 2).await?;
    wait_runs(&b_url, "daily", Duration::from_secs(20), |r| r.len() == 1).await?;
    tokio::time::sleep(schedules::TICK + Duration::from_secs(2)).await;
    assert_eq!(runs_named(&a_url, "daily").await?.len(), 1, "fired once");

    // Two more pushes through A: the second is still queued (QUEUED run mode) when the
    // leader is killed.
    push(&work, &a_url, 2).await?;
    wait_runs(&a_url, "slow", Duration::from_secs(30), |r| {
        r.len() == 2 && r[1].jobs[0].state == JobState::Running
    })
    .await?;
    push(&work, &a_url, 3).await?;
    let before = wait_runs(&a_url, "slow", Duration::from_secs(30), |r| r.len() == 3).await?;
    assert_eq!(before[2].jobs[0].state, JobState::Pending, "{before:#?}");
    b.kill().await?; // SIGKILL
    let killed = Instant::now();

    // A takes over within seconds.
    let took = wait_for_gauge(&a_url, 1, Duration::from_secs(15)).await?;
    eprintln!("A led {:?} after the SIGKILL", killed.elapsed());
    assert!(took <= Duration::from_secs(15));

    // The queued run completes, through A and the agent.
    let done = wait_runs(&a_url, "slow", Duration::from_secs(90), |r| {
        r.len() == 3 && r.iter().all(|run| run.state.is_terminal())
    })
    .await?;
    for run in &done {
        assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
        assert_eq!(run.jobs[0].attempt, 1, "never ran twice: {run:#?}");
    }
    let log: String = http()
        .get(format!("{a_url}/api/v1/runs/{}/jobs/Slow/logs", done[2].id))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(log.contains("line 5 of 3"), "{log}");

    // The new leader fires the next due slot, exactly once.
    make_due(&db, 1).await?;
    wait_runs(&a_url, "daily", Duration::from_secs(20), |r| r.len() == 2).await?;
    tokio::time::sleep(schedules::TICK + Duration::from_secs(2)).await;
    let daily = runs_named(&a_url, "daily").await?;
    assert_eq!(daily.len(), 2, "each slot fired once: {daily:#?}");
    assert!(daily.iter().all(|r| r.trigger == "schedule"), "{daily:#?}");
    // Every run of a push, one per push event.
    assert_eq!(runs_named(&a_url, "slow").await?.len(), 3);

    a.kill().await?;
    drop(_agent);
    if let Some(base) = common::postgres_base_url() {
        common::drop_postgres_db(&base, &db).await?;
    }
    Ok(())
}

/// Waits until `cond` holds, for at most `within`.
async fn eventually(within: Duration, what: &str, cond: impl Fn() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > within {
            bail!("{what}: not within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(start.elapsed())
}

/// A leader whose database session is ended (not its process) stops leading, and another
/// replica leads; a leader that stops gracefully hands over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_loses_its_session_steps_down() -> Result<()> {
    let Some(db) = common::postgres_db_or_skip("cove_leader").await? else {
        return Ok(());
    };
    let one = common::TestServer::start_with(Some(db.clone())).await?;
    eventually(Duration::from_secs(10), "the first replica leads", || {
        one.state.cluster().is_leader()
    })
    .await?;
    let two = common::TestServer::start_with(Some(db.clone())).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(one.state.cluster().is_leader());
    assert!(!two.state.cluster().is_leader(), "two leaders");

    // End the leader's session from the database's side.
    let pool = sqlx::AnyPool::connect(&db).await?;
    let ended = sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND classid = 1131378277 AND objid = 1 AND objsubid = 2 AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(ended.len(), 1, "one session holds the leader lock");
    eventually(Duration::from_secs(10), "the old leader steps down", || {
        !one.state.cluster().is_leader()
    })
    .await?;
    eventually(Duration::from_secs(10), "the other replica leads", || {
        two.state.cluster().is_leader()
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !one.state.cluster().is_leader(),
        "the old leader campaigns again but does not lead while the other does"
    );

    // A graceful stop releases the lock: the remaining replica leads again.
    two.stop().await;
    eventually(Duration::from_secs(10), "leadership comes back", || {
        one.state.cluster().is_leader()
    })
    .await?;
    one.stop().await;
    pool.close().await;
    if let Some(base) = common::postgres_base_url() {
        common::drop_postgres_db(&base, &db).await?;
    }
    Ok(())
}
