//! The workflow engine: push events → runs → jobs, the scheduler (run modes, dependencies),
//! leases with heartbeats and attempt fencing, job reports (logs, artifacts, results), the
//! lease reaper, secrets, and the embedded agent's job loop. HTTP handlers are in [`http`];
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
pub mod http;
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

pub use dispatch::{place_round, Poll, MAX_LEASES_PER_POLL};
use parsed::ParsedWorkflows;
pub(crate) use parsed::{parse_run_workflow, run_and_workflow};
use state::supersede_run;
pub use state::{cancel_run, derive_run_state, retry_run, settle_run};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cove_api::{
    FinishRequest, HeartbeatResponse, JobArtifactSpec, JobLease, JobLogLine, JobOutcome, JobPhase,
    JobScript, JobState, LogBatch, PushEvent, RunState,
};
use tokio::sync::Notify;
use workflows::{Format, Workflow};

use crate::git::{self, GitError};
use crate::parse_budget;
use crate::store::{self, JobRow, RepoRow, RunRow, StoreError, WorkflowErrorRow};
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

/// Stores a new run of `workflow` and its jobs, and wakes pollers.
#[allow(clippy::too_many_arguments)]
pub async fn create_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    file: &str,
    text: &str,
    implicit_branch: Option<&str>,
    branch: &str,
    commit: &str,
    trigger: &str,
    actor: Option<&str>,
) -> Result<RunRow, RunsError> {
    let source = RunSource {
        file,
        text,
        implicit_branch,
        branch,
        commit,
        trigger,
        actor,
        rollback_of: None,
    };
    insert_run(state, repo, workflow, &source, None, None, None)
        .await?
        .ok_or_else(|| RunsError::Conflict("the run already exists".into()))
}

/// Where a new run comes from.
struct RunSource<'a> {
    file: &'a str,
    text: &'a str,
    implicit_branch: Option<&'a str>,
    branch: &'a str,
    commit: &'a str,
    trigger: &'a str,
    /// Who started it (the pusher, the person who started it by hand); `None`: no person.
    actor: Option<&'a str>,
    /// The run a rollback run deploys again.
    rollback_of: Option<i64>,
}

/// A rollback run (`deploy::rollback`): `workflow` (the actions to run again) at `old`'s
/// commit, started by `actor`.
pub(crate) async fn create_rollback_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    old: &RunRow,
    actor: &str,
) -> Result<RunRow, RunsError> {
    let source = RunSource {
        file: &old.workflow_file,
        text: &old.workflow_text,
        implicit_branch: old.implicit_branch.as_deref(),
        branch: &old.branch,
        commit: &old.commit_sha,
        trigger: "rollback",
        actor: Some(actor),
        rollback_of: Some(old.id),
    };
    insert_run(state, repo, workflow, &source, None, None, None)
        .await?
        .ok_or_else(|| RunsError::Conflict("the run already exists".into()))
}

