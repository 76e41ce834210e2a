//! Wire types of the web UI's browser sessions (`/api/v1/session`).

use serde::{Deserialize, Serialize};

/// `GET`/`POST /api/v1/session`: who is logged in and the CSRF token the page must send in
/// `X-Cove-CSRF` on every cookie-authenticated request that changes something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub username: String,
    pub is_admin: bool,
    /// Present when the request was authenticated by the session cookie (or created it).
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub expires_at: Option<i64>,
}
