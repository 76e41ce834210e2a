//! SQL for environments.

use cove_api::EnvState;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{map_unique, next_id, now_ms, Store, StoreError};

/// A stored environment.
/// The environments of one agent, as placement weighs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvLoad {
    /// Placed there and not failed (stopped ones too: their volumes live there).
    pub placed: usize,
    /// Creating, starting or running: what counts against the agent's room.
    pub active: usize,
}

#[derive(Debug, Clone)]
pub struct EnvRow {
    pub id: String,
    pub name: String,
    pub repo_id: i64,
    pub owner_id: i64,
    pub branch: String,
    pub devfile_path: Option<String>,
    pub state: EnvState,
    pub reason: Option<String>,
    pub plan_json: String,
    pub devfile_text: Option<String>,
    pub restart_required: bool,
    pub devfile_changes: Option<String>,
    pub endpoints_json: String,
    pub idle_timeout_secs: i64,
    pub last_activity_ms: i64,
    pub created_at: i64,
    /// The registered agent it runs on; `None`: the embedded agent.
    pub agent_id: Option<i64>,
    /// Why placement chose that agent.
    pub placement: Option<String>,
    /// In the warm pool of this prebuild, not yet claimed (`crate::envs::pool`): no user sees
    /// or reaches it until a create claims it.
    pub pooled: Option<i64>,
}

const ENV_COLS: &str =
    "id, name, repo_id, owner_id, branch, devfile_path, state, reason, plan_json, \
    devfile_text, restart_required, devfile_changes, endpoints_json, idle_timeout_secs, \
    last_activity_ms, created_at, agent_id, placement, pool_prebuild";

fn env_from_row(row: &AnyRow) -> Result<EnvRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(EnvRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        repo_id: row.try_get("repo_id")?,
        owner_id: row.try_get("owner_id")?,
        branch: row.try_get("branch")?,
        devfile_path: row.try_get("devfile_path")?,
        state: EnvState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown environment state {state:?}")))?,
        reason: row.try_get("reason")?,
        plan_json: row.try_get("plan_json")?,
        devfile_text: row.try_get("devfile_text")?,
        restart_required: row.try_get::<i64, _>("restart_required")? != 0,
        devfile_changes: row.try_get("devfile_changes")?,
        endpoints_json: row.try_get("endpoints_json")?,
        idle_timeout_secs: row.try_get("idle_timeout_secs")?,
        last_activity_ms: row.try_get("last_activity_ms")?,
        created_at: row.try_get("created_at")?,
        agent_id: row.try_get("agent_id")?,
        placement: row.try_get("placement")?,
        pooled: row.try_get("pool_prebuild")?,
    })
}

impl Store {
    pub async fn create_env(&self, env: &EnvRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO environments ({ENV_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
        ))
        .bind(&env.id)
        .bind(&env.name)
        .bind(env.repo_id)
        .bind(env.owner_id)
        .bind(&env.branch)
        .bind(&env.devfile_path)
        .bind(env.state.as_str())
        .bind(&env.reason)
        .bind(&env.plan_json)
        .bind(&env.devfile_text)
        .bind(i64::from(env.restart_required))
        .bind(&env.devfile_changes)
        .bind(&env.endpoints_json)
        .bind(env.idle_timeout_secs)
        .bind(env.last_activity_ms)
        .bind(env.created_at)
        .bind(env.agent_id)
        .bind(&env.placement)
        .bind(env.pooled)
        .execute(&self.pool)
        .await
        .map_err(|e| map_unique(e, || format!("environment {}", env.name)))?;
        Ok(())
    }

