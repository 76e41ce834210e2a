//! Workflow engine benchmarks (run by `scripts/bench-runs.sh`, release build):
//!
//! 1. `dispatch`: 1000 queued one-action runs, leased and finished by 4 in-process fake
//!    agents (no Docker) — the scheduler's throughput.
//! 2. `push`: real `git push` → the job's first step running (its first log line, as cut by
//!    the agent), over N pushes, embedded agent on the real Docker engine.
//! 3. `logs`: a step prints a line every 100 ms; `cove run logs -f` (the real CLI, path in
//!    `COVE_BIN`) receives each line; latency = arrival − the agent's cut time.
//!
//! Usage: `bench_runs [dispatch|push|logs|all] [PUSHES]`.

#![allow(clippy::unwrap_used)]

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_api::{FinishRequest, JobLogLine, JobOutcome, Run};
use cove_server::{AppState, Config, Server};

const TOKEN: &str = "cove_bench_runs_admin_token_0123456789abcdef012345";

struct Bench {
    url: String,
    state: AppState,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(embedded: bool) -> Result<Bench> {
    start_with(embedded, 0).await
}

/// `pool`: ready job sandboxes of the embedded agent (`[jobs] pool`).
async fn start_with(embedded: bool, pool: usize) -> Result<Bench> {
    let data = tempfile::tempdir()?;
    let mut config = Config::new(data.path());
    config.admin_token = Some(TOKEN.into());
    config.embedded_agent = embedded;
    config.runs.job_pool = pool;
    config.runs.default_image =
        std::env::var("COVE_BENCH_IMAGE").unwrap_or_else(|_| "cove/busybox:latest".into());
    config.runs.heartbeat = Duration::from_secs(2);
    let server = Server::new(config).await?;
    let state = server.state().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/api/v1/repos"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "b"}))
        .send()
        .await?;
    if resp.status() != 201 {
        bail!("create repo: {}", resp.status());
    }
    Ok(Bench {
        url,
        state,
        _data: data,
        _stop: tx,
    })
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn now_ms() -> i64 {
    cove_server::store::now_ms()
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "B")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "B")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn dispatch(n: usize) -> Result<()> {
    let b = start(false).await?;
    let repo = b.state.store().repo("admin", "b").await?.context("repo")?;
    let text = "Name: d\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: 'true'}]}\n";
    let (wf, _) = workflows::validate_file("d.yaml", text).map_err(|d| anyhow::anyhow!("{d:?}"))?;
    let t = Instant::now();
    for _ in 0..n {
        cove_server::runs::create_run(
            &b.state,
            &repo,
            &wf,
            "d.yaml",
            text,
            None,
            "main",
            &"0".repeat(40),
            "manual",
            None,
        )
        .await?;
    }
    let created = t.elapsed();
    let t = Instant::now();
    let mut agents = Vec::new();
    for _ in 0..4 {
        let state = b.state.clone();
        agents.push(tokio::spawn(async move {
            let mut done = 0usize;
            while let Some(lease) = cove_server::runs::lease(&state, Duration::ZERO)
                .await
                .unwrap()
            {
                let report = FinishRequest {
                    attempt: lease.attempt,
                    outcome: JobOutcome::Succeeded,
                    variables: Default::default(),
                    error: None,
                    retry: false,
                };
                cove_server::runs::finish(&state, lease.job_id, &report)
                    .await
                    .unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for a in agents {
        total += a.await?;
    }
    let took = t.elapsed();
    println!(
        "dispatch: {n} runs created in {:.2} s ({:.0}/s); {total} jobs leased+finished by 4 agents in {:.2} s = {:.0} jobs/s",
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64(),
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn runs_of(b: &Bench) -> Result<Vec<Run>> {
    Ok(reqwest::Client::new()
        .get(format!("{}/api/v1/repos/admin/b/runs", b.url))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?)
}

async fn wait_run(b: &Bench, count: usize) -> Result<Run> {
    let t = Instant::now();
    loop {
        let runs = runs_of(b).await?;
        if runs.len() >= count {
            return Ok(runs[0].clone());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("no run");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Push → first step, with the embedded agent's job pool disabled (today's cold path) and
/// with a pool of 2, one after the other in the same invocation.
async fn push_latency(pushes: usize) -> Result<()> {
    push_latency_with(pushes, 0).await?;
    push_latency_with(pushes, 2).await
}

async fn push_latency_with(pushes: usize, pool: usize) -> Result<()> {
    let b = start_with(true, pool).await?;
    // The embedded agent starts (and fills its pool) in the background.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let url = format!(
        "http://cove:{TOKEN}@{}/git/admin/b.git",
        b.url.trim_start_matches("http://")
    );
    git(dir, &["init", "-q", "-b", "main"])?;
    std::fs::create_dir_all(dir.join(".codecatalyst/workflows"))?;
    std::fs::write(
        dir.join(".codecatalyst/workflows/p.yaml"),
        "Name: p\nSchemaVersion: \"1.0\"\nRunMode: PARALLEL\nTriggers:\n  - Type: PUSH\nActions:\n  A:\n    Identifier: aws/build@v1\n    Configuration: {Steps: [{Run: echo first}]}\n",
    )?;
    let mut lat = Vec::new();
    for i in 0..pushes {
        std::fs::write(dir.join("n.txt"), i.to_string())?;
        git(dir, &["add", "."])?;
        git(dir, &["commit", "-q", "-m", "n"])?;
        let t0 = now_ms();
        git(dir, &["push", "-q", &url, "main"])?;
        let run = wait_run(&b, i + 1).await?;
        let job = run.jobs[0].id;
        let first = loop {
            let lines = b.state.store().job_logs(job, None, 10).await?;
            if let Some(l) = lines.iter().find(|l| l.text.contains("$ echo first")) {
                break l.ts as i64;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if std::env::var_os("RUST_LOG").is_some() {
            eprintln!("sample {i}: git push started at {t0} ms, first step at {first} ms (epoch)");
        }
        lat.push((first - t0) as f64);
        // Let the run end so pushes do not overlap.
        let t = Instant::now();
        while !runs_of(&b).await?[0].state.is_terminal() && t.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "push → first step running over {pushes} pushes, job pool {}: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        if pool == 0 { "off".to_string() } else { pool.to_string() },
        pct(lat.clone(), 0.5),
        pct(lat.clone(), 0.95),
        pct(lat, 1.0)
    );
    Ok(())
}

async fn log_latency() -> Result<()> {
    let cove = std::env::var("COVE_BIN").context("set COVE_BIN to the cove binary")?;
    let b = start(true).await?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let url = format!(
        "http://cove:{TOKEN}@{}/git/admin/b.git",
        b.url.trim_start_matches("http://")
    );
    git(dir, &["init", "-q", "-b", "main"])?;
    std::fs::create_dir_all(dir.join(".codecatalyst/workflows"))?;
    std::fs::write(
        dir.join(".codecatalyst/workflows/l.yaml"),
        "Name: l\nSchemaVersion: \"1.0\"\nTriggers:\n  - Type: PUSH\nActions:\n  Emit:\n    Identifier: aws/build@v1\n    Configuration:\n      Steps:\n        - Run: i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo \"line-$i\"; sleep 0.1; done\n",
    )?;
    git(dir, &["add", "."])?;
    git(dir, &["commit", "-q", "-m", "l"])?;
    git(dir, &["push", "-q", &url, "main"])?;
    let run = wait_run(&b, 1).await?;
    let run_id = run.id;
    let base = b.url.clone();
    let arrivals = tokio::task::spawn_blocking(move || -> Result<Vec<(String, i64)>> {
        let mut child = std::process::Command::new(cove)
            .args(["run", "logs", "-f", &run_id.to_string(), "Emit"])
            .env("COVE_URL", base)
            .env("COVE_TOKEN", TOKEN)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let mut got = Vec::new();
        for line in std::io::BufReader::new(out).lines() {
            got.push((line?, now_ms()));
        }
        child.wait()?;
        Ok(got)
    })
    .await??;
    let lines: Vec<JobLogLine> = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/runs/{run_id}/jobs/Emit/logs?format=json",
            b.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let mut lat = Vec::new();
    for (text, at) in &arrivals {
        if !text.starts_with("line-") {
            continue;
        }
        if let Some(l) = lines.iter().find(|l| &l.text == text) {
            lat.push((at - l.ts as i64) as f64);
        }
    }
    if lat.is_empty() {
        bail!("no lines matched: {arrivals:?}");
    }
    println!(
        "log line → visible in `cove run logs -f` over {} lines: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        lat.len(),
        pct(lat.clone(), 0.5),
        pct(lat.clone(), 0.95),
        pct(lat, 1.0)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        // For the split of one path: the server's and the agent's log lines with times.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let pushes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    if matches!(what, "dispatch" | "all") {
        dispatch(1000).await?;
    }
    if matches!(what, "push" | "all") {
        push_latency(pushes).await?;
    }
    if matches!(what, "logs" | "all") {
        log_latency().await?;
    }
    Ok(())
}
