//! One private network per job: an `--internal` Docker bridge network with
//! no route out, plus host firewall rules, because on engine 20.10 an
//! internal network still lets containers reach the *host* through the
//! network's gateway address and the docker0 address (traffic to host
//! addresses goes through INPUT, not FORWARD; see `docs/private-subnet.md`).
//!
//! Rules, in INPUT, for the network's bridge `br-<first 12 of the id>`:
//!
//! ```text
//! -A INPUT -i br-XXXX -d <gateway ip> -p tcp --dport <port> -j ACCEPT   ┐
//! -A INPUT -i lo      -d <gateway ip> -p tcp --dport <port> -j ACCEPT   │ only with a gateway
//! -A INPUT            -d <gateway ip> -p tcp --dport <port> -j DROP     ┘ (nobody else)
//! -A INPUT -i br-XXXX -j DROP
//! ```
//! (all inserted at the top of INPUT, in that final order)
//!
//! so the only host socket a build can reach is the job's endpoint gateway,
//! which listens on the bridge's own address. Every rule carries the comment
//! `cove.job=<id>`. [`PrivateNetwork::remove`] deletes the rules and the
//! network; dropping an un-removed [`PrivateNetwork`] does the same on a
//! helper thread (a guard for panics and early returns), and
//! [`cleanup_orphans`] finds what a killed agent left by label and comment.
//!
//! [`JobSandbox`] is the one call for the job runner: network, gateway on
//! the bridge address, credentials from the broker and what the build
//! container gets ([`crate::broker::BuildInjection`]).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bollard::errors::Error as DockerError;
use bollard::models::{NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use bollard::Docker;
use serde::{Deserialize, Serialize};

mod firewall;
mod sandbox;

pub use firewall::*;
pub use sandbox::*;

/// Label with the job id on every private network.
pub const LABEL_JOB: &str = "cove.job";
/// Same key as [`crate::pod::LABEL_ROLE`]; value [`ROLE_PRIVATE_NET`].
pub const LABEL_ROLE: &str = "cove.role";
pub const ROLE_PRIVATE_NET: &str = "private-net";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "job id `{0}` is not valid for a network name (letters, digits, '.', '_', '-'; at most 64)"
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
    pub firewall: Firewall,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            firewall: Firewall::Local {
                iptables: "iptables".into(),
            },
        }
    }
}

/// Where a job's endpoint gateway listens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// `container` when the agent's container is named (`container`, or
    /// `COVE_AGENT_CONTAINER` in its environment), else `host`.
    #[default]
    Auto,
    /// The agent runs on the host: the gateway listens on the job bridge's
    /// own address, behind one INPUT exception.
    Host,
    /// The agent runs in a container: it joins each job network itself and
    /// the gateway listens on its address there; host firewall rules are
    /// applied by a short-lived helper container in the host's network
    /// namespace.
    Container,
}

/// The agent configuration's `sandbox:` section: how jobs are isolated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Run every job on its own private network (default). `false` puts
    /// builds on the engine's default bridge, with a route out.
    pub private_network: bool,
    /// Destinations the gateway's forward proxy lets builds reach
    /// (`host:port`, `*.suffix:port`, `host:*`): STS, the Cove server, ….
    pub egress_allow: Vec<String>,
    pub placement: Placement,
    /// The iptables binary (its backend must be the one dockerd uses).
    pub iptables: String,
    /// Image with iptables for the helper container (container placement).
    pub firewall_image: String,
    /// STS endpoint for the broker (a VPC endpoint); overrides the
    /// repository's configuration.
    pub sts_endpoint: Option<String>,
    /// CodeArtifact API endpoint for the broker (a VPC endpoint).
    pub codeartifact_endpoint: Option<String>,
    /// Container placement: the agent's own container (id or name);
    /// default: `COVE_AGENT_CONTAINER`, else `$HOSTNAME` (Docker sets it to
    /// the short container id).
    pub container: Option<String>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            private_network: true,
            egress_allow: Vec::new(),
            placement: Placement::Auto,
            iptables: "iptables".into(),
            firewall_image: "cove/agent:latest".into(),
            sts_endpoint: None,
            codeartifact_endpoint: None,
            container: None,
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
    /// Installed `nat PREROUTING` rule specs (the deploy credentials address), in order.
    nat_rules: Vec<Vec<String>>,
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
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The host's IPv4 address on a Docker bridge network (where a listener on
/// the host is reachable from the network's containers), found the way the
/// engine itself does: the IPAM gateway when the engine reports it; else the
/// address of the network's bridge interface on this host (the
/// `com.docker.network.bridge.name` option, `docker0` for the default
/// bridge, `br-<first 12 of the id>` for user networks) — Debian's engine
/// 20.10 reports only the subnet for the default bridge; else, for an agent
/// that cannot see the host's interfaces (it runs in a container), the
/// first host address of the subnet, which is where the engine puts the
/// bridge unless told otherwise. Returns the address and the subnet.
pub async fn bridge_host_address(
    docker: &Docker,
    network: &str,
) -> Result<(Ipv4Addr, String), DockerError> {
    let inspect = docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await?;
    Ok(host_address_of(&inspect, &host_ipv4_addresses())
        .unwrap_or((Ipv4Addr::UNSPECIFIED, String::new())))
}

