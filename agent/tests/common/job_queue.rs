//! A [`JobTransport`] for tests of the job loop (`job_worker::run`): hands out the leases
//! pushed to it and records the log lines and reports that come back
//! (`#[path = "common/job_queue.rs"] mod job_queue;`).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use cove_agent::job_worker::{JobTransport, TransportError};
use cove_api::{FinishRequest, HeartbeatResponse, JobLease, JobLogLine, JobScript, LogBatch};
use tokio_util::sync::CancellationToken;

/// Leases from a queue; records log lines and reports.
#[derive(Default)]
pub struct Queue {
    pub leases: Mutex<Vec<JobLease>>,
    pub lines: Mutex<Vec<(i64, JobLogLine)>>,
    pub finished: Mutex<Vec<(i64, FinishRequest)>>,
    /// Cancelled at the first lease request (an agent that only starts up).
    pub on_lease: Option<CancellationToken>,
}

impl JobTransport for Queue {
    async fn lease(&self, wait: Duration) -> Result<Option<JobLease>, TransportError> {
        if let Some(t) = &self.on_lease {
            t.cancel();
        }
        let until = Instant::now() + wait.min(Duration::from_millis(200));
        loop {
            if let Some(l) = self.leases.lock().unwrap().pop() {
                return Ok(Some(l));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    async fn heartbeat(
        &self,
        _job: i64,
        _attempt: u32,
    ) -> Result<HeartbeatResponse, TransportError> {
        Ok(HeartbeatResponse {
            cancel: false,
            lease_expires_ms: 0,
        })
    }
    async fn logs(&self, job: i64, batch: LogBatch) -> Result<(), TransportError> {
        let mut lines = self.lines.lock().unwrap();
        lines.extend(batch.lines.into_iter().map(|l| (job, l)));
        Ok(())
    }
    async fn source(
        &self,
        _job: i64,
        _attempt: u32,
        _dest: &std::path::Path,
    ) -> Result<(), TransportError> {
        Err(TransportError::Other("no source here".into()))
    }
    async fn input(
        &self,
        _job: i64,
        _attempt: u32,
        _name: &str,
        _dest: &std::path::Path,
    ) -> Result<(), TransportError> {
        Err(TransportError::Other("no inputs here".into()))
    }
    async fn upload_artifact(
        &self,
        _job: i64,
        _attempt: u32,
        _name: &str,
        _tar: &std::path::Path,
    ) -> Result<(), TransportError> {
        Ok(())
    }
    async fn finish(&self, job: i64, report: FinishRequest) -> Result<(), TransportError> {
        self.finished.lock().unwrap().push((job, report));
        Ok(())
    }
}

impl Queue {
    pub fn push(&self, lease: JobLease) {
        self.leases.lock().unwrap().insert(0, lease);
    }

    /// Waits for job `job`'s report and returns it with the job's output lines.
    pub async fn wait(&self, job: i64) -> (FinishRequest, Vec<String>) {
        let t = Instant::now();
        loop {
            let done = self
                .finished
                .lock()
                .unwrap()
                .iter()
                .find(|(j, _)| *j == job)
                .map(|(_, r)| r.clone());
            if let Some(report) = done {
                let lines = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(j, _)| *j == job)
                    .map(|(_, l)| l.text.clone())
                    .collect();
                return (report, lines);
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "job {job} never ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn lease(job: i64, image: &str, steps: &[&str]) -> JobLease {
    JobLease {
        job_id: job,
        run_id: 1,
        attempt: 1,
        action: "A".into(),
        image: image.into(),
        shell: "/bin/sh".into(),
        script: JobScript::Steps(steps.iter().map(|s| s.to_string()).collect()),
        env: vec![],
        secrets: vec![("CATALYST_SECRETS_t".into(), "s3cr3t-value-xyz".into())],
        source: false,
        inputs: vec![],
        outputs: vec![],
        exported_variables: vec![],
        timeout_secs: 120,
        heartbeat_ms: 1000,
        lease_ms: 30_000,
        packages: None,
        deploy: None,
        caches: vec![],
    }
}
