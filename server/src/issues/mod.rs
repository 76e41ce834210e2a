//! Issues and the board (issue 16; docs/issues.md). Per-repository issues numbered #1, #2, …
//! (their own sequence), whose state is a board column; comments; `@user` mentions and new
//! assignees notify the user (`crate::notify::emit_to`); `Fixes #N` in a merged pull request
//! or in a commit pushed to the default branch moves issue N to the done column (the hooks
//! [`on_pull_merged`] and [`after_push`], called by `crate::forge`).
//!
//! `text.rs`: the pure text rules (mentions, references, closing keywords, branch names);
//! `http.rs`: the issue handlers (list, create, show, edit, move, close, links, branch);
//! `comments.rs`: comment handlers; `board.rs`: the board and its columns. Routes and their
//! roles are in the one route table (`crate::routes`); SQL in `crate::store::issues`.

pub mod board;
pub mod comments;
pub mod http;
pub mod text;

use cove_api::{Issue, ZERO_SHA};

use crate::notify::{Event, EventKind};
use crate::store::{ColumnRow, IssueRow, PushEventRow, RepoRow};
use crate::AppState;

/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;
/// Longest description or comment (Markdown source), in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most assignees of one issue.
pub const MAX_ASSIGNEES: usize = 10;
/// Most labels of one issue, and the longest label.
pub const MAX_LABELS: usize = 20;
pub const MAX_LABEL_BYTES: usize = 50;
/// Most columns of a board; longest column name.
pub const MAX_COLUMNS: usize = 20;
pub const MAX_COLUMN_BYTES: usize = 50;
/// Most users one text notifies.
pub const MAX_MENTIONS: usize = 20;
/// Most commits of one push read for closing keywords.
pub const MAX_PUSH_COMMITS: usize = 1000;

/// The wire form of a stored issue; `done_column` is the board's last column's id.
pub fn issue_dto(repo: &RepoRow, issue: &IssueRow, done_column: i64) -> Issue {
    Issue {
        number: issue.number,
        repo: format!("{}/{}", repo.owner, repo.name),
        title: issue.title.clone(),
        description: issue.description.clone(),
        column: issue.column.clone(),
        done: issue.column_id == done_column,
        rank: issue.rank,
        assignees: issue.assignees.clone(),
        labels: issue.labels.clone(),
        priority: issue.priority,
        estimate: issue.estimate.clone(),
        author: issue.author.clone(),
        created_at_ms: issue.created_at_ms,
        updated_at_ms: issue.updated_at_ms,
    }
}

/// The done column: the board's last.
pub fn done_column(columns: &[ColumnRow]) -> i64 {
    columns.last().map(|c| c.id).unwrap_or_default()
}

fn full_name(repo: &RepoRow) -> String {
    format!("{}/{}", repo.owner, repo.name)
}

/// Of `names`, the users that exist and can read the repository, without `actor`.
async fn readers_among(
    state: &AppState,
    repo: &RepoRow,
    names: &[String],
    actor: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in names.iter().take(MAX_MENTIONS) {
        if name == actor {
            continue;
        }
        let Ok(Some(user)) = state.store().user_by_name(name).await else {
            continue;
        };
        if let Ok(Some(_)) = crate::auth::role_of_user(state.store(), &user, repo).await {
            out.push(user.username);
        }
    }
    out
}

/// Notifies the users `@mentioned` in `text` that `before` did not mention (an edit
/// notifies only the new ones). `source`: `issue` or `comment:<id>`.
pub async fn notify_mentions(
    state: &AppState,
    repo: &RepoRow,
    issue: &IssueRow,
    actor: &str,
    before: &str,
    text: &str,
    source: &str,
) {
    let old = text::mentions(before);
    let new: Vec<String> = text::mentions(text)
        .into_iter()
        .filter(|n| !old.contains(n))
        .collect();
    let full = full_name(repo);
    for user in readers_among(state, repo, &new, actor).await {
        let event = Event {
            kind: EventKind::IssueMentioned,
            key: format!("issue_mentioned:{}:{source}:{user}", issue.id),
            text: format!(
                "{full}: {actor} mentioned {user} in #{} {}",
                issue.number, issue.title
            ),
            link: Some(format!("/repos/{full}/issues/{}", issue.number)),
            data: serde_json::json!({
                "issue": issue.number,
                "title": issue.title,
                "actor": actor,
                "mentioned": [&user],
                "source": source,
            }),
        };
        crate::notify::emit_to(state, repo.id, event, std::slice::from_ref(&user)).await;
    }
}

