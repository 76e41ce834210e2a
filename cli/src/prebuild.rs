//! `cove prebuild list|logs|run` and `cove repo prebuilds show|set|off` (issue 19,
//! docs/prebuilds.md).

use anyhow::Result;
use clap::{Args, Subcommand};
use cove_api::{Prebuild, PrebuildLog, PrebuildSettings, TriggerPrebuild};

use crate::client::Client;
use crate::repo::{full_name, Output};

/// Prebuilds: environments of a branch's head prepared ahead of time.
#[derive(Debug, Args)]
pub struct PrebuildArgs {
    #[command(subcommand)]
    pub command: PrebuildCommand,
}

#[derive(Debug, Subcommand)]
pub enum PrebuildCommand {
    /// List a repository's prebuilds, newest first.
    List {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print a prebuild's log.
    Logs {
        /// NAME or OWNER/NAME.
        repo: String,
        /// The prebuild's id (`cove prebuild list`).
        id: i64,
    },
    /// Prebuild a branch's head now (writers).
    Run {
        /// NAME or OWNER/NAME.
        repo: String,
        /// Default: the repository's default branch.
        #[arg(long)]
        branch: Option<String>,
    },
}

/// Which branches prebuild (`cove repo prebuilds`).
#[derive(Debug, Args)]
pub struct SettingsArgs {
    #[command(subcommand)]
    pub command: SettingsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Show which branches prebuild.
    Show {
        /// NAME or OWNER/NAME.
        repo: String,
    },
    /// Turn prebuilds on for these branches (none: the default branch) (owners).
    Set {
        /// NAME or OWNER/NAME.
        repo: String,
        /// A branch that prebuilds (repeat for more).
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// Succeeded prebuilds kept per branch (1-20).
        #[arg(long, default_value_t = 3)]
        keep: u32,
        /// Environments of each branch's current prebuild kept running, ready to claim (0-5).
        #[arg(long, default_value_t = 0)]
        warm: u32,
    },
    /// Turn prebuilds off (owners).
    Off {
        /// NAME or OWNER/NAME.
        repo: String,
    },
}

fn settings_path(client: &Client, repo: &str) -> Result<String> {
    let (owner, name) = full_name(client, repo)?;
    Ok(format!("/repos/{owner}/{name}/prebuilds/settings"))
}

fn print_settings(s: &PrebuildSettings) {
    if !s.enabled {
        println!("prebuilds: off");
        return;
    }
    let branches = if s.branches.is_empty() {
        "the default branch".to_string()
    } else {
        s.branches.join(", ")
    };
    println!("prebuilds: {branches} (keeping {} each)", s.keep);
    if s.warm > 0 {
        println!("warm pool: {} ready environment(s) per branch", s.warm);
    }
}

pub fn run_settings(client: &Client, args: SettingsArgs) -> Result<()> {
    match args.command {
        SettingsCommand::Show { repo } => {
            let s: PrebuildSettings = client.get(&settings_path(client, &repo)?)?;
            print_settings(&s);
        }
        SettingsCommand::Set {
            repo,
            branches,
            keep,
            warm,
        } => {
            let body = PrebuildSettings {
                enabled: true,
                branches,
                keep,
                warm,
            };
            let s: PrebuildSettings = client.put(&settings_path(client, &repo)?, &body)?;
            print_settings(&s);
        }
        SettingsCommand::Off { repo } => {
            let path = settings_path(client, &repo)?;
            let mut s: PrebuildSettings = client.get(&path)?;
            s.enabled = false;
            let s: PrebuildSettings = client.put(&path, &s)?;
            print_settings(&s);
        }
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

pub fn run(args: PrebuildArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        PrebuildCommand::List { repo, output } => {
            let (owner, name) = full_name(&client, &repo)?;
            let list: Vec<Prebuild> = client.get(&format!("/repos/{owner}/{name}/prebuilds"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Output::Text => {
                    if list.is_empty() {
                        println!("no prebuilds");
                    }
                    for p in &list {
                        let pool = if p.pool_ready + p.pool_creating > 0 {
                            format!(
                                " (warm pool: {} ready, {} starting)",
                                p.pool_ready, p.pool_creating
                            )
                        } else {
                            String::new()
                        };
                        println!(
                            "{:<20} {:<24} {} {}{}{pool}",
                            p.id,
                            p.branch,
                            short(&p.sha),
                            p.state.as_str(),
                            p.reason
                                .as_deref()
                                .map(|r| format!(" — {r}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        PrebuildCommand::Logs { repo, id } => {
            let (owner, name) = full_name(&client, &repo)?;
            let log: PrebuildLog =
                client.get(&format!("/repos/{owner}/{name}/prebuilds/{id}/logs"))?;
            print!("{}", log.log);
            eprintln!("prebuild {id}: {}", log.state.as_str());
        }
        PrebuildCommand::Run { repo, branch } => {
            let (owner, name) = full_name(&client, &repo)?;
            let p: Prebuild = client.post(
                &format!("/repos/{owner}/{name}/prebuilds"),
                &TriggerPrebuild { branch },
            )?;
            println!(
                "prebuild {} of {} at {} queued",
                p.id,
                p.branch,
                short(&p.sha)
            );
        }
    }
    Ok(())
}
