//! `GET /api/v1/audit` (administrators): the audit log, newest first, filtered and paged.

use axum::extract::State;
use cove_api::{AuditEntry, AuditPage};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{self, Json, Query};
use crate::store::{AuditFilter, AuditRow};
use crate::AppState;

/// Filters of `GET /api/v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this user (exact name; for a failed login, the name that was tried).
    user: Option<String>,
    /// Only actions containing this text (e.g. `login`, `git.push`, `/tokens`).
    action: Option<String>,
    /// Only targets starting with this text (e.g. `/api/v1/environments/ENV`).
    target: Option<String>,
    /// Only this repository (`owner/name`).
    repo: Option<String>,
    /// Only this result: `ok`, `denied` or `failed`.
    result: Option<String>,
    /// At or after this time (milliseconds since the Unix epoch).
    since: Option<i64>,
    /// Before this time (milliseconds since the Unix epoch).
    until: Option<i64>,
    /// How many, newest first: 1 or more (default 100; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Longest filter text accepted.
const MAX_FILTER_CHARS: usize = 256;

fn text(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > MAX_FILTER_CHARS => Err(ApiError::BadRequest(format!(
            "{name} is longer than {MAX_FILTER_CHARS} characters"
        ))),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn entry(row: AuditRow) -> AuditEntry {
    AuditEntry {
        id: row.id,
        at_ms: row.at_ms,
        user: row.username,
        token_id: row.token_id,
        agent: row.agent,
        auth: row.auth,
        action: row.action,
        target: row.target,
        repo: row.repo,
        client: row.client,
        result: row.result,
        status: row.status.and_then(|s| u16::try_from(s).ok()),
        detail: row.detail,
    }
}

/// `GET /api/v1/audit`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = extract::limit(q.limit, 100, 1000)?;
    let result = text("result", q.result)?;
    if let Some(r) = &result {
        if !matches!(r.as_str(), "ok" | "denied" | "failed") {
            return Err(ApiError::BadRequest(format!(
                "result must be ok, denied or failed (got {r:?})"
            )));
        }
    }
    let before_id = match text("cursor", q.cursor)? {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::BadRequest("cursor must be the next_cursor of a previous page".into())
        })?),
    };
    let filter = AuditFilter {
        username: text("user", q.user)?,
        action: text("action", q.action)?,
        target: text("target", q.target)?,
        repo: text("repo", q.repo)?,
        result,
        since_ms: q.since,
        until_ms: q.until,
        before_id,
    };
    // One more than asked tells whether there is a next page.
    let mut rows = state.store().list_audit(&filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(entry).collect(),
        next_cursor,
    }))
}
