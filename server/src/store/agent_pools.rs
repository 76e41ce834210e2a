//! SQL for agent pools (issue 20): a pool names the repositories, and the owners all of whose
//! repositories, its agents may serve (docs/agents.md).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::{map_unique, next_id, Store, StoreError};

/// A stored pool with what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub repo_ids: BTreeSet<i64>,
    /// `owner/name` of each allowed repository (for listing).
    pub repo_names: Vec<String>,
    pub owners: BTreeSet<String>,
}

impl Store {
    /// Creates a pool; a taken name is [`StoreError::Conflict`].
    pub async fn create_agent_pool(
        &self,
        name: &str,
        repo_ids: &BTreeSet<i64>,
        owners: &BTreeSet<String>,
        created_by: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        let id = next_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agent_pools (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, || format!("agent pool {name} exists")))?;
        for repo in repo_ids {
            sqlx::query("INSERT INTO agent_pool_repos (pool_id, repo_id) VALUES ($1, $2)")
                .bind(id)
                .bind(repo)
                .execute(&mut *tx)
                .await?;
        }
        for owner in owners {
            sqlx::query("INSERT INTO agent_pool_owners (pool_id, owner) VALUES ($1, $2)")
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.agents_changed();
        Ok(id)
    }

    /// Every pool with its repositories and owners, by name.
    pub async fn agent_pools(&self) -> Result<Vec<PoolRow>, StoreError> {
        let mut pools: BTreeMap<i64, PoolRow> = BTreeMap::new();
        for row in sqlx::query("SELECT id, name, created_at FROM agent_pools")
            .fetch_all(&self.pool)
            .await?
        {
            let id: i64 = row.try_get("id")?;
            pools.insert(
                id,
                PoolRow {
                    id,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    repo_ids: BTreeSet::new(),
                    repo_names: Vec::new(),
                    owners: BTreeSet::new(),
                },
            );
        }
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        for row in sqlx::query(
            "SELECT a.pool_id, a.repo_id, r.owner, r.name FROM agent_pool_repos a \
             JOIN repos r ON r.id = a.repo_id ORDER BY r.owner, r.name",
        )
        .fetch_all(&self.pool)
        .await?
        {
            if let Some(p) = pools.get_mut(&row.try_get::<i64, _>("pool_id")?) {
                p.repo_ids.insert(row.try_get("repo_id")?);
                p.repo_names.push(format!(
                    "{}/{}",
                    row.try_get::<String, _>("owner")?,
                    row.try_get::<String, _>("name")?
                ));
            }
        }
        for row in sqlx::query("SELECT pool_id, owner FROM agent_pool_owners")
            .fetch_all(&self.pool)
            .await?
        {
            if let Some(p) = pools.get_mut(&row.try_get::<i64, _>("pool_id")?) {
                p.owners.insert(row.try_get("owner")?);
            }
        }
        let mut out: Vec<PoolRow> = pools.into_values().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The id of the pool named `name`.
    pub async fn agent_pool_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT id FROM agent_pools WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        })
    }

    /// Deletes the pool `id` unless an unrevoked agent or an unused, unexpired registration
    /// token belongs to it: `Ok(false)` then (nothing changed). `None`: no such pool.
    pub async fn delete_agent_pool(&self, id: i64, now: i64) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT id FROM agent_pools WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let busy: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM agents WHERE pool_id = $1 AND revoked_at IS NULL) + \
             (SELECT COUNT(*) FROM agent_registration_tokens WHERE pool_id = $2 \
              AND used_at IS NULL AND expires_at > $3) AS n",
        )
        .bind(id)
        .bind(id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if busy > 0 {
            return Ok(Some(false));
        }
        sqlx::query("DELETE FROM agent_pool_repos WHERE pool_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM agent_pool_owners WHERE pool_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM agent_pools WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.agents_changed();
        Ok(Some(true))
    }
}
