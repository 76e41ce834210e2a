//! SQL for workflow runs and push events (jobs in `jobs.rs`, workflow errors and secrets in
//! `workflow_errors.rs`).

use crate::store::ScheduleClaim;
use cove_api::{JobState, PushEvent, RunState};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A stored run.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub repo_id: i64,
    pub workflow: String,
    pub workflow_file: String,
    pub workflow_text: String,
    /// Set for the implicit buildspec workflow: the default branch it triggers on.
    pub implicit_branch: Option<String>,
    pub run_mode: String,
    pub branch: String,
    pub commit_sha: String,
    pub trigger_kind: String,
    pub state: RunState,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// The run's number in its repository (#1, #2 …), allocated when it is stored (the value
    /// given to the store is ignored).
    pub number: i64,
    /// The pull request a PULLREQUEST run ran for (`runs.pr_number`); read from the store
    /// (the value given to the store is ignored: `create_pr_run` takes the number).
    pub pr_number: Option<i64>,
}

impl RunRow {
    /// A queued run of `workflow` (file `.codecatalyst/workflows/<workflow>.yaml`) in
    /// repository `repo_id`, created at `now_ms`: PARALLEL, on `main` at an all-zero commit,
    /// triggered by a push. For runs written straight to the store (tests, benchmarks);
    /// change what differs with struct update syntax.
    pub fn queued(repo_id: i64, workflow: &str, now_ms: i64) -> RunRow {
        RunRow {
            id: super::next_id(),
            repo_id,
            workflow: workflow.to_string(),
            workflow_file: format!(".codecatalyst/workflows/{workflow}.yaml"),
            workflow_text: String::new(),
            implicit_branch: None,
            run_mode: "PARALLEL".into(),
            branch: "main".into(),
            commit_sha: "0".repeat(40),
            trigger_kind: "push".into(),
            state: RunState::Queued,
            created_at_ms: now_ms,
            finished_at_ms: None,
            number: 0,
            pr_number: None,
        }
    }
}

impl JobRow {
    /// Job `idx` (`action`) of run `run_id`, pending, never attempted: one attempt, an hour's
    /// timeout, no dependencies, variables or artifacts, no labels.
    pub fn pending(run_id: i64, idx: i64, action: &str) -> JobRow {
        JobRow {
            id: super::next_id(),
            run_id,
            idx,
            action: action.to_string(),
            depends_on: Vec::new(),
            state: JobState::Pending,
            attempt: 0,
            max_attempts: 1,
            lease_expires_ms: None,
            cancel_requested: false,
            timeout_ms: 3_600_000,
            started_at_ms: None,
            finished_at_ms: None,
            error: None,
            variables_json: "{}".into(),
            artifacts_json: "[]".into(),
            on_failure: JobFailure::Fail,
            labels: Default::default(),
        }
    }
}

/// What a job's failure does to its run (`jobs.on_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JobFailure {
    /// The run fails.
    #[default]
    Fail,
    /// A batch build with `ignore-failure`: the run does not fail for this job (its
    /// dependents are still skipped).
    Ignore,
    /// A build of a batch with `fast-fail`: the run fails and its other unfinished jobs stop.
    FailFast,
}

impl JobFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            JobFailure::Fail => "fail",
            JobFailure::Ignore => "ignore",
            JobFailure::FailFast => "fail_fast",
        }
    }

    pub fn parse(s: &str) -> Option<JobFailure> {
        match s {
            "fail" => Some(JobFailure::Fail),
            "ignore" => Some(JobFailure::Ignore),
            "fail_fast" => Some(JobFailure::FailFast),
            _ => None,
        }
    }
}

/// A stored job (one action of a run).
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub run_id: i64,
    pub idx: i64,
    pub action: String,
    pub depends_on: Vec<String>,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub lease_expires_ms: Option<i64>,
    pub cancel_requested: bool,
    pub timeout_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub error: Option<String>,
    pub variables_json: String,
    pub artifacts_json: String,
    /// What its failure does to the run.
    pub on_failure: JobFailure,
    /// Labels its agent must carry (from `Compute.Fleet`; docs/agents.md).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A pending or running job with what the scheduler needs of its run.
#[derive(Debug, Clone)]
pub struct ActiveJob {
    pub job: JobRow,
    pub repo_id: i64,
    pub workflow_file: String,
    pub run_mode: String,
    /// An approval gate: never leased (it waits for people, not for an agent).
    pub gate: bool,
    /// The owner of the run's repository (agent pools may allow all of an owner's).
    pub repo_owner: String,
}

pub(super) const RUN_COLS: &str =
    "id, repo_id, workflow, workflow_file, workflow_text, implicit_branch, \
    run_mode, branch, commit_sha, trigger_kind, state, created_at_ms, finished_at_ms, number";
pub(super) const JOB_COLS: &str =
    "id, run_id, idx, action, depends_on, state, attempt, max_attempts, \
    lease_expires_ms, cancel_requested, timeout_ms, started_at_ms, finished_at_ms, error, \
    variables, artifacts, on_failure, labels";

