#![allow(clippy::unwrap_used)]
//! Placement with real, separate `cove-agent` processes (issue 20, docs/agents.md): two
//! agents on the same Docker engine — `plain-1` (no pool, `region=us`) and `gpu-1`
//! (registered into the agent pool `gpu`, which serves `admin/pooled` only). A
//! `Compute.Fleet: gpu` job waits with "no agent matches labels pool=gpu" (in the API and in
//! `cove run show`) while only `plain-1` runs, then runs on `gpu-1` once it registers; a job of
//! another repository runs on `plain-1`, never on the pooled agent; `cove agent list` shows
//! both with pool, labels, capacity and backend. The server's embedded agent runs no jobs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use common::{commit_file, git_ok, start_for_agent_process, TestServer};
use cove_api::{AgentInfo, JobState, Run, RunState};

const GPU_WF: &str = "Name: train\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Train:\n    Identifier: aws/build@v1\n    Compute:\n      Type: EC2\n      Fleet: gpu\n    Configuration:\n      Steps:\n        - Run: echo trained\n";
const PLAIN_WF: &str = "Name: build\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Build:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: echo built\n";

/// A `cove-agent` process; killed on drop.
struct AgentProc {
    _child: tokio::process::Child,
}

async fn spawn_agent(
    bin: &Path,
    server: &TestServer,
    state: &Path,
    name: &str,
    labels: &[&str],
    registration: &str,
) -> Result<AgentProc> {
    let reg_file = state.with_extension("reg");
    std::fs::write(&reg_file, registration)?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--server")
        .arg(&server.url)
        .arg("--state-dir")
        .arg(state)
        .args(["--name", name, "--slots", "1"])
        .arg("--registration-token-file")
        .arg(&reg_file)
        .env_remove("COVE_REGISTRATION_TOKEN")
        .env_remove("COVE_AGENT_LABELS")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for l in labels {
        cmd.args(["--label", l]);
    }
    Ok(AgentProc {
        _child: cmd.spawn()?,
    })
}

