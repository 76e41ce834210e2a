//! Server configuration: a TOML file, overridden by environment variables, overridden by
//! command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid listen address {0:?} (expected HOST:PORT)")]
    Listen(String),
    #[error("unsupported database URL scheme (expected sqlite:// or postgres://)")]
    DatabaseScheme,
    #[error("COVE_ADMIN_TOKEN must start with \"cove_\" and be at least 32 characters")]
    AdminToken,
    #[error("invalid [environments] setting: {0}")]
    Environments(String),
    #[error("invalid [packages] settings: {0}")]
    Packages(String),
    #[error("invalid [mirrors] allow_private entry {0:?} (expected an IP address or CIDR, e.g. 127.0.0.1/32)")]
    MirrorsAllow(String),
    #[error("invalid [auth] trusted_proxies entry {0:?} (expected an IP address or CIDR, e.g. 10.0.0.0/8)")]
    TrustedProxy(String),
    #[error("invalid [notify] allow_private entry {0:?} (expected an IP address or CIDR, e.g. 127.0.0.1/32)")]
    NotifyAllow(String),
    #[error("invalid [notify.smtp] setting: {0}")]
    Smtp(String),
}

/// The keys accepted in the TOML file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    /// Largest push accepted, in bytes (after gzip decoding).
    pub max_push_bytes: Option<u64>,
    /// `[jobs]`: the embedded agent's job loop (file only).
    #[serde(default)]
    pub jobs: Option<JobsFileConfig>,
    /// A second listener serving only `/metrics`, `/healthz`, `/readyz` without credentials
    /// (HOST:PORT; off when absent).
    pub metrics_listen: Option<String>,
    /// Deadline of a whole push (receive-pack), in seconds (file only).
    pub push_deadline_secs: Option<u64>,
    /// Largest log kept per job, in bytes; the rest is dropped after a marker (file only).
    pub max_job_log_bytes: Option<u64>,
    /// `[retention]`: how long runs, logs and artifacts are kept (file only).
    pub retention: Option<RetentionFileConfig>,
    /// `[packages]`: endpoint profiles and the roles repositories may name for CodeArtifact
    /// access (file only; nothing a repository owner types widens these).
    pub packages: Option<crate::runs::package_policy::PackagesPolicy>,
    /// `[auth]`: logins and tokens (file only).
    pub auth: Option<AuthFileConfig>,
    /// `[environments]`: resource maximums and networking of environments (file only).
    pub environments: Option<EnvironmentsFileConfig>,
    /// `[notify]`: webhook destinations allowed although private, retries, log size.
    pub notify: Option<crate::notify::NotifyFileConfig>,
    /// `[mirrors]`: upstreams allowed although private, fetch timeout (file only).
    pub mirrors: Option<crate::forge::mirror::MirrorsFileConfig>,
    /// `[ssh]`: the SSH endpoint for environments (file only; off when absent).
    pub ssh: Option<SshFileConfig>,
}

/// `[ssh]` of the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshFileConfig {
    /// HOST:PORT of the SSH listener, e.g. `127.0.0.1:2222`. SSH (this listener and the
    /// WebSocket route `…/environments/{env}/ssh`) is off when `[ssh]` or `listen` is absent.
    pub listen: Option<String>,
}

/// `[environments]` of the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentsFileConfig {
    /// Largest CPU limit of one container (`4`, `"1.5"`, `"500m"`); a devfile
    /// asking for more is refused. Default: the engine's CPU count.
    pub max_cpus: Option<Quantity>,
    /// Largest memory limit of one container (`"16Gi"`, `"512Mi"`); a devfile
    /// asking for more is refused. Default: the engine's memory.
    pub max_memory: Option<Quantity>,
    /// Environments the embedded agent runs at once (default: no limit); standalone agents
    /// have their own `max_environments` (docs/agents.md "Room").
    pub max_running: Option<usize>,
    /// `[environments.network]`: `isolate` (own network, host and metadata
    /// blocked; default true), `blocked` (CIDRs, default `169.254.0.0/16`).
    pub network: Option<cove_agent::env_net::EnvNetSettings>,
    /// The devfile registry (http(s) URL) of `parent.id` parents that name
    /// no `registryUrl` (docs/devfiles.md "Parents").
    pub devfile_registry: Option<String>,
    /// Addresses (CIDRs or single addresses) a devfile registry may have
    /// although they are loopback, private or link-local.
    pub devfile_registry_allow_private: Option<Vec<String>>,
    /// Ready pod shells (network, sources volume, started infra container) the embedded
    /// agent keeps per recently created shape, 0–4 (default 0: none); docs/environments.md
    /// "Warm pod shells".
    pub warm_shells: Option<usize>,
}

