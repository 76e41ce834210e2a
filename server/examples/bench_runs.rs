//! Workflow engine benchmarks (run by `scripts/bench-runs.sh`, release build):
//!
//! 1. `dispatch`: 10,000 (`DISPATCH_RUNS`) queued one-action runs, leased and finished by 50
//!    (`DISPATCH_AGENTS`) in-process registered agents (no Docker) — the scheduler's
//!    throughput, on SQLite and, when `COVE_TEST_POSTGRES_URL` is set, on PostgreSQL.
//! 2. `push`: real `git push` → the job's first step running (its first log line, as cut by
//!    the agent), over N pushes, embedded agent on the real Docker engine.
//! 3. `logs`: a step prints a line every 100 ms; `cove run logs -f` (the real CLI, path in
//!    `COVE_BIN`) and the browser's SSE stream (`…/logs/stream`, read at the same time)
//!    receive each line; latency = arrival − the agent's cut time.
//!
//! Usage: `bench_runs [dispatch|push|logs|all] [PUSHES]`. With `BENCH_ROWS=FILE` each
//! measurement is also appended to FILE as one tab-separated row for `scripts/bench.sh`:
//! `key, p50, p95, samples, baseline, baseline p50, baseline p95` (`-` where none).

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
    start_with(embedded, None, 0).await
}

