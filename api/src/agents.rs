//! Registered agents: registration tokens, registration, listing (issue 6); labels,
//! capacity and agent pools (issue 20, docs/agents.md).

use std::collections::BTreeMap;

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
    /// The agent pool the registered agent joins (by name); none: no pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
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
    /// Labels the agent declares (`region=eu`, `backend=docker`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What the agent can take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<AgentCapacity>,
}

/// What an agent has and runs, as it reports it on registration and every status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentCapacity {
    /// CPUs of its engine's host.
    #[serde(default)]
    pub cpus: u32,
    /// Memory of its engine's host, bytes.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Jobs it runs at once (its slots).
    #[serde(default)]
    pub max_jobs: u32,
    /// Jobs it runs now.
    #[serde(default)]
    pub running_jobs: u32,
    /// Environments it runs now.
    #[serde(default)]
    pub running_environments: u32,
    /// Environments it may run at once (`max_environments` of its configuration; 0: no
    /// limit). Placement gives a new environment only to an agent with room, and starting a
    /// stopped one on a full agent is refused (docs/agents.md "Room").
    #[serde(default)]
    pub max_environments: u32,
}

/// `POST /api/v1/agent/status` (the agent's own token): labels and capacity, sent every few
/// seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentStatus {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub capacity: AgentCapacity,
}

/// `POST /api/v1/agent-pools` (administrators): a pool whose agents serve only these
/// repositories and the repositories of these owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAgentPoolRequest {
    pub name: String,
    /// `owner/name` of each allowed repository.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Owners (users or organisations) all of whose repositories are allowed.
    #[serde(default)]
    pub owners: Vec<String>,
}

/// An agent pool as listed to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentPool {
    pub id: i64,
    pub name: String,
    pub repos: Vec<String>,
    pub owners: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Names of the (unrevoked) agents in the pool.
    #[serde(default)]
    pub agents: Vec<String>,
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
    /// Its agent pool, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Its labels as placement sees them (the `pool` label is the pool's name).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// As last reported.
    #[serde(default)]
    pub capacity: AgentCapacity,
    /// Its `backend` label (`docker`, `kubernetes`); empty when not reported.
    #[serde(default)]
    pub backend: String,
    /// Environments it runs (ids), as far as the server knows.
    #[serde(default)]
    pub current_environments: Vec<String>,
    /// The server's embedded agent (id 0; not registered, never revoked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedded: bool,
}