/// A Kubernetes-style quantity, written as a TOML number or string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(f64),
    Text(String),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(t) => t.clone(),
        }
    }
}

/// Environments: what a devfile may ask for and how environments are networked.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentsConfig {
    /// Largest CPU limit of a container, in millicores (`None`: the engine's CPUs).
    pub max_cpu_millis: Option<u64>,
    /// Largest memory limit of a container, in bytes (`None`: the engine's memory).
    pub max_memory_bytes: Option<u64>,
    /// Environments the embedded agent runs at once (`None`: no limit).
    pub max_running: Option<usize>,
    pub network: cove_agent::env_net::EnvNetSettings,
    /// Default devfile registry for `parent.id`.
    pub devfile_registry: Option<String>,
    /// Private addresses a devfile registry may have.
    pub devfile_registry_allow: Vec<ipnet::IpNet>,
    /// Ready pod shells per shape on the embedded agent (0: none).
    pub warm_shells: usize,
}

impl EnvironmentsFileConfig {
    fn resolve(self) -> Result<EnvironmentsConfig, ConfigError> {
        let bad = |what: &str, q: &Quantity| {
            ConfigError::Environments(format!("{what} = {:?} is not a quantity", q.text()))
        };
        let max_cpu_millis = match &self.max_cpus {
            Some(q) => Some(
                devfiles::quantity::millicores(&q.text())
                    .filter(|m| *m > 0)
                    .ok_or_else(|| bad("max_cpus", q))?,
            ),
            None => None,
        };
        let max_memory_bytes = match &self.max_memory {
            Some(q) => Some(
                devfiles::quantity::bytes(&q.text())
                    .filter(|b| *b > 0)
                    .ok_or_else(|| bad("max_memory", q))?,
            ),
            None => None,
        };
        let network = self.network.unwrap_or_default();
        network
            .blocked_cidrs()
            .map_err(|e| ConfigError::Environments(format!("network.blocked: {e}")))?;
        let devfile_registry_allow = crate::notify::ssrf::parse_allow_list(
            self.devfile_registry_allow_private.unwrap_or_default(),
        )
        .map_err(|e| {
            ConfigError::Environments(format!(
                "devfile_registry_allow_private entry {e:?} is not an IP address or CIDR"
            ))
        })?;
        if let Some(url) = &self.devfile_registry {
            crate::notify::ssrf::parse_url(url)
                .map_err(|e| ConfigError::Environments(format!("devfile_registry: {e}")))?;
        }
        let warm_shells = self.warm_shells.unwrap_or(0);
        if warm_shells > cove_agent::config::MAX_WARM_SHELLS {
            return Err(ConfigError::Environments(format!(
                "warm_shells = {warm_shells}: at most {} ready shells per shape",
                cove_agent::config::MAX_WARM_SHELLS
            )));
        }
        if self.max_running == Some(0) {
            return Err(ConfigError::Environments(
                "max_running must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        Ok(EnvironmentsConfig {
            max_cpu_millis,
            max_memory_bytes,
            max_running: self.max_running,
            network,
            devfile_registry: self.devfile_registry,
            devfile_registry_allow,
            warm_shells,
        })
    }
}

/// `[auth]` of the TOML file: logins and tokens (docs/security.md "Logins and tokens").
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFileConfig {
    /// Lifetime of a token created without one, in days (default 90; 0: no default expiry).
    pub token_expiry_days: Option<u32>,
    /// Reverse proxies (IP addresses or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Failed password checks of one user name before back-off starts (default 5).
    pub free_failures_per_user: Option<u32>,
    /// Failed password checks from one client address before back-off starts (default 20).
    pub free_failures_per_address: Option<u32>,
    /// Password hashes computed at once (default 2).
    pub max_concurrent_hashes: Option<usize>,
}

/// Logins and tokens, resolved.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Lifetime of a token created without one; `None`: such tokens do not expire.
    pub token_expiry: Option<Duration>,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Failed password checks of one user name before back-off starts.
    pub free_failures_per_user: u32,
    /// Failed password checks from one client address before back-off starts.
    pub free_failures_per_address: u32,
    /// Password hashes (argon2) computed at once.
    pub max_concurrent_hashes: usize,
}