/// This host's IPv4 interface addresses (name, address); empty when they
/// cannot be read.
pub(crate) fn host_ipv4_addresses() -> Vec<(String, Ipv4Addr)> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some((i.name, v4)),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// [`bridge_host_address`] on an inspected network, with the host's
/// interfaces given (pure, for tests).
pub(crate) fn host_address_of(
    inspect: &bollard::models::NetworkInspect,
    interfaces: &[(String, Ipv4Addr)],
) -> Option<(Ipv4Addr, String)> {
    let configs = inspect
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    // IPv4 subnets only (a dual-stack network lists its IPv6 range too).
    type V4Config = (Option<Ipv4Addr>, String, Option<(Ipv4Addr, u8)>);
    let v4: Vec<V4Config> = configs
        .into_iter()
        .filter_map(|c| {
            let subnet = c.subnet.unwrap_or_default();
            let parsed = parse_v4_cidr(&subnet);
            let gateway = c.gateway.and_then(|g| g.parse::<Ipv4Addr>().ok());
            (parsed.is_some() || gateway.is_some()).then_some((gateway, subnet, parsed))
        })
        .collect();
    if let Some((Some(gw), subnet, _)) = v4.iter().find(|(gw, _, _)| gw.is_some()) {
        return Some((*gw, subnet.clone()));
    }
    let (_, subnet, cidr) = v4.into_iter().find(|(_, _, c)| c.is_some())?;
    let (base, prefix) = cidr?;
    let bridge = inspect
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .or_else(|| {
            inspect
                .id
                .as_deref()
                .map(|id| format!("br-{}", &id[..id.len().min(12)]))
        });
    let in_subnet =
        |a: &Ipv4Addr| prefix == 0 || (u32::from(*a) ^ u32::from(base)) >> (32 - prefix) == 0;
    if let Some(name) = bridge {
        if let Some((_, addr)) = interfaces.iter().find(|(n, a)| *n == name && in_subnet(a)) {
            return Some((*addr, subnet));
        }
    }
    // Not visible from here: the engine's default is the subnet's first host.
    (prefix < 31).then(|| (Ipv4Addr::from(u32::from(base) + 1), subnet))
}

