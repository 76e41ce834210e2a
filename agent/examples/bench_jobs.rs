//! Benchmark: job start latency (container create → first command's process
//! started, as `JobResult::timings` measures it) and whole-job time for a
//! one-command job, next to a raw `docker run --rm IMAGE true` baseline; and
//! the streaming masker's throughput with 10 secrets.
//!
//! cargo run --release -p cove-agent --example bench_jobs -- [RUNS] [MASK_MB]
//! (RUNS = 0 measures only the masker)

use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_agent::jobs::{run_job, CancellationToken, JobSpec, Script};
use cove_agent::mask::{LogSink, MaskSet};
use cove_agent::Runtime;

fn pct(v: &[Duration], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

/// Deterministic log-like text: build output lines with a secret (in some
/// encoding) about once per 200 lines.
fn corpus(bytes: usize, secrets: &[String]) -> Vec<u8> {
    let words = [
        "Compiling",
        "serde",
        "v1.0.200",
        "warning:",
        "unused",
        "variable",
        "test",
        "ok",
        "passed",
        "GET",
        "/api/v1/items?page=2",
        "200",
        "npm",
        "http",
        "fetch",
        "https://registry/x.tgz",
        "ms",
        "Downloaded",
        "base64:",
        "SGVsbG8gd29ybGQ=",
        "done",
    ];
    let mut out = Vec::with_capacity(bytes + 256);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut line = 0usize;
    while out.len() < bytes {
        line += 1;
        for _ in 0..12 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
        if line.is_multiple_of(200) {
            out.extend_from_slice(secrets[line / 200 % secrets.len()].as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn mask_throughput(mb: usize) -> (f64, f64, usize) {
    let secrets: Vec<String> = (0..10)
        .map(|i| format!("secret-{i}-{:x}-token-value", 0xC0FFEE_u64 * (i + 1)))
        .collect();
    let text = corpus(mb * 1024 * 1024, &secrets);
    let mut best = [f64::MAX, f64::MAX];
    let mut patterns = 0;
    for (k, set) in [MaskSet::new(&secrets), MaskSet::new(Vec::<String>::new())]
        .into_iter()
        .enumerate()
    {
        let set = Arc::new(set);
        if k == 0 {
            patterns = set.pattern_count();
        }
        for _ in 0..3 {
            let mut m = set.stream();
            let mut out = Vec::with_capacity(text.len());
            let t = Instant::now();
            for chunk in text.chunks(8 * 1024) {
                m.write(chunk, &mut out);
            }
            m.finish(&mut out);
            best[k] = best[k].min(t.elapsed().as_secs_f64());
            assert!(k == 1 || !out.windows(10).any(|w| w == b"secret-0-c"));
        }
    }
    let mbs = |s: f64| text.len() as f64 / (1024.0 * 1024.0) / s;
    (mbs(best[0]), mbs(best[1]), patterns)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mask_mb: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    if runs > 0 {
        let docker = Runtime::connect().await?.docker().clone();
        jobs(&docker, runs).await?;
    }

    let (with, without, patterns) = mask_throughput(mask_mb);
    println!();
    println!("| masker | input | patterns | throughput (best of 3, 8 KiB writes) |");
    println!("|---|---|---|---|");
    println!("| 10 secrets | {mask_mb} MiB | {patterns} | {with:.0} MB/s |");
    println!("| no secrets (pass-through) | {mask_mb} MiB | 0 | {without:.0} MB/s |");
    Ok(())
}

async fn jobs(docker: &bollard::Docker, runs: usize) -> Result<(), Box<dyn std::error::Error>> {
    println!("| image | runs | start latency p50 ms | p95 ms | whole job p50 ms | p95 ms | `docker run --rm IMAGE true` p50 ms | p95 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for image in ["cove/busybox:latest", "cove/universal:latest"] {
        let (mut start, mut whole, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let mut job = JobSpec::new(
                format!("bench-{}-{i}", std::process::id()),
                Script::Steps(vec!["true".into()]),
            );
            job.image = image.into();
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
            let mut sink = LogSink::new(tx);
            let t = Instant::now();
            let result = run_job(docker, &job, &mut sink, &CancellationToken::new()).await?;
            whole.push(t.elapsed());
            drop(sink);
            drain.await?;
            start.push(result.timings.start_latency.unwrap_or_default());
            let t = Instant::now();
            let status = tokio::process::Command::new("docker")
                .args(["run", "--rm", image, "true"])
                .status()
                .await?;
            if status.success() {
                raw.push(t.elapsed());
            }
        }
        let (r50, r95) = if raw.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (pct(&raw, 0.5), pct(&raw, 0.95))
        };
        println!(
            "| `{image}` | {runs} | {:.0} | {:.0} | {:.0} | {:.0} | {r50:.0} | {r95:.0} |",
            pct(&start, 0.5),
            pct(&start, 0.95),
            pct(&whole, 0.5),
            pct(&whole, 0.95),
        );
    }

    Ok(())
}
