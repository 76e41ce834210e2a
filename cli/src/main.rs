//! `cove` — the command line for Cove.

mod agent;
mod audit;
mod client;
mod deploy;
mod devfile;
mod devfile_fs;
mod devfile_registry;
mod env;
mod forward;
// issues and the board (issue 16)
mod issue;
// projects and members (issue 16)
mod login;
mod mirror;
mod notify;
mod packages;
mod pr;
mod prebuild;
mod project;
mod repo;
mod rules;
mod terminal;
mod token;
mod user;
mod workflow;
// workflow runs (issue 5)
mod run;
mod run_reports;
mod secret;
mod ssh;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cove: self-hosted dev environments and private CI.
#[derive(Parser)]
#[command(name = "cove", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in to a Cove server and store the token.
    Login(login::LoginArgs),
    /// Manage hosted git repositories.
    Repo(repo::RepoArgs),
    /// Manage dev environments.
    Env(env::EnvArgs),
    /// Workflow runs: list, show, logs, cancel, retry, start.
    Run(run::RunArgs),
    /// Pull requests: create, list, show, diff, comment, review, merge, close.
    Pr(pr::PrArgs),
    /// Issues and the board: create, list, show, edit, comment, assign, move, close, branch,
    /// columns, board.
    Issue(issue::IssueArgs),
    /// Projects: create, list, show, repos, members (invite, role, remove), invitations,
    /// leave, board.
    Project(project::ProjectArgs),
    /// Repository secrets for workflows (`${Secrets.NAME}`).
    Secret(secret::SecretArgs),
    /// Deployment environments, their history and rollback.
    Deploy(deploy::DeployArgs),
    /// Prebuilds: list, logs, run (a branch's head prepared ahead of time).
    Prebuild(prebuild::PrebuildArgs),
    /// Standalone agents: registration tokens, list, revoke (administrators).
    Agent(agent::AgentArgs),
    /// Users with a password, e.g. for the web UI; your own password (`passwd`).
    User(user::UserArgs),
    /// The audit log: who did what, when, from where, with what result (administrators).
    Audit(audit::AuditArgs),
    /// Your API tokens: create (with an expiry), list, revoke.
    Token(token::TokenArgs),
    /// Your SSH public keys (for `ssh` into environments): add, list, remove.
    SshKey(ssh::SshKeyArgs),
    /// Write a `Host cove.<env>` per environment of yours into ~/.ssh/config (a managed block).
    ConfigSsh(ssh::ConfigSshArgs),
    /// Check and plan devfiles offline.
    #[command(subcommand)]
    Devfile(devfile::DevfileCommand),
    /// Check CodeCatalyst workflows and buildspecs offline.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
}

fn main() -> ExitCode {
    // Like other Unix tools: when the reader of stdout goes away (`cove run list | head`),
    // the default SIGPIPE action ends the process quietly instead of a panic in `println!`.
    sigpipe::reset();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Login(args) => login::run(args).map(|()| ExitCode::SUCCESS),
        Command::Repo(args) => repo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Env(args) => env::run(args),
        Command::Run(args) => run::run(args),
        Command::Pr(args) => pr::run(args).map(|()| ExitCode::SUCCESS),
        Command::Issue(args) => issue::run(args).map(|()| ExitCode::SUCCESS),
        Command::Project(args) => project::run(args).map(|()| ExitCode::SUCCESS),
        Command::Secret(args) => secret::run(args).map(|()| ExitCode::SUCCESS),
        Command::Deploy(args) => deploy::run(args).map(|()| ExitCode::SUCCESS),
        Command::Prebuild(args) => prebuild::run(args).map(|()| ExitCode::SUCCESS),
        Command::Agent(args) => agent::run(args).map(|()| ExitCode::SUCCESS),
        Command::User(args) => user::run(args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit::run(args).map(|()| ExitCode::SUCCESS),
        Command::Token(args) => token::run(args).map(|()| ExitCode::SUCCESS),
        Command::SshKey(args) => ssh::run_keys(args).map(|()| ExitCode::SUCCESS),
        Command::ConfigSsh(args) => ssh::config_ssh(args).map(|()| ExitCode::SUCCESS),
        Command::Devfile(cmd) => devfile::run(cmd),
        Command::Workflow(cmd) => workflow::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
