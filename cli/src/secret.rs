//! `cove secret …`: repository secrets (values are write-only).

use std::io::Read;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{SecretInfo, SetSecretRequest};

use crate::client::Client;
use crate::repo::Output;
use crate::run::repo_full_name;

/// Repository secrets, referenced in workflows as `${Secrets.NAME}`.
#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret. The value is read from standard input (a trailing newline
    /// is dropped) unless --value is given.
    Set {
        /// OWNER/NAME or NAME.
        repo: String,
        name: String,
        /// The value (visible in your shell history and process list; prefer stdin).
        #[arg(long)]
        value: Option<String>,
        /// Give the secret to runs of every branch. Without it, only runs of the repository's
        /// default branch get it; a run on another branch that uses it fails.
        #[arg(long)]
        all_branches: bool,
    },
    /// List secret names (never values).
    List {
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a secret.
    Delete { repo: String, name: String },
}

pub fn run(args: SecretArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        SecretCommand::Set {
            repo,
            name,
            value,
            all_branches,
        } => {
            let full = repo_full_name(&client, &repo)?;
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::stdin().read_to_string(&mut v)?;
                    if v.ends_with('\n') {
                        v.pop();
                        if v.ends_with('\r') {
                            v.pop();
                        }
                    }
                    v
                }
            };
            if value.is_empty() {
                bail!("the secret value is empty");
            }
            let info: SecretInfo = client.put(
                &format!("/repos/{full}/secrets/{name}"),
                &SetSecretRequest {
                    value,
                    all_branches,
                },
            )?;
            println!(
                "secret {} set on {full} ({})",
                info.name,
                if info.all_branches {
                    "all branches"
                } else {
                    "default branch only"
                }
            );
        }
        SecretCommand::List { repo, output } => {
            let full = repo_full_name(&client, &repo)?;
            let list: Vec<SecretInfo> = client.get(&format!("/repos/{full}/secrets"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Output::Text => {
                    for s in list {
                        if s.all_branches {
                            println!("{}\tall branches", s.name);
                        } else {
                            println!("{}\tdefault branch only", s.name);
                        }
                    }
                }
            }
        }
        SecretCommand::Delete { repo, name } => {
            let full = repo_full_name(&client, &repo)?;
            client.delete(&format!("/repos/{full}/secrets/{name}"))?;
            println!("secret {name} deleted from {full}");
        }
    }
    Ok(())
}
