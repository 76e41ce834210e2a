//! `cove user create|list` (administrators): accounts with a password, e.g. for the web UI.

use std::io::Read;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{CreateUserRequest, User};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input (never from argv).
    Create {
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List,
}

pub fn run(args: UserArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        UserCommand::Create { username, admin } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password)?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            if password.chars().count() < 8 {
                bail!("the password (standard input) must have at least 8 characters");
            }
            let user: User = client.post(
                "/users",
                &CreateUserRequest {
                    username,
                    password,
                    is_admin: admin,
                },
            )?;
            println!(
                "created user {}{}",
                user.username,
                if user.is_admin {
                    " (administrator)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        UserCommand::List => {
            let users: Vec<User> = client.get("/users")?;
            for u in users {
                println!("{}{}", u.username, if u.is_admin { "  admin" } else { "" });
            }
            Ok(())
        }
    }
}
