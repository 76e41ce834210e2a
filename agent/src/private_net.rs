//! One private network per job: an `--internal` Docker bridge network with
//! no route out, plus host firewall rules, because on engine 20.10 an
//! internal network still lets containers reach the *host* through the
//! network's gateway address and the docker0 address (traffic to host
//! addresses goes through INPUT, not FORWARD; see `docs/private-subnet.md`).
//!
//! Rules, in INPUT, for the network's bridge `br-<first 12 of the id>`:
//!
//! ```text
//! -I INPUT -i br-XXXX -d <gateway ip> -p tcp --dport <gateway port> -j ACCEPT   (only with a gateway)
//! -I INPUT -i br-XXXX -j DROP
//! ```
//!
//! so the only host socket a build can reach is the job's endpoint gateway,
//! which listens on the bridge's own address. Every rule carries the comment
//! `cove.job=<id>`. [`PrivateNetwork::remove`] deletes the rules and the
//! network; dropping an un-removed [`PrivateNetwork`] does the same on a
//! helper thread (a guard for panics and early returns).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bollard::errors::Error as DockerError;
use bollard::models::{NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::InspectNetworkOptions;
use bollard::Docker;

/// Label with the job id on every private network.
pub const LABEL_JOB: &str = "cove.job";
/// Same key as [`crate::pod::LABEL_ROLE`]; value [`ROLE_PRIVATE_NET`].
pub const LABEL_ROLE: &str = "cove.role";
pub const ROLE_PRIVATE_NET: &str = "private-net";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "job id `{0}` is not valid for a network name (letters, digits, '.', '_', '-'; at most 48)"
    )]
    BadJobId(String),
    #[error("docker {action} for the private network of job `{job}` failed: {source}")]
    Docker {
        job: String,
        action: &'static str,
        #[source]
        source: DockerError,
    },
    #[error("private network of job `{job}` has no IPv4 gateway address")]
    NoGateway { job: String },
    #[error("`{command}` failed for job `{job}`: {message}")]
    Firewall {
        job: String,
        command: String,
        message: String,
    },
}

/// How rules are installed.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// The iptables binary (its backend must be the one dockerd uses).
    pub iptables: String,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            iptables: "iptables".into(),
        }
    }
}

/// A job's private network and the firewall rules that isolate the host.
pub struct PrivateNetwork {
    docker: Docker,
    options: NetOptions,
    job_id: String,
    id: String,
    name: String,
    bridge: String,
    gateway_ip: Ipv4Addr,
    subnet: String,
    /// Installed INPUT rule specs, in insertion order.
    rules: Vec<Vec<String>>,
    removed: bool,
}

impl fmt::Debug for PrivateNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateNetwork")
            .field("job_id", &self.job_id)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("bridge", &self.bridge)
            .field("gateway_ip", &self.gateway_ip)
            .field("subnet", &self.subnet)
            .field("rules", &self.rules)
            .finish()
    }
}

fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 48
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn run_iptables(iptables: &str, args: &[String]) -> std::io::Result<std::process::Output> {
    std::process::Command::new(iptables).args(args).output()
}

impl PrivateNetwork {
    /// Network name for a job.
    pub fn name_for(job_id: &str) -> String {
        format!("cove-job-{job_id}")
    }

