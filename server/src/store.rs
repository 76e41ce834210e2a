//! Persistence: one `sqlx` pool over the `any` driver, so SQLite (default, WAL) and PostgreSQL
//! run the same migrations and the same queries.
//!
//! Invariant: SQL stays portable — `$n` placeholders, integer times, ids assigned by
//! [`next_id`], no backend-specific types. Every multi-row change is one transaction.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cove_api::{Role, Scope, Visibility};
use rand::Rng;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

mod agent_pools;
mod agents;
mod audit;
mod branch_rules;
// Several replicas on PostgreSQL (issue 20): leader lock, wake-ups, repository locks.
pub mod cluster;
mod editor;

mod approvals;
mod deploy;
mod dispatch;
mod env_sweeps;
mod envs;
mod issues;
mod jobs;
mod live_auth;
mod metrics;
mod mirrors;
mod notify;
mod packages;
mod prebuilds;
mod projects;
mod pulls;
mod reports;
mod retention;
mod runs;
mod schedules;
mod sessions;
mod settings;
mod ssh_keys;
mod users;
mod workflow_errors;

pub use agent_pools::PoolRow;
pub use agents::{AgentRow, RegistrationRefusal, RegistrationTokenRow};
pub use audit::{AuditFilter, AuditRow};
pub use dispatch::{FinishWrite, LeaseWrite};

pub use approvals::{DecisionRow, GateRow};
pub use deploy::{
    DeployConnectionRow, DeployEnvRow, DeployVariableRow, DeploymentRow, NewDeployment,
};
pub use env_sweeps::EnvSweep;
pub use envs::{EnvLoad, EnvRow};
pub use issues::{
    ColumnRow, IssueCommentRow, IssueFilter, IssueRow, MoveRefusal, NewIssue, DEFAULT_COLUMNS,
};
pub use metrics::StateCounts;
pub use mirrors::MirrorRow;
pub use notify::{Attempt, DeliveryRow, NotifyTargetRow};
pub use prebuilds::PrebuildRow;
pub use projects::{MemberRefusal, ProjectMemberRow, ProjectRow};
pub use pulls::{CommentRow, NewPull, PendingPullEvent, PullEventRow, PullRow, ReviewRow};
pub use runs::{ActiveJob, JobFailure, JobRow, RunRow};
pub use schedules::{ScheduleClaim, ScheduleRow};
pub use sessions::SessionRow;
pub use ssh_keys::SshKeyRow;
pub use workflow_errors::SecretRow;
pub use workflow_errors::WorkflowErrorRow;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Conflict(String),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

static LAST_ID: AtomicI64 = AtomicI64::new(0);

/// A time-ordered, process-monotonic id: `millis * 10^6 + random`, so ids from several server
/// replicas sharing one PostgreSQL database practically never collide.
pub fn next_id() -> i64 {
    let candidate = now_ms()
        .saturating_mul(1_000_000)
        .saturating_add(rand::thread_rng().gen_range(0..1_000_000));
    let mut prev = LAST_ID.load(Ordering::Relaxed);
    loop {
        let id = candidate.max(prev + 1);
        match LAST_ID.compare_exchange(prev, id, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return id,
            Err(actual) => prev = actual,
        }
    }
}

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    /// An administrator disabled the account: none of its credentials authenticate.
    pub disabled: bool,
    /// Where email notifications for this user go (migration 0018), if anywhere.
    pub email: Option<String>,
}

/// A stored token (without its hash).
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// The project the token is scoped to (migration 0029), if any.
    pub project_id: Option<i64>,
}

/// A stored repository.
#[derive(Debug, Clone)]
pub struct RepoRow {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub owner_id: i64,
    pub visibility: Visibility,
    pub default_branch: String,
    pub created_at: i64,
}

