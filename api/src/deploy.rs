//! Deployment environments (`/api/v1/repos/{owner}/{name}/deploy/environments`): per
//! repository named targets (dev, test, prod) with AWS account connections set by an
//! administrator, protection rules, environment-scoped variables and secrets, and the history
//! of deployments into each.

use serde::{Deserialize, Serialize};

use crate::Role;

/// Who may deploy into an environment, from which branches, after how many approvals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployProtection {
    /// The least repository role that may deploy (absent: `writer`, unless `deployers` names
    /// people, then only they may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer_role: Option<Role>,
    /// Users who may deploy whatever their role.
    #[serde(default)]
    pub deployers: Vec<String>,
    /// Approvals a deploy action needs before it starts (0: none).
    #[serde(default)]
    pub required_approvals: u32,
    /// Who may approve (empty: the repository's owners).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Branches that may deploy, as patterns (`*` matches any run of characters); empty: every
    /// branch.
    #[serde(default)]
    pub branches: Vec<String>,
}

/// Body of `POST …/deploy/environments` (create) and `PUT …/deploy/environments/{environment}`
/// (update; `name` must then be absent or the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployEnvRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub protection: DeployProtection,
}

/// An AWS account an environment deploys into and the roles that may be assumed there. Set
/// only by administrators (`PUT …/connections/{connection}`): nothing a repository owner
/// types decides which role the agent's credentials assume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployConnection {
    /// The name workflows use (`Environment.Connections[].Name`).
    pub name: String,
    /// 12-digit AWS account id.
    pub account_id: String,
    /// AWS region of the STS call (e.g. `us-east-1`).
    pub region: String,
    /// IAM role ARNs (in `account_id`) a workflow may name as `Role`.
    pub roles: Vec<String>,
    /// Name of an endpoint profile of the server's configuration (`[packages.endpoints.NAME]`)
    /// whose `sts` endpoint the agent calls; absent: AWS's regional endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<String>,
}

/// Body of `PUT …/deploy/environments/{environment}/connections/{connection}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployConnectionRequest {
    pub account_id: String,
    pub region: String,
    pub roles: Vec<String>,
    #[serde(default)]
    pub endpoints: Option<String>,
}

/// An environment-scoped variable; a secret's value is never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployVariable {
    pub name: String,
    pub secret: bool,
    /// The value of a plain variable; absent for secrets (write-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Body of `PUT …/deploy/environments/{environment}/variables/{variable}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployVariableRequest {
    pub value: String,
    /// A secret: sealed at rest, never shown, masked in logs.
    #[serde(default)]
    pub secret: bool,
}

/// One deploy action of a run into an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    pub id: i64,
    pub environment: String,
    pub run_id: i64,
    /// The run's number in its repository (`owner/name#N`).
    pub run_number: i64,
    pub action: String,
    pub branch: String,
    pub commit_sha: String,
    /// Who started the run (the pusher, the person who started it by hand).
    pub actor: Option<String>,
    /// `pending`, `waiting_approval`, `running`, `succeeded`, `failed`, `refused`,
    /// `cancelled`, … (the deploy action's job state, or `refused`).
    pub state: String,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The run this deployment rolls back to (`cove deploy rollback --to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<i64>,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

/// A deploy action of a run (`Job.deployment`): the environment it deploys to and where the
/// deploy stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDeployment {
    /// The deployment environment (`#/repos/{owner}/{name}/deploy/{environment}` in the web UI).
    pub environment: String,
    /// As in [`Deployment::state`]: the job's state, or `refused`.
    pub state: String,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// While it waits for approvals: `waiting for 1 approval(s) from olga`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// A deployment environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployEnvironment {
    pub name: String,
    pub description: String,
    pub protection: DeployProtection,
    pub connections: Vec<DeployConnection>,
    pub variables: Vec<DeployVariable>,
    /// The latest successful deployment: what is deployed there now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Deployment>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Body of `POST …/deploy/environments/{environment}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The earlier run (its number in the repository) whose deploy actions run again.
    pub run: i64,
}

/// What a leased deploy action's agent assumes: decided by the server from the environment's
/// administrator-set connection, never from anything a repository owner typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDeploy {
    pub environment: String,
    pub connection: String,
    pub account_id: String,
    pub region: String,
    pub role_arn: String,
    /// `cove-<repo>-<run>-<action>`, at most 64 characters.
    pub session_name: String,
    /// The session's duration: the action's timeout and a margin, 900..=43200 s.
    pub duration_secs: u64,
    /// Session tags: repository, branch, environment.
    pub tags: Vec<(String, String)>,
    /// STS endpoint of the connection's endpoint profile (administrator configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_endpoint: Option<String>,
}
