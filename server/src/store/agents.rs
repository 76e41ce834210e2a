//! SQL for agents (their own principals) and one-time agent registration tokens. Only
//! SHA-256 hashes of tokens are stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cove_api::AgentCapacity;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{next_id, Store, StoreError};

/// A registered agent (without its token hash).
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Its agent pool (issue 20), from its registration token.
    pub pool_id: Option<i64>,
    /// The labels it declared (the placement's view: `agents::placement::effective_labels`).
    pub labels: BTreeMap<String, String>,
    /// As last reported.
    pub capacity: AgentCapacity,
}

/// A stored registration token (without its hash).
#[derive(Debug, Clone)]
pub struct RegistrationTokenRow {
    pub id: i64,
    pub created_by: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by_agent: Option<i64>,
    /// The pool the registered agent joins.
    pub pool_id: Option<i64>,
}

/// Why a registration token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationRefusal {
    Unknown,
    Used,
    Expired,
}

const AGENT_COLS: &str =
    "id, name, created_at, last_seen_at, revoked_at, pool_id, labels, capacity";
const REG_COLS: &str = "id, created_by, expires_at, used_at, used_by_agent, pool_id";

fn agent_from_row(row: &AnyRow) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        revoked_at: row.try_get("revoked_at")?,
        pool_id: row.try_get("pool_id")?,
        // Written only from validated values; an unreadable one reads as empty.
        labels: serde_json::from_str(&row.try_get::<String, _>("labels")?).unwrap_or_default(),
        capacity: serde_json::from_str(&row.try_get::<String, _>("capacity")?).unwrap_or_default(),
    })
}

fn reg_from_row(row: &AnyRow) -> Result<RegistrationTokenRow, StoreError> {
    Ok(RegistrationTokenRow {
        id: row.try_get("id")?,
        created_by: row.try_get("created_by")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        used_by_agent: row.try_get("used_by_agent")?,
        pool_id: row.try_get("pool_id")?,
    })
}

impl RegistrationTokenRow {
    /// Whether the token may register an agent at `now` (seconds).
    pub fn refusal(&self, now: i64) -> Option<RegistrationRefusal> {
        if self.used_at.is_some() {
            Some(RegistrationRefusal::Used)
        } else if self.expires_at <= now {
            Some(RegistrationRefusal::Expired)
        } else {
            None
        }
    }
}

