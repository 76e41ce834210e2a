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
    /// Write `name` and `email` as `user.name`/`user.email` into the git config of the clone
    /// at `repo_dir` in `component` (a warm pool's environment claimed by a user: the
    /// prebuild's clone named "Cove prebuild"). Done by the agent with its own git, so the
    /// container needs none.
    SetGitIdentity {
        env_id: String,
        component: String,
        repo_dir: String,
        name: String,
        email: String,
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
    /// Before a create: the id of a ready pod shell (the environment's network, sources volume
    /// and started infra container, made ahead of time for the same published ports and
    /// hostname) that the environment then takes as its own; answered with
    /// [`AgentReply::Shell`] (`None`: no shell ready; the agent may make one for next time).
    /// Each shell is handed out once.
    ClaimShell { plan: EnvironmentPlan },
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
    /// The answer to [`EnvCommand::ClaimShell`].
    Shell {
        env_id: Option<String>,
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

/// The link: one WebSocket a standalone agent dials out to the server
/// (`GET /api/v1/agent/link`, its agent token), carrying [`EnvCommand`]s and their
/// [`AgentReply`]s, pushed [`EnvReport`]s and multiplexed byte streams (terminals, attached
/// execs). Control frames are JSON text messages ([`LinkFrame`]); stream bytes are binary
/// messages ([`encode_data`]). ARCHITECTURE.md "The agent link".
pub mod link {
    use serde::{Deserialize, Serialize};

    use super::{AgentReply, EnvCommand, EnvReport};

    /// Largest message either side accepts (a `Create` carries a whole plan).
    pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
    /// Largest payload of one data message.
    pub const MAX_CHUNK_BYTES: usize = 32 * 1024;
    /// Bytes a sender may have in flight on one stream, in each direction, before the
    /// receiver grants more with [`LinkFrame::Credit`].
    pub const STREAM_WINDOW_BYTES: u32 = 256 * 1024;
    /// Streams open at once on one link.
    pub const MAX_STREAMS: usize = 1024;

    /// A control frame.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    pub enum LinkFrame {
        /// Agent → server, first: the protocol version it speaks.
        Hello { protocol: u32 },
        /// Server → agent: a command; answered by the `Reply` with the same id.
        Call { id: u64, command: Box<EnvCommand> },
        /// Agent → server.
        Reply { id: u64, reply: AgentReply },
        /// Agent → server, on its own.
        Report { report: EnvReport },
        /// Server → agent: open a byte stream; answered by `Opened`.
        Open { stream: u64, open: StreamOpen },
        /// Agent → server: the stream runs (`error: None`) or could not start.
        Opened {
            stream: u64,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            error: Option<String>,
        },
        /// Server → agent: the terminal's new size.
        Resize { stream: u64, cols: u16, rows: u16 },
        /// Server → agent: close the command's stdin.
        Eof { stream: u64 },
        /// Agent → server: the command exited (after its last output); the stream ends.
        Exit { stream: u64, code: i64 },
        /// The receiver of a stream's data consumed `bytes`: the sender may send that many more.
        Credit { stream: u64, bytes: u32 },
        /// Either side gives the stream up (the reader went away); the agent ends the command's
        /// input.
        Close { stream: u64 },
    }

    /// What a stream runs.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    pub enum StreamOpen {
        /// An interactive terminal (a TTY); output is stdout only.
        Terminal {
            env_id: String,
            component: String,
            command: Vec<String>,
            cols: u16,
            rows: u16,
        },
        /// An attached exec, with a TTY of (cols, rows) or without one.
        Exec {
            env_id: String,
            component: String,
            command: Vec<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            tty: Option<(u16, u16)>,
            #[serde(default)]
            vars: Vec<String>,
        },
        /// A command in the environment's network namespace (its infra container).
        NamespaceExec {
            env_id: String,
            command: Vec<String>,
        },
        /// The contents of one of the environment's volumes as a tar archive on stdout
        /// (`cove env move`); `volume`: a devfile volume's name, `None` the sources
        /// (`/projects`). Exit 0 once the whole archive was sent.
        VolumeExport {
            env_id: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            volume: Option<String>,
        },
        /// The volume made anew from the tar archive on stdin (the other end of
        /// [`StreamOpen::VolumeExport`]); exit 0 once stdin's end was reached and the archive
        /// is in the volume.
        VolumeImport {
            env_id: String,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            volume: Option<String>,
        },
    }

    /// Which way a data message's bytes go.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DataKind {
        /// Server → agent: the command's stdin.
        Stdin = 0,
        /// Agent → server.
        Stdout = 1,
        /// Agent → server.
        Stderr = 2,
    }

    /// A binary data message: the stream id (8 bytes, big-endian), the kind (1 byte), the
    /// bytes.
    pub fn encode_data(stream: u64, kind: DataKind, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + bytes.len());
        out.extend_from_slice(&stream.to_be_bytes());
        out.push(kind as u8);
        out.extend_from_slice(bytes);
        out
    }

    /// The parts of a binary data message; `None` when it is malformed.
    pub fn decode_data(message: &[u8]) -> Option<(u64, DataKind, &[u8])> {
        if message.len() < 9 || message.len() > 9 + MAX_CHUNK_BYTES {
            return None;
        }
        let stream = u64::from_be_bytes(message[..8].try_into().ok()?);
        let kind = match message[8] {
            0 => DataKind::Stdin,
            1 => DataKind::Stdout,
            2 => DataKind::Stderr,
            _ => return None,
        };
        Some((stream, kind, &message[9..]))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn data_round_trips_and_bad_messages_are_refused() {
            let m = encode_data(7, DataKind::Stderr, b"hi");
            assert_eq!(decode_data(&m), Some((7, DataKind::Stderr, &b"hi"[..])));
            assert_eq!(decode_data(&m[..8]), None);
            let mut bad = m.clone();
            bad[8] = 9;
            assert_eq!(decode_data(&bad), None);
            let big = encode_data(1, DataKind::Stdin, &vec![0; MAX_CHUNK_BYTES + 1]);
            assert_eq!(decode_data(&big), None);
        }

        #[test]
        fn frames_are_tagged_json() {
            let f = LinkFrame::Credit {
                stream: 3,
                bytes: 10,
            };
            let text = serde_json::to_string(&f).unwrap();
            assert_eq!(text, r#"{"type":"credit","stream":3,"bytes":10}"#);
            assert_eq!(serde_json::from_str::<LinkFrame>(&text).unwrap(), f);
        }
    }
}