    pub async fn env(&self, id: &str) -> Result<Option<EnvRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM environments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(env_from_row).transpose()
    }

    /// Environments by id or by name (names are unique per repository; a
    /// name that exists in several repositories matches them all).
    pub async fn find_envs(&self, id_or_name: &str) -> Result<Vec<EnvRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM environments WHERE (id = $1 OR name = $1) AND pool_prebuild IS NULL ORDER BY created_at"
        ))
        .bind(id_or_name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// The environments user `owner_id` created on `branch` of repository `repo_id`, oldest
    /// first (what "Open in environment" on a pull request may reuse).
    pub async fn user_branch_envs(
        &self,
        repo_id: i64,
        owner_id: i64,
        branch: &str,
    ) -> Result<Vec<EnvRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM environments WHERE repo_id = $1 AND owner_id = $2 AND branch = $3 AND pool_prebuild IS NULL ORDER BY created_at, id"
        ))
        .bind(repo_id)
        .bind(owner_id)
        .bind(branch)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    pub async fn list_envs(&self) -> Result<Vec<EnvRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM environments ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// The environments in warm pools, not yet claimed (`crate::envs::pool`).
    pub async fn pooled_envs(&self) -> Result<Vec<EnvRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENV_COLS} FROM environments WHERE pool_prebuild IS NOT NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Claims the running pooled environment `id` of prebuild `prebuild` for user `owner_id`
    /// as `name`: it leaves the pool (one claim wins; false when another took it first or it
    /// is no longer running). A name already used in the repository is the usual conflict.
    pub async fn claim_pooled_env(
        &self,
        id: &str,
        prebuild: i64,
        owner_id: i64,
        name: &str,
        idle_timeout_secs: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE environments SET pool_prebuild = NULL, owner_id = $1, name = $2, \
             idle_timeout_secs = $3, last_activity_ms = $4, created_at = $5 \
             WHERE id = $6 AND pool_prebuild = $7 AND state = 'running'",
        )
        .bind(owner_id)
        .bind(name)
        .bind(idle_timeout_secs)
        .bind(now)
        .bind(now / 1000)
        .bind(id)
        .bind(prebuild)
        .execute(&self.pool)
        .await
        .map_err(|e| map_unique(e, || format!("environment {name}")))?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts claimed environment `id` back into the pool of `prebuild` as `name`, failed for
    /// `reason` (a claim that could not finish; the pool loop deletes it).
    pub async fn unclaim_failed_env(
        &self,
        id: &str,
        prebuild: i64,
        name: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE environments SET pool_prebuild = $1, name = $2, state = 'failed', reason = $3 \
             WHERE id = $4",
        )
        .bind(prebuild)
        .bind(name)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Places the environment on agent `agent_id` (`None`: the embedded agent) for `why`
    /// (`cove env move`).
    pub async fn set_env_agent(
        &self,
        id: &str,
        agent_id: Option<i64>,
        placement: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET agent_id = $1, placement = $2 WHERE id = $3")
            .bind(agent_id)
            .bind(placement)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Environments per agent (`None`: the embedded agent): those placed there and not failed,
    /// and of them those running or on their way to it (creating, starting, running) — what
    /// environment placement weighs, without reading the environments themselves.
    pub async fn env_counts_by_agent(
        &self,
    ) -> Result<std::collections::HashMap<Option<i64>, EnvLoad>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_id, COUNT(*) AS n, \
             SUM(CASE WHEN state IN ($2, $3, $4) THEN 1 ELSE 0 END) AS active \
             FROM environments WHERE state <> $1 GROUP BY agent_id",
        )
        .bind(EnvState::Failed.as_str())
        .bind(EnvState::Creating.as_str())
        .bind(EnvState::Starting.as_str())
        .bind(EnvState::Running.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::new();
        for row in &rows {
            let agent: Option<i64> = row.try_get("agent_id")?;
            let n: i64 = row.try_get("n")?;
            let active: i64 = row.try_get("active")?;
            out.insert(
                agent,
                EnvLoad {
                    placed: usize::try_from(n).unwrap_or(usize::MAX),
                    active: usize::try_from(active).unwrap_or(usize::MAX),
                },
            );
        }
        Ok(out)
    }

    pub async fn set_env_state(
        &self,
        id: &str,
        state: EnvState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET state = $1, reason = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Compare-and-set of an environment's state: moves it to `to` (with `reason`) only
    /// while its state is one of `from`. Returns false, changing nothing, otherwise (or
    /// when the environment is gone).
    pub async fn transition_env(
        &self,
        id: &str,
        from: &[EnvState],
        to: EnvState,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        if from.is_empty() {
            return Ok(false);
        }
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "UPDATE environments SET state = $1, reason = $2 WHERE id = $3 AND state IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(to.as_str()).bind(reason).bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        let done = q.execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks pooled environment `id` `deleting` while it is still pooled and `from`: false when
    /// a create claimed it meanwhile (then it is the claimer's and stays).
    pub async fn begin_discard_pooled_env(
        &self,
        id: &str,
        from: EnvState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE environments SET state = 'deleting', reason = NULL \
             WHERE id = $1 AND state = $2 AND pool_prebuild IS NOT NULL",
        )
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes an environment row (and its events) only while it is `deleting`.
    pub async fn delete_env_if_deleting(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM environments WHERE id = $1 AND state = $2")
            .bind(id)
            .bind(EnvState::Deleting.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM environment_events WHERE env_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    pub async fn set_env_endpoints(
        &self,
        id: &str,
        endpoints_json: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET endpoints_json = $1 WHERE id = $2")
            .bind(endpoints_json)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a newly applied plan and devfile; clears `restart_required`.
    pub async fn set_env_plan(
        &self,
        id: &str,
        plan_json: &str,
        devfile_text: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET plan_json = $1, devfile_text = $2, restart_required = 0, devfile_changes = NULL WHERE id = $3")
            .bind(plan_json)
            .bind(devfile_text)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the restart-required flag, only while the environment is running with the
    /// devfile text `applied` (a check that raced with a restart changes nothing).
    pub async fn set_env_restart_required(
        &self,
        id: &str,
        applied: Option<&str>,
        required: bool,
        changes: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE environments SET restart_required = $1, devfile_changes = $2 \
             WHERE id = $3 AND state = $4 AND COALESCE(devfile_text, '') = COALESCE($5, '')",
        )
        .bind(i64::from(required))
        .bind(changes)
        .bind(id)
        .bind(EnvState::Running.as_str())
        .bind(applied)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_env(&self, id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET last_activity_ms = $1 WHERE id = $2")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_env(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM environment_events WHERE env_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM environments WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn add_env_event(
        &self,
        env_id: &str,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO environment_events (id, env_id, at_ms, kind, message) VALUES ($1, $2, $3, $4, $5)")
            .bind(next_id())
            .bind(env_id)
            .bind(now_ms())
            .bind(kind)
            .bind(message)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Events after `after` (an event id), oldest first.
    pub async fn env_events(
        &self,
        env_id: &str,
        after: i64,
    ) -> Result<Vec<(i64, i64, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, at_ms, kind, message FROM environment_events WHERE env_id = $1 AND id > $2 ORDER BY id")
            .bind(env_id)
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("at_ms")?,
                    r.try_get("kind")?,
                    r.try_get("message")?,
                ))
            })
            .collect()
    }

    /// Repository (owner, name) of a repository id.
    pub async fn repo_by_id(&self, id: i64) -> Result<Option<super::RepoRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM repos WHERE id = $1",
            super::REPO_COLS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(super::repo_from_row).transpose()
    }

    pub async fn username(&self, user_id: i64) -> Result<String, StoreError> {
        let row = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("username")?)
    }
}

// Outdated environments (migration 0022_dotfiles): the blob id of the branch's devfile an
// environment was created or last updated from.
impl Store {
    /// Records the blob id of the branch devfile the environment now runs.
    pub async fn set_env_devfile_upstream(
        &self,
        id: &str,
        blob: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET devfile_upstream = $1 WHERE id = $2")
            .bind(blob)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The blob id recorded by [`Store::set_env_devfile_upstream`]; `None` for environments
    /// from before it was recorded.
    pub async fn env_devfile_upstream(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT devfile_upstream FROM environments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }

    /// Records the blob id of the applied devfile an update replaced.
    pub async fn set_env_devfile_behind(
        &self,
        id: &str,
        blob: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE environments SET devfile_behind = $1 WHERE id = $2")
            .bind(blob)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The blob id recorded by [`Store::set_env_devfile_behind`].
    pub async fn env_devfile_behind(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT devfile_behind FROM environments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }
}
