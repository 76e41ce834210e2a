//! Running one workflow action as a job: a fresh container, the source at
//! the run's commit, the action's commands with the design notes' semantics
//! (§6 rules 1–3, §1.7, §2.2), masked logs streamed as they are written,
//! exported variables and output artifacts collected, cancellation and
//! timeout by SIGTERM → grace → SIGKILL to the running command's process
//! group, and the container removed whatever happens.
//!
//! The agent does not read workflow syntax: the server turns a
//! `workflows::Action` into a [`JobSpec`] (its `Run` steps become
//! [`Script::Steps`], a buildspec's phases [`Script::Phases`], with
//! `${…}` references already interpolated for the shell, so secrets appear
//! in commands only as `${CATALYST_SECRETS_name}`). See `docs/jobs.md`.

mod artifacts;
pub mod cache;
pub mod engine;
mod orphans;
mod runner;
pub(crate) mod script;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;
use bollard::Docker;
use serde::{Deserialize, Serialize};
pub use tokio_util::sync::CancellationToken;

use crate::mask::{LogSink, MaskSet};
use engine::{DockerJob, JobEngine};

pub use artifacts::{
    collect, glob_match, ArtifactError, ArtifactFile, ArtifactSpec, OutputArtifact,
};
pub use cache::CacheSpec;
pub use orphans::*;
use runner::Runner;
pub use script::{ARTIFACTS_DIR, ROOT, SRC_DIR};

/// Label on every job container: the job id.
pub const LABEL_JOB: &str = "cove.job";
/// Label on every job container: the attempt number.
pub const LABEL_ATTEMPT: &str = "cove.attempt";
/// Label on job containers of an agent that names itself (`JobSpec::owner`): which agent
/// runs them, so that agent finds its own containers again after a crash.
pub const LABEL_OWNER: &str = "cove.owner";
/// The image a job runs in when its action names none.
pub const DEFAULT_IMAGE: &str = "cove/universal:latest";

/// How long to wait for a command's output to end after SIGKILL before
/// giving up on it (the container is removed anyway).
const AFTER_KILL: Duration = Duration::from_secs(5);
/// Bytes of each command's output kept for `on-failure: RETRY-…-<regex>`.
const TAIL_BYTES: usize = 64 * 1024;

/// Everything the agent needs to run one job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Server-issued job id (`[A-Za-z0-9_.-]`, at most 64).
    pub job_id: String,
    /// 1-based attempt number (fencing is the server's; the agent labels
    /// its container with it and uses it for `RETRY` counts).
    pub attempt: u32,
    pub image: String,
    pub script: Script,
    /// Shell every command runs in (`/bin/sh`, buildspec `env.shell`).
    pub shell: String,
    pub source: Source,
    /// Plain variables (`Inputs.Variables`, buildspec `env.variables`,
    /// values taken literally).
    pub env: Vec<(String, String)>,
    /// Environment variable name → secret value (e.g.
    /// `CATALYST_SECRETS_token`). Injected into the first command's
    /// environment, never into the container's configuration, and masked
    /// in every log line.
    pub secrets: Vec<(String, String)>,
    /// Artifacts of earlier actions, extracted into `/cove/artifacts/<name>`
    /// and exposed as `CATALYST_SOURCE_DIR_<name>`.
    pub inputs: Vec<InputArtifact>,
    pub outputs: Vec<ArtifactSpec>,
    /// File caches: restored before the steps, saved after a success ([`cache`]).
    pub caches: Vec<CacheSpec>,
    /// Variables whose final values are exported (`Outputs.Variables`,
    /// buildspec `exported-variables`).
    pub exported_variables: Vec<String>,
    /// The whole job (action `Timeout`).
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL on cancel or timeout.
    pub grace: Duration,
    /// How long a phase's `finally` may run after the phase was stopped by
    /// cancel or timeout (then it is stopped the same way).
    pub cleanup_budget: Duration,
    pub limits: Limits,
    /// Docker network to attach to (the private build network); `None`
    /// uses the engine's default bridge.
    pub network: Option<String>,
    /// Kubernetes: the one address the job's Pod may reach (its gateway; the only egress
    /// rule of the job's NetworkPolicy); `None`: no egress at all. Docker ignores it (the
    /// job's private network and its rules decide there).
    pub gateway: Option<std::net::SocketAddr>,
    /// Files written into the container before it starts (`.npmrc`,
    /// `pip.conf`, …), with their modes.
    pub files: Vec<JobFile>,
    /// Values masked in every log line that are in no variable (session
    /// credentials the agent holds for the job).
    pub mask: Vec<String>,
    /// The agent running the job (label [`LABEL_OWNER`]); `None`: no owner label.
    pub owner: Option<String>,
    /// A started container claimed from the agent's job pool ([`crate::job_pool`]) to run
    /// in instead of creating one: it was created from [`container_body`] with this spec's
    /// image, limits and network, and is used by this job only (renamed to the job's
    /// container name, removed at the end like a created one).
    pub pooled: Option<String>,
}

