//! SQL for notifications (migrations 0015, 0018): targets and the outbox of deliveries, to a
//! target or (email) to one user. An event is enqueued once per target and once per user
//! (`event_key` is unique per target and per user); the worker claims due rows with a
//! conditional update, so one delivery attempt is made by one worker at a time.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// A stored target (its secret sealed).
#[derive(Debug, Clone)]
pub struct NotifyTargetRow {
    pub id: i64,
    pub repo_id: i64,
    pub kind: String,
    pub url: String,
    pub secret_sealed: Option<String>,
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    /// The target it goes to; `None` for an email to one user.
    pub target_id: Option<i64>,
    /// The user an email goes to (an approver, a reviewer, an environment's owner).
    pub user_id: Option<i64>,
    pub event: String,
    pub event_key: String,
    pub body: String,
    pub status: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub response_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// The outcome of one attempt, stored on its delivery.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `pending` (retry at `next_attempt_ms`), `delivered` or `failed`.
    pub status: &'static str,
    pub next_attempt_ms: i64,
    pub response_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub finished_at_ms: Option<i64>,
}

const TARGET_COLS: &str = "id, repo_id, kind, url, secret, events, created_by, created_at_ms";
const DELIVERY_COLS: &str = "id, target_id, user_id, event, event_key, body, status, attempts, \
    next_attempt_ms, response_code, error, duration_ms, created_at_ms, finished_at_ms";

fn target_from_row(row: &AnyRow) -> Result<NotifyTargetRow, StoreError> {
    let events: String = row.try_get("events")?;
    Ok(NotifyTargetRow {
        id: row.try_get("id")?,
        repo_id: row.try_get("repo_id")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        secret_sealed: row.try_get("secret")?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, StoreError> {
    Ok(DeliveryRow {
        id: row.try_get("id")?,
        target_id: row.try_get("target_id")?,
        user_id: row.try_get("user_id")?,
        event: row.try_get("event")?,
        event_key: row.try_get("event_key")?,
        body: row.try_get("body")?,
        status: row.try_get("status")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        response_code: row.try_get("response_code")?,
        error: row.try_get("error")?,
        duration_ms: row.try_get("duration_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

impl Store {
    pub async fn create_notify_target(&self, t: &NotifyTargetRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO notify_targets ({TARGET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(t.id)
        .bind(t.repo_id)
        .bind(&t.kind)
        .bind(&t.url)
        .bind(&t.secret_sealed)
        .bind(t.events.join(","))
        .bind(&t.created_by)
        .bind(t.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A repository's targets, oldest first.
    pub async fn notify_targets(&self, repo_id: i64) -> Result<Vec<NotifyTargetRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TARGET_COLS} FROM notify_targets WHERE repo_id = $1 ORDER BY id"
        ))
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(target_from_row)
        .collect()
    }

    pub async fn notify_target(&self, id: i64) -> Result<Option<NotifyTargetRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TARGET_COLS} FROM notify_targets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(target_from_row)
        .transpose()
    }

    /// Deletes a target and its deliveries; false when the repository has no such target.
    pub async fn delete_notify_target(&self, repo_id: i64, id: i64) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM notify_deliveries WHERE target_id IN \
             (SELECT id FROM notify_targets WHERE id = $1 AND repo_id = $2)",
        )
        .bind(id)
        .bind(repo_id)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query("DELETE FROM notify_targets WHERE id = $1 AND repo_id = $2")
            .bind(id)
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.rows_affected() > 0)
    }

    /// Enqueues deliveries (one transaction); a `(target, event_key)` or `(user, event_key)`
    /// already enqueued is left as it is. Returns how many rows were new.
    pub async fn enqueue_deliveries(&self, rows: &[DeliveryRow]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for d in rows {
            added += sqlx::query(&format!(
                "INSERT INTO notify_deliveries ({DELIVERY_COLS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, NULL, NULL, NULL, $8, NULL) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(d.id)
            .bind(d.target_id)
            .bind(d.user_id)
            .bind(&d.event)
            .bind(&d.event_key)
            .bind(&d.body)
            .bind(d.next_attempt_ms)
            .bind(d.created_at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Pending deliveries due at `now_ms`, oldest first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM notify_deliveries \
             WHERE status = 'pending' AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id \
             LIMIT $2"
        ))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// When the next pending delivery is due.
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_ms) AS due FROM notify_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?)
    }

    /// Claims a due delivery for one attempt: its next attempt moves to `lease_until_ms`
    /// (taken again then if this worker dies mid-attempt). False when another worker took it.
    pub async fn claim_delivery(
        &self,
        d: &DeliveryRow,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE notify_deliveries SET next_attempt_ms = $1 \
             WHERE id = $2 AND status = 'pending' AND next_attempt_ms = $3",
        )
        .bind(lease_until_ms)
        .bind(d.id)
        .bind(d.next_attempt_ms)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }

    /// Stores the outcome of attempt `attempts` of a delivery.
    pub async fn record_attempt(
        &self,
        id: i64,
        attempts: u32,
        a: &Attempt,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notify_deliveries SET status = $1, attempts = $2, next_attempt_ms = $3, \
             response_code = $4, error = $5, duration_ms = $6, finished_at_ms = $7 \
             WHERE id = $8 AND status = 'pending'",
        )
        .bind(a.status)
        .bind(i64::from(attempts))
        .bind(a.next_attempt_ms)
        .bind(a.response_code)
        .bind(&a.error)
        .bind(a.duration_ms)
        .bind(a.finished_at_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start-up: every pending delivery is due now (a restart retries at once).
    pub async fn retry_pending_deliveries(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE notify_deliveries SET next_attempt_ms = $1 \
             WHERE status = 'pending' AND next_attempt_ms > $1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A target's newest deliveries first.
    pub async fn deliveries_of_target(
        &self,
        target_id: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.deliveries_where("target_id", target_id, limit).await
    }

    /// A user's email deliveries, newest first.
    pub async fn deliveries_of_user(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.deliveries_where("user_id", user_id, limit).await
    }

    /// The newest `limit` deliveries whose `column` (a fixed column name) is `id`.
    async fn deliveries_where(
        &self,
        column: &'static str,
        id: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DELIVERY_COLS} FROM notify_deliveries WHERE {column} = $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// Keeps a user's newest `keep` finished email deliveries; pending ones are never pruned.
    pub async fn prune_user_deliveries(&self, user_id: i64, keep: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM notify_deliveries WHERE user_id = $1 AND status <> 'pending' \
             AND id < (SELECT id FROM notify_deliveries WHERE user_id = $1 \
             AND status <> 'pending' ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(user_id)
        .bind(keep - 1)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Sets (or, with `None`, removes) a user's email address; false when there is no such
    /// user.
    pub async fn set_user_email(
        &self,
        user_id: i64,
        email: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Keeps a target's newest `keep` finished deliveries; pending ones are never pruned.
    pub async fn prune_deliveries(&self, target_id: i64, keep: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM notify_deliveries WHERE target_id = $1 AND status <> 'pending' \
             AND id < (SELECT id FROM notify_deliveries WHERE target_id = $1 \
             AND status <> 'pending' ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(target_id)
        .bind(keep - 1)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
