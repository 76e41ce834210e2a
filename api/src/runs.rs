//! Workflow runs: REST DTOs (`/api/v1/repos/{owner}/{name}/runs…`, secrets, commit status)
//! and the job part of the agent protocol (lease, heartbeat, logs, finish).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A run's state, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// No job started yet (waiting for an agent or for its turn under QUEUED/SUPERSEDED).
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A newer run of the same SUPERSEDED workflow took its place while it waited.
    Superseded,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

/// A job's (one action's) state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its dependencies, its turn, or an agent.
    Pending,
    /// Leased to an agent.
    Running,
    /// An `aws/approval` gate whose dependencies are done: no agent, no container, waiting
    /// for enough approvals (or a rejection, or its timeout).
    WaitingApproval,
    Succeeded,
    Failed,
    /// A dependency did not succeed; never ran.
    Skipped,
    Cancelled,
    Superseded,
    /// The agent stopped heartbeating and the lease expired.
    AgentLost,
    TimedOut,
}

impl JobState {
    pub const ALL: [JobState; 10] = [
        JobState::Pending,
        JobState::Running,
        JobState::WaitingApproval,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Skipped,
        JobState::Cancelled,
        JobState::Superseded,
        JobState::AgentLost,
        JobState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::WaitingApproval => "waiting_approval",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Skipped => "skipped",
            JobState::Cancelled => "cancelled",
            JobState::Superseded => "superseded",
            JobState::AgentLost => "agent_lost",
            JobState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            JobState::Pending | JobState::Running | JobState::WaitingApproval
        )
    }
}

/// One action of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: i64,
    pub action: String,
    pub state: JobState,
    /// Attempts leased so far (0 = never leased).
    pub attempt: u32,
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// The registered agent that holds (or last held) the lease; absent for the embedded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
    /// The name of that agent (`embedded` for the server's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Labels the job's agent must carry (from `Compute.Fleet`; docs/agents.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Why a pending job cannot be placed now ("no agent matches labels pool=gpu").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Set for `aws/approval` gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// A batch build with `ignore-failure`: its failure does not fail the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
    /// Set for deploy actions: the deployment environment and where the deploy stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::JobDeployment>,
}

/// An approval gate: who may decide, how many approvals it needs, what was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Approval {
    /// The `Approvers` user names; empty: the repository's owners and administrators.
    pub approvers: Vec<String>,
    /// `ApprovalsRequired` (distinct approvers).
    pub approvals_required: u32,
    /// Distinct approvals in the current round.
    pub approvals: u32,
    /// Why a conditional gate paused or passed by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// When a waiting gate fails by timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Every decision, oldest first (all rounds: a retried run opens a new round).
    pub decisions: Vec<ApprovalDecision>,
}

/// One recorded decision on an approval gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalDecision {
    pub user: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub at_ms: i64,
    /// The gate's round (1 for the first time it waited).
    pub round: u32,
}

/// `POST /api/v1/runs/{run}/actions/{action}/approve` and `…/reject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// Why (kept with the decision; at most 4096 bytes).
    #[serde(default)]
    pub comment: String,
}

/// A workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    pub id: i64,
    /// The run's number in its repository (`#1`, `#2` …; 0 for a run stored before numbers).
    #[serde(default)]
    pub number: i64,
    /// `owner/name`.
    pub repo: String,
    pub workflow: String,
    pub workflow_file: String,
    /// `QUEUED`, `SUPERSEDED` or `PARALLEL`.
    pub run_mode: String,
    pub branch: String,
    pub commit: String,
    /// `push`, `pullrequest`, `manual`, `schedule` or `retry`.
    pub trigger: String,
    /// The pull request the run ran for (its per-repository number): set for runs of
    /// PULLREQUEST triggers, absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_number: Option<i64>,
    pub state: RunState,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    pub jobs: Vec<Job>,
}

/// One SCHEDULE trigger on one branch: `GET /api/v1/repos/{owner}/{name}/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Schedule {
    pub workflow: String,
    pub workflow_file: String,
    pub branch: String,
    /// The 6-field cron expression (UTC).
    pub expression: String,
    /// When it fires next; absent when the expression names no later minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_at_ms: Option<i64>,
    /// The number of the run it started last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<i64>,
}

/// `POST /api/v1/repos/{owner}/{name}/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRunRequest {
    /// Workflow name (or its file path).
    pub workflow: String,
    /// Default: the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// An invalid workflow file met on a push: no run was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowError {
    pub id: i64,
    pub file: String,
    pub branch: String,
    pub commit: String,
    /// The diagnostics, one `FILE:LINE:COL: error: MESSAGE` per line.
    pub message: String,
    pub created_at_ms: i64,
}

/// `GET /api/v1/repos/{owner}/{name}/commits/{sha}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitStatus {
    pub commit: String,
    /// `none` without runs, else the worst of the runs' states (`running` while any runs).
    pub state: String,
    pub runs: Vec<Run>,
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogStreamKind {
    Stdout,
    Stderr,
    System,
}

impl LogStreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStreamKind::Stdout => "stdout",
            LogStreamKind::Stderr => "stderr",
            LogStreamKind::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<LogStreamKind> {
        [
            LogStreamKind::Stdout,
            LogStreamKind::Stderr,
            LogStreamKind::System,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// One stored, already masked log line. `seq` orders a job's lines; attempt `n` numbers its
/// lines from `(n - 1) * 1_000_000_000`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobLogLine {
    pub seq: u64,
    pub stream: LogStreamKind,
    pub ts: u64,
    pub text: String,
}

/// A secret's name and times; the value is never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Given to runs of every branch; otherwise only to runs of the default branch.
    #[serde(default)]
    pub all_branches: bool,
}

