//! `cove-agent`: runs workflow jobs on the local Docker engine, and environments on it or on a
//! Kubernetes cluster (`backend: kubernetes`), for a Cove server on another host or network. It only dials out: it registers once with a one-time registration token,
//! keeps the agent token it gets in `<state_dir>/agent-token` (mode 0600) and long-polls the
//! server for leases with it. See docs/private-subnet.md, "Running cove-agent".
//!
//! Neither token is ever logged or printed.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cove_agent::config::{AgentConfig, FileConfig, Overrides};
use cove_agent::job_http::{self, HttpTransport};
use cove_agent::job_worker::{self, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// Environment variable that may hold a one-time registration token.
const REGISTRATION_TOKEN_ENV: &str = "COVE_REGISTRATION_TOKEN";

/// Runs Cove workflow jobs on this host's Docker engine for a Cove server.
#[derive(Debug, Parser)]
#[command(name = "cove-agent", version)]
struct Args {
    /// The agent configuration (YAML: server, name, slots, state_dir,
    /// registration_token_file, sandbox, metrics_listen).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The server's URL (overrides `server:`).
    #[arg(long, env = "COVE_URL")]
    server: Option<String>,
    /// The agent's name (overrides `name:`; default: the host name).
    #[arg(long, env = "COVE_AGENT_NAME")]
    name: Option<String>,
    /// Jobs at the same time (overrides `slots:`; default 1).
    #[arg(long, env = "COVE_AGENT_SLOTS")]
    slots: Option<usize>,
    /// Environments running at the same time (overrides `max_environments:`; default: no
    /// limit). New environments are placed only on agents with room.
    #[arg(long, env = "COVE_AGENT_MAX_ENVIRONMENTS")]
    max_environments: Option<usize>,
    /// Where the agent token is kept (overrides `state_dir:`).
    #[arg(long, env = "COVE_AGENT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// A file holding a one-time registration token, used when no agent token is stored yet
    /// (or set COVE_REGISTRATION_TOKEN).
    #[arg(long, env = "COVE_REGISTRATION_TOKEN_FILE", value_name = "FILE")]
    registration_token_file: Option<PathBuf>,
    /// Serve /metrics and /healthz on HOST:PORT without credentials (overrides
    /// `metrics_listen:`; off by default).
    #[arg(long, env = "COVE_AGENT_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
    /// A placement label, KEY=VALUE (repeatable; COVE_AGENT_LABELS: comma-separated). Jobs
    /// whose `Compute.Fleet` asks for labels run only on agents that carry them
    /// (docs/agents.md); `backend=docker` and `arch` are always added.
    #[arg(
        long = "label",
        env = "COVE_AGENT_LABELS",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    labels: Vec<String>,
    /// Serve environments too (`--environments=false`: jobs only): the agent dials out one
    /// WebSocket to the server (`/api/v1/agent/link`) and runs the environments placed on it
    /// on this host's Docker engine (docs/agents.md "Environments on agents").
    #[arg(
        long,
        env = "COVE_AGENT_ENVIRONMENTS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    environments: bool,
    /// Ready job sandboxes kept ahead of leases: private network, firewall rules and a
    /// started container, each used by one job (overrides `job_pool:`; default 0: none).
    #[arg(long, env = "COVE_AGENT_JOB_POOL", value_name = "N")]
    job_pool: Option<usize>,
    /// Image of the pooled sandboxes; jobs in another image start cold (overrides
    /// `job_pool_image:`; default cove/universal:latest, the server's default image).
    #[arg(long, env = "COVE_AGENT_JOB_POOL_IMAGE", value_name = "IMAGE")]
    job_pool_image: Option<String>,
    /// Ready pod shells (network, sources volume, started infra container) kept per recently
    /// created environment shape, each taken by one create (overrides `warm_shells:`; Docker
    /// only; default 0: none; docs/prebuilds.md "Warm pod shells").
    #[arg(long, env = "COVE_AGENT_WARM_SHELLS", value_name = "N")]
    warm_shells: Option<usize>,
    /// Where environments run: `docker` (default) or `kubernetes` (overrides `backend:`;
    /// Kubernetes reads KUBECONFIG, else the Pod's ServiceAccount; docs/kubernetes.md
    /// "Environments through an agent").
    #[arg(long, env = "COVE_AGENT_BACKEND", value_name = "docker|kubernetes")]
    backend: Option<String>,
    /// The namespace of the Kubernetes backend (overrides `kubernetes.namespace`).
    #[arg(
        long,
        env = "COVE_AGENT_KUBERNETES_NAMESPACE",
        value_name = "NAMESPACE"
    )]
    kubernetes_namespace: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Read the registration token before any thread starts, and keep it out of the
    // environment of anything the agent spawns.
    let env_registration = std::env::var(REGISTRATION_TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    std::env::remove_var(REGISTRATION_TOKEN_ENV);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, env_registration)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cove-agent".to_string())
}

