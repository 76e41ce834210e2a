//! Environments as pods on Docker: the types and the runtime here; `create` (volumes, the
//! infra container, the components), `lifecycle` (status, stop, start, delete), `exec`
//! (commands, files, logs), `restart` (per-component diffs), `prebuild` (snapshots),
//! `shells` (warm pod shells) and `volumes` (volume export and import).

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::Docker;
use devfiles::{ContainerPlan, EnvironmentPlan};
use serde::{Deserialize, Serialize};

/// Label on every Docker object Cove owns: the environment id.
pub const LABEL_ENV: &str = "cove.env";
/// `infra`, `component`, `sources` or `volume`.
pub const LABEL_ROLE: &str = "cove.role";
/// The devfile component a container or volume belongs to.
pub const LABEL_COMPONENT: &str = "cove.component";
/// `true` on volumes that are recreated on every start (devfile `ephemeral`).
pub const LABEL_EPHEMERAL: &str = "cove.ephemeral";
/// On containers: digests of what the container was created from, per aspect (image,
/// command, env, mounts, resources, other); a restart keeps the containers whose digests
/// the new plan reproduces (`restart.rs`).
pub const LABEL_SPEC: &str = "cove.spec";

mod create;
mod exec;
mod lifecycle;
pub mod prebuild;
mod restart;
pub mod shells;
pub(crate) mod volumes;
use create::infra_body;
pub use create::signals_forwarded;
pub use restart::{Change, ComponentChange, RestartPlan};

/// Seconds a container gets between SIGTERM and SIGKILL on stop.
const STOP_TIMEOUT_SECS: i32 = 5;

/// Capabilities taken from Docker's default set in every component
/// container: raw sockets (packet spoofing, ARP games on the bridge),
/// device nodes, audit writes and file capabilities. The infra container
/// keeps none at all. docs/security.md "What an environment can reach".
pub const DROPPED_CAPABILITIES: &[&str] = devfiles::REFUSED_CAPABILITIES;

/// Docker capability lists of a component: Cove's baseline drops plus the
/// plan's (`container-overrides`), and the plan's additions limited to
/// [`devfiles::ADDABLE_CAPABILITIES`], whatever the plan says (a plan can
/// come from a stored row or a request).
fn capabilities(c: &ContainerPlan) -> (Vec<String>, Vec<String>) {
    let mut drop: Vec<String> = DROPPED_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    for d in &c.cap_drop {
        let d = devfiles::capability_name(d);
        if !drop.contains(&d) {
            drop.push(d);
        }
    }
    let add = c
        .cap_add
        .iter()
        .map(|a| devfiles::capability_name(a))
        .filter(|a| devfiles::ADDABLE_CAPABILITIES.contains(&a.as_str()))
        .collect();
    (add, drop)
}

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("cannot reach the Docker engine: {0}")]
    Connect(#[source] DockerError),
    #[error("environment id `{0}` is not valid (lower-case letters, digits and '-', at most 40)")]
    BadId(String),
    #[error("environment `{0}` has no containers on this engine")]
    NotFound(String),
    #[error("environment `{env}` has no component `{component}`")]
    NoComponent { env: String, component: String },
    #[error("environment `{env}`: {what}")]
    TooLarge { env: String, what: String },
    #[error("environment `{env}`: {what}")]
    OverLimit { env: String, what: String },
    #[error("environment `{env}`: {message}")]
    Editor { env: String, message: String },
    /// Moving a volume out of or into this engine (`pod::volumes`).
    #[error("volume of environment `{env}`: {message}")]
    Volume { env: String, message: String },
    #[error("network of environment `{env}`: {message}")]
    Network { env: String, message: String },
    #[error("docker {action} for environment `{env}` failed: {source}")]
    Docker {
        env: String,
        action: String,
        #[source]
        source: DockerError,
    },
}

type Result<T> = std::result::Result<T, PodError>;