impl Store {
    /// Stores a registration token unless `cap` tokens are already outstanding (unused and
    /// unexpired at `now`): `None` then, and nothing is stored. The count and the insert are
    /// one statement.
    pub async fn create_registration_token(
        &self,
        token_hash: &str,
        created_by: i64,
        now: i64,
        expires_at: i64,
        cap: i64,
        pool_id: Option<i64>,
    ) -> Result<Option<RegistrationTokenRow>, StoreError> {
        let id = next_id();
        let inserted = sqlx::query(
            "INSERT INTO agent_registration_tokens (id, token_hash, created_by, created_at, expires_at, pool_id) \
             SELECT $1, $2, $3, $4, $5, $8 WHERE (SELECT COUNT(*) FROM agent_registration_tokens \
             WHERE used_at IS NULL AND expires_at > $6) < $7",
        )
        .bind(id)
        .bind(token_hash)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .bind(now)
        .bind(cap)
        .bind(pool_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        Ok(Some(RegistrationTokenRow {
            id,
            created_by,
            expires_at,
            used_at: None,
            used_by_agent: None,
            pool_id,
        }))
    }

    pub async fn registration_token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<RegistrationTokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REG_COLS} FROM agent_registration_tokens WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(reg_from_row).transpose()
    }

    /// Consumes the registration token and creates the agent with its labels and capacity, in
    /// one transaction: the token must be unused and unexpired at `now`, else nothing is
    /// written and the reason returned. The agent joins the token's pool.
    pub async fn register_agent(
        &self,
        registration_hash: &str,
        name: &str,
        agent_token_hash: &str,
        now: i64,
        labels: &BTreeMap<String, String>,
        capacity: &AgentCapacity,
    ) -> Result<Result<AgentRow, RegistrationRefusal>, StoreError> {
        let id = next_id();
        let labels_json =
            serde_json::to_string(labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let capacity_json =
            serde_json::to_string(capacity).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agents (id, name, token_hash, created_at, last_seen_at, labels, capacity, pool_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, \
             (SELECT pool_id FROM agent_registration_tokens WHERE token_hash = $8))",
        )
        .bind(id)
        .bind(name)
        .bind(agent_token_hash)
        .bind(now)
        .bind(now)
        .bind(&labels_json)
        .bind(&capacity_json)
        .bind(registration_hash)
        .execute(&mut *tx)
        .await?;
        let used = sqlx::query(
            "UPDATE agent_registration_tokens SET used_at = $1, used_by_agent = $2 \
             WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $4",
        )
        .bind(now)
        .bind(id)
        .bind(registration_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() == 1 {
            let row = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let agent = agent_from_row(&row)?;
            tx.commit().await?;
            self.agents_changed();
            return Ok(Ok(agent));
        }
        tx.rollback().await?;
        let refusal = match self.registration_token_by_hash(registration_hash).await? {
            None => RegistrationRefusal::Unknown,
            Some(row) => row.refusal(now).unwrap_or(RegistrationRefusal::Used),
        };
        Ok(Err(refusal))
    }

    /// The agent `id`, revoked or not.
    pub async fn agent(&self, id: i64) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Stores an agent's status report (labels, capacity) and that it was seen at `now`.
    pub async fn set_agent_status(
        &self,
        id: i64,
        labels: &BTreeMap<String, String>,
        capacity: &AgentCapacity,
        now: i64,
    ) -> Result<(), StoreError> {
        let labels =
            serde_json::to_string(labels).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // labels change rarely (placement's cache is dropped only then); capacity and the
        // time seen with every report
        let relabelled = sqlx::query(
            "UPDATE agents SET labels = $1 WHERE id = $2 AND (labels IS NULL OR labels <> $3)",
        )
        .bind(&labels)
        .bind(id)
        .bind(&labels)
        .execute(&self.pool)
        .await?;
        if relabelled.rows_affected() > 0 {
            self.agents_changed();
        }
        sqlx::query("UPDATE agents SET capacity = $1, last_seen_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(capacity).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The agent with this token hash, revoked or not.
    pub async fn agent_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<AgentRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT_COLS} FROM agents WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    /// Whether the agent was revoked (`None`: no such agent).
    pub async fn agent_revoked(&self, id: i64) -> Result<Option<bool>, StoreError> {
        let row = sqlx::query("SELECT revoked_at FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<Option<i64>, _>("revoked_at")?.is_some()),
            None => None,
        })
    }

    pub async fn touch_agent(&self, id: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The agents and agent pools, read at most [`AGENTS_MAX_AGE`] ago and after this
    /// process's last change to either (registration, revocation, new labels, a pool made or
    /// deleted): what environment placement reads on every create. Another replica's change
    /// shows within [`AGENTS_MAX_AGE`]; revocation is checked again where it matters (a
    /// revoked agent's link is closed, its leases refused).
    pub async fn agents_and_pools(&self) -> Result<Arc<AgentsSnapshot>, StoreError> {
        let generation = self.agents_cache.generation.load(Ordering::SeqCst);
        if let Some((g, at, snap)) = self
            .agents_cache
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if *g == generation && at.elapsed() < AGENTS_MAX_AGE {
                return Ok(snap.clone());
            }
        }
        let snap = Arc::new(AgentsSnapshot {
            agents: self.list_agents().await?,
            pools: self.agent_pools().await?,
        });
        *self
            .agents_cache
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((generation, Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// Drops the kept [`Store::agents_and_pools`].
    pub(crate) fn agents_changed(&self) {
        self.agents_cache.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(agent_from_row).collect()
    }

    /// `(agent id, job id)` of every running job leased by a registered agent.
    pub async fn running_jobs_by_agent(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_id, id FROM jobs WHERE state = 'running' AND agent_id IS NOT NULL \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("agent_id")?, r.try_get("id")?)))
            .collect()
    }

    /// Ids of the running jobs the embedded agent holds.
    pub async fn running_embedded_jobs(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE state = 'running' AND agent_id IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Revokes an agent's token and expires the leases it holds at `now_ms`, in one
    /// transaction (the reaper then handles those jobs like a lost agent's). `None` when there
    /// is no such agent; `Some(false)` when it was already revoked.
    pub async fn revoke_agent(
        &self,
        id: i64,
        now: i64,
        now_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT id FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let done =
            sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE jobs SET lease_expires_ms = $1 \
             WHERE agent_id = $2 AND state = 'running' AND lease_expires_ms > $3",
        )
        .bind(now_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.agents_changed();
        Ok(Some(done.rows_affected() == 1))
    }

    /// The agent that holds (or last held) a job's lease; `None` for the embedded agent or
    /// an unknown job.
    pub async fn job_agent(&self, job_id: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT agent_id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("agent_id")?,
            None => None,
        })
    }

    /// `(job id, agent id)` of the jobs of a run that a registered agent leased.
    pub async fn job_agents_of_run(&self, run_id: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, agent_id FROM jobs WHERE run_id = $1 AND agent_id IS NOT NULL")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("agent_id")?)))
            .collect()
    }
}

/// How long [`Store::agents_and_pools`] may serve what it read.
pub const AGENTS_MAX_AGE: Duration = Duration::from_secs(1);

/// Agents and pools as read together.
#[derive(Debug)]
pub struct AgentsSnapshot {
    pub agents: Vec<AgentRow>,
    pub pools: Vec<super::agent_pools::PoolRow>,
}

/// The kept [`AgentsSnapshot`] and the change counter that makes it stale.
#[derive(Debug, Default)]
pub(crate) struct AgentsCache {
    generation: AtomicU64,
    kept: Mutex<Option<(u64, Instant, Arc<AgentsSnapshot>)>>,
}
