//! `cove agent …`: registration tokens, registered agents and agent pools (administrators).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{
    AgentInfo, AgentPool, CreateAgentPoolRequest, CreateRegistrationTokenRequest, RegistrationToken,
};

use crate::client::Client;
use crate::repo::Output;

/// Standalone agents: create registration tokens, list and revoke agents (administrators).
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create a one-time registration token for a new `cove-agent` and print it (once) on
    /// standard output.
    RegistrationToken {
        /// How long it stays valid: 90s, 30m, 1h (default), 2d; at most 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        /// The agent pool the new agent joins (it then serves only the pool's repositories).
        #[arg(long)]
        pool: Option<String>,
    },
    /// List agents: pool, labels, capacity, backend, last seen, and the jobs and
    /// environments they run.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke an agent's token; its running jobs are handled like a lost agent's.
    Revoke { id: i64 },
    /// Agent pools: agents that serve only some repositories (docs/agents.md).
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool. Its agents lease only jobs of these repositories and owners; a workflow
    /// action with `Compute.Fleet: NAME` runs only on its agents.
    Create {
        name: String,
        /// A repository the pool serves, OWNER/NAME (repeatable).
        #[arg(long = "repo")]
        repos: Vec<String>,
        /// An owner (user or organisation) all of whose repositories the pool serves
        /// (repeatable).
        #[arg(long = "owner")]
        owners: Vec<String>,
    },
    /// List pools with their repositories, owners and agents.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a pool (refused while it has agents or outstanding registration tokens).
    Delete { name: String },
}

/// `1.5 GiB`-style memory.
fn gib(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1}G", bytes as f64 / (1u64 << 30) as f64)
    }
}

/// `running/max jobs, N envs, C cpu, M mem`.
fn capacity_text(a: &AgentInfo) -> String {
    let c = &a.capacity;
    format!(
        "jobs {}/{} envs {}/{} cpu {} mem {}",
        c.running_jobs,
        c.max_jobs,
        c.running_environments,
        if c.max_environments == 0 {
            "-".to_string()
        } else {
            c.max_environments.to_string()
        },
        if c.cpus == 0 {
            "-".into()
        } else {
            c.cpus.to_string()
        },
        gib(c.memory_bytes)
    )
}

fn list_text(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

/// `90s`, `30m`, `1h`, `2d` or plain seconds → seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or d (e.g. 1h)"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("{text:?}: must be positive and at most 7d")),
        Some(secs) => Ok(secs),
    }
}

/// "12s ago", "3m ago", … for a Unix time in seconds.
fn ago(at: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let secs = (now - at).max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

pub fn run(args: AgentArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        AgentCommand::RegistrationToken { ttl, pool } => {
            let created: RegistrationToken = client.post(
                "/agents/registration-tokens",
                &CreateRegistrationTokenRequest {
                    ttl_secs: Some(ttl),
                    pool,
                },
            )?;
            println!("{}", created.token);
            eprintln!(
                "registration token for one agent, valid for {ttl}s; it is shown only once \
                 (start cove-agent with --registration-token-file or COVE_REGISTRATION_TOKEN)"
            );
        }
        AgentCommand::List { output } => {
            let agents: Vec<AgentInfo> = client.get("/agents")?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&agents)?),
                Output::Text => {
                    println!(
                        "{:<20} {:<20} {:<10} {:<12} {:<8} {:<8} {:<12} {:<40} {:<36} RUNNING",
                        "ID",
                        "NAME",
                        "CREATED",
                        "LAST SEEN",
                        "STATE",
                        "BACKEND",
                        "POOL",
                        "LABELS",
                        "CAPACITY"
                    );
                    for a in agents {
                        let labels: Vec<String> =
                            a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        let mut running: Vec<String> =
                            a.current_jobs.iter().map(|j| format!("job:{j}")).collect();
                        running.extend(a.current_environments.iter().map(|e| format!("env:{e}")));
                        println!(
                            "{:<20} {:<20} {:<10} {:<12} {:<8} {:<8} {:<12} {:<40} {:<36} {}",
                            if a.embedded {
                                "-".to_string()
                            } else {
                                a.id.to_string()
                            },
                            a.name,
                            if a.embedded {
                                "-".to_string()
                            } else {
                                ago(a.created_at)
                            },
                            a.last_seen_at.map_or_else(|| "never".into(), ago),
                            if a.revoked { "revoked" } else { "active" },
                            if a.backend.is_empty() {
                                "-"
                            } else {
                                a.backend.as_str()
                            },
                            a.pool.as_deref().unwrap_or("-"),
                            list_text(&labels),
                            capacity_text(&a),
                            list_text(&running)
                        );
                    }
                }
            }
        }
        AgentCommand::Pool { command } => pool(&client, command)?,
        AgentCommand::Revoke { id } => {
            if id <= 0 {
                bail!("agent ids are positive numbers (see `cove agent list`)");
            }
            client.delete(&format!("/agents/{id}"))?;
            println!("agent {id} revoked");
        }
    }
    Ok(())
}

fn pool(client: &Client, command: PoolCommand) -> Result<()> {
    match command {
        PoolCommand::Create {
            name,
            repos,
            owners,
        } => {
            if repos.is_empty() && owners.is_empty() {
                bail!("name what the pool serves: --repo OWNER/NAME and/or --owner NAME");
            }
            let created: AgentPool = client.post(
                "/agent-pools",
                &CreateAgentPoolRequest {
                    name,
                    repos,
                    owners,
                },
            )?;
            println!(
                "agent pool {} created (repositories: {}; owners: {}); register its agents with \
                 `cove agent registration-token --pool {}`",
                created.name,
                list_text(&created.repos),
                list_text(&created.owners),
                created.name
            );
        }
        PoolCommand::List { output } => {
            let pools: Vec<AgentPool> = client.get("/agent-pools")?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pools)?),
                Output::Text => {
                    println!(
                        "{:<16} {:<40} {:<20} AGENTS",
                        "NAME", "REPOSITORIES", "OWNERS"
                    );
                    for p in pools {
                        println!(
                            "{:<16} {:<40} {:<20} {}",
                            p.name,
                            list_text(&p.repos),
                            list_text(&p.owners),
                            list_text(&p.agents)
                        );
                    }
                }
            }
        }
        PoolCommand::Delete { name } => {
            client.delete(&format!("/agent-pools/{name}"))?;
            println!("agent pool {name} deleted");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_take_a_unit() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert_eq!(parse_ttl("120"), Ok(120));
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
