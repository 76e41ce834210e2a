//! `cove user create|list|disable|enable` (administrators), `cove user passwd`: accounts
//! with a password, e.g. for the web UI. Passwords are read from standard input, never argv.
//! `cove user set-email` (yours, or anyone's for administrators) and `cove user deliveries`:
//! where email notifications go and what was sent. `cove user dotfiles show|set|clear`: the
//! dotfiles repository cloned into your new environments.

use std::io::Read;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{
    ChangePasswordRequest, CreateUserRequest, NotifyDelivery, SetEmailRequest, SetPasswordRequest,
    User, UserSettings,
};

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
    /// Disable a user (administrators): its tokens, sessions and password stop working at once.
    Disable { username: String },
    /// Enable a disabled user again (administrators).
    Enable { username: String },
    /// Change your password: standard input gives the current password on the first line and
    /// the new one on the second. With USERNAME (administrators): set that user's password,
    /// the new one alone on standard input.
    Passwd { username: Option<String> },
    /// Set the address your email notifications go to (approvals you may give, reviews
    /// requested from you, your environments stopped for idleness); administrators may set
    /// another user's with --user.
    SetEmail {
        /// A plain address, e.g. ann@example.com.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        address: Option<String>,
        /// Remove the address: no more email notifications.
        #[arg(long)]
        clear: bool,
        /// Whose address (administrators); default: yours.
        #[arg(long)]
        user: Option<String>,
    },
    /// Your dotfiles repository: cloned into ~/.dotfiles of every environment you create,
    /// whose install script (install.sh, install, bootstrap.sh, bootstrap, script/bootstrap,
    /// setup.sh, setup, script/setup: the first found) runs once.
    Dotfiles {
        #[command(subcommand)]
        command: DotfilesCommand,
    },
    /// Your email notifications, newest first (status, attempts, last SMTP reply, error).
    Deliveries {
        #[arg(long, value_enum, default_value_t)]
        output: crate::repo::Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum DotfilesCommand {
    /// Print your dotfiles repository.
    Show,
    /// Set it: an http(s) git URL, or a Cove repository owner/name.
    Set { repository: String },
    /// Remove it: new environments get no dotfiles.
    Clear,
}

/// Lines of standard input without their line ends.
fn stdin_lines() -> Result<Vec<String>> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

fn check_length(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        bail!("the new password (standard input) must have at least 8 characters");
    }
    Ok(())
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
                println!(
                    "{}{}{}{}",
                    u.username,
                    if u.is_admin { "  admin" } else { "" },
                    if u.disabled { "  disabled" } else { "" },
                    u.email.map(|e| format!("  <{e}>")).unwrap_or_default()
                );
            }
            Ok(())
        }
        UserCommand::Disable { username } => {
            let user: User = client.post(
                &format!("/users/{username}/disable"),
                &serde_json::json!({}),
            )?;
            println!("disabled user {}", user.username);
            Ok(())
        }
        UserCommand::Enable { username } => {
            let user: User =
                client.post(&format!("/users/{username}/enable"), &serde_json::json!({}))?;
            println!("enabled user {}", user.username);
            Ok(())
        }
        UserCommand::Passwd { username: None } => {
            let lines = stdin_lines()?;
            let [current, new, ..] = lines.as_slice() else {
                bail!("give the current password and the new one on two lines of standard input");
            };
            check_length(new)?;
            client.put_no_content(
                "/user/password",
                &ChangePasswordRequest {
                    current_password: current.clone(),
                    new_password: new.clone(),
                },
            )?;
            println!("password changed; your web sessions were logged out");
            Ok(())
        }
        UserCommand::Passwd {
            username: Some(username),
        } => {
            let lines = stdin_lines()?;
            let Some(new) = lines.first() else {
                bail!("give the new password on standard input");
            };
            check_length(new)?;
            client.put_no_content(
                &format!("/users/{username}/password"),
                &SetPasswordRequest {
                    new_password: new.clone(),
                },
            )?;
            println!("password of {username} set; its web sessions were logged out");
            Ok(())
        }
        UserCommand::SetEmail {
            address,
            clear,
            user,
        } => {
            let path = match &user {
                Some(name) => format!("/users/{name}/email"),
                None => "/user/email".to_string(),
            };
            let email = if clear { None } else { address };
            let u: User = client.put(&path, &SetEmailRequest { email })?;
            match &u.email {
                Some(e) => println!("email notifications of {} go to {e}", u.username),
                None => println!(
                    "{} has no email address: no email notifications",
                    u.username
                ),
            }
            Ok(())
        }
        UserCommand::Dotfiles { command } => {
            let settings: UserSettings = match command {
                DotfilesCommand::Show => client.get("/user/settings")?,
                DotfilesCommand::Set { repository } => client.put(
                    "/user/settings",
                    &UserSettings {
                        dotfiles: Some(repository),
                        ..Default::default()
                    },
                )?,
                DotfilesCommand::Clear => client.put("/user/settings", &UserSettings::default())?,
            };
            match settings.dotfiles {
                Some(d) => println!("dotfiles: {d}"),
                None => println!("no dotfiles repository"),
            }
            Ok(())
        }
        UserCommand::Deliveries { output } => {
            let list: Vec<NotifyDelivery> = client.get("/user/deliveries")?;
            crate::notify::print_deliveries(&list, output)
        }
    }
}
