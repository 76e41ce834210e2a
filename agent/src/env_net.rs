//! One Docker bridge network per environment, and the host firewall rules
//! that keep it away from the host and from link-local metadata services.
//!
//! An environment's infra container (which owns the pod's network
//! namespace) and its dedicated-pod containers join `cove-<env>--net`, a
//! plain bridge network with a route out (masquerading on: a development
//! environment needs the internet and package registries). What it must
//! not reach is enforced like this (docs/security.md "What an environment
//! can reach"):
//!
//! - **Other environments, jobs, the default bridge**: Docker's isolation
//!   between bridge networks (`DOCKER-ISOLATION-STAGE-*` in FORWARD). Each
//!   environment has its own network, so no rule of ours is needed.
//! - **The host** (the network's gateway address, docker0, every other host
//!   address): traffic to a host address goes through INPUT, which Docker's
//!   isolation never sees. One rule per environment:
//!   `-I INPUT -i br-<id12> -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP`.
//!   Replies to connections the host opened (the engine's port proxy serving
//!   the published endpoints) are ESTABLISHED and pass.
//! - **Metadata services off the host** (`169.254.0.0/16` by default, more
//!   with [`EnvNetSettings::blocked`]): `-I DOCKER-USER -i br-<id12> -d <cidr> -j DROP`,
//!   the chain Docker keeps for users' FORWARD rules.
//!
//! Every rule carries the comment `cove.env=<id>`; [`ensure`] is idempotent
//! (it runs on create, start and recreate, so rules lost to a host reboot
//! come back), [`remove`] deletes rules and network, [`cleanup_orphans`]
//! finds what a killed agent left behind.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use bollard::errors::Error as DockerError;
use bollard::models::NetworkCreateRequest;
use bollard::query_parameters::{
    InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
};
use bollard::Docker;
use serde::{Deserialize, Serialize};

use crate::pod::{PodError, LABEL_ENV, LABEL_ROLE};
use crate::private_net::{parse_v4_cidr, Firewall, NetOptions};

/// `cove.role` of an environment's network.
pub const ROLE_NETWORK: &str = "network";
/// Blocked off-host destinations unless configured otherwise: link-local,
/// where cloud metadata services answer (169.254.169.254, ECS 169.254.170.2).
pub const DEFAULT_BLOCKED: &[&str] = &["169.254.0.0/16"];
/// The chain Docker keeps for users' FORWARD rules.
const FORWARD_CHAIN: &str = "DOCKER-USER";

/// How environments are networked (server config `[environments]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvNetSettings {
    /// Give every environment its own network with host isolation
    /// (default). `false` puts environments on the engine's default bridge,
    /// where they reach the host and each other.
    pub isolate: bool,
    /// Off-host destinations (IPv4 CIDRs) environments may not reach.
    pub blocked: Vec<String>,
}

