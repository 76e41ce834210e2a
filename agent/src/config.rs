//! The configuration of a standalone `cove-agent` (`--config agent.yaml`), and how flags and
//! environment variables override it.
//!
//! ```yaml
//! server: https://cove.example.internal   # the only place the agent dials
//! name: build-1                            # shown in `cove agent list`
//! slots: 2                                 # jobs at once
//! max_environments: 10                     # environments running at once (default: no limit)
//! state_dir: /var/lib/cove-agent           # holds agent-token (0600) and agent-id
//! registration_token_file: /run/secrets/cove-registration-token
//! metrics_listen: 127.0.0.1:9465          # /metrics and /healthz, no credentials (off if absent)
//! labels:                                  # placement labels (docs/agents.md); the agent adds
//!   region: eu                             #   backend=docker and arch=amd64|arm64 itself
//! sandbox:                                 # job isolation (private_net::SandboxSettings)
//!   private_network: true
//! job_pool: 2                              # ready job sandboxes (job_pool.rs; 0: none)
//! job_pool_image: cove/universal:latest    # their image: the server's default image
//! warm_shells: 1                           # ready pod shells per recent environment shape
//!                                          #   (pod/shells.rs; Docker only; 0: none, at most 4)
//! backend: docker                          # where environments run: docker (default) or
//! kubernetes:                              #   kubernetes, with this section
//!   namespace: cove                        #   (backend::kubernetes::KubernetesConfig; the
//!   storage_class: cove-hostpath           #   kubeconfig from KUBECONFIG, else in-cluster)
//! ```
//!
//! Unknown keys are errors that name the file. The file never holds the agent token; the
//! registration token only by reference (`registration_token_file`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::backend::kubernetes::KubernetesConfig;
use crate::backend::BackendKind;
use crate::private_net::SandboxSettings;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cove-agent";
/// Name of the agent token file in the state directory.
pub const TOKEN_FILE: &str = "agent-token";
/// Name of the agent id file in the state directory.
pub const ID_FILE: &str = "agent-id";
/// Most ready pod shells per shape (the server's `[environments] warm_shells` has the same).
pub const MAX_WARM_SHELLS: usize = 4;

/// `agent.yaml` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The server's URL (`http://host:port`).
    pub server: Option<String>,
    /// The agent's name (default: the host name).
    pub name: Option<String>,
    /// Jobs run at the same time (default 1).
    pub slots: Option<usize>,
    /// Environments running at the same time (default: no limit). Placement gives new
    /// environments only to agents with room.
    pub max_environments: Option<usize>,
    /// Where the agent keeps its token (default `/var/lib/cove-agent`).
    pub state_dir: Option<PathBuf>,
    /// A file holding a one-time registration token (used on first start only).
    pub registration_token_file: Option<PathBuf>,
    /// How jobs are isolated.
    #[serde(default)]
    pub sandbox: SandboxSettings,
    /// Serve the agent's own metrics (`/metrics`, `/healthz`) on HOST:PORT, without
    /// credentials (off when absent; keep it on a loopback or private address).
    pub metrics_listen: Option<String>,
    /// Placement labels (`region: eu`); `backend` and `arch` are set by the agent.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Ready job sandboxes kept ahead of leases (default 0: none).
    pub job_pool: Option<usize>,
    /// Image of the pooled sandboxes (default `cove/universal:latest`, the server's default
    /// image of actions that name none).
    pub job_pool_image: Option<String>,
    /// Ready pod shells per recently created environment shape (default 0: none; at most
    /// [`MAX_WARM_SHELLS`]; Docker only).
    pub warm_shells: Option<usize>,
    /// Where environments run (default `docker`).
    pub backend: Option<BackendChoice>,
    /// The Kubernetes backend's settings (with `backend: kubernetes`).
    pub kubernetes: Option<KubernetesConfig>,
}

/// `backend:` of agent.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Docker,
    Kubernetes,
}

impl BackendChoice {
    /// `docker` or `kubernetes` (as `--backend` takes it).
    pub fn parse(text: &str) -> Result<BackendChoice, ConfigError> {
        match text.trim() {
            "docker" => Ok(BackendChoice::Docker),
            "kubernetes" => Ok(BackendChoice::Kubernetes),
            other => Err(ConfigError::Invalid(format!(
                "backend {other:?}: expected docker or kubernetes"
            ))),
        }
    }

    pub fn kind(self) -> BackendKind {
        match self {
            BackendChoice::Docker => BackendKind::Docker,
            BackendChoice::Kubernetes => BackendKind::Kubernetes,
        }
    }
}