/// `database_url`: PostgreSQL instead of SQLite; `pool`: ready job sandboxes of the embedded
/// agent (`[jobs] pool`).
async fn start_with(embedded: bool, database_url: Option<String>, pool: usize) -> Result<Bench> {
    let data = tempfile::tempdir()?;
    let mut config = Config::new(data.path());
    config.database_url = database_url;
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

/// Appends one row for `scripts/bench.sh` when `BENCH_ROWS` names a file.
fn bench_row(key: &str, samples: &[f64]) -> Result<()> {
    write_row(key, samples, None)
}

/// [`bench_row`] with a baseline measured in the same invocation.
fn bench_row_vs(key: &str, samples: &[f64], baseline: &str, base: &[f64]) -> Result<()> {
    write_row(key, samples, Some((baseline, base)))
}

fn write_row(key: &str, samples: &[f64], baseline: Option<(&str, &[f64])>) -> Result<()> {
    let Ok(path) = std::env::var("BENCH_ROWS") else {
        return Ok(());
    };
    use std::io::Write;
    let base = match baseline {
        Some((name, b)) => format!(
            "{name}\t{:.0}\t{:.0}",
            pct(b.to_vec(), 0.5),
            pct(b.to_vec(), 0.95)
        ),
        None => "-\t-\t-".to_string(),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(
        f,
        "{key}\t{:.0}\t{:.0}\t{}\t{base}",
        pct(samples.to_vec(), 0.5),
        pct(samples.to_vec(), 0.95),
        samples.len()
    )?;
    Ok(())
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

/// Registers `n` agents through the API; their ids.
async fn register_agents(b: &Bench, n: usize) -> Result<Vec<i64>> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for a in 0..n {
        let reg: cove_api::RegistrationToken = http
            .post(format!("{}/api/v1/agents/registration-tokens", b.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let agent: cove_api::RegisteredAgent = http
            .post(format!("{}/api/v1/agents/register", b.url))
            .bearer_auth(&reg.token)
            .json(&serde_json::json!({"name": format!("bench-{a}"), "labels": {}}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(agent.agent_id);
    }
    Ok(ids)
}

/// `n` queued one-action runs leased and finished by `agents` in-process registered agents
/// (no Docker), on SQLite or (`database_url`) PostgreSQL.
/// `serial`: each lease and each finish waits for the previous one (a bench-side lock), so no
/// placement round serves more than one poll and no finish batch holds more than one report —
/// the unbatched baseline, measured in the same invocation.
async fn dispatch(
    n: usize,
    agents: usize,
    database_url: Option<String>,
    serial: bool,
) -> Result<()> {
    let backend = if database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let b = start_with(false, database_url, 0).await?;
    let ids = register_agents(&b, agents).await?;
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
    let finished = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    let locks = std::sync::Arc::new((tokio::sync::Mutex::new(()), tokio::sync::Mutex::new(())));
    for id in ids {
        let state = b.state.clone();
        let locks = locks.clone();
        let finished = finished.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0usize;
            loop {
                let one = if serial {
                    Some(locks.0.lock().await)
                } else {
                    None
                };
                let lease = cove_server::runs::lease_for(&state, Duration::ZERO, Some(id))
                    .await
                    .unwrap();
                drop(one);
                let Some(lease) = lease else { break };
                let report = FinishRequest {
                    attempt: lease.attempt,
                    outcome: JobOutcome::Succeeded,
                    variables: Default::default(),
                    error: None,
                    retry: false,
                };
                let one = if serial {
                    Some(locks.1.lock().await)
                } else {
                    None
                };
                cove_server::runs::finish(&state, lease.job_id, &report)
                    .await
                    .unwrap();
                finished.lock().unwrap().push(Instant::now());
                drop(one);
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await?;
    }
    let took = t.elapsed();
    let runs = b
        .state
        .store()
        .list_runs(repo.id, None, n as i64 + 1)
        .await?;
    let succeeded = runs
        .iter()
        .filter(|r| r.state == cove_api::RunState::Succeeded)
        .count();
    if total != n || succeeded != n {
        bail!("{total} jobs finished, {succeeded} runs succeeded; expected {n}");
    }
    println!(
        "dispatch ({backend}, {}): {n} runs created in {:.2} s ({:.0}/s); {total} jobs leased+finished by {agents} agents in {:.2} s = {:.0} jobs/s",
        if serial { "one at a time" } else { "batched" },
        created.as_secs_f64(),
        n as f64 / created.as_secs_f64(),
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    // one row per backend for scripts/bench.sh: the whole run's rate (the batched path only;
    // one at a time is O(runs²) at this size and is the docs' comparison, not the table's)
    if !serial {
        let rate = total as f64 / took.as_secs_f64();
        bench_row(&format!("dispatch-{backend}"), &[rate])?;
    }
    Ok(())
}

/// A fresh database on the PostgreSQL cluster at `base` (`COVE_TEST_POSTGRES_URL`).
async fn postgres_db(base: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(base).await?;
    let name = format!("cove_bench_{}", cove_server::store::next_id());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    let (prefix, _) = base.rsplit_once('/').context("a database path")?;
    Ok(format!("{prefix}/{name}"))
}

async fn dispatch_all() -> Result<()> {
    let n: usize = std::env::var("DISPATCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let agents: usize = std::env::var("DISPATCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // `DISPATCH_MODE`: both (default), batched or serial.
    let mode = std::env::var("DISPATCH_MODE").unwrap_or_else(|_| "both".into());
    let modes: &[bool] = match mode.as_str() {
        "batched" => &[false],
        "serial" => &[true],
        _ => &[true, false],
    };
    let pg = std::env::var("COVE_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty());
    for serial in modes {
        dispatch(n, agents, None, *serial).await?;
        match &pg {
            Some(base) => dispatch(n, agents, Some(postgres_db(base).await?), *serial).await?,
            None => println!("dispatch (postgresql): not run (COVE_TEST_POSTGRES_URL is not set)"),
        }
    }
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
    let off = push_latency_with(pushes, 0).await?;
    let pooled = push_latency_with(pushes, 2).await?;
    bench_row_vs("push", &pooled, "job pool off (the path before)", &off)
}

async fn push_latency_with(pushes: usize, pool: usize) -> Result<Vec<f64>> {
    let b = start_with(true, None, pool).await?;
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
        pct(lat.clone(), 1.0)
    );
    Ok(lat)
}

/// Arrival times of the lines of the job's SSE log stream (the browser's run page).
async fn sse_arrivals(url: String) -> Result<Vec<(String, i64)>> {
    use futures_util::StreamExt;
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await?;
    if resp.status() != 200 {
        bail!("log stream: {}", resp.status());
    }
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk?)?);
        let at = now_ms();
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: end") {
                return Ok(got);
            }
            if !block.lines().any(|l| l == "event: lines") {
                continue;
            }
            for data in block.lines().filter_map(|l| l.strip_prefix("data: ")) {
                for l in serde_json::from_str::<Vec<JobLogLine>>(data)? {
                    got.push((l.text, at));
                }
            }
        }
    }
    Ok(got)
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
    // in process: the server's own follower (stored and published), no HTTP to the reader
    let job_id = run.jobs[0].id;
    let state = b.state.clone();
    let inproc = tokio::spawn(async move {
        use cove_server::runs::log_follow::{follow, Followed};
        use futures_util::StreamExt;
        let mut got = Vec::new();
        let mut lines = Box::pin(follow(state, job_id, None, 1000));
        while let Some(Followed::Lines(batch)) = lines.next().await {
            let at = now_ms();
            got.extend(batch.into_iter().map(|l| (l.text, at)));
        }
        got
    });
    let sse = tokio::spawn(sse_arrivals(format!(
        "{}/api/v1/runs/{run_id}/jobs/Emit/logs/stream",
        b.url
    )));
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
    let sse = sse.await??;
    let inproc = inproc.await?;
    for (what, key, arrivals) in [
        (
            "the server's follower (stored, pushed)",
            "logs-stored",
            &inproc,
        ),
        ("`cove run logs -f`", "logs-cli", &arrivals),
        ("the browser (SSE)", "logs-sse", &sse),
    ] {
        let mut lat = Vec::new();
        for (text, at) in arrivals {
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
            "log line → visible in {what} over {} lines: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
            lat.len(),
            pct(lat.clone(), 0.5),
            pct(lat.clone(), 0.95),
            pct(lat.clone(), 1.0)
        );
        bench_row(key, &lat)?;
    }
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
        dispatch_all().await?;
    }
    if matches!(what, "push" | "all") {
        push_latency(pushes).await?;
    }
    if matches!(what, "logs" | "all") {
        log_latency().await?;
    }
    Ok(())
}
