//! Registered agents: registration tokens, registration, listing (issue 6).

use serde::{Deserialize, Serialize};

/// Prefix of a one-time agent registration token.
pub const REGISTRATION_TOKEN_PREFIX: &str = "cove_reg_";
/// Prefix of an agent's own token.
pub const AGENT_TOKEN_PREFIX: &str = "cove_agt_";

/// `POST /api/v1/agents/registration-tokens` (administrators).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRegistrationTokenRequest {
    /// Lifetime in seconds (default one hour, at most a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// A new registration token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationToken {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /api/v1/agents/register`, authenticated by the registration token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentRequest {
    pub name: String,
    /// The agent's version, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The agent's identity and its own token (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisteredAgent {
    pub agent_id: i64,
    pub token: String,
}

/// `GET /api/v1/agent/self`: who the agent token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentIdentity {
    pub agent_id: i64,
    pub name: String,
}

/// A registered agent as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentInfo {
    pub id: i64,
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<i64>,
    pub revoked: bool,
    /// Jobs it holds a lease on now.
    #[serde(default)]
    pub current_jobs: Vec<i64>,
}