/// Overrides from flags and environment variables (these win over the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub server: Option<String>,
    pub name: Option<String>,
    pub slots: Option<usize>,
    pub max_environments: Option<usize>,
    pub state_dir: Option<PathBuf>,
    pub registration_token_file: Option<PathBuf>,
    pub metrics_listen: Option<String>,
    /// `KEY=VALUE` labels from `--label` (a key given here replaces the file's).
    pub labels: Vec<String>,
    pub job_pool: Option<usize>,
    pub job_pool_image: Option<String>,
    pub warm_shells: Option<usize>,
    /// `--backend docker|kubernetes`.
    pub backend: Option<String>,
    /// `--kubernetes-namespace` (replaces `kubernetes.namespace`; with `--backend
    /// kubernetes` it is enough without a `kubernetes:` section).
    pub kubernetes_namespace: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub server: String,
    pub name: String,
    pub slots: usize,
    /// Environments running at once (`None`: no limit).
    pub max_environments: Option<usize>,
    pub state_dir: PathBuf,
    pub registration_token_file: Option<PathBuf>,
    pub sandbox: SandboxSettings,
    /// Where the agent's metrics are served (none: not served).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Every label the agent reports: the file's, the flags', then `backend` and `arch`.
    pub labels: BTreeMap<String, String>,
    /// Ready job sandboxes ([`crate::job_pool`]; 0: none).
    pub job_pool: usize,
    pub job_pool_image: String,
    /// Ready pod shells per recently created environment shape ([`crate::pod::shells`]; 0:
    /// none; Docker only).
    pub warm_shells: usize,
    /// Where environments run.
    pub backend: BackendKind,
    /// Set exactly when `backend` is Kubernetes.
    pub kubernetes: Option<KubernetesConfig>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl FileConfig {
    /// Parses `text`, the contents of `file` (named in errors).
    pub fn parse(file: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads and parses `file`.
    pub fn load(file: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        FileConfig::parse(file, &text)
    }
}

impl AgentConfig {
    /// Overrides over the file over defaults; `default_name` is used when neither names the
    /// agent.
    pub fn resolve(
        file: FileConfig,
        over: Overrides,
        default_name: &str,
    ) -> Result<AgentConfig, ConfigError> {
        let server = over
            .server
            .or(file.server)
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "no server: set `server:` in the configuration, --server or COVE_URL".into(),
                )
            })?;
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "server {server:?} must be an http:// or https:// URL"
            )));
        }
        let name = over
            .name
            .or(file.name)
            .unwrap_or_else(|| default_name.to_string());
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(
                "the agent name must be 1-100 printable characters".into(),
            ));
        }
        let slots = over.slots.or(file.slots).unwrap_or(1);
        let metrics_listen = match over
            .metrics_listen
            .or(file.metrics_listen)
            .filter(|s| !s.trim().is_empty())
        {
            Some(text) => Some(text.trim().parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "metrics_listen {text:?} must be HOST:PORT with an IP address, e.g. 127.0.0.1:9465"
                ))
            })?),
            None => None,
        };
        if slots == 0 {
            return Err(ConfigError::Invalid("slots must be at least 1".into()));
        }
        let max_environments = over.max_environments.or(file.max_environments);
        if max_environments == Some(0) {
            return Err(ConfigError::Invalid(
                "max_environments must be at least 1 (leave it out for no limit)".into(),
            ));
        }
        let mut labels = file.labels;
        for text in &over.labels {
            let (k, v) = crate::labels::parse(text).map_err(ConfigError::Invalid)?;
            labels.insert(k, v);
        }
        let (backend, kubernetes) = resolve_backend(
            &file.backend,
            file.kubernetes,
            &over.backend,
            &over.kubernetes_namespace,
        )?;
        let labels = crate::labels::standard_for(&labels, backend);
        let job_pool = over
            .job_pool
            .or(file.job_pool)
            .unwrap_or(crate::job_worker::DEFAULT_POOL);
        if job_pool > 16 {
            return Err(ConfigError::Invalid(
                "job_pool must be at most 16 ready sandboxes".into(),
            ));
        }
        let job_pool_image = over
            .job_pool_image
            .or(file.job_pool_image)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| crate::jobs::DEFAULT_IMAGE.to_string());
        let warm_shells = over.warm_shells.or(file.warm_shells).unwrap_or(0);
        if warm_shells > MAX_WARM_SHELLS {
            return Err(ConfigError::Invalid(format!(
                "warm_shells = {warm_shells}: at most {MAX_WARM_SHELLS} ready shells per shape"
            )));
        }
        if warm_shells > 0 && backend != BackendKind::Docker {
            return Err(ConfigError::Invalid(
                "warm_shells is for the Docker backend: a Kubernetes agent keeps no ready shells; \
                 remove it or set it to 0"
                    .into(),
            ));
        }
        Ok(AgentConfig {
            job_pool,
            job_pool_image,
            warm_shells,
            server,
            name,
            slots,
            max_environments,
            state_dir: over
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            registration_token_file: over
                .registration_token_file
                .or(file.registration_token_file),
            sandbox: file.sandbox,
            metrics_listen,
            labels,
            backend,
            kubernetes,
        })
    }

    pub fn token_path(&self) -> PathBuf {
        self.state_dir.join(TOKEN_FILE)
    }

    pub fn id_path(&self) -> PathBuf {
        self.state_dir.join(ID_FILE)
    }
}