/// Notifies each of `added` (new assignees) but the actor.
pub async fn notify_assigned(
    state: &AppState,
    repo: &RepoRow,
    issue: &IssueRow,
    actor: &str,
    added: &[String],
) {
    let full = full_name(repo);
    for user in readers_among(state, repo, added, actor).await {
        let event = Event {
            kind: EventKind::IssueAssigned,
            key: format!("issue_assigned:{}:{user}:{}", issue.id, issue.updated_at_ms),
            text: format!(
                "{full}: {actor} assigned #{} {} to {user}",
                issue.number, issue.title
            ),
            link: Some(format!("/repos/{full}/issues/{}", issue.number)),
            data: serde_json::json!({
                "issue": issue.number,
                "title": issue.title,
                "actor": actor,
                "assignees": [&user],
            }),
        };
        crate::notify::emit_to(state, repo.id, event, std::slice::from_ref(&user)).await;
    }
}

/// Moves each issue of `numbers` that is not done to the bottom of the done column. Errors
/// are logged: the merge or push that asked stands.
async fn close_issues(state: &AppState, repo: &RepoRow, numbers: &[i64], why: &str) {
    if numbers.is_empty() {
        return;
    }
    let columns = match state.store().board_columns(repo.id).await {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(error = %error, "cannot read the board to close issues");
            return;
        }
    };
    let done = done_column(&columns);
    for number in numbers {
        let Ok(Some(issue)) = state.store().issue(repo.id, *number).await else {
            continue;
        };
        if issue.column_id == done {
            continue;
        }
        match state
            .store()
            .move_issue(repo.id, issue.id, done, None)
            .await
        {
            Ok(Ok(_)) => tracing::info!(
                repo = %full_name(repo),
                issue = number,
                why,
                "issue moved to the done column"
            ),
            Ok(Err(refusal)) => tracing::warn!(
                repo = %full_name(repo),
                issue = number,
                refusal = ?refusal,
                "issue not moved to the done column"
            ),
            Err(error) => tracing::warn!(
                repo = %full_name(repo),
                issue = number,
                error = %error,
                "issue not moved to the done column"
            ),
        }
    }
}

/// A merged pull request whose title or description says `Fixes #N` moves issue N to done
/// (called by `crate::forge::published` for `pr_merged`).
pub fn on_pull_merged(state: &AppState, repo: &RepoRow, number: i64) {
    let (state, repo) = (state.clone(), repo.clone());
    tokio::spawn(async move {
        let Ok(Some(pull)) = state.store().pull(repo.id, number).await else {
            return;
        };
        let numbers = text::closing_references(&format!("{}\n{}", pull.title, pull.description));
        close_issues(&state, &repo, &numbers, "merged pull request").await;
    });
}

/// Messages of the commits of `new` not reachable from `old` (none: from the root), at most
/// [`MAX_PUSH_COMMITS`].
async fn pushed_messages(
    path: std::path::PathBuf,
    old: String,
    new: String,
) -> Result<Vec<String>, crate::git::GitError> {
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&path)?;
        let mut walk = repo.revwalk()?;
        walk.push(git2::Oid::from_str(&new)?)?;
        if old != ZERO_SHA {
            if let Ok(oid) = git2::Oid::from_str(&old) {
                let _ = walk.hide(oid);
            }
        }
        let mut out = Vec::new();
        for oid in walk.take(MAX_PUSH_COMMITS) {
            let commit = repo.find_commit(oid?)?;
            out.push(commit.message().unwrap_or_default().to_string());
        }
        Ok(out)
    })
    .await?
}

/// Commits pushed to the default branch that say `Fixes #N` move issue N to done (called
/// by `crate::forge::after_push` for pushes, merges and edits). A mirror's sync (pusher
/// `mirror:<forge>`) closes nothing: its commits' numbers name the upstream's issues.
pub async fn after_push(
    state: &AppState,
    repo: &RepoRow,
    pusher: Option<&str>,
    events: &[PushEventRow],
) {
    if pusher.is_some_and(|p| p.starts_with("mirror:")) {
        return;
    }
    let default_ref = format!("refs/heads/{}", repo.default_branch);
    for event in events {
        if event.ref_name != default_ref || event.new_sha == ZERO_SHA {
            continue;
        }
        let path = crate::repos::repo_dir(state, repo);
        let messages =
            match pushed_messages(path, event.old_sha.clone(), event.new_sha.clone()).await {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot read pushed commits for Fixes #N");
                    continue;
                }
            };
        let mut numbers = Vec::new();
        for message in &messages {
            for n in text::closing_references(message) {
                if !numbers.contains(&n) {
                    numbers.push(n);
                }
            }
        }
        close_issues(state, repo, &numbers, "commit on the default branch").await;
    }
}
