//! SQL for package configurations (CodeArtifact access per repository or
//! workflow environment).

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// (environment, JSON) pairs of a repository, `""` = the default.
    pub async fn list_package_configs(
        &self,
        repo_id: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT environment, config FROM package_configs WHERE repo_id = $1 ORDER BY environment",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Creates or replaces the configuration of `environment` (`""`: default).
    pub async fn put_package_config(
        &self,
        repo_id: i64,
        environment: &str,
        config: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE package_configs SET config = $1, updated_at = $2 WHERE repo_id = $3 AND environment = $4",
        )
        .bind(config)
        .bind(now)
        .bind(repo_id)
        .bind(environment)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO package_configs (repo_id, environment, config, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(repo_id)
            .bind(environment)
            .bind(config)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a configuration was deleted.
    pub async fn delete_package_config(
        &self,
        repo_id: i64,
        environment: &str,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM package_configs WHERE repo_id = $1 AND environment = $2")
                .bind(repo_id)
                .bind(environment)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }
}
