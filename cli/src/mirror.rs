//! `cove repo mirror set|show|sync|unset`: make a repository a mirror of an upstream on
//! GitHub, GitLab or Gitea/Forgejo (owners only). Secrets are read from environment
//! variables, never from the command line.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{Mirror, MirrorSync, SetMirror};

use crate::client::Client;
use crate::repo::{full_name, Output};

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(subcommand)]
    pub command: MirrorCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ForgeArg {
    Github,
    Gitlab,
    /// Gitea and Forgejo.
    Gitea,
}

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Make the repository a mirror of URL (or change it). A webhook secret Cove generates is
    /// printed once, with the webhook URL to give the upstream forge. Users can no longer
    /// push to the repository.
    Set {
        /// NAME or OWNER/NAME.
        repo: String,
        /// The upstream's http(s) clone URL (no user name or password in it).
        url: String,
        #[arg(long, value_enum)]
        forge: ForgeArg,
        /// Read the webhook secret from this environment variable (default: keep the
        /// current one, or generate one).
        #[arg(long, value_name = "VAR")]
        webhook_secret_env: Option<String>,
        /// Read a token to fetch a private upstream from this environment variable.
        #[arg(long, value_name = "VAR", conflicts_with = "no_token")]
        token_env: Option<String>,
        /// Remove the fetch token.
        #[arg(long)]
        no_token: bool,
        /// The HTTP Basic user name sent with the token (default per forge).
        #[arg(long)]
        username: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show the mirror configuration and the last fetch (never a secret).
    Show {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Fetch from the upstream now; prints the refs that moved.
    Sync {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Stop mirroring: the repository keeps its refs and takes pushes again.
    Unset {
        /// NAME or OWNER/NAME.
        repo: String,
    },
}

fn from_env(var: &str) -> Result<String> {
    let value =
        std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    if value.is_empty() {
        bail!("environment variable {var} is empty");
    }
    Ok(value)
}

fn print_mirror(m: &Mirror) {
    println!("upstream:     {} ({})", m.url, m.forge);
    println!("webhook URL:  {}", m.webhook_url);
    let token = if m.has_token {
        format!("yes (user {})", m.username)
    } else {
        "no".to_string()
    };
    println!("fetch token:  {token}");
    match (&m.last_sync_at_ms, &m.last_sync_result) {
        (Some(at), Some(result)) => println!("last fetch:   {result} (at {at} ms)"),
        _ => println!("last fetch:   never"),
    }
}

pub fn run(client: &Client, args: MirrorArgs) -> Result<()> {
    let base = |repo: &str| -> Result<String> {
        let (owner, name) = full_name(client, repo)?;
        Ok(format!("/repos/{owner}/{name}/mirror"))
    };
    match args.command {
        MirrorCommand::Set {
            repo,
            url,
            forge,
            webhook_secret_env,
            token_env,
            no_token,
            username,
            output,
        } => {
            let body = SetMirror {
                url,
                forge: match forge {
                    ForgeArg::Github => "github",
                    ForgeArg::Gitlab => "gitlab",
                    ForgeArg::Gitea => "gitea",
                }
                .to_string(),
                webhook_secret: webhook_secret_env.as_deref().map(from_env).transpose()?,
                token: if no_token {
                    Some(String::new())
                } else {
                    token_env.as_deref().map(from_env).transpose()?
                },
                username,
            };
            let m: Mirror = client.put(&base(&repo)?, &body)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&m)?),
                Output::Text => {
                    print_mirror(&m);
                    if let Some(secret) = &m.webhook_secret {
                        println!("webhook secret (shown once): {secret}");
                    }
                    println!("run `cove repo mirror sync {repo}` to fetch now");
                }
            }
        }
        MirrorCommand::Show { repo, output } => {
            let m: Mirror = client.get(&base(&repo)?)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&m)?),
                Output::Text => print_mirror(&m),
            }
        }
        MirrorCommand::Sync { repo, output } => {
            let moved: MirrorSync =
                client.post(&format!("{}/sync", base(&repo)?), &serde_json::json!({}))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&moved)?),
                Output::Text if moved.updated.is_empty() => println!("up to date"),
                Output::Text => {
                    for u in &moved.updated {
                        println!(
                            "{} {} -> {}",
                            u.ref_name,
                            short(&u.old_sha),
                            short(&u.new_sha)
                        );
                    }
                }
            }
        }
        MirrorCommand::Unset { repo } => {
            client.delete(&base(&repo)?)?;
            println!("{repo} is no longer a mirror");
        }
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
