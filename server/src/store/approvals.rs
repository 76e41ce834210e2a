//! SQL for approval gates (migration 0012): which jobs are gates, their rounds, expiry and
//! condition notes, and every decision. Each change of a gate's job is a conditional update
//! on its state, in the same transaction as the decision that caused it.

use cove_api::JobState;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A gate's row.
#[derive(Debug, Clone)]
pub struct GateRow {
    pub job_id: i64,
    pub run_id: i64,
    /// How many times the gate opened (a retried run opens it again); 0: never.
    pub round: u32,
    pub opened_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub condition_note: Option<String>,
}

/// One recorded decision.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    pub id: i64,
    pub job_id: i64,
    pub round: u32,
    pub user_id: i64,
    pub user_name: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: String,
    pub created_at_ms: i64,
}

const GATE_COLS: &str = "job_id, run_id, round, opened_at_ms, expires_at_ms, condition_note";
const DECISION_COLS: &str =
    "id, job_id, round, user_id, user_name, decision, comment, created_at_ms";

fn gate_from_row(row: &AnyRow) -> Result<GateRow, StoreError> {
    Ok(GateRow {
        job_id: row.try_get("job_id")?,
        run_id: row.try_get("run_id")?,
        round: u32::try_from(row.try_get::<i64, _>("round")?).unwrap_or(0),
        opened_at_ms: row.try_get("opened_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        condition_note: row.try_get("condition_note")?,
    })
}

fn decision_from_row(row: &AnyRow) -> Result<DecisionRow, StoreError> {
    Ok(DecisionRow {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        round: u32::try_from(row.try_get::<i64, _>("round")?).unwrap_or(0),
        user_id: row.try_get("user_id")?,
        user_name: row.try_get("user_name")?,
        decision: row.try_get("decision")?,
        comment: row.try_get("comment")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// What a decision does to its gate's job, decided from the round's decisions.
pub type GateEnd = Option<(JobState, Option<String>)>;

impl Store {
    /// The gates of a run.
    pub async fn gates_of_run(&self, run_id: i64) -> Result<Vec<GateRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {GATE_COLS} FROM approval_gates WHERE run_id = $1"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(gate_from_row)
        .collect()
    }

    /// Every decision on the gates of a run, oldest first.
    pub async fn decisions_of_run(&self, run_id: i64) -> Result<Vec<DecisionRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {} FROM approval_decisions d JOIN approval_gates g ON g.job_id = d.job_id \
             WHERE g.run_id = $1 ORDER BY d.created_at_ms, d.id",
            DECISION_COLS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(decision_from_row)
        .collect()
    }

    /// pending → waiting_approval: the gate opens a new round that expires at `expires_ms`.
    /// False when the job was no longer pending.
    pub async fn open_gate(
        &self,
        job_id: i64,
        now_ms: i64,
        expires_ms: i64,
        note: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET state = 'waiting_approval', started_at_ms = $1, error = NULL \
             WHERE id = $2 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE approval_gates SET round = round + 1, opened_at_ms = $1, \
             expires_at_ms = $2, condition_note = $3 WHERE job_id = $4",
        )
        .bind(now_ms)
        .bind(expires_ms)
        .bind(note)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// pending → succeeded without waiting: a conditional gate whose condition is false;
    /// `note` says why. False when the job was no longer pending.
    pub async fn pass_gate(
        &self,
        job_id: i64,
        now_ms: i64,
        note: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', started_at_ms = $1, finished_at_ms = $1, \
             error = NULL WHERE id = $2 AND state = 'pending'",
        )
        .bind(now_ms)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE approval_gates SET round = round + 1, opened_at_ms = $1, \
             expires_at_ms = NULL, condition_note = $2 WHERE job_id = $3",
        )
        .bind(now_ms)
        .bind(note)
        .bind(job_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a decision on a waiting gate and, in the same transaction, ends the gate when
    /// `outcome` (given the round's decisions including this one, oldest first) says so.
    /// `None` when the gate was not waiting (nothing recorded); else what `outcome` said.
    /// Committed before it returns, so an acknowledged decision survives a crash.
    pub async fn decide_gate(
        &self,
        decision: &DecisionRow,
        outcome: impl FnOnce(&[DecisionRow]) -> GateEnd,
    ) -> Result<Option<GateEnd>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Write first: takes the write lock (SQLite) / the row lock (PostgreSQL), so
        // concurrent decisions on one gate are counted one after the other.
        let waiting = sqlx::query(
            "UPDATE jobs SET state = state WHERE id = $1 AND state = 'waiting_approval'",
        )
        .bind(decision.job_id)
        .execute(&mut *tx)
        .await?;
        if waiting.rows_affected() == 0 {
            return Ok(None);
        }
        let round: i64 = sqlx::query("SELECT round FROM approval_gates WHERE job_id = $1")
            .bind(decision.job_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("round")?;
        sqlx::query(&format!(
            "INSERT INTO approval_decisions ({DECISION_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(decision.id)
        .bind(decision.job_id)
        .bind(round)
        .bind(decision.user_id)
        .bind(&decision.user_name)
        .bind(&decision.decision)
        .bind(&decision.comment)
        .bind(decision.created_at_ms)
        .execute(&mut *tx)
        .await?;
        let so_far: Vec<DecisionRow> = sqlx::query(&format!(
            "SELECT {DECISION_COLS} FROM approval_decisions WHERE job_id = $1 AND round = $2 \
             ORDER BY created_at_ms, id"
        ))
        .bind(decision.job_id)
        .bind(round)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decision_from_row)
        .collect::<Result<_, _>>()?;
        let end = outcome(&so_far);
        if let Some((to, why)) = &end {
            // `pending`: an approved deploy action (deploy/) goes on as a job; it is no
            // longer a gate, so the scheduler leases it and no new round opens.
            let finished = (*to != cove_api::JobState::Pending).then_some(decision.created_at_ms);
            sqlx::query(
                "UPDATE jobs SET state = $1, error = $2, finished_at_ms = $3 \
                 WHERE id = $4 AND state = 'waiting_approval'",
            )
            .bind(to.as_str())
            .bind(why)
            .bind(finished)
            .bind(decision.job_id)
            .execute(&mut *tx)
            .await?;
            if *to == cove_api::JobState::Pending {
                sqlx::query("DELETE FROM approval_gates WHERE job_id = $1")
                    .bind(decision.job_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(Some(end))
    }

    /// Waiting gates whose round expired before `now_ms`.
    pub async fn expired_gates(&self, now_ms: i64) -> Result<Vec<GateRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {} FROM approval_gates g JOIN jobs j ON j.id = g.job_id \
             WHERE j.state = 'waiting_approval' AND g.expires_at_ms < $1",
            GATE_COLS
                .split(", ")
                .map(|c| format!("g.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(gate_from_row)
        .collect()
    }

    /// `(old, new)` of the push event a run was created from.
    pub async fn push_shas_of_run(
        &self,
        run_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT p.old_sha AS old_sha, p.new_sha AS new_sha FROM runs r \
             JOIN push_events p ON p.id = r.push_event_id WHERE r.id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((r.try_get("old_sha")?, r.try_get("new_sha")?))),
            None => Ok(None),
        }
    }

    /// Runs that have a gate still pending (a pass looks whether it can open: after a crash
    /// between a dependency's end and the gate's opening).
    pub async fn runs_with_pending_gates(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT g.run_id AS run_id FROM approval_gates g JOIN jobs j \
             ON j.id = g.job_id WHERE j.state = 'pending'",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("run_id").map_err(StoreError::from))
            .collect()
    }
}