/// A stored push event.
#[derive(Debug, Clone)]
pub struct PushEventRow {
    pub id: i64,
    pub repo_id: i64,
    pub ref_name: String,
    pub old_sha: String,
    pub new_sha: String,
    /// `None` for an event recovered at start-up (see [`crate::recover_push_events`]).
    pub pusher: Option<String>,
    pub created_at_ms: i64,
}

/// A ref update to be stored as a push event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub ref_name: String,
    pub old_sha: String,
    pub new_sha: String,
}

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL only: what replicas share beyond the pool (`store/cluster.rs`).
    pg: Option<std::sync::Arc<cluster::PgSide>>,
    /// The agents and pools environment placement reads, kept briefly (`store/agents.rs`
    /// [`Store::agents_and_pools`]).
    agents_cache: std::sync::Arc<agents::AgentsCache>,
}

fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn scopes_from_text(text: &str) -> Result<Vec<Scope>, StoreError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Scope::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown scope {s:?}"))))
        .collect()
}

fn map_unique(err: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Query(err),
    }
}

fn user_from_row(row: &AnyRow) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
        email: row.try_get("email")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        scopes: scopes_from_text(&row.try_get::<String, _>("scopes")?)?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        project_id: row.try_get("project_id")?,
    })
}

fn repo_from_row(row: &AnyRow) -> Result<RepoRow, StoreError> {
    let visibility: String = row.try_get("visibility")?;
    Ok(RepoRow {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        name: row.try_get("name")?,
        owner_id: row.try_get("owner_id")?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown visibility {visibility:?}")))?,
        default_branch: row.try_get("default_branch")?,
        created_at: row.try_get("created_at")?,
    })
}

