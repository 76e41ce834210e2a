//! The `cove` command line.

mod client;
mod login;
mod repo;

use clap::{Parser, Subcommand};

/// Cove: self-hosted dev environments and private CI.
#[derive(Debug, Parser)]
#[command(name = "cove", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to a Cove server and store the token.
    Login(login::LoginArgs),
    /// Manage hosted git repositories.
    Repo(repo::RepoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Login(args) => login::run(args),
        Command::Repo(args) => repo::run(args),
    }
}