/// A file the runner writes into the build container.
#[derive(Clone, PartialEq, Eq)]
pub struct JobFile {
    /// Absolute path in the container.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl std::fmt::Debug for JobFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Contents may hold a token.
        f.debug_struct("JobFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("bytes", &self.contents.len())
            .finish()
    }
}

impl JobSpec {
    pub fn new(job_id: impl Into<String>, script: Script) -> Self {
        JobSpec {
            job_id: job_id.into(),
            attempt: 1,
            image: DEFAULT_IMAGE.into(),
            script,
            shell: "/bin/sh".into(),
            source: Source::None,
            env: Vec::new(),
            secrets: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            caches: Vec::new(),
            exported_variables: Vec::new(),
            timeout: Duration::from_secs(60 * 60),
            grace: Duration::from_secs(10),
            cleanup_budget: Duration::from_secs(60),
            limits: Limits::default(),
            network: None,
            gateway: None,
            files: Vec::new(),
            mask: Vec::new(),
            owner: None,
            pooled: None,
        }
    }
}

/// What to execute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Script {
    /// CodeCatalyst `Run` steps in order; the first failing one fails the
    /// job and no later step runs.
    Steps(Vec<String>),
    /// Buildspec phases, in the order given (install, pre_build, build,
    /// post_build; absent phases are simply not listed).
    Phases(Vec<Phase>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: PhaseName,
    pub commands: Vec<String>,
    #[serde(default)]
    pub finally: Vec<String>,
    #[serde(default)]
    pub on_failure: Option<OnFailure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    pub fn key(self) -> &'static str {
        match self {
            PhaseName::Install => "install",
            PhaseName::PreBuild => "pre_build",
            PhaseName::Build => "build",
            PhaseName::PostBuild => "post_build",
        }
    }
}

/// A phase's `on-failure` (the `workflows::OnFailure` shapes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnFailure {
    /// No later phase runs.
    Abort,
    /// The next phase runs; the job still fails.
    Continue,
    /// Like `Abort` for this attempt; [`JobResult::retry`] asks the server
    /// for another attempt while `attempt <= count` (default 3) and the
    /// failed phase's output matches `regex` (when given).
    Retry {
        count: Option<u32>,
        regex: Option<String>,
    },
}

/// Where the source comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// No checkout; the working directory is the first input artifact, or
    /// an empty `/cove/src`.
    None,
    /// A tar of the tree at the run's commit (handed over by the server).
    Tar(Vec<u8>),
    /// The same in a file (streamed into the container, never whole in memory).
    TarFile(std::path::PathBuf),
    /// `git archive` of `commit`: `repo` is a local repository (bare or
    /// not) or a URL the agent can fetch from without credentials.
    Git { repo: String, commit: String },
}

#[derive(Clone, Debug)]
pub struct InputArtifact {
    pub name: String,
    pub tar: Tar,
}

/// A tar handed to the runner: in memory, or a file that is streamed into the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tar {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

impl From<Vec<u8>> for Tar {
    fn from(bytes: Vec<u8>) -> Tar {
        Tar::Bytes(bytes)
    }
}

/// A file's bytes as a stream of chunks of at most 64 KiB.
pub fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    futures_util::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    /// CPU in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: Some(4 * 1024 * 1024 * 1024),
            nano_cpus: None,
            pids: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Succeeded,
    Failed,
    /// Not started: an earlier phase failed (or the job was stopped).
    Skipped,
    /// Stopped by cancel or timeout while running.
    Stopped,
}

/// One command that ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub phase: Option<PhaseName>,
    /// True for a phase's `finally` command.
    pub finally: bool,
    pub command: String,
    /// `None` when the command was interrupted.
    pub exit_code: Option<i64>,
    pub millis: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub name: PhaseName,
    pub status: PhaseStatus,
}

