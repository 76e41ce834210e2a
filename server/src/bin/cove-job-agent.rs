//! `cove-job-agent`: runs workflow jobs on the local Docker engine for a Cove server it
//! reaches over HTTP. Environment: `COVE_URL`, `COVE_AGENT_TOKEN` (an administrator's token
//! for now), `COVE_AGENT_SLOTS` (default 1), `DOCKER_HOST`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cove_agent::job_http::HttpTransport;
use cove_agent::job_worker::{self, WorkerConfig};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(token)) = (var("COVE_URL"), var("COVE_AGENT_TOKEN")) else {
        eprintln!("error: set COVE_URL and COVE_AGENT_TOKEN");
        return ExitCode::FAILURE;
    };
    let slots = var("COVE_AGENT_SLOTS")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runtime = match cove_agent::Runtime::connect().await {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: no Docker engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = WorkerConfig {
        slots,
        lease_wait: Duration::from_secs(20),
        ..Default::default()
    };
    tracing::info!(url = %url, slots, "job agent started");
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    job_worker::run(
        runtime.docker().clone(),
        Arc::new(HttpTransport::new(&url, &token)),
        config,
        stop,
    )
    .await;
    ExitCode::SUCCESS
}
