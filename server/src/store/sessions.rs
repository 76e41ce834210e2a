//! SQL for browser sessions (web UI login). Only hashes of session secrets are stored.

use sqlx::Row;

use super::{next_id, now_secs, Store, StoreError, UserRow};

/// A stored session (without its hash).
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub created_at: i64,
    /// Seconds since the epoch; the session is refused from then on.
    pub expires_at: i64,
}

impl Store {
    /// Stores a session for `user_id` whose secret hashes to `session_hash`.
    pub async fn create_session(
        &self,
        user_id: i64,
        session_hash: &str,
        expires_at: i64,
    ) -> Result<SessionRow, StoreError> {
        let row = SessionRow {
            id: next_id(),
            user_id,
            created_at: now_secs(),
            expires_at,
        };
        sqlx::query(
            "INSERT INTO sessions (id, user_id, session_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.id)
        .bind(user_id)
        .bind(session_hash)
        .bind(row.created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// The session with this hash and its user, whether expired or not.
    pub async fn session_by_hash(
        &self,
        session_hash: &str,
    ) -> Result<Option<(SessionRow, UserRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.user_id, s.created_at, s.expires_at, \
                    u.username, u.password_hash, u.is_admin, u.disabled_at, u.email \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.session_hash = $1",
        )
        .bind(session_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let session = SessionRow {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        };
        let user = UserRow {
            id: session.user_id,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
            email: row.try_get("email")?,
        };
        Ok(Some((session, user)))
    }

    /// Moves a session's expiry (sliding renewal while it is used).
    pub async fn renew_session(&self, session_id: i64, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET expires_at = $1 WHERE id = $2")
            .bind(expires_at)
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session (logout). True when it existed.
    pub async fn delete_session(&self, session_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes sessions that expired before `now` (seconds); returns how many.
    pub async fn delete_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
