//! SQL for prebuilds (migration 0031_prebuilds; docs/prebuilds.md).

use cove_api::{PrebuildSettings, PrebuildState};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{next_id, now_ms, Store, StoreError};

/// A stored prebuild.
#[derive(Debug, Clone)]
pub struct PrebuildRow {
    pub id: i64,
    pub repo_id: i64,
    pub branch: String,
    pub sha: String,
    pub state: PrebuildState,
    pub reason: Option<String>,
    /// JSON list of `cove_api::agent::PrebuiltImage`.
    pub images_json: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

const COLS: &str = "id, repo_id, branch, sha, state, reason, images, created_at_ms, finished_at_ms";

fn from_row(row: &AnyRow) -> Result<PrebuildRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(PrebuildRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        branch: row.try_get("branch")?,
        sha: row.try_get("sha")?,
        state: PrebuildState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown prebuild state {state:?}")))?,
        reason: row.try_get("reason")?,
        images_json: row.try_get("images")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

impl Store {
    /// The repository's prebuild settings (the defaults when never set).
    pub async fn prebuild_settings(&self, repo_id: i64) -> Result<PrebuildSettings, StoreError> {
        let row = sqlx::query(
            "SELECT enabled, branches, keep, warm FROM prebuild_settings WHERE repo_id = $1",
        )
        .bind(repo_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(PrebuildSettings::default());
        };
        let branches: String = row.try_get("branches")?;
        Ok(PrebuildSettings {
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            branches: serde_json::from_str(&branches)
                .map_err(|e| StoreError::Corrupt(format!("prebuild branches: {e}")))?,
            keep: u32::try_from(row.try_get::<i64, _>("keep")?).unwrap_or(3),
            warm: u32::try_from(row.try_get::<i64, _>("warm")?).unwrap_or(0),
        })
    }

    /// The repositories whose prebuild settings keep a warm pool (`warm > 0`, prebuilds on),
    /// with their `warm`.
    pub async fn warm_pool_repos(&self) -> Result<Vec<(i64, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT repo_id, warm FROM prebuild_settings WHERE warm > 0 AND enabled <> 0 ORDER BY repo_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let warm = u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0);
                Ok((r.try_get::<i64, _>(0)?, warm))
            })
            .collect()
    }

    pub async fn set_prebuild_settings(
        &self,
        repo_id: i64,
        s: &PrebuildSettings,
    ) -> Result<(), StoreError> {
        let branches =
            serde_json::to_string(&s.branches).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO prebuild_settings (repo_id, enabled, branches, keep, warm) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (repo_id) DO UPDATE SET enabled = $2, branches = $3, keep = $4, warm = $5",
        )
        .bind(repo_id)
        .bind(i64::from(s.enabled))
        .bind(branches)
        .bind(i64::from(s.keep))
        .bind(i64::from(s.warm))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues a prebuild of `sha` on `branch`; earlier queued ones of the branch are
    /// superseded (one transaction). Returns the new id.
    pub async fn queue_prebuild(
        &self,
        repo_id: i64,
        branch: &str,
        sha: &str,
    ) -> Result<i64, StoreError> {
        let id = next_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE prebuilds SET state = 'superseded', reason = $1, finished_at_ms = $2 \
             WHERE repo_id = $3 AND branch = $4 AND state = 'queued'",
        )
        .bind(format!("superseded by {sha}"))
        .bind(now_ms())
        .bind(repo_id)
        .bind(branch)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO prebuilds (id, repo_id, branch, sha, state, images, log, created_at_ms) \
             VALUES ($1, $2, $3, $4, 'queued', '[]', '', $5)",
        )
        .bind(id)
        .bind(repo_id)
        .bind(branch)
        .bind(sha)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn prebuild(&self, id: i64) -> Result<Option<PrebuildRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM prebuilds WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The repository's prebuilds, newest first.
    pub async fn prebuilds(
        &self,
        repo_id: i64,
        limit: i64,
    ) -> Result<Vec<PrebuildRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM prebuilds WHERE repo_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(repo_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn prebuild_log(&self, id: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT log FROM prebuilds WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("log")?),
            None => None,
        })
    }

    /// Takes the oldest queued prebuild (queued → running); `None` when none waits.
    pub async fn take_queued_prebuild(&self) -> Result<Option<PrebuildRow>, StoreError> {
        loop {
            let row = sqlx::query(&format!(
                "SELECT {COLS} FROM prebuilds WHERE state = 'queued' ORDER BY id LIMIT 1"
            ))
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row.as_ref().map(from_row).transpose()? else {
                return Ok(None);
            };
            let done = sqlx::query(
                "UPDATE prebuilds SET state = 'running' WHERE id = $1 AND state = 'queued'",
            )
            .bind(row.id)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(Some(PrebuildRow {
                    state: PrebuildState::Running,
                    ..row
                }));
            }
        }
    }

    /// Ends a running prebuild.
    pub async fn finish_prebuild(
        &self,
        id: i64,
        state: PrebuildState,
        reason: Option<&str>,
        images_json: &str,
        log: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE prebuilds SET state = $1, reason = $2, images = $3, log = $4, finished_at_ms = $5 \
             WHERE id = $6 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(images_json)
        .bind(log)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Prebuilds left running by a process that ended: failed. Returns their ids.
    pub async fn fail_interrupted_prebuilds(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT id FROM prebuilds WHERE state = 'running'")
            .fetch_all(&self.pool)
            .await?;
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("id"))
            .collect::<Result<_, _>>()?;
        for id in &ids {
            sqlx::query(
                "UPDATE prebuilds SET state = 'failed', reason = 'interrupted: the server stopped while it ran', \
                 finished_at_ms = $1 WHERE id = $2 AND state = 'running'",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        }
        Ok(ids)
    }

    /// The succeeded prebuild of exactly `sha` on `branch`, if any (the newest).
    pub async fn prebuild_for(
        &self,
        repo_id: i64,
        branch: &str,
        sha: &str,
    ) -> Result<Option<PrebuildRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLS} FROM prebuilds WHERE repo_id = $1 AND branch = $2 AND sha = $3 \
             AND state = 'succeeded' ORDER BY id DESC LIMIT 1"
        ))
        .bind(repo_id)
        .bind(branch)
        .bind(sha)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A succeeded prebuild whose images are gone.
    pub async fn expire_prebuild(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE prebuilds SET state = 'expired' WHERE id = $1 AND state = 'succeeded'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_env_prebuild(
        &self,
        env_id: &str,
        prebuild_id: i64,
        sha: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO env_prebuilds (env_id, prebuild_id, sha) VALUES ($1, $2, $3)")
            .bind(env_id)
            .bind(prebuild_id)
            .bind(sha)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The commit of the prebuild `env_id` was created from.
    pub async fn env_prebuilt_from(&self, env_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sha FROM env_prebuilds WHERE env_id = $1")
            .bind(env_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("sha")?),
            None => None,
        })
    }

    /// This installation's id for snapshot image labels (made once).
    pub async fn prebuild_install_id(&self, fresh: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO prebuild_install (id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM prebuild_install)")
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT id FROM prebuild_install ORDER BY id LIMIT 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// Succeeded prebuilds beyond the newest `keep` of their branch expire; returns the ids of
    /// every prebuild whose images must stay (queued, running, succeeded).
    pub async fn expire_old_prebuilds(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM prebuilds WHERE state IN ('queued', 'running', 'succeeded') \
             ORDER BY repo_id, branch, id DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        let rows: Vec<PrebuildRow> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
        let mut keep_of = std::collections::HashMap::new();
        let mut seen: std::collections::HashMap<(i64, String), u32> = Default::default();
        let mut live = Vec::new();
        for r in rows {
            if r.state != PrebuildState::Succeeded {
                live.push(r.id);
                continue;
            }
            let keep = match keep_of.get(&r.repo_id) {
                Some(k) => *k,
                None => {
                    let k = self.prebuild_settings(r.repo_id).await?.keep.max(1);
                    keep_of.insert(r.repo_id, k);
                    k
                }
            };
            let n = seen.entry((r.repo_id, r.branch.clone())).or_default();
            *n += 1;
            if *n > keep {
                self.expire_prebuild(r.id).await?;
            } else {
                live.push(r.id);
            }
        }
        Ok(live)
    }
}
