//! Benchmark: create → running (postStart done) and warm restart of a devfile
//! environment through the agent runtime, p50/p95 over N runs.
//!
//! cargo run --release -p cove-agent --example bench_env -- [DEVFILE] [RUNS]

/// Reading devfiles from disk, as the `cove` CLI does.
#[allow(dead_code)]
#[path = "../../cli/src/devfile_fs.rs"]
mod devfile_fs;

use std::time::{Duration, Instant};

use cove_agent::environment;
use cove_agent::{PodSpec, Runtime};
use devfiles::{LoadOptions, PlanOptions};

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "devfiles/examples/app-with-dynamodb.yaml".into());
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let loaded = devfile_fs::load_file(
        std::path::Path::new(&path),
        &LoadOptions::default(),
        &devfile_fs::FsResolver,
    )
    .map_err(|r| r.to_string())?;
    let (mut plan, _) = loaded.plan(&PlanOptions {
        repo: Some("bench".into()),
    });
    plan.events.post_start.clear(); // the example's postStart runs a test suite that is not there
    let rt = Runtime::connect().await?;
    let (mut create, mut restart) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let env = format!("bench-{}-{i}", std::process::id());
        let spec = PodSpec::new(&env, plan.clone());
        let t = Instant::now();
        environment::create(&rt, &spec, None, None, &mut |_| {}).await?;
        create.push(t.elapsed());
        let t = Instant::now();
        environment::restart(&rt, &plan, &spec).await?;
        restart.push(t.elapsed());
        rt.delete(&env).await?;
    }
    println!("| operation | runs | p50 ms | p95 ms |");
    println!("|---|---|---|---|");
    println!(
        "| cove create → running | {runs} | {:.0} | {:.0} |",
        pct(create.clone(), 0.5),
        pct(create, 0.95)
    );
    println!(
        "| cove warm restart | {runs} | {:.0} | {:.0} |",
        pct(restart.clone(), 0.5),
        pct(restart, 0.95)
    );
    Ok(())
}
