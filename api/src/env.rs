//! Environments: REST request/response types.

use serde::{Deserialize, Serialize};

/// Lifecycle state of an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    Creating,
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
    Deleting,
    /// Its agent's link is down: not running, not deleted; commands on it are refused until
    /// the agent is back and the environment is reconciled (docs/agents.md).
    #[serde(rename = "agent_unreachable")]
    AgentUnreachable,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Creating => "creating",
            EnvState::Starting => "starting",
            EnvState::Running => "running",
            EnvState::Stopping => "stopping",
            EnvState::Stopped => "stopped",
            EnvState::Failed => "failed",
            EnvState::Deleting => "deleting",
            EnvState::AgentUnreachable => "agent_unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<EnvState> {
        Some(match s {
            "creating" => EnvState::Creating,
            "starting" => EnvState::Starting,
            "running" => EnvState::Running,
            "stopping" => EnvState::Stopping,
            "stopped" => EnvState::Stopped,
            "failed" => EnvState::Failed,
            "deleting" => EnvState::Deleting,
            "agent_unreachable" => EnvState::AgentUnreachable,
            _ => return None,
        })
    }

    /// States in which an operation is still in flight.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            EnvState::Creating | EnvState::Starting | EnvState::Stopping | EnvState::Deleting
        )
    }
}

/// What an environment is worked on with besides Cove's web terminal (docs/vscode.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Editor {
    /// The web terminal, SSH and port forwarding only.
    #[default]
    Terminal,
    /// Also VS Code in the browser (code-server), started in the environment's first
    /// source container and reached through the server at `/env/{env}/vscode/`.
    Vscode,
}

impl Editor {
    pub fn as_str(self) -> &'static str {
        match self {
            Editor::Terminal => "terminal",
            Editor::Vscode => "vscode",
        }
    }

    pub fn parse(s: &str) -> Option<Editor> {
        match s {
            "terminal" => Some(Editor::Terminal),
            "vscode" => Some(Editor::Vscode),
            _ => None,
        }
    }
}

/// `POST /api/v1/repos/{owner}/{name}/environments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironmentRequest {
    /// Branch to work on (default: the repository's default branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Create this branch from `from` (or the default branch) and work on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Devfile path in the repository (default: devfile.yaml, .devfile.yaml, … or Cove's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devfile_path: Option<String>,
    /// Name, unique per repository (default: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Compute size for containers whose devfile sets no limits: `small` (2 GiB, 1 CPU),
    /// `medium` (4 GiB, 2 CPUs, the default), `large` (8 GiB, 4 CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Stop after this many seconds without exec or terminal activity; 0 = never (default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// `vscode` adds VS Code in the browser (default: the caller's `editor` setting, else
    /// `terminal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<Editor>,
    /// Labels the environment's agent must carry (`pool=gpu`; `cove env create --pool`); also
    /// the devfile's `cove.dev/pool` attribute. Empty: the embedded agent, else any agent
    /// (docs/agents.md "Environments on agents").
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `POST /api/v1/environments/{env}/move` (`cove env move`): where the stopped environment
/// goes — the agent named `agent`, or the agent placement picks for `labels` (docs/agents.md
/// "Moving an environment"). One of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveEnvironmentRequest {
    /// The agent's name (`cove agent list`; `embedded` for the server's own agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Labels the new agent must carry (`pool=gpu`; `cove env move --pool`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A published endpoint of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvEndpoint {
    pub name: String,
    pub port: u16,
    pub exposure: String,
    pub protocol: String,
    /// Where it is reachable: `public` endpoints through the server's proxy
    /// (`<server>/env/<env-id>/<endpoint>/`, for those who may see the environment),
    /// `internal` ones on the agent's host while the environment runs. `none` endpoints are
    /// not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An environment (`GET /api/v1/environments/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Environment {
    pub id: String,
    pub name: String,
    /// `owner/name`.
    pub repo: String,
    pub branch: String,
    pub state: EnvState,
    /// Why it failed, or what the last operation reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The devfile in the workspace differs from the applied one.
    pub restart_required: bool,
    /// The devfile of the environment's branch in the repository changed after the
    /// environment was created or last updated (`POST …/update` applies it).
    #[serde(default)]
    pub outdated: bool,
    /// What changed in the devfile (a short line diff), when `restart_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devfile_changes: Option<String>,
    /// Devfile path in the repository; `None` for Cove's default devfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devfile_path: Option<String>,
    pub components: Vec<String>,
    pub endpoints: Vec<EnvEndpoint>,
    pub idle_timeout_secs: u64,
    pub last_activity_ms: i64,
    pub created_at: i64,
    pub owner: String,
    /// The editor chosen at create.
    #[serde(default)]
    pub editor: Editor,
    /// VS Code in the browser through the server (`<server>/env/<env-id>/vscode/`), for the
    /// environment's owner, when `editor` is `vscode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor_url: Option<String>,
    /// The agent it runs on (`embedded`, or a registered agent's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why it was placed there (the placement rule that chose the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// The engine under that agent (its `backend` label: `docker`, `kubernetes`); `None`
    /// when the agent did not report one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The commit of the prebuild the environment was created from; `None`: a cold create
    /// (cloned and built at create). docs/prebuilds.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prebuilt_from: Option<String>,
}

/// One line of an environment's history: progress, postStart output, state changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvEvent {
    pub id: i64,
    pub at_ms: i64,
    /// `progress`, `post_start`, `pre_stop`, `project`, `dotfiles`, `state`, `error`.
    pub kind: String,
    pub message: String,
}

/// `POST /api/v1/environments/{id}/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Container component (default: the main one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub command: Vec<String>,
}

/// Result of a non-interactive exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecResult {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Body of a 422 answer for an invalid devfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvalidDevfile {
    pub error: String,
    /// `FILE:LINE:COL: error: …` lines.
    pub message: String,
}
