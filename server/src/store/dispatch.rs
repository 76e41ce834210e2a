//! SQL for batched dispatch (issue 19 "Dispatch"): the leases of one placement round and the
//! finish reports taken together are each one transaction (one commit, one fsync on SQLite)
//! instead of one per job. docs/runs.md "Dispatch".

use cove_api::{JobState, RunState};

use super::{Store, StoreError};

/// One job of a placement round: leased by `agent` (`None`: the embedded agent).
#[derive(Debug, Clone, Copy)]
pub struct LeaseWrite {
    pub job_id: i64,
    pub run_id: i64,
    pub agent: Option<i64>,
}

/// One finish report's write ([`Store::finish_job`]).
#[derive(Debug, Clone)]
pub struct FinishWrite {
    pub job_id: i64,
    pub attempt: u32,
    pub to: JobState,
    pub error: Option<String>,
    pub variables_json: String,
    pub now_ms: i64,
    pub digest: String,
}

impl Store {
    /// pending → running for every job of `batch` in one transaction, each with a new attempt
    /// (the conditional update of [`Store::lease_job`]); the runs of leased jobs that were
    /// still `queued` become `running` in the same transaction (what `settle_run` derives
    /// for a run with a running job). Per job: its attempt, `None` when it was no longer
    /// pending (another replica or a cancel took it).
    pub async fn lease_jobs(
        &self,
        batch: &[LeaseWrite],
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<Vec<Option<u32>>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        if batch.is_empty() {
            return Ok(out);
        }
        let mut tx = self.pool.begin().await?;
        for l in batch {
            let row = sqlx::query(
                "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_expires_ms = $1, \
                 started_at_ms = $2, finished_at_ms = NULL, agent_id = $4 \
                 WHERE id = $3 AND state = 'pending' RETURNING attempt",
            )
            .bind(expires_ms)
            .bind(now_ms)
            .bind(l.job_id)
            .bind(l.agent)
            .fetch_optional(&mut *tx)
            .await?;
            let attempt = match row {
                Some(row) => {
                    use sqlx::Row;
                    let a: i64 = row.try_get("attempt")?;
                    Some(u32::try_from(a).unwrap_or(0))
                }
                None => None,
            };
            if attempt.is_some() {
                sqlx::query("UPDATE runs SET state = $1 WHERE id = $2 AND state = $3")
                    .bind(RunState::Running.as_str())
                    .bind(l.run_id)
                    .bind(RunState::Queued.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            out.push(attempt);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// [`Store::finish_job`] for every report of `batch` in one transaction. Per report:
    /// whether it ended its (running) attempt.
    pub async fn finish_jobs(&self, batch: &[FinishWrite]) -> Result<Vec<bool>, StoreError> {
        let mut out = Vec::with_capacity(batch.len());
        if batch.is_empty() {
            return Ok(out);
        }
        let mut tx = self.pool.begin().await?;
        for f in batch {
            let done = sqlx::query(
                "UPDATE jobs SET state = $1, error = COALESCE($2, error), variables = $3, \
                 finished_at_ms = $4, lease_expires_ms = NULL, finish_digest = $5 \
                 WHERE id = $6 AND state = 'running' AND attempt = $7",
            )
            .bind(f.to.as_str())
            .bind(f.error.as_deref())
            .bind(&f.variables_json)
            .bind(f.now_ms)
            .bind(&f.digest)
            .bind(f.job_id)
            .bind(i64::from(f.attempt))
            .execute(&mut *tx)
            .await?;
            out.push(done.rows_affected() > 0);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// [`Store::set_run_state`] for several runs in one transaction.
    pub async fn set_run_states(
        &self,
        states: &[(i64, RunState, Option<i64>)],
    ) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, state, finished_at_ms) in states {
            sqlx::query("UPDATE runs SET state = $1, finished_at_ms = $2 WHERE id = $3")
                .bind(state.as_str())
                .bind(*finished_at_ms)
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