/// The backend and its settings: `--backend` over `backend:`; Kubernetes needs a namespace
/// (`kubernetes.namespace` or `--kubernetes-namespace`); a `kubernetes:` section without
/// `backend: kubernetes` is refused rather than ignored.
fn resolve_backend(
    file_backend: &Option<BackendChoice>,
    file_kubernetes: Option<KubernetesConfig>,
    over_backend: &Option<String>,
    over_namespace: &Option<String>,
) -> Result<(BackendKind, Option<KubernetesConfig>), ConfigError> {
    let choice = match over_backend {
        Some(text) => BackendChoice::parse(text)?,
        None => file_backend.unwrap_or(BackendChoice::Docker),
    };
    let namespace = over_namespace
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    match choice {
        BackendChoice::Docker => {
            if file_kubernetes.is_some() || namespace.is_some() {
                return Err(ConfigError::Invalid(
                    "a `kubernetes:` section (or --kubernetes-namespace) is set but the backend is docker: \
                     set `backend: kubernetes` (or --backend kubernetes), or remove it"
                        .into(),
                ));
            }
            Ok((BackendKind::Docker, None))
        }
        BackendChoice::Kubernetes => {
            let mut k = match (file_kubernetes, namespace) {
                (Some(k), _) => k,
                (None, Some(ns)) => KubernetesConfig::new(ns),
                (None, None) => {
                    return Err(ConfigError::Invalid(
                        "backend kubernetes needs a namespace: a `kubernetes:` section with \
                         `namespace:` (or --kubernetes-namespace)"
                            .into(),
                    ))
                }
            };
            if let Some(ns) = namespace {
                k.namespace = ns.to_string();
            }
            if !valid_namespace(&k.namespace) {
                return Err(ConfigError::Invalid(format!(
                    "kubernetes namespace {:?} is not a DNS label (a-z, 0-9, '-', at most 63)",
                    k.namespace
                )));
            }
            Ok((BackendKind::Kubernetes, Some(k)))
        }
    }
}

fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(Path::new("/etc/cove/agent.yaml"), text)
    }

    #[test]
    fn a_full_file_parses_with_its_sandbox_section() {
        let file = parse(
            "server: http://cove.internal:8080/\nname: build-1\nslots: 3\nstate_dir: /srv/agent\n\
             registration_token_file: /run/reg\nsandbox:\n  private_network: false\n  \
             egress_allow: [\"sts.example:443\"]\n",
        )
        .expect("valid");
        assert_eq!(file.slots, Some(3));
        assert!(!file.sandbox.private_network);
        assert_eq!(
            file.sandbox.egress_allow,
            vec!["sts.example:443".to_string()]
        );
        let config = AgentConfig::resolve(file, Overrides::default(), "host").expect("valid");
        assert_eq!(config.server, "http://cove.internal:8080");
        assert_eq!(config.name, "build-1");
        assert_eq!(config.token_path(), PathBuf::from("/srv/agent/agent-token"));
        assert_eq!(
            config.registration_token_file,
            Some(PathBuf::from("/run/reg"))
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_file_and_the_key() {
        let err = parse("server: http://x\ntoken: abc\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/cove/agent.yaml: "), "{err}");
        assert!(err.contains("unknown field `token`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = parse("sandbox:\n  private_netwrk: true\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/cove/agent.yaml: "), "{err}");
        assert!(err.contains("private_netwrk"), "{err}");
    }

    #[test]
    fn flags_and_environment_win_over_the_file_and_defaults_fill_the_rest() {
        let file = parse("server: http://file:1\nname: from-file\nslots: 4\n").expect("valid");
        let config = AgentConfig::resolve(
            file,
            Overrides {
                server: Some("http://flag:2".into()),
                slots: Some(2),
                ..Default::default()
            },
            "host",
        )
        .expect("valid");
        assert_eq!(config.server, "http://flag:2");
        assert_eq!(config.name, "from-file");
        assert_eq!(config.slots, 2);
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.sandbox, SandboxSettings::default());

        let empty = parse("").expect("an empty file is all defaults");
        let config = AgentConfig::resolve(
            empty,
            Overrides {
                server: Some("http://127.0.0.1:8080".into()),
                ..Default::default()
            },
            "myhost",
        )
        .expect("valid");
        assert_eq!((config.name.as_str(), config.slots), ("myhost", 1));
        assert_eq!(config.job_pool, crate::job_worker::DEFAULT_POOL);
        assert_eq!(config.job_pool_image, crate::jobs::DEFAULT_IMAGE);
        let file = parse(
            "server: http://127.0.0.1:8080
job_pool: 3
job_pool_image: img:1
",
        )
        .expect("valid");
        let config = AgentConfig::resolve(
            file,
            Overrides {
                job_pool: Some(0),
                ..Default::default()
            },
            "h",
        )
        .expect("valid");
        assert_eq!(
            (config.job_pool, config.job_pool_image.as_str()),
            (0, "img:1")
        );
        let err = AgentConfig::resolve(
            parse(
                "server: http://127.0.0.1:8080
job_pool: 1000
",
            )
            .expect("valid"),
            Overrides::default(),
            "h",
        )
        .unwrap_err();
        assert!(err.to_string().contains("job_pool"), "{err}");
    }

    #[test]
    fn warm_shells_are_docker_only_and_bounded() {
        let resolve = |text: &str, over: Option<usize>| {
            AgentConfig::resolve(
                parse(text).expect("valid"),
                Overrides {
                    warm_shells: over,
                    ..Default::default()
                },
                "h",
            )
        };
        let docker = "server: http://127.0.0.1:8080\n";
        assert_eq!(resolve(docker, None).expect("valid").warm_shells, 0);
        let two = "server: http://127.0.0.1:8080\nwarm_shells: 2\n";
        assert_eq!(resolve(two, None).expect("valid").warm_shells, 2);
        assert_eq!(resolve(two, Some(1)).expect("valid").warm_shells, 1);
        let err = resolve(docker, Some(5)).unwrap_err().to_string();
        assert!(err.contains("at most 4"), "{err}");
        let k8s = "server: http://127.0.0.1:8080\nbackend: kubernetes\nkubernetes:\n  namespace: cove\nwarm_shells: 1\n";
        let err = resolve(k8s, None).unwrap_err().to_string();
        assert!(err.contains("Docker backend"), "{err}");
        let k8s_none = k8s.replace("warm_shells: 1", "warm_shells: 0");
        assert_eq!(resolve(&k8s_none, None).expect("valid").warm_shells, 0);
    }

    #[test]
    fn labels_come_from_the_file_and_flags_and_the_agent_adds_its_own() {
        let file = parse("server: http://127.0.0.1:8080\nlabels:\n  region: eu\n  pool: cpu\n")
            .expect("valid");
        let config = AgentConfig::resolve(
            file,
            Overrides {
                labels: vec!["pool=gpu".into(), "disk=ssd".into()],
                ..Default::default()
            },
            "h",
        )
        .expect("valid");
        assert_eq!(config.labels["region"], "eu");
        assert_eq!(config.labels["pool"], "gpu");
        assert_eq!(config.labels["disk"], "ssd");
        assert_eq!(config.labels["backend"], "docker");
        assert!(config.labels.contains_key("arch"));
        let err = AgentConfig::resolve(
            parse("server: http://127.0.0.1:8080\n").expect("valid"),
            Overrides {
                labels: vec!["gpu".into()],
                ..Default::default()
            },
            "h",
        )
        .unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn the_backend_is_docker_unless_kubernetes_is_chosen_with_a_namespace() {
        let config = AgentConfig::resolve(
            parse("server: http://127.0.0.1:8080\n").expect("valid"),
            Overrides::default(),
            "h",
        )
        .expect("valid");
        assert_eq!(
            (config.backend, config.kubernetes.is_none()),
            (BackendKind::Docker, true)
        );
        let file = parse(
            "server: http://127.0.0.1:8080\nbackend: kubernetes\nkubernetes:\n  namespace: cove\n  \
             storage_class: cove-hostpath\n  image_pull_policy: Never\n",
        )
        .expect("valid");
        let config = AgentConfig::resolve(file, Overrides::default(), "h").expect("valid");
        assert_eq!(config.backend, BackendKind::Kubernetes);
        assert_eq!(config.labels["backend"], "kubernetes");
        let k = config.kubernetes.expect("kubernetes settings");
        assert_eq!(k.namespace, "cove");
        assert_eq!(k.storage_class.as_deref(), Some("cove-hostpath"));
        assert_eq!(k.image_pull_policy, "Never");
        // flags alone
        let config = AgentConfig::resolve(
            parse("server: http://127.0.0.1:8080\n").expect("valid"),
            Overrides {
                backend: Some("kubernetes".into()),
                kubernetes_namespace: Some("envs".into()),
                ..Default::default()
            },
            "h",
        )
        .expect("valid");
        assert_eq!(config.kubernetes.expect("settings").namespace, "envs");
        assert_eq!(config.labels["backend"], "kubernetes");
    }

    #[test]
    fn the_shipped_kubernetes_deployment_configures_the_kubernetes_backend() {
        use serde::Deserialize as _;
        let text = include_str!("../../deploy/kubernetes/agent.yaml");
        let config_map = serde_yaml::Deserializer::from_str(text)
            .map(|doc| serde_yaml::Value::deserialize(doc).expect("yaml"))
            .find(|doc| doc["kind"] == "ConfigMap")
            .expect("a ConfigMap");
        let agent_yaml = config_map["data"]["agent.yaml"]
            .as_str()
            .expect("agent.yaml");
        let config = AgentConfig::resolve(
            parse(agent_yaml).expect("the shipped agent.yaml parses"),
            Overrides::default(),
            "h",
        )
        .expect("valid");
        assert_eq!(config.backend, BackendKind::Kubernetes);
        assert_eq!(config.kubernetes.expect("settings").namespace, "cove");
        assert_eq!(config.labels["backend"], "kubernetes");
    }

    #[test]
    fn backend_mistakes_are_clear_errors() {
        let err = parse("server: http://127.0.0.1:8080\nbackend: podman\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("podman") && err.contains("kubernetes"),
            "{err}"
        );
        let err = parse(
            "server: http://127.0.0.1:8080\nbackend: kubernetes\nkubernetes:\n  namespace: a\n  nmespace: b\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nmespace"), "{err}");
        let resolve = |text: &str, over: Overrides| {
            AgentConfig::resolve(parse(text).expect("valid"), over, "h")
                .unwrap_err()
                .to_string()
        };
        let err = resolve(
            "server: http://127.0.0.1:8080\nbackend: kubernetes\n",
            Overrides::default(),
        );
        assert!(err.contains("namespace"), "{err}");
        let err = resolve(
            "server: http://127.0.0.1:8080\nkubernetes:\n  namespace: cove\n",
            Overrides::default(),
        );
        assert!(err.contains("backend: kubernetes"), "{err}");
        let err = resolve(
            "server: http://127.0.0.1:8080\n",
            Overrides {
                backend: Some("kube".into()),
                ..Default::default()
            },
        );
        assert!(err.contains("docker or kubernetes"), "{err}");
        let err = resolve(
            "server: http://127.0.0.1:8080\n",
            Overrides {
                backend: Some("kubernetes".into()),
                kubernetes_namespace: Some("Not_A_Label".into()),
                ..Default::default()
            },
        );
        assert!(err.contains("DNS label"), "{err}");
    }

    #[test]
    fn metrics_listen_is_an_address_and_off_by_default() {
        let file = parse("server: http://127.0.0.1:8080\nmetrics_listen: 127.0.0.1:9465\n")
            .expect("valid");
        let config = AgentConfig::resolve(file, Overrides::default(), "h").expect("valid");
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9465".parse().expect("address"))
        );
        let file = parse("server: http://127.0.0.1:8080\n").expect("valid");
        let config = AgentConfig::resolve(file, Overrides::default(), "h").expect("valid");
        assert_eq!(config.metrics_listen, None);
        let file =
            parse("server: http://127.0.0.1:8080\nmetrics_listen: localhost\n").expect("valid");
        let err = AgentConfig::resolve(file, Overrides::default(), "h").unwrap_err();
        assert!(err.to_string().contains("metrics_listen"), "{err}");
    }

    #[test]
    fn missing_or_bad_values_are_explained() {
        let err = AgentConfig::resolve(FileConfig::default(), Overrides::default(), "h")
            .unwrap_err()
            .to_string();
        assert!(err.contains("COVE_URL"), "{err}");
        let err = AgentConfig::resolve(
            parse("server: cove.internal\n").expect("valid yaml"),
            Overrides::default(),
            "h",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("http://"), "{err}");
        let err = AgentConfig::resolve(
            parse("server: http://x\nslots: 0\n").expect("valid yaml"),
            Overrides::default(),
            "h",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("slots"), "{err}");
    }
}