pub(super) fn run_from_row(row: &AnyRow) -> Result<RunRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        workflow: row.try_get("workflow")?,
        workflow_file: row.try_get("workflow_file")?,
        workflow_text: row.try_get("workflow_text")?,
        implicit_branch: row.try_get("implicit_branch")?,
        run_mode: row.try_get("run_mode")?,
        branch: row.try_get("branch")?,
        commit_sha: row.try_get("commit_sha")?,
        trigger_kind: row.try_get("trigger_kind")?,
        state: RunState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown run state {state:?}")))?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        number: row.try_get::<Option<i64>, _>("number")?.unwrap_or(0),
        pr_number: row.try_get("pr_number")?,
    })
}

pub(super) fn job_from_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    let state: String = row.try_get("state")?;
    let deps: String = row.try_get("depends_on")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        idx: row.try_get("idx")?,
        action: row.try_get("action")?,
        depends_on: serde_json::from_str(&deps)
            .map_err(|e| StoreError::Corrupt(format!("job dependencies: {e}")))?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown job state {state:?}")))?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?).unwrap_or(1),
        lease_expires_ms: row.try_get("lease_expires_ms")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        timeout_ms: row.try_get("timeout_ms")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        error: row.try_get("error")?,
        variables_json: row.try_get("variables")?,
        artifacts_json: row.try_get("artifacts")?,
        on_failure: {
            let f: String = row.try_get("on_failure")?;
            JobFailure::parse(&f)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown job failure mode {f:?}")))?
        },
        labels: {
            let l: String = row.try_get("labels")?;
            serde_json::from_str(&l).map_err(|e| StoreError::Corrupt(format!("job labels: {e}")))?
        },
    })
}