impl Default for EnvNetSettings {
    fn default() -> Self {
        EnvNetSettings {
            isolate: true,
            blocked: DEFAULT_BLOCKED.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl EnvNetSettings {
    /// The blocked CIDRs in iptables' own notation (`a.b.c.d/n`, host bits
    /// cleared); an error names the first one that is not an IPv4 CIDR.
    pub fn blocked_cidrs(&self) -> Result<Vec<String>, String> {
        self.blocked
            .iter()
            .map(|c| {
                let text = if c.contains('/') {
                    c.clone()
                } else {
                    format!("{c}/32")
                };
                parse_v4_cidr(&text)
                    .map(|(a, n)| format!("{a}/{n}"))
                    .ok_or_else(|| format!("`{c}` is not an IPv4 address or CIDR"))
            })
            .collect()
    }
}

/// [`EnvNetSettings`] plus where iptables runs (the same choice as for
/// job networks: [`crate::job_sandbox::net_options`]).
#[derive(Clone, Debug, Default)]
pub struct EnvNetwork {
    pub settings: EnvNetSettings,
    pub net: NetOptions,
}

/// Docker name of an environment's network.
pub fn network_name(env: &str) -> String {
    format!("cove-{env}--net")
}

fn comment(env: &str) -> String {
    format!("{LABEL_ENV}={env}")
}

fn fw_err(env: &str, message: impl Into<String>) -> PodError {
    PodError::Network {
        env: env.to_string(),
        message: message.into(),
    }
}

fn docker_err<'a>(env: &'a str, action: &'static str) -> impl FnOnce(DockerError) -> PodError + 'a {
    move |source| PodError::Docker {
        env: env.to_string(),
        action: action.to_string(),
        source,
    }
}

/// A rule as iptables lists it: chain and the words after `-A <chain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    chain: String,
    spec: Vec<String>,
}

impl Rule {
    fn value_of(&self, flag: &str) -> Option<&str> {
        let at = self.spec.iter().position(|w| w == flag)?;
        self.spec.get(at + 1).map(String::as_str)
    }
}

/// Rules in `listing` (`iptables -S` output of one or more chains) whose
/// comment is `cove.env=<id>`: (env id, rule).
fn tagged_rules(listing: &str) -> Vec<(String, Rule)> {
    let prefix = format!("{LABEL_ENV}=");
    listing
        .lines()
        .filter_map(|line| {
            let words: Vec<String> = line
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_string())
                .collect();
            if words.len() < 3 || words[0] != "-A" {
                return None;
            }
            let at = words.iter().position(|w| w == "--comment")?;
            let env = words.get(at + 1)?.strip_prefix(&prefix)?.to_string();
            Some((
                env,
                Rule {
                    chain: words[1].clone(),
                    spec: words[2..].to_vec(),
                },
            ))
        })
        .collect()
}

/// The rules an environment on bridge `bridge` needs, without comments.
fn wanted_rules(bridge: &str, blocked: &[String]) -> Vec<Rule> {
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut rules = vec![Rule {
        chain: "INPUT".into(),
        spec: words(&[
            "-i",
            bridge,
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "DROP",
        ]),
    }];
    for cidr in blocked {
        rules.push(Rule {
            chain: FORWARD_CHAIN.into(),
            spec: words(&["-i", bridge, "-d", cidr, "-j", "DROP"]),
        });
    }
    rules
}

/// `spec` with `-m comment --comment <c>` before its `-j` target.
fn with_comment(spec: &[String], c: &str) -> Vec<String> {
    let mut spec = spec.to_vec();
    let jump = spec.len().saturating_sub(2);
    spec.splice(
        jump..jump,
        ["-m", "comment", "--comment", c].map(String::from),
    );
    spec
}

/// Lists the rules of both chains (`iptables -S`).
async fn list_rules(docker: &Docker, fw: &Firewall, env: &str) -> Result<String, PodError> {
    let batch = ["INPUT", FORWARD_CHAIN]
        .iter()
        .map(|c| vec!["-w".to_string(), "-S".into(), c.to_string()])
        .collect();
    let (out, failures) = fw.run(docker, batch, false).await;
    match failures.into_iter().next() {
        Some(f) => Err(fw_err(env, format!("cannot list firewall rules: {f}"))),
        None => Ok(out),
    }
}

/// The bridge device of a network.
fn bridge_of(inspect: &bollard::models::NetworkInspect) -> String {
    inspect
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .unwrap_or_else(|| {
            let id = inspect.id.as_deref().unwrap_or_default();
            format!("br-{}", &id[..id.len().min(12)])
        })
}

/// Make sure the environment's network and its rules exist; returns the
/// network name for `NetworkMode` (`None`: isolation is off, use the
/// default bridge). Idempotent: rules of an older network of the same
/// environment are replaced.
pub async fn ensure(
    docker: &Docker,
    env: &str,
    n: &EnvNetwork,
) -> Result<Option<String>, PodError> {
    if !n.settings.isolate {
        return Ok(None);
    }
    let blocked = n.settings.blocked_cidrs().map_err(|e| fw_err(env, e))?;
    let name = network_name(env);
    let inspect = match docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
        Ok(i) => i,
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            let labels = HashMap::from([
                (LABEL_ENV.to_string(), env.to_string()),
                (LABEL_ROLE.to_string(), ROLE_NETWORK.to_string()),
            ]);
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(labels),
                    ..Default::default()
                })
                .await
                .map_err(docker_err(env, "create network"))?;
            docker
                .inspect_network(&name, None::<InspectNetworkOptions>)
                .await
                .map_err(docker_err(env, "inspect network"))?
        }
        Err(e) => return Err(docker_err(env, "inspect network")(e)),
    };
    let bridge = bridge_of(&inspect);
    let wanted = wanted_rules(&bridge, &blocked);
    let listing = list_rules(docker, &n.net.firewall, env).await?;
    let have: Vec<Rule> = tagged_rules(&listing)
        .into_iter()
        .filter(|(e, _)| e == env)
        .map(|(_, r)| r)
        .collect();
    let matches = |w: &Rule| {
        have.iter().any(|h| {
            h.chain == w.chain
                && h.value_of("-i") == w.value_of("-i")
                && h.value_of("-d") == w.value_of("-d")
                && h.value_of("-j") == w.value_of("-j")
        })
    };
    if have.len() == wanted.len() && wanted.iter().all(matches) {
        return Ok(Some(name));
    }
    // Anything else (first start, a reboot lost them, another network or
    // other CIDRs): delete what is there and insert the whole set.
    let c = comment(env);
    let deletes: Vec<Vec<String>> = have
        .iter()
        .map(|r| {
            let mut args = vec!["-w".to_string(), "-D".into(), r.chain.clone()];
            args.extend(r.spec.iter().cloned());
            args
        })
        .collect();
    // a rule that is gone by the time it is deleted (another cleanup got there first) is
    // what the delete wanted: only the inserts must all go through
    if !deletes.is_empty() {
        let (_, failures) = n.net.firewall.run(docker, deletes, true).await;
        for f in failures {
            tracing::info!(env, failure = %f, "an old isolation rule was already gone");
        }
    }
    let mut batch: Vec<Vec<String>> = Vec::new();
    for r in &wanted {
        let mut args = vec!["-w".to_string(), "-I".into(), r.chain.clone()];
        args.extend(with_comment(&r.spec, &c));
        batch.push(args);
    }
    let (_, failures) = n.net.firewall.run(docker, batch, false).await;
    if let Some(f) = failures.into_iter().next() {
        return Err(fw_err(
            env,
            format!("cannot install the network isolation rules: {f}"),
        ));
    }
    tracing::info!(env, network = %name, bridge = %bridge, "environment network isolated");
    Ok(Some(name))
}

