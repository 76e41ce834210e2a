//! Environments as pods on Docker.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions, StartContainerOptions, StopContainerOptions,
    UploadToContainerOptions,
};
use bollard::Docker;
use devfiles::{ContainerPlan, EnvironmentPlan, Protocol, KEEP_ALIVE};
use futures_util::StreamExt;
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

pub mod prebuild;
mod restart;
pub mod shells;
pub(crate) mod volumes;
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

    /// Create and start the pod. On failure everything this call created is
    /// removed again; volumes that already existed are kept.
    pub async fn create(&self, spec: &PodSpec) -> Result<PodStatus> {
        if !valid_env_id(&spec.env_id) {
            return Err(PodError::BadId(spec.env_id.clone()));
        }
        self.check_limits(spec)?;
        let mut created_volumes = Vec::new();
        let result = self.create_inner(spec, &mut created_volumes).await;
        if result.is_err() {
            self.remove_containers(&spec.env_id).await.ok();
            crate::env_net::remove(&self.docker, &spec.env_id, &self.network)
                .await
                .ok();
            for v in created_volumes {
                self.docker
                    .remove_volume(&v, Some(RemoveVolumeOptions { force: true }))
                    .await
                    .ok();
            }
        }
        result
    }

    async fn create_inner(
        &self,
        spec: &PodSpec,
        created_volumes: &mut Vec<String>,
    ) -> Result<PodStatus> {
        let env = spec.env_id.as_str();
        // volumes and the environment's own network (with host isolation, unless turned off)
        // are independent: made concurrently
        // a warm shell of this id (`shells.rs`) already has the network, the sources volume
        // and a started infra container: its marker goes, the rest is found in place
        let infra_container = infra_name(env);
        let (volumes, network, took_shell, shell) = tokio::join!(
            self.ensure_volumes(spec, created_volumes),
            crate::env_net::ensure(&self.docker, env, &self.network),
            self.take_shell(env),
            self.docker
                .inspect_container(&infra_container, None::<InspectContainerOptions>)
        );
        volumes?;
        let network = network?;
        // infra container: owns the network namespace and publishes endpoints
        let infra = infra_body(spec, network.as_deref());
        let wanted = infra
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SPEC))
            .cloned();
        let found = shell.is_ok();
        let kept = shell.ok().filter(|c| {
            let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
            let spec = c
                .config
                .as_ref()
                .and_then(|c| c.labels.as_ref())
                .and_then(|l| l.get(LABEL_SPEC));
            running && spec.is_some() && spec == wanted.as_ref()
        });
        let shell_id = kept.and_then(|c| c.id);
        let infra_running = shell_id.is_some();
        let infra_id = match shell_id {
            Some(id) => id,
            None => {
                // whatever else is there under the name (a shell of another shape) goes
                if found {
                    self.docker
                        .remove_container(
                            &infra_name(env),
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await
                        .ok();
                }
                self.docker
                    .create_container(
                        Some(CreateContainerOptions {
                            name: Some(infra_name(env)),
                            ..Default::default()
                        }),
                        infra,
                    )
                    .await
                    .map_err(Self::err(env, "create infra container"))?
                    .id
            }
        };
        // the components join the infra container's namespace, which must run before they
        // start but not before they are created: they are created (concurrently) while it
        // starts, then started (concurrently)
        let creates = spec.plan.containers.iter().map(|c| {
            let body = self.component_body(spec, c, &infra_id, network.as_deref());
            async move {
                let options = CreateContainerOptions {
                    name: Some(container_name(env, &c.name)),
                    ..Default::default()
                };
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map(|r| r.id)
                    .map_err(Self::err(env, format!("create container `{}`", c.name)))
            }
        });
        let start_infra = async {
            if infra_running {
                return Ok(());
            }
            self.docker
                .start_container(&infra_id, None::<StartContainerOptions>)
                .await
        };
        let (infra_started, created) =
            tokio::join!(start_infra, futures_util::future::join_all(creates));
        infra_started.map_err(Self::err(env, "start infra container"))?;
        let mut ids = Vec::new();
        for (c, r) in spec.plan.containers.iter().zip(created) {
            ids.push((c, r?));
        }
        let starts = ids.iter().map(|(c, id)| async move {
            self.docker
                .start_container(id, None::<StartContainerOptions>)
                .await
                .map_err(Self::err(env, format!("start container `{}`", c.name)))
        });
        for r in futures_util::future::join_all(starts).await {
            r?;
        }
        let mut status = self
            .status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))?;
        status.sources_empty = took_shell || created_volumes.contains(&sources_volume(env));
        Ok(status)
    }

    /// The sources volume and the plan's volumes. An ephemeral volume is removed and made
    /// again empty, unless a running container still mounts it (the engine refuses to
    /// remove a volume in use): a restart that keeps that container keeps its contents.
    async fn ensure_volumes(
        &self,
        spec: &PodSpec,
        created_volumes: &mut Vec<String>,
    ) -> Result<()> {
        let env = spec.env_id.as_str();
        // volumes: sources + devfile volumes (ephemeral ones are recreated), concurrently
        let sources = sources_volume(env);
        let mut wanted: Vec<(String, &str, Option<&str>, bool)> =
            vec![(sources, "sources", None, false)];
        for v in &spec.plan.volumes {
            wanted.push((
                volume_name(env, &v.name),
                "volume",
                Some(v.name.as_str()),
                !v.persistent,
            ));
        }
        let made = wanted
            .iter()
            .map(|(name, role, component, ephemeral)| async move {
                if *ephemeral {
                    self.docker
                        .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
                        .await
                        .ok();
                }
                let mut created = Vec::new();
                let r = self
                    .ensure_volume(env, name, role, *component, *ephemeral, &mut created)
                    .await;
                (r, created)
            });
        let mut first_error = None;
        for (r, created) in futures_util::future::join_all(made).await {
            created_volumes.extend(created);
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn ensure_volume(
        &self,
        env: &str,
        name: &str,
        role: &str,
        component: Option<&str>,
        ephemeral: bool,
        created: &mut Vec<String>,
    ) -> Result<()> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(());
        }
        let mut l = labels(env, role, component);
        if ephemeral {
            l.insert(LABEL_EPHEMERAL.into(), "true".into());
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                labels: Some(l),
                ..Default::default()
            })
            .await
            .map_err(Self::err(env, format!("create volume `{name}`")))?;
        created.push(name.to_string());
        Ok(())
    }

    fn component_body(
        &self,
        spec: &PodSpec,
        c: &ContainerPlan,
        infra_id: &str,
        network: Option<&str>,
    ) -> ContainerCreateBody {
        let env = spec.env_id.as_str();
        let mut mounts = Vec::new();
        if let Some(path) = &c.source_mapping {
            mounts.push(Mount {
                target: Some(path.clone()),
                source: Some(sources_volume(env)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        for m in &c.mounts {
            mounts.push(Mount {
                target: Some(m.path.clone()),
                source: Some(volume_name(env, &m.volume)),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        if let Some(v) = &spec.editor_volume {
            if spec.plan.main_container().map(|m| m.name.as_str()) == Some(c.name.as_str()) {
                mounts.push(Mount {
                    target: Some(crate::editor::MOUNT.into()),
                    source: Some(v.clone()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(true),
                    ..Default::default()
                });
            }
        }
        let (_, max_mem) = self.max_limits(spec);
        let default_memory = match (spec.default_memory_bytes, max_mem) {
            (Some(d), Some(m)) => Some(d.min(m)),
            (d, _) => d,
        };
        let memory = c
            .memory_limit_bytes
            .or(default_memory)
            .or(spec.max_memory_bytes)
            .map(|b| b as i64);
        let cpu_millis = c.cpu_limit_millis.or(spec.max_cpu_millis);
        let (cap_add, cap_drop) = capabilities(c);
        let mut body = ContainerCreateBody {
            image: Some(c.image.clone()),
            user: c.user.clone(),
            entrypoint: c.command.clone(),
            cmd: c
                .args
                .clone()
                .or_else(|| c.command.as_ref().map(|_| Vec::new())),
            env: Some(
                c.env
                    .iter()
                    .map(|e| format!("{}={}", e.name, e.value))
                    .collect(),
            ),
            working_dir: c.source_mapping.clone(),
            labels: Some(labels(env, "component", Some(&c.name))),
            stop_timeout: Some(STOP_TIMEOUT_SECS.into()),
            host_config: Some(HostConfig {
                network_mode: if c.dedicated_pod {
                    network.map(str::to_string)
                } else {
                    Some(format!("container:{infra_id}"))
                },
                mounts: Some(mounts),
                memory,
                nano_cpus: cpu_millis.map(|m| (m as i64) * 1_000_000),
                pids_limit: Some(spec.pids_limit),
                cap_drop: Some(cap_drop),
                cap_add: (!cap_add.is_empty()).then_some(cap_add),
                readonly_rootfs: c.read_only_root_fs.then_some(true),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                init: signals_forwarded(c).then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        // what the mounts mean beyond their names: an ephemeral volume is recreated
        let mounted: Vec<&devfiles::VolumePlan> = spec
            .plan
            .volumes
            .iter()
            .filter(|v| c.mounts.iter().any(|m| m.volume == v.name))
            .collect();
        restart::stamp(&mut body, &mounted);
        body
    }

    /// Containers of an environment (infra first).
    async fn containers(&self, env: &str) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ENV}={env}")])]);
        let mut list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Self::err(env, "list containers"))?;
        list.sort_by_key(|c| role_of(c) != "infra");
        Ok(list)
    }

    /// The engine's view of an environment, or `None` if it has no containers.
    pub async fn status(&self, env: &str) -> Result<Option<PodStatus>> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Ok(None);
        }
        let mut status = PodStatus {
            env_id: env.to_string(),
            infra_running: false,
            containers: Vec::new(),
            endpoints: Vec::new(),
            sources_empty: false,
        };
        for c in &list {
            let running = matches!(
                c.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
            );
            let id = c.id.clone().unwrap_or_default();
            if role_of(c) == "infra" {
                status.infra_running = running;
                for p in c.ports.iter().flatten() {
                    if let (Some(ip), Some(public)) = (&p.ip, p.public_port) {
                        if ip.contains(':') {
                            continue; // report the IPv4 binding once
                        }
                        status.endpoints.push(PublishedEndpoint {
                            port: p.private_port,
                            protocol: p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()),
                            host_ip: ip.clone(),
                            host_port: public,
                        });
                    }
                }
            } else {
                let component = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_COMPONENT))
                    .cloned()
                    .unwrap_or_default();
                status.containers.push(ContainerState {
                    component,
                    id,
                    running,
                });
            }
        }
        status.endpoints.sort_by_key(|e| e.port);
        Ok(Some(status))
    }

    /// Every environment Cove has on this engine (for reconciliation).
    pub async fn list(&self) -> Result<Vec<PodStatus>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ROLE}=infra")])]);
        let infras = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(Self::err("*", "list containers"))?;
        let mut out = Vec::new();
        for c in infras {
            if let Some(env) = c.labels.as_ref().and_then(|l| l.get(LABEL_ENV)) {
                if let Some(s) = self.status(env).await? {
                    out.push(s);
                }
            }
        }
        Ok(out)
    }

    /// Stop every container (components first, then infra). Volumes stay.
    pub async fn stop(&self, env: &str) -> Result<()> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        let stops = list.iter().filter(|c| role_of(c) != "infra").map(|c| {
            let id = c.id.clone().unwrap_or_default();
            async move {
                match self
                    .docker
                    .stop_container(
                        &id,
                        Some(StopContainerOptions {
                            t: Some(STOP_TIMEOUT_SECS),
                            signal: None,
                        }),
                    )
                    .await
                {
                    Err(e) if !is_not_modified(&e) && !is_not_found(&e) => Err(e),
                    _ => Ok(()),
                }
            }
        });
        for r in futures_util::future::join_all(stops).await {
            r.map_err(Self::err(env, "stop container"))?;
        }
        for c in list.iter().filter(|c| role_of(c) == "infra") {
            let id = c.id.clone().unwrap_or_default();
            match self
                .docker
                .stop_container(
                    &id,
                    Some(StopContainerOptions {
                        t: Some(1),
                        signal: None,
                    }),
                )
                .await
            {
                Err(e) if !is_not_modified(&e) && !is_not_found(&e) => {
                    return Err(Self::err(env, "stop infra container")(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Start a stopped environment (infra first). Ephemeral volumes are
    /// recreated empty by [`Runtime::recreate`], not by a plain start.
    pub async fn start(&self, env: &str) -> Result<PodStatus> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        // rules lost to a host reboot come back before anything runs
        crate::env_net::ensure(&self.docker, env, &self.network).await?;
        for c in &list {
            let id = c.id.clone().unwrap_or_default();
            match self
                .docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
            {
                Err(e) if !is_not_modified(&e) => return Err(Self::err(env, "start container")(e)),
                _ => {}
            }
        }
        self.status(env)
            .await?
            .ok_or_else(|| PodError::NotFound(env.to_string()))
    }

    /// Replace the containers with ones built from a new plan. Volumes and
    /// `/projects` are kept. If the new containers cannot be created the
    /// environment is left stopped with its data intact.
    pub async fn recreate(&self, spec: &PodSpec) -> Result<PodStatus> {
        self.check_limits(spec)?;
        self.remove_containers(&spec.env_id).await?;
        let mut created = Vec::new();
        let result = self.create_inner(spec, &mut created).await;
        if result.is_err() {
            self.remove_containers(&spec.env_id).await.ok();
        }
        result
    }

    async fn remove_containers(&self, env: &str) -> Result<()> {
        let list = self.containers(env).await?;
        let remove = |c: &bollard::models::ContainerSummary| {
            let id = c.id.clone().unwrap_or_default();
            async move {
                let options = RemoveContainerOptions {
                    force: true,
                    v: false,
                    link: false,
                };
                match self.docker.remove_container(&id, Some(options)).await {
                    Err(e) if !is_not_found(&e) => Err(Self::err(env, "remove container")(e)),
                    _ => Ok(()),
                }
            }
        };
        // components first (concurrently), then the infra container that owns their namespace
        let components = list.iter().filter(|c| role_of(c) != "infra").map(remove);
        for r in futures_util::future::join_all(components).await {
            r?;
        }
        for c in list.iter().filter(|c| role_of(c) == "infra") {
            remove(c).await?;
        }
        Ok(())
    }

    /// Remove every container, volume and the network (with its firewall
    /// rules) of the environment.
    ///
    /// A move that still exports the environment (another task) may start a volume helper
    /// after the containers were listed: a volume still in use is tried again, a few times,
    /// after removing the containers again.
    pub async fn delete(&self, env: &str) -> Result<()> {
        let mut round = 0;
        loop {
            round += 1;
            self.remove_containers(env).await?;
            match self.remove_volumes(env).await {
                Err((e, true)) if round < 6 => {
                    tracing::info!(env, error = %e, "a volume is still in use; removing the environment's containers again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err((e, _)) => return Err(e),
                Ok(()) => break,
            }
        }
        crate::env_net::remove(&self.docker, env, &self.network).await
    }

    /// Removes the environment's volumes; an error says whether a volume was in use (409).
    async fn remove_volumes(&self, env: &str) -> std::result::Result<(), (PodError, bool)> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ENV}={env}")])]);
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| (Self::err(env, "list volumes")(e), false))?;
        for v in volumes.volumes.into_iter().flatten() {
            match self
                .docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Err(e) if !is_not_found(&e) => {
                    let in_use = matches!(
                        e,
                        DockerError::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }
                    );
                    return Err((
                        Self::err(env, format!("remove volume `{}`", v.name))(e),
                        in_use,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn component_id(&self, env: &str, component: &str) -> Result<String> {
        let list = self.containers(env).await?;
        if list.is_empty() {
            return Err(PodError::NotFound(env.to_string()));
        }
        list.iter()
            .find(|c| {
                role_of(c) == "component"
                    && c.labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_COMPONENT))
                        .map(String::as_str)
                        == Some(component)
            })
            .and_then(|c| c.id.clone())
            .ok_or_else(|| PodError::NoComponent {
                env: env.to_string(),
                component: component.to_string(),
            })
    }

    /// Run a command to completion in a component and collect its output,
    /// within the runtime's [`ExecLimits`](crate::bounded::ExecLimits): output
    /// past the budget is counted and dropped (a note says how much), and a
    /// command still running at the timeout is abandoned with exit code 124.
    pub async fn exec(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
    ) -> Result<ExecOutput> {
        self.exec_limited(env, component, cmd, vars, workdir, self.exec_limits)
            .await
    }

    /// [`Runtime::exec`] within `limits` (at most the runtime's own timeout).
    pub async fn exec_limited(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
    ) -> Result<ExecOutput> {
        let limits = crate::bounded::ExecLimits {
            output_bytes: limits.output_bytes.min(self.exec_limits.output_bytes),
            timeout: limits.timeout.min(self.exec_limits.timeout),
        };
        let (out, exit_code) = self
            .exec_bounded(env, component, cmd, vars, workdir, limits, false)
            .await?;
        let (stdout, mut stderr) = out.finish();
        if exit_code.is_none() {
            stderr.push_str(&crate::bounded::timeout_note(limits.timeout));
        }
        Ok(ExecOutput {
            exit_code: exit_code.unwrap_or(crate::bounded::TIMED_OUT_EXIT_CODE),
            stdout,
            stderr,
        })
    }

    /// Read a file of at most `max_bytes` from a component (`cat`). `Ok(None)`
    /// when it cannot be read; an error when it is larger, endless (a device) or
    /// takes longer than [`FILE_READ_TIMEOUT`](crate::bounded::FILE_READ_TIMEOUT).
    /// Reading stops at the first byte past the limit.
    pub async fn read_file(
        &self,
        env: &str,
        component: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<Option<String>> {
        let limits = crate::bounded::ExecLimits {
            output_bytes: max_bytes,
            timeout: crate::bounded::FILE_READ_TIMEOUT.min(self.exec_limits.timeout),
        };
        let (out, exit_code) = self
            .exec_bounded(
                env,
                component,
                &["cat", "--", path],
                &[],
                None,
                limits,
                true,
            )
            .await?;
        if out.dropped() > 0 {
            return Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!("{path} is larger than {max_bytes} bytes"),
            });
        }
        match exit_code {
            None => Err(PodError::TooLarge {
                env: env.to_string(),
                what: format!(
                    "reading {path} did not finish within {} s",
                    limits.timeout.as_secs()
                ),
            }),
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&out.into_stdout()).into_owned(),
            )),
            Some(_) => Ok(None),
        }
    }

    /// Runs `cmd`, keeping at most `limits.output_bytes`. Returns the output and
    /// the exit code (`None` when the timeout struck first). With `stop_on_overflow`
    /// reading stops at the first dropped byte.
    #[allow(clippy::too_many_arguments)]
    async fn exec_bounded(
        &self,
        env: &str,
        component: &str,
        cmd: &[&str],
        vars: &[(String, String)],
        workdir: Option<&str>,
        limits: crate::bounded::ExecLimits,
        stop_on_overflow: bool,
    ) -> Result<(crate::bounded::BoundedOutput, Option<i64>)> {
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let id = self.component_id(env, component).await?;
        let exec = self
            .docker
            .create_exec(
                &id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                    env: Some(vars.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    working_dir: workdir.map(str::to_string),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create exec"))?;
        let mut out = crate::bounded::BoundedOutput::new(limits.output_bytes);
        let mut finished = true;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(Self::err(env, "start exec"))?
        {
            loop {
                let chunk = match tokio::time::timeout_at(deadline, output.next()).await {
                    Err(_) => {
                        finished = false;
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(chunk)) => chunk.map_err(Self::err(env, "read exec output"))?,
                };
                match chunk {
                    bollard::container::LogOutput::StdErr { message } => out.push(true, &message),
                    other => out.push(false, &other.into_bytes()),
                }
                if stop_on_overflow && out.dropped() > 0 {
                    finished = false;
                    break;
                }
            }
            // dropping the stream closes the attach connection: a command that
            // keeps writing gets a broken pipe
        }
        if !finished {
            return Ok((out, None));
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(Self::err(env, "inspect exec"))?;
        Ok((out, Some(inspect.exit_code.unwrap_or(-1))))
    }

    /// Start an interactive command with a TTY in a component. Returns the
    /// exec id (for [`Runtime::resize_tty`] and [`Runtime::exec_exit_code`]),
    /// the output stream and the input writer.
    pub async fn exec_tty(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        cols: u16,
        rows: u16,
    ) -> Result<TtySession> {
        self.exec_attached(
            env,
            component,
            cmd,
            Some((cols, rows)),
            vec!["TERM=xterm-256color".into()],
        )
        .await
    }

    /// Start a command in a component with stdin, stdout and stderr attached: with a TTY of
    /// `tty` = (cols, rows) (output is one stream), or without (stdout and stderr apart, as
    /// [`bollard::container::LogOutput::StdOut`] / `StdErr`). `vars` are `NAME=value`
    /// additions to the container's environment. Shutting the input down closes the
    /// command's stdin. Nothing bounds its output: the caller streams it.
    pub async fn exec_attached(
        &self,
        env: &str,
        component: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<TtySession> {
        let id = self.component_id(env, component).await?;
        self.exec_attached_in(env, &id, cmd, tty, vars).await
    }

    /// Start a command in a component and leave it running (nothing attached, no limits):
    /// the editor's server (crate::editor). It ends with the container.
    pub async fn exec_detached(&self, env: &str, component: &str, cmd: Vec<String>) -> Result<()> {
        let id = self.component_id(env, component).await?;
        let exec = self
            .docker
            .create_exec(
                &id,
                ExecConfig {
                    attach_stdin: Some(false),
                    attach_stdout: Some(false),
                    attach_stderr: Some(false),
                    tty: Some(false),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create exec"))?;
        self.docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: true,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(Self::err(env, "start exec"))?;
        Ok(())
    }

    /// [`Runtime::exec_attached`] without a TTY in the environment's infra container (Cove's
    /// busybox image), which owns the pod's network namespace: what runs there reaches every
    /// component's loopback services (e.g. `nc 127.0.0.1 PORT`).
    pub async fn exec_in_namespace(&self, env: &str, cmd: Vec<String>) -> Result<TtySession> {
        self.exec_attached_in(env, &infra_name(env), cmd, None, Vec::new())
            .await
    }

    async fn exec_attached_in(
        &self,
        env: &str,
        id: &str,
        cmd: Vec<String>,
        tty: Option<(u16, u16)>,
        vars: Vec<String>,
    ) -> Result<TtySession> {
        let exec = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty.is_some()),
                    cmd: Some(cmd),
                    env: Some(vars),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::err(env, "create terminal"))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty: tty.is_some(),
                    output_capacity: None,
                }),
            )
            .await
            .map_err(Self::err(env, "start terminal"))?;
        let bollard::exec::StartExecResults::Attached { output, input } = started else {
            return Err(PodError::NotFound(env.to_string()));
        };
        let session = TtySession {
            exec_id: exec.id,
            output,
            input,
        };
        if let Some((cols, rows)) = tty {
            self.resize_tty(env, &session.exec_id, cols, rows)
                .await
                .ok();
        }
        Ok(session)
    }

    /// The address of an environment's network namespace (its infra container) on its
    /// network, as the engine's host reaches it; `None` when it has none (not running).
    pub async fn env_address(&self, env: &str) -> Result<Option<std::net::IpAddr>> {
        let inspect = match self
            .docker
            .inspect_container(&infra_name(env), None::<InspectContainerOptions>)
            .await
        {
            Ok(i) => i,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(Self::err(env, "inspect infra container")(e)),
        };
        let networks = inspect
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        // the environment's own network first (`cove-<env>--net`), else any
        let mut names: Vec<&String> = networks.keys().collect();
        names.sort_by_key(|n| !n.starts_with(&format!("cove-{env}")));
        Ok(names
            .into_iter()
            .filter_map(|n| networks.get(n)?.ip_address.clone())
            .find_map(|ip| ip.parse().ok()))
    }

    pub async fn resize_tty(&self, env: &str, exec_id: &str, cols: u16, rows: u16) -> Result<()> {
        self.docker
            .resize_exec(
                exec_id,
                bollard::query_parameters::ResizeExecOptions {
                    h: rows.max(1) as i32,
                    w: cols.max(1) as i32,
                },
            )
            .await
            .map_err(Self::err(env, "resize terminal"))
    }

    /// Exit code of a finished exec (`None` while it runs).
    pub async fn exec_exit_code(&self, env: &str, exec_id: &str) -> Result<Option<i64>> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(Self::err(env, "inspect exec"))?;
        Ok(if inspect.running == Some(true) {
            None
        } else {
            inspect.exit_code
        })
    }

    /// The last `tail` lines a component wrote to stdout and stderr.
    pub async fn logs(&self, env: &str, component: &str, tail: u32) -> Result<String> {
        let id = self.component_id(env, component).await?;
        let options = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        // keep the last `output_bytes` (the end of a log is what matters), for at most the
        // exec timeout
        let cap = self.exec_limits.output_bytes;
        let deadline = tokio::time::Instant::now() + self.exec_limits.timeout;
        let mut stream = self.docker.logs(&id, Some(options));
        let mut tail = crate::bounded::LogTail::new(cap);
        while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
            let chunk = chunk.map_err(Self::err(env, "read logs"))?;
            tail.push(&chunk.into_bytes());
        }
        Ok(tail.into_text())
    }

    /// Write a tar archive into a component's filesystem at `path`.
    pub async fn upload_tar(
        &self,
        env: &str,
        component: &str,
        path: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from(tar)) });
        self.upload_tar_stream(env, component, path, body).await
    }

    /// Write a tar archive, streamed in chunks, into a component's filesystem
    /// at `path`.
    pub async fn upload_tar_stream(
        &self,
        env: &str,
        component: &str,
        path: &str,
        body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        let id = self.component_id(env, component).await?;
        self.docker
            .upload_to_container(
                &id,
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                bollard::body_try_stream(body),
            )
            .await
            .map_err(Self::err(env, "upload files"))
    }

    /// Wait until every container of the environment runs, or `timeout`.
    pub async fn wait_running(&self, env: &str, timeout: Duration) -> Result<PodStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .status(env)
                .await?
                .ok_or_else(|| PodError::NotFound(env.to_string()))?;
            if status.running() || tokio::time::Instant::now() >= deadline {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The infra container of `spec`: holds the pod's network namespace and publishes its
/// endpoints; `network` is the environment's own network, if any.
fn infra_body(spec: &PodSpec, network: Option<&str>) -> ContainerCreateBody {
    let env = spec.env_id.as_str();
    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    for c in spec.plan.containers.iter().filter(|c| !c.dedicated_pod) {
        for e in c.endpoints.iter().filter(|e| e.published()) {
            let key = format!(
                "{}/{}",
                e.port,
                if e.protocol == Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                }
            );
            exposed.push(key.clone());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: Some(spec.publish_address.clone()),
                    host_port: Some(String::new()),
                }]),
            );
        }
    }
    let mut body = ContainerCreateBody {
        image: Some(spec.infra_image.clone()),
        entrypoint: Some(KEEP_ALIVE.iter().map(|s| s.to_string()).collect()),
        cmd: Some(Vec::new()),
        hostname: Some(
            spec.plan
                .name
                .clone()
                .filter(|n| devfiles::is_identifier(n))
                .unwrap_or_else(|| env.to_string()),
        ),
        labels: Some(labels(env, "infra", None)),
        exposed_ports: Some(exposed),
        stop_timeout: Some(STOP_TIMEOUT_SECS.into()),
        host_config: Some(HostConfig {
            network_mode: network.map(str::to_string),
            port_bindings: Some(bindings),
            pids_limit: Some(64),
            memory: Some(32 * 1024 * 1024),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    restart::stamp(&mut body, &[]);
    body
}

/// Whether a component runs under Docker's init (`HostConfig.Init`, tini), which forwards
/// SIGTERM to the process and reaps orphans: yes when the devfile (or Cove's keep-alive) chose
/// the command. Such a process is no init: as PID 1 the kernel ignores every signal it has no
/// handler for, so `dynalite` or `sleep` would sit out the whole stop timeout. Under the init
/// it gets the default action (exit) or runs its own handler, as anywhere else. A container
/// that keeps its image's entrypoint runs as the image intends, as PID 1 (images such as
/// s6-overlay's refuse to run otherwise) and gets Docker's grace period on stop.
pub fn signals_forwarded(c: &ContainerPlan) -> bool {
    c.command.is_some()
}

fn role_of(c: &bollard::models::ContainerSummary) -> &str {
    c.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ROLE))
        .map(String::as_str)
        .unwrap_or("")
}
