//! `cove repo notify add|list|remove|deliveries|test`: a repository's notification targets
//! (owners only).

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{CreateNotifyTarget, NotifyDelivery, NotifyTarget, NOTIFY_EVENTS};

use crate::client::Client;
use crate::repo::{full_name, Output};

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// A Slack-compatible incoming webhook: `{"text": …}` with a link into Cove.
    Slack,
    /// A JSON body signed with HMAC-SHA256 (`X-Cove-Signature: sha256=…`).
    Webhook,
    /// Email to --address (repeat) through the server's SMTP server.
    Email,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add a target; a webhook's signing secret is printed once.
    Add {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The URL to POST to (slack, webhook).
        #[arg(long, required_unless_present = "addresses")]
        url: Option<String>,
        /// An email address (email; repeat for several).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// An event to send (repeat; default: all): run_succeeded, run_failed,
        /// approval_needed, approval_decided, pr_opened, review_requested, pr_merged,
        /// env_stopped_idle.
        #[arg(long = "event")]
        events: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List the targets.
    List {
        /// NAME or OWNER/NAME.
        repo: String,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Remove a target and its delivery log.
    Remove {
        /// NAME or OWNER/NAME.
        repo: String,
        /// The target's id.
        id: i64,
    },
    /// A target's delivery log, newest first.
    Deliveries {
        /// NAME or OWNER/NAME.
        repo: String,
        /// The target's id.
        id: i64,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Send a test notification (`ping`) to a target.
    Test {
        /// NAME or OWNER/NAME.
        repo: String,
        /// The target's id.
        id: i64,
    },
}

fn print_targets(targets: &[NotifyTarget]) {
    if targets.is_empty() {
        println!("no notification targets");
        return;
    }
    println!("{:19}  {:7}  {:40}  EVENTS", "ID", "KIND", "URL");
    for t in targets {
        let events = if t.events.is_empty() {
            "all".to_string()
        } else {
            t.events.join(",")
        };
        println!("{:<19}  {:7}  {:40}  {events}", t.id, t.kind, t.url);
    }
}

/// A delivery log, as a table or JSON.
pub fn print_deliveries(list: &[NotifyDelivery], output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Output::Text if list.is_empty() => println!("no deliveries"),
        Output::Text => {
            println!(
                "{:19}  {:17}  {:9}  {:8}  {:4}  {:>8}  ERROR",
                "ID", "EVENT", "STATUS", "ATTEMPTS", "CODE", "MS"
            );
            for d in list {
                println!(
                    "{:<19}  {:17}  {:9}  {:<8}  {:4}  {:>8}  {}",
                    d.id,
                    d.event,
                    d.status,
                    d.attempts,
                    d.response_code.map(|c| c.to_string()).unwrap_or_default(),
                    d.duration_ms.map(|c| c.to_string()).unwrap_or_default(),
                    d.error.as_deref().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub fn run(client: &Client, args: NotifyArgs) -> Result<()> {
    let base = |repo: &str| -> Result<String> {
        let (owner, name) = full_name(client, repo)?;
        Ok(format!("/repos/{owner}/{name}/notifications/targets"))
    };
    match args.command {
        NotifyCommand::Add {
            repo,
            kind,
            url,
            addresses,
            events,
            output,
        } => {
            for e in &events {
                if !NOTIFY_EVENTS.contains(&e.as_str()) {
                    bail!("unknown event {e:?}; one of {}", NOTIFY_EVENTS.join(", "));
                }
            }
            let body = CreateNotifyTarget {
                kind: match kind {
                    KindArg::Slack => "slack",
                    KindArg::Webhook => "webhook",
                    KindArg::Email => "email",
                }
                .to_string(),
                url: url.unwrap_or_default(),
                addresses,
                events,
            };
            let t: NotifyTarget = client.post(&base(&repo)?, &body)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&t)?),
                Output::Text => {
                    println!("added target {} ({} {})", t.id, t.kind, t.url);
                    if let Some(secret) = &t.secret {
                        println!("signing secret (shown once): {secret}");
                    }
                }
            }
        }
        NotifyCommand::List { repo, output } => {
            let targets: Vec<NotifyTarget> = client.get(&base(&repo)?)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&targets)?),
                Output::Text => print_targets(&targets),
            }
        }
        NotifyCommand::Remove { repo, id } => {
            client.delete(&format!("{}/{id}", base(&repo)?))?;
            println!("removed target {id}");
        }
        NotifyCommand::Deliveries { repo, id, output } => {
            let list: Vec<NotifyDelivery> =
                client.get(&format!("{}/{id}/deliveries", base(&repo)?))?;
            print_deliveries(&list, output)?;
        }
        NotifyCommand::Test { repo, id } => {
            let d: NotifyDelivery = client.post(
                &format!("{}/{id}/test", base(&repo)?),
                &serde_json::json!({}),
            )?;
            println!(
                "test notification queued as delivery {} (see `cove repo notify deliveries`)",
                d.id
            );
        }
    }
    Ok(())
}