/// Delete the environment's rules and its network (containers must be gone).
/// Nothing to do is not an error.
pub async fn remove(docker: &Docker, env: &str, n: &EnvNetwork) -> Result<(), PodError> {
    let mut failures = Vec::new();
    // Rules are looked up even with isolation off: it may have been on before.
    match list_rules(docker, &n.net.firewall, env).await {
        Ok(listing) => {
            let failed = delete_rules(docker, &n.net.firewall, env, &listing).await;
            if !failed.is_empty() {
                // a delete of the same environment running beside this one may have removed
                // a rule first: what counts is that none of its rules is left
                match list_rules(docker, &n.net.firewall, env).await {
                    Ok(again) if !tagged_rules(&again).iter().any(|(e, _)| e == env) => {}
                    _ => failures.extend(failed),
                }
            }
        }
        Err(e) if n.settings.isolate => return Err(e),
        Err(_) => {}
    }
    match docker.remove_network(&network_name(env)).await {
        Ok(())
        | Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => return Err(docker_err(env, "remove network")(e)),
    }
    match failures.into_iter().next() {
        Some(f) => Err(fw_err(env, format!("cannot remove a firewall rule: {f}"))),
        None => Ok(()),
    }
}

async fn delete_rules(docker: &Docker, fw: &Firewall, env: &str, listing: &str) -> Vec<String> {
    let batch: Vec<Vec<String>> = tagged_rules(listing)
        .into_iter()
        .filter(|(e, _)| e == env)
        .map(|(_, r)| {
            let mut args = vec!["-w".to_string(), "-D".into(), r.chain];
            args.extend(r.spec);
            args
        })
        .collect();
    if batch.is_empty() {
        return Vec::new();
    }
    fw.run(docker, batch, true).await.1
}

/// At agent start (a killed agent runs no cleanup): removes every
/// environment network whose environment has no container left (unless it
/// was created in the last two minutes: another agent on this engine may be
/// creating that environment right now), and every `cove.env=<id>` rule
/// whose environment has no network here and whose bridge is gone from the host (another
/// engine's environments keep theirs). Returns the environments cleaned.
pub async fn cleanup_orphans(docker: &Docker, n: &EnvNetwork) -> Result<Vec<String>, PodError> {
    cleanup_orphans_where(docker, n, std::time::Duration::from_secs(120), |_| true).await
}

