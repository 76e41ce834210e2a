//! Branch rules: a repository's ordered list, replaced as a whole (table `branch_rules`,
//! migration 0014).

use cove_api::BranchRule;
use sqlx::Row;

use super::{Store, StoreError};

fn list_json<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn list_from<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_json::from_str(text).unwrap_or_default()
}

impl Store {
    /// The repository's branch rules, in order.
    pub async fn branch_rules(&self, repo_id: i64) -> Result<Vec<BranchRule>, StoreError> {
        let rows = sqlx::query(
            "SELECT pattern, require_pull_request, required_approvals, required_checks, \
             merge_roles, merge_users, allow_force_push, allow_deletion, require_up_to_date \
             FROM branch_rules WHERE repo_id = $1 ORDER BY position",
        )
        .bind(repo_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let approvals: i64 = row.try_get("required_approvals")?;
                let checks: String = row.try_get("required_checks")?;
                let roles: String = row.try_get("merge_roles")?;
                let users: String = row.try_get("merge_users")?;
                Ok(BranchRule {
                    pattern: row.try_get("pattern")?,
                    require_pull_request: row.try_get::<i64, _>("require_pull_request")? != 0,
                    required_approvals: u32::try_from(approvals).unwrap_or(u32::MAX),
                    required_checks: list_from(&checks),
                    merge_roles: list_from(&roles),
                    merge_users: list_from(&users),
                    allow_force_push: row.try_get::<i64, _>("allow_force_push")? != 0,
                    allow_deletion: row.try_get::<i64, _>("allow_deletion")? != 0,
                    require_up_to_date: row.try_get::<i64, _>("require_up_to_date")? != 0,
                })
            })
            .collect()
    }

    /// Replaces the repository's branch rules with `rules` (in this order), in one
    /// transaction.
    pub async fn set_branch_rules(
        &self,
        repo_id: i64,
        rules: &[BranchRule],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM branch_rules WHERE repo_id = $1")
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
        for (position, rule) in rules.iter().enumerate() {
            sqlx::query(
                "INSERT INTO branch_rules (repo_id, position, pattern, require_pull_request, \
                 required_approvals, required_checks, merge_roles, merge_users, \
                 allow_force_push, allow_deletion, require_up_to_date) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(repo_id)
            .bind(position as i64)
            .bind(&rule.pattern)
            .bind(i64::from(rule.require_pull_request))
            .bind(i64::from(rule.required_approvals))
            .bind(list_json(&rule.required_checks))
            .bind(list_json(&rule.merge_roles))
            .bind(list_json(&rule.merge_users))
            .bind(i64::from(rule.allow_force_push))
            .bind(i64::from(rule.allow_deletion))
            .bind(i64::from(rule.require_up_to_date))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
