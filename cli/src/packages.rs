//! `cove repo packages set|list|delete`: which AWS role the agent assumes and
//! which CodeArtifact repositories a repository's builds read.

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{PackageConfig, PackageConfigEntry, PackageMode, PackageRepository};

use crate::client::Client;
use crate::repo::{full_name, Output};

#[derive(Debug, Args)]
pub struct PackagesArgs {
    #[command(subcommand)]
    pub command: PackagesCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Builds see only the agent gateway's package URLs (no token in the build).
    TokenFree,
    /// What `aws codeartifact login` writes (token in `.npmrc`, `pip.conf`, …).
    Compatible,
}

#[derive(Debug, Subcommand)]
pub enum PackagesCommand {
    /// Set the configuration (the repository default, or one workflow environment's).
    Set {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long)]
        role_arn: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        domain: String,
        /// AWS account id owning the domain.
        #[arg(long)]
        domain_owner: String,
        /// FORMAT:NAME, e.g. `npm:npm-store`, `pypi:pypi-store` (repeat).
        #[arg(long = "repository", required = true)]
        repositories: Vec<String>,
        #[arg(long, value_enum, default_value = "token-free")]
        mode: ModeArg,
        /// Workflow environment (`Environment.Name`) this applies to.
        #[arg(long)]
        environment: Option<String>,
        /// Endpoint profile of the server's configuration (`[packages.endpoints.NAME]`, STS
        /// and CodeArtifact endpoints chosen by the administrator); default: AWS's regional
        /// endpoints.
        #[arg(long)]
        endpoints: Option<String>,
    },
    /// Show the configurations.
    List {
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Remove a configuration (default: the repository default).
    Delete {
        repo: String,
        #[arg(long)]
        environment: Option<String>,
    },
}

fn repository(spec: &str) -> Result<PackageRepository> {
    match spec.split_once(':') {
        Some((format, name)) if !format.is_empty() && !name.is_empty() => Ok(PackageRepository {
            name: name.to_string(),
            format: format.to_string(),
        }),
        _ => bail!("--repository {spec:?}: expected FORMAT:NAME, e.g. npm:npm-store"),
    }
}

pub fn run(client: &Client, args: PackagesArgs) -> Result<()> {
    match args.command {
        PackagesCommand::Set {
            repo,
            role_arn,
            region,
            domain,
            domain_owner,
            repositories,
            mode,
            environment,
            endpoints,
        } => {
            let (owner, name) = full_name(client, &repo)?;
            let entry = PackageConfigEntry {
                environment,
                config: PackageConfig {
                    role_arn,
                    region,
                    domain,
                    domain_owner,
                    repositories: repositories
                        .iter()
                        .map(|r| repository(r))
                        .collect::<Result<_>>()?,
                    mode: match mode {
                        ModeArg::TokenFree => PackageMode::TokenFree,
                        ModeArg::Compatible => PackageMode::Compatible,
                    },
                    endpoints,
                    sts_endpoint: None,
                    codeartifact_endpoint: None,
                    max_session_secs: None,
                },
            };
            let saved: PackageConfigEntry =
                client.put(&format!("/repos/{owner}/{name}/packages"), &entry)?;
            println!(
                "packages of {owner}/{name}{}: {} in {} ({}), role {}",
                saved
                    .environment
                    .as_deref()
                    .map(|e| format!(" (environment {e})"))
                    .unwrap_or_default(),
                saved
                    .config
                    .repositories
                    .iter()
                    .map(|r| format!("{}:{}", r.format, r.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                saved.config.domain,
                saved.config.domain_owner,
                saved.config.role_arn
            );
            Ok(())
        }
        PackagesCommand::List { repo, output } => {
            let (owner, name) = full_name(client, &repo)?;
            let list: Vec<PackageConfigEntry> =
                client.get(&format!("/repos/{owner}/{name}/packages"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Output::Text => {
                    for e in &list {
                        println!(
                            "{:<14} {:<10} {:<12} {} {}/{} {}",
                            e.environment.as_deref().unwrap_or("(default)"),
                            match e.config.mode {
                                PackageMode::TokenFree => "token-free",
                                PackageMode::Compatible => "compatible",
                            },
                            e.config.endpoints.as_deref().unwrap_or("(aws)"),
                            e.config.role_arn,
                            e.config.domain,
                            e.config.domain_owner,
                            e.config
                                .repositories
                                .iter()
                                .map(|r| format!("{}:{}", r.format, r.name))
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                    }
                }
            }
            Ok(())
        }
        PackagesCommand::Delete { repo, environment } => {
            let (owner, name) = full_name(client, &repo)?;
            let query = environment
                .as_deref()
                .map(|e| format!("?environment={e}"))
                .unwrap_or_default();
            client.delete(&format!("/repos/{owner}/{name}/packages{query}"))?;
            println!("removed");
            Ok(())
        }
    }
}
