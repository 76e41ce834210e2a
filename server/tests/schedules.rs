#![allow(clippy::unwrap_used)]
//! SCHEDULE triggers (issue 15): a pushed schedule is listed with its next time, fires at it
//! (the engine's clock is moved instead of waiting a minute) into a real run of the branch
//! head, fires exactly once per slot even when two passes race, fires once for slots missed
//! while the server was down, and never again after a SIGKILL + restart of the real binary.
//! Runs get sequential per-repository numbers on SQLite and PostgreSQL.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{
    commit_file, free_port, git_ok, spawn_server_with, Proc, SpawnOptions, TestServer, ADMIN_TOKEN,
};
use cove_api::{Run, RunState, Schedule};
use cove_server::runs::schedules;

const EVERY_MINUTE: &str = "Name: nightly\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: SCHEDULE\n    Expression: \"* * * * ? *\"\n    Branches: [main]\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo scheduled\n";

const DAILY: &str = "Name: daily\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: SCHEDULE\n    Expression: \"0 3 * * ? *\"\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo daily\n";

const MANUAL: &str = "Name: by-hand\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: MANUAL\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo manual\n";

async fn schedules_of(url: &str, repo: &str) -> Result<Vec<Schedule>> {
    common::api_json_at(url, &format!("/repos/admin/{repo}/schedules")).await
}

async fn runs_at(url: &str, repo: &str) -> Result<Vec<Run>> {
    common::api_json_at(url, &format!("/repos/admin/{repo}/runs?limit=500")).await
}

/// Waits until `repo` has `n` schedules (pushes are turned into schedules asynchronously).
async fn wait_schedules(url: &str, repo: &str, n: usize) -> Result<Vec<Schedule>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = schedules_of(url, repo).await?;
        if s.len() == n || Instant::now() > deadline {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn scheduled(runs: &[Run]) -> Vec<&Run> {
    runs.iter().filter(|r| r.trigger == "schedule").collect()
}

/// Creates `admin/<repo>` and pushes `files` (path, text) to main; the head commit.
async fn push_files(url: &str, work: &Path, repo: &str, files: &[(&str, &str)]) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "name": repo }))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    git_ok(work, &["init", "-q", "-b", "main"]).await?;
    let mut head = String::new();
    for (path, text) in files {
        head = commit_file(work, path, text.as_bytes(), path).await?;
    }
    let host = url.trim_start_matches("http://");
    let git_url = format!("http://cove:{ADMIN_TOKEN}@{host}/git/admin/{repo}.git");
    git_ok(work, &["push", "-q", &git_url, "main"]).await?;
    Ok(head)
}