/// Stores a new run (of push event `push_event`, or of pull request event `pr` = (pull
/// request number, `pr_events` id), when given) and wakes pollers. `None` when that event
/// already has a run of this workflow file (the event is processed again).
async fn insert_run(
    state: &AppState,
    repo: &RepoRow,
    workflow: &Workflow,
    source: &RunSource<'_>,
    push_event: Option<i64>,
    claim: Option<&store::ScheduleClaim>,
    pr: Option<(i64, i64)>,
) -> Result<Option<RunRow>, RunsError> {
    let RunSource {
        file,
        text,
        implicit_branch,
        branch,
        commit,
        trigger,
        actor,
        rollback_of,
    } = *source;
    let plan = workflows::RunPlan::new(workflow)
        .map_err(|e| RunsError::BadRequest(format!("{file}: {e}")))?;
    let runs = state.runs();
    let now = runs.clock.now_ms();
    let mut run = RunRow {
        id: store::next_id(),
        repo_id: repo.id,
        workflow: workflow.name.clone(),
        workflow_file: file.to_string(),
        workflow_text: text.to_string(),
        implicit_branch: implicit_branch.map(str::to_string),
        run_mode: schedule::mode_name(workflow.run_mode).to_string(),
        branch: branch.to_string(),
        commit_sha: commit.to_string(),
        trigger_kind: trigger.to_string(),
        state: RunState::Queued,
        created_at_ms: now,
        finished_at_ms: None,
        number: 0,
        pr_number: pr.map(|(number, _)| number),
    };
    let jobs: Vec<JobRow> = workflow
        .actions
        .iter()
        .enumerate()
        .map(|(idx, action)| JobRow {
            id: store::next_id(),
            run_id: run.id,
            idx: idx as i64,
            action: action.id.clone(),
            depends_on: plan
                .dependencies(&action.id)
                .into_iter()
                .map(str::to_string)
                .collect(),
            state: JobState::Pending,
            attempt: 0,
            max_attempts: if action.environment.is_none() {
                1 + runs.config.retry_on_agent_lost.min(10)
            } else {
                1
            },
            lease_expires_ms: None,
            cancel_requested: false,
            timeout_ms: match (&action.gate, action.timeout_minutes) {
                (_, Some(minutes)) => i64::from(minutes) * 60_000,
                (Some(_), None) => {
                    i64::try_from(runs.config.approval_timeout.as_millis()).unwrap_or(i64::MAX)
                }
                (None, None) => 60 * 60_000,
            },
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            variables_json: "{}".into(),
            artifacts_json: "[]".into(),
            on_failure: match &action.batch {
                Some(b) if b.ignore_failure => store::JobFailure::Ignore,
                _ if workflow.fast_fail => store::JobFailure::FailFast,
                _ => store::JobFailure::Fail,
            },
            labels: workflows::fleet::action_labels(workflow, action),
        })
        .collect();
    // Deploy actions (deploy/): refused ones fail once stored, those that need approvals wait
    // at a gate like approval actions.
    let deploys = crate::deploy::plan(state, repo, workflow, branch, actor).await?;
    let deploy_gated = |id: &str| {
        deploys
            .iter()
            .any(|d| d.action == id && d.refused.is_none() && d.approvals > 0)
    };
    // Approval gates are never leased: they wait for people (runs/approval.rs).
    let gates: Vec<i64> = workflow
        .actions
        .iter()
        .zip(&jobs)
        .filter(|(action, _)| action.gate.is_some() || deploy_gated(&action.id))
        .map(|(_, job)| job.id)
        .collect();
    let stored = match pr {
        Some((pr_number, pr_event)) => {
            state
                .store()
                .create_pr_run(&run, &jobs, &gates, pr_number, pr_event)
                .await?
        }
        None => {
            state
                .store()
                .create_numbered_run(&run, &jobs, &gates, push_event, claim)
                .await?
        }
    };
    let Some(number) = stored else {
        tracing::info!(event = push_event, workflow = %run.workflow, "push event (or schedule slot) already has this run");
        return Ok(None);
    };
    run.number = number;
    tracing::info!(run = run.id, number, workflow = %run.workflow, branch, commit, trigger, "run created");
    let refused = crate::deploy::record(state, &run, &jobs, &deploys, actor, rollback_of).await?;
    if !gates.is_empty() || refused {
        // A gate without dependencies opens at once.
        settle_run(state, run.id).await?;
    }
    runs.wake();
    Ok(Some(run))
}

/// Handles one push event: every matching workflow at the new commit becomes a run; invalid
/// workflow files become workflow errors.
pub async fn on_push(state: &AppState, event: &PushEvent) -> Result<Vec<RunRow>, RunsError> {
    let Some(branch) = event.ref_name.strip_prefix("refs/heads/") else {
        return Ok(Vec::new());
    };
    let Some((owner, name)) = event.repo.split_once('/') else {
        return Ok(Vec::new());
    };
    let Some(repo) = state.store().repo(owner, name).await? else {
        return Ok(Vec::new());
    };
    if event.new_sha.bytes().all(|b| b == b'0') {
        // Branch deleted: so are its schedules.
        schedules::update_branch(state, &repo, branch, &[]).await?;
        return Ok(Vec::new());
    }
    let path = git::repo_path(state.data_dir(), owner, name);
    let (commit, files) = source::workflow_files(path.clone(), event.new_sha.clone()).await?;
    let changed =
        source::changed_files(path.clone(), event.old_sha.clone(), event.new_sha.clone()).await?;
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut created = Vec::new();
    let record_error = |file: &str, message: String| WorkflowErrorRow {
        id: store::next_id(),
        repo_id: repo.id,
        file: file.to_string(),
        branch: branch.to_string(),
        commit_sha: commit.clone(),
        message,
        created_at_ms: store::now_ms(),
    };
    let mut scheduled = Vec::new();
    for (file, text) in &files.workflows {
        let at = source::At {
            repo_path: path.clone(),
            commit: commit.clone(),
        };
        match parse_budget::workflow(file, text, at).await {
            Ok((wf, _)) => {
                if let Some(row) =
                    schedules::schedule_of(&wf, file, branch, state.runs().clock.now_ms())
                {
                    scheduled.push(row);
                }
                if wf.matches_push(branch, &changed) {
                    let source = RunSource {
                        file,
                        text,
                        implicit_branch: None,
                        branch,
                        commit: &commit,
                        trigger: "push",
                        actor: event.pusher.as_deref(),
                        rollback_of: None,
                    };
                    created.extend(
                        insert_run(state, &repo, &wf, &source, Some(event.id), None, None).await?,
                    );
                }
            }
            Err(diags) => {
                let message = diags
                    .iter()
                    .filter(|d| d.is_error())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                tracing::warn!(file = %file, commit = %commit, "invalid workflow file");
                state
                    .store()
                    .insert_workflow_error(&record_error(file, message))
                    .await?;
            }
        }
    }
    schedules::update_branch(state, &repo, branch, &scheduled).await?;
    let has_workflows =
        !files.workflows.is_empty() || files.too_large.iter().any(|(f, _)| f.contains('/'));
    for (file, size) in &files.too_large {
        if file.contains('/') || !has_workflows {
            let message = format!(
                "{file}:1:1: error: the file is {size} bytes; Cove reads workflow files of at most {} bytes",
                source::MAX_WORKFLOW_BYTES
            );
            state
                .store()
                .insert_workflow_error(&record_error(file, message))
                .await?;
        }
    }
    if !has_workflows {
        if let Some((file, text)) = &files.buildspec {
            let at = source::At {
                repo_path: path.clone(),
                commit: commit.clone(),
            };
            match parse_budget::implicit_buildspec(file, text, &repo.default_branch, at).await {
                Ok((wf, _)) => {
                    if wf.matches_push(branch, &changed) {
                        let source = RunSource {
                            file,
                            text,
                            implicit_branch: Some(&repo.default_branch),
                            branch,
                            commit: &commit,
                            trigger: "push",
                            actor: event.pusher.as_deref(),
                            rollback_of: None,
                        };
                        created.extend(
                            insert_run(state, &repo, &wf, &source, Some(event.id), None, None)
                                .await?,
                        );
                    }
                }
                Err(diags) => {
                    let message = diags
                        .iter()
                        .filter(|d| d.is_error())
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n");
                    state
                        .store()
                        .insert_workflow_error(&record_error(file, message))
                        .await?;
                }
            }
        }
    }
    Ok(created)
}