async fn runs(server: &TestServer, repo: &str) -> Result<Vec<Run>> {
    Ok(server
        .http
        .get(server.api(&format!("/repos/admin/{repo}/runs")))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until the newest run of `repo` (of `count`) satisfies `done`.
async fn wait_run(
    server: &TestServer,
    repo: &str,
    count: usize,
    what: &str,
    done: impl Fn(&Run) -> bool,
) -> Result<Run> {
    let start = Instant::now();
    loop {
        let all = runs(server, repo).await?;
        if all.len() == count && done(&all[0]) {
            return Ok(all[0].clone());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{repo}: {what} not reached: {all:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn push(server: &TestServer, dir: &Path, repo: &str, wf: &str, n: usize) -> Result<()> {
    if n == 0 {
        git_ok(dir, &["init", "-q", "-b", "main"]).await?;
        commit_file(dir, ".codecatalyst/workflows/wf.yaml", wf.as_bytes(), "wf").await?;
    } else {
        commit_file(dir, &format!("n{n}.txt"), b"again", "again").await?;
    }
    let url = server.git_url(&format!("admin/{repo}"), Some(&server.admin_token));
    git_ok(dir, &["push", "-q", &url, "main"]).await?;
    Ok(())
}

fn cli(bin: &Path, server: &TestServer, home: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(bin)
        .args(args)
        .env("HOME", home)
        .env("COVE_URL", &server.url)
        .env("COVE_TOKEN", &server.admin_token)
        .output()?;
    if !out.status.success() {
        bail!("cove {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_jobs_land_on_their_pool_and_fleet_jobs_wait_for_a_matching_agent() -> Result<()> {
    if !common::docker_engine_or_skip().await {
        return Ok(());
    }
    let agent_bin: PathBuf = cove_tests::cargo_bin("cove-agent", "cove-agent")?;
    let cli_bin: PathBuf = cove_tests::cargo_bin("cove", "cove")?;
    let server = start_for_agent_process(0).await?;
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home)?;
    server.create_repo(&server.admin_token, "pooled").await?;
    server.create_repo(&server.admin_token, "other").await?;
    let out = cli(
        &cli_bin,
        &server,
        &home,
        &["agent", "pool", "create", "gpu", "--repo", "admin/pooled"],
    )?;
    assert!(out.contains("agent pool gpu created"), "{out}");

    // Only the plain agent runs: the gpu job waits, and says why.
    let plain_reg = server.registration_token(None).await?;
    let _plain = spawn_agent(
        &agent_bin,
        &server,
        &tmp.path().join("plain"),
        "plain-1",
        &["region=us"],
        &plain_reg,
    )
    .await?;
    let (w_gpu, w_other) = (tmp.path().join("w-gpu"), tmp.path().join("w-other"));
    std::fs::create_dir_all(&w_gpu)?;
    std::fs::create_dir_all(&w_other)?;
    push(&server, &w_gpu, "pooled", GPU_WF, 0).await?;
    let run = wait_run(&server, "pooled", 1, "the waiting reason", |r| {
        r.jobs[0].waiting.as_deref() == Some("no agent matches labels pool=gpu")
    })
    .await?;
    // plain-1 polls all along (a 20 s long poll, woken by every new job) and never takes it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run_now = runs(&server, "pooled").await?.remove(0);
    assert_eq!(run_now.jobs[0].state, JobState::Pending, "{run_now:#?}");
    let shown = cli(
        &cli_bin,
        &server,
        &home,
        &["run", "show", &run.id.to_string()],
    )?;
    assert!(
        shown.contains("waiting: no agent matches labels pool=gpu"),
        "{shown}"
    );

    // A job of another repository runs on the plain agent.
    push(&server, &w_other, "other", PLAIN_WF, 0).await?;
    let other = wait_run(&server, "other", 1, "success", |r| r.state.is_terminal()).await?;
    assert_eq!(other.state, RunState::Succeeded, "{other:#?}");
    assert_eq!(other.jobs[0].agent.as_deref(), Some("plain-1"));

    // The pool's agent registers (its token names the pool): the gpu job runs there.
    let gpu_reg = cli(
        &cli_bin,
        &server,
        &home,
        &["agent", "registration-token", "--pool", "gpu"],
    )?;
    let _gpu = spawn_agent(
        &agent_bin,
        &server,
        &tmp.path().join("gpu"),
        "gpu-1",
        &["region=eu"],
        gpu_reg.trim(),
    )
    .await?;
    let run = wait_run(&server, "pooled", 1, "success", |r| r.state.is_terminal()).await?;
    assert_eq!(run.state, RunState::Succeeded, "{run:#?}");
    assert_eq!(run.jobs[0].agent.as_deref(), Some("gpu-1"));
    assert_eq!(run.jobs[0].waiting, None);

    // With both agents polling, jobs of the other repository still never land on gpu-1,
    // and the pooled repository's gpu jobs never on plain-1.
    for n in 1..=2 {
        push(&server, &w_other, "other", PLAIN_WF, n).await?;
        let r = wait_run(&server, "other", n + 1, "success", |r| {
            r.state.is_terminal()
        })
        .await?;
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
        assert_eq!(r.jobs[0].agent.as_deref(), Some("plain-1"), "{r:#?}");
        push(&server, &w_gpu, "pooled", GPU_WF, n).await?;
        let r = wait_run(&server, "pooled", n + 1, "success", |r| {
            r.state.is_terminal()
        })
        .await?;
        assert_eq!(r.state, RunState::Succeeded, "{r:#?}");
        assert_eq!(r.jobs[0].agent.as_deref(), Some("gpu-1"), "{r:#?}");
    }

    // `cove agent list`: pool, labels, capacity (reported by the agents) and backend.
    let start = Instant::now();
    let listed: Vec<AgentInfo> = loop {
        let json = cli(
            &cli_bin,
            &server,
            &home,
            &["agent", "list", "--output", "json"],
        )?;
        let listed: Vec<AgentInfo> = serde_json::from_str(&json)?;
        if listed.iter().filter(|a| a.capacity.cpus > 0).count() == 2 {
            break listed;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{listed:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let gpu = listed.iter().find(|a| a.name == "gpu-1").unwrap();
    assert_eq!(gpu.pool.as_deref(), Some("gpu"));
    assert_eq!(gpu.labels.get("region").map(String::as_str), Some("eu"));
    assert_eq!(gpu.labels.get("pool").map(String::as_str), Some("gpu"));
    assert_eq!(gpu.backend, "docker");
    assert_eq!(gpu.capacity.max_jobs, 1);
    assert!(gpu.capacity.memory_bytes > 0);
    let plain = listed.iter().find(|a| a.name == "plain-1").unwrap();
    assert_eq!(
        (plain.pool.as_deref(), plain.backend.as_str()),
        (None, "docker")
    );
    let text = cli(&cli_bin, &server, &home, &["agent", "list"])?;
    let line = text
        .lines()
        .find(|l| l.contains("gpu-1"))
        .unwrap_or_default();
    assert!(
        line.contains(" gpu ") && line.contains("region=eu") && line.contains("jobs 0/1"),
        "{text}"
    );
    server.stop().await;
    Ok(())
}
