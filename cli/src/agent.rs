//! `cove agent …`: registration tokens and registered agents (administrators).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{AgentInfo, CreateRegistrationTokenRequest, RegistrationToken};

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
    },
    /// List registered agents.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Revoke an agent's token; its running jobs are handled like a lost agent's.
    Revoke { id: i64 },
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
        AgentCommand::RegistrationToken { ttl } => {
            let created: RegistrationToken = client.post(
                "/agents/registration-tokens",
                &CreateRegistrationTokenRequest {
                    ttl_secs: Some(ttl),
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
                        "{:<20} {:<24} {:<10} {:<12} {:<8} JOBS",
                        "ID", "NAME", "CREATED", "LAST SEEN", "STATE"
                    );
                    for a in agents {
                        let jobs: Vec<String> = a.current_jobs.iter().map(i64::to_string).collect();
                        println!(
                            "{:<20} {:<24} {:<10} {:<12} {:<8} {}",
                            a.id,
                            a.name,
                            ago(a.created_at),
                            a.last_seen_at.map_or_else(|| "never".into(), ago),
                            if a.revoked { "revoked" } else { "active" },
                            if jobs.is_empty() {
                                "-".to_string()
                            } else {
                                jobs.join(",")
                            }
                        );
                    }
                }
            }
        }
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