pub(super) fn prefixed(cols: &str, prefix: &str) -> String {
    cols.split(',')
        .map(|c| format!("{prefix}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores a run and its jobs in one transaction.
    pub async fn create_run(&self, run: &RunRow, jobs: &[JobRow]) -> Result<(), StoreError> {
        self.insert_run(run, jobs, &[], None, None, None)
            .await
            .map(|_| ())
    }

    /// Stores a run, its jobs and which of them are approval gates (`gates`: job ids) in one
    /// transaction, from push event `push_event` when given. False (and nothing written) when
    /// that event already has a run of the same workflow file.
    pub async fn create_gated_run(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        gates: &[i64],
        push_event: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .insert_run(run, jobs, gates, push_event, None, None)
            .await?
            .is_some())
    }

    /// Like [`Store::create_gated_run`], returning the run's number; with `claim`, only when
    /// the schedule's conditional update succeeds in the same transaction (`None` and nothing
    /// written when another process fired that slot).
    pub async fn create_numbered_run(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        gates: &[i64],
        push_event: Option<i64>,
        claim: Option<&ScheduleClaim>,
    ) -> Result<Option<i64>, StoreError> {
        self.insert_run(run, jobs, gates, push_event, claim, None)
            .await
    }

    /// Stores a run created from push event `event` and its jobs in one transaction. False
    /// (and nothing written) when that event already has a run of the same workflow file.
    pub async fn create_push_run(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        event: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .insert_run(run, jobs, &[], Some(event), None, None)
            .await?
            .is_some())
    }

    /// Stores a run of a PULLREQUEST trigger: pull request `pr_number`, fired by its event
    /// `pr_event` (a `pr_events` id). `None` (and nothing written) when that event already has
    /// a run of the same workflow file.
    pub async fn create_pr_run(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        gates: &[i64],
        pr_number: i64,
        pr_event: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.insert_run(run, jobs, gates, None, None, Some((pr_number, pr_event)))
            .await
    }

    /// The runs of pull request `pr_number` of repository `repo_id`, newest first.
    pub async fn pr_runs(&self, repo_id: i64, pr_number: i64) -> Result<Vec<RunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLS}, pr_number FROM runs WHERE repo_id = $1 AND pr_number = $2 ORDER BY id DESC"
        ))
        .bind(repo_id)
        .bind(pr_number)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    async fn insert_run(
        &self,
        run: &RunRow,
        jobs: &[JobRow],
        gates: &[i64],
        push_event: Option<i64>,
        claim: Option<&ScheduleClaim>,
        pr: Option<(i64, i64)>,
    ) -> Result<Option<i64>, StoreError> {
        // Write first (no read before the first write: SQLite could not upgrade the
        // transaction); the unique index on (push_event_id, workflow_file) refuses a second
        // run of the same event.
        let mut tx = self.pool.begin().await?;
        if let Some(claim) = claim {
            // The slot is this process's only if nobody moved `next_fire_at_ms` since it
            // was read (another server, or this one before a restart).
            let moved = sqlx::query(
                "UPDATE schedules SET next_fire_at_ms = $1, last_fired_at_ms = $2, last_run_id = $3 \
                 WHERE id = $4 AND next_fire_at_ms = $5",
            )
            .bind(claim.next_fire_at_ms)
            .bind(claim.fired_at_ms)
            .bind(run.id)
            .bind(claim.schedule_id)
            .bind(claim.due_at_ms)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 0 {
                return Ok(None);
            }
        }
        // The repository's counter: the row lock (PostgreSQL) or the write transaction
        // (SQLite) makes every number unique and sequential.
        let number: i64 = sqlx::query_scalar(
            "UPDATE repos SET run_counter = run_counter + 1 WHERE id = $1 RETURNING run_counter",
        )
        .bind(run.repo_id)
        .fetch_one(&mut *tx)
        .await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO runs ({RUN_COLS}, push_event_id, pr_number, pr_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(run.id)
        .bind(run.repo_id)
        .bind(&run.workflow)
        .bind(&run.workflow_file)
        .bind(&run.workflow_text)
        .bind(&run.implicit_branch)
        .bind(&run.run_mode)
        .bind(&run.branch)
        .bind(&run.commit_sha)
        .bind(&run.trigger_kind)
        .bind(run.state.as_str())
        .bind(run.created_at_ms)
        .bind(run.finished_at_ms)
        .bind(number)
        .bind(push_event)
        .bind(pr.map(|(number, _)| number))
        .bind(pr.map(|(_, event)| event))
        .execute(&mut *tx)
        .await;
        match inserted {
            // Another process created the same event's run first (unique index).
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(None),
            other => {
                other?;
            }
        }
        for job in jobs {
            let deps = serde_json::to_string(&job.depends_on)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(&format!(
                "INSERT INTO jobs ({JOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
            ))
            .bind(job.id)
            .bind(job.run_id)
            .bind(job.idx)
            .bind(&job.action)
            .bind(deps)
            .bind(job.state.as_str())
            .bind(i64::from(job.attempt))
            .bind(i64::from(job.max_attempts))
            .bind(job.lease_expires_ms)
            .bind(i64::from(job.cancel_requested))
            .bind(job.timeout_ms)
            .bind(job.started_at_ms)
            .bind(job.finished_at_ms)
            .bind(&job.error)
            .bind(&job.variables_json)
            .bind(&job.artifacts_json)
            .bind(job.on_failure.as_str())
            .bind(
                serde_json::to_string(&job.labels)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
            .execute(&mut *tx)
            .await?;
        }
        for gate in gates {
            sqlx::query("INSERT INTO approval_gates (job_id, run_id) VALUES ($1, $2)")
                .bind(gate)
                .bind(run.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(number))
    }

    /// Run `number` of repository `repo_id`.
    pub async fn run_by_number(
        &self,
        repo_id: i64,
        number: i64,
    ) -> Result<Option<RunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLS}, pr_number FROM runs WHERE repo_id = $1 AND number = $2"
        ))
        .bind(repo_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(run_from_row)
        .transpose()
    }

    /// Up to `limit` push events whose runs are not created yet, oldest first.
    pub async fn pending_push_events(&self, limit: i64) -> Result<Vec<PushEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, r.owner, r.name, e.ref_name, e.old_sha, e.new_sha, \
             COALESCE(u.username, e.pusher_name) AS username, e.created_at_ms FROM push_events e JOIN repos r ON r.id = e.repo_id \
             LEFT JOIN users u ON u.id = e.pusher_id WHERE e.runs_pending = 1 ORDER BY e.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PushEvent {
                    id: row.try_get("id")?,
                    repo: format!(
                        "{}/{}",
                        row.try_get::<String, _>("owner")?,
                        row.try_get::<String, _>("name")?
                    ),
                    ref_name: row.try_get("ref_name")?,
                    old_sha: row.try_get("old_sha")?,
                    new_sha: row.try_get("new_sha")?,
                    pusher: row.try_get("username")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Marks a push event's runs as created (the cursor moves past it).
    pub async fn push_event_done(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE push_events SET runs_pending = 0 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLS}, pr_number FROM runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(run_from_row)
        .transpose()
    }

    /// Runs of a repository, newest first.
    pub async fn list_runs(
        &self,
        repo_id: i64,
        branch: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let rows = match branch {
            Some(b) => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLS}, pr_number FROM runs WHERE repo_id = $1 AND branch = $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(repo_id)
                .bind(b)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {RUN_COLS}, pr_number FROM runs WHERE repo_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(repo_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(run_from_row).collect()
    }

    pub async fn runs_for_commit(
        &self,
        repo_id: i64,
        sha: &str,
    ) -> Result<Vec<RunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLS}, pr_number FROM runs WHERE repo_id = $1 AND commit_sha = $2 ORDER BY id"
        ))
        .bind(repo_id)
        .bind(sha)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    pub async fn set_run_state(
        &self,
        id: i64,
        state: RunState,
        finished_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE runs SET state = $1, finished_at_ms = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(finished_at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