#[derive(Clone, Debug)]
pub struct JobResult {
    pub status: JobStatus,
    pub commands: Vec<CommandRecord>,
    /// Buildspec jobs only: every phase of the script, in order.
    pub phases: Vec<PhaseRecord>,
    /// The exported variables that were set at the end (secret values in
    /// them masked, as in the log).
    pub variables: BTreeMap<String, String>,
    pub artifacts: Vec<OutputArtifact>,
    /// Why the job failed beyond a command's exit status (e.g. an artifact
    /// pattern that leaves the tree).
    pub error: Option<String>,
    /// `on-failure: RETRY` asks for another attempt.
    pub retry: bool,
    pub timings: JobTimings,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobTimings {
    /// Container create → the first command's process started.
    pub start_latency: Option<Duration>,
    pub total: Duration,
}

/// Failures of the agent or the engine (not of the job's commands).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job id `{0}` is not valid (letters, digits, `_`, `.`, `-`; at most 64)")]
    BadId(String),
    #[error("job `{job}`: {detail}")]
    BadSpec { job: String, detail: String },
    #[error("job `{job}`: getting the source failed: {detail}")]
    Source { job: String, detail: String },
    #[error("job `{job}`: docker {action} failed: {source}")]
    Docker {
        job: String,
        action: String,
        #[source]
        source: DockerError,
    },
    /// The Kubernetes API server or the exec in a job's Pod failed.
    #[error("job `{job}`: kubernetes {action} failed: {message}")]
    Kubernetes {
        job: String,
        action: String,
        message: String,
    },
    #[error("job `{job}`: building the container's files failed: {source}")]
    Io {
        job: String,
        #[source]
        source: std::io::Error,
    },
}

fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_env_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Why a command's output reading stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    Cancelled,
    TimedOut,
}

/// Removes the job container when dropped without [`ContainerGuard::remove`]
/// (a panic, or the job future dropped mid-way).
struct ContainerGuard {
    docker: Docker,
    id: Option<String>,
}

impl ContainerGuard {
    async fn remove(mut self) -> Result<(), DockerError> {
        match self.id.take() {
            Some(id) => remove_container(&self.docker, &id).await,
            None => Ok(()),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let docker = self.docker.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(error) = remove_container(&docker, &id).await {
                        tracing::warn!(container = %id, %error, "removing job container failed");
                    }
                });
            }
        }
    }
}

/// Run one job to its end. Command failures, cancellation and timeout are
/// reported in the [`JobResult`]; `Err` means the agent or the engine
/// failed (the job should be retried elsewhere or failed as an
/// infrastructure error). Log lines are masked and sent to `sink` as they
/// are written. The container is removed before this returns.
pub async fn run_job(
    docker: &Docker,
    job: &JobSpec,
    sink: &mut LogSink,
    cancel: &CancellationToken,
) -> Result<JobResult, JobError> {
    let began = Instant::now();
    let deadline = tokio::time::Instant::now() + job.timeout;
    validate(job)?;
    let source = fetch_source(job).await?;
    let err = |action: &str| {
        let job = job.job_id.clone();
        let action = action.to_string();
        move |source| JobError::Docker {
            job,
            action,
            source,
        }
    };
    let created = Instant::now();
    let name = format!("cove-job-{}-{}", job.job_id, job.attempt);
    let (container, guard) = match &job.pooled {
        Some(id) => {
            // Removed at the end whatever happens, like a created one.
            let guard = ContainerGuard {
                docker: docker.clone(),
                id: Some(id.clone()),
            };
            // The name says which attempt runs in it (`docker ps`, and the agent's orphan
            // recovery reads it: a pooled container's labels name its pool slot).
            docker
                .rename_container(
                    id,
                    bollard::query_parameters::RenameContainerOptions { name },
                )
                .await
                .map_err(err("rename pooled container"))?;
            tracing::info!(job = %job.job_id, attempt = job.attempt, container = %id, image = %job.image, "job runs in a pooled container");
            (id.clone(), guard)
        }
        None => {
            let container = docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name),
                        ..Default::default()
                    }),
                    container_body(job),
                )
                .await
                .map_err(err("create container"))?
                .id;
            tracing::info!(job = %job.job_id, attempt = job.attempt, container = %container, image = %job.image, "job container created");
            let guard = ContainerGuard {
                docker: docker.clone(),
                id: Some(container.clone()),
            };
            (container, guard)
        }
    };
    let engine = DockerJob {
        docker,
        job_id: &job.job_id,
        container: &container,
        pooled: job.pooled.is_some(),
    };
    let (outcome, first_started) = run_in(&engine, job, sink, cancel, source, deadline).await;
    let removed = guard.remove().await;
    let mut result = outcome?;
    removed.map_err(err("remove container"))?;
    result.timings.start_latency = first_started.map(|t| t - created);
    result.timings.total = began.elapsed();
    tracing::info!(job = %job.job_id, attempt = job.attempt, status = ?result.status, millis = result.timings.total.as_millis() as u64, "job finished");
    Ok(result)
}

