//! The agent protocol: what the server asks an agent to do with
//! environments, and what the agent reports back. The embedded agent
//! receives these values in process; a remote agent receives the same values
//! over the network.

use devfiles::EnvironmentPlan;
use serde::{Deserialize, Serialize};

use crate::{EnvState, ExecResult};

/// Protocol version; bumped on incompatible changes.
pub const AGENT_PROTOCOL_VERSION: u32 = 1;

/// Where an environment's sources come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSource {
    /// Clone URL the agent can reach, without credentials.
    pub clone_url: String,
    /// Directory under PROJECTS_ROOT.
    pub repo: String,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_branch: Option<String>,
    /// `Authorization: …` header line for the clone; short-lived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    pub git_user_name: String,
    pub git_user_email: String,
}

impl std::fmt::Debug for EnvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvSource")
            .field("clone_url", &self.clone_url)
            .field("repo", &self.repo)
            .field("branch", &self.branch)
            .field("new_branch", &self.new_branch)
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A user's dotfiles repository to clone into an environment's home (`~/.dotfiles`) and
/// install once, on create. The server has checked the URL (SSRF guard) and pinned the
/// address it resolved to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvDotfiles {
    /// http(s) clone URL without credentials.
    pub clone_url: String,
    /// `Authorization: …` header line (a Cove repository's short-lived credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<String>,
    /// `host:port:address` the URL's host must resolve to (curl's resolve list), so no
    /// second DNS answer is used after the server's check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
}

impl std::fmt::Debug for EnvDotfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvDotfiles")
            .field("clone_url", &self.clone_url)
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|_| "<redacted>"),
            )
            .field("resolve", &self.resolve)
            .finish()
    }
}

/// A request from the server to an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnvCommand {
    /// Create the pod, clone sources, run postStart. Reports progress and a final state.
    Create {
        env_id: String,
        plan: EnvironmentPlan,
        source: Option<EnvSource>,
        /// The owner's dotfiles, installed after the sources are cloned; a failure is
        /// reported and never fails the environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dotfiles: Option<EnvDotfiles>,
        /// `vscode`: code-server mounted into the first source container and started there.
        #[serde(default)]
        editor: crate::Editor,
    },
    /// Start stopped containers.
    Start {
        env_id: String,
        plan: EnvironmentPlan,
        #[serde(default)]
        editor: crate::Editor,
    },
    /// Run preStop, stop containers.
    Stop {
        env_id: String,
        plan: EnvironmentPlan,
    },
    /// Recreate containers from `plan`, keeping volumes.
    Restart {
        env_id: String,
        old_plan: EnvironmentPlan,
        plan: EnvironmentPlan,
        #[serde(default)]
        editor: crate::Editor,
    },
    /// Remove containers and volumes.
    Delete { env_id: String },
    /// Load and plan the devfile at `path` inside the workspace.
    PlanWorkspace {
        env_id: String,
        component: String,
        path: String,
        repo: String,
        /// The devfile's `parent.id` parent, fetched by the server from a
        /// devfile registry: (display name, text), or why it could not be.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry_parent: Option<Result<(String, String), String>>,
    },
    /// Read a file in a component (e.g. the workspace devfile).
    ReadFile {
        env_id: String,
        component: String,
        path: String,
    },
    /// Run a command to completion.
    Exec {
        env_id: String,
        component: String,
        command: Vec<String>,
    },
    /// The last lines of a component's output.
    Logs {
        env_id: String,
        component: String,
        tail: u32,
    },
    /// Every environment the agent has (for reconciliation).
    List,
    /// Run a prebuild (docs/prebuilds.md): a pod `pod_id` from `plan`, the sources cloned,
    /// the `build` command and, when `post_start`, the postStart events run, then every
    /// component container committed to `image_repo:<component>` (the main one with its
    /// sources under the source mapping) and the pod removed. Answered with
    /// [`AgentReply::Prebuilt`] once done (success or failure).
    Prebuild {
        pod_id: String,
        plan: EnvironmentPlan,
        source: EnvSource,
        /// The devfile's default `build` command, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        build: Option<String>,
        /// Whether the devfile marks its postStart events prebuild-safe.
        #[serde(default)]
        post_start: bool,
        /// The commit the branch is expected at: the prebuild fails when the clone has
        /// another one (the branch moved; a newer prebuild follows).
        sha: String,
        /// Image repository of the snapshots (`cove-prebuild/<id>`).
        image_repo: String,
        /// Labels put on the snapshot images (repository, prebuild).
        #[serde(default)]
        labels: Vec<(String, String)>,
    },
    /// Remove the snapshot images of Cove installation `install` (their `cove.prebuild.install`
    /// label) whose prebuild (`cove.prebuild` label) is not in `keep`. Images still used by a
    /// container stay (the next pass retries).
    RemovePrebuilds { install: String, keep: Vec<String> },
}

/// A component's snapshot image of a prebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrebuiltImage {
    pub component: String,
    pub image: String,
}

/// The direct answer to an [`EnvCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentReply {
    /// A long operation was accepted; its outcome arrives as [`EnvReport`]s.
    Accepted,
    Plan {
        plan: Box<EnvironmentPlan>,
        devfile: String,
    },
    File {
        content: Option<String>,
    },
    Exec {
        result: ExecResult,
    },
    Logs {
        text: String,
    },
    Pods {
        pods: Vec<PodReport>,
    },
    /// A prebuild ended: its snapshot images on success, `error` on failure; `log` is
    /// bounded (the prebuild's steps and command output).
    Prebuilt {
        images: Vec<PrebuiltImage>,
        log: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The command could not be carried out; `message` is for people.
    Error {
        message: String,
    },
}

/// What an agent knows about one environment's containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodReport {
    pub env_id: String,
    pub running: bool,
    pub components: Vec<String>,
    pub endpoints: Vec<PublishedPort>,
}

/// A container port published on the agent's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

/// Something an agent tells the server on its own, while or after working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnvReport {
    Progress {
        env_id: String,
        step: String,
    },
    CommandOutput {
        env_id: String,
        event: String,
        command: String,
        exit_code: i64,
        output: String,
    },
    State {
        env_id: String,
        state: EnvState,
        reason: Option<String>,
        endpoints: Vec<PublishedPort>,
    },
}

/// Input to an interactive terminal (a `docker exec` with a TTY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TermInput {
    Data { bytes: Vec<u8> },
    Resize { cols: u16, rows: u16 },
}

/// Output of an interactive terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TermOutput {
    Data { bytes: Vec<u8> },
    Exit { code: i64 },
}
