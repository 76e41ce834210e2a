//! A leased job's sandbox: its private network, the endpoint gateway, the broker's
//! credentials and the job's secrets, torn down together.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use bollard::Docker;

use crate::broker::{
    Broker, BrokerConfig, BrokerError, BuildInjection, JobCredentials, JobRef, Mode, Secret,
};
use crate::gateway::{
    proxy_env, AllowList, BrokerSource, Gateway, GatewayConfig, GatewayError, NoUpstream,
    UpstreamSource,
};

use super::*;

/// Everything a job needs to run in its private subnet.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub job: JobRef,
    /// CodeArtifact for this job (`None`: no package routes).
    pub codeartifact: Option<BrokerConfig>,
    pub mode: Mode,
    /// Forward-proxy destinations from agent configuration (STS, the Cove
    /// server, …). In compatible mode the repository endpoints are added.
    pub allow: AllowList,
    /// Home directory of the build user inside the container.
    pub home: PathBuf,
    pub net: NetOptions,
    /// Where the gateway listens.
    pub gateway_at: GatewayAt,
    /// A deploy action's role, served by the gateway (docs/deployments.md).
    pub deploy: Option<Arc<crate::creds::DeployCredentials>>,
}

/// Where a job's gateway listens (see [`Placement`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayAt {
    /// On the job bridge's host address (the agent is on the host).
    HostBridge,
    /// On this container's address in the job network: the agent runs in
    /// the container with this id or name and joins each job network.
    Container(String),
    /// No private network: the job runs as a Kubernetes Pod fenced by its NetworkPolicy
    /// (`backend/kubernetes/jobs.rs`), and the gateway listens on this address, which the
    /// Pod reaches (the node's address for an agent beside the cluster, the agent Pod's in it).
    Address(IpAddr),
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("job `{0}` is a deploy action: its role is served only on a Docker private network")]
    DeployWithoutNetwork(String),
    #[error("cannot listen on {addr} for job `{job}`'s gateway: {source}")]
    Listen {
        job: String,
        addr: IpAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A job's private network, its gateway and what the build container gets.
/// The job runner: `start` → run containers on [`JobSandbox::network_name`]
/// with [`JobSandbox::injection`] → mask [`JobSandbox::secrets`] →
/// [`JobSandbox::teardown`] (dropping it also cleans up).
pub struct JobSandbox {
    net: Option<PrivateNetwork>,
    gateway: Option<Gateway>,
    injection: BuildInjection,
    credentials: Option<JobCredentials>,
    deploy: Option<Arc<crate::creds::DeployCredentials>>,
}

impl fmt::Debug for JobSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSandbox")
            .field("net", &self.net)
            .field("gateway", &self.gateway)
            .field("injection", &self.injection)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl JobSandbox {
    pub async fn start(
        docker: &Docker,
        broker: Arc<Broker>,
        spec: SandboxSpec,
    ) -> Result<JobSandbox, SandboxError> {
        let job_id = spec.job.job_id.clone();
        if matches!(spec.gateway_at, GatewayAt::Address(_)) && spec.deploy.is_some() {
            return Err(SandboxError::DeployWithoutNetwork(job_id));
        }
        let mut net = match spec.gateway_at {
            GatewayAt::Address(_) => None,
            _ => Some(PrivateNetwork::create(docker, &job_id, spec.net.clone()).await?),
        };
        if spec.codeartifact.is_none() && spec.allow.is_empty() && spec.deploy.is_none() {
            // Nothing to forward to: no gateway, the network has no way out.
            return Ok(JobSandbox {
                net,
                gateway: None,
                injection: BuildInjection::default(),
                credentials: None,
                deploy: None,
            });
        }
        let listen_ip = match (&spec.gateway_at, &net) {
            (GatewayAt::Address(ip), _) => *ip,
            (GatewayAt::HostBridge, Some(net)) => net.gateway_ip(),
            (GatewayAt::Container(me), Some(net)) => join_network(docker, net, me).await?,
            (_, None) => unreachable!("a network exists unless the gateway has an address"),
        };
        let listener = tokio::net::TcpListener::bind((listen_ip, 0))
            .await
            .map_err(|source| SandboxError::Listen {
                job: job_id.clone(),
                addr: listen_ip,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Listen {
                job: job_id.clone(),
                addr: listen_ip,
                source,
            })?;
        if let (GatewayAt::HostBridge, Some(net)) = (&spec.gateway_at, net.as_mut()) {
            net.allow_gateway_port(addr.port()).await?;
        }
        let gateway_url = format!("http://{addr}");
        let credentials = match &spec.codeartifact {
            Some(cfg) => Some(broker.job_credentials(cfg, &spec.job, spec.mode).await?),
            None => None,
        };
        let mut allow = spec.allow.clone();
        let mut injection = BuildInjection::default();
        if let Some(creds) = &credentials {
            injection = match spec.mode {
                Mode::TokenFree => creds.token_free(&spec.home, &gateway_url),
                Mode::Compatible => {
                    allow = allow.with_urls(creds.endpoints.iter().map(|e| e.url.as_str()));
                    creds.compatible(&spec.home)
                }
            };
        }
        let mut no_proxy = "localhost,127.0.0.1".to_string();
        if let Some(deploy) = &spec.deploy {
            // The SDKs take a plain-http credentials URI only on loopback or the container
            // credentials addresses: 169.254.170.2:80 is redirected to this job's gateway.
            let net = net
                .as_mut()
                .ok_or_else(|| SandboxError::DeployWithoutNetwork(job_id.clone()))?;
            net.redirect(crate::creds::CREDENTIALS_IP, 80, addr).await?;
            // The first AssumeRole, before the job starts: a role that cannot be assumed fails
            // the job with the reason, and the credentials are in the mask set from the start.
            deploy.credentials().await?;
            for (k, v) in deploy.env(&format!("http://{}", crate::creds::CREDENTIALS_IP)) {
                if k == "AWS_CONTAINER_AUTHORIZATION_TOKEN" {
                    injection.secret_env.insert(k, v);
                } else {
                    injection.env.insert(k, v);
                }
            }
            no_proxy.push_str(&format!(",{}", crate::creds::CREDENTIALS_IP));
        }
        if !allow.is_empty() {
            injection.env.extend(proxy_env(&gateway_url));
            for k in ["NO_PROXY", "no_proxy"] {
                injection.env.insert(k.into(), no_proxy.clone());
            }
        }
        let source: Arc<dyn UpstreamSource> = match &spec.codeartifact {
            Some(cfg) => Arc::new(BrokerSource {
                broker,
                config: cfg.clone(),
                job: spec.job.clone(),
            }),
            None => Arc::new(NoUpstream),
        };
        let mut config = GatewayConfig::new(&job_id, allow);
        config.credentials = spec.deploy.clone();
        let gateway = Gateway::start(listener, source, config)?;
        Ok(JobSandbox {
            net,
            gateway: Some(gateway),
            injection,
            credentials,
            deploy: spec.deploy,
        })
    }

    fn net(&self) -> &PrivateNetwork {
        self.net
            .as_ref()
            .expect("the network lives until teardown consumes the sandbox")
    }

    /// `NetworkMode` for the job's containers (empty without a network: a Kubernetes job).
    pub fn network_name(&self) -> &str {
        self.net.as_ref().map(PrivateNetwork::name).unwrap_or("")
    }

    /// Where the gateway listens, if the job has one.
    pub fn gateway_addr(&self) -> Option<std::net::SocketAddr> {
        self.gateway.as_ref().map(Gateway::local_addr)
    }

    pub fn network(&self) -> &PrivateNetwork {
        self.net()
    }

    /// Base URL of the job's gateway (`http://<bridge ip>:<port>`).
    pub fn gateway_url(&self) -> String {
        self.gateway.as_ref().map(Gateway::url).unwrap_or_default()
    }

    /// Env and files for the build container.
    pub fn injection(&self) -> &BuildInjection {
        &self.injection
    }

    pub fn credentials(&self) -> Option<&JobCredentials> {
        self.credentials.as_ref()
    }

    /// For the log masker: the token and session secrets, in both modes
    /// (token-free builds never see them, but the agent's own logs might).
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out = self
            .credentials
            .as_ref()
            .map(JobCredentials::secrets)
            .unwrap_or_default();
        if let Some(d) = &self.deploy {
            out.extend(d.secrets());
        }
        out
    }

    /// Credential strings issued after the start (refreshed deploy credentials), for a
    /// second masking pass on everything the job sends.
    pub fn late_secrets(&self) -> Option<crate::mask::LateSecrets> {
        self.deploy.as_ref().map(|d| d.late_secrets())
    }

    /// Stop the gateway, then delete the rules and the network.
    pub async fn teardown(mut self) -> Result<(), NetError> {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        match self.net.take() {
            Some(n) => n.remove().await,
            None => Ok(()),
        }
    }
}

/// Connects the agent's own container `me` to the job network and returns
/// its address there.
pub(super) async fn join_network(
    docker: &Docker,
    net: &PrivateNetwork,
    me: &str,
) -> Result<IpAddr, NetError> {
    use bollard::models::NetworkConnectRequest;
    use bollard::query_parameters::InspectContainerOptions;
    let err = |action: &'static str| {
        let job = net.job_id.clone();
        move |source| NetError::Docker {
            job,
            action,
            source,
        }
    };
    docker
        .connect_network(
            &net.id,
            NetworkConnectRequest {
                container: me.to_string(),
                ..Default::default()
            },
        )
        .await
        .map_err(err("network connect (agent container)"))?;
    let inspect = docker
        .inspect_container(me, None::<InspectContainerOptions>)
        .await
        .map_err(err("inspect (agent container)"))?;
    inspect
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&net.name))
        .and_then(|e| e.ip_address)
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .map(IpAddr::V4)
        .ok_or_else(|| NetError::NoGateway {
            job: net.job_id.clone(),
        })
}