/// Fires, checks and numbers on the store at `database_url` (SQLite when `None`).
async fn schedule_fires_once_per_slot(database_url: Option<String>, real_run: bool) -> Result<()> {
    let server = TestServer::start_configured(|c| {
        c.database_url = database_url;
        c.embedded_agent = real_run;
    })
    .await?;
    let work = tempfile::tempdir()?;
    let head = push_files(
        &server.url,
        work.path(),
        "cron",
        &[
            (".codecatalyst/workflows/nightly.yaml", EVERY_MINUTE),
            (".codecatalyst/workflows/by-hand.yaml", MANUAL),
        ],
    )
    .await?;
    let list = wait_schedules(&server.url, "cron", 1).await?;
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(
        (
            s.workflow.as_str(),
            s.branch.as_str(),
            s.expression.as_str()
        ),
        ("nightly", "main", "* * * * ? *")
    );
    let clock = server.state.runs().clock();
    let next = s.next_fire_at_ms.expect("a next time");
    let now = clock.now_ms();
    assert!(
        next > now && next <= now + 60_000 && next % 60_000 == 0,
        "next {next}, now {now}"
    );
    // Neither the schedule-only nor the manual-only workflow runs on a push.
    assert!(runs_at(&server.url, "cron").await?.is_empty());

    // The minute passes: the clock goes to 1 s after the slot, so the next slot is 59 s of
    // real time away while the counts below are taken. Two passes race (and the background
    // scheduler may join them).
    let to_slot = next - clock.now_ms() + 1000;
    clock.advance(Duration::from_millis(u64::try_from(to_slot).unwrap()));
    let (a, b) = tokio::join!(
        schedules::fire_due(&server.state),
        schedules::fire_due(&server.state)
    );
    assert!(a?.len() + b?.len() <= 1, "a slot fired twice");
    let deadline = Instant::now() + Duration::from_secs(15);
    let runs = loop {
        let runs = runs_at(&server.url, "cron").await?;
        if !runs.is_empty() || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(runs.len(), 1, "exactly one run for the slot: {runs:?}");
    let first = &runs[0];
    assert_eq!(
        (
            first.trigger.as_str(),
            first.branch.as_str(),
            first.commit.as_str(),
            first.workflow.as_str(),
            first.number
        ),
        ("schedule", "main", head.as_str(), "nightly", 1)
    );
    // Nothing more until the next minute.
    assert!(schedules::fire_due(&server.state).await?.is_empty());
    let after = schedules_of(&server.url, "cron").await?;
    assert_eq!(after[0].last_run, Some(1));
    assert!(after[0].next_fire_at_ms.unwrap() > clock.now_ms());

    // Ten minutes without the scheduler: the missed slots fire once, not ten times (the clock
    // keeps its phase: 1 s past a slot).
    clock.advance(Duration::from_secs(600));
    schedules::fire_due(&server.state).await?;
    schedules::fire_due(&server.state).await?;
    let runs = runs_at(&server.url, "cron").await?;
    assert_eq!(scheduled(&runs).len(), 2, "{runs:?}");

    // A manual run of the manual-only workflow; numbers go on in order.
    let resp = server
        .http
        .post(server.api("/repos/admin/cron/runs"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "workflow": "by-hand" }))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let manual: Run = resp.json().await?;
    assert_eq!((manual.trigger.as_str(), manual.number), ("manual", 3));
    let mut numbers: Vec<i64> = runs_at(&server.url, "cron")
        .await?
        .iter()
        .map(|r| r.number)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3]);
    let by_number: Run = common::api_json(&server, "/repos/admin/cron/runs/by-number/2").await?;
    assert_eq!(by_number.number, 2);
    assert_eq!(by_number.trigger, "schedule");

    if real_run {
        // The scheduled run really runs (embedded agent, Docker).
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let run: Run = common::api_json(&server, &format!("/runs/{}", first.id)).await?;
            if run.state == RunState::Succeeded {
                break;
            }
            assert!(
                !run.state.is_terminal() && Instant::now() < deadline,
                "scheduled run ended {:?}",
                run
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // A push that removes the SCHEDULE trigger removes the schedule.
    commit_file(
        work.path(),
        ".codecatalyst/workflows/nightly.yaml",
        MANUAL.replace("by-hand", "nightly").as_bytes(),
        "no schedule",
    )
    .await?;
    let url = server.git_url("admin/cron", Some(ADMIN_TOKEN));
    git_ok(work.path(), &["push", "-q", &url, "main"]).await?;
    assert!(wait_schedules(&server.url, "cron", 0).await?.is_empty());
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_slot_into_a_real_run() -> Result<()> {
    let real = common::docker_engine_or_skip().await;
    schedule_fires_once_per_slot(None, real).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_run_numbers_on_postgres() -> Result<()> {
    let Some(url) = common::postgres_db_or_skip("cove_sched").await? else {
        return Ok(());
    };
    schedule_fires_once_per_slot(Some(url), false).await
}

/// Concurrent run creation never hands out a number twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_get_distinct_sequential_numbers() -> Result<()> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    let work = tempfile::tempdir()?;
    common::push_workflow(&server, work.path(), "num", MANUAL).await?;
    let starts = (0..8).map(|_| {
        server
            .http
            .post(server.api("/repos/admin/num/runs"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "workflow": "by-hand" }))
            .send()
    });
    for resp in futures_util::future::join_all(starts).await {
        assert_eq!(resp?.status(), 201);
    }
    let mut numbers: Vec<i64> = runs_at(&server.url, "num")
        .await?
        .iter()
        .map(|r| r.number)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>());
    server.stop().await;
    Ok(())
}

/// The real binary, no embedded job loop.
async fn spawn(data_dir: &Path, config: &Path, port: u16) -> Result<Proc> {
    let options = SpawnOptions {
        config: Some(config),
        inherit_stderr: true,
        ready_within: Duration::from_secs(60),
        ..SpawnOptions::default()
    };
    spawn_server_with(data_dir, port, options).await
}

/// A slot missed while the server was down fires once when it is back; a SIGKILL right after
/// and a restart fire nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_slot_fires_once_across_sigkill_and_restart() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data_dir = tmp.path().join("data");
    let config = tmp.path().join("cove.toml");
    std::fs::write(&config, "[jobs]\nembedded_slots = 0\n")?;
    let port = free_port()?;
    let Proc { mut child, url } = spawn(&data_dir, &config, port).await?;
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    push_files(
        &url,
        &work,
        "daily",
        &[(".codecatalyst/workflows/daily.yaml", DAILY)],
    )
    .await?;
    let list = wait_schedules(&url, "daily", 1).await?;
    assert_eq!(list.len(), 1, "{list:?}");
    child.kill().await?;

    // While the server is down, its 03:00 slot passes (the stored time moves back).
    let store =
        cove_server::store::Store::open(&format!("sqlite://{}/cove.db", data_dir.display()))
            .await?;
    let repo = store.repo("admin", "daily").await?.unwrap();
    let row = &store.repo_schedules(repo.id).await?[0];
    let missed = (cove_server::store::now_ms() / 60_000 - 5) * 60_000;
    store.set_schedule_next(row.id, Some(missed)).await?;
    drop(store);

    let Proc { mut child, url } = spawn(&data_dir, &config, port).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if !scheduled(&runs_at(&url, "daily").await?).is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await?;

    let Proc { mut child, url } = spawn(&data_dir, &config, port).await?;
    // Two scheduler passes (one at start, one a tick later).
    tokio::time::sleep(schedules::TICK + Duration::from_secs(1)).await;
    let runs = runs_at(&url, "daily").await?;
    assert_eq!(
        scheduled(&runs).len(),
        1,
        "exactly one run for the missed slot: {runs:?}"
    );
    let s = &schedules_of(&url, "daily").await?[0];
    let next = s.next_fire_at_ms.unwrap();
    assert!(
        next > cove_server::store::now_ms(),
        "the next time is ahead"
    );
    assert_eq!(next % 86_400_000, 3 * 3_600_000, "03:00 UTC");
    child.kill().await?;
    Ok(())
}
