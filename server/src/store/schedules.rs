//! SQL for SCHEDULE triggers (migration 0016): one row per workflow file and branch, with the
//! stored next fire time. Firing moves `next_fire_at_ms` by a conditional update in the run's
//! own transaction (`Store::create_numbered_run` with a [`ScheduleClaim`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub id: i64,
    pub repo_id: i64,
    pub workflow_file: String,
    pub branch: String,
    /// The workflow's `Name`.
    pub workflow: String,
    pub expression: String,
    /// `None`: the expression names no later minute.
    pub next_fire_at_ms: Option<i64>,
    pub last_fired_at_ms: Option<i64>,
    pub last_run_id: Option<i64>,
    pub updated_at_ms: i64,
}

/// Firing the slot `due_at_ms` of schedule `schedule_id`: it becomes `next_fire_at_ms`.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleClaim {
    pub schedule_id: i64,
    pub due_at_ms: i64,
    pub next_fire_at_ms: Option<i64>,
    pub fired_at_ms: i64,
}

const COLS: &str = "id, repo_id, workflow_file, branch, workflow, expression, next_fire_at_ms, \
    last_fired_at_ms, last_run_id, updated_at_ms";

fn from_row(row: &AnyRow) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        workflow_file: row.try_get("workflow_file")?,
        branch: row.try_get("branch")?,
        workflow: row.try_get("workflow")?,
        expression: row.try_get("expression")?,
        next_fire_at_ms: row.try_get("next_fire_at_ms")?,
        last_fired_at_ms: row.try_get("last_fired_at_ms")?,
        last_run_id: row.try_get("last_run_id")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

impl Store {
    /// Makes `schedules` (rows with `id`, file, workflow name, expression and the next fire
    /// time computed now) the schedules of `branch`: new ones are added, ones whose
    /// expression changed get the new next time, unchanged ones keep theirs, and the branch's
    /// other schedules are removed. One transaction.
    pub async fn replace_branch_schedules(
        &self,
        repo_id: i64,
        branch: &str,
        schedules: &[ScheduleRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for s in schedules {
            sqlx::query(&format!(
                "INSERT INTO schedules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8) \
                 ON CONFLICT (repo_id, workflow_file, branch) DO UPDATE SET \
                 workflow = excluded.workflow, \
                 next_fire_at_ms = CASE WHEN schedules.expression = excluded.expression \
                     THEN schedules.next_fire_at_ms ELSE excluded.next_fire_at_ms END, \
                 expression = excluded.expression, updated_at_ms = excluded.updated_at_ms"
            ))
            .bind(s.id)
            .bind(repo_id)
            .bind(&s.workflow_file)
            .bind(branch)
            .bind(&s.workflow)
            .bind(&s.expression)
            .bind(s.next_fire_at_ms)
            .bind(s.updated_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        let keep: Vec<String> = (0..schedules.len())
            .map(|i| format!("${}", i + 3))
            .collect();
        let sql = if keep.is_empty() {
            "DELETE FROM schedules WHERE repo_id = $1 AND branch = $2".to_string()
        } else {
            format!(
                "DELETE FROM schedules WHERE repo_id = $1 AND branch = $2 AND workflow_file NOT IN ({})",
                keep.join(", ")
            )
        };
        let mut q = sqlx::query(&sql).bind(repo_id).bind(branch);
        for s in schedules {
            q = q.bind(&s.workflow_file);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Schedules due at `now_ms`, earliest first.
    pub async fn due_schedules(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<ScheduleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM schedules WHERE next_fire_at_ms IS NOT NULL AND next_fire_at_ms <= $1 \
             ORDER BY next_fire_at_ms, id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// The schedules of a repository, by file and branch.
    pub async fn repo_schedules(&self, repo_id: i64) -> Result<Vec<ScheduleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM schedules WHERE repo_id = $1 ORDER BY workflow_file, branch"
        ))
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(from_row)
        .collect()
    }

    /// Moves a schedule past slot `due_at_ms` without a run (its workflow is gone or no
    /// longer valid at the branch head); false when another process moved it first.
    pub async fn skip_schedule(
        &self,
        id: i64,
        due_at_ms: i64,
        next_fire_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE schedules SET next_fire_at_ms = $1 WHERE id = $2 AND next_fire_at_ms = $3",
        )
        .bind(next_fire_at_ms)
        .bind(id)
        .bind(due_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets a schedule's next fire time (tests and operators: "fire now").
    pub async fn set_schedule_next(
        &self,
        id: i64,
        next_fire_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE schedules SET next_fire_at_ms = $1 WHERE id = $2")
            .bind(next_fire_at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
