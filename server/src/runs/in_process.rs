//! The embedded agent's job loop: the engine as a `JobTransport` without HTTP.

use std::sync::Arc;
use std::time::Duration;

use cove_api::{FinishRequest, HeartbeatResponse, JobLease, LogBatch};

use crate::AppState;

use super::*;

/// The embedded agent's transport: the same operations as the HTTP routes, in process.
#[derive(Clone)]
pub struct InProcess(pub AppState);

pub(super) fn transport_err(e: RunsError) -> cove_agent::job_worker::TransportError {
    use cove_agent::job_worker::TransportError;
    match e {
        RunsError::Stale { .. } => TransportError::Stale(e.to_string()),
        other => TransportError::Other(other.to_string()),
    }
}

impl cove_agent::job_worker::JobTransport for InProcess {
    async fn lease(
        &self,
        wait: Duration,
    ) -> Result<Option<JobLease>, cove_agent::job_worker::TransportError> {
        lease(&self.0, wait).await.map_err(transport_err)
    }

    async fn heartbeat(
        &self,
        job: i64,
        attempt: u32,
    ) -> Result<HeartbeatResponse, cove_agent::job_worker::TransportError> {
        heartbeat(&self.0, job, attempt)
            .await
            .map_err(transport_err)
    }

    async fn logs(
        &self,
        job: i64,
        batch: LogBatch,
    ) -> Result<(), cove_agent::job_worker::TransportError> {
        append_logs(&self.0, job, &batch)
            .await
            .map_err(transport_err)
    }

    async fn source(
        &self,
        job: i64,
        attempt: u32,
        dest: &std::path::Path,
    ) -> Result<(), cove_agent::job_worker::TransportError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let other = |e: String| cove_agent::job_worker::TransportError::Other(e);
        let mut stream = source_tar(&self.0, job, attempt)
            .await
            .map_err(transport_err)?;
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| other(format!("{}: {e}", dest.display())))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| other(format!("the source tar: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| other(format!("{}: {e}", dest.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| other(format!("{}: {e}", dest.display())))
    }

    async fn input(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        dest: &std::path::Path,
    ) -> Result<(), cove_agent::job_worker::TransportError> {
        let path = input_path(&self.0, job, attempt, name)
            .await
            .map_err(transport_err)?;
        tokio::fs::copy(&path, dest).await.map(|_| ()).map_err(|e| {
            cove_agent::job_worker::TransportError::Other(format!("reading artifact {name}: {e}"))
        })
    }

    async fn upload_artifact(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        tar: &std::path::Path,
    ) -> Result<(), cove_agent::job_worker::TransportError> {
        let file = tokio::fs::File::open(tar).await.map_err(|e| {
            cove_agent::job_worker::TransportError::Other(format!("reading artifact {name}: {e}"))
        })?;
        let body = cove_agent::jobs::file_chunks(file);
        store_artifact(&self.0, job, attempt, name, body)
            .await
            .map_err(transport_err)
    }

    async fn finish(
        &self,
        job: i64,
        report: FinishRequest,
    ) -> Result<(), cove_agent::job_worker::TransportError> {
        finish(&self.0, job, &report).await.map_err(transport_err)
    }
}

/// The owner label of the embedded agent's job containers: one per data directory, so a
/// restarted server finds its own orphans and no other server's or agent's.
pub fn embedded_owner(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("server-{}", &hex::encode(digest)[..16])
}

/// Starts the push consumer, the reaper and (with a Docker engine) the embedded job loop.
/// Returns the token that stops the embedded job loop.
///
/// At start-up, before the reaper's first pass: leases of registered agents are extended by
/// one lease (they could not heartbeat while the server was down), and the embedded agent
/// kills and removes the job containers it left behind and reports their attempts as lost
/// (any other lease of the embedded agent ends at once), so those jobs are retried at once
/// (`RetryOnAgentLost`) and never run twice at once.
pub fn spawn_background(
    state: AppState,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    spawn_push_consumer(state.clone());
    // Pull request events stored before a restart whose runs were not created yet.
    pulls::spawn_pending(state.clone());
    schedules::spawn_scheduler(state.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let slots = state.runs().config.embedded_slots;
    let stop_loop = stop.clone();
    let jobs = tokio::spawn(async move {
        let runs = state.runs();
        let lease_ms = i64::try_from(runs.config.lease.as_millis()).unwrap_or(i64::MAX);
        match state
            .store()
            .extend_agent_leases(runs.clock.now_ms().saturating_add(lease_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "extended the leases of agents' running jobs"),
            Err(e) => tracing::warn!(error = %e, "extending agents' leases failed"),
        }
        let docker = if slots > 0 {
            match tokio::time::timeout(Duration::from_secs(5), cove_agent::Runtime::connect()).await
            {
                Ok(Ok(rt)) => Some(rt.docker().clone()),
                _ => {
                    tracing::warn!("no Docker engine: the embedded agent runs no jobs");
                    None
                }
            }
        } else {
            None
        };
        let Some(docker) = docker else {
            spawn_reaper(state);
            return;
        };
        let owner = embedded_owner(state.data_dir());
        let transport = Arc::new(InProcess(state.clone()));
        cove_agent::job_worker::recover_orphans(&docker, transport.as_ref(), &owner).await;
        // Embedded leases whose container was already gone (a graceful stop removed it).
        match state.store().expire_embedded_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(jobs = n, "the embedded agent's earlier jobs were lost"),
            Err(e) => tracing::warn!(error = %e, "ending the embedded agent's old leases failed"),
        }
        spawn_reaper(state.clone());
        let config = cove_agent::job_worker::WorkerConfig {
            slots,
            sandbox: state.runs().config.sandbox.clone(),
            owner: Some(owner),
            pool: state.runs().config.job_pool,
            pool_image: state.runs().config.default_image.clone(),
            ..Default::default()
        };
        cove_agent::job_worker::run(docker, transport, config, stop_loop).await;
    });
    (stop, jobs)
}
