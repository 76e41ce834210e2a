#![allow(clippy::unwrap_used)]
//! Run modes (design notes §6 rule 8): three real pushes one second apart to a two-action
//! workflow under QUEUED, SUPERSEDED and PARALLEL. A fake agent with three slots holds every
//! job 2.5 s. Final states are asserted, and from the stored job start/end times that no two
//! runs were inside the same action at once under QUEUED and SUPERSEDED.

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{commit_file, git_ok, TestServer};
use cove_api::{FinishRequest, JobOutcome, Run, RunState};

const HOLD: Duration = Duration::from_millis(2500);

fn workflow(mode: &str) -> String {
    format!(
        "Name: modes\nSchemaVersion: \"1.0\"\nRunMode: {mode}\nTriggers:\n  - Type: PUSH\n    Branches: [main]\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {{Steps: [{{Run: a}}]}}\n  B:\n    Identifier: aws/build@v1\n    DependsOn: [A]\n    Configuration: {{Steps: [{{Run: b}}]}}\n"
    )
}

/// A fake agent slot: lease, hold, succeed.
fn spawn_slot(state: cove_server::AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok(Some(lease)) = cove_server::runs::lease(&state, Duration::from_secs(1)).await
            else {
                continue;
            };
            tokio::time::sleep(HOLD).await;
            let report = FinishRequest {
                attempt: lease.attempt,
                outcome: JobOutcome::Succeeded,
                variables: Default::default(),
                error: None,
                retry: false,
            };
            let _ = cove_server::runs::finish(&state, lease.job_id, &report).await;
        }
    })
}

async fn three_pushes(mode: &str) -> Result<Vec<Run>> {
    let server = TestServer::start_configured(|c| c.embedded_agent = false).await?;
    server.create_repo(&server.admin_token, "m").await?;
    let slots: Vec<_> = (0..3).map(|_| spawn_slot(server.state.clone())).collect();
    let work = tempfile::tempdir()?;
    let dir = work.path();
    git_ok(dir, &["init", "-q", "-b", "main"]).await?;
    let url = server.git_url("admin/m", Some(&server.admin_token));
    commit_file(
        dir,
        ".codecatalyst/workflows/m.yaml",
        workflow(mode).as_bytes(),
        "wf",
    )
    .await?;
    for i in 0..3 {
        if i > 0 {
            commit_file(dir, "n.txt", format!("{i}").as_bytes(), "next").await?;
        }
        git_ok(dir, &["push", "-q", &url, "main"]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let start = Instant::now();
    let runs = loop {
        let mut runs: Vec<Run> = server
            .http
            .get(server.api("/repos/admin/m/runs"))
            .bearer_auth(&server.admin_token)
            .send()
            .await?
            .json()
            .await?;
        if runs.len() == 3 && runs.iter().all(|r| r.state.is_terminal()) {
            runs.sort_by_key(|r| r.id);
            break runs;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{runs:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for s in slots {
        s.abort();
    }
    server.stop().await;
    Ok(runs)
}

/// (start, end) of each run's job for `action`, for the runs that entered it.
fn intervals(runs: &[Run], action: &str) -> Vec<(i64, i64)> {
    runs.iter()
        .filter_map(|r| r.jobs.iter().find(|j| j.action == action))
        .filter_map(|j| Some((j.started_at_ms?, j.finished_at_ms?)))
        .collect()
}

fn overlaps(iv: &[(i64, i64)]) -> bool {
    iv.iter()
        .enumerate()
        .any(|(i, a)| iv.iter().skip(i + 1).any(|b| a.0 < b.1 && b.0 < a.1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_all_and_one_at_a_time_per_action() -> Result<()> {
    let runs = three_pushes("QUEUED").await?;
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert_eq!(states, vec![RunState::Succeeded; 3]);
    for action in ["A", "B"] {
        let iv = intervals(&runs, action);
        assert_eq!(iv.len(), 3);
        assert!(!overlaps(&iv), "{action}: {iv:?}");
        // FIFO: runs enter each action in push order.
        assert!(iv.windows(2).all(|w| w[0].0 <= w[1].0), "{action}: {iv:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_drops_the_older_waiting_run() -> Result<()> {
    let runs = three_pushes("SUPERSEDED").await?;
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        vec![
            RunState::Succeeded,
            RunState::Superseded,
            RunState::Succeeded
        ],
        "{runs:#?}"
    );
    assert!(runs[1]
        .jobs
        .iter()
        .all(|j| j.state == cove_api::JobState::Superseded));
    for action in ["A", "B"] {
        let iv = intervals(&runs, action);
        assert!(!overlaps(&iv), "{action}: {iv:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_runs_overlap() -> Result<()> {
    let runs = three_pushes("PARALLEL").await?;
    let states: Vec<RunState> = runs.iter().map(|r| r.state).collect();
    assert_eq!(states, vec![RunState::Succeeded; 3]);
    assert!(
        overlaps(&intervals(&runs, "A")),
        "no serialization under PARALLEL"
    );
    Ok(())
}
