//! `cove deploy …`: deployment environments (`env create|list|show|update|delete`, account
//! connections for administrators `env connect|disconnect`, scoped variables and secrets
//! `env var set|delete`), the history of an environment (`list`, `show`) and `rollback`.

use std::io::Read;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{
    DeployConnectionRequest, DeployEnvRequest, DeployEnvironment, DeployProtection, DeployVariable,
    DeployVariableRequest, Deployment, Role, RollbackRequest, Run,
};

use crate::client::Client;
use crate::repo::Output;
use crate::run::repo_full_name;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The repository (OWNER/NAME or NAME).
    #[arg(long, global = true, default_value = "")]
    pub repo: String,
    #[command(subcommand)]
    pub command: DeployCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Deployment environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// The deployments into an environment, newest first.
    List {
        environment: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// An environment: what is deployed there now, its rule, connections and variables.
    Show {
        environment: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Deploy an earlier successful run again: its deploy actions for ENVIRONMENT run in a new
    /// run at its commit, under the environment's protections.
    Rollback {
        environment: String,
        /// The run's number (`#N` or `N`).
        #[arg(long)]
        to: String,
    },
}

/// The protection rule's options (create and update).
#[derive(Debug, Args)]
pub struct ProtectionArgs {
    #[arg(long, default_value = "")]
    description: String,
    /// The least repository role that may deploy: reader, writer, owner (default writer,
    /// or only the --deployer users when some are named).
    #[arg(long)]
    deployer_role: Option<String>,
    /// A user who may deploy (repeat).
    #[arg(long = "deployer")]
    deployers: Vec<String>,
    /// Approvals a deploy action needs before it starts.
    #[arg(long, default_value_t = 0)]
    required_approvals: u32,
    /// A user who may approve (repeat; none: the repository's owners).
    #[arg(long = "approver")]
    approvers: Vec<String>,
    /// A branch pattern that may deploy (`*` any characters; repeat; none: every branch).
    #[arg(long = "branch")]
    branches: Vec<String>,
}

impl ProtectionArgs {
    fn request(self, name: Option<String>) -> Result<DeployEnvRequest> {
        let deployer_role = match self.deployer_role.as_deref() {
            None => None,
            Some(r) => Some(Role::parse(r).ok_or_else(|| {
                anyhow::anyhow!("--deployer-role {r:?}: reader, writer or owner")
            })?),
        };
        Ok(DeployEnvRequest {
            name,
            description: self.description,
            protection: DeployProtection {
                deployer_role,
                deployers: self.deployers,
                required_approvals: self.required_approvals,
                approvers: self.approvers,
                branches: self.branches,
            },
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment (owners).
    Create {
        name: String,
        #[command(flatten)]
        protection: ProtectionArgs,
    },
    /// List the repository's environments.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show one environment.
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Replace an environment's description and protection rule (owners).
    Update {
        name: String,
        #[command(flatten)]
        protection: ProtectionArgs,
    },
    /// Delete an environment with its connections, variables and history (owners).
    Delete { name: String },
    /// Set an AWS account connection and the roles workflows may name (administrators).
    Connect {
        name: String,
        connection: String,
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        region: String,
        /// An IAM role ARN in the account that workflows may name (repeat).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Endpoint profile of the server's configuration (`[packages.endpoints.NAME]`).
        #[arg(long)]
        endpoints: Option<String>,
    },
    /// Remove an account connection (administrators).
    Disconnect { name: String, connection: String },
    /// Environment-scoped variables and secrets.
    #[command(subcommand)]
    Var(VarCommand),
}

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set a variable; with --secret it is sealed, never shown, masked in logs. The value is
    /// read from standard input unless --value is given.
    Set {
        environment: String,
        name: String,
        #[arg(long)]
        value: Option<String>,
        #[arg(long)]
        secret: bool,
    },
    /// Delete a variable or secret.
    Delete { environment: String, name: String },
}

fn print_env(e: &DeployEnvironment) {
    println!("{}  {}", e.name, e.description);
    let p = &e.protection;
    println!(
        "  deployers: {}{}",
        p.deployer_role
            .map(|r| format!("{}s and above", r.as_str()))
            .unwrap_or_else(|| if p.deployers.is_empty() {
                "writers and above".into()
            } else {
                String::new()
            }),
        if p.deployers.is_empty() {
            String::new()
        } else {
            format!(" {}", p.deployers.join(", "))
        }
    );
    println!(
        "  approvals: {}{}",
        p.required_approvals,
        if p.approvers.is_empty() {
            String::new()
        } else {
            format!(" from {}", p.approvers.join(", "))
        }
    );
    println!(
        "  branches: {}",
        if p.branches.is_empty() {
            "any".to_string()
        } else {
            p.branches.join(", ")
        }
    );
    for c in &e.connections {
        println!(
            "  connection {}: account {} ({}) roles {}",
            c.name,
            c.account_id,
            c.region,
            c.roles.join(", ")
        );
    }
    for v in &e.variables {
        match &v.value {
            Some(value) => println!("  var {}={value}", v.name),
            None => println!("  secret {}", v.name),
        }
    }
    match &e.current {
        Some(d) => println!(
            "  deployed: run #{} {} ({}) by {}",
            d.run_number,
            &d.commit_sha[..d.commit_sha.len().min(12)],
            d.action,
            d.actor.as_deref().unwrap_or("-")
        ),
        None => println!("  deployed: nothing yet"),
    }
}

fn print_deployments(list: &[Deployment]) {
    println!(
        "{:<6} {:<18} {:<12} {:<12} {:<10} {:<16} REASON",
        "RUN", "ACTION", "COMMIT", "BRANCH", "BY", "STATE"
    );
    for d in list {
        println!(
            "#{:<5} {:<18} {:<12} {:<12} {:<10} {:<16} {}",
            d.run_number,
            d.action,
            &d.commit_sha[..d.commit_sha.len().min(12)],
            d.branch,
            d.actor.as_deref().unwrap_or("-"),
            d.state,
            d.reason.as_deref().unwrap_or("")
        );
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn run(args: DeployArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    if args.repo.is_empty() {
        bail!("--repo OWNER/NAME is required");
    }
    let repo = repo_full_name(&client, &args.repo)?;
    let base = format!("/repos/{repo}/deploy/environments");
    match args.command {
        DeployCommand::Env(cmd) => run_env(&client, &base, cmd),
        DeployCommand::List {
            environment,
            output,
        } => {
            let list: Vec<Deployment> = client.get(&format!("{base}/{environment}/deployments"))?;
            match output {
                Output::Json => json(&list),
                Output::Text => {
                    print_deployments(&list);
                    Ok(())
                }
            }
        }
        DeployCommand::Show {
            environment,
            output,
        } => {
            let env: DeployEnvironment = client.get(&format!("{base}/{environment}"))?;
            let list: Vec<Deployment> = client.get(&format!("{base}/{environment}/deployments"))?;
            match output {
                Output::Json => json(&serde_json::json!({"environment": env, "deployments": list})),
                Output::Text => {
                    print_env(&env);
                    print_deployments(&list);
                    Ok(())
                }
            }
        }
        DeployCommand::Rollback { environment, to } => {
            let run: i64 = to
                .trim_start_matches('#')
                .parse()
                .map_err(|_| anyhow::anyhow!("--to {to:?}: a run number (#N or N)"))?;
            let created: Run = client.post(
                &format!("{base}/{environment}/rollback"),
                &RollbackRequest { run },
            )?;
            println!(
                "rollback of {environment} to #{run}: run {repo}#{} ({})",
                created.number,
                created.state.as_str()
            );
            Ok(())
        }
    }
}

fn run_env(client: &Client, base: &str, cmd: EnvCommand) -> Result<()> {
    match cmd {
        EnvCommand::Create { name, protection } => {
            let env: DeployEnvironment = client.post(base, &protection.request(Some(name))?)?;
            println!("created deployment environment {}", env.name);
        }
        EnvCommand::List { output } => {
            let list: Vec<DeployEnvironment> = client.get(base)?;
            match output {
                Output::Json => json(&list)?,
                Output::Text => {
                    for e in &list {
                        print_env(e);
                    }
                }
            }
        }
        EnvCommand::Show { name, output } => {
            let env: DeployEnvironment = client.get(&format!("{base}/{name}"))?;
            match output {
                Output::Json => json(&env)?,
                Output::Text => print_env(&env),
            }
        }
        EnvCommand::Update { name, protection } => {
            let env: DeployEnvironment =
                client.put(&format!("{base}/{name}"), &protection.request(None)?)?;
            println!("updated deployment environment {}", env.name);
        }
        EnvCommand::Delete { name } => {
            client.delete(&format!("{base}/{name}"))?;
            println!("deleted deployment environment {name}");
        }
        EnvCommand::Connect {
            name,
            connection,
            account_id,
            region,
            roles,
            endpoints,
        } => {
            let _: DeployEnvironment = client.put(
                &format!("{base}/{name}/connections/{connection}"),
                &DeployConnectionRequest {
                    account_id,
                    region,
                    roles,
                    endpoints,
                },
            )?;
            println!("connection {connection} of {name} set");
        }
        EnvCommand::Disconnect { name, connection } => {
            client.delete(&format!("{base}/{name}/connections/{connection}"))?;
            println!("connection {connection} of {name} removed");
        }
        EnvCommand::Var(VarCommand::Set {
            environment,
            name,
            value,
            secret,
        }) => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::stdin().read_to_string(&mut v)?;
                    v.strip_suffix('\n').map(str::to_string).unwrap_or(v)
                }
            };
            let saved: DeployVariable = client.put(
                &format!("{base}/{environment}/variables/{name}"),
                &DeployVariableRequest { value, secret },
            )?;
            println!(
                "{} {} of {environment} set",
                if saved.secret { "secret" } else { "variable" },
                saved.name
            );
        }
        EnvCommand::Var(VarCommand::Delete { environment, name }) => {
            client.delete(&format!("{base}/{environment}/variables/{name}"))?;
            println!("{name} of {environment} deleted");
        }
    }
    Ok(())
}