/// Run `job`'s commands in the container of `engine`, which exists (and, unless the engine
/// starts it, runs): uploads, steps or phases, exported variables, caches, artifacts. Also
/// returns when the first command started.
pub(crate) async fn run_in(
    engine: &dyn JobEngine,
    job: &JobSpec,
    sink: &mut LogSink,
    cancel: &CancellationToken,
    source: Option<Tar>,
    deadline: tokio::time::Instant,
) -> (Result<JobResult, JobError>, Option<Instant>) {
    let secrets = Arc::new(MaskSet::new(
        job.secrets
            .iter()
            .map(|(_, v)| v.as_bytes())
            .chain(job.mask.iter().map(|v| v.as_bytes())),
    ));
    let mut runner = Runner {
        engine,
        job,
        secrets,
        cancel,
        deadline,
        interrupted: None,
        cleanup_until: None,
        first_started: None,
        commands: 0,
        last_started: Instant::now(),
        tail: String::new(),
    };
    let outcome = runner.run(sink, source).await;
    (outcome, runner.first_started)
}

/// The checks every engine makes before anything is created: ids, variable and artifact
/// names, file paths.
pub(crate) fn validate(job: &JobSpec) -> Result<(), JobError> {
    if !valid_job_id(&job.job_id) {
        return Err(JobError::BadId(job.job_id.clone()));
    }
    let bad = |detail: String| JobError::BadSpec {
        job: job.job_id.clone(),
        detail,
    };
    for (k, _) in job.env.iter().chain(&job.secrets) {
        if !valid_env_name(k) {
            return Err(bad(format!(
                "`{k}` is not a valid environment variable name"
            )));
        }
    }
    for spec in &job.outputs {
        spec.validate().map_err(|e| bad(e.to_string()))?;
    }
    for a in &job.inputs {
        if !valid_env_name(&a.name) {
            return Err(bad(format!(
                "input artifact name `{}` is not valid",
                a.name
            )));
        }
    }
    for f in &job.files {
        if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
            return Err(bad(format!(
                "file path `{}` must be absolute, without `..`",
                f.path
            )));
        }
    }
    Ok(())
}

pub(crate) async fn fetch_source(job: &JobSpec) -> Result<Option<Tar>, JobError> {
    let fail = |detail: String| JobError::Source {
        job: job.job_id.clone(),
        detail,
    };
    match &job.source {
        Source::None => Ok(None),
        Source::Tar(t) => Ok(Some(Tar::Bytes(t.clone()))),
        Source::TarFile(path) => Ok(Some(Tar::File(path.clone()))),
        Source::Git { repo, commit } => {
            if commit.starts_with('-') || commit.is_empty() {
                return Err(fail(format!("`{commit}` is not a commit")));
            }
            let git = |dir: &str, args: &[&str]| {
                let mut c = tokio::process::Command::new("git");
                c.arg("--git-dir").arg(dir).args(args);
                c.env("GIT_TERMINAL_PROMPT", "0");
                c
            };
            let run = |mut c: tokio::process::Command, what: &'static str| async move {
                let out = c
                    .output()
                    .await
                    .map_err(|e| fail(format!("cannot run git {what}: {e}")))?;
                if out.status.success() {
                    Ok(out.stdout)
                } else {
                    Err(fail(format!(
                        "git {what} failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
            };
            let local = std::path::Path::new(repo);
            if local.is_dir() {
                let dir = if local.join(".git").is_dir() {
                    local.join(".git")
                } else {
                    local.to_path_buf()
                };
                let dir = dir.to_string_lossy().into_owned();
                let spec = format!("{commit}^{{commit}}");
                return run(git(&dir, &["archive", "--format=tar", &spec]), "archive")
                    .await
                    .map(|t| Some(Tar::Bytes(t)));
            }
            let tmp = tempfile::tempdir().map_err(|e| fail(format!("temp dir: {e}")))?;
            let dir = tmp.path().to_string_lossy().into_owned();
            run(git(&dir, &["init", "-q", "--bare"]), "init").await?;
            run(
                git(&dir, &["fetch", "-q", "--depth", "1", repo, commit]),
                "fetch",
            )
            .await?;
            run(
                git(&dir, &["archive", "--format=tar", "FETCH_HEAD"]),
                "archive",
            )
            .await
            .map(|t| Some(Tar::Bytes(t)))
        }
    }
}

pub(crate) fn container_body(job: &JobSpec) -> ContainerCreateBody {
    let mut labels = HashMap::from([
        (LABEL_JOB.to_string(), job.job_id.clone()),
        (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
        (crate::pod::LABEL_ROLE.to_string(), "job".to_string()),
    ]);
    if let Some(owner) = &job.owner {
        labels.insert(LABEL_OWNER.to_string(), owner.clone());
    }
    ContainerCreateBody {
        image: Some(job.image.clone()),
        entrypoint: Some(devfiles::KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
        cmd: Some(Vec::new()),
        working_dir: Some(SRC_DIR.into()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            init: Some(true),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".into()]),
            pids_limit: Some(job.limits.pids),
            memory: job.limits.memory_bytes,
            nano_cpus: job.limits.nano_cpus,
            network_mode: job.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