/// What to run: an environment id and its plan.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub env_id: String,
    pub plan: EnvironmentPlan,
    /// Image of the infra container (tiny; it only holds the namespace).
    pub infra_image: String,
    /// Address endpoints are published on (127.0.0.1 by default).
    pub publish_address: String,
    /// Process limit of every container.
    pub pids_limit: i64,
    /// Memory limit for containers whose devfile sets none (at most the
    /// maximum).
    pub default_memory_bytes: Option<u64>,
    /// Largest CPU limit a container may ask for, in millicores; when set,
    /// also the limit of containers that set none. `None`: the engine's CPU
    /// count.
    pub max_cpu_millis: Option<u64>,
    /// Largest memory limit a container may ask for, in bytes; when set,
    /// also the limit of containers with neither a devfile limit nor a
    /// default. `None`: the engine's total memory.
    pub max_memory_bytes: Option<u64>,
    /// The code-server volume mounted read-only at `/opt/cove/code-server` into the first
    /// source container (the editor `vscode`, crate::editor).
    pub editor_volume: Option<String>,
}

impl PodSpec {
    pub fn new(env_id: impl Into<String>, plan: EnvironmentPlan) -> Self {
        PodSpec {
            env_id: env_id.into(),
            plan,
            infra_image: "cove/busybox:latest".into(),
            publish_address: "127.0.0.1".into(),
            pids_limit: 4096,
            default_memory_bytes: None,
            max_cpu_millis: None,
            max_memory_bytes: None,
            editor_volume: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub component: String,
    pub id: String,
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedEndpoint {
    pub port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// What the engine says about an environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    pub env_id: String,
    pub infra_running: bool,
    pub containers: Vec<ContainerState>,
    pub endpoints: Vec<PublishedEndpoint>,
    /// Set by a create whose sources volume is new and empty (made by the create, or by the
    /// warm shell it took): the sources need no "already there?" check before the upload.
    #[serde(default)]
    pub sources_empty: bool,
}

impl PodStatus {
    /// True when the infra container and every component run.
    pub fn running(&self) -> bool {
        self.infra_running && self.containers.iter().all(|c| c.running)
    }
}

/// An interactive exec with a TTY.
pub struct TtySession {
    pub exec_id: String,
    pub output: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = std::result::Result<bollard::container::LogOutput, DockerError>,
                > + Send,
        >,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// Output of a finished exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The Docker side of environments.
#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
    exec_limits: crate::bounded::ExecLimits,
    network: crate::env_net::EnvNetwork,
    /// The engine's CPUs (millicores) and memory (bytes): the default maximum.
    capacity: (Option<u64>, Option<u64>),
}

/// Why `plan` cannot run under these maximums (CPU millicores, memory bytes
/// per container), or `None` when it can: the first container asking for more.
pub fn over_limit(
    plan: &EnvironmentPlan,
    max_cpu: Option<u64>,
    max_mem: Option<u64>,
) -> Option<String> {
    for c in &plan.containers {
        if let (Some(asked), Some(max)) = (c.cpu_limit_millis, max_cpu) {
            if asked > max {
                return Some(format!(
                    "component `{}` asks for cpuLimit {}; this server allows at most {} per container",
                    c.name,
                    fmt_cpu(asked),
                    fmt_cpu(max)
                ));
            }
        }
        if let (Some(asked), Some(max)) = (c.memory_limit_bytes, max_mem) {
            if asked > max {
                return Some(format!(
                    "component `{}` asks for memoryLimit {}; this server allows at most {} per container",
                    c.name,
                    fmt_bytes(asked),
                    fmt_bytes(max)
                ));
            }
        }
    }
    None
}

/// `64000m` as `64 CPUs`, `500m` as it is.
fn fmt_cpu(millis: u64) -> String {
    if millis == 1000 {
        "1 CPU".into()
    } else if millis.is_multiple_of(1000) {
        format!("{} CPUs", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that divides them.
fn fmt_bytes(b: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if b >= size && b.is_multiple_of(size) {
            return format!("{}{unit}", b / size);
        }
    }
    format!("{b} bytes")
}

pub fn valid_env_id(id: &str) -> bool {
    devfiles::is_identifier(id) && id.len() <= 40
}

fn container_name(env: &str, component: &str) -> String {
    format!("cove-{env}-{component}")
}

fn infra_name(env: &str) -> String {
    format!("cove-{env}--infra")
}

fn sources_volume(env: &str) -> String {
    format!("cove-{env}--projects")
}

fn volume_name(env: &str, volume: &str) -> String {
    format!("cove-{env}-vol-{volume}")
}

fn labels(env: &str, role: &str, component: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_ENV.to_string(), env.to_string()),
        (LABEL_ROLE.to_string(), role.to_string()),
    ]);
    if let Some(c) = component {
        l.insert(LABEL_COMPONENT.to_string(), c.to_string());
    }
    l
}

/// Removes container `id` (forced, its anonymous volumes kept) and returns once it is gone.
/// Gone already is done. Another removal of it under way — Docker's 409 "removal of container
/// … is already in progress": a create's clean-up racing a delete, another agent's — is
/// waited for (up to 30 s) instead of failing the caller.
async fn remove_container_gone(docker: &Docker, id: &str) -> std::result::Result<(), DockerError> {
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        v: false,
        link: false,
    };
    let e = match docker.remove_container(id, Some(options)).await {
        Ok(()) => return Ok(()),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) if is_removal_in_progress(&e) => e,
        Err(e) => return Err(e),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match docker.inspect_container(id, None).await {
            Err(gone) if is_not_found(&gone) => return Ok(()),
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    Err(e)
}

fn is_removal_in_progress(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("already in progress")
    )
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_not_modified(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

impl Runtime {
    /// Connect to the engine named by DOCKER_HOST (or the default socket),
    /// negotiating the API version (engine 20.10 speaks 1.41).
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(PodError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(PodError::Connect)?;
        let capacity = match docker.info().await {
            Ok(info) => (
                info.ncpu
                    .and_then(|n| u64::try_from(n).ok())
                    .map(|n| n * 1000),
                info.mem_total.and_then(|m| u64::try_from(m).ok()),
            ),
            Err(_) => (None, None),
        };
        Ok(Runtime {
            docker,
            exec_limits: crate::bounded::ExecLimits::from_env(),
            network: crate::env_net::EnvNetwork::default(),
            capacity,
        })
    }

    /// The same engine with other network settings for environments.
    pub fn with_network(mut self, network: crate::env_net::EnvNetwork) -> Self {
        self.network = network;
        self
    }

    /// How environments are networked.
    pub fn network(&self) -> &crate::env_net::EnvNetwork {
        &self.network
    }

    /// The largest CPU (millicores) and memory (bytes) limits a container
    /// of `spec` may have: the spec's, else the engine's capacity.
    pub fn max_limits(&self, spec: &PodSpec) -> (Option<u64>, Option<u64>) {
        (
            spec.max_cpu_millis.or(self.capacity.0),
            spec.max_memory_bytes.or(self.capacity.1),
        )
    }

    /// The engine's CPUs (millicores) and memory (bytes), as it reported them at connect.
    pub fn capacity(&self) -> (Option<u64>, Option<u64>) {
        self.capacity
    }

    /// Refuses a plan whose containers ask for more than the maximum (what
    /// a Kubernetes LimitRange does for Che, and a template's parameter
    /// bounds for Coder), before anything is created or removed.
    fn check_limits(&self, spec: &PodSpec) -> Result<()> {
        let (max_cpu, max_mem) = self.max_limits(spec);
        match over_limit(&spec.plan, max_cpu, max_mem) {
            Some(what) => Err(PodError::OverLimit {
                env: spec.env_id.clone(),
                what,
            }),
            None => Ok(()),
        }
    }

    /// The same engine with other bounds for [`Runtime::exec`].
    pub fn with_exec_limits(mut self, limits: crate::bounded::ExecLimits) -> Self {
        self.exec_limits = limits;
        self
    }

    /// The bounds of [`Runtime::exec`].
    pub fn exec_limits(&self) -> crate::bounded::ExecLimits {
        self.exec_limits
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    fn err(env: &str, action: impl Into<String>) -> impl FnOnce(DockerError) -> PodError + '_ {
        let action = action.into();
        move |source| PodError::Docker {
            env: env.to_string(),
            action,
            source,
        }
    }
}

fn role_of(c: &bollard::models::ContainerSummary) -> &str {
    c.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ROLE))
        .map(String::as_str)
        .unwrap_or("")
}
