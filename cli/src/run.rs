//! `cove run …`: workflow runs.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use cove_api::{ApprovalRequest, Repo, Run, RunState, Schedule, StartRunRequest, User};

use crate::client::Client;
use crate::repo::Output;

/// Workflow runs: list, show, follow logs, cancel, retry, start by hand.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(subcommand)]
    pub command: RunCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List runs, newest first.
    List {
        /// Only this repository (OWNER/NAME or NAME); default: every repository you can read.
        #[arg(long)]
        repo: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Show a run and its actions.
    Show {
        /// The run: OWNER/NAME#N, NAME#N, #N or N with --repo, or its id.
        run: String,
        /// The repository of a run given by number.
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Print an action's log (every action's when none is named); -f follows until it ends.
    Logs {
        run: String,
        action: Option<String>,
        #[arg(long)]
        repo: Option<String>,
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a run.
    Cancel {
        run: String,
        #[arg(long)]
        repo: Option<String>,
    },
    /// Run the actions of an ended run that did not succeed again.
    Retry {
        run: String,
        #[arg(long)]
        repo: Option<String>,
    },
    /// Test and coverage reports of a run: totals, failed cases with their messages, coverage
    /// per file, failed success criteria.
    Reports {
        run: String,
        #[arg(long)]
        repo: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Approve an approval gate that waits (an `aws/approval` action).
    Approve {
        run: String,
        action: String,
        #[arg(long)]
        repo: Option<String>,
        /// Why (kept with the decision).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Reject an approval gate that waits: it fails and the actions after it are skipped.
    Reject {
        run: String,
        action: String,
        #[arg(long)]
        repo: Option<String>,
        /// Why (kept with the decision).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Start a workflow by hand.
    Start {
        /// OWNER/NAME or NAME.
        repo: String,
        #[arg(long)]
        workflow: String,
        /// Default: the repository's default branch.
        #[arg(long)]
        branch: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List SCHEDULE triggers with their next time (UTC).
    Schedules {
        /// OWNER/NAME or NAME; default: every repository you can read.
        repo: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

/// The id of the run named by `run`: `OWNER/NAME#N` or `NAME#N` (a run number), `#N` or `N`
/// with `--repo` (a run number), else a run id.
pub fn resolve_run(client: &Client, run: &str, repo: Option<&str>) -> Result<i64> {
    let by_number = |repo: &str, number: &str| -> Result<i64> {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            bail!("expected a run number after `#`, got {number:?}");
        }
        let full = repo_full_name(client, repo)?;
        let found: Run = client.get(&format!("/repos/{full}/runs/by-number/{number}"))?;
        Ok(found.id)
    };
    match (run.split_once('#'), repo) {
        (Some((r, n)), _) if !r.is_empty() => by_number(r, n),
        (Some((_, n)), Some(r)) => by_number(r, n),
        (Some(_), None) => {
            bail!("`{run}`: name the repository (--repo OWNER/NAME or OWNER/NAME{run})")
        }
        (None, Some(r)) => by_number(r, run),
        (None, None) => run.parse().map_err(|_| {
            anyhow::anyhow!("expected a run id, OWNER/NAME#N, or #N with --repo; got {run:?}")
        }),
    }
}

/// `owner/name#N` (the id for a run stored before numbers).
fn run_name(run: &Run) -> String {
    if run.number > 0 {
        format!("{}#{}", run.repo, run.number)
    } else {
        run.id.to_string()
    }
}

/// `owner/name` from OWNER/NAME or NAME (the logged-in user's).
pub fn repo_full_name(client: &Client, repo: &str) -> Result<String> {
    match repo.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok(repo.to_string()),
        Some(_) => bail!("expected NAME or OWNER/NAME, got {repo:?}"),
        None => {
            let me: User = client.get("/user")?;
            Ok(format!("{}/{repo}", me.username))
        }
    }
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_run_line(run: &Run) {
    println!(
        "{:<20} {:<11} {:<24} {:<16} {:<8} {}",
        run_name(run),
        run.state.as_str(),
        run.workflow,
        run.branch,
        run.commit.get(..8).unwrap_or(&run.commit),
        trigger_text(run)
    );
}

/// The trigger, with the pull request a PULLREQUEST run ran for: `pullrequest (PR #3)`.
fn trigger_text(run: &Run) -> String {
    match run.pr_number {
        Some(n) => format!("{} (PR #{n})", run.trigger),
        None => run.trigger.clone(),
    }
}

fn print_run(run: &Run) {
    println!("run        {} (id {})", run_name(run), run.id);
    println!("repository {}", run.repo);
    println!(
        "workflow   {} ({}, {})",
        run.workflow, run.workflow_file, run.run_mode
    );
    println!("branch     {} @ {}", run.branch, run.commit);
    println!("trigger    {}", trigger_text(run));
    println!("state      {}", run.state.as_str());
    println!();
    println!(
        "{:<24} {:<16} {:<8} {:<10} NOTE",
        "ACTION", "STATE", "ATTEMPT", "SECONDS"
    );
    for j in &run.jobs {
        let secs = match (j.started_at_ms, j.finished_at_ms) {
            (Some(s), Some(f)) => format!("{:.1}", (f - s) as f64 / 1000.0),
            _ => "-".into(),
        };
        let mut note = j.error.clone().unwrap_or_default();
        if j.ignore_failure {
            note = format!("(failure ignored) {note}");
        }
        if !j.artifacts.is_empty() {
            note = format!("artifacts: {} {note}", j.artifacts.join(", "));
        }
        if let Some(agent) = &j.agent {
            note = format!("agent: {agent} {note}");
        }
        if let Some(waiting) = &j.waiting {
            note = format!("waiting: {waiting} {note}");
        }
        println!(
            "{:<24} {:<16} {:<8} {:<10} {}",
            j.action,
            j.state.as_str(),
            j.attempt,
            secs,
            note.trim()
        );
    }
    for j in &run.jobs {
        if let Some(a) = &j.approval {
            print_approval(&j.action, a);
        }
    }
    let deploys: Vec<_> = run
        .jobs
        .iter()
        .filter_map(|j| j.deployment.as_ref().map(|d| (&j.action, d)))
        .collect();
    if !deploys.is_empty() {
        println!();
        for (action, d) in deploys {
            println!("{}", deploy_line(action, d));
        }
    }
}

/// `deploy DeployProd to prod: waiting_approval (waiting for 1 approval(s) from olga)`.
fn deploy_line(action: &str, d: &cove_api::JobDeployment) -> String {
    let mut line = format!("deploy {action} to {}: {}", d.environment, d.state);
    if let Some(w) = &d.waiting {
        line.push_str(&format!(" ({w})"));
    }
    if let Some(r) = &d.reason {
        line.push_str(&format!(": {r}"));
    }
    line
}

/// `YYYY-MM-DD HH:MM:SS UTC` of Unix milliseconds (Howard Hinnant's civil-from-days).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn print_approval(action: &str, a: &cove_api::Approval) {
    let who = if a.approvers.is_empty() {
        "the repository's owners".to_string()
    } else {
        a.approvers.join(", ")
    };
    println!();
    println!(
        "approval {action}: {}/{} approvals from {who}",
        a.approvals, a.approvals_required
    );
    if let Some(c) = &a.condition {
        println!("  condition: {c}");
    }
    if let Some(at) = a.expires_at_ms {
        println!("  expires:   {}", utc(at));
    }
    for d in &a.decisions {
        println!(
            "  {} {} by {} (round {}){}{}",
            utc(d.at_ms),
            if d.decision == "reject" {
                "rejected"
            } else {
                "approved"
            },
            d.user,
            d.round,
            if d.comment.is_empty() { "" } else { ": " },
            d.comment
        );
    }
}

fn emit(run: &Run, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(run)?),
        Output::Text => print_run(run),
    }
    Ok(())
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let client = Client::from_env_or_config()?;
    match args.command {
        RunCommand::List {
            repo,
            branch,
            limit,
            output,
        } => {
            let repos = match repo {
                Some(r) => vec![repo_full_name(&client, &r)?],
                None => client
                    .get::<Vec<Repo>>("/repos")?
                    .into_iter()
                    .map(|r| r.full_name)
                    .collect(),
            };
            let mut runs: Vec<Run> = Vec::new();
            for r in repos {
                let mut path = format!("/repos/{r}/runs?limit={limit}");
                if let Some(b) = &branch {
                    path.push_str(&format!("&branch={}", query_escape(b)));
                }
                runs.extend(client.get::<Vec<Run>>(&path)?);
            }
            runs.sort_by_key(|r| std::cmp::Reverse(r.id));
            runs.truncate(limit as usize);
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&runs)?),
                Output::Text => {
                    println!(
                        "{:<20} {:<11} {:<24} {:<16} {:<8} TRIGGER",
                        "RUN", "STATE", "WORKFLOW", "BRANCH", "COMMIT"
                    );
                    for r in &runs {
                        print_run_line(r);
                    }
                }
            }
        }
        RunCommand::Show { run, repo, output } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let run: Run = client.get(&format!("/runs/{run}"))?;
            emit(&run, output)?;
        }
        RunCommand::Logs {
            run,
            action,
            repo,
            follow,
        } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let shown: Run = client.get(&format!("/runs/{run}"))?;
            let actions: Vec<String> = match action {
                Some(a) => {
                    if !shown.jobs.iter().any(|j| j.action == a) {
                        bail!("run {run} has no action {a:?}");
                    }
                    vec![a]
                }
                None => shown.jobs.iter().map(|j| j.action.clone()).collect(),
            };
            let several = actions.len() > 1;
            let stdout = std::io::stdout();
            for a in actions {
                if several {
                    println!("==> {a} <==");
                }
                let path = format!(
                    "/runs/{run}/jobs/{}/logs{}",
                    query_escape(&a),
                    if follow { "?follow=true" } else { "" }
                );
                let mut reader = client.get_reader(&path)?;
                let mut buf = [0u8; 8192];
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    let mut out = stdout.lock();
                    out.write_all(&buf[..n])?;
                    out.flush()?;
                }
            }
            if follow {
                let done: Run = client.get(&format!("/runs/{run}"))?;
                if done.state.is_terminal() && done.state != RunState::Succeeded {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        RunCommand::Cancel { run, repo } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let run: Run = client.post(&format!("/runs/{run}/cancel"), &serde_json::json!({}))?;
            println!("run {} {}", run_name(&run), run.state.as_str());
        }
        RunCommand::Reports { run, repo, output } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let reports: Vec<cove_api::RunReport> = client.get(&format!("/runs/{run}/reports"))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
                Output::Text => crate::run_reports::print(&reports, &mut std::io::stdout().lock())?,
            }
        }
        RunCommand::Retry { run, repo } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let run: Run = client.post(&format!("/runs/{run}/retry"), &serde_json::json!({}))?;
            println!("run {} {}", run_name(&run), run.state.as_str());
        }
        RunCommand::Approve {
            run,
            action,
            repo,
            comment,
        } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let run: Run = client.post(
                &format!("/runs/{run}/actions/{}/approve", query_escape(&action)),
                &ApprovalRequest { comment },
            )?;
            let state = run.jobs.iter().find(|j| j.action == action);
            println!(
                "approved {action} of run {} ({})",
                run_name(&run),
                state.map_or("?", |j| j.state.as_str())
            );
        }
        RunCommand::Reject {
            run,
            action,
            repo,
            comment,
        } => {
            let run = resolve_run(&client, &run, repo.as_deref())?;
            let run: Run = client.post(
                &format!("/runs/{run}/actions/{}/reject", query_escape(&action)),
                &ApprovalRequest { comment },
            )?;
            println!(
                "rejected {action} of run {} ({})",
                run_name(&run),
                run.state.as_str()
            );
        }
        RunCommand::Start {
            repo,
            workflow,
            branch,
            output,
        } => {
            let full = repo_full_name(&client, &repo)?;
            let run: Run = client.post(
                &format!("/repos/{full}/runs"),
                &StartRunRequest { workflow, branch },
            )?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&run)?),
                Output::Text => println!(
                    "run {} started ({}, id {})",
                    run_name(&run),
                    run.state.as_str(),
                    run.id
                ),
            }
        }
        RunCommand::Schedules { repo, output } => {
            let repos = match repo {
                Some(r) => vec![repo_full_name(&client, &r)?],
                None => client
                    .get::<Vec<Repo>>("/repos")?
                    .into_iter()
                    .map(|r| r.full_name)
                    .collect(),
            };
            let mut all: Vec<(String, Schedule)> = Vec::new();
            for r in repos {
                for s in client.get::<Vec<Schedule>>(&format!("/repos/{r}/schedules"))? {
                    all.push((r.clone(), s));
                }
            }
            match output {
                Output::Json => {
                    let list: Vec<serde_json::Value> = all
                        .iter()
                        .map(|(r, s)| {
                            let mut v = serde_json::to_value(s).unwrap_or_default();
                            v["repo"] = serde_json::Value::String(r.clone());
                            v
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                }
                Output::Text => {
                    println!(
                        "{:<24} {:<20} {:<16} {:<22} {:<24} LAST RUN",
                        "REPOSITORY", "WORKFLOW", "BRANCH", "EXPRESSION", "NEXT"
                    );
                    for (r, s) in &all {
                        println!(
                            "{:<24} {:<20} {:<16} {:<22} {:<24} {}",
                            r,
                            s.workflow,
                            s.branch,
                            s.expression,
                            s.next_fire_at_ms.map_or_else(|| "never".into(), utc),
                            s.last_run.map_or_else(|| "-".into(), |n| format!("#{n}"))
                        );
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_unix_milliseconds() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_780_000_000_123), "2026-05-28 20:26:40 UTC");
        assert_eq!(super::utc(951_825_600_000), "2000-02-29 12:00:00 UTC");
    }

    #[test]
    fn deploy_lines_name_the_environment_and_what_the_deploy_waits_for() {
        let mut d = cove_api::JobDeployment {
            environment: "prod".into(),
            state: "waiting_approval".into(),
            reason: None,
            waiting: Some("waiting for 1 approval(s) from olga".into()),
        };
        assert_eq!(
            super::deploy_line("DeployProd", &d),
            "deploy DeployProd to prod: waiting_approval (waiting for 1 approval(s) from olga)"
        );
        d.state = "refused".into();
        d.waiting = None;
        d.reason = Some("branch `x` may not deploy to environment `prod`".into());
        assert_eq!(
            super::deploy_line("DeployProd", &d),
            "deploy DeployProd to prod: refused: branch `x` may not deploy to environment `prod`"
        );
    }
}
