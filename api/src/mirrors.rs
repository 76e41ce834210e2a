//! Mirrors of external git repositories (`/repos/{owner}/{name}/mirror…`): a repository whose
//! branches and tags follow an upstream on GitHub, GitLab or Gitea/Forgejo, fetched when that
//! forge's push webhook arrives.

use serde::{Deserialize, Serialize};

/// The forges whose push webhooks a mirror accepts.
pub const MIRROR_FORGES: [&str; 3] = ["github", "gitlab", "gitea"];

/// Body of `PUT …/mirror`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetMirror {
    /// The upstream's `http://` or `https://` clone URL, without user name or password.
    /// Loopback, private and link-local addresses are refused unless the server's
    /// `[mirrors] allow_private` allows them.
    pub url: String,
    /// `github`, `gitlab` or `gitea` (Gitea and Forgejo): which webhook format and signature
    /// the webhook endpoint accepts.
    pub forge: String,
    /// The webhook secret to verify deliveries with (8 to 256 characters). Absent: the
    /// current one is kept, or on creation Cove generates one and answers it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// A token to fetch a private upstream with (sent as HTTP Basic password, never in the
    /// URL). Absent: the current one is kept; empty: removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The HTTP Basic user name sent with `token` (default: `x-access-token` for GitHub,
    /// `oauth2` for GitLab and Gitea).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// A repository's mirror configuration. Secrets are never shown, except the generated webhook
/// secret in the answer to the `PUT` that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mirror {
    pub url: String,
    pub forge: String,
    /// Where the upstream forge sends its push webhooks.
    pub webhook_url: String,
    /// A fetch token is configured.
    pub has_token: bool,
    /// The HTTP Basic user name sent with the token.
    pub username: String,
    pub created_by: String,
    pub created_at_ms: i64,
    /// When the last fetch ended, and how (`ok`, or why it failed).
    pub last_sync_at_ms: Option<i64>,
    pub last_sync_result: Option<String>,
    /// The generated webhook secret: only in the answer to the `PUT` that generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

/// One ref moved by a fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MirrorRefUpdate {
    pub ref_name: String,
    /// 40 zeros when the ref was created.
    pub old_sha: String,
    /// 40 zeros when the ref was deleted (pruned).
    pub new_sha: String,
}

/// Answer of `POST …/mirror/sync`: the refs that moved (each recorded as a push event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MirrorSync {
    pub updated: Vec<MirrorRefUpdate>,
}

/// Answer of the webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MirrorWebhookAnswer {
    /// `queued` (a fetch will run; 202), `pong` (a ping; 200) or `ignored` (not a push; 202).
    pub status: String,
    pub message: String,
}
