//! SQL for the audit log (table `audit_log`). The writer (`crate::audit`) bounds every text;
//! this module only stores, filters and expires rows.

use sqlx::Row;

use super::{next_id, Store, StoreError};

/// One audit record, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub username: Option<String>,
    pub token_id: Option<i64>,
    pub agent: Option<String>,
    pub auth: Option<String>,
    pub action: String,
    pub target: String,
    pub repo: Option<String>,
    pub client: Option<String>,
    pub result: String,
    pub status: Option<i64>,
    pub detail: Option<String>,
}

/// Filters of [`Store::list_audit`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact user name.
    pub username: Option<String>,
    /// The action contains this text.
    pub action: Option<String>,
    /// The target starts with this text.
    pub target: Option<String>,
    /// Exact repository `owner/name`.
    pub repo: Option<String>,
    /// Exact result (`ok`, `denied`, `failed`).
    pub result: Option<String>,
    /// At or after (milliseconds).
    pub since_ms: Option<i64>,
    /// Before (milliseconds).
    pub until_ms: Option<i64>,
    /// Only rows with an id below this (the cursor of the previous page).
    pub before_id: Option<i64>,
}

/// `LIKE` pattern text with `\`, `%` and `_` escaped (used with `ESCAPE '\'`).
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const AUDIT_COLS: &str = "id, at_ms, username, token_id, agent, auth, action, target, repo, \
                          client, result, status, detail";

impl Store {
    /// Stores one audit record; `row.id` is assigned here and returned.
    pub async fn insert_audit(&self, row: &AuditRow) -> Result<i64, StoreError> {
        let id = next_id();
        sqlx::query(&format!(
            "INSERT INTO audit_log ({AUDIT_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(id)
        .bind(row.at_ms)
        .bind(row.username.clone())
        .bind(row.token_id)
        .bind(row.agent.clone())
        .bind(row.auth.clone())
        .bind(row.action.clone())
        .bind(row.target.clone())
        .bind(row.repo.clone())
        .bind(row.client.clone())
        .bind(row.result.clone())
        .bind(row.status)
        .bind(row.detail.clone())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Audit records matching `filter`, newest first, at most `limit`.
    pub async fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        // Text parameters come first ($1…), numbers after them.
        let mut text_clause = |column_op: &str, value: String| {
            texts.push(value);
            clauses.push(column_op.replace('?', &format!("${}", texts.len())));
        };
        if let Some(user) = &filter.username {
            text_clause("username = ?", user.clone());
        }
        if let Some(action) = &filter.action {
            text_clause(
                "action LIKE ? ESCAPE '\\'",
                format!("%{}%", like_escape(action)),
            );
        }
        if let Some(target) = &filter.target {
            text_clause(
                "target LIKE ? ESCAPE '\\'",
                format!("{}%", like_escape(target)),
            );
        }
        if let Some(repo) = &filter.repo {
            text_clause("repo = ?", repo.clone());
        }
        if let Some(result) = &filter.result {
            text_clause("result = ?", result.clone());
        }
        let base = texts.len();
        for (op, value) in [
            ("at_ms >= ?", filter.since_ms),
            ("at_ms < ?", filter.until_ms),
            ("id < ?", filter.before_id),
        ] {
            if let Some(value) = value {
                numbers.push(value);
                clauses.push(op.replace('?', &format!("${}", base + numbers.len())));
            }
        }
        let limit_param = base + numbers.len() + 1;
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLS} FROM audit_log {where_sql} ORDER BY id DESC LIMIT ${limit_param}"
        );
        let mut query = sqlx::query(&sql);
        for text in texts {
            query = query.bind(text);
        }
        for number in numbers {
            query = query.bind(number);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    id: row.try_get("id")?,
                    at_ms: row.try_get("at_ms")?,
                    username: row.try_get("username")?,
                    token_id: row.try_get("token_id")?,
                    agent: row.try_get("agent")?,
                    auth: row.try_get("auth")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                    repo: row.try_get("repo")?,
                    client: row.try_get("client")?,
                    result: row.try_get("result")?,
                    status: row.try_get("status")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Deletes audit records older than `before_ms`; returns how many.
    pub async fn delete_audit_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::like_escape;

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(like_escape(r"a%b_c\d"), r"a\%b\_c\\d");
    }
}
