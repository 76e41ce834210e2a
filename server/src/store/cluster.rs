//! The store's side of several server replicas on one PostgreSQL database
//! (`crate::cluster`, docs/replicas.md): the leader's session lock on a dedicated connection,
//! the wake-up channel between replicas (LISTEN/NOTIFY), and repository locks that hold
//! across replicas. With SQLite (one process) none of this exists: [`Store::postgres`] is
//! `None` and the callers fall back to in-process behaviour.
//!
//! Lock keys: the leader lock uses the two-key form `pg_try_advisory_lock(int4, int4)` and
//! repository locks the one-key form `pg_advisory_lock(bigint)` with the repository's id;
//! PostgreSQL keeps the two forms apart, so they never collide.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

use super::{Store, StoreError};

/// First key of the leader lock ("Cove").
const LOCK_CLASS: i32 = 0x436f_7665;
/// Second key of the leader lock.
const LEADER_OBJ: i32 = 1;
/// The NOTIFY channel replicas wake each other on.
pub const WAKE_CHANNEL: &str = "cove_wake";
/// Connections that hold repository locks at once, per replica (a push holds one for its
/// duration; more pushes wait for a free one).
const REPO_LOCK_CONNECTIONS: u32 = 32;
/// Keep-alive of the leader's session, set on the database's side: a leader whose host or
/// network is gone loses its session (and the lock) after about 5 + 3 × 2 s, or after
/// 10 s of unacknowledged data.
const SESSION_SETTINGS: [&str; 4] = [
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 10000",
];

/// What a PostgreSQL store keeps for replicas: its URL (never printed) and the connections
/// of repository locks.
pub struct PgSide {
    url: String,
    locks: PgPool,
}

impl std::fmt::Debug for PgSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgSide { url: <redacted> }")
    }
}

impl PgSide {
    pub(super) fn new(url: &str) -> Result<Arc<PgSide>, StoreError> {
        let locks = PgPoolOptions::new()
            .max_connections(REPO_LOCK_CONNECTIONS)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy(url)
            .map_err(StoreError::Connect)?;
        Ok(Arc::new(PgSide {
            url: url.to_string(),
            locks,
        }))
    }

    pub(super) async fn close(&self) {
        self.locks.close().await;
    }
}

/// A dedicated session for the leader lock. The lock lives as long as the session: a
/// process that dies or loses its connection loses it at once (the database ends the
/// session), and [`LeaderSession::holds`] tells the holder.
pub struct LeaderSession {
    conn: PgConnection,
}

impl LeaderSession {
    /// Takes the leader lock if nobody holds it; true when this session holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT pg_try_advisory_lock($1, $2) AS got")
            .bind(LOCK_CLASS)
            .bind(LEADER_OBJ)
            .fetch_one(&mut self.conn)
            .await?;
        Ok(row.try_get::<bool, _>("got")?)
    }

    /// Whether this session still holds the leader lock (a round trip: a broken connection
    /// is an error).
    pub async fn holds(&mut self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 \
             AND objid = $2 AND objsubid = 2 AND pid = pg_backend_pid() AND granted",
        )
        .bind(i64::from(LOCK_CLASS))
        .bind(i64::from(LEADER_OBJ))
        .fetch_one(&mut self.conn)
        .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Ends the session (and with it the lock, if held).
    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// A repository lock held across replicas; released when dropped.
pub struct RepoLockGuard {
    _release: tokio::sync::oneshot::Sender<()>,
}

impl Store {
    /// The PostgreSQL side, `None` for SQLite (a single process).
    pub fn postgres(&self) -> Option<&PgSide> {
        self.pg.as_deref()
    }

    /// Opens a dedicated session for the leader lock (PostgreSQL only).
    pub async fn leader_session(&self) -> Result<Option<LeaderSession>, StoreError> {
        let Some(pg) = self.postgres() else {
            return Ok(None);
        };
        let mut conn = PgConnection::connect(&pg.url)
            .await
            .map_err(StoreError::Connect)?;
        for setting in SESSION_SETTINGS {
            if let Err(e) = sqlx::query(setting).execute(&mut conn).await {
                tracing::warn!(setting, error = %e, "cannot tune the leader session's keep-alive");
            }
        }
        Ok(Some(LeaderSession { conn }))
    }

    /// A listener on [`WAKE_CHANNEL`] (PostgreSQL only).
    pub async fn wake_listener(&self) -> Result<Option<PgListener>, StoreError> {
        let Some(pg) = self.postgres() else {
            return Ok(None);
        };
        let mut listener = PgListener::connect(&pg.url)
            .await
            .map_err(StoreError::Connect)?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(Some(listener))
    }

    /// Sends `payload` on [`WAKE_CHANNEL`] to every replica's listener (PostgreSQL only; a
    /// no-op with SQLite).
    pub async fn notify_replicas(&self, payload: &str) -> Result<(), StoreError> {
        if self.pg.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WAKE_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Waits for repository `repo_id`'s lock across replicas and holds it until the guard is
    /// dropped; `None` with SQLite, where the in-process lock is the only one needed.
    pub async fn lock_repo_across(
        &self,
        repo_id: i64,
    ) -> Result<Option<RepoLockGuard>, StoreError> {
        let Some(pg) = self.postgres() else {
            return Ok(None);
        };
        let pool = pg.locks.clone();
        let (acquired, got) = tokio::sync::oneshot::channel::<Result<(), StoreError>>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        // The lock belongs to a session: one task takes a connection, waits for the lock,
        // holds it until the guard is dropped (on any path out of the caller, or at once when
        // the caller stopped waiting), then unlocks. A connection whose lock call or unlock
        // failed is closed, which ends the session and every lock it holds.
        tokio::spawn(async move {
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = acquired.send(Err(StoreError::Query(e)));
                    return;
                }
            };
            let locked = sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(repo_id)
                .execute(&mut *conn)
                .await;
            if let Err(e) = locked {
                let _ = acquired.send(Err(StoreError::Query(e)));
                let _ = conn.detach().close().await;
                return;
            }
            if acquired.send(Ok(())).is_ok() {
                let _ = released.await;
            }
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(repo_id)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                tracing::warn!(repo = repo_id, error = %e, "cannot unlock a repository; closing its session");
                let _ = conn.detach().close().await;
            }
        });
        got.await.map_err(|_| {
            StoreError::Corrupt("the repository lock's task ended without an answer".into())
        })??;
        Ok(Some(RepoLockGuard { _release: release }))
    }
}
