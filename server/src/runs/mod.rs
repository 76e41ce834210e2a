//! The workflow engine: push events → runs → jobs, the scheduler (run modes, dependencies),
//! leases with heartbeats and attempt fencing, job reports (logs, artifacts, results), the
//! lease reaper, secrets, and the embedded agent's job loop. Runs are made in `trigger.rs`
//! (pushes, by hand, rollbacks), leased in `lease.rs`, finished and reaped in `finish.rs`;
//! the embedded agent's transport is `in_process.rs`. HTTP handlers are in [`http`];
//! run/job state (settle, cancel, retry, supersede) in `state.rs`; approval gates in
//! [`approval`].
//!
//! Invariants:
//! - The store is the truth: every state change is a conditional row update (`WHERE state =
//!   … AND attempt = …`), so a stale attempt can never change a job, and a job is leased at
//!   most once per attempt (`lease_job`/`lease_jobs` only move `pending → running`).
//! - Leasing is serialized in placement rounds (`dispatch.rs`): polls that arrive together
//!   are placed in one round over one read of the active set, leased in one transaction;
//!   finish reports that arrive together are written in one transaction.
//! - Time comes from [`Clock`], which tests can move forward.

pub mod approval;
pub mod cache;
mod dispatch;
mod finish;
pub mod http;
mod in_process;
mod lease;
pub mod log_cap;
pub mod log_follow;
pub mod package_policy;
pub mod packages;
mod parsed;
pub mod pulls;
pub mod reports;
pub mod schedule;
pub mod schedules;
pub mod secrets;
pub mod source;
mod state;
mod trigger;

pub use dispatch::{place_round, Poll, MAX_LEASES_PER_POLL};
pub use finish::*;
pub use in_process::*;
pub use lease::*;
use parsed::ParsedWorkflows;
pub(crate) use parsed::{parse_run_workflow, run_and_workflow};
use state::supersede_run;
pub use state::{cancel_run, derive_run_state, retry_run, settle_run};
pub use trigger::*;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::git::GitError;
use crate::store::{self, JobRow, RunRow, StoreError};
use crate::AppState;
use secrets::{SecretError, SecretKey};

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub struct RunsConfig {
    /// A lease ends this long after the last heartbeat.
    pub lease: Duration,
    /// Agents heartbeat this often (told in every lease).
    pub heartbeat: Duration,
    /// How often expired leases are looked for.
    pub reap_interval: Duration,
    /// Image of actions that name no container.
    pub default_image: String,
    /// Further attempts of a job whose agent was lost (its lease ended, or the server with
    /// its embedded agent restarted mid-job) or failed (`RetryOnAgentLost`, default 1; never
    /// for actions with an `Environment`).
    pub retry_on_agent_lost: u32,
    /// Jobs the embedded agent runs at once (0 = no embedded job loop).
    pub embedded_slots: usize,
    /// How the embedded agent isolates jobs (`[jobs.sandbox]` of the config file).
    pub sandbox: cove_agent::private_net::SandboxSettings,
    /// Ready job sandboxes the embedded agent keeps (`[jobs] pool`, default 0; docs/runs.md).
    pub job_pool: usize,
    /// Endpoint profiles and roles repositories may use for packages (`[packages]`).
    pub packages: package_policy::PackagesPolicy,

    /// How long an approval gate waits when its action sets no `Timeout`
    /// (`[jobs] approval_timeout_secs`, default 7 days).
    pub approval_timeout: Duration,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            reap_interval: Duration::from_secs(5),
            default_image: cove_agent::jobs::DEFAULT_IMAGE.to_string(),
            retry_on_agent_lost: 1,
            embedded_slots: 2,
            sandbox: cove_agent::private_net::SandboxSettings::default(),
            job_pool: 0,
            packages: package_policy::PackagesPolicy::default(),

            approval_timeout: approval::DEFAULT_TIMEOUT,
        }
    }
}

/// Wall-clock milliseconds plus an offset tests can advance.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        store::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock forward (tests).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A report from an attempt that no longer owns the job (HTTP 409).
    #[error("job {job}: attempt {attempt} is not the current attempt")]
    Stale { job: i64, attempt: u32 },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// A body over its limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<RunsError> for crate::error::ApiError {
    fn from(e: RunsError) -> Self {
        use crate::error::ApiError;
        match e {
            RunsError::Stale { .. } | RunsError::Conflict(_) => ApiError::Conflict(e.to_string()),
            RunsError::NotFound(what) => ApiError::NotFound(what),
            RunsError::BadRequest(m) => ApiError::BadRequest(m),
            RunsError::Forbidden(m) => ApiError::Forbidden(m),
            RunsError::TooLarge(m) => ApiError::TooLarge(m),
            RunsError::Git(g) => g.into(),
            RunsError::Store(s) => s.into(),
            other => ApiError::internal(other),
        }
    }
}