fn load_config(args: &Args) -> Result<AgentConfig> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let over = Overrides {
        server: args.server.clone(),
        name: args.name.clone(),
        slots: args.slots,
        max_environments: args.max_environments,
        state_dir: args.state_dir.clone(),
        registration_token_file: args.registration_token_file.clone(),
        metrics_listen: args.metrics_listen.clone(),
        labels: args.labels.clone(),
        job_pool: args.job_pool,
        job_pool_image: args.job_pool_image.clone(),
        warm_shells: args.warm_shells,
        backend: args.backend.clone(),
        kubernetes_namespace: args.kubernetes_namespace.clone(),
    };
    Ok(AgentConfig::resolve(file, over, &host_name())?)
}

/// Writes `contents` to `path` with mode 0600 (temporary file, then rename).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn read_registration_token(config: &AgentConfig, from_env: Option<String>) -> Result<String> {
    if let Some(file) = &config.registration_token_file {
        let token = std::fs::read_to_string(file)
            .with_context(|| format!("reading the registration token file {}", file.display()))?;
        let token = token.trim().to_string();
        if token.is_empty() {
            bail!("the registration token file {} is empty", file.display());
        }
        return Ok(token);
    }
    from_env.with_context(|| {
        format!(
            "no agent token in {} and no registration token: create one with `cove agent \
             registration-token` and pass it with --registration-token-file or {REGISTRATION_TOKEN_ENV}",
            config.state_dir.display()
        )
    })
}

/// The stored agent token, or a new one from registering.
async fn agent_token(config: &AgentConfig, env_registration: Option<String>) -> Result<String> {
    let token_path = config.token_path();
    match std::fs::read_to_string(&token_path) {
        Ok(token) if !token.trim().is_empty() => {
            let mode = std::fs::metadata(&token_path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(file = %token_path.display(), mode = format!("{mode:o}"), "the agent token file is readable by others; setting mode 0600");
                std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600))?;
            }
            return Ok(token.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", token_path.display())),
    }
    let registration = read_registration_token(config, env_registration)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", config.state_dir.display()))?;
    let capacity = cove_api::AgentCapacity {
        max_jobs: u32::try_from(config.slots).unwrap_or(u32::MAX),
        max_environments: max_environments_of(config),
        ..Default::default()
    };
    let registered = job_http::register(
        &config.server,
        &registration,
        &config.name,
        &config.labels,
        &capacity,
    )
    .await?;
    write_private(&token_path, &registered.token)?;
    write_private(&config.id_path(), &format!("{}\n", registered.agent_id))?;
    tracing::info!(
        agent_id = registered.agent_id,
        name = %config.name,
        state_dir = %config.state_dir.display(),
        "registered with the server; the agent token is stored in the state directory"
    );
    Ok(registered.token)
}