/// A manual run of the workflow named `workflow` (or at that file path) on `branch`.
pub async fn start_manual(
    state: &AppState,
    repo: &RepoRow,
    workflow: &str,
    branch: &str,
    actor: Option<&str>,
) -> Result<RunRow, RunsError> {
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (commit, files) = source::workflow_files(path.clone(), format!("refs/heads/{branch}"))
        .await
        .map_err(|e| match e {
            GitError::NotFound(_) => RunsError::NotFound(format!("branch {branch}")),
            other => other.into(),
        })?;
    let at = source::At {
        repo_path: path,
        commit: commit.clone(),
    };
    for (file, text) in &files.workflows {
        if let Ok((wf, _)) = parse_budget::workflow(file, text, at.clone()).await {
            if wf.name == workflow || file == workflow {
                return create_run(
                    state, repo, &wf, file, text, None, branch, &commit, "manual", actor,
                )
                .await;
            }
        }
    }
    if files.workflows.is_empty() {
        if let Some((file, text)) = &files.buildspec {
            if let Ok((wf, _)) =
                parse_budget::implicit_buildspec(file, text, &repo.default_branch, at.clone()).await
            {
                if wf.name == workflow || file == workflow {
                    return create_run(
                        state,
                        repo,
                        &wf,
                        file,
                        text,
                        Some(&repo.default_branch),
                        branch,
                        &commit,
                        "manual",
                        actor,
                    )
                    .await;
                }
            }
        }
    }
    Err(RunsError::NotFound(format!(
        "valid workflow `{workflow}` on branch {branch}"
    )))
}

/// How often stored push events are looked at without a push (a missed wake-up, a failed
/// pass).
const PUSH_CURSOR_INTERVAL: Duration = Duration::from_secs(30);

/// Creates the runs of every stored push event that has none yet, oldest first, and moves
/// the cursor past each (`push_events.runs_pending`). Idempotent: a run is stored at most
/// once per event and workflow file, so an event processed again (the server died before its
/// cursor moved) creates nothing twice. A store failure stops the pass and leaves the event
/// pending (the next pass retries it); any other failure (an unreadable commit) is logged and
/// the event is done. Returns the runs created.
pub async fn process_pending_pushes(state: &AppState) -> Result<usize, RunsError> {
    let _one_pass = state.runs().push_cursor.lock().await;
    let mut created = 0;
    loop {
        let events = state.store().pending_push_events(100).await?;
        if events.is_empty() {
            return Ok(created);
        }
        for event in &events {
            match on_push(state, event).await {
                Ok(runs) => created += runs.len(),
                Err(RunsError::Store(e)) => return Err(RunsError::Store(e)),
                Err(e) => {
                    tracing::error!(repo = %event.repo, ref_name = %event.ref_name, error = %e, "creating runs for a push failed");
                }
            }
            state.store().push_event_done(event.id).await?;
        }
    }
}

/// Creates runs from stored push events: at start-up, whenever the push bus says a push was
/// stored (or that this subscriber lagged), when another replica stored one, and every 30 s;
/// on the leader only (`crate::cluster`; the unique key of (event, workflow file) keeps a
/// handover from creating a run twice). Errors are logged, never fatal.
pub fn spawn_push_consumer(state: AppState) {
    crate::cluster::singleton(&state, "push consumer", consume_pushes);
}

