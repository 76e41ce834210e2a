//! `cove pr …`: pull requests — create, list, show, diff, comment, review, merge, close, and
//! checkout (the source branch into the local clone with the git CLI, or `--env`: "Open in
//! environment" on the server).

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use cove_api::{
    CreateComment, CreatePullRequest, CreateReview, EnvState, Environment, MergeMethod,
    MergeRequest, Mergeability, OpenPullEnvironment, PullCheck, PullComment, PullDiff, PullRequest,
    PullReview, ReviewVerdict,
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
    /// Fetch pull request N's source branch into this clone and check it out (run inside a
    /// clone whose remote is the repository on this server); with --env, open it in a dev
    /// environment of yours on the server instead (reused when you have one on that branch).
    Checkout {
        number: i64,
        /// OWNER/NAME or NAME (default: the repository this clone's remote points at).
        #[arg(long)]
        repo: Option<String>,
        /// Open the pull request in a dev environment (created, or your live one reused).
        #[arg(long)]
        env: bool,
        /// With --env: the devfile path in the repository.
        #[arg(long, requires = "env")]
        devfile: Option<String>,
        /// With --env: small, medium (default) or large.
        #[arg(long, requires = "env")]
        size: Option<String>,
        /// With --env: return at once instead of waiting until it runs.
        #[arg(long, requires = "env")]
        no_wait: bool,
        #[arg(long, value_enum, default_value_t, requires = "env")]
        output: Output,
    },
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
        PrCommand::Checkout {
            number,
            repo,
            env,
            devfile,
            size,
            no_wait,
            output,
        } => {
            if env {
                let repo = match repo {
                    Some(r) => repo_full_name(&client, &r)?,
                    None => checkout::clone_remote(&client, None)?.1,
                };
                open_in_environment(&client, &repo, number, devfile, size, no_wait, output)?;
            } else {
                checkout::checkout(&client, repo.as_deref(), number)?;
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

/// `cove pr checkout N --env`: the server's "Open in environment", then the environment as
/// `cove env create` prints it, with how to get a shell in it.
fn open_in_environment(
    client: &Client,
    repo: &str,
    number: i64,
    devfile_path: Option<String>,
    size: Option<String>,
    no_wait: bool,
    output: Output,
) -> Result<()> {
    let (status, env): (u16, Environment) = client.post_with_status(
        &format!("/repos/{repo}/pulls/{number}/environment"),
        &OpenPullEnvironment { devfile_path, size },
    )?;
    let reused = status == 200;
    eprintln!(
        "{} environment {} ({}) for {} @ {} (pull request #{number})",
        if reused { "reusing your" } else { "creating" },
        env.name,
        env.id,
        env.repo,
        env.branch
    );
    let env = if no_wait || env.state == EnvState::Running {
        env
    } else {
        let after = if reused {
            crate::env::last_event(client, &env.id)?
        } else {
            0
        };
        crate::env::wait(client, &env.id, EnvState::Running, after)?
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&env)?),
        Output::Text => {
            crate::env::print_env(&env);
            println!("  shell:       cove env exec {}", env.id);
            println!("  run:         cove env exec {} -- COMMAND…", env.id);
            println!("  web:         {}/#/envs/{}", client.url(), env.id);
        }
    }
    Ok(())
}

pub(crate) mod checkout {
    //! `cove pr checkout N`: like `gh pr checkout`, with the git CLI in the current clone.
    //! The clone's remote that points at this server (`{url}/git/OWNER/NAME[.git]`) names
    //! the repository; git gets the CLI's own token for that server only (as an
    //! `http.<url>.extraHeader` in `GIT_CONFIG_*` variables of the git process, never on its
    //! command line or in the clone's configuration).

    use std::process::{Command, Output};

    use anyhow::{anyhow, bail, Result};
    use cove_api::PullRequest;

    use crate::client::Client;

    /// `url` without a user name or password (`http://user:pw@host/…` → `http://host/…`).
    pub(super) fn without_userinfo(url: &str) -> String {
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_string();
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        format!("{}://{host}{path}", scheme.to_ascii_lowercase())
    }

    /// The `OWNER/NAME` of a remote URL on the server at `server` (the CLI's URL), if it is one.
    pub(super) fn repo_of_remote(server: &str, remote: &str) -> Option<String> {
        let prefix = format!("{}/git/", without_userinfo(server.trim_end_matches('/')));
        let remote = without_userinfo(remote.trim_end_matches('/'));
        let rest = remote.strip_prefix(&prefix)?;
        let rest = rest.strip_suffix(".git").unwrap_or(rest);
        let (owner, name) = rest.split_once('/')?;
        (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| format!("{owner}/{name}"))
    }

    fn git(args: &[&str]) -> Result<Output> {
        Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| anyhow!("cannot run git: {e} (is git installed?)"))
    }

    fn stdout(out: &Output) -> String {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn stderr(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    /// The clone's remote on this server (`--repo` picks among several): (remote, OWNER/NAME).
    pub(crate) fn clone_remote(client: &Client, want: Option<&str>) -> Result<(String, String)> {
        let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
        if !inside.status.success() || stdout(&inside) != "true" {
            bail!(
                "not inside a git clone: run `cove pr checkout` in a clone of the repository \
                 (git clone {}/git/OWNER/NAME.git), or use --env --repo OWNER/NAME",
                client.url()
            );
        }
        let remotes = git(&["remote"])?;
        let mut found: Vec<(String, String)> = Vec::new();
        for remote in stdout(&remotes)
            .lines()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let url = git(&["remote", "get-url", remote])?;
            if let Some(repo) = repo_of_remote(client.url(), &stdout(&url)) {
                found.push((remote.to_string(), repo));
            }
        }
        if let Some(want) = want {
            found.retain(|(_, repo)| repo == want);
        }
        let mut repos: Vec<&str> = found.iter().map(|(_, r)| r.as_str()).collect();
        repos.dedup();
        match repos.len() {
            0 => bail!(
                "no remote of this clone is {} on {} (expected a remote URL like {}/git/OWNER/NAME.git)",
                want.unwrap_or("a repository"),
                client.url(),
                client.url()
            ),
            1 => {}
            _ => bail!(
                "this clone has remotes for several repositories on {} ({}): pick one with --repo",
                client.url(),
                repos.join(", ")
            ),
        }
        let pick = found
            .iter()
            .find(|(remote, _)| remote == "origin")
            .unwrap_or(&found[0]);
        Ok(pick.clone())
    }

    /// git with the CLI's token for this server only (`GIT_CONFIG_*`, after any the caller has).
    fn authed_git(client: &Client, args: &[&str]) -> Result<Output> {
        let first: usize = std::env::var("GIT_CONFIG_COUNT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let key = format!("http.{}/.extraHeader", without_userinfo(client.url()));
        Command::new("git")
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", (first + 1).to_string())
            .env(format!("GIT_CONFIG_KEY_{first}"), key)
            .env(
                format!("GIT_CONFIG_VALUE_{first}"),
                format!("Authorization: Bearer {}", client.token()),
            )
            .output()
            .map_err(|e| anyhow!("cannot run git: {e} (is git installed?)"))
    }

    /// Fetches pull request `number`'s source branch from the clone's remote on this server
    /// and checks it out: a new local branch of that name tracking it, or the existing local
    /// branch fast-forwarded to it.
    pub(super) fn checkout(client: &Client, repo: Option<&str>, number: i64) -> Result<()> {
        let want = repo.map(|r| super::repo_full_name(client, r)).transpose()?;
        let (remote, repo) = clone_remote(client, want.as_deref())?;
        let pr: PullRequest = client.get(&format!("/repos/{repo}/pulls/{number}"))?;
        let branch = pr.source.clone();
        let tracking = format!("refs/remotes/{remote}/{branch}");
        let fetched = authed_git(
            client,
            &[
                "fetch",
                "--quiet",
                &remote,
                &format!("+refs/heads/{branch}:{tracking}"),
            ],
        )?;
        if !fetched.status.success() {
            let err = stderr(&fetched);
            if err.contains("couldn't find remote ref") {
                bail!(
                    "the source branch {branch} of pull request #{number} no longer exists in {repo}"
                );
            }
            bail!("git fetch {remote} {branch} failed: {err}");
        }
        let local = format!("refs/heads/{branch}");
        let exists = git(&["show-ref", "--verify", "--quiet", &local])?
            .status
            .success();
        if exists {
            let out = git(&["checkout", "--quiet", &branch])?;
            if !out.status.success() {
                bail!("git checkout {branch} failed: {}", stderr(&out));
            }
            let out = git(&["merge", "--ff-only", "--quiet", &tracking])?;
            if !out.status.success() {
                bail!(
                    "your local branch {branch} has commits the pull request does not: \
                     it was not moved (git merge --ff-only {tracking}: {})",
                    stderr(&out)
                );
            }
        } else {
            let out = git(&[
                "checkout",
                "--quiet",
                "-b",
                &branch,
                "--track",
                &format!("{remote}/{branch}"),
            ])?;
            if !out.status.success() {
                bail!("git checkout -b {branch} failed: {}", stderr(&out));
            }
        }
        println!(
            "switched to branch {branch} at {} (pull request #{number} of {repo}: {}, {})",
            pr.head_sha.get(..8).unwrap_or(&pr.head_sha),
            pr.title,
            pr.state.as_str()
        );
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn remotes_on_this_server_name_their_repository() {
            let server = "http://127.0.0.1:8080";
            assert_eq!(
                repo_of_remote(server, "http://127.0.0.1:8080/git/olga/app.git").as_deref(),
                Some("olga/app")
            );
            assert_eq!(
                repo_of_remote(server, "http://x:cove_tok@127.0.0.1:8080/git/olga/app").as_deref(),
                Some("olga/app")
            );
            assert_eq!(
                repo_of_remote(
                    "https://h.example/cove/",
                    "https://h.example/cove/git/a/b.git/"
                )
                .as_deref(),
                Some("a/b")
            );
            for other in [
                "http://127.0.0.1:9090/git/olga/app.git",
                "https://127.0.0.1:8080/git/olga/app.git",
                "http://127.0.0.1:8080/olga/app.git",
                "http://127.0.0.1:8080/git/olga/app/extra.git",
                "git@127.0.0.1:olga/app.git",
                "/srv/git/olga/app.git",
            ] {
                assert_eq!(repo_of_remote(server, other), None, "{other}");
            }
        }
    }
}