/// `max_environments` as reported (0: no limit).
fn max_environments_of(config: &AgentConfig) -> u32 {
    config
        .max_environments
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// How often the agent reports its labels and capacity.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Reports labels and capacity (the engine's CPUs and memory, slots, busy slots) every
/// [`STATUS_EVERY`] until `stop`. A failed report is logged and retried at the next tick.
async fn report_status(
    transport: Arc<HttpTransport>,
    docker: Option<bollard::Docker>,
    labels: std::collections::BTreeMap<String, String>,
    slots: usize,
    max_environments: u32,
    busy: Arc<std::sync::atomic::AtomicUsize>,
    stop: CancellationToken,
) {
    let info = match &docker {
        Some(d) => d.info().await,
        None => Ok(Default::default()),
    };
    let (cpus, memory_bytes) = match info {
        Ok(info) => (
            info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            info.mem_total
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading the engine's CPUs and memory failed");
            (0, 0)
        }
    };
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = cove_api::AgentStatus {
            labels: labels.clone(),
            capacity: cove_api::AgentCapacity {
                cpus,
                memory_bytes,
                max_jobs: u32::try_from(slots).unwrap_or(u32::MAX),
                running_jobs: u32::try_from(busy.load(std::sync::atomic::Ordering::Relaxed))
                    .unwrap_or(u32::MAX),
                running_environments: 0,
                max_environments,
            },
        };
        if let Err(e) = transport.status(&status).await {
            tracing::warn!(error = %e, "reporting the agent's status failed");
        }
    }
}

/// The Kubernetes backend, checked to reach its namespace (a clear error at start rather
/// than failed environments later).
async fn kubernetes_backend(
    config: cove_agent::backend::kubernetes::KubernetesConfig,
) -> Result<cove_agent::backend::kubernetes::KubernetesBackend> {
    use cove_agent::backend::Backend;
    let namespace = config.namespace.clone();
    let backend = cove_agent::backend::kubernetes::KubernetesBackend::connect(config)
        .await
        .context("no Kubernetes client (KUBECONFIG, or the Pod's ServiceAccount in a cluster)")?;
    match tokio::time::timeout(Duration::from_secs(15), backend.list()).await {
        Ok(Ok(envs)) => {
            tracing::info!(
                %namespace,
                environments = envs.len(),
                "environments run on Kubernetes"
            );
            Ok(backend)
        }
        Ok(Err(e)) => bail!("the Kubernetes API server refused namespace {namespace}: {e}"),
        Err(_) => bail!("the Kubernetes API server did not answer within 15 s"),
    }
}

const REVOKED: &str = "the agent token was revoked or is unknown; register again with a new \
     registration token (cove agent registration-token)";