/// Default token lifetime: 90 days.
pub const DEFAULT_TOKEN_EXPIRY: Duration = Duration::from_secs(90 * 24 * 3600);

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            token_expiry: Some(DEFAULT_TOKEN_EXPIRY),
            trusted_proxies: Vec::new(),
            free_failures_per_user: 5,
            free_failures_per_address: 20,
            max_concurrent_hashes: 2,
        }
    }
}

impl AuthFileConfig {
    fn resolve(self) -> Result<AuthSettings, ConfigError> {
        let d = AuthSettings::default();
        let trusted_proxies = self
            .trusted_proxies
            .unwrap_or_default()
            .into_iter()
            .map(|text| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ConfigError::TrustedProxy(text.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(AuthSettings {
            token_expiry: match self.token_expiry_days {
                None => d.token_expiry,
                Some(0) => None,
                Some(days) => Some(Duration::from_secs(u64::from(days) * 24 * 3600)),
            },
            trusted_proxies,
            free_failures_per_user: self
                .free_failures_per_user
                .unwrap_or(d.free_failures_per_user)
                .max(1),
            free_failures_per_address: self
                .free_failures_per_address
                .unwrap_or(d.free_failures_per_address)
                .max(1),
            max_concurrent_hashes: self
                .max_concurrent_hashes
                .unwrap_or(d.max_concurrent_hashes)
                .clamp(1, 64),
        })
    }
}

/// `[retention]` of the TOML file: the server-wide default of every repository.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionFileConfig {
    /// Runs older than this many days are deleted (0: no age limit).
    pub days: Option<u32>,
    /// Only the newest this many finished runs per repository are kept (0: no count limit).
    pub runs: Option<u32>,
    /// How often the retention pass runs, in seconds.
    pub interval_secs: Option<u64>,
    /// Audit records older than this many days are deleted (default 365; 0: kept forever).
    pub audit_days: Option<u32>,
}

/// Operational limits (issue 13 "bounded everything").
#[derive(Debug, Clone)]
pub struct Limits {
    /// A push (the whole receive-pack, from taking the repository lock) is cut off after this.
    pub push_deadline: Duration,
    /// Largest log kept per job, in bytes.
    pub max_job_log_bytes: u64,
    /// Server-wide retention default; a repository may set its own (`PUT …/retention`).
    pub retention: Retention,
    /// How often the retention pass runs.
    pub retention_interval: Duration,
    /// Audit records older than this many days are deleted by the retention pass (0: never).
    pub audit_days: u32,
    /// Resource maximums and networking of environments (`[environments]`).
    pub environments: EnvironmentsConfig,
}

/// How long runs, their logs and artifacts are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retention {
    /// Finished runs older than this many days are deleted (0: no age limit).
    pub days: u32,
    /// Only the newest this many finished runs of a repository are kept (0: no count limit).
    pub runs: u32,
}

/// Default push deadline: 15 minutes.
pub const DEFAULT_PUSH_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Default job log cap: 16 MiB.
pub const DEFAULT_MAX_JOB_LOG_BYTES: u64 = 16 << 20;
/// Default retention: 90 days, 100 runs per repository.
pub const DEFAULT_RETENTION: Retention = Retention {
    days: 90,
    runs: 100,
};
/// Default age of the oldest audit record kept: a year.
pub const DEFAULT_AUDIT_DAYS: u32 = 365;
/// Default interval of the retention pass: hourly.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            push_deadline: DEFAULT_PUSH_DEADLINE,
            max_job_log_bytes: DEFAULT_MAX_JOB_LOG_BYTES,
            retention: DEFAULT_RETENTION,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            audit_days: DEFAULT_AUDIT_DAYS,
            environments: EnvironmentsConfig::default(),
        }
    }
}

