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
/// Default interval of the retention pass: hourly.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            push_deadline: DEFAULT_PUSH_DEADLINE,
            max_job_log_bytes: DEFAULT_MAX_JOB_LOG_BYTES,
            retention: DEFAULT_RETENTION,
            retention_interval: DEFAULT_RETENTION_INTERVAL,
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
        } = flags;
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
            retention_interval,
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
    fn redacts_database_passwords() {
        assert_eq!(
            redact_url("postgres://cove:secret@db:5432/cove"),
            "postgres://cove:***@db:5432/cove"
        );
        assert_eq!(redact_url("sqlite:///x.db"), "sqlite:///x.db");
    }
}