async fn run(args: Args, env_registration: Option<String>) -> Result<ExitCode> {
    let config = load_config(&args)?;
    let token = agent_token(&config, env_registration).await?;
    let stop = CancellationToken::new();
    let revoked = CancellationToken::new();
    let transport = HttpTransport::new(&config.server, &token).on_unauthorized(revoked.clone());
    let link_target = args.environments.then(|| cove_agent::link::LinkTarget {
        server: config.server.clone(),
        token: token.clone(),
    });
    drop(token);
    let identity = transport
        .identity()
        .await
        .with_context(|| format!("reaching {}", config.server))?;
    let Some(identity) = identity else {
        eprintln!(
            "error: {REVOKED} (token file {})",
            config.token_path().display()
        );
        return Ok(ExitCode::FAILURE);
    };
    let engine =
        match tokio::time::timeout(Duration::from_secs(10), cove_agent::Runtime::connect()).await {
            Ok(Ok(rt)) => Ok(rt),
            Ok(Err(e)) => Err(format!("no Docker engine: {e}")),
            Err(_) => Err("no Docker engine answered within 10 s".to_string()),
        };
    // jobs run on the Docker engine; with the Kubernetes backend an agent without one serves
    // environments only
    let rt = match (engine, &config.kubernetes) {
        (Ok(rt), _) => Some(rt),
        (Err(e), None) => bail!("{e}"),
        (Err(e), Some(k)) => {
            if k.job_gateway_address.is_none() {
                tracing::warn!(error = %e, "no Docker engine and no kubernetes.job_gateway_address: this agent serves environments on Kubernetes and leases no jobs");
            }
            None
        }
    };
    let docker = rt.as_ref().map(|rt| rt.docker().clone());
    tracing::info!(
        server = %config.server,
        agent_id = identity.agent_id,
        name = %identity.name,
        slots = config.slots,
        backend = config.backend.label(),
        "cove-agent started"
    );
    if let Some(addr) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tracing::info!(%addr, "agent metrics listening (no credentials)");
        tokio::spawn(cove_agent::metrics::serve(listener, stop.clone()));
    }
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        on_signal.cancel();
    });
    let on_revoked = (revoked.clone(), stop.clone());
    tokio::spawn(async move {
        on_revoked.0.cancelled().await;
        on_revoked.1.cancel();
    });
    let mut worker = WorkerConfig {
        slots: config.slots,
        lease_wait: Duration::from_secs(20),
        sandbox: config.sandbox.clone(),
        owner: Some(format!("agent-{}", identity.agent_id)),
        pool: config.job_pool,
        pool_image: config.job_pool_image.clone(),
        ..Default::default()
    };
    let transport = Arc::new(transport);
    // one client of the cluster for environments and jobs alike
    let kube = match &config.kubernetes {
        Some(k) => Some(kubernetes_backend(k.clone()).await?),
        None => None,
    };
    // the environment worker, to remove its ready shells when the agent stops
    let mut env_agent = None;
    if let Some(target) = link_target {
        // environments: the same worker the server's embedded agent runs, over the link
        let (handle, reports) = match (&kube, &rt) {
            (Some(backend), _) => cove_agent::worker::spawn_backend(
                Arc::new(backend.clone()),
                cove_agent::worker::AgentConfig::default(),
            ),
            (None, Some(rt)) => {
                let rt = rt.clone().with_network(cove_agent::env_net::EnvNetwork {
                    settings: Default::default(),
                    net: cove_agent::job_sandbox::net_options(&config.sandbox),
                });
                // its shells carry this agent's owner label: started again, it removes
                // the ones its previous process left at once
                let env_config = cove_agent::worker::AgentConfig {
                    warm_shells: config.warm_shells,
                    shell_owner: format!("agent-{}", identity.agent_id),
                    ..Default::default()
                };
                cove_agent::worker::spawn(rt, env_config)
            }
            (None, None) => bail!("no Docker engine"),
        };
        env_agent = Some(handle.clone());
        let (stop, revoked) = (stop.clone(), revoked.clone());
        tokio::spawn(async move {
            if !cove_agent::link::run(target, handle, reports, stop).await {
                revoked.cancel();
            }
        });
    }
    tokio::spawn(report_status(
        transport.clone(),
        docker.clone(),
        config.labels.clone(),
        config.slots,
        max_environments_of(&config),
        worker.busy.clone(),
        stop.clone(),
    ));
    // jobs as Pods on the cluster when the agent says where their gateway listens
    // (`kubernetes.job_gateway_address`; docs/kubernetes.md "Jobs as Pods")
    let docker = match kube.as_ref().zip(
        config
            .kubernetes
            .as_ref()
            .and_then(|k| k.job_gateway_address),
    ) {
        Some((backend, gateway_address)) => {
            worker.kubernetes = Some(cove_agent::job_worker::KubernetesJobs {
                backend: backend.clone(),
                gateway_address,
            });
            tracing::info!(%gateway_address, "jobs run as Pods on Kubernetes");
            // the job loop's Docker handle is not used for Pods; it connects lazily
            Some(match docker {
                Some(d) => d,
                None => bollard::Docker::connect_with_local_defaults()
                    .context("a Docker client handle for the job loop")?,
            })
        }
        None => docker,
    };
    match docker {
        Some(docker) => job_worker::run(docker, transport, worker, stop).await,
        None => stop.cancelled().await,
    }
    if let Some(agent) = env_agent {
        if tokio::time::timeout(Duration::from_secs(20), agent.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "removing the ready pod shells took too long; the next start removes them"
            );
        }
    }
    if revoked.is_cancelled() {
        eprintln!("error: {REVOKED}");
        return Ok(ExitCode::FAILURE);
    }
    tracing::info!("cove-agent stopped");
    Ok(ExitCode::SUCCESS)
}
