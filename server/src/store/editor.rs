//! SQL for the editor of environments and users' default editor (migration 0023_editor).

use cove_api::Editor;
use sqlx::Row;

use super::{Store, StoreError};

fn parse(text: Option<String>) -> Editor {
    text.as_deref()
        .and_then(Editor::parse)
        .unwrap_or(Editor::Terminal)
}

impl Store {
    /// The editor an environment was created with (`terminal` for unknown ids).
    pub async fn env_editor(&self, env_id: &str) -> Result<Editor, StoreError> {
        let row = sqlx::query("SELECT editor FROM environments WHERE id = $1")
            .bind(env_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => parse(r.try_get::<Option<String>, _>(0)?),
            None => Editor::Terminal,
        })
    }

    /// Records an environment's editor (at create).
    pub async fn set_env_editor(&self, env_id: &str, editor: Editor) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET editor = $1 WHERE id = $2")
            .bind(editor.as_str())
            .bind(env_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user's default editor for new environments (`terminal` when never set).
    pub async fn user_editor(&self, user_id: i64) -> Result<Editor, StoreError> {
        let row = sqlx::query("SELECT editor FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => parse(r.try_get::<Option<String>, _>(0)?),
            None => Editor::Terminal,
        })
    }

    /// Sets the user's default editor; false when no such user.
    pub async fn set_user_editor(&self, user_id: i64, editor: Editor) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET editor = $1 WHERE id = $2")
            .bind(editor.as_str())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