/// [`cleanup_orphans`] for networks at least `min_age` old and environments
/// `consider` accepts (tests limit it to their own).
pub async fn cleanup_orphans_where(
    docker: &Docker,
    n: &EnvNetwork,
    min_age: std::time::Duration,
    consider: impl Fn(&str) -> bool,
) -> Result<Vec<String>, PodError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_ROLE}={ROLE_NETWORK}")],
    )]);
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filters),
        }))
        .await
        .map_err(docker_err("*", "list networks"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut with_network = BTreeSet::new();
    let mut cleaned = BTreeSet::new();
    for net in networks {
        let Some(env) = net.labels.as_ref().and_then(|l| l.get(LABEL_ENV)).cloned() else {
            continue;
        };
        with_network.insert(env.clone());
        if !consider(&env) {
            continue;
        }
        let created = net
            .created
            .as_deref()
            .and_then(crate::job_sandbox::rfc3339_secs)
            .unwrap_or(now);
        if now.saturating_sub(created) < min_age.as_secs() || has_containers(docker, &env).await? {
            continue;
        }
        remove(docker, &env, n).await?;
        with_network.remove(&env);
        cleaned.insert(env);
    }
    // a rule whose environment has no network on this engine is stale only when its bridge
    // is gone from the host too: another engine on this host (a second agent, a test's
    // extra dockerd) has environments of its own, with their rules in the same tables
    let interfaces = n.net.firewall.host_interfaces(docker).await;
    let listing = match interfaces {
        Some(_) => list_rules(docker, &n.net.firewall, "*").await.ok(),
        None => {
            tracing::warn!("host interfaces not listed: stale environment rules are kept");
            None
        }
    };
    if let (Some(listing), Some(interfaces)) = (listing, interfaces) {
        let rules = tagged_rules(&listing);
        let live: BTreeSet<&str> = rules
            .iter()
            .filter(|(_, r)| r.value_of("-i").is_some_and(|i| interfaces.contains(i)))
            .map(|(e, _)| e.as_str())
            .collect();
        let stale: BTreeSet<String> = rules
            .iter()
            .map(|(e, _)| e)
            .filter(|e| !with_network.contains(*e) && !live.contains(e.as_str()) && consider(e))
            .cloned()
            .collect();
        for env in stale {
            for f in delete_rules(docker, &n.net.firewall, &env, &listing).await {
                tracing::warn!(env, failure = %f, "stale environment rule not removed");
            }
            cleaned.insert(env);
        }
    }
    for env in &cleaned {
        tracing::info!(env, "orphaned environment network cleaned up");
    }
    Ok(cleaned.into_iter().collect())
}

async fn has_containers(docker: &Docker, env: &str) -> Result<bool, PodError> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_ENV}={env}")])]);
    let list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(docker_err(env, "list containers"))?;
    Ok(!list.is_empty())
}

/// The host's address on an environment's network (its bridge address).
pub async fn host_address(docker: &Docker, env: &str) -> Result<Ipv4Addr, PodError> {
    crate::private_net::bridge_host_address(docker, &network_name(env))
        .await
        .map(|(a, _)| a)
        .map_err(docker_err(env, "inspect network"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_cidrs_are_normalised_and_checked() {
        let s = EnvNetSettings {
            isolate: true,
            blocked: vec!["169.254.169.254".into(), "10.1.2.3/8".into()],
        };
        assert_eq!(
            s.blocked_cidrs().unwrap(),
            vec!["169.254.169.254/32", "10.0.0.0/8"]
        );
        let bad = EnvNetSettings {
            isolate: true,
            blocked: vec!["metadata".into()],
        };
        assert!(bad.blocked_cidrs().unwrap_err().contains("`metadata`"));
    }

    #[test]
    fn rules_are_found_by_comment_in_both_chains() {
        let listing = "-P INPUT ACCEPT\n\
            -A INPUT -i br-0123456789ab -m conntrack ! --ctstate RELATED,ESTABLISHED -m comment --comment cove.env=e-1 -j DROP\n\
            -A INPUT -i br-0123456789ab -m comment --comment cove.job=j -j DROP\n\
            -N DOCKER-USER\n\
            -A DOCKER-USER -d 169.254.0.0/16 -i br-0123456789ab -m comment --comment \"cove.env=e-1\" -j DROP\n\
            -A DOCKER-USER -j RETURN\n";
        let rules = tagged_rules(listing);
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|(e, _)| e == "e-1"));
        assert_eq!(rules[1].1.chain, "DOCKER-USER");
        assert_eq!(rules[1].1.value_of("-d"), Some("169.254.0.0/16"));
        let wanted = wanted_rules("br-0123456789ab", &["169.254.0.0/16".into()]);
        assert_eq!(wanted.len(), 2);
        assert_eq!(
            with_comment(&wanted[1].spec, "cove.env=e-1").join(" "),
            "-i br-0123456789ab -d 169.254.0.0/16 -m comment --comment cove.env=e-1 -j DROP"
        );
    }
}