const USER_COLS: &str = "id, username, password_hash, is_admin, disabled_at, email";
const TOKEN_COLS: &str = "id, user_id, name, scopes, expires_at, created_at, project_id";
const REPO_COLS: &str = "id, owner, name, owner_id, visibility, default_branch, created_at";

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and runs the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let mut options = AnyPoolOptions::new().max_connections(if sqlite { 4 } else { 10 });
        if sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(StoreError::Connect)?;
        MIGRATOR.run(&pool).await?;
        let pg = if sqlite {
            None
        } else {
            Some(cluster::PgSide::new(url)?)
        };
        Ok(Store {
            pool,
            pg,
            agents_cache: Default::default(),
        })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }

    pub async fn user_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn create_user(
        &self,
        username: &str,
        password_hash: Option<&str>,
        is_admin: bool,
    ) -> Result<UserRow, StoreError> {
        let id = next_id();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, is_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(username)
        .bind(password_hash.map(str::to_string))
        .bind(i64::from(is_admin))
        .bind(now_secs())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            map_unique(e, || {
                format!("user {username} (or one that differs only in letter case)")
            })
        })?;
        Ok(UserRow {
            id,
            username: username.to_string(),
            password_hash: password_hash.map(str::to_string),
            is_admin,
            disabled: false,
            email: None,
        })
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn first_admin(&self) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE is_admin = 1 ORDER BY id LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
    ) -> Result<TokenRow, StoreError> {
        self.create_token_in(user_id, name, token_hash, scopes, expires_at, None)
            .await
    }

    /// [`Store::create_token`] for a token scoped to `project_id` (when given).
    pub async fn create_token_in(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
        project_id: Option<i64>,
    ) -> Result<TokenRow, StoreError> {
        let row = TokenRow {
            id: next_id(),
            user_id,
            name: name.to_string(),
            scopes: scopes.to_vec(),
            expires_at,
            created_at: now_secs(),
            project_id,
        };
        sqlx::query(
            "INSERT INTO tokens (id, user_id, name, token_hash, scopes, expires_at, created_at, \
             project_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(row.id)
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(scopes_to_text(scopes))
        .bind(expires_at)
        .bind(row.created_at)
        .bind(project_id)
        .execute(&self.pool)
        .await
        .map_err(|e| map_unique(e, || "token".to_string()))?;
        Ok(row)
    }

    /// The token with this hash and its user, whether expired or not.
    pub async fn token_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(TokenRow, UserRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.user_id, t.name, t.scopes, t.expires_at, t.created_at, t.project_id, \
                    u.username, u.password_hash, u.is_admin, u.disabled_at, u.email \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let token = token_from_row(&row)?;
        let user = UserRow {
            id: token.user_id,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            disabled: row.try_get::<Option<i64>, _>("disabled_at")?.is_some(),
            email: row.try_get("email")?,
        };
        Ok(Some((token, user)))
    }

    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Deletes the token if it belongs to `user_id`; returns whether it existed.
    pub async fn delete_token(&self, user_id: i64, token_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND user_id = $2")
            .bind(token_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn create_repo(
        &self,
        owner: &UserRow,
        name: &str,
        visibility: Visibility,
        default_branch: &str,
    ) -> Result<RepoRow, StoreError> {
        let row = RepoRow {
            id: next_id(),
            owner: owner.username.clone(),
            name: name.to_string(),
            owner_id: owner.id,
            visibility,
            default_branch: default_branch.to_string(),
            created_at: now_secs(),
        };
        sqlx::query(
            "INSERT INTO repos (id, owner, name, owner_id, visibility, default_branch, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(&row.owner)
        .bind(name)
        .bind(owner.id)
        .bind(visibility.as_str())
        .bind(default_branch)
        .bind(row.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            map_unique(e, || {
                format!(
                    "repository {}/{name} (or one that differs only in letter case)",
                    owner.username
                )
            })
        })?;
        Ok(row)
    }

    pub async fn repo(&self, owner: &str, name: &str) -> Result<Option<RepoRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REPO_COLS} FROM repos WHERE owner = $1 AND name = $2"
        ))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(repo_from_row).transpose()
    }

    /// Repositories `user` may read; all of them when `all` is set (admins).
    pub async fn list_repos(&self, user_id: i64, all: bool) -> Result<Vec<RepoRow>, StoreError> {
        let rows = if all {
            sqlx::query(&format!(
                "SELECT {REPO_COLS} FROM repos ORDER BY owner, name"
            ))
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query(&format!(
                "SELECT {REPO_COLS} FROM repos WHERE owner_id = $1 OR visibility = 'public' \
                 OR id IN (SELECT repo_id FROM repo_members WHERE user_id = $2) \
                 OR id IN (SELECT pr.repo_id FROM project_repos pr JOIN project_members pm \
                           ON pm.project_id = pr.project_id WHERE pm.user_id = $3) \
                 ORDER BY owner, name"
            ))
            .bind(user_id)
            .bind(user_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?
        };
        rows.iter().map(repo_from_row).collect()
    }

    pub async fn delete_repo(&self, repo_id: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM push_events WHERE repo_id = $1",
            "DELETE FROM repo_members WHERE repo_id = $1",
            "DELETE FROM repos WHERE id = $1",
        ] {
            sqlx::query(sql).bind(repo_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The per-repository role set for `user_id` (`repo_members`), which overrides a role
    /// derived from the repository's project ([`Store::member_role`]).
    pub async fn repo_member_role(
        &self,
        repo_id: i64,
        user_id: i64,
    ) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query("SELECT role FROM repo_members WHERE repo_id = $1 AND user_id = $2")
            .bind(repo_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        Role::parse(&role)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))
    }

    pub async fn set_member(
        &self,
        repo_id: i64,
        user_id: i64,
        role: Role,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM repo_members WHERE repo_id = $1 AND user_id = $2")
            .bind(repo_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO repo_members (repo_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(repo_id)
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_member(&self, repo_id: i64, user_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM repo_members WHERE repo_id = $1 AND user_id = $2")
            .bind(repo_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_members(&self, repo_id: i64) -> Result<Vec<(String, Role)>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.username, m.role FROM repo_members m JOIN users u ON u.id = m.user_id \
             WHERE m.repo_id = $1 ORDER BY u.username",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role")?;
                let role = Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?;
                Ok((row.try_get("username")?, role))
            })
            .collect()
    }

    /// Stores the ref updates of one push in one transaction. `pusher` is `None` only for
    /// updates recovered at start-up.
    pub async fn insert_push_events(
        &self,
        repo: &RepoRow,
        pusher: Option<&UserRow>,
        updates: &[RefUpdate],
    ) -> Result<Vec<PushEventRow>, StoreError> {
        self.insert_push_events_by(
            repo,
            pusher.map(|p| p.id),
            None,
            pusher.map(|p| p.username.clone()),
            updates,
        )
        .await
    }

    /// Stores ref updates the server made itself (a mirror's fetch), with a system pusher
    /// name such as `mirror:github` instead of a user.
    pub async fn insert_system_push_events(
        &self,
        repo: &RepoRow,
        pusher: &str,
        updates: &[RefUpdate],
    ) -> Result<Vec<PushEventRow>, StoreError> {
        self.insert_push_events_by(repo, None, Some(pusher), Some(pusher.to_string()), updates)
            .await
    }

    async fn insert_push_events_by(
        &self,
        repo: &RepoRow,
        pusher_id: Option<i64>,
        pusher_name: Option<&str>,
        pusher: Option<String>,
        updates: &[RefUpdate],
    ) -> Result<Vec<PushEventRow>, StoreError> {
        let created_at_ms = now_ms();
        let mut stored = Vec::with_capacity(updates.len());
        let mut tx = self.pool.begin().await?;
        for update in updates {
            let id = next_id();
            sqlx::query(
                "INSERT INTO push_events (id, repo_id, ref_name, old_sha, new_sha, pusher_id, pusher_name, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(repo.id)
            .bind(&update.ref_name)
            .bind(&update.old_sha)
            .bind(&update.new_sha)
            .bind(pusher_id)
            .bind(pusher_name)
            .bind(created_at_ms)
            .execute(&mut *tx)
            .await?;
            stored.push(PushEventRow {
                id,
                repo_id: repo.id,
                ref_name: update.ref_name.clone(),
                old_sha: update.old_sha.clone(),
                new_sha: update.new_sha.clone(),
                pusher: pusher.clone(),
                created_at_ms,
            });
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The newest `limit` push events of a repository, oldest first.
    pub async fn list_push_events(
        &self,
        repo_id: i64,
        limit: i64,
    ) -> Result<Vec<PushEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.id, e.repo_id, e.ref_name, e.old_sha, e.new_sha, \
             COALESCE(u.username, e.pusher_name) AS username, e.created_at_ms \
             FROM push_events e LEFT JOIN users u ON u.id = e.pusher_id \
             WHERE e.repo_id = $1 ORDER BY e.id DESC LIMIT $2",
        )
        .bind(repo_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(PushEventRow {
                    id: row.try_get("id")?,
                    repo_id: row.try_get("repo_id")?,
                    ref_name: row.try_get("ref_name")?,
                    old_sha: row.try_get("old_sha")?,
                    new_sha: row.try_get("new_sha")?,
                    pusher: row.try_get("username")?,
                    created_at_ms: row.try_get("created_at_ms")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        events.reverse();
        Ok(events)
    }

    /// Each ref's value after the latest push event that touched it (deleted refs omitted):
    /// what the repository's refs are, if every update was recorded.
    pub async fn recorded_refs(
        &self,
        repo_id: i64,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.ref_name, e.new_sha FROM push_events e WHERE e.repo_id = $1 AND e.id = \
             (SELECT MAX(l.id) FROM push_events l WHERE l.repo_id = $2 AND l.ref_name = e.ref_name)",
        )
        .bind(repo_id)
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        let mut refs = std::collections::BTreeMap::new();
        for row in rows {
            let sha: String = row.try_get("new_sha")?;
            if sha != cove_api::ZERO_SHA {
                refs.insert(row.try_get("ref_name")?, sha);
            }
        }
        Ok(refs)
    }
}