/// `PUT /api/v1/repos/{owner}/{name}/secrets/{secret}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetSecretRequest {
    pub value: String,
    /// Give the secret to runs of every branch (default: only runs of the repository's
    /// default branch get it).
    #[serde(default)]
    pub all_branches: bool,
}

impl std::fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("value", &"<redacted>")
            .field("all_branches", &self.all_branches)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Agent protocol: jobs
// ---------------------------------------------------------------------------------------

/// `POST /api/v1/agent/lease`: wait up to `wait_ms` for a ready job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub wait_ms: u64,
}

/// What the job executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum JobScript {
    Steps(Vec<String>),
    Phases(Vec<JobPhase>),
}

/// A buildspec phase; `name` is `install`, `pre_build`, `build` or `post_build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPhase {
    pub name: String,
    pub commands: Vec<String>,
    #[serde(default)]
    pub finally: Vec<String>,
    /// `ABORT`, `CONTINUE` or `RETRY` (with `retry_count` / `retry_regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_regex: Option<String>,
}

/// An output artifact to collect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobArtifactSpec {
    pub name: String,
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_directory: Option<String>,
    #[serde(default)]
    pub discard_paths: bool,
    #[serde(default)]
    pub exclude_paths: Vec<String>,
}

/// A leased job: everything the agent needs, fenced by `attempt`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobLease {
    pub job_id: i64,
    pub run_id: i64,
    pub attempt: u32,
    pub action: String,
    pub image: String,
    pub shell: String,
    pub script: JobScript,
    pub env: Vec<(String, String)>,
    /// Environment name → secret value; masked by the agent in every log line.
    pub secrets: Vec<(String, String)>,
    /// Fetch the source tar at the run's commit (`GET …/agent/jobs/{job}/source`).
    pub source: bool,
    /// Input artifact names (`GET …/agent/jobs/{job}/inputs/{name}`).
    pub inputs: Vec<String>,
    pub outputs: Vec<JobArtifactSpec>,
    pub exported_variables: Vec<String>,
    pub timeout_secs: u64,
    /// Heartbeat at least this often.
    pub heartbeat_ms: u64,
    /// The lease ends this long after the last heartbeat.
    pub lease_ms: u64,
    /// CodeArtifact access for this job (`None`: the repository has none).
    #[serde(default)]
    pub packages: Option<crate::JobPackages>,
    /// A deploy action's role (`Environment.Connections`): the agent assumes it and serves
    /// the credentials to the job through its container-credentials endpoint.
    #[serde(default)]
    pub deploy: Option<crate::JobDeploy>,
    /// File caches: a hit is fetched like an input artifact by its name before the steps; after
    /// a success the agent uploads each cache's paths as an output artifact of that name.
    #[serde(default)]
    pub caches: Vec<JobCacheSpec>,
}

/// One file cache of a leased job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCacheSpec {
    /// `cove-cache-<i>`.
    pub name: String,
    pub paths: Vec<String>,
    /// A stored cache matched its key or a restore key: fetch it (`…/inputs/{name}`).
    pub restore: bool,
}

impl std::fmt::Debug for JobLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret_names: Vec<&str> = self.secrets.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("JobLease")
            .field("job_id", &self.job_id)
            .field("run_id", &self.run_id)
            .field("attempt", &self.attempt)
            .field("action", &self.action)
            .field("image", &self.image)
            .field("script", &self.script)
            .field("secrets", &secret_names)
            .field("source", &self.source)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// `POST /api/v1/agent/jobs/{job}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub attempt: u32,
}

/// Whether to stop, and until when the lease holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub cancel: bool,
    pub lease_expires_ms: i64,
}

/// `POST /api/v1/agent/jobs/{job}/logs`: lines of one attempt (idempotent by `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    pub attempt: u32,
    pub lines: Vec<JobLogLine>,
}

/// How the job ended on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The agent or the engine failed (not the job's commands).
    Error,
}

/// `POST /api/v1/agent/jobs/{job}/finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    pub attempt: u32,
    pub outcome: JobOutcome,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `on-failure: RETRY` asked for another attempt.
    #[serde(default)]
    pub retry: bool,
}

/// A test or coverage report of a run (CodeCatalyst `Outputs.Reports`, buildspec `reports:`),
/// read after the action's steps: `GET /api/v1/runs/{run}/reports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReport {
    /// The action (job) that produced it.
    pub action: String,
    /// The report's name in the workflow.
    pub name: String,
    /// `JUNITXML`, `COBERTURAXML`, …
    pub format: String,
    /// `test` or `coverage`.
    pub kind: String,
    /// Files read (matched by the report's paths).
    pub files: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestTotals>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageTotals>,
    /// Success criteria that failed (each failed the action); empty when met or none.
    #[serde(default)]
    pub criteria_failed: Vec<String>,
    /// Files that could not be read, with why.
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestTotals {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Passed / (total - skipped), percent.
    pub pass_rate: f64,
    /// The first failed cases (at most 200).
    pub failures: Vec<FailedTestCase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailedTestCase {
    pub suite: String,
    pub name: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CoverageTotals {
    pub lines_covered: u64,
    pub lines_total: u64,
    pub branches_covered: u64,
    pub branches_total: u64,
    /// Percent of lines covered.
    pub line_rate: f64,
    /// Percent of branches covered.
    pub branch_rate: f64,
    /// Per file, sorted by path.
    pub files: Vec<FileCoverageTotals>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileCoverageTotals {
    pub path: String,
    pub lines_covered: u64,
    pub lines_total: u64,
    pub branches_covered: u64,
    pub branches_total: u64,
}
