//! The audit log (issue 14): who did what, when, from where, with what result.

use serde::{Deserialize, Serialize};

/// One entry of the audit log (`GET /api/v1/audit`, administrators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The user who acted (for a failed login: the user name that was tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The API token used, when the caller authenticated with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<i64>,
    /// The registered agent, when an agent token was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How the caller authenticated: `token`, `password`, `session`, `agent`, `registration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// What: `login`, `git.push`, or the route as `METHOD /api/v1/path/{param}`.
    pub action: String,
    /// The concrete object: the request path, or `owner/name` for a push.
    pub target: String,
    /// The repository concerned (`owner/name`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The client's address (the TCP peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `ok`, `denied` (not authenticated or not allowed) or `failed`.
    pub result: String,
    /// The HTTP status answered, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// More about what was done, e.g. the refs a push updated. Never a secret or a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
