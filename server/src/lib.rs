//! `cove-server`: Cove's control plane — the `/api/v1` REST API, git hosting over smart HTTP,
//! authentication and authorization, the store (SQLite or PostgreSQL) and the in-process event
//! bus that later subsystems (the workflow engine) subscribe to, and the web UI's server side:
//! the single-page app from `web/dist` at `/`, browser sessions and server-sent events
//! ([`ui`], [`sse`]).
//!
//! Architecture invariants: only this crate knows axum, HTTP, sqlx and git2. Wire types come
//! from `cove-api`; this crate must not depend on the CLI. Permission decisions live in
//! [`auth`] only (browser sessions and CSRF included); SQL lives in [`store`] only; spawning git
//! lives in [`git`] only. The UI is a client of the public API: it gets no route of its own
//! beyond the static files and `/api/v1/session`.

pub mod agents;
pub mod audit;
pub mod auth;
// Several replicas on PostgreSQL: leadership, wake-ups, repository locks (issue 20).
pub mod cluster;
pub mod config;
pub mod deploy;
pub mod dotfiles;
// In-browser edits (issue 16): one file committed with git plumbing, recorded as a push.
pub mod edits;
pub mod envs;
pub mod error;
pub mod extract;
pub mod forge;
pub mod git;
// Issues and the board (issue 16).
pub mod issues;
pub mod live_auth;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod openapi;
pub mod parse_budget;
pub mod ports;
pub mod projects;
pub mod repos;
pub mod retention;
pub mod routes;
pub mod runs;
pub mod sse;
pub mod ssh;
pub mod store;
pub mod ui;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cove_api::{PushEvent, Scope};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub use config::Config;
use store::{Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot read the listener's address: {0}")]
    Listener(#[source] std::io::Error),
    #[error(transparent)]
    Secrets(#[from] runs::secrets::SecretError),
    #[error("SSH: {0}")]
    Ssh(String),
}

/// How many push events the bus holds for a slow subscriber before it lags.
const EVENT_BUS_CAPACITY: usize = 1024;

struct Inner {
    store: Store,
    data_dir: PathBuf,
    public_url: OnceLock<String>,
    events: broadcast::Sender<PushEvent>,
    /// Pull-request events, published after they are committed (`forge`).
    pull_events: broadcast::Sender<cove_api::PullEvent>,
    repo_locks: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    envs: envs::Envs,
    runs: runs::Runs,
    max_push_bytes: u64,
    /// Operational metrics (`/metrics`).
    metrics: metrics::Metrics,
    /// Operational limits: push deadline, job log cap, retention.
    limits: config::Limits,
    /// Per-job log usage under the log cap.
    log_caps: runs::log_cap::LogCaps,
    /// Followers of job logs: one broadcast channel per followed job.
    log_hub: runs::log_follow::LogHub,
    /// Cancelled when the server begins its graceful shutdown: long-lived streams (server-sent
    /// events) end then, so in-flight requests can finish.
    closing: tokio_util::sync::CancellationToken,
    /// Password checks: throttling, hashing slots, `[auth]` settings.
    logins: auth::Logins,
    /// Notifications: settings and the delivery worker's wake-up.
    notifier: notify::Notifier,
    /// Mirrors: settings and the per-repository fetch queue.
    mirrors: forge::mirror::Mirrors,
    /// The SSH server (`[ssh]`); `None` when SSH is not enabled.
    ssh: Option<ssh::SshService>,
    /// Open port tunnels per user (`cove env port-forward`).
    tunnels: ports::Tunnels,
    /// Replicas: leadership and wake-ups between them (`cluster`).
    cluster: cluster::Cluster,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// The SSH server, when `[ssh]` enables it.
    pub fn ssh(&self) -> Option<&ssh::SshService> {
        self.0.ssh.as_ref()
    }

    /// Open port tunnels per user.
    pub fn tunnels(&self) -> &ports::Tunnels {
        &self.0.tunnels
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Replicas: whether this one leads, wake-ups for the others.
    pub fn cluster(&self) -> &cluster::Cluster {
        &self.0.cluster
    }

    /// Environments and the agent that runs them.
    pub fn envs(&self) -> &envs::Envs {
        &self.0.envs
    }

    /// Workflow runs: scheduler, leases, secrets key.
    pub fn runs(&self) -> &runs::Runs {
        &self.0.runs
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    /// Base URL for clone URLs.
    pub fn public_url(&self) -> &str {
        self.0
            .public_url
            .get()
            .map(String::as_str)
            .unwrap_or("http://localhost")
    }

    /// Largest push accepted, in bytes.
    pub fn max_push_bytes(&self) -> u64 {
        self.0.max_push_bytes
    }

    /// Operational metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }

    /// Push deadline, job log cap, retention.
    pub fn limits(&self) -> &config::Limits {
        &self.0.limits
    }

    /// Per-job log usage under the log cap.
    pub fn log_caps(&self) -> &runs::log_cap::LogCaps {
        &self.0.log_caps
    }

    /// Followers of job logs (`runs::log_follow`).
    pub fn log_hub(&self) -> &runs::log_follow::LogHub {
        &self.0.log_hub
    }

    /// Password checks (throttle, hashing slots) and the `[auth]` settings.
    pub fn logins(&self) -> &auth::Logins {
        &self.0.logins
    }

    /// Notifications: settings and the delivery worker's wake-up.
    pub fn notifier(&self) -> &notify::Notifier {
        &self.0.notifier
    }

    /// Mirrors: settings and the per-repository fetch queue.
    pub fn mirrors(&self) -> &forge::mirror::Mirrors {
        &self.0.mirrors
    }

    /// A receiver of every push event stored from now on. Events are published after they
    /// are committed; a subscriber that falls more than 1024 events behind gets
    /// `RecvError::Lagged` and should catch up from the store (`GET …/events`).
    pub fn subscribe(&self) -> broadcast::Receiver<PushEvent> {
        self.0.events.subscribe()
    }

    fn publish(&self, event: PushEvent) {
        // No subscriber is fine: events are in the store either way.
        let _ = self.0.events.send(event);
        self.0.cluster.announce(cluster::Wake::Push);
    }

    /// A receiver of every pull-request event (`pr_opened`, `pr_revision`, `pr_merged`,
    /// `pr_closed`, `review_submitted`, `comment_added`) stored from now on, published after
    /// commit; a lagging subscriber catches up from `GET …/pulls/{number}/events`.
    pub fn subscribe_pulls(&self) -> broadcast::Receiver<cove_api::PullEvent> {
        self.0.pull_events.subscribe()
    }

    fn publish_pull(&self, event: cove_api::PullEvent) {
        let _ = self.0.pull_events.send(event);
    }

    /// Cancelled when the server shuts down; long-lived responses end with it.
    pub fn closing(&self) -> &tokio_util::sync::CancellationToken {
        &self.0.closing
    }

    /// The in-process lock of one repository; [`cluster::lock_repo`] takes it and the
    /// replicas' lock together, which is what serializes pushes (and deletion).
    pub fn repo_lock(&self, repo_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.0.repo_locks.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(repo_id).or_default().clone()
    }
}

/// A configured server, ready to serve.
pub struct Server {
    state: AppState,
    agent_reports: Option<tokio::sync::mpsc::UnboundedReceiver<cove_api::agent::EnvReport>>,
    intervals: envs::Intervals,
    /// The separate, credential-free metrics listener address (`metrics_listen`).
    metrics_listen: Option<std::net::SocketAddr>,
    /// The admin token created on first start when none was configured; show it once.
    pub bootstrap_token: Option<String>,
    /// The SSH listener, bound by [`Server::new`] when `[ssh] listen` is set.
    ssh_listener: Option<TcpListener>,
}

impl Server {
    /// Opens the data directory and the store, runs migrations, and on first start creates the
    /// `admin` user with a token.
    pub async fn new(config: Config) -> Result<Server, ServerError> {
        std::fs::create_dir_all(config.data_dir.join("repos")).map_err(|source| {
            ServerError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let data_dir = config
            .data_dir
            .canonicalize()
            .map_err(|source| ServerError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        let config = Config { data_dir, ..config };
        let removed = git::remove_stale_quarantines(&config.data_dir)?;
        if removed > 0 {
            tracing::warn!(
                count = removed,
                "removed quarantine directories of interrupted pushes"
            );
        }
        let store = Store::open(&config.database_url()).await?;
        let bootstrap_token = bootstrap_admin(&store, config.admin_token.as_deref()).await?;
        recover_push_events(&store, &config.data_dir).await?;
        let public_url = OnceLock::new();
        if let Some(url) = &config.public_url {
            let _ = public_url.set(url.clone());
        }
        let cluster = cluster::Cluster::new(store.postgres().is_some());
        let (events, _) = broadcast::channel(EVENT_BUS_CAPACITY);
        let (agent, agent_reports) = if config.embedded_agent {
            embedded_agent(
                &config.limits.environments,
                &config.runs.sandbox,
                &config.data_dir,
            )
            .await
        } else {
            (None, None)
        };
        let mut runs_config = config.runs.clone();
        if !config.embedded_agent {
            runs_config.embedded_slots = 0;
        }
        let runs = runs::Runs::new(&config.data_dir, runs_config)?;
        let (ssh, ssh_listener) = match config.ssh_listen {
            Some(addr) => {
                let key =
                    ssh::load_or_create_host_key(&config.data_dir).map_err(ServerError::Ssh)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| ServerError::Ssh(format!("cannot listen on {addr}: {e}")))?;
                (Some(ssh::SshService::new(key)), Some(listener))
            }
            None => (None, None),
        };
        let state = AppState(Arc::new(Inner {
            runs,
            store,
            data_dir: config.data_dir,
            public_url,
            events,
            pull_events: broadcast::channel(EVENT_BUS_CAPACITY).0,
            repo_locks: Mutex::new(HashMap::new()),
            envs: envs::Envs::new(agent).with_terminal_grace(config.intervals.terminal_grace),
            max_push_bytes: config.max_push_bytes,
            metrics: metrics::Metrics::new(),
            limits: config.limits.clone(),
            log_caps: runs::log_cap::LogCaps::default(),
            log_hub: runs::log_follow::LogHub::default(),
            closing: tokio_util::sync::CancellationToken::new(),
            logins: auth::Logins::new(config.auth.clone()),
            notifier: notify::Notifier::new(config.notify.clone()),
            mirrors: forge::mirror::Mirrors::new(config.mirrors.clone()),
            ssh,
            tunnels: ports::Tunnels::default(),
            cluster,
        }));
        state.runs().forward_wakes(state.cluster().forward());
        state.notifier().forward_wakes(state.cluster().forward());
        // Pull requests whose source moved while the server was down (or between a push's
        // events and its revisions) get their revision now.
        forge::reconcile(&state).await?;
        Ok(Server {
            state,
            agent_reports,
            intervals: config.intervals,
            metrics_listen: config.metrics_listen,
            bootstrap_token,
            ssh_listener,
        })
    }

    /// The address of the SSH listener, when `[ssh] listen` is set.
    pub fn ssh_addr(&self) -> Option<std::net::SocketAddr> {
        self.ssh_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Shared state (store, event bus) for embedding and tests.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr().map_err(ServerError::Listener)?;
        let _ = self.state.0.public_url.set(format!("http://{addr}"));
        tracing::info!(addr = %addr, public_url = %self.state.public_url(), "cove-server listening");
        // Replicas (PostgreSQL): the election and the wake-ups, before the singleton work.
        cluster::leader::spawn(self.state.clone());
        cluster::bus::spawn(self.state.clone());
        // reconciliation, the devfile watcher, the idle reaper and prebuilds serve the
        // environments of standalone agents too: they run without an embedded agent (then
        // with no embedded reports; standalone agents' reports come over their links)
        let reports = self
            .agent_reports
            .unwrap_or_else(|| tokio::sync::mpsc::unbounded_channel().1);
        envs::spawn_background(self.state.clone(), reports, self.intervals).await;
        let (stop_jobs, jobs) = runs::spawn_background(self.state.clone());
        let stop_jobs = stop_jobs.drop_guard();
        let _stop_retention = retention::spawn(self.state.clone()).drop_guard();
        let _stop_notify = notify::worker::spawn(self.state.clone()).drop_guard();
        if let Some(listener) = self.ssh_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(addr = %addr, "SSH listening");
            }
            tokio::spawn(ssh::serve_tcp(self.state.clone(), listener));
        }
        if let Some(addr) = self.metrics_listen {
            let metrics_listener = TcpListener::bind(addr).await.map_err(ServerError::Serve)?;
            tracing::info!(addr = %addr, "metrics listener (no credentials) listening");
            let app = metrics::http::listener_router(self.state.clone());
            let closing = self.state.0.closing.clone();
            tokio::spawn(async move {
                let stop = async move { closing.cancelled().await };
                if let Err(e) = axum::serve(metrics_listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let app = routes::router(self.state.clone());
        let closing = self.state.0.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.cancel();
        };
        // The peer address feeds the login throttle (auth::client) and the audit log.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve)?;
        // The embedded agent stops its jobs and removes their containers (bounded wait).
        drop(stop_jobs);
        if tokio::time::timeout(std::time::Duration::from_secs(15), jobs)
            .await
            .is_err()
        {
            tracing::warn!("the embedded agent's jobs did not stop within 15 s");
        }
        // its ready warm pod shells are removed (a killed server's go after 10 minutes)
        if let Some(agent) = self.state.envs().agent_handle() {
            if tokio::time::timeout(std::time::Duration::from_secs(15), agent.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("the embedded agent's warm pod shells were not removed within 15 s");
            }
        }
        self.state.store().close().await;
        tracing::info!("cove-server stopped");
        Ok(())
    }
}

type AgentParts = (
    Option<cove_agent::worker::AgentHandle>,
    Option<tokio::sync::mpsc::UnboundedReceiver<cove_api::agent::EnvReport>>,
);

/// The embedded agent on the local Docker engine, if one answers. Environments get the
/// `[environments]` maximums and network settings; firewall rules are installed the way the
/// job sandbox installs them (`[jobs.sandbox]` iptables and placement).
async fn embedded_agent(
    envs: &config::EnvironmentsConfig,
    sandbox: &cove_agent::private_net::SandboxSettings,
    data_dir: &Path,
) -> AgentParts {
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        cove_agent::Runtime::connect(),
    )
    .await;
    match connect {
        Ok(Ok(rt)) => {
            let rt = rt.with_network(cove_agent::env_net::EnvNetwork {
                settings: envs.network.clone(),
                net: cove_agent::job_sandbox::net_options(sandbox),
            });
            let agent_config = cove_agent::worker::AgentConfig {
                max_cpu_millis: envs.max_cpu_millis,
                max_memory_bytes: envs.max_memory_bytes,
                warm_shells: envs.warm_shells,
                // this server's shells, also after a restart (a killed server's are removed then)
                shell_owner: format!(
                    "server:{}",
                    std::fs::canonicalize(data_dir)
                        .unwrap_or_else(|_| data_dir.to_path_buf())
                        .display()
                ),
                ..Default::default()
            };
            let (handle, reports) = cove_agent::worker::spawn(rt, agent_config);
            tracing::info!("embedded agent connected to the Docker engine");
            (Some(handle), Some(reports))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no Docker engine: environments are unavailable until one answers (set DOCKER_HOST)");
            (None, None)
        }
        Err(_) => {
            tracing::warn!(
                "the Docker engine did not answer within 5 s: environments are unavailable"
            );
            (None, None)
        }
    }
}

/// First start: create `admin` and its token. With `COVE_ADMIN_TOKEN` set, make sure that
/// token is valid for the first admin. Returns a token only when it was generated here.
async fn bootstrap_admin(
    store: &Store,
    configured: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let admin = match store.first_admin().await? {
        Some(admin) => Some(admin),
        None if store.user_count().await? == 0 => {
            Some(store.create_user("admin", None, true).await?)
        }
        None => None,
    };
    let Some(admin) = admin else { return Ok(None) };
    let fresh = store.list_tokens(admin.id).await?.is_empty();
    match configured {
        Some(token) => {
            if store
                .token_by_hash(&auth::hash_token(token))
                .await?
                .is_none()
            {
                store
                    .create_token(
                        admin.id,
                        "bootstrap",
                        &auth::hash_token(token),
                        &Scope::ALL,
                        None,
                    )
                    .await?;
            }
            Ok(None)
        }
        None if fresh && store.user_count().await? == 1 => {
            let token = auth::generate_token();
            store
                .create_token(
                    admin.id,
                    "bootstrap",
                    &auth::hash_token(&token),
                    &Scope::ALL,
                    None,
                )
                .await?;
            Ok(Some(token))
        }
        None => Ok(None),
    }
}

/// Start-up reconciliation: a push whose refs landed but whose events were not stored (the
/// server died in between, so the client never got an acknowledgement) is recorded now, with
/// no pusher, so subscribers such as the workflow engine still see every ref change.
pub async fn recover_push_events(store: &Store, data_dir: &Path) -> Result<usize, ServerError> {
    let mut recovered = 0;
    for repo in store.list_repos(0, true).await? {
        let path = git::repo_path(data_dir, &repo.owner, &repo.name);
        if !path.exists() {
            continue;
        }
        // Another replica may be between a push's refs and its events: wait for its lock.
        let _across = store.lock_repo_across(repo.id).await?;
        let on_disk = git::snapshot_refs(path).await?;
        let recorded = store.recorded_refs(repo.id).await?;
        let updates = git::diff_refs(&recorded, &on_disk);
        if !updates.is_empty() {
            tracing::warn!(
                repo = %format!("{}/{}", repo.owner, repo.name),
                count = updates.len(),
                "recording ref updates of an unacknowledged push"
            );
            recovered += store.insert_push_events(&repo, None, &updates).await?.len();
        }
    }
    Ok(recovered)
}