async fn consume_pushes(state: AppState) {
    let mut rx = state.subscribe();
    let mut tick = tokio::time::interval(PUSH_CURSOR_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_in = Duration::ZERO;
    loop {
        let failed = match process_pending_pushes(&state).await {
            Ok(_) => {
                retry_in = Duration::ZERO;
                false
            }
            Err(e) => {
                // 1 s, doubling up to the periodic pass.
                retry_in = (retry_in * 2).clamp(Duration::from_secs(1), PUSH_CURSOR_INTERVAL);
                tracing::error!(error = %e, retry_in_s = retry_in.as_secs(), "creating runs from stored push events failed; retrying");
                true
            }
        };
        tokio::select! {
            () = tokio::time::sleep(retry_in), if failed => {}
            () = state.cluster().pushed.notified() => {}
            got = rx.recv() => match got {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Every stored event is read from the store: drain the bus.
                    while !matches!(
                        rx.try_recv(),
                        Err(tokio::sync::broadcast::error::TryRecvError::Empty
                            | tokio::sync::broadcast::error::TryRecvError::Closed)
                    ) {}
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------

/// Waits up to `wait` for a ready job and leases it to the embedded agent (long poll, woken
/// by [`Notify`]).
pub async fn lease(state: &AppState, wait: Duration) -> Result<Option<JobLease>, RunsError> {
    lease_for(state, wait, None).await
}

/// [`lease`] for the registered agent `agent` (`None`: the embedded agent); the job records
/// which agent holds it.
pub async fn lease_for(
    state: &AppState,
    wait: Duration,
    agent: Option<i64>,
) -> Result<Option<JobLease>, RunsError> {
    Ok(lease_many_for(state, wait, agent, 1)
        .await?
        .into_iter()
        .next())
}

/// Waits up to `wait` for ready jobs and leases up to `slots` of them (an agent's free slots,
/// at most [`MAX_LEASES_PER_POLL`]) to `agent` in one placement round.
pub async fn lease_many_for(
    state: &AppState,
    wait: Duration,
    agent: Option<i64>,
    slots: usize,
) -> Result<Vec<JobLease>, RunsError> {
    let deadline = tokio::time::Instant::now() + wait;
    let runs = state.runs();
    loop {
        let notified = runs.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let leases = try_lease_many_for(state, agent, slots).await?;
        if !leases.is_empty() {
            return Ok(leases);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Ok(Vec::new());
        }
    }
}

/// One scheduling pass: supersede what the run modes say, lease the first ready job.
pub async fn try_lease(state: &AppState) -> Result<Option<JobLease>, RunsError> {
    try_lease_for(state, None).await
}

/// [`try_lease`] for the registered agent `agent` (`None`: the embedded agent).
pub async fn try_lease_for(
    state: &AppState,
    agent: Option<i64>,
) -> Result<Option<JobLease>, RunsError> {
    Ok(try_lease_many_for(state, agent, 1)
        .await?
        .into_iter()
        .next())
}

/// [`try_lease_for`] of up to `slots` jobs. The agent's poll joins the next placement round
/// (`dispatch`): the rounds are serialized, and a job is leased at most once per attempt (the
/// conditional update). A job that cannot start (missing secret, bad reference) fails,
/// visibly, and is not returned.
pub async fn try_lease_many_for(
    state: &AppState,
    agent: Option<i64>,
    slots: usize,
) -> Result<Vec<JobLease>, RunsError> {
    let runs = state.runs();
    let mut out = Vec::new();
    for job in dispatch::lease_jobs(state, agent, slots).await? {
        let (job_id, attempt) = (job.id, job.attempt);
        match build_lease(state, &job, attempt).await {
            Ok(lease) => {
                tracing::info!(job = job_id, attempt, action = %job.action, agent, "job leased");
                out.push(lease);
            }
            Err(e) => {
                let now = runs.clock.now_ms();
                // The job cannot start (missing secret, bad reference): it fails, visibly.
                let message = e.to_string();
                tracing::warn!(job = job_id, error = %message, "job cannot start");
                state
                    .store()
                    .append_logs(
                        job_id,
                        &[JobLogLine {
                            seq: cove_agent::job_worker::seq_base(attempt),
                            stream: cove_api::LogStreamKind::System,
                            ts: u64::try_from(now).unwrap_or(0),
                            text: format!("[cove] the job cannot start: {message}"),
                        }],
                    )
                    .await?;
                state
                    .store()
                    .end_job(
                        job_id,
                        JobState::Running,
                        Some(attempt),
                        JobState::Failed,
                        Some(&message),
                        None,
                        now,
                    )
                    .await?;
                settle_run(state, job.run_id).await?;
            }
        }
    }
    Ok(out)
}

fn phase_to_wire(
    p: &workflows::Phase,
    interp: &dyn Fn(&str) -> Result<String, RunsError>,
) -> Result<JobPhase, RunsError> {
    let (on_failure, retry_count, retry_regex) = match &p.on_failure {
        None => (None, None, None),
        Some(workflows::OnFailure::Abort) => (Some("ABORT".to_string()), None, None),
        Some(workflows::OnFailure::Continue) => (Some("CONTINUE".to_string()), None, None),
        Some(workflows::OnFailure::Retry { count, regex }) => {
            (Some("RETRY".to_string()), *count, regex.clone())
        }
    };
    Ok(JobPhase {
        name: p.name.key().to_string(),
        commands: p
            .commands
            .iter()
            .map(|c| interp(c))
            .collect::<Result<_, _>>()?,
        finally: p
            .finally
            .iter()
            .map(|c| interp(c))
            .collect::<Result<_, _>>()?,
        on_failure,
        retry_count,
        retry_regex,
    })
}

/// The secrets `names` of a repository for a run on `branch`, opened: every secret on the
/// default branch, elsewhere only those marked for all branches. A name that is not defined, or
/// not given to this branch, is an error naming it and the reason (the job fails before it
/// starts; nothing is silently empty).
pub async fn open_secrets_for(
    state: &AppState,
    repo_id: i64,
    branch: &str,
    names: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, RunsError> {
    let mut out = BTreeMap::new();
    if names.is_empty() {
        return Ok(out);
    }
    let repo = state
        .store()
        .repo_by_id(repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository {repo_id}")))?;
    let rules = state.store().branch_rules(repo_id).await?;
    let every = secrets::branch_gets_every_secret(&repo.default_branch, branch, &rules);
    let stored = state.store().list_secrets(repo_id).await?;
    for name in names {
        let row = stored.iter().find(|s| &s.name == name).ok_or_else(|| {
            RunsError::BadRequest(format!(
                "secret `{name}` is not defined for this repository (cove secret set)"
            ))
        })?;
        if !every && !row.all_branches {
            return Err(RunsError::BadRequest(secrets::withheld_reason(
                name,
                &repo.default_branch,
                branch,
            )));
        }
        let value = state.runs().key.open(repo_id, name, &row.sealed)?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Most text (steps, phase commands, input variables) one job gets after interpolation.
const MAX_JOB_TEXT_BYTES: usize = 4 * workflows::interpolate::MAX_INTERPOLATED_BYTES;

/// Turns a job's action into what the agent runs: interpolation (`${Secrets.x}` stays a
/// variable reference; its value travels in `secrets`), outputs of finished dependencies,
/// source and input artifacts.
async fn build_lease(state: &AppState, job: &JobRow, attempt: u32) -> Result<JobLease, RunsError> {
    let (run, wf) = run_and_workflow(state, job.run_id).await?;
    let action = wf
        .action(&job.action)
        .ok_or_else(|| RunsError::BadRequest(format!("action {} is gone", job.action)))?;
    let mut ctx = workflows::Context::for_action(action, workflows::Target::Shell);
    ctx.commit_id = run.commit_sha.clone();
    ctx.branch_name = run.branch.clone();
    // Other actions' outputs reach only their dependents (a `${Action.Var}` reference is an
    // edge of the plan): a job without dependencies needs no read of its run's jobs.
    let others = if job.depends_on.is_empty() {
        Vec::new()
    } else {
        state.store().jobs_of_run(run.id).await?
    };
    for other in others {
        if other.state == JobState::Succeeded {
            let vars: BTreeMap<String, String> =
                serde_json::from_str(&other.variables_json).unwrap_or_default();
            ctx.outputs.insert(other.action.clone(), vars);
        }
    }
    let mut referenced: BTreeSet<String> = action
        .secrets
        .iter()
        .filter_map(|s| match s {
            workflows::SecretRef::Codecatalyst { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    // each text is capped by `interpolate`; all of one job's together are capped here
    let interpolated = std::sync::atomic::AtomicUsize::new(0);
    let interp = |text: &str| -> Result<String, RunsError> {
        let out = workflows::interpolate(text, &ctx)
            .map_err(|e| RunsError::BadRequest(format!("action {}: {e}", action.id)))?;
        let total = interpolated.fetch_add(out.len(), Ordering::Relaxed) + out.len();
        if total > MAX_JOB_TEXT_BYTES {
            return Err(RunsError::BadRequest(format!(
                "action {}: its steps and variables are longer than {MAX_JOB_TEXT_BYTES} bytes \
                 once references are substituted",
                action.id
            )));
        }
        Ok(out)
    };
    let mut note_secrets = |text: &str| {
        for r in workflows::interpolate::references(text) {
            if r.scope == "Secrets" {
                referenced.insert(r.name.to_string());
            }
        }
    };
    let mut steps = Vec::new();
    let mut phases = Vec::new();
    for step in &action.configuration.steps {
        match step {
            workflows::Step::Run { command } => {
                note_secrets(command);
                steps.push(interp(command)?);
            }
            workflows::Step::Phase(p) => {
                for c in p.commands.iter().chain(&p.finally) {
                    note_secrets(c);
                }
                phases.push(phase_to_wire(p, &interp)?);
            }
            workflows::Step::Github { .. } => {
                return Err(RunsError::BadRequest(format!(
                    "action {}: GitHub Actions steps are not supported by Cove's runner",
                    action.id
                )))
            }
        }
    }
    let mut env = Vec::new();
    for v in &action.inputs.variables {
        note_secrets(&v.value);
        env.push((v.name.clone(), interp(&v.value)?));
    }
    env.push(("CATALYST_WORKFLOW_RUN_ID".into(), run.id.to_string()));
    env.push(("CATALYST_SOURCE_COMMIT".into(), run.commit_sha.clone()));
    env.push(("CATALYST_SOURCE_BRANCH".into(), run.branch.clone()));
    let script = if phases.is_empty() {
        JobScript::Steps(steps)
    } else {
        JobScript::Phases(phases)
    };
    let secrets = open_secrets_for(state, run.repo_id, &run.branch, &referenced)
        .await?
        .into_iter()
        .map(|(name, value)| (workflows::interpolate::secret_env_name(&name), value))
        .collect();
    let sources = &action.inputs.sources;
    let source = wf.format == Format::Buildspec
        || sources.iter().any(|s| s == "WorkflowSource")
        || (sources.is_empty() && action.inputs.artifacts.is_empty());
    let packages = packages::job_packages(state, run.repo_id, action).await?;
    let mut secrets: Vec<(String, String)> = secrets;
    let mut deploy = None;
    if let Some(d) = crate::deploy::for_lease(state, &run, job, action).await? {
        env.extend(d.env);
        secrets.extend(d.secrets);
        deploy = d.role;
    }
    let runs = state.runs();
    Ok(JobLease {
        job_id: job.id,
        run_id: run.id,
        attempt,
        action: job.action.clone(),
        image: action
            .configuration
            .container
            .as_ref()
            .map(|c| c.image.clone())
            .unwrap_or_else(|| runs.config.default_image.clone()),
        shell: action
            .configuration
            .shell
            .clone()
            .unwrap_or_else(|| "/bin/sh".into()),
        script,
        env,
        secrets,
        source,
        inputs: action.inputs.artifacts.clone(),
        outputs: action
            .outputs
            .artifacts
            .iter()
            .map(|a| JobArtifactSpec {
                name: a.name.clone(),
                files: a.files.clone(),
                base_directory: a.base_directory.clone(),
                discard_paths: a.discard_paths,
                exclude_paths: a.exclude_paths.clone(),
            })
            .chain(reports::artifact_specs(action))
            .collect(),
        exported_variables: action.outputs.variables.clone(),
        timeout_secs: u64::try_from(job.timeout_ms / 1000).unwrap_or(3600),
        heartbeat_ms: u64::try_from(runs.config.heartbeat.as_millis()).unwrap_or(5000),
        lease_ms: u64::try_from(runs.config.lease.as_millis()).unwrap_or(30_000),
        packages,
        deploy,
        caches: cache::lease_specs(state, &run, action),
    })
}

async fn current_job(state: &AppState, job_id: i64, attempt: u32) -> Result<JobRow, RunsError> {
    let job = state
        .store()
        .job(job_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("job {job_id}")))?;
    if job.state != JobState::Running || job.attempt != attempt {
        return Err(RunsError::Stale {
            job: job_id,
            attempt,
        });
    }
    Ok(job)
}

/// Renews the lease; the answer says whether to cancel.
pub async fn heartbeat(
    state: &AppState,
    job_id: i64,
    attempt: u32,
) -> Result<HeartbeatResponse, RunsError> {
    let runs = state.runs();
    let now = runs.clock.now_ms();
    let expires = now + i64::try_from(runs.config.lease.as_millis()).unwrap_or(i64::MAX);
    let job = state
        .store()
        .renew_lease(job_id, attempt, expires)
        .await?
        .ok_or(RunsError::Stale {
            job: job_id,
            attempt,
        })?;
    // The agent enforces the timeout itself; this is the server's backstop.
    let overdue = job
        .started_at_ms
        .is_some_and(|s| now > s + job.timeout_ms + 60_000);
    Ok(HeartbeatResponse {
        cancel: job.cancel_requested || overdue,
        lease_expires_ms: expires,
    })
}

/// Stores log lines of the current attempt.
pub async fn append_logs(state: &AppState, job_id: i64, batch: &LogBatch) -> Result<(), RunsError> {
    current_job(state, job_id, batch.attempt).await?;
    let lines = log_cap::admit(state, job_id, batch.attempt, &batch.lines).await?;
    state.store().append_logs(job_id, &lines).await?;
    // stored first, then pushed to this process's followers; other replicas' followers
    // re-read the store when woken
    state.log_hub().publish(job_id, &lines);
    state.runs().announce();
    Ok(())
}

/// The source tar of the job's run, streamed from `git archive` (never whole in memory).
pub async fn source_tar(
    state: &AppState,
    job_id: i64,
    attempt: u32,
) -> Result<source::TarStream, RunsError> {
    let job = current_job(state, job_id, attempt).await?;
    let run = state
        .store()
        .run(job.run_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("run {}", job.run_id)))?;
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(|| RunsError::NotFound(format!("repository of run {}", run.id)))?;
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    Ok(source::archive_stream(&path, &run.commit_sha).await?)
}

/// The file of an artifact produced by an earlier job of the same run.
pub async fn input_path(
    state: &AppState,
    job_id: i64,
    attempt: u32,
    name: &str,
) -> Result<std::path::PathBuf, RunsError> {
    let job = current_job(state, job_id, attempt).await?;
    if cache::index_of(name).is_some() {
        // a cache of this job's action, never another job's upload of the same name
        let run = state
            .store()
            .run(job.run_id)
            .await?
            .ok_or_else(|| RunsError::NotFound(format!("run {}", job.run_id)))?;
        let wf = parse_run_workflow(state, &run).await?;
        return wf
            .action(&job.action)
            .and_then(|a| cache::input_file(state, &run, a, name))
            .ok_or_else(|| RunsError::NotFound(format!("cache {name}")));
    }
    for other in state.store().jobs_of_run(job.run_id).await? {
        let names: Vec<String> = serde_json::from_str(&other.artifacts_json).unwrap_or_default();
        if names.iter().any(|n| n == name) {
            return Ok(artifact_path(state, job.run_id, other.id, name));
        }
    }
    Err(RunsError::NotFound(format!("artifact {name}")))
}

/// Largest artifact an agent may upload.
pub const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;

/// Stores an output artifact of the current attempt from a stream of chunks: written to a
/// temporary file of its own (concurrent uploads never share one), fsynced, renamed into
/// place, the directory fsynced, and only then recorded on the job (so a recorded artifact
/// survives a crash; concurrent uploads of one job all stay recorded).
pub async fn store_artifact<S, E>(
    state: &AppState,
    job_id: i64,
    attempt: u32,
    name: &str,
    body: S,
) -> Result<(), RunsError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if !valid_artifact_name(name) {
        return Err(RunsError::BadRequest(format!(
            "artifact name {name:?} is not valid"
        )));
    }
    let job = current_job(state, job_id, attempt).await?;
    let dir = artifacts_dir(state, job.run_id, job_id);
    let io = |context: &str| {
        let context = context.to_string();
        move |source| RunsError::Io { context, source }
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(io("creating the artifact directory"))?;
    let tmp = dir.join(format!(".{name}.{attempt}.{}.tmp", store::next_id()));
    let written = async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("creating an artifact file"))?;
        let mut size = 0u64;
        tokio::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                RunsError::BadRequest(format!("reading the artifact upload failed: {e}"))
            })?;
            size += chunk.len() as u64;
            if size > MAX_ARTIFACT_BYTES {
                return Err(RunsError::TooLarge(format!(
                    "artifacts are limited to {MAX_ARTIFACT_BYTES} bytes"
                )));
            }
            file.write_all(&chunk)
                .await
                .map_err(io("writing an artifact"))?;
        }
        file.sync_all().await.map_err(io("syncing an artifact"))?;
        tokio::fs::rename(&tmp, artifact_path(state, job.run_id, job_id, name))
            .await
            .map_err(io("storing an artifact"))?;
        tokio::fs::File::open(&dir)
            .await
            .map_err(io("opening the artifact directory"))?
            .sync_all()
            .await
            .map_err(io("syncing the artifact directory"))?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    current_job(state, job_id, attempt).await?;
    state.store().add_job_artifact(job_id, name).await?;
    Ok(())
}

/// SHA-256 of a finish report's JSON (variables are a sorted map, so equal reports hash
/// equally).
fn finish_digest(report: &FinishRequest) -> Result<String, RunsError> {
    use sha2::Digest;
    let json = serde_json::to_vec(report).map_err(|e| RunsError::BadRequest(e.to_string()))?;
    Ok(hex::encode(sha2::Sha256::digest(&json)))
}

/// The agent's final report of an attempt. Idempotent: the report that already ended (or
/// requeued) this attempt, sent again because its answer was lost, is accepted and changes
/// nothing; a different report for an ended attempt is stale (409).
pub async fn finish(
    state: &AppState,
    job_id: i64,
    report: &FinishRequest,
) -> Result<(), RunsError> {
    let digest = finish_digest(report)?;
    // The report that already ended this attempt, sent again (its answer was lost)?
    let replayed = || async {
        let stored = state.store().finish_digest(job_id).await?;
        let same = stored.is_some_and(|(a, d)| a == report.attempt && d == digest);
        if same {
            tracing::info!(
                job = job_id,
                attempt = report.attempt,
                "finish report received again; already applied"
            );
        }
        Ok::<_, RunsError>(same)
    };
    let job = match current_job(state, job_id, report.attempt).await {
        Ok(job) => job,
        Err(RunsError::Stale { .. }) if replayed().await? => return Ok(()),
        Err(e) => return Err(e),
    };
    let now = state.runs().clock.now_ms();
    let retry = (report.retry
        || (report.outcome == JobOutcome::Error && report.attempt < job.max_attempts))
        && !job.cancel_requested;
    if retry {
        let why = report
            .error
            .clone()
            .unwrap_or_else(|| "retry requested".into());
        if state
            .store()
            .requeue_finished(job_id, report.attempt, &why, &digest)
            .await?
        {
            tracing::info!(
                job = job_id,
                attempt = report.attempt,
                "job requeued for another attempt"
            );
            state.runs().wake();
            return Ok(());
        }
    }
    let to = match report.outcome {
        JobOutcome::Succeeded => JobState::Succeeded,
        JobOutcome::Failed | JobOutcome::Error => JobState::Failed,
        JobOutcome::Cancelled => JobState::Cancelled,
        JobOutcome::TimedOut => JobState::TimedOut,
    };
    // Reports are read once the steps ended (also after a failed build); a failed success
    // criterion fails a job whose steps succeeded.
    let mut to = to;
    let mut error = report.error.clone();
    let finished_action = if matches!(to, JobState::Succeeded | JobState::Failed) {
        finished_action(state, &job).await
    } else {
        Ok(None)
    };
    if let Ok(Some((run, action))) = &finished_action {
        let failed = reports::collect(state, &job, action).await;
        match failed {
            Ok(failed) if !failed.is_empty() => {
                tracing::info!(job = job_id, reasons = ?failed, "report success criteria failed");
                if to == JobState::Succeeded {
                    to = JobState::Failed;
                    error = Some(failed.join("; "));
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(job = job_id, error = %e, "reading the job's reports failed"),
        }
        if to == JobState::Succeeded {
            if let Err(e) = cache::save(state, run, &job, action).await {
                tracing::warn!(job = job_id, error = %e, "saving the job's caches failed");
            }
        }
    }
    if let Err(e) = finished_action {
        tracing::warn!(job = job_id, error = %e, "the finished job's action cannot be read");
    }
    let vars = serde_json::to_string(&report.variables)
        .map_err(|e| RunsError::BadRequest(e.to_string()))?;
    // Written together with the reports that arrive meanwhile; returns once committed and
    // the run settled (docs/runs.md "Dispatch").
    let ended = dispatch::finish_write(
        state,
        dispatch::FinishItem {
            write: store::FinishWrite {
                job_id,
                attempt: report.attempt,
                to,
                error,
                variables_json: vars,
                now_ms: now,
                digest: digest.clone(),
            },
            run_id: job.run_id,
        },
    )
    .await?;
    if !ended {
        if replayed().await? {
            return Ok(());
        }
        return Err(RunsError::Stale {
            job: job_id,
            attempt: report.attempt,
        });
    }
    Ok(())
}

/// The run and action of a finished job when it declares reports or caches (the run's
/// workflow parsed again).
async fn finished_action(
    state: &AppState,
    job: &JobRow,
) -> Result<Option<(RunRow, workflows::Action)>, RunsError> {
    let wants = |wf: &Workflow| {
        wf.action(&job.action)
            .filter(|a| !a.outputs.reports.is_empty() || !a.caching.is_empty())
            .cloned()
    };
    // the run's workflow as its lease parsed it: most actions declare neither, and then the
    // run is not read at all
    if let Some(wf) = state.runs().parsed.workflow(job.run_id) {
        if wants(&wf).is_none() {
            return Ok(None);
        }
    }
    let Some(run) = state.store().run(job.run_id).await? else {
        return Ok(None);
    };
    let wf = parse_run_workflow(state, &run).await?;
    Ok(wants(&wf).map(|a| (run, a)))
}

/// Ends leases whose heartbeats stopped: a requested cancel is finalized as `cancelled`; else
/// the job is retried when its policy allows, or ends `agent_lost`. Returns the jobs handled.
pub async fn reap_expired(state: &AppState) -> Result<Vec<i64>, RunsError> {
    let now = state.runs().clock.now_ms();
    let lease_s = state.runs().config.lease.as_secs_f64();
    let mut handled = Vec::new();
    for job in state.store().expired_leases(now).await? {
        let done = if job.cancel_requested {
            state
                .store()
                .end_job(
                    job.id,
                    JobState::Running,
                    Some(job.attempt),
                    JobState::Cancelled,
                    Some("cancelled (the agent did not confirm before its lease ended)"),
                    None,
                    now,
                )
                .await?
        } else if job.attempt < job.max_attempts {
            state
                .store()
                .requeue_job(
                    job.id,
                    job.attempt,
                    &format!("attempt {} lost its agent; retrying", job.attempt),
                )
                .await?
        } else {
            state
                .store()
                .end_job(
                    job.id,
                    JobState::Running,
                    Some(job.attempt),
                    JobState::AgentLost,
                    Some(&format!(
                        "agent lost: no heartbeat for {lease_s:.0} s (attempt {})",
                        job.attempt
                    )),
                    None,
                    now,
                )
                .await?
        };
        if done {
            state.metrics().lease_expired();
            tracing::warn!(job = job.id, attempt = job.attempt, "lease expired");
            handled.push(job.id);
            settle_run(state, job.run_id).await?;
        }
    }
    Ok(handled)
}

/// The reaper loop, on the leader only (`crate::cluster`; every transition it makes is a
/// conditional update on (state, attempt), so a handover never ends a job twice).
pub fn spawn_reaper(state: AppState) {
    crate::cluster::singleton(&state, "lease reaper", |state| async move {
        let mut tick = tokio::time::interval(state.runs().config.reap_interval);
        loop {
            tick.tick().await;
            if let Err(e) = reap_expired(&state).await {
                tracing::warn!(error = %e, "reaping expired leases failed");
            }
            if let Err(e) = approval::tick(&state).await {
                tracing::warn!(error = %e, "expiring or opening approval gates failed");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// The embedded agent
// ---------------------------------------------------------------------------------------

/// The embedded agent's transport: the same operations as the HTTP routes, in process.
#[derive(Clone)]
pub struct InProcess(pub AppState);

fn transport_err(e: RunsError) -> cove_agent::job_worker::TransportError {
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
