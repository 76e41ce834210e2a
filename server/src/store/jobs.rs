//! SQL for jobs: reads, leases and their renewal, ends and requeues, cancels, artifacts and
//! log lines.

use cove_api::{JobLogLine, JobState, LogStreamKind};
use sqlx::Row;

use super::{Store, StoreError};

use super::runs::{job_from_row, prefixed, JOB_COLS};
use super::{ActiveJob, JobRow};

impl Store {
    pub async fn jobs_of_run(&self, run_id: i64) -> Result<Vec<JobRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE run_id = $1 ORDER BY idx"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// [`Store::jobs_of_run`] of several runs in one query (in chunks of 500 ids): each
    /// run's jobs in order; a run without jobs is absent.
    pub async fn jobs_of_runs(
        &self,
        run_ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<JobRow>>, StoreError> {
        let mut out: std::collections::HashMap<i64, Vec<JobRow>> = Default::default();
        for chunk in run_ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {JOB_COLS} FROM jobs WHERE run_id IN ({}) ORDER BY run_id, idx",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let job = job_from_row(&row)?;
                out.entry(job.run_id).or_default().push(job);
            }
        }
        Ok(out)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>, StoreError> {
        sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// Every pending, running or waiting job, oldest run first, with its run's scheduling data.
    pub async fn active_jobs(&self) -> Result<Vec<ActiveJob>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {}, r.repo_id AS r_repo_id, r.workflow_file AS r_workflow_file, \
             r.run_mode AS r_run_mode, \
             (SELECT COUNT(*) FROM approval_gates g WHERE g.job_id = j.id) AS gate_count, \
             p.owner AS p_owner \
             FROM jobs j JOIN runs r ON r.id = j.run_id JOIN repos p ON p.id = r.repo_id \
             WHERE j.state IN ('pending', 'running', 'waiting_approval') ORDER BY j.run_id, j.idx",
            prefixed(JOB_COLS, "j")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ActiveJob {
                    job: job_from_row(row)?,
                    repo_id: row.try_get("r_repo_id")?,
                    workflow_file: row.try_get("r_workflow_file")?,
                    run_mode: row.try_get("r_run_mode")?,
                    gate: row.try_get::<i64, _>("gate_count")? > 0,
                    repo_owner: row.try_get("p_owner")?,
                })
            })
            .collect()
    }

    /// pending → running with a new attempt, leased by `agent_id` (`None`: the embedded
    /// agent). `None` when the job was no longer pending.
    pub async fn lease_job(
        &self,
        id: i64,
        now_ms: i64,
        expires_ms: i64,
        agent_id: Option<i64>,
    ) -> Result<Option<u32>, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_expires_ms = $1, \
             started_at_ms = $2, finished_at_ms = NULL, agent_id = $4 \
             WHERE id = $3 AND state = 'pending'",
        )
        .bind(expires_ms)
        .bind(now_ms)
        .bind(id)
        .bind(agent_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(self.job(id).await?.map(|j| j.attempt))
    }

    /// Extends the lease of the running `attempt`; `None` when that attempt is stale.
    pub async fn renew_lease(
        &self,
        id: i64,
        attempt: u32,
        expires_ms: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = $1 WHERE id = $2 AND attempt = $3 AND state = 'running'",
        )
        .bind(expires_ms)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.job(id).await
    }

    /// True when `attempt` is the job's current, running attempt.
    pub async fn attempt_is_current(&self, id: i64, attempt: u32) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(i64::from(attempt))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Ends a job that is in `from` (and, when given, at `attempt`). False when it was not.
    #[allow(clippy::too_many_arguments)]
    pub async fn end_job(
        &self,
        id: i64,
        from: JobState,
        attempt: Option<u32>,
        to: JobState,
        error: Option<&str>,
        variables_json: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, error = COALESCE($2, error), \
             variables = COALESCE($3, variables), finished_at_ms = $4, lease_expires_ms = NULL \
             WHERE id = $5 AND state = $6 AND ($7 < 0 OR attempt = $7)",
        )
        .bind(to.as_str())
        .bind(error)
        .bind(variables_json)
        .bind(now_ms)
        .bind(id)
        .bind(from.as_str())
        .bind(attempt.map(i64::from).unwrap_or(-1))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends the running `attempt` with the agent's finish report (its digest is kept so the
    /// same report sent again is recognized). False when that attempt was not running.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_job(
        &self,
        id: i64,
        attempt: u32,
        to: JobState,
        error: Option<&str>,
        variables_json: &str,
        now_ms: i64,
        digest: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, error = COALESCE($2, error), variables = $3, \
             finished_at_ms = $4, lease_expires_ms = NULL, finish_digest = $5 \
             WHERE id = $6 AND state = 'running' AND attempt = $7",
        )
        .bind(to.as_str())
        .bind(error)
        .bind(variables_json)
        .bind(now_ms)
        .bind(digest)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// running attempt → pending again because its finish report asked for a retry (the
    /// report's digest is kept like [`Store::finish_job`]).
    pub async fn requeue_finished(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
        digest: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_expires_ms = NULL, error = $1, \
             finish_digest = $2 WHERE id = $3 AND attempt = $4 AND state = 'running'",
        )
        .bind(error)
        .bind(digest)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// `(attempt, digest)` of the finish report that ended the job's last attempt, if any.
    pub async fn finish_digest(&self, id: i64) -> Result<Option<(u32, String)>, StoreError> {
        let row = sqlx::query("SELECT attempt, finish_digest FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let digest: Option<String> = row.try_get("finish_digest")?;
        let attempt = u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0);
        Ok(digest.map(|d| (attempt, d)))
    }

    /// running attempt → pending again (a retry); keeps the attempt count.
    pub async fn requeue_job(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_expires_ms = NULL, error = $1 \
             WHERE id = $2 AND attempt = $3 AND state = 'running'",
        )
        .bind(error)
        .bind(id)
        .bind(i64::from(attempt))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Resets a run's ended jobs for a retry (all jobs back to pending, attempts kept).
    /// Every job of the run that did not succeed back to `pending`. A job that was approved
    /// through a gate that then closed (an approved deploy action, deploy/) becomes a gate
    /// again, one round past its last decisions: a retry asks its approvers again, as a
    /// re-run of a protected deployment does on GitHub.
    pub async fn reset_run_jobs(&self, run_id: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO approval_gates (job_id, run_id, round) \
             SELECT j.id, j.run_id, (SELECT MAX(d.round) FROM approval_decisions d WHERE d.job_id = j.id) \
             FROM jobs j WHERE j.run_id = $1 AND j.state <> 'succeeded' \
             AND EXISTS (SELECT 1 FROM approval_decisions d WHERE d.job_id = j.id) \
             AND NOT EXISTS (SELECT 1 FROM approval_gates g WHERE g.job_id = j.id)",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET state = 'pending', cancel_requested = 0, error = NULL, \
             lease_expires_ms = NULL, finished_at_ms = NULL WHERE run_id = $1 AND state <> 'succeeded'",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn request_cancel(&self, job_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET cancel_requested = 1 WHERE id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves the lease end of every job leased to a registered agent to at least `until_ms`
    /// (at start-up: the agents could not heartbeat while the server was down).
    pub async fn extend_agent_leases(&self, until_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = $1 WHERE state = 'running' \
             AND agent_id IS NOT NULL AND lease_expires_ms < $1",
        )
        .bind(until_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Ends the leases of the embedded agent's running jobs now (at server start: the embedded
    /// agent that held them died with the previous process), so the reaper's next pass retries
    /// or ends them.
    pub async fn expire_embedded_leases(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_ms = 0 WHERE state = 'running' AND agent_id IS NULL",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Running jobs whose lease ended before `now_ms`.
    pub async fn expired_leases(&self, now_ms: i64) -> Result<Vec<JobRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state = 'running' AND lease_expires_ms < $1"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// Adds `name` to the job's artifact list (once). Safe against concurrent uploads, across
    /// processes too: the transaction writes the row first (SQLite's write lock, PostgreSQL's
    /// row lock), so the list it reads next is the latest committed one.
    pub async fn add_job_artifact(&self, id: i64, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE jobs SET artifacts = artifacts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let json: String = sqlx::query("SELECT artifacts FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("artifacts")?;
        let mut names: Vec<String> = serde_json::from_str(&json)
            .map_err(|e| StoreError::Corrupt(format!("job artifacts: {e}")))?;
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
            let json =
                serde_json::to_string(&names).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("UPDATE jobs SET artifacts = $1 WHERE id = $2")
                .bind(json)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends log lines; a line already stored (same seq) is ignored, so resends are safe.
    pub async fn append_logs(&self, job_id: i64, lines: &[JobLogLine]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for line in lines {
            sqlx::query(
                "INSERT INTO job_logs (job_id, seq, stream, ts, text) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (job_id, seq) DO NOTHING",
            )
            .bind(job_id)
            .bind(i64::try_from(line.seq).unwrap_or(i64::MAX))
            .bind(line.stream.as_str())
            .bind(i64::try_from(line.ts).unwrap_or(0))
            .bind(&line.text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lines with `seq > after` (all when `None`), in order.
    pub async fn job_logs(
        &self,
        job_id: i64,
        after: Option<u64>,
        limit: i64,
    ) -> Result<Vec<JobLogLine>, StoreError> {
        let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT seq, stream, ts, text FROM job_logs WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let stream: String = row.try_get("stream")?;
                Ok(JobLogLine {
                    seq: u64::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
                    stream: LogStreamKind::parse(&stream)
                        .ok_or_else(|| StoreError::Corrupt(format!("log stream {stream:?}")))?,
                    ts: u64::try_from(row.try_get::<i64, _>("ts")?).unwrap_or(0),
                    text: row.try_get("text")?,
                })
            })
            .collect()
    }
}
