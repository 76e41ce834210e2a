//! `cove token create|list|revoke`: the caller's API tokens. A token expires after the
//! server's default (90 days) unless `--expires` says otherwise; `--expires never` is for
//! administrators.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{CreateTokenRequest, CreatedToken, Scope, TokenInfo};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once.
    Create {
        /// A label, e.g. `laptop`.
        name: String,
        /// Scopes, comma-separated: read, write, admin (default: read,write).
        #[arg(long, default_value = "read,write")]
        scopes: String,
        /// Lifetime: e.g. `30d`, `12h`, `2w` (units s, m, h, d, w), or `never`
        /// (administrators). Default: the server's (90 days unless configured).
        #[arg(long)]
        expires: Option<String>,
        /// Scope the token to one project: it opens only that project and its
        /// repositories, and stops working when you leave the project.
        #[arg(long)]
        project: Option<String>,
    },
    /// List your tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: i64 },
}

/// What `--expires` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    Seconds(u64),
}

/// Parses `--expires`: `never`, or a number with a unit (s, m, h, d, w).
pub fn parse_expiry(text: &str) -> Result<Expiry> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("never") {
        return Ok(Expiry::Never);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        "w" => 7 * 24 * 3600,
        _ => bail!(
            "--expires {text:?}: use a number with a unit (s, m, h, d, w), e.g. 30d, or never"
        ),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--expires {text:?}: the number is missing or too large"))?;
    if n == 0 {
        bail!("--expires must be more than zero (or never)");
    }
    n.checked_mul(unit_secs)
        .map(Expiry::Seconds)
        .ok_or_else(|| anyhow::anyhow!("--expires {text:?} is too long"))
}

fn parse_scopes(text: &str) -> Result<Vec<Scope>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Scope::parse(s)
                .ok_or_else(|| anyhow::anyhow!("unknown scope {s:?} (read, write, admin)"))
        })
        .collect()
}

fn when(at: Option<i64>) -> String {
    at.map_or_else(|| "never".to_string(), |t| format!("{t} (unix seconds)"))
}

pub fn run(args: TokenArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
            project,
        } => {
            let expiry = expires.as_deref().map(parse_expiry).transpose()?;
            let created: CreatedToken = client.post(
                "/tokens",
                &CreateTokenRequest {
                    name,
                    scopes: parse_scopes(&scopes)?,
                    expires_in_seconds: match expiry {
                        Some(Expiry::Seconds(s)) => Some(s),
                        _ => None,
                    },
                    never_expires: expiry == Some(Expiry::Never),
                    project,
                },
            )?;
            eprintln!(
                "token {} ({}) expires: {}; it is shown only now:",
                created.info.id,
                created.info.name,
                when(created.info.expires_at)
            );
            println!("{}", created.token);
            Ok(())
        }
        TokenCommand::List => {
            let tokens: Vec<TokenInfo> = client.get("/tokens")?;
            for t in tokens {
                let scopes: Vec<&str> = t.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{}\t{}\t{}\texpires {}",
                    t.id,
                    t.name,
                    scopes.join(","),
                    when(t.expires_at)
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            client.delete(&format!("/tokens/{id}"))?;
            println!("revoked token {id}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_units_and_never() {
        assert_eq!(parse_expiry("30d").ok(), Some(Expiry::Seconds(30 * 86400)));
        assert_eq!(parse_expiry("12h").ok(), Some(Expiry::Seconds(12 * 3600)));
        assert_eq!(parse_expiry("2w").ok(), Some(Expiry::Seconds(14 * 86400)));
        assert_eq!(parse_expiry("never").ok(), Some(Expiry::Never));
        for bad in ["30", "d", "0d", "30y", "-1d", "99999999999999999999d"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