/// `[jobs]` of the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFileConfig {
    /// Jobs the embedded agent runs at once (0: only separate agents run jobs).
    pub embedded_slots: Option<usize>,
    /// `[jobs.sandbox]`: job isolation of the embedded agent (private
    /// networks, egress allow-list, VPC endpoints), as in `agent.yaml`.
    pub sandbox: Option<cove_agent::private_net::SandboxSettings>,
    /// Further attempts of a job whose agent was lost (`RetryOnAgentLost`, default 1).
    pub retry_on_agent_lost: Option<u32>,
    /// Image of actions that name no container (default `cove/universal:latest`).
    pub default_image: Option<String>,
    /// Ready job sandboxes the embedded agent keeps for actions in the default image
    /// (default 0; at most 16; docs/runs.md "Job sandbox pool").
    pub pool: Option<usize>,
    /// How long an approval gate waits before it fails, when its action sets no `Timeout`
    /// (default 7 days).
    pub approval_timeout_secs: Option<u64>,
}

impl FileConfig {
    /// Reads a TOML config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The resolved configuration of one server.
#[derive(Clone)]
pub struct Config {
    /// Holds the SQLite database, git repositories and trash.
    pub data_dir: PathBuf,
    /// Address to listen on (used by the binary; tests pass their own listener).
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; default: SQLite in `data_dir/cove.db`.
    pub database_url: Option<String>,
    /// Base URL clients use (clone URLs); default: `http://` + the bound address.
    pub public_url: Option<String>,
    /// The bootstrap admin token (from `COVE_ADMIN_TOKEN`); generated when absent.
    pub admin_token: Option<String>,
    /// Run the embedded agent on the local Docker engine (default true).
    pub embedded_agent: bool,
    /// Workflow engine tuning (leases, default job image, embedded job slots).
    pub runs: crate::runs::RunsConfig,
    /// How often environments are checked for devfile changes and idleness.
    pub intervals: crate::envs::Intervals,
    /// Largest push accepted, in bytes (after gzip decoding); larger pushes get 413.
    pub max_push_bytes: u64,
    /// The separate metrics listener (no credentials); off when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Push deadline, job log cap, retention default.
    pub limits: Limits,
    /// Logins and tokens: throttling, hashing, token expiry, trusted proxies.
    pub auth: AuthSettings,
    /// Notifications: private destinations allowed, retries, delivery log size.
    pub notify: crate::notify::NotifySettings,
    /// Mirrors: upstreams allowed although private, fetch timeout.
    pub mirrors: crate::forge::mirror::MirrorSettings,
    /// The SSH listener (`[ssh] listen`); SSH is off when `None`.
    pub ssh_listen: Option<SocketAddr>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("public_url", &self.public_url)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A database URL with any password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Default largest push: 2 GiB.
pub const DEFAULT_MAX_PUSH_BYTES: u64 = 2 << 30;

impl Config {
    /// A configuration with defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            public_url: None,
            admin_token: None,
            embedded_agent: true,
            runs: crate::runs::RunsConfig::default(),
            intervals: crate::envs::Intervals::default(),
            max_push_bytes: DEFAULT_MAX_PUSH_BYTES,
            metrics_listen: None,
            limits: Limits::default(),
            auth: AuthSettings::default(),
            notify: crate::notify::NotifySettings::default(),
            mirrors: crate::forge::mirror::MirrorSettings::default(),
            ssh_listen: None,
        }
    }

