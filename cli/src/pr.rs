//! `cove pr …`: pull requests — create, list, show, diff, comment, review, merge, close.

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{
    CreateComment, CreatePullRequest, CreateReview, MergeMethod, MergeRequest, Mergeability,
    PullCheck, PullComment, PullDiff, PullRequest, PullReview, ReviewVerdict,
};

use crate::client::Client;
use crate::repo::Output;
use crate::run::repo_full_name;

/// Pull requests: open, read, review and merge.
#[derive(Debug, Args)]
pub struct PrArgs {
    #[command(subcommand)]
    pub command: PrCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Method {
    #[value(name = "ff")]
    FastForward,
    Merge,
    Squash,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Verdict {
    Approve,
    RequestChanges,
    Comment,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateFilter {
    Open,
    Merged,
    Closed,
    All,
}

#[derive(Debug, Subcommand)]
pub enum PrCommand {
    /// Open a pull request from SOURCE into --into (default: the default branch).
    Create {
        /// OWNER/NAME or NAME.
        repo: String,
        /// The source branch.
        source: String,
        #[arg(long)]
        into: Option<String>,
        #[arg(long)]
        title: String,
        /// Markdown.
        #[arg(long, default_value = "")]
        description: String,
        /// A required reviewer (repeatable).
        #[arg(long = "reviewer")]
        reviewers: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List pull requests, newest first.
    List {
        repo: String,
        #[arg(long, value_enum, default_value_t = StateFilter::Open)]
        state: StateFilter,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a pull request: reviewers, reviews, comments, whether it can be merged.
    Show {
        repo: String,
        number: i64,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print the diff against the merge base (unified; --stat for the file list only).
    Diff {
        repo: String,
        number: i64,
        #[arg(long)]
        stat: bool,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Comment on the pull request, on a line (--path, --line, --side) or reply (--reply-to).
    Comment {
        repo: String,
        number: i64,
        body: String,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        line: Option<u32>,
        /// `old` or `new` (default new).
        #[arg(long)]
        side: Option<String>,
        #[arg(long = "reply-to")]
        reply_to: Option<i64>,
    },
    /// Review: approve, request-changes or comment.
    Review {
        repo: String,
        number: i64,
        #[arg(value_enum)]
        verdict: Verdict,
        #[arg(long, default_value = "")]
        body: String,
    },
    /// Merge on the server (ff, merge or squash); refused with the reasons when not mergeable.
    Merge {
        repo: String,
        number: i64,
        #[arg(long, value_enum, default_value_t = Method::Merge)]
        method: Method,
        /// Delete the source branch afterwards.
        #[arg(long)]
        delete_source: bool,
        #[arg(long)]
        message: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Close without merging.
    Close { repo: String, number: i64 },
}

fn print_line(pr: &PullRequest) {
    println!(
        "#{:<5} {:<7} {:<30} {:<28} {}",
        pr.number,
        pr.state.as_str(),
        format!("{} -> {}", pr.source, pr.destination),
        pr.author,
        pr.title
    );
}

fn verdict_text(v: Option<ReviewVerdict>) -> &'static str {
    match v {
        Some(v) => v.as_str(),
        None => "pending",
    }
}

fn print_pull(
    pr: &PullRequest,
    reviews: &[PullReview],
    comments: &[PullComment],
    merge: &Mergeability,
    checks: &[PullCheck],
) {
    println!("#{} {}", pr.number, pr.title);
    println!("repository  {}", pr.repo);
    println!("state       {}", pr.state.as_str());
    println!("branches    {} -> {}", pr.source, pr.destination);
    println!("author      {}", pr.author);
    println!(
        "revision    {} (head {}, base {})",
        pr.revision,
        pr.head_sha.get(..8).unwrap_or(&pr.head_sha),
        pr.base_sha.get(..8).unwrap_or(&pr.base_sha)
    );
    if let Some(sha) = &pr.merge_sha {
        println!("merged as   {sha}");
    }
    for r in &pr.reviewers {
        println!("reviewer    {} ({})", r.username, verdict_text(r.verdict));
    }
    for c in checks {
        println!(
            "check       {} {} ({}#{}, {})",
            c.name,
            c.state.as_str(),
            pr.repo,
            c.run_number,
            c.trigger
        );
    }
    if merge.mergeable {
        println!("mergeable   yes");
    } else {
        println!("mergeable   no");
        for reason in &merge.reasons {
            println!("  - {reason}");
        }
    }
    if !pr.description.is_empty() {
        println!();
        println!("{}", pr.description);
    }
    for r in reviews {
        println!();
        println!(
            "review by {}: {} on revision {}{}",
            r.reviewer,
            r.verdict.as_str(),
            r.revision,
            if r.stale { " (stale)" } else { "" }
        );
        if !r.body.is_empty() {
            println!("  {}", r.body);
        }
    }
    for c in comments {
        println!();
        let place = match (&c.path, c.line) {
            (Some(p), Some(l)) => format!(" on {p}:{l} ({})", c.side.as_deref().unwrap_or("new")),
            _ => String::new(),
        };
        let reply = c
            .parent_id
            .map(|p| format!(" (reply to {p})"))
            .unwrap_or_default();
        println!("comment {} by {}{place}{reply}:", c.id, c.author);
        println!("  {}", c.body);
    }
}

fn print_diff(diff: &PullDiff, stat: bool) {
    for f in &diff.files {
        let name = match (&f.old_path, &f.new_path) {
            (Some(o), Some(n)) if o != n => format!("{o} => {n}"),
            (_, Some(n)) => n.clone(),
            (Some(o), None) => o.clone(),
            (None, None) => "?".into(),
        };
        if stat {
            println!(
                "{:<10} +{:<6} -{:<6} {name}",
                f.status, f.additions, f.deletions
            );
        } else {
            println!("diff {} {name}", f.status);
            if f.binary {
                println!("(binary)");
            }
            print!("{}", f.patch);
            if f.truncated {
                println!("[cove: patch cut by the size cap]");
            }
        }
    }
    println!(
        "{} files changed, {} insertions(+), {} deletions(-)",
        diff.files_changed, diff.additions, diff.deletions
    );
    if let Some(reason) = &diff.truncated_reason {
        println!("truncated: {reason}");
    }
}

pub fn run(args: PrArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    match args.command {
        PrCommand::Create {
            repo,
            source,
            into,
            title,
            description,
            reviewers,
            output,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let pr: PullRequest = client.post(
                &format!("/repos/{repo}/pulls"),
                &CreatePullRequest {
                    source,
                    destination: into,
                    title,
                    description,
                    reviewers,
                },
            )?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pr)?),
                Output::Text => println!("opened #{} in {}", pr.number, pr.repo),
            }
        }
        PrCommand::List {
            repo,
            state,
            output,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let state = match state {
                StateFilter::Open => "open",
                StateFilter::Merged => "merged",
                StateFilter::Closed => "closed",
                StateFilter::All => "all",
            };
            let pulls: Vec<PullRequest> =
                client.get(&format!("/repos/{repo}/pulls?state={state}"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pulls)?),
                Output::Text => {
                    println!(
                        "{:<6} {:<7} {:<30} {:<28} TITLE",
                        "PR", "STATE", "BRANCHES", "AUTHOR"
                    );
                    for pr in &pulls {
                        print_line(pr);
                    }
                }
            }
        }
        PrCommand::Show {
            repo,
            number,
            output,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let base = format!("/repos/{repo}/pulls/{number}");
            let pr: PullRequest = client.get(&base)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pr)?),
                Output::Text => {
                    let reviews: Vec<PullReview> = client.get(&format!("{base}/reviews"))?;
                    let comments: Vec<PullComment> = client.get(&format!("{base}/comments"))?;
                    let merge: Mergeability = client.get(&format!("{base}/mergeable"))?;
                    let checks: Vec<PullCheck> = client.get(&format!("{base}/checks"))?;
                    print_pull(&pr, &reviews, &comments, &merge, &checks);
                }
            }
        }
        PrCommand::Diff {
            repo,
            number,
            stat,
            output,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let diff: PullDiff = client.get(&format!("/repos/{repo}/pulls/{number}/diff"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&diff)?),
                Output::Text => print_diff(&diff, stat),
            }
        }
        PrCommand::Comment {
            repo,
            number,
            body,
            path,
            line,
            side,
            reply_to,
        } => {
            if path.is_some() != line.is_some() {
                bail!("a line comment needs both --path and --line");
            }
            let repo = repo_full_name(&client, &repo)?;
            let c: PullComment = client.post(
                &format!("/repos/{repo}/pulls/{number}/comments"),
                &CreateComment {
                    body,
                    parent_id: reply_to,
                    path,
                    side,
                    line,
                    commit: None,
                },
            )?;
            println!("comment {} added", c.id);
        }
        PrCommand::Review {
            repo,
            number,
            verdict,
            body,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let verdict = match verdict {
                Verdict::Approve => ReviewVerdict::Approve,
                Verdict::RequestChanges => ReviewVerdict::RequestChanges,
                Verdict::Comment => ReviewVerdict::Comment,
            };
            let r: PullReview = client.post(
                &format!("/repos/{repo}/pulls/{number}/reviews"),
                &CreateReview { verdict, body },
            )?;
            println!(
                "review {} ({}) on revision {}",
                r.id,
                r.verdict.as_str(),
                r.revision
            );
        }
        PrCommand::Merge {
            repo,
            number,
            method,
            delete_source,
            message,
            output,
        } => {
            let repo = repo_full_name(&client, &repo)?;
            let method = match method {
                Method::FastForward => MergeMethod::FastForward,
                Method::Merge => MergeMethod::Merge,
                Method::Squash => MergeMethod::Squash,
            };
            let pr: PullRequest = client.post(
                &format!("/repos/{repo}/pulls/{number}/merge"),
                &MergeRequest {
                    method,
                    delete_source,
                    message,
                },
            )?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&pr)?),
                Output::Text => println!(
                    "merged #{} into {} as {}",
                    pr.number,
                    pr.destination,
                    pr.merge_sha.as_deref().unwrap_or_default()
                ),
            }
        }
        PrCommand::Close { repo, number } => {
            let repo = repo_full_name(&client, &repo)?;
            let pr: PullRequest = client.post(
                &format!("/repos/{repo}/pulls/{number}/close"),
                &serde_json::json!({}),
            )?;
            println!("closed #{}", pr.number);
        }
    }
    Ok(())
}
