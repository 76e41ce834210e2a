//! SQL for users' personal settings (migration 0022_dotfiles).

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// The user's dotfiles repository, if set.
    pub async fn user_dotfiles(&self, user_id: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT dotfiles FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }

    /// Sets (or, with `None`, clears) the user's dotfiles repository; false when no such user.
    pub async fn set_user_dotfiles(
        &self,
        user_id: i64,
        dotfiles: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET dotfiles = $1 WHERE id = $2")
            .bind(dotfiles)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
