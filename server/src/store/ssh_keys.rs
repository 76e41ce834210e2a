//! SQL for SSH public keys (migration 0021_ssh_keys). A key's fingerprint is unique across
//! users, so an SSH login with a key names exactly one user.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{map_unique, Store, StoreError};

/// A stored key with its owner's name.
#[derive(Debug, Clone)]
pub struct SshKeyRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const COLS: &str = "k.id, k.user_id, u.username, k.name, k.algorithm, k.fingerprint, \
    k.public_key, k.created_at, k.last_used_at";

fn key_from_row(row: &AnyRow) -> Result<SshKeyRow, StoreError> {
    Ok(SshKeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        algorithm: row.try_get("algorithm")?,
        fingerprint: row.try_get("fingerprint")?,
        public_key: row.try_get("public_key")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    /// Stores a key (`id`, `user_id`, `name`, `algorithm`, `fingerprint`, `public_key`,
    /// `created_at` are used); a fingerprint already registered by anyone is a conflict.
    pub async fn add_ssh_key(&self, k: &SshKeyRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ssh_keys (id, user_id, name, algorithm, fingerprint, public_key, \
             created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(k.id)
        .bind(k.user_id)
        .bind(&k.name)
        .bind(&k.algorithm)
        .bind(&k.fingerprint)
        .bind(&k.public_key)
        .bind(k.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| map_unique(e, || format!("SSH key {}", k.fingerprint)))?;
        Ok(())
    }

    /// One user's keys (`Some(user_id)`) or everyone's, oldest first.
    pub async fn ssh_keys(&self, user_id: Option<i64>) -> Result<Vec<SshKeyRow>, StoreError> {
        let rows = match user_id {
            Some(uid) => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM ssh_keys k JOIN users u ON u.id = k.user_id \
                     WHERE k.user_id = $1 ORDER BY k.id"
                ))
                .bind(uid)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLS} FROM ssh_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(key_from_row).collect()
    }

    /// The key with this fingerprint, with its owner.
    pub async fn ssh_key_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<SshKeyRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLS} FROM ssh_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.fingerprint = $1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    /// Removes key `id` (of `user_id` when given; any user's when `None`); false when there
    /// is no such key.
    pub async fn delete_ssh_key(&self, id: i64, user_id: Option<i64>) -> Result<bool, StoreError> {
        let done = match user_id {
            Some(uid) => {
                sqlx::query("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(uid)
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM ssh_keys WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() > 0)
    }

    /// Records a login with key `id`.
    pub async fn touch_ssh_key(&self, id: i64, now_secs: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE ssh_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now_secs)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
