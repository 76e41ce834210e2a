//! SQL for the sweeps after an interrupted create (migration 0033_env_sweeps;
//! `crate::envs::state::sweep_late`).

use sqlx::Row;

use super::{Store, StoreError};

/// An environment whose create a killed server interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSweep {
    pub env_id: String,
    /// Its agent (`None`: the embedded one).
    pub agent_id: Option<i64>,
    /// When its delete was reported done; `None` while it still exists.
    pub deleted_ms: Option<i64>,
}

impl Store {
    /// Remembers that `env_id`'s create was interrupted (idempotent).
    pub async fn add_env_sweep(
        &self,
        env_id: &str,
        agent_id: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO env_sweeps (env_id, agent_id, deleted_ms) VALUES ($1, $2, NULL) \
             ON CONFLICT (env_id) DO NOTHING",
        )
        .bind(env_id)
        .bind(agent_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that `env_id` was deleted at `at_ms`; `false` when its create was not
    /// interrupted (nothing to sweep).
    pub async fn env_sweep_deleted(&self, env_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE env_sweeps SET deleted_ms = $1 WHERE env_id = $2")
            .bind(at_ms)
            .bind(env_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn env_sweeps(&self) -> Result<Vec<EnvSweep>, StoreError> {
        let rows =
            sqlx::query("SELECT env_id, agent_id, deleted_ms FROM env_sweeps ORDER BY env_id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(EnvSweep {
                    env_id: r.try_get("env_id")?,
                    agent_id: r.try_get("agent_id")?,
                    deleted_ms: r.try_get("deleted_ms")?,
                })
            })
            .collect()
    }

    /// The sweeps of `env_id` are over.
    pub async fn end_env_sweep(&self, env_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM env_sweeps WHERE env_id = $1")
            .bind(env_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
