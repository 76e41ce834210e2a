//! SQL for workflow errors and sealed secrets.

use sqlx::Row;

use super::{Store, StoreError};

/// A stored secret: its sealed value and whether runs of every branch get it.
#[derive(Clone)]
pub struct SecretRow {
    pub name: String,
    pub sealed: String,
    /// Given to runs of every branch, not only the default branch's.
    pub all_branches: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored workflow error.
#[derive(Debug, Clone)]
pub struct WorkflowErrorRow {
    pub id: i64,
    pub repo_id: i64,
    pub file: String,
    pub branch: String,
    pub commit_sha: String,
    pub message: String,
    pub created_at_ms: i64,
}

impl Store {
    pub async fn insert_workflow_error(&self, e: &WorkflowErrorRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflow_errors (id, repo_id, file, branch, commit_sha, message, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id)
        .bind(e.repo_id)
        .bind(&e.file)
        .bind(&e.branch)
        .bind(&e.commit_sha)
        .bind(&e.message)
        .bind(e.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn list_workflow_errors(
        &self,
        repo_id: i64,
        limit: i64,
    ) -> Result<Vec<WorkflowErrorRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, repo_id, file, branch, commit_sha, message, created_at_ms FROM workflow_errors \
             WHERE repo_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(repo_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WorkflowErrorRow {
                    id: row.try_get("id")?,
                    repo_id: row.try_get("repo_id")?,
                    file: row.try_get("file")?,
                    branch: row.try_get("branch")?,
                    commit_sha: row.try_get("commit_sha")?,
                    message: row.try_get("message")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect()
    }

    /// Creates or replaces a sealed secret.
    pub async fn put_secret(
        &self,
        repo_id: i64,
        name: &str,
        sealed: &str,
        all_branches: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE secrets SET sealed = $1, all_branches = $2, updated_at = $3 WHERE repo_id = $4 AND name = $5",
        )
        .bind(sealed)
        .bind(i64::from(all_branches))
        .bind(now)
        .bind(repo_id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO secrets (repo_id, name, sealed, all_branches, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(repo_id)
            .bind(name)
            .bind(sealed)
            .bind(i64::from(all_branches))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every secret of a repository (sealed), by name.
    pub async fn list_secrets(&self, repo_id: i64) -> Result<Vec<SecretRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, sealed, all_branches, created_at, updated_at FROM secrets WHERE repo_id = $1 ORDER BY name",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SecretRow {
                    name: row.try_get("name")?,
                    sealed: row.try_get("sealed")?,
                    all_branches: row.try_get::<i64, _>("all_branches")? != 0,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_secret(&self, repo_id: i64, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM secrets WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
