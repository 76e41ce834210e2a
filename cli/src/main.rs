//! `cove` — the command line for Cove.

mod devfile;
mod workflow;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cove",
    version,
    about = "Cove: dev environments from devfiles and private CI driven by git pushes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check and plan devfiles offline.
    #[command(subcommand)]
    Devfile(devfile::DevfileCommand),
    /// Check CodeCatalyst workflows and buildspecs offline.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
