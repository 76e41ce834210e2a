//! SQL for mirrors (migration 0019): one row per mirror repository, its secrets sealed.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A stored mirror configuration (`secret_sealed` and `token_sealed` as sealed by
/// `runs::secrets::SecretKey`).
#[derive(Clone)]
pub struct MirrorRow {
    pub repo_id: i64,
    pub url: String,
    pub forge: String,
    pub secret_sealed: String,
    pub token_sealed: Option<String>,
    pub username: String,
    pub created_by: String,
    pub created_at_ms: i64,
    pub last_sync_at_ms: Option<i64>,
    pub last_sync_result: Option<String>,
}

impl std::fmt::Debug for MirrorRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorRow")
            .field("repo_id", &self.repo_id)
            .field("url", &self.url)
            .field("forge", &self.forge)
            .field("has_token", &self.token_sealed.is_some())
            .finish_non_exhaustive()
    }
}

const COLS: &str = "repo_id, url, forge, secret, token, username, created_by, created_at_ms, \
    last_sync_at_ms, last_sync_result";

fn from_row(row: &AnyRow) -> Result<MirrorRow, StoreError> {
    Ok(MirrorRow {
        repo_id: row.try_get("repo_id")?,
        url: row.try_get("url")?,
        forge: row.try_get("forge")?,
        secret_sealed: row.try_get("secret")?,
        token_sealed: row.try_get("token")?,
        username: row.try_get("username")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_sync_at_ms: row.try_get("last_sync_at_ms")?,
        last_sync_result: row.try_get("last_sync_result")?,
    })
}

impl Store {
    /// The mirror configuration of a repository, if it is a mirror.
    pub async fn mirror(&self, repo_id: i64) -> Result<Option<MirrorRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM repo_mirrors WHERE repo_id = $1"
        ))
        .bind(repo_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Creates or replaces a repository's mirror configuration (its sync status is kept).
    pub async fn set_mirror(&self, m: &MirrorRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO repo_mirrors (repo_id, url, forge, secret, token, username, created_by, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (repo_id) DO UPDATE SET url = excluded.url, forge = excluded.forge, \
             secret = excluded.secret, token = excluded.token, username = excluded.username",
        )
        .bind(m.repo_id)
        .bind(&m.url)
        .bind(&m.forge)
        .bind(&m.secret_sealed)
        .bind(&m.token_sealed)
        .bind(&m.username)
        .bind(&m.created_by)
        .bind(m.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes a repository an ordinary one again; false if it was not a mirror.
    pub async fn delete_mirror(&self, repo_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM repo_mirrors WHERE repo_id = $1")
            .bind(repo_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records how a mirror's last fetch ended.
    pub async fn mirror_synced(
        &self,
        repo_id: i64,
        at_ms: i64,
        result: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE repo_mirrors SET last_sync_at_ms = $1, last_sync_result = $2 WHERE repo_id = $3",
        )
        .bind(at_ms)
        .bind(result)
        .bind(repo_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
