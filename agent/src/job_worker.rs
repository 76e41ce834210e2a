//! The job loop of an agent: lease a ready job from the server, run it with
//! [`crate::jobs::run_job`], stream its masked log lines back in batches, heartbeat while it
//! runs (a `cancel` in the answer cancels the job; a stale-attempt answer stops it), upload
//! its output artifacts and report how it ended.
//!
//! The server is reached through [`JobTransport`]: the embedded agent implements it in
//! process, a remote agent over HTTP (`cove_api` types either way).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use cove_api::{
    FinishRequest, HeartbeatResponse, JobLease, JobLogLine, JobOutcome, JobScript, LogBatch,
    LogStreamKind,
};
use tokio_util::sync::CancellationToken;

use crate::jobs::{
    run_job, ArtifactSpec, InputArtifact, JobSpec, JobStatus, OnFailure, Phase, PhaseName, Script,
    Source,
};
use crate::mask::{LogLine, LogSink, LogStream, MaskSet};

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server no longer accepts reports of this attempt (HTTP 409).
    #[error("the attempt is stale: {0}")]
    Stale(String),
    #[error("{0}")]
    Other(String),
}

/// How the agent talks to the server.
pub trait JobTransport: Send + Sync + 'static {
    /// Waits up to `wait` for a job.
    fn lease(
        &self,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<JobLease>, TransportError>> + Send;
    fn heartbeat(
        &self,
        job: i64,
        attempt: u32,
    ) -> impl Future<Output = Result<HeartbeatResponse, TransportError>> + Send;
    fn logs(
        &self,
        job: i64,
        batch: LogBatch,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes the tar of the run's source tree to the file `dest` (streamed).
    fn source(
        &self,
        job: i64,
        attempt: u32,
        dest: &std::path::Path,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes the tar of an earlier action's output artifact to the file `dest` (streamed).
    fn input(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        dest: &std::path::Path,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    fn upload_artifact(
        &self,
        job: i64,
        attempt: u32,
        name: &str,
        tar: &std::path::Path,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    fn finish(
        &self,
        job: i64,
        report: FinishRequest,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Ready sandboxes a standalone agent keeps by default (`--job-pool`): none — opt-in, since an
/// agent killed without a graceful stop leaves its pool's networks behind until its next start.
pub const DEFAULT_POOL: usize = 0;

/// Tuning of the job loop.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at the same time.
    pub slots: usize,
    /// Long-poll wait of one lease request.
    pub lease_wait: Duration,
    /// A log batch is sent as soon as a line is cut, with the lines cut while the previous
    /// batch was in flight (at most `log_batch_lines`). Non-zero: wait this long after a
    /// batch's first line for more lines (zero by default: no timer on the log path).
    pub log_flush: Duration,
    pub log_batch_lines: usize,
    /// How jobs are isolated (private networks, gateway, egress allow-list).
    pub sandbox: crate::private_net::SandboxSettings,
    /// This agent's name on its job containers (`cove.owner`). At start, [`run`] kills and
    /// removes the containers with this owner (no job of theirs can still be driven) and
    /// reports each of their attempts as failed by the agent, so the server retries the job
    /// (`RetryOnAgentLost`) at once instead of after the lease. `None`: no owner label.
    pub owner: Option<String>,
    /// Jobs running now (reported as capacity; shared by clones of the configuration).
    pub busy: Arc<std::sync::atomic::AtomicUsize>,
    /// Ready job sandboxes kept ahead of leases ([`crate::job_pool`]; 0: none). Needs an
    /// `owner`.
    pub pool: usize,
    /// Image of the pooled sandboxes: the image of actions that name none.
    pub pool_image: String,
    /// Run jobs as Kubernetes Pods instead of Docker containers (no private network, no
    /// pool: each Pod is fenced by its NetworkPolicy); `None`: Docker.
    pub kubernetes: Option<KubernetesJobs>,
}

/// Jobs as Pods (`backend/kubernetes/jobs.rs`) through [`crate::backend::Backend::run_job`].
#[derive(Clone)]
pub struct KubernetesJobs {
    pub backend: crate::backend::kubernetes::KubernetesBackend,
    /// Where each job's gateway listens: an address of the agent's that job Pods reach (the
    /// node's for an agent beside the cluster, the agent Pod's in it).
    pub gateway_address: std::net::IpAddr,
}

impl std::fmt::Debug for KubernetesJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesJobs")
            .field("namespace", &self.backend.config().namespace)
            .field("gateway_address", &self.gateway_address)
            .finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            slots: 2,
            lease_wait: Duration::from_secs(30),
            log_flush: Duration::ZERO,
            log_batch_lines: 64,
            sandbox: crate::private_net::SandboxSettings::default(),
            owner: None,
            busy: Arc::default(),
            pool: DEFAULT_POOL,
            pool_image: crate::jobs::DEFAULT_IMAGE.to_string(),
            kubernetes: None,
        }
    }
}

/// Runs `config.slots` job loops until `shutdown` is cancelled. Cancelling `shutdown` drops
/// running jobs and, when the worker has an owner label, removes their containers before it
/// returns; the server sees their leases expire.
pub async fn run<T: JobTransport>(
    docker: Docker,
    transport: Arc<T>,
    config: WorkerConfig,
    shutdown: CancellationToken,
) {
    if let Some(k) = &config.kubernetes {
        // the Pods of a process that died can no longer be driven: remove them
        if let Some(owner) = &config.owner {
            remove_job_pods(k, owner).await;
        }
    } else {
        if let Some(owner) = &config.owner {
            recover_orphans(&docker, transport.as_ref(), owner).await;
        }
        if let Some(owner) = &config.owner {
            crate::job_pool::clean_after_crash(&docker, &config.sandbox, owner).await;
        }
        if config.sandbox.private_network {
            crate::job_sandbox::clean_after_crash(&docker, &config.sandbox).await;
        }
    }
    let pool = match &config.owner {
        Some(owner) if config.pool > 0 && config.kubernetes.is_none() => {
            Some(crate::job_pool::JobPool::start(
                docker.clone(),
                crate::job_pool::PoolConfig {
                    size: config.pool,
                    image: config.pool_image.clone(),
                    owner: owner.clone(),
                    sandbox: config.sandbox.clone(),
                },
            ))
        }
        _ => None,
    };
    let mut loops = Vec::new();
    for slot in 0..config.slots.max(1) {
        let (docker, transport, config, shutdown, pool) = (
            docker.clone(),
            transport.clone(),
            config.clone(),
            shutdown.clone(),
            pool.clone(),
        );
        loops.push(tokio::spawn(async move {
            tracing::debug!(slot, "job loop started");
            loop {
                let leased = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    leased = transport.lease(config.lease_wait) => leased,
                };
                match leased {
                    Ok(Some(lease)) => {
                        use std::sync::atomic::Ordering::Relaxed;
                        config.busy.fetch_add(1, Relaxed);
                        let stopped = tokio::select! {
                            _ = shutdown.cancelled() => true,
                            () = execute(&docker, transport.as_ref(), &config, pool.as_deref(), lease) => false,
                        };
                        config.busy.fetch_sub(1, Relaxed);
                        if stopped {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "leasing a job failed; retrying in 1 s");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
    if let Some(pool) = &pool {
        pool.shutdown().await;
    }
    // A graceful stop: the dropped jobs' containers are removed now, so nothing they started
    // keeps running after the agent (their attempts end with the lease, or at the next start).
    if let (Some(owner), Some(k)) = (config.owner.as_deref(), &config.kubernetes) {
        if shutdown.is_cancelled() {
            remove_job_pods(k, owner).await;
        }
    } else if let Some(owner) = config.owner.as_deref().filter(|_| shutdown.is_cancelled()) {
        match crate::jobs::remove_owned_job_containers(&docker, owner).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(
                    containers = removed.len(),
                    "job containers removed at shutdown"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "removing job containers at shutdown failed"),
        }
    }
}

/// Removes the job Pods (and their Secrets and policies) labelled with `owner`.
async fn remove_job_pods(k: &KubernetesJobs, owner: &str) {
    match k.backend.remove_owned_job_pods(owner).await {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(pods = removed.len(), "job Pods of this agent removed")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "removing this agent's job Pods failed"),
    }
}

/// Kills and removes the job containers `owner` left behind when it stopped (a crash, a
/// SIGKILL of the server that embeds it) and reports each of their attempts as an agent
/// failure, so the server retries the job when its policy allows (else fails it) — the job
/// is never left running, and never runs twice at once: its container is gone before the
/// report. Returns the orphans found.
pub async fn recover_orphans<T: JobTransport>(
    docker: &Docker,
    transport: &T,
    owner: &str,
) -> Vec<crate::jobs::OrphanedJob> {
    let orphans = match crate::jobs::remove_owned_job_containers(docker, owner).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "looking for orphaned job containers failed");
            return Vec::new();
        }
    };
    for orphan in &orphans {
        let Ok(job) = orphan.job.parse::<i64>() else {
            continue;
        };
        let report = FinishRequest {
            attempt: orphan.attempt,
            outcome: JobOutcome::Error,
            variables: Default::default(),
            error: Some(format!(
                "the agent stopped while attempt {} ran; its container was removed when the agent started again",
                orphan.attempt
            )),
            retry: false,
        };
        let lease = LeaseEnd::new(Duration::from_secs(30));
        let send = || transport.finish(job, report.clone());
        match with_retries(&lease, job, "reporting an orphaned attempt", send).await {
            Ok(()) => {
                tracing::info!(job, attempt = orphan.attempt, "orphaned attempt reported")
            }
            // The attempt had already ended or moved on (its lease expired).
            Err(TransportError::Stale(_)) => {}
            Err(e) => {
                tracing::warn!(job, error = %e, "reporting an orphaned attempt failed")
            }
        }
    }
    orphans
}

fn phase_name(name: &str) -> Option<PhaseName> {
    Some(match name {
        "install" => PhaseName::Install,
        "pre_build" => PhaseName::PreBuild,
        "build" => PhaseName::Build,
        "post_build" => PhaseName::PostBuild,
        _ => return None,
    })
}

/// The runner's spec for a lease (without source and inputs).
pub fn job_spec(lease: &JobLease) -> Result<JobSpec, String> {
    let script = match &lease.script {
        JobScript::Steps(steps) => Script::Steps(steps.clone()),
        JobScript::Phases(phases) => Script::Phases(
            phases
                .iter()
                .map(|p| {
                    let name =
                        phase_name(&p.name).ok_or_else(|| format!("unknown phase `{}`", p.name))?;
                    let on_failure = match p.on_failure.as_deref() {
                        None => None,
                        Some("ABORT") => Some(OnFailure::Abort),
                        Some("CONTINUE") => Some(OnFailure::Continue),
                        Some("RETRY") => Some(OnFailure::Retry {
                            count: p.retry_count,
                            regex: p.retry_regex.clone(),
                        }),
                        Some(other) => return Err(format!("unknown on-failure `{other}`")),
                    };
                    Ok(Phase {
                        name,
                        commands: p.commands.clone(),
                        finally: p.finally.clone(),
                        on_failure,
                    })
                })
                .collect::<Result<_, String>>()?,
        ),
    };
    let mut spec = JobSpec::new(lease.job_id.to_string(), script);
    spec.attempt = lease.attempt;
    spec.image = lease.image.clone();
    spec.shell = lease.shell.clone();
    spec.env = lease.env.clone();
    spec.secrets = lease.secrets.clone();
    spec.outputs = lease
        .outputs
        .iter()
        .map(|o| ArtifactSpec {
            name: o.name.clone(),
            files: o.files.clone(),
            base_directory: o.base_directory.clone(),
            discard_paths: o.discard_paths,
            exclude_paths: o.exclude_paths.clone(),
        })
        .collect();
    spec.exported_variables = lease.exported_variables.clone();
    spec.timeout = Duration::from_secs(lease.timeout_secs.max(1));
    Ok(spec)
}

fn wire_line(line: LogLine, base: u64) -> JobLogLine {
    JobLogLine {
        seq: base + line.seq,
        stream: match line.stream {
            LogStream::Stdout => LogStreamKind::Stdout,
            LogStream::Stderr => LogStreamKind::Stderr,
            LogStream::System => LogStreamKind::System,
        },
        ts: line.ts,
        text: line.text,
    }
}

/// Lines of attempt `n` are numbered from this.
pub fn seq_base(attempt: u32) -> u64 {
    u64::from(attempt.saturating_sub(1)) * 1_000_000_000
}

/// Until when the current lease holds, as far as this agent knows: renewed by every
/// successful heartbeat.
#[derive(Debug, Clone)]
struct LeaseEnd {
    until: Arc<std::sync::Mutex<tokio::time::Instant>>,
    lease: Duration,
}

impl LeaseEnd {
    fn new(lease: Duration) -> LeaseEnd {
        LeaseEnd {
            until: Arc::new(std::sync::Mutex::new(tokio::time::Instant::now() + lease)),
            lease,
        }
    }

    fn renewed(&self) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        *until = tokio::time::Instant::now() + self.lease;
    }

    fn until(&self) -> tokio::time::Instant {
        *self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// First wait before a report is sent again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Sends a report until the server takes it: failures other than a stale attempt are retried
/// with exponential back-off until the lease ends (the server accepts the same report twice,
/// so a report whose answer was lost is simply sent again).
async fn with_retries<R, F, Fut>(
    lease: &LeaseEnd,
    job: i64,
    what: &str,
    mut send: F,
) -> Result<R, TransportError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, TransportError>>,
{
    let mut wait = RETRY_FIRST;
    loop {
        match send().await {
            Ok(r) => return Ok(r),
            Err(TransportError::Stale(m)) => return Err(TransportError::Stale(m)),
            Err(e) => {
                if tokio::time::Instant::now() + wait >= lease.until() {
                    tracing::warn!(job, error = %e, "{what} failed; the lease ends, giving up");
                    return Err(e);
                }
                tracing::warn!(job, error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Runs one leased job to its report. Never panics on server errors: a stale attempt stops
/// the job quietly (another attempt owns it now). Heartbeats go on until the job's report
/// was taken, and every report is retried until the lease ends.
pub async fn execute<T: JobTransport>(
    docker: &Docker,
    transport: &T,
    config: &WorkerConfig,
    pool: Option<&crate::job_pool::JobPool>,
    lease: JobLease,
) {
    let (job, attempt) = (lease.job_id, lease.attempt);
    tracing::info!(job, attempt, action = %lease.action, "job leased");
    crate::metrics::global().job_started();
    let cancel = CancellationToken::new();
    let stale = CancellationToken::new();
    let reported = CancellationToken::new();
    let lease_end = LeaseEnd::new(Duration::from_millis(lease.lease_ms.max(10)));

    // Heartbeats until the report was taken: cancel on request or when the attempt became
    // stale; a failed heartbeat is tried again within a second.
    let heartbeat = {
        let (cancel, stale, reported, lease_end) = (
            cancel.clone(),
            stale.clone(),
            reported.clone(),
            lease_end.clone(),
        );
        let every = Duration::from_millis(lease.heartbeat_ms.max(10));
        async move {
            let mut next = every;
            loop {
                tokio::select! {
                    () = reported.cancelled() => return,
                    () = tokio::time::sleep(next) => {}
                }
                match transport.heartbeat(job, attempt).await {
                    Ok(r) => {
                        lease_end.renewed();
                        next = every;
                        if r.cancel {
                            cancel.cancel();
                        }
                    }
                    Err(TransportError::Stale(_)) => {
                        stale.cancel();
                        cancel.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job, error = %e, "heartbeat failed");
                        next = every.min(Duration::from_secs(1));
                    }
                }
            }
        }
    };
    let work = async {
        report_job(
            docker, transport, config, pool, &lease, &cancel, &stale, &lease_end,
        )
        .await;
        reported.cancel();
    };
    tokio::join!(heartbeat, work);
}

/// [`execute`] without its heartbeats.
#[allow(clippy::too_many_arguments)]
async fn report_job<T: JobTransport>(
    docker: &Docker,
    transport: &T,
    config: &WorkerConfig,
    pool: Option<&crate::job_pool::JobPool>,
    lease: &JobLease,
    cancel: &CancellationToken,
    stale: &CancellationToken,
    lease_end: &LeaseEnd,
) {
    let (job, attempt) = (lease.job_id, lease.attempt);
    // The job's duration for the metrics: from the lease (a few instructions ago).
    let started = std::time::Instant::now();

    // Values the report must not carry: the lease's secrets and, once the
    // sandbox exists, the job's package credentials.
    let mut mask: Vec<String> = lease.secrets.iter().map(|(_, v)| v.clone()).collect();
    let mut sandbox = None;
    // Deploy credentials refreshed while the job runs: a second masking pass on every line,
    // variable and error that leaves the agent.
    let mut late: Option<crate::mask::LateSecrets> = None;
    // A claimed pooled container: removed here too if the job ends before the runner took it.
    let mut pooled_container: Option<String> = None;
    let work = async {
        let mut spec = job_spec(lease)?;
        spec.owner = config.owner.clone();
        if lease.deploy.is_some() && config.kubernetes.is_some() {
            return Err(
                "this deploy action needs the Docker private-network sandbox; \
                 this agent runs jobs on Kubernetes"
                    .to_string(),
            );
        }
        if lease.deploy.is_some() && !config.sandbox.private_network {
            // The role is served only on the job's own network (docs/deployments.md).
            return Err(
                "this deploy action needs the agent's private-network sandbox \
                 (sandbox.private_network), which is off on this agent"
                    .to_string(),
            );
        }
        // A pooled sandbox when one matches (used by this job only), else a new one.
        let pooled = pool.and_then(|p| p.claim(lease));
        if let Some(claimed) = pooled {
            spec.pooled = Some(claimed.container.clone());
            pooled_container = Some(claimed.container.clone());
            if let Some(s) = claimed.sandbox {
                let s = crate::job_sandbox::SandboxedJob::pooled(s, &mut spec);
                tracing::info!(job, attempt, network = %s.network_name(), container = %claimed.container, "pooled job sandbox claimed");
                sandbox = Some(s);
                mask.extend(spec.mask.iter().cloned());
                mask.extend(spec.secrets.iter().map(|(_, v)| v.clone()));
            }
        } else if let Some(k) = &config.kubernetes {
            // no network: the gateway on the agent's address, the Pod fenced to it
            let at = crate::private_net::GatewayAt::Address(k.gateway_address);
            let s = crate::job_sandbox::SandboxedJob::start_at(
                docker,
                &config.sandbox,
                lease,
                &mut spec,
                at,
            )
            .await?;
            tracing::info!(job, attempt, gateway = ?spec.gateway, "job gateway ready");
            late = s.late_secrets();
            sandbox = Some(s);
            mask.extend(spec.mask.iter().cloned());
            mask.extend(spec.secrets.iter().map(|(_, v)| v.clone()));
        } else if config.sandbox.private_network {
            let s =
                crate::job_sandbox::SandboxedJob::start(docker, &config.sandbox, lease, &mut spec)
                    .await?;
            tracing::info!(job, attempt, network = %s.network_name(), "job sandbox ready");
            late = s.late_secrets();
            sandbox = Some(s);
            mask.extend(spec.mask.iter().cloned());
            mask.extend(spec.secrets.iter().map(|(_, v)| v.clone()));
        }
        // Source and input tars go through files, never whole in memory.
        let files = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
        if lease.source {
            let path = files.path().join("source.tar");
            let send = || transport.source(job, attempt, &path);
            with_retries(lease_end, job, "fetching the source", send)
                .await
                .map_err(|e| format!("fetching the source failed: {e}"))?;
            spec.source = Source::TarFile(path);
        }
        for (n, name) in lease.inputs.iter().enumerate() {
            let path = files.path().join(format!("input-{n}.tar"));
            let send = || transport.input(job, attempt, name, &path);
            with_retries(lease_end, job, "fetching an input artifact", send)
                .await
                .map_err(|e| format!("fetching input artifact `{name}` failed: {e}"))?;
            spec.inputs.push(InputArtifact {
                name: name.clone(),
                tar: crate::jobs::Tar::File(path),
            });
        }
        for (n, c) in lease.caches.iter().enumerate() {
            let mut restore = None;
            if c.restore {
                let path = files.path().join(format!("cache-{n}.tar"));
                let send = || transport.input(job, attempt, &c.name, &path);
                match with_retries(lease_end, job, "fetching a cache", send).await {
                    Ok(()) => restore = Some(crate::jobs::Tar::File(path)),
                    // a cache that cannot be fetched is a miss, never a failure
                    Err(e) => {
                        tracing::warn!(job, cache = %c.name, error = %e, "cache not restored")
                    }
                }
            }
            spec.caches.push(crate::jobs::CacheSpec {
                name: c.name.clone(),
                paths: c.paths.clone(),
                restore,
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(1024);
        let shipper = async {
            let base = seq_base(attempt);
            let masked = |mut line: LogLine| {
                if let Some(late) = &late {
                    line.text = late.mask_str(&line.text);
                }
                line
            };
            let mut batch: Vec<JobLogLine> = Vec::new();
            let mut open = true;
            while open {
                // No timer on the path: a line is sent as soon as it is cut. Lines cut while
                // a batch is in flight wait in the channel and go together in the next one
                // (up to `log_batch_lines`); `log_flush` > 0 waits that long for company.
                match rx.recv().await {
                    Some(line) => batch.push(wire_line(masked(line), base)),
                    None => break,
                }
                let deadline = tokio::time::sleep(config.log_flush);
                tokio::pin!(deadline);
                while batch.len() < config.log_batch_lines.max(1) {
                    let next = if config.log_flush.is_zero() {
                        match rx.try_recv() {
                            Ok(line) => Some(line),
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                        }
                    } else {
                        tokio::select! {
                            line = rx.recv() => line,
                            () = &mut deadline => break,
                        }
                    };
                    match next {
                        Some(line) => batch.push(wire_line(masked(line), base)),
                        None => {
                            open = false;
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    // The same batch (same attempt, same seqs) until it is taken: the server
                    // stores a line once.
                    let sent = LogBatch {
                        attempt,
                        lines: std::mem::take(&mut batch),
                    };
                    let send = || transport.logs(job, sent.clone());
                    match with_retries(lease_end, job, "sending log lines", send).await {
                        Ok(()) => {}
                        Err(TransportError::Stale(_)) => {
                            stale.cancel();
                            cancel.cancel();
                        }
                        Err(_) => {}
                    }
                }
            }
        };
        let runner = async {
            let mut sink = LogSink::new(tx);
            let result = match &config.kubernetes {
                Some(k) => {
                    crate::backend::Backend::run_job(&k.backend, &spec, &mut sink, cancel).await
                }
                None => run_job(docker, &spec, &mut sink, cancel)
                    .await
                    .map_err(crate::backend::BackendError::from),
            };
            drop(sink);
            result
        };
        let (result, ()) = tokio::join!(runner, shipper);
        Ok::<_, String>(result)
    };

    let outcome = tokio::select! {
        r = work => r,
        () = stale.cancelled() => Err("the attempt became stale".to_string()),
    };
    if let Some(id) = pooled_container.take() {
        if let Err(e) = crate::jobs::remove_container(docker, &id).await {
            tracing::warn!(job, container = %id, error = %e, "removing a pooled job container failed");
        }
    }
    if let Some(s) = sandbox.take() {
        s.teardown().await;
    }
    if let Some(late) = &late {
        mask.extend(late.values());
    }
    if stale.is_cancelled() {
        crate::metrics::global().job_ended(None, started.elapsed());
        tracing::warn!(job, attempt, "attempt is stale; dropping its result");
        return;
    }
    let report = match outcome {
        Err(error) => FinishRequest {
            attempt,
            outcome: JobOutcome::Error,
            variables: Default::default(),
            error: Some(error),
            retry: false,
        },
        Ok(Err(e)) => FinishRequest {
            attempt,
            outcome: JobOutcome::Error,
            variables: Default::default(),
            error: Some(e.to_string()),
            retry: false,
        },
        Ok(Ok(result)) => {
            let mut upload_error = None;
            for artifact in result.artifacts {
                // An artifact holding a secret (a copied `.npmrc`, an env
                // dump) is refused, not uploaded.
                let needles: Vec<String> = mask.iter().filter(|m| m.len() >= 4).cloned().collect();
                let tar = artifact.tar.clone();
                let scanned = tokio::task::spawn_blocking(move || tar.contains_any(&needles))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                match scanned {
                    Ok(false) => {}
                    Ok(true) => {
                        upload_error = Some(format!(
                            "artifact `{}` contains a secret value and was not uploaded",
                            artifact.name
                        ));
                        continue;
                    }
                    Err(e) => {
                        upload_error = Some(format!(
                            "artifact `{}` could not be checked for secrets ({e}) and was not uploaded",
                            artifact.name
                        ));
                        continue;
                    }
                }
                let tar = artifact.tar.path();
                let send = || transport.upload_artifact(job, attempt, &artifact.name, tar);
                if let Err(e) = with_retries(lease_end, job, "uploading an artifact", send).await {
                    if matches!(e, TransportError::Stale(_)) {
                        crate::metrics::global().job_ended(None, started.elapsed());
                        return;
                    }
                    upload_error = Some(format!(
                        "uploading artifact `{}` failed: {e}",
                        artifact.name
                    ));
                }
            }
            let outcome = match result.status {
                JobStatus::Succeeded if upload_error.is_none() => JobOutcome::Succeeded,
                JobStatus::Succeeded | JobStatus::Failed => JobOutcome::Failed,
                JobStatus::Cancelled => JobOutcome::Cancelled,
                JobStatus::TimedOut => JobOutcome::TimedOut,
            };
            FinishRequest {
                attempt,
                outcome,
                variables: result.variables,
                error: upload_error.or(result.error),
                retry: result.retry,
            }
        }
    };
    crate::metrics::global().job_ended(Some(report.outcome), started.elapsed());
    // Exported variables and errors leave the agent masked like log lines.
    let masks = std::sync::Arc::new(MaskSet::new(mask.iter().map(|v| v.as_bytes())));
    let mut report = report;
    if !masks.is_empty() {
        for value in report.variables.values_mut() {
            *value = masks.mask_str(value);
        }
        report.error = report.error.map(|e| masks.mask_str(&e));
    }
    let send = || transport.finish(job, report.clone());
    match with_retries(lease_end, job, "reporting the job", send).await {
        Ok(()) => tracing::info!(job, attempt, "job reported"),
        Err(e) => tracing::warn!(job, attempt, error = %e, "reporting the job failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_api::JobPhase;

    #[test]
    fn phases_map_to_the_runner() {
        let lease = JobLease {
            job_id: 7,
            run_id: 1,
            attempt: 2,
            action: "a".into(),
            image: "img".into(),
            shell: "/bin/sh".into(),
            script: JobScript::Phases(vec![JobPhase {
                name: "build".into(),
                commands: vec!["true".into()],
                finally: vec![],
                on_failure: Some("RETRY".into()),
                retry_count: Some(2),
                retry_regex: None,
            }]),
            env: vec![],
            secrets: vec![],
            source: false,
            inputs: vec![],
            outputs: vec![],
            exported_variables: vec![],
            timeout_secs: 5,
            heartbeat_ms: 100,
            lease_ms: 1000,
            packages: None,
            deploy: None,
            caches: vec![],
        };
        let spec = job_spec(&lease).expect("valid");
        assert_eq!(spec.attempt, 2);
        assert_eq!(spec.job_id, "7");
        let Script::Phases(p) = spec.script else {
            panic!("phases")
        };
        assert_eq!(
            p[0].on_failure,
            Some(OnFailure::Retry {
                count: Some(2),
                regex: None
            })
        );
        assert_eq!(seq_base(1), 0);
        assert_eq!(seq_base(3), 2_000_000_000);
    }
}