    /// Create the internal network `cove-job-<job_id>` and its DROP rule.
    pub async fn create(
        docker: &Docker,
        job_id: &str,
        options: NetOptions,
    ) -> Result<PrivateNetwork, NetError> {
        if !valid_job_id(job_id) {
            return Err(NetError::BadJobId(job_id.to_string()));
        }
        let err = |action: &'static str| {
            let job = job_id.to_string();
            move |source| NetError::Docker {
                job,
                action,
                source,
            }
        };
        let name = Self::name_for(job_id);
        let labels = HashMap::from([
            (LABEL_JOB.to_string(), job_id.to_string()),
            (LABEL_ROLE.to_string(), ROLE_PRIVATE_NET.to_string()),
        ]);
        let created = docker
            .create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(true),
                labels: Some(labels),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.enable_ip_masquerade".to_string(),
                    "false".to_string(),
                )])),
                ..Default::default()
            })
            .await
            .map_err(err("network create"))?;
        let id = created.id;
        // From here on the guard owns the network: any error removes it.
        let mut net = PrivateNetwork {
            docker: docker.clone(),
            options,
            job_id: job_id.to_string(),
            bridge: format!("br-{}", &id[..id.len().min(12)]),
            id,
            name,
            gateway_ip: Ipv4Addr::UNSPECIFIED,
            subnet: String::new(),
            rules: Vec::new(),
            removed: false,
        };
        let inspect = docker
            .inspect_network(&net.id, None::<InspectNetworkOptions>)
            .await
            .map_err(err("network inspect"))?;
        let ipam = inspect
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| {
                let gw: Ipv4Addr = c.gateway?.parse().ok()?;
                Some((gw, c.subnet.unwrap_or_default()))
            });
        let Some((gateway_ip, subnet)) = ipam else {
            return Err(NetError::NoGateway {
                job: job_id.to_string(),
            });
        };
        net.gateway_ip = gateway_ip;
        net.subnet = subnet;
        net.insert_rule(vec![
            "-i".into(),
            net.bridge.clone(),
            "-j".into(),
            "DROP".into(),
        ])
        .await?;
        tracing::info!(
            job = %net.job_id,
            network = %net.name,
            bridge = %net.bridge,
            gateway = %net.gateway_ip,
            subnet = %net.subnet,
            "private network created"
        );
        Ok(net)
    }

    async fn insert_rule(&mut self, mut spec: Vec<String>) -> Result<(), NetError> {
        let comment = format!("{LABEL_JOB}={}", self.job_id);
        let jump = spec.len().saturating_sub(2);
        spec.splice(
            jump..jump,
            ["-m", "comment", "--comment", comment.as_str()].map(String::from),
        );
        let mut args = vec!["-w".to_string(), "-I".into(), "INPUT".into()];
        args.extend(spec.iter().cloned());
        let iptables = self.options.iptables.clone();
        let command = format!("{iptables} {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || run_iptables(&iptables, &args))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| NetError::Firewall {
                job: self.job_id.clone(),
                command: command.clone(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(NetError::Firewall {
                job: self.job_id.clone(),
                command,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        self.rules.push(spec);
        Ok(())
    }

    /// Let the job's containers reach `port` on the bridge address (where
    /// the job's endpoint gateway listens). Nothing else on the host.
    pub async fn allow_gateway_port(&mut self, port: u16) -> Result<(), NetError> {
        self.insert_rule(vec![
            "-i".into(),
            self.bridge.clone(),
            "-d".into(),
            self.gateway_ip.to_string(),
            "-p".into(),
            "tcp".into(),
            "--dport".into(),
            port.to_string(),
            "-j".into(),
            "ACCEPT".into(),
        ])
        .await
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Docker network name (for `NetworkMode` of the job's containers).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Linux bridge device (`br-<12 hex>`).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The bridge's address on the host: where the job's gateway listens.
    pub fn gateway_ip(&self) -> IpAddr {
        IpAddr::V4(self.gateway_ip)
    }

    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// The INPUT rules installed for this network (without `-I INPUT`).
    pub fn rules(&self) -> &[Vec<String>] {
        &self.rules
    }

    fn delete_rules_blocking(iptables: &str, job: &str, rules: &[Vec<String>]) -> Vec<String> {
        let mut failures = Vec::new();
        for spec in rules.iter().rev() {
            let mut args = vec!["-w".to_string(), "-D".into(), "INPUT".into()];
            args.extend(spec.iter().cloned());
            match run_iptables(iptables, &args) {
                Ok(out) if out.status.success() => {}
                Ok(out) => failures.push(format!(
                    "{iptables} {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) => failures.push(format!("{iptables} {}: {e}", args.join(" "))),
            }
        }
        for f in &failures {
            tracing::warn!(job, failure = %f, "private network rule removal failed");
        }
        failures
    }

    async fn remove_network(docker: &Docker, job: &str, id: &str) -> Result<(), NetError> {
        let err = |action: &'static str| {
            let job = job.to_string();
            move |source| NetError::Docker {
                job,
                action,
                source,
            }
        };
        // Containers still attached (a crashed job) are disconnected first.
        match docker
            .inspect_network(id, None::<InspectNetworkOptions>)
            .await
        {
            Ok(inspect) => {
                for container in inspect.containers.unwrap_or_default().into_keys() {
                    let _ = docker
                        .disconnect_network(
                            id,
                            NetworkDisconnectRequest {
                                container,
                                force: Some(true),
                            },
                        )
                        .await;
                }
            }
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(err("network inspect")(e)),
        }
        match docker.remove_network(id).await {
            Ok(()) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(err("network remove")(e)),
        }
    }

    /// Delete the rules, then the network. Idempotent with respect to a
    /// network someone else already removed.
    pub async fn remove(mut self) -> Result<(), NetError> {
        self.removed = true;
        let (iptables, job, rules) = (
            self.options.iptables.clone(),
            self.job_id.clone(),
            std::mem::take(&mut self.rules),
        );
        let failures = tokio::task::spawn_blocking(move || {
            Self::delete_rules_blocking(&iptables, &job, &rules)
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        Self::remove_network(&self.docker, &self.job_id, &self.id).await?;
        if let Some(first) = failures.into_iter().next() {
            return Err(NetError::Firewall {
                job: self.job_id.clone(),
                command: "iptables -D".into(),
                message: first,
            });
        }
        tracing::info!(job = %self.job_id, network = %self.name, "private network removed");
        Ok(())
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        tracing::warn!(job = %self.job_id, network = %self.name, "private network dropped without remove(); cleaning up");
        let (iptables, job, rules, id, docker) = (
            self.options.iptables.clone(),
            self.job_id.clone(),
            std::mem::take(&mut self.rules),
            self.id.clone(),
            self.docker.clone(),
        );
        // A fresh thread and runtime: Drop may run inside (or after) the
        // caller's runtime, where blocking on a future is not allowed.
        let done = std::thread::spawn(move || {
            Self::delete_rules_blocking(&iptables, &job, &rules);
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    // bollard's connection pool belongs to the caller's
                    // runtime; reconnect with the same settings.
                    let docker = Docker::connect_with_local_defaults().unwrap_or(docker);
                    if let Err(error) = rt.block_on(Self::remove_network(&docker, &job, &id)) {
                        tracing::warn!(job, %error, "private network removal failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(job, %error, "no runtime to remove the private network")
                }
            }
        });
        let _ = done.join();
    }
}
