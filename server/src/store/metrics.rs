//! Counts read at scrape time by `/metrics` and the readiness check by `/readyz`.

use sqlx::Row;

use super::{Store, StoreError};

/// Row counts by state, read in one pass when `/metrics` is scraped.
#[derive(Debug, Default, Clone)]
pub struct StateCounts {
    /// `(state, count)` of environments.
    pub environments: Vec<(String, i64)>,
    /// `(state, count)` of runs.
    pub runs: Vec<(String, i64)>,
    /// `(state, count)` of jobs.
    pub jobs: Vec<(String, i64)>,
    /// Registered agents that are not revoked.
    pub agents_registered: i64,
    /// Registered agents seen (any authenticated call) since `seen_since` seconds.
    pub agents_active: i64,
}

impl Store {
    async fn count_by_state(&self, table: &str) -> Result<Vec<(String, i64)>, StoreError> {
        // `table` is one of three constants below, never input.
        let rows = sqlx::query(&format!(
            "SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("state")?, row.try_get("n")?)))
            .collect()
    }

    /// Environments, runs and jobs by state, and agent counts.
    pub async fn state_counts(&self, seen_since: i64) -> Result<StateCounts, StoreError> {
        let agents = sqlx::query(
            "SELECT COUNT(*) AS n, \
             COALESCE(SUM(CASE WHEN last_seen_at >= $1 THEN 1 ELSE 0 END), 0) AS active \
             FROM agents WHERE revoked_at IS NULL",
        )
        .bind(seen_since)
        .fetch_one(&self.pool)
        .await?;
        Ok(StateCounts {
            environments: self.count_by_state("environments").await?,
            runs: self.count_by_state("runs").await?,
            jobs: self.count_by_state("jobs").await?,
            agents_registered: agents.try_get("n")?,
            agents_active: agents.try_get("active")?,
        })
    }

    /// Registered, not revoked agents seen at or after `seen_since` (seconds).
    pub async fn active_agents(&self, seen_since: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM agents WHERE revoked_at IS NULL AND last_seen_at >= $1",
        )
        .bind(seen_since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
