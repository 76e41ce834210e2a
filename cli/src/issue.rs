//! `cove issue …`: issues and the board — create, list, show, edit, comment, assign, move,
//! close, branch, columns, board. The repository is `--repo OWNER/NAME` (or NAME), else `COVE_REPO`,
//! else the remote of the clone the command runs in.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{
    Board, Branch, ColumnSpec, CreateIssue, CreateIssueBranch, Issue, IssueComment,
    IssueCommentBody, IssueLinks, IssueList, MoveIssue, Priority, SetColumns, UpdateIssue,
};

use crate::client::Client;
use crate::repo::Output;
use crate::run::repo_full_name;

/// Issues and the board.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// OWNER/NAME or NAME (default: $COVE_REPO, else this clone's remote on the server).
    #[arg(long, short = 'R', global = true)]
    repo: Option<String>,
    #[command(subcommand)]
    command: IssueCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PriorityArg {
    None,
    Low,
    Medium,
    High,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Priority {
        match p {
            PriorityArg::None => Priority::None,
            PriorityArg::Low => Priority::Low,
            PriorityArg::Medium => Priority::Medium,
            PriorityArg::High => Priority::High,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// Create an issue (in the first column, Backlog, unless --column).
    Create {
        #[arg(long)]
        title: String,
        /// Markdown; `@user` mentions notify the user.
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        column: Option<String>,
        /// An assignee (repeatable).
        #[arg(long = "assignee")]
        assignees: Vec<String>,
        /// A label (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// XS, S, M, L or XL.
        #[arg(long)]
        estimate: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List issues, newest first.
    List {
        /// Only this board column (e.g. "In progress").
        #[arg(long)]
        column: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Text in the title or description.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show an issue with its comments, branches and pull requests.
    Show {
        number: i64,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Change title, description, labels, priority or estimate ("" clears the estimate).
    Edit {
        number: i64,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// The labels, replacing the old ones (repeatable).
        #[arg(long = "label")]
        labels: Option<Vec<String>>,
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        #[arg(long)]
        estimate: Option<String>,
    },
    /// Comment on an issue.
    Comment { number: i64, body: String },
    /// Set the assignees (none: unassign everyone).
    Assign { number: i64, users: Vec<String> },
    /// Move the issue's card to COLUMN (at --position, 0 = top; default the bottom).
    Move {
        number: i64,
        column: String,
        #[arg(long)]
        position: Option<u32>,
    },
    /// Close: the card to the done column (the board's last).
    Close { number: i64 },
    /// Create a branch from the default branch for the issue (default issue-N-slug).
    Branch {
        number: i64,
        #[arg(long)]
        name: Option<String>,
    },
    /// Set the board's columns in order (owners): each `NAME` or `NAME:LIMIT`; the last is
    /// the done column; a column left out must be empty.
    Columns {
        #[arg(required = true)]
        columns: Vec<String>,
    },
    /// Print the board: columns with their cards in order.
    Board {
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

fn resolve_repo(client: &Client, repo: Option<String>) -> Result<String> {
    let repo = repo.or_else(|| std::env::var("COVE_REPO").ok().filter(|r| !r.is_empty()));
    match repo {
        Some(r) => repo_full_name(client, &r),
        None => Ok(crate::pr::checkout::clone_remote(client, None)?.1),
    }
}

fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_line(issue: &Issue) {
    println!(
        "#{:<5} {:<12} {:<7} {:<3} {:<20} {}",
        issue.number,
        issue.column,
        issue.priority.as_str(),
        issue.estimate.as_deref().unwrap_or("-"),
        if issue.assignees.is_empty() {
            "-".to_string()
        } else {
            issue.assignees.join(",")
        },
        issue.title
    );
}

fn print_issue(issue: &Issue, comments: &[IssueComment], links: &IssueLinks) {
    println!("#{} {}", issue.number, issue.title);
    println!("repository  {}", issue.repo);
    println!(
        "column      {}{}",
        issue.column,
        if issue.done { " (done)" } else { "" }
    );
    println!("author      {}", issue.author);
    println!("assignees   {}", issue.assignees.join(", "));
    println!("labels      {}", issue.labels.join(", "));
    println!("priority    {}", issue.priority.as_str());
    println!("estimate    {}", issue.estimate.as_deref().unwrap_or("-"));
    for b in &links.branches {
        println!("branch      {b}");
    }
    for p in &links.pulls {
        println!(
            "pull        #{} {} ({}{})",
            p.number,
            p.title,
            p.state,
            if p.fixes { ", fixes" } else { "" }
        );
    }
    if !issue.description.is_empty() {
        println!();
        println!("{}", issue.description);
    }
    for c in comments {
        println!();
        println!("comment {} by {}:", c.id, c.author);
        println!("  {}", c.body);
    }
}

pub fn run(args: IssueArgs) -> Result<()> {
    let client = Client::from_env_or_config()?;
    let repo = resolve_repo(&client, args.repo)?;
    let base = format!("/repos/{repo}/issues");
    match args.command {
        IssueCommand::Create {
            title,
            description,
            column,
            assignees,
            labels,
            priority,
            estimate,
            output,
        } => {
            let issue: Issue = client.post(
                &base,
                &CreateIssue {
                    title,
                    description,
                    column,
                    assignees,
                    labels,
                    priority: priority.map(Priority::from),
                    estimate,
                },
            )?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&issue)?),
                Output::Text => println!(
                    "created #{} in {} ({})",
                    issue.number, issue.repo, issue.column
                ),
            }
        }
        IssueCommand::List {
            column,
            assignee,
            label,
            search,
            limit,
            offset,
            output,
        } => {
            let mut query = format!("?limit={limit}&offset={offset}");
            for (key, value) in [
                ("column", &column),
                ("assignee", &assignee),
                ("label", &label),
                ("q", &search),
            ] {
                if let Some(v) = value {
                    query.push_str(&format!("&{key}={}", escape(v)));
                }
            }
            let list: IssueList = client.get(&format!("{base}{query}"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Output::Text => {
                    println!(
                        "{:<6} {:<12} {:<7} {:<3} {:<20} TITLE",
                        "ISSUE", "COLUMN", "PRIO", "EST", "ASSIGNEES"
                    );
                    for issue in &list.issues {
                        print_line(issue);
                    }
                    let shown = list.issues.len() as i64;
                    if i64::from(offset) + shown < list.total {
                        println!(
                            "({} of {}; more with --offset {})",
                            shown,
                            list.total,
                            i64::from(offset) + shown
                        );
                    }
                }
            }
        }
        IssueCommand::Show { number, output } => {
            let issue: Issue = client.get(&format!("{base}/{number}"))?;
            let comments: Vec<IssueComment> = client.get(&format!("{base}/{number}/comments"))?;
            let links: IssueLinks = client.get(&format!("{base}/{number}/links"))?;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "issue": issue, "comments": comments, "links": links
                    }))?
                ),
                Output::Text => print_issue(&issue, &comments, &links),
            }
        }
        IssueCommand::Edit {
            number,
            title,
            description,
            labels,
            priority,
            estimate,
        } => {
            let issue: Issue = client.patch(
                &format!("{base}/{number}"),
                &UpdateIssue {
                    title,
                    description,
                    assignees: None,
                    labels,
                    priority: priority.map(Priority::from),
                    estimate,
                },
            )?;
            println!("updated #{}", issue.number);
        }
        IssueCommand::Comment { number, body } => {
            let c: IssueComment = client.post(
                &format!("{base}/{number}/comments"),
                &IssueCommentBody { body },
            )?;
            println!("commented on #{number} (comment {})", c.id);
        }
        IssueCommand::Assign { number, users } => {
            let issue: Issue = client.patch(
                &format!("{base}/{number}"),
                &UpdateIssue {
                    assignees: Some(users),
                    ..UpdateIssue::default()
                },
            )?;
            if issue.assignees.is_empty() {
                println!("#{} has no assignee", issue.number);
            } else {
                println!(
                    "#{} assigned to {}",
                    issue.number,
                    issue.assignees.join(", ")
                );
            }
        }
        IssueCommand::Move {
            number,
            column,
            position,
        } => {
            let issue: Issue = client.post(
                &format!("{base}/{number}/move"),
                &MoveIssue { column, position },
            )?;
            println!("#{} is in {}", issue.number, issue.column);
        }
        IssueCommand::Close { number } => {
            let issue: Issue =
                client.post(&format!("{base}/{number}/close"), &serde_json::json!({}))?;
            println!("#{} closed ({})", issue.number, issue.column);
        }
        IssueCommand::Branch { number, name } => {
            let branch: Branch = client.post(
                &format!("{base}/{number}/branch"),
                &CreateIssueBranch { name },
            )?;
            println!(
                "created branch {} at {}",
                branch.name,
                branch.commit.get(..12).unwrap_or(&branch.commit)
            );
        }
        IssueCommand::Columns { columns } => {
            let specs = columns
                .iter()
                .map(|c| match c.rsplit_once(':') {
                    Some((name, limit)) if limit.trim().parse::<u32>().is_ok() => ColumnSpec {
                        name: name.trim().to_string(),
                        limit: limit.trim().parse().ok(),
                    },
                    _ => ColumnSpec {
                        name: c.trim().to_string(),
                        limit: None,
                    },
                })
                .collect();
            let board: Board = client.put(
                &format!("/repos/{repo}/board/columns"),
                &SetColumns { columns: specs },
            )?;
            let names: Vec<String> = board
                .columns
                .iter()
                .map(|c| match c.limit {
                    Some(l) => format!("{} (limit {l})", c.name),
                    None => c.name.clone(),
                })
                .collect();
            println!("columns: {}", names.join(", "));
        }
        IssueCommand::Board { output } => {
            let board: Board = client.get(&format!("/repos/{repo}/board"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&board)?),
                Output::Text => {
                    for column in &board.columns {
                        let limit = column.limit.map(|l| format!("/{l}")).unwrap_or_default();
                        println!("== {} ({}{limit})", column.name, column.count);
                        for issue in &column.issues {
                            println!("  #{:<5} {}", issue.number, issue.title);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