/// `a.b.c.d/n` with the host bits cleared.
pub(crate) fn parse_v4_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((Ipv4Addr::from(u32::from(addr) & mask), len))
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
            nat_rules: Vec::new(),
            removed: false,
        };
        let inspect = docker
            .inspect_network(&net.id, None::<InspectNetworkOptions>)
            .await
            .map_err(err("network inspect"))?;
        let Some((gateway_ip, subnet)) = host_address_of(&inspect, &host_ipv4_addresses()) else {
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
        self.run_insert(args).await?;
        self.rules.push(spec);
        Ok(())
    }

    /// Runs one rule-inserting firewall command; its failure names the command.
    async fn run_insert(&self, args: Vec<String>) -> Result<(), NetError> {
        let (_, failures) = self
            .options
            .firewall
            .run(&self.docker, vec![args.clone()], false)
            .await;
        match failures.into_iter().next() {
            Some(message) => Err(NetError::Firewall {
                job: self.job_id.clone(),
                command: format!("{} {}", self.options.firewall.binary(), args.join(" ")),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Let the job's containers reach `port` on the bridge address (where
    /// the job's endpoint gateway listens). Nothing else on the host; and
    /// nobody else reaches that port (other jobs, environments, containers on docker0,
    /// other hosts routing to the bridge address) except the host itself.
    pub async fn allow_gateway_port(&mut self, port: u16) -> Result<(), NetError> {
        let dest = |iface: Option<&str>, target: &str| {
            let mut spec: Vec<String> = Vec::new();
            if let Some(i) = iface {
                spec.extend(["-i".to_string(), i.to_string()]);
            }
            spec.extend(
                [
                    "-d",
                    &self.gateway_ip.to_string(),
                    "-p",
                    "tcp",
                    "--dport",
                    &port.to_string(),
                    "-j",
                    target,
                ]
                .map(String::from),
            );
            spec
        };
        // Inserted at the top one after the other, so they end up in
        // reverse: bridge ACCEPT, loopback ACCEPT, DROP for everyone else.
        let (drop, lo, bridge) = (
            dest(None, "DROP"),
            dest(Some("lo"), "ACCEPT"),
            dest(Some(&self.bridge), "ACCEPT"),
        );
        self.insert_rule(drop).await?;
        self.insert_rule(lo).await?;
        self.insert_rule(bridge).await
    }

    /// Redirect the job's TCP connections to `from`:`from_port` (an address the job does not
    /// otherwise reach, e.g. 169.254.170.2:80 of the container-credentials protocol) to `to`,
    /// the job's gateway: `-t nat -I PREROUTING -i br-<id12> -d FROM -p tcp --dport PORT -j DNAT
    /// --to-destination TO`, only for this job's bridge. The gateway's INPUT rules then admit it.
    pub async fn redirect(
        &mut self,
        from: Ipv4Addr,
        from_port: u16,
        to: std::net::SocketAddr,
    ) -> Result<(), NetError> {
        let comment = format!("{LABEL_JOB}={}", self.job_id);
        let spec: Vec<String> = [
            "-i",
            &self.bridge,
            "-d",
            &from.to_string(),
            "-p",
            "tcp",
            "--dport",
            &from_port.to_string(),
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            "DNAT",
            "--to-destination",
            &to.to_string(),
        ]
        .map(String::from)
        .to_vec();
        let mut args: Vec<String> = ["-w", "-t", "nat", "-I", "PREROUTING"]
            .map(String::from)
            .to_vec();
        args.extend(spec.iter().cloned());
        self.run_insert(args).await?;
        self.nat_rules.push(spec);
        Ok(())
    }

    async fn delete_nat_rules(
        docker: &Docker,
        firewall: &Firewall,
        job: &str,
        rules: &[Vec<String>],
    ) -> Vec<String> {
        let batch = rules
            .iter()
            .rev()
            .map(|spec| {
                let mut args: Vec<String> = ["-w", "-t", "nat", "-D", "PREROUTING"]
                    .map(String::from)
                    .to_vec();
                args.extend(spec.iter().cloned());
                args
            })
            .collect::<Vec<_>>();
        if batch.is_empty() {
            return Vec::new();
        }
        let (_, failures) = firewall.run(docker, batch, true).await;
        for f in &failures {
            tracing::warn!(job, failure = %f, "private network nat rule removal failed");
        }
        failures
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

    async fn delete_rules(
        docker: &Docker,
        firewall: &Firewall,
        job: &str,
        rules: &[Vec<String>],
    ) -> Vec<String> {
        let batch = rules
            .iter()
            .rev()
            .map(|spec| {
                let mut args = vec!["-w".to_string(), "-D".into(), "INPUT".into()];
                args.extend(spec.iter().cloned());
                args
            })
            .collect::<Vec<_>>();
        if batch.is_empty() {
            return Vec::new();
        }
        let (_, failures) = firewall.run(docker, batch, true).await;
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
        let rules = std::mem::take(&mut self.rules);
        let nat_rules = std::mem::take(&mut self.nat_rules);
        let mut failures = Self::delete_nat_rules(
            &self.docker,
            &self.options.firewall,
            &self.job_id,
            &nat_rules,
        )
        .await;
        failures.extend(
            Self::delete_rules(&self.docker, &self.options.firewall, &self.job_id, &rules).await,
        );
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
        let (firewall, job, rules, id, docker) = (
            self.options.firewall.clone(),
            self.job_id.clone(),
            std::mem::take(&mut self.rules),
            self.id.clone(),
            self.docker.clone(),
        );
        let nat_rules = std::mem::take(&mut self.nat_rules);
        // A fresh thread and runtime: Drop may run inside (or after) the
        // caller's runtime, where blocking on a future is not allowed.
        let done = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    // bollard's connection pool belongs to the caller's
                    // runtime; reconnect with the same settings.
                    let docker = Docker::connect_with_local_defaults().unwrap_or(docker);
                    rt.block_on(async {
                        Self::delete_nat_rules(&docker, &firewall, &job, &nat_rules).await;
                        Self::delete_rules(&docker, &firewall, &job, &rules).await;
                        if let Err(error) = Self::remove_network(&docker, &job, &id).await {
                            tracing::warn!(job, %error, "private network removal failed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(job, %error, "no runtime to remove the private network")
                }
            }
        });
        let _ = done.join();
    }
}

/// INPUT rules carrying `--comment cove.job=<id>`: (job id, rule spec
/// without `-A INPUT`), parsed from `iptables -S INPUT`.
fn tagged_rules(listing: &str) -> Vec<(String, Vec<String>)> {
    tagged_rules_in(listing, "INPUT")
}

fn tagged_rules_in(listing: &str, chain: &str) -> Vec<(String, Vec<String>)> {
    let prefix = format!("{LABEL_JOB}=");
    listing
        .lines()
        .filter_map(|line| {
            let words: Vec<String> = line
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_string())
                .collect();
            if words.len() < 3 || words[0] != "-A" || words[1] != chain {
                return None;
            }
            let at = words.iter().position(|w| w == "--comment")?;
            let job = words.get(at + 1)?.strip_prefix(&prefix)?.to_string();
            Some((job, words[2..].to_vec()))
        })
        .collect()
}

/// Reconcile after a crash (a killed agent runs no `Drop`): remove every
/// `cove.role=private-net` network and every `cove.job=<id>` INPUT rule whose
/// job `is_live` says is not running any more. Returns the job ids cleaned.
pub async fn cleanup_orphans(
    docker: &Docker,
    options: &NetOptions,
    is_live: impl Fn(&str) -> bool,
) -> Result<Vec<String>, NetError> {
    let mut cleaned = std::collections::BTreeSet::new();
    let (listing, failures) = options
        .firewall
        .run(
            docker,
            vec![vec!["-w".into(), "-S".into(), "INPUT".into()]],
            false,
        )
        .await;
    if let Some(message) = failures.into_iter().next() {
        return Err(NetError::Firewall {
            job: "*".into(),
            command: format!("{} -S INPUT", options.firewall.binary()),
            message,
        });
    }
    let orphans: Vec<(String, Vec<String>)> = tagged_rules(&listing)
        .into_iter()
        .filter(|(job, _)| !is_live(job))
        .collect();
    for (job, spec) in orphans {
        PrivateNetwork::delete_rules(docker, &options.firewall, &job, &[spec]).await;
        cleaned.insert(job);
    }
    // Deploy credentials redirects (`redirect`); a listing failure is not fatal here.
    let (nat, _) = options
        .firewall
        .run(
            docker,
            vec![["-w", "-t", "nat", "-S", "PREROUTING"]
                .map(String::from)
                .to_vec()],
            false,
        )
        .await;
    for (job, spec) in tagged_rules_in(&nat, "PREROUTING")
        .into_iter()
        .filter(|(job, _)| !is_live(job))
    {
        PrivateNetwork::delete_nat_rules(docker, &options.firewall, &job, &[spec]).await;
        cleaned.insert(job);
    }
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_ROLE}={ROLE_PRIVATE_NET}")],
    )]);
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(|source| NetError::Docker {
            job: "*".into(),
            action: "network list",
            source,
        })?;
    for n in networks {
        let (Some(id), Some(job)) = (n.id, n.labels.and_then(|mut l| l.remove(LABEL_JOB))) else {
            continue;
        };
        if is_live(&job) {
            continue;
        }
        PrivateNetwork::remove_network(docker, &job, &id).await?;
        cleaned.insert(job);
    }
    for job in &cleaned {
        tracing::info!(job, "orphaned private network cleaned up");
    }
    Ok(cleaned.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(
        config: serde_json::Value,
        options: serde_json::Value,
    ) -> bollard::models::NetworkInspect {
        serde_json::from_value(serde_json::json!({
            "Id": "131d749d4f31ee0e2c38322f9c14a80eedb622cb7b168d4f99eb091aa9410097",
            "IPAM": { "Config": config },
            "Options": options,
        }))
        .unwrap()
    }

    #[test]
    fn bridge_address_from_ipam_gateway_interface_or_subnet() {
        let ifaces = vec![
            ("lo".to_string(), Ipv4Addr::LOCALHOST),
            ("docker0".to_string(), Ipv4Addr::new(172, 17, 0, 1)),
            ("br-131d749d4f31".to_string(), Ipv4Addr::new(10, 9, 0, 254)),
        ];
        // Reported gateway wins.
        let n = network(
            serde_json::json!([{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]),
            serde_json::json!({}),
        );
        assert_eq!(
            host_address_of(&n, &ifaces),
            Some((Ipv4Addr::new(172, 18, 0, 1), "172.18.0.0/16".into()))
        );
        // Debian's engine 20.10: the default bridge reports only its subnet.
        let n = network(
            serde_json::json!([{"Subnet": "172.17.0.0/16"}]),
            serde_json::json!({"com.docker.network.bridge.name": "docker0"}),
        );
        assert_eq!(
            host_address_of(&n, &ifaces).unwrap().0,
            Ipv4Addr::new(172, 17, 0, 1)
        );
        // A user network without a name option: br-<id>, address in the subnet.
        let n = network(
            serde_json::json!([{"Subnet": "10.9.0.0/24"}]),
            serde_json::json!({}),
        );
        assert_eq!(
            host_address_of(&n, &ifaces).unwrap().0,
            Ipv4Addr::new(10, 9, 0, 254)
        );
        // Interface invisible (agent in a container): the subnet's first host;
        // an IPv6 range listed first is skipped.
        let n = network(
            serde_json::json!([{"Subnet": "fd00::/64"}, {"Subnet": "192.168.5.0/24"}]),
            serde_json::json!({"com.docker.network.bridge.name": "docker0"}),
        );
        assert_eq!(
            host_address_of(&n, &[]),
            Some((Ipv4Addr::new(192, 168, 5, 1), "192.168.5.0/24".into()))
        );
        assert_eq!(
            host_address_of(&network(serde_json::json!([]), serde_json::json!({})), &[]),
            None
        );
    }

    #[test]
    fn tagged_rules_are_found_in_iptables_listings() {
        let listing = "-P INPUT ACCEPT\n\
            -A INPUT -i br-0123456789ab -d 172.22.0.1/32 -p tcp -m tcp --dport 4000 -m comment --comment cove.job=j-1 -j ACCEPT\n\
            -A INPUT -i br-0123456789ab -m comment --comment \"cove.job=j-1\" -j DROP\n\
            -A INPUT -i eth0 -m comment --comment other -j ACCEPT\n";
        let rules = tagged_rules(listing);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].0, "j-1");
        assert_eq!(
            rules[1].1.join(" "),
            "-i br-0123456789ab -m comment --comment cove.job=j-1 -j DROP"
        );
    }

    #[test]
    fn deploy_redirects_are_found_in_nat_listings() {
        let listing = "-P PREROUTING ACCEPT\n\
            -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
            -A PREROUTING -d 169.254.170.2/32 -i br-0123456789ab -p tcp -m tcp --dport 80 -m comment --comment cove.job=j-2 -j DNAT --to-destination 172.22.0.1:41000\n";
        let rules = tagged_rules_in(listing, "PREROUTING");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].0, "j-2");
        assert!(rules[0]
            .1
            .join(" ")
            .ends_with("-j DNAT --to-destination 172.22.0.1:41000"));
        assert!(tagged_rules(listing).is_empty(), "INPUT rules only");
    }

    #[test]
    fn job_ids() {
        assert!(valid_job_id("run-1.job_2"));
        assert!(!valid_job_id(""));
        assert!(!valid_job_id("a/b"));
        assert!(valid_job_id(&"x".repeat(64)));
        assert!(!valid_job_id(&"x".repeat(65)));
    }
}
