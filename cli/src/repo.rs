//! `cove repo create|list|show|delete|clone-url|retention`; `rules`, `packages`, `notify` and
//! `mirror` have their own modules.

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{CreateRepoRequest, Repo, User, Visibility};

use crate::client::Client;

/// Output format of list/show commands.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// Manage hosted git repositories.
#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository (default branch `main`).
    Create {
        /// NAME or OWNER/NAME.
        name: String,
        /// Anyone may clone it (default: private).
        #[arg(long)]
        public: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List the repositories you can read.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one repository.
    Show {
        /// NAME or OWNER/NAME.
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Delete a repository and all its history.
    Delete {
        /// OWNER/NAME.
        name: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Print the URL to `git clone`.
    CloneUrl {
        /// NAME or OWNER/NAME.
        name: String,
    },
    /// CodeArtifact access of the repository's builds.
    Packages(crate::packages::PackagesArgs),
    /// Branch rules (branch protection): list, set, delete.
    Rules(crate::rules::RulesArgs),
    /// Notification targets: Slack and signed webhooks (repository owners).
    Notify(crate::notify::NotifyArgs),
    /// Mirror an upstream on GitHub, GitLab or Gitea: set, show, sync, unset (owners).
    Mirror(crate::mirror::MirrorArgs),
    /// Which branches prebuild environments: show, set, off (owners set).
    Prebuilds(crate::prebuild::SettingsArgs),
    /// Show or set how long finished runs (with their logs and artifacts) are kept.
    Retention {
        /// NAME or OWNER/NAME.
        name: String,
        /// Delete finished runs older than this many days (0: no age limit).
        #[arg(long)]
        days: Option<u32>,
        /// Keep only the newest this many finished runs (0: no count limit).
        #[arg(long)]
        runs: Option<u32>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Splits `owner/name`; a bare `name` belongs to the logged-in user.
pub(crate) fn full_name(client: &Client, name: &str) -> Result<(String, String)> {
    match name.split_once('/') {
        Some((owner, repo)) if !owner.is_empty() && !repo.is_empty() && !repo.contains('/') => {
            Ok((owner.to_string(), repo.to_string()))
        }
        Some(_) => bail!("expected NAME or OWNER/NAME, got {name:?}"),
        None => {
            let me: User = client.get("/user")?;
            Ok((me.username, name.to_string()))
        }
    }
}

fn print_repo(repo: &Repo, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(repo)?),
        Output::Text => {
            println!("name:           {}", repo.full_name);
            println!("visibility:     {}", repo.visibility.as_str());
            println!("default branch: {}", repo.default_branch);
            println!("clone url:      {}", repo.clone_url);
        }
    }
    Ok(())
}

pub fn run(args: RepoArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        RepoCommand::Create {
            name,
            public,
            output,
        } => {
            let (owner, name) = match name.split_once('/') {
                Some((owner, name)) => (Some(owner.to_string()), name.to_string()),
                None => (None, name),
            };
            let request = CreateRepoRequest {
                name,
                owner,
                visibility: if public {
                    Visibility::Public
                } else {
                    Visibility::Private
                },
            };
            let repo: Repo = client.post("/repos", &request)?;
            print_repo(&repo, output)
        }
        RepoCommand::List { output } => {
            let repos: Vec<Repo> = client.get("/repos")?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&repos)?),
                Output::Text if repos.is_empty() => println!("no repositories"),
                Output::Text => {
                    let width = repos.iter().map(|r| r.full_name.len()).max().unwrap_or(4);
                    println!("{:width$}  {:10}  CLONE URL", "NAME", "VISIBILITY");
                    for r in &repos {
                        println!(
                            "{:width$}  {:10}  {}",
                            r.full_name,
                            r.visibility.as_str(),
                            r.clone_url
                        );
                    }
                }
            }
            Ok(())
        }
        RepoCommand::Show { name, output } => {
            let (owner, name) = full_name(&client, &name)?;
            let repo: Repo = client.get(&format!("/repos/{owner}/{name}"))?;
            print_repo(&repo, output)
        }
        RepoCommand::Delete { name, yes } => {
            let (owner, name) = full_name(&client, &name)?;
            if !yes {
                bail!("deleting {owner}/{name} destroys its history: re-run with --yes to confirm");
            }
            client.delete(&format!("/repos/{owner}/{name}"))?;
            println!("deleted {owner}/{name}");
            Ok(())
        }
        RepoCommand::Packages(args) => crate::packages::run(&client, args),
        RepoCommand::Rules(args) => crate::rules::run(&client, args),
        RepoCommand::Notify(args) => crate::notify::run(&client, args),
        RepoCommand::Mirror(args) => crate::mirror::run(&client, args),
        RepoCommand::Prebuilds(args) => crate::prebuild::run_settings(&client, args),
        RepoCommand::Retention {
            name,
            days,
            runs,
            output,
        } => {
            let (owner, name) = full_name(&client, &name)?;
            let path = format!("/repos/{owner}/{name}/retention");
            let mut current: serde_json::Value = client.get(&path)?;
            if days.is_some() || runs.is_some() {
                let pick = |new: Option<u32>, key: &str| {
                    new.map_or_else(|| current[key].clone(), serde_json::Value::from)
                };
                let body =
                    serde_json::json!({"days": pick(days, "days"), "runs": pick(runs, "runs")});
                current = client.put(&path, &body)?;
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&current)?),
                Output::Text => {
                    let age = match current["days"].as_u64() {
                        Some(0) | None => "of any age".to_string(),
                        Some(n) => format!("for {n} days"),
                    };
                    let count = match current["runs"].as_u64() {
                        Some(0) | None => "any number of them".to_string(),
                        Some(n) => format!("at most {n}"),
                    };
                    println!("{owner}/{name}: finished runs are kept {age}, {count}; older ones are deleted with their logs and artifacts");
                }
            }
            Ok(())
        }
        RepoCommand::CloneUrl { name } => {
            let (owner, name) = full_name(&client, &name)?;
            let repo: Repo = client.get(&format!("/repos/{owner}/{name}"))?;
            println!("{}", repo.clone_url);
            Ok(())
        }
    }
}
