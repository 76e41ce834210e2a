//! SQL for account changes: disabling and enabling a user, changing a password. Both end the
//! user's browser sessions in the same transaction; tokens stay, but a disabled user's tokens
//! are refused (`auth` checks [`super::UserRow::disabled`] on every lookup).

use super::{now_secs, Store, StoreError};

impl Store {
    /// Disables (`true`) or enables (`false`) the account. Disabling deletes its sessions.
    /// Returns false when no such user exists.
    pub async fn set_user_disabled(
        &self,
        user_id: i64,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(now_secs))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces the password hash and ends every browser session of the user.
    pub async fn set_password_hash(
        &self,
        user_id: i64,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
