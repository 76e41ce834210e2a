//! SQL for run reports (migration 0026_reports): the summary of each test or coverage report
//! a job produced, as `cove_api::RunReport` JSON.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Replaces the reports of `job_id` with `reports` ((name, JSON) pairs).
    pub async fn set_job_reports(
        &self,
        run_id: i64,
        job_id: i64,
        reports: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM run_reports WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        for (name, json) in reports {
            sqlx::query(
                "INSERT INTO run_reports (id, run_id, job_id, name, report_json, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(super::next_id())
            .bind(run_id)
            .bind(job_id)
            .bind(name)
            .bind(json)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The reports of a run as stored JSON, in the order they were stored.
    pub async fn run_reports(&self, run_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT report_json FROM run_reports WHERE run_id = $1 ORDER BY id")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("report_json")
                    .map_err(StoreError::from)
            })
            .collect()
    }
}
