//! SQL for re-checking the credential of a long-lived stream (`crate::live_auth`): the rows
//! behind a token, a browser session or a user, looked up by id.

use sqlx::Row;

use super::{token_from_row, user_from_row, SessionRow, Store, StoreError, TokenRow, UserRow};
use super::{TOKEN_COLS, USER_COLS};

impl Store {
    /// The user with this id, if it still exists.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The token with this id (expired or not), if it was not revoked.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// The browser session with this id (expired or not), if it was not ended.
    pub async fn session_by_id(&self, id: i64) -> Result<Option<SessionRow>, StoreError> {
        let row =
            sqlx::query("SELECT id, user_id, created_at, expires_at FROM sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRow {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }
}
