//! Notification targets and their delivery logs (`/repos/{owner}/{name}/notifications/…`).

use serde::{Deserialize, Serialize};

/// The events a notification target may subscribe to.
pub const NOTIFY_EVENTS: [&str; 10] = [
    "run_succeeded",
    "run_failed",
    "approval_needed",
    "approval_decided",
    "pr_opened",
    "review_requested",
    "pr_merged",
    "env_stopped_idle",
    "issue_mentioned",
    "issue_assigned",
];

/// A repository's notification target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyTarget {
    pub id: i64,
    /// `slack` (a Slack-compatible incoming webhook: `{"text": …}`), `webhook` (a JSON body
    /// signed with HMAC-SHA256 in `X-Cove-Signature`) or `email` (through the server's SMTP
    /// server).
    pub kind: String,
    /// The target's URL with its path hidden (an incoming-webhook URL is itself a credential);
    /// an `email` target's is `mailto:` and its addresses.
    pub url: String,
    /// The addresses of an `email` target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Subscribed events (see `NOTIFY_EVENTS`).
    pub events: Vec<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    /// The signing secret of a `webhook` target: only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Body of `POST …/notifications/targets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateNotifyTarget {
    /// `slack`, `webhook` or `email`.
    pub kind: String,
    /// `http://` or `https://` URL (`slack`, `webhook`); private, loopback and link-local
    /// addresses are refused unless the server's `[notify] allow_private` allows them.
    #[serde(default)]
    pub url: String,
    /// Email addresses (`email`: 1 to 20, plain `user@example.com`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Events to send (empty: all of them).
    #[serde(default)]
    pub events: Vec<String>,
}

/// One delivery of an event to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyDelivery {
    /// Also the `X-Cove-Delivery` header.
    pub id: i64,
    pub event: String,
    /// `pending`, `delivered` or `failed` (every attempt failed).
    pub status: String,
    pub attempts: u32,
    /// HTTP status of the last attempt, when one answered.
    pub response_code: Option<u16>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Duration of the last attempt.
    pub duration_ms: Option<i64>,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// Body of `PUT /api/v1/user/email` and `PUT /api/v1/users/{username}/email`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetEmailRequest {
    /// A plain address (`user@example.com`), or null to remove it: the user then gets no
    /// email notifications.
    pub email: Option<String>,
}
