//! `cove login <url> [--token T]`: checks the token against the server and stores it.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use cove_api::User;

use crate::client::{config_path, CliConfig, Client};

/// Log in to a Cove server.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Server URL, e.g. http://127.0.0.1:8080
    pub url: String,
    /// API token (default: $COVE_TOKEN, else read from standard input).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: LoginArgs) -> Result<()> {
    let url = args.url.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("the server URL must start with http:// or https://");
    }
    let token = match args
        .token
        .or_else(|| std::env::var("COVE_TOKEN").ok().filter(|t| !t.is_empty()))
    {
        Some(token) => token,
        None => {
            eprint!("token for {url}: ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    if token.is_empty() {
        bail!("no token given: pass --token, set COVE_TOKEN or paste it when asked");
    }
    let user: User = Client::new(&url, &token).get("/user")?;
    let path = config_path()?;
    CliConfig {
        url: Some(url.clone()),
        token: Some(token),
    }
    .save(&path)
    .with_context(|| format!("saving credentials to {}", path.display()))?;
    let scopes: Vec<&str> = user.scopes.iter().map(|s| s.as_str()).collect();
    println!(
        "Logged in to {url} as {} (scopes: {}); credentials saved in {}",
        user.username,
        scopes.join(", "),
        path.display()
    );
    Ok(())
}
