//! Retention: per-repository settings and the runs they expire.

use sqlx::Row;

use super::{Store, StoreError};
use crate::config::Retention;

/// Most runs one retention pass deletes per repository (the next pass continues).
pub const RETENTION_BATCH: usize = 1000;

impl Store {
    /// The repository's own retention, if it set one.
    pub async fn repo_retention(&self, repo_id: i64) -> Result<Option<Retention>, StoreError> {
        let row = sqlx::query("SELECT days, runs FROM repo_retention WHERE repo_id = $1")
            .bind(repo_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let days: i64 = row.try_get("days")?;
            let runs: i64 = row.try_get("runs")?;
            Ok(Retention {
                days: u32::try_from(days).unwrap_or(u32::MAX),
                runs: u32::try_from(runs).unwrap_or(u32::MAX),
            })
        })
        .transpose()
    }

    /// Sets (replaces) the repository's retention.
    pub async fn set_repo_retention(
        &self,
        repo_id: i64,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM repo_retention WHERE repo_id = $1")
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO repo_retention (repo_id, days, runs) VALUES ($1, $2, $3)")
            .bind(repo_id)
            .bind(i64::from(retention.days))
            .bind(i64::from(retention.runs))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Finished runs of the repository that `retention` expires at `now_ms`: older than
    /// `days`, or beyond the newest `runs` finished ones. At most [`RETENTION_BATCH`].
    /// Queued and running runs are never expired.
    pub async fn expired_runs(
        &self,
        repo_id: i64,
        retention: Retention,
        now_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_at_ms FROM runs \
             WHERE repo_id = $1 AND state <> 'queued' AND state <> 'running' \
             ORDER BY created_at_ms DESC, id DESC",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        let cutoff = if retention.days == 0 {
            i64::MIN
        } else {
            now_ms.saturating_sub(i64::from(retention.days) * 86_400_000)
        };
        let mut expired = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let created: i64 = row.try_get("created_at_ms")?;
            let beyond_count = retention.runs != 0 && i >= retention.runs as usize;
            if beyond_count || created < cutoff {
                expired.push(row.try_get("id")?);
                if expired.len() >= RETENTION_BATCH {
                    break;
                }
            }
        }
        Ok(expired)
    }

    /// Every run of a repository (for removing its files when the repository goes).
    pub async fn run_ids_of_repo(&self, repo_id: i64) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM runs WHERE repo_id = $1")
            .bind(repo_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("id").map_err(StoreError::from))
            .collect()
    }

    /// Deletes runs with their jobs and logs (artifact files are the caller's).
    pub async fn delete_runs(&self, run_ids: &[i64]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in run_ids {
            for sql in [
                "DELETE FROM job_logs WHERE job_id IN (SELECT id FROM jobs WHERE run_id = $1)",
                "DELETE FROM run_reports WHERE run_id = $1",
                "DELETE FROM jobs WHERE run_id = $1",
                "DELETE FROM runs WHERE id = $1",
            ] {
                sqlx::query(sql).bind(id).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Characters of log text stored for a job with sequence numbers in `seqs` (one attempt's
    /// range) and the highest such sequence number (-1: none).
    pub async fn job_log_usage(
        &self,
        job_id: i64,
        seqs: std::ops::Range<i64>,
    ) -> Result<(u64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(LENGTH(text)), 0) AS bytes, COALESCE(MAX(seq), -1) AS max_seq \
             FROM job_logs WHERE job_id = $1 AND seq >= $2 AND seq < $3",
        )
        .bind(job_id)
        .bind(seqs.start)
        .bind(seqs.end)
        .fetch_one(&self.pool)
        .await?;
        let bytes: i64 = row.try_get("bytes")?;
        Ok((u64::try_from(bytes).unwrap_or(0), row.try_get("max_seq")?))
    }
}