/// The engine's shared part of the server state.
pub struct Runs {
    config: RunsConfig,
    clock: Clock,
    /// Woken when a job may have become ready (pollers re-check).
    ready: Notify,
    /// Woken when a job/run changed or another replica stored log lines (log followers and
    /// SSE snapshots re-check; this process's new lines go through `log_follow::LogHub`).
    progress: Notify,
    /// Lease polls served together, one placement round at a time (`dispatch`).
    lease_batcher: dispatch::Batcher<dispatch::Poll, Vec<JobRow>>,
    /// Finish reports written together (`dispatch`).
    finish_batcher: dispatch::Batcher<dispatch::FinishItem, bool>,
    /// The active set kept between placement rounds (`dispatch`).
    active: dispatch::ActiveCache,
    /// Runs' rows and workflows as parsed, by run id (`parsed.rs`).
    parsed: ParsedWorkflows,
    /// One pass over the stored push events at a time.
    push_cursor: tokio::sync::Mutex<()>,
    /// One pass over pending pull request events at a time (`pulls::process_pending`).
    pull_cursor: tokio::sync::Mutex<()>,
    key: SecretKey,
    /// Wake-ups for the other replicas (`crate::cluster`); unset with one process.
    replicas: std::sync::OnceLock<crate::cluster::Forward>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Runs {
    pub fn new(data_dir: &std::path::Path, config: RunsConfig) -> Result<Runs, SecretError> {
        Ok(Runs {
            config,
            clock: Clock::default(),
            ready: Notify::new(),
            progress: Notify::new(),
            lease_batcher: dispatch::Batcher::new(),
            finish_batcher: dispatch::Batcher::new(),
            active: dispatch::ActiveCache::default(),
            parsed: ParsedWorkflows::default(),
            push_cursor: tokio::sync::Mutex::new(()),
            pull_cursor: tokio::sync::Mutex::new(()),
            key: SecretKey::load_or_create(data_dir)?,
            replicas: std::sync::OnceLock::new(),
        })
    }

    pub fn config(&self) -> &RunsConfig {
        &self.config
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// A kept run row (`parsed`): only its fixed fields — repository, workflow, branch,
    /// commit, trigger — are current.
    pub(crate) fn fixed_run(&self, run_id: i64) -> Option<Arc<RunRow>> {
        self.parsed.fixed_run(run_id)
    }

    /// A future that completes at the next progress notification (register before checking).
    pub fn progress(&self) -> &Notify {
        &self.progress
    }

    fn wake(&self) {
        self.wake_local();
        self.announce();
    }

    /// Wakes this process's lease pollers and followers (another replica moved something).
    /// The next placement round reads the active set again.
    pub fn wake_local(&self) {
        self.active.invalidate();
        self.notify();
    }

    /// [`Runs::wake`] after a change the cached active set already holds (leases of a round,
    /// jobs ended by a finish batch): pollers and followers re-check, the set is not re-read.
    fn wake_kept(&self) {
        self.notify();
        self.announce();
    }

    fn notify(&self) {
        self.ready.notify_waiters();
        self.progress.notify_waiters();
    }

    /// Sends this process's wake-ups to the other replicas too.
    pub fn forward_wakes(&self, forward: crate::cluster::Forward) {
        let _ = self.replicas.set(forward);
    }

    fn announce(&self) {
        if let Some(forward) = self.replicas.get() {
            forward.send(crate::cluster::Wake::Runs);
        }
    }
}

fn artifacts_dir(state: &AppState, run_id: i64, job_id: i64) -> std::path::PathBuf {
    state
        .data_dir()
        .join("artifacts")
        .join(run_id.to_string())
        .join(job_id.to_string())
}

/// Where an artifact's tar is stored.
pub fn artifact_path(state: &AppState, run_id: i64, job_id: i64, name: &str) -> std::path::PathBuf {
    artifacts_dir(state, run_id, job_id).join(format!("{name}.tar"))
}

fn valid_artifact_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ---------------------------------------------------------------------------------------
// Runs from pushes and manual starts
// ---------------------------------------------------------------------------------------