    /// Merges layers: `flags` (already merged with the environment by clap) over `file`.
    /// The admin token comes from the environment only.
    pub fn resolve(
        flags: FileConfig,
        admin_token: Option<String>,
        file: FileConfig,
    ) -> Result<Config, ConfigError> {
        let FileConfig {
            data_dir,
            listen,
            database_url,
            public_url,
            max_push_bytes,
            jobs: _,
            metrics_listen,
            push_deadline_secs: _,
            max_job_log_bytes: _,
            retention: _,
            packages: _,
            auth: _,
            environments: _,
            notify: _,
            mirrors: _,
            ssh: _,
        } = flags;
        let environments = file.environments.clone().unwrap_or_default().resolve()?;
        let mirrors = file
            .mirrors
            .clone()
            .unwrap_or_default()
            .resolve()
            .map_err(ConfigError::MirrorsAllow)?;
        let auth = file.auth.clone().unwrap_or_default().resolve()?;
        let notify = file
            .notify
            .clone()
            .unwrap_or_default()
            .resolve()
            .map_err(|e| match e {
                crate::notify::config::NotifyConfigError::Allow(a) => ConfigError::NotifyAllow(a),
                crate::notify::config::NotifyConfigError::Smtp(s) => ConfigError::Smtp(s),
            })?;
        let metrics_listen = match metrics_listen
            .or(file.metrics_listen)
            .filter(|s| !s.is_empty())
        {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| ConfigError::Listen(text.clone()))?,
            ),
            None => None,
        };
        let ssh_listen = match file
            .ssh
            .as_ref()
            .and_then(|s| s.listen.clone())
            .filter(|s| !s.is_empty())
        {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| ConfigError::Listen(text.clone()))?,
            ),
            None => None,
        };
        let retention_file = file.retention.clone().unwrap_or_default();
        let retention_interval = retention_file
            .interval_secs
            .map_or(DEFAULT_RETENTION_INTERVAL, |s| {
                Duration::from_secs(s.max(1))
            });
        let limits = Limits {
            push_deadline: file
                .push_deadline_secs
                .map_or(DEFAULT_PUSH_DEADLINE, |s| Duration::from_secs(s.max(1))),
            max_job_log_bytes: file.max_job_log_bytes.unwrap_or(DEFAULT_MAX_JOB_LOG_BYTES),
            retention: Retention {
                days: retention_file.days.unwrap_or(DEFAULT_RETENTION.days),
                runs: retention_file.runs.unwrap_or(DEFAULT_RETENTION.runs),
            },
            environments,
            retention_interval,
            audit_days: retention_file.audit_days.unwrap_or(DEFAULT_AUDIT_DAYS),
        };
        let jobs = file.jobs.clone().unwrap_or_default();
        let mut runs = crate::runs::RunsConfig::default();
        if let Some(slots) = jobs.embedded_slots {
            runs.embedded_slots = slots;
        }
        if let Some(sandbox) = jobs.sandbox {
            runs.sandbox = sandbox;
        }
        if let Some(n) = jobs.retry_on_agent_lost {
            runs.retry_on_agent_lost = n;
        }
        if let Some(image) = jobs.default_image {
            runs.default_image = image;
        }
        if let Some(n) = jobs.pool {
            runs.job_pool = n.min(16);
        }
        if let Some(packages) = file.packages.clone() {
            packages.check().map_err(ConfigError::Packages)?;
            runs.packages = packages;
        }
        if let Some(secs) = jobs.approval_timeout_secs {
            runs.approval_timeout = Duration::from_secs(secs.max(1));
        }
        let data_dir = data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(".cove-data"));
        let listen_text = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text
            .parse()
            .map_err(|_| ConfigError::Listen(listen_text.clone()))?;
        let database_url = database_url.or(file.database_url).filter(|s| !s.is_empty());
        if let Some(url) = &database_url {
            let ok = ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|p| url.starts_with(p));
            if !ok {
                return Err(ConfigError::DatabaseScheme);
            }
        }
        let admin_token = admin_token.filter(|s| !s.is_empty());
        if let Some(token) = &admin_token {
            if !token.starts_with(crate::auth::TOKEN_PREFIX) || token.len() < 32 {
                return Err(ConfigError::AdminToken);
            }
        }
        Ok(Config {
            data_dir,
            listen,
            database_url,
            public_url: public_url
                .or(file.public_url)
                .map(|u| u.trim_end_matches('/').to_string()),
            admin_token,
            embedded_agent: true,
            runs,
            intervals: crate::envs::Intervals::default(),
            max_push_bytes: max_push_bytes
                .or(file.max_push_bytes)
                .unwrap_or(DEFAULT_MAX_PUSH_BYTES),
            metrics_listen,
            limits,
            auth,
            notify,
            mirrors,
            ssh_listen,
        })
    }

    /// The database URL to connect to.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("cove.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_is_off_unless_listen_is_set() {
        let off = Config::resolve(FileConfig::default(), None, FileConfig::default()).unwrap();
        assert_eq!(off.ssh_listen, None);
        let file: FileConfig = toml::from_str("[ssh]\nlisten = \"127.0.0.1:2222\"\n").unwrap();
        let on = Config::resolve(FileConfig::default(), None, file).unwrap();
        assert_eq!(
            on.ssh_listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:2222")
        );
        let bad: FileConfig = toml::from_str("[ssh]\nlisten = \"nowhere\"\n").unwrap();
        assert!(matches!(
            Config::resolve(FileConfig::default(), None, bad),
            Err(ConfigError::Listen(_))
        ));
        assert!(toml::from_str::<FileConfig>("[ssh]\nlsten = \"x\"\n").is_err());
    }

    #[test]
    fn flags_override_file() {
        let file = FileConfig {
            data_dir: Some("/file".into()),
            listen: Some("0.0.0.0:1".into()),
            database_url: None,
            public_url: Some("http://file/".into()),
            max_push_bytes: Some(7),
            ..FileConfig::default()
        };
        let flags = FileConfig {
            data_dir: Some("/flag".into()),
            ..FileConfig::default()
        };
        let c = Config::resolve(flags, None, file).expect("valid config");
        assert_eq!(c.max_push_bytes, 7);
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        assert_eq!(c.listen.to_string(), "0.0.0.0:1");
        assert_eq!(c.public_url.as_deref(), Some("http://file"));
        assert!(c.database_url().starts_with("sqlite:///flag/cove.db"));
    }

    #[test]
    fn jobs_section_sets_the_embedded_agents_sandbox() {
        let file: FileConfig = toml::from_str(
            "[jobs]\nembedded_slots = 1\n[jobs.sandbox]\negress_allow = [\"cove.internal:443\"]\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.runs.embedded_slots, 1);
        assert_eq!(c.runs.sandbox.egress_allow, vec!["cove.internal:443"]);
        assert!(c.runs.sandbox.private_network);
        let err = toml::from_str::<FileConfig>("[jobs.sandbox]\nprivate_netwrok = false\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("private_netwrok"), "{err}");
    }

    #[test]
    fn packages_section_sets_the_policy_and_bad_values_are_named() {
        let file: FileConfig = toml::from_str(
            "[packages]\nrole_arn_patterns = [\"arn:aws:iam::123456789012:role/cove-*\"]\n\
             [packages.endpoints.vpc]\nsts = \"https://sts.internal\"\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.runs.packages.role_arn_patterns.len(), 1);
        assert!(c.runs.packages.endpoints.contains_key("vpc"));
        let file: FileConfig =
            toml::from_str("[packages.endpoints.vpc]\nsts = \"sts.internal\"\n").expect("toml");
        let err = Config::resolve(FileConfig::default(), None, file)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("packages.endpoints.vpc.sts"), "{err}");
    }

    #[test]
    fn auth_section_sets_expiry_proxies_and_throttle() {
        let file: FileConfig = toml::from_str(
            "[auth]\ntoken_expiry_days = 30\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.auth.token_expiry, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(c.auth.trusted_proxies.len(), 2);
        assert_eq!(c.auth.free_failures_per_user, 5);
        let never: FileConfig = toml::from_str("[auth]\ntoken_expiry_days = 0\n").expect("toml");
        let c = Config::resolve(FileConfig::default(), None, never).expect("valid config");
        assert_eq!(c.auth.token_expiry, None);
        let bad: FileConfig =
            toml::from_str("[auth]\ntrusted_proxies = [\"proxy.example\"]\n").expect("toml");
        let err = Config::resolve(FileConfig::default(), None, bad).expect_err("not an address");
        assert!(err.to_string().contains("proxy.example"), "{err}");
    }

    #[test]
    fn environments_section_sets_maximums_and_network() {
        let file: FileConfig = toml::from_str(
            "[environments]\nmax_cpus = 2\nmax_memory = \"8Gi\"\n[environments.network]\nblocked = [\"169.254.0.0/16\", \"10.0.0.0/8\"]\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.limits.environments.max_cpu_millis, Some(2000));
        assert_eq!(c.limits.environments.max_memory_bytes, Some(8 << 30));
        assert!(c.limits.environments.network.isolate);
        assert_eq!(c.limits.environments.network.blocked.len(), 2);
        let d = Config::resolve(FileConfig::default(), None, FileConfig::default()).unwrap();
        assert_eq!(d.limits.environments.max_cpu_millis, None);
        assert_eq!(
            d.limits.environments.network.blocked,
            vec!["169.254.0.0/16"]
        );
        for (text, needle) in [
            ("[environments]\nmax_cpus = \"lots\"\n", "max_cpus"),
            ("[environments]\nmax_memory = \"-1Gi\"\n", "max_memory"),
            (
                "[environments.network]\nblocked = [\"metadata\"]\n",
                "metadata",
            ),
        ] {
            let file: FileConfig = toml::from_str(text).expect("valid toml");
            let err = Config::resolve(FileConfig::default(), None, file).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn notify_section_sets_allowances_and_retries() {
        let file: FileConfig = toml::from_str(
            "[notify]\nallow_private = [\"127.0.0.1/32\", \"::1\"]\nmax_attempts = 3\nretry_base_ms = 250\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.notify.allow_private.len(), 2);
        assert_eq!(c.notify.max_attempts, 3);
        assert_eq!(c.notify.retry_base, Duration::from_millis(250));
        let d = Config::resolve(FileConfig::default(), None, FileConfig::default()).unwrap();
        assert!(
            d.notify.allow_private.is_empty(),
            "nothing private by default"
        );
        assert_eq!(d.notify.max_attempts, 5);
        let bad: FileConfig =
            toml::from_str("[notify]\nallow_private = [\"intranet\"]\n").expect("toml");
        let err = Config::resolve(FileConfig::default(), None, bad).expect_err("not an address");
        assert!(err.to_string().contains("intranet"), "{err}");
    }

    #[test]
    fn notify_smtp_section() {
        let file: FileConfig = toml::from_str(
            "[notify.smtp]\nhost = \"mail.example\"\nfrom = \"Cove <cove@example.com>\"\n\
             username = \"cove\"\npassword = \"hunter2-smtp\"\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        let smtp = c.notify.smtp.clone().expect("smtp");
        assert_eq!(
            (smtp.port, smtp.tls),
            (587, crate::notify::config::SmtpTls::StartTls)
        );
        assert_eq!(smtp.from.email.to_string(), "cove@example.com");
        // The password is in no Debug output (configuration dumps, logs).
        assert!(!format!("{:?}", c.notify).contains("hunter2-smtp"));
        let file: FileConfig = toml::from_str(
            "[notify.smtp]\nhost = \"h\"\nfrom = \"c@example.com\"\ntls = \"tls\"\n",
        )
        .expect("valid toml");
        let c = Config::resolve(FileConfig::default(), None, file).expect("valid config");
        assert_eq!(c.notify.smtp.expect("smtp").port, 465);
        for (text, needle) in [
            (
                "host = \"h\"\nfrom = \"c@example.com\"\ntls = \"ssl\"\n",
                "tls must be",
            ),
            (
                "host = \"h\"\nfrom = \"not an address\"\n",
                "not an email address",
            ),
            (
                "host = \"h\"\nfrom = \"c@example.com\"\nusername = \"u\"\n",
                "go together",
            ),
            (
                "host = \"h\"\nfrom = \"c@example.com\"\npassword = \"pw-only\"\n",
                "go together",
            ),
        ] {
            let file: FileConfig =
                toml::from_str(&format!("[notify.smtp]\n{text}")).expect("valid toml");
            let err = Config::resolve(FileConfig::default(), None, file).expect_err(text);
            assert!(err.to_string().contains(needle), "{err}");
            assert!(!err.to_string().contains("pw-only"), "{err}");
        }
    }

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(
            redact_url("postgres://cove:secret@db:5432/cove"),
            "postgres://cove:***@db:5432/cove"
        );
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }
}
