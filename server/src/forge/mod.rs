//! The forge: branch rules (`rules.rs`: the model, pure checks and merge requirements;
//! `rules_push.rs`: enforcement on push; `rules_http.rs`: the routes' handlers) and pull requests (issue 15) — a source branch proposed for a destination branch
//! of the same repository, with revisions (each push to the source), a diff against the
//! merge base (`diff.rs`), comments and reviews, and a server-side merge (`merge.rs`) that is
//! recorded as a push. REST handlers in `http.rs` (comments and reviews: `reviews.rs`; "Open in environment": `open_env.rs`); their routes and authorization stay in the
//! one route table (`crate::routes`). SQL in `crate::store::pulls`.
//!
//! Mirrors of external repositories (fetched on the upstream forge's push webhook) are in
//! `mirror/` (docs/mirrors.md).
//!
//! Every pull-request event is stored in `pr_events` in the same transaction as the change
//! it records, then published on [`AppState::subscribe_pulls`].

pub mod diff;
pub mod http;
pub mod merge;
pub mod open_env;
pub mod reviews;
pub mod rules;
pub mod rules_http;
pub mod rules_push;

// Mirrors of external repositories (docs/mirrors.md).
pub mod mirror;

use cove_api::{PullEvent, ZERO_SHA};

use crate::store::{PullEventRow, PushEventRow, RepoRow};
use crate::AppState;

/// Longest title, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;
/// Longest description (Markdown source), in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
/// Longest comment or review body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most required reviewers on one pull request.
pub const MAX_REVIEWERS: usize = 20;

/// The wire form of a stored pull-request event.
pub fn event_dto(repo: &RepoRow, number: i64, row: PullEventRow) -> PullEvent {
    PullEvent {
        id: row.id,
        kind: row.kind,
        repo: format!("{}/{}", repo.owner, repo.name),
        number,
        actor: row.actor,
        detail: row.detail,
        created_at_ms: row.created_at_ms,
    }
}

/// Publishes a committed pull-request event to subscribers (notifications) and starts the
/// workflows its PULLREQUEST triggers match (`crate::runs::pulls`).
pub fn published(state: &AppState, repo: &RepoRow, number: i64, row: PullEventRow) {
    tracing::info!(
        repo = %format!("{}/{}", repo.owner, repo.name),
        number,
        kind = %row.kind,
        "pull request event stored"
    );
    notify_pull_event(state, repo, number, &row);
    // Issues (issue 16): `Fixes #N` in a merged pull request moves issue N to done.
    if row.kind == "pr_merged" {
        crate::issues::on_pull_merged(state, repo, number);
    }
    crate::runs::pulls::spawn_on_pull_event(state, &row);
    state.publish_pull(event_dto(repo, number, row));
}

/// Notification targets hear of opened pull requests (and the reviewers they name) and merges
/// (`crate::notify`); the other kinds are not notification events.
fn notify_pull_event(state: &AppState, repo: &RepoRow, number: i64, row: &PullEventRow) {
    use crate::notify::{Event, EventKind};
    if row.kind != "pr_opened" && row.kind != "pr_merged" {
        return;
    }
    let (state, repo_id, kind) = (state.clone(), repo.id, row.kind.clone());
    let full = format!("{}/{}", repo.owner, repo.name);
    let (event_id, actor, detail) = (
        row.id,
        row.actor.clone().unwrap_or_default(),
        row.detail.clone(),
    );
    tokio::spawn(async move {
        let link = Some(format!("/repos/{full}/pulls/{number}"));
        let pull = state.store().pull(repo_id, number).await.ok().flatten();
        let title = pull.as_ref().map(|p| p.title.clone()).unwrap_or_default();
        let reviewers = pull.map(|p| p.reviewers).unwrap_or_default();
        if kind == "pr_merged" {
            let event = Event {
                kind: EventKind::PrMerged,
                key: format!("pr_merged:{event_id}"),
                text: format!("{full}: #{number} {title} merged by {actor}"),
                link,
                data: serde_json::json!({ "pr": number, "merged_by": actor, "merge_commit": detail }),
            };
            crate::notify::emit(&state, repo_id, event).await;
            return;
        }
        let opened = Event {
            kind: EventKind::PrOpened,
            key: format!("pr_opened:{event_id}"),
            text: format!("{full}: #{number} {title} opened by {actor}"),
            link: link.clone(),
            data: serde_json::json!({ "pr": number, "author": actor, "reviewers": reviewers }),
        };
        crate::notify::emit(&state, repo_id, opened).await;
        for reviewer in reviewers {
            let requested = Event {
                kind: EventKind::ReviewRequested,
                key: format!("review_requested:{event_id}:{reviewer}"),
                text: format!("{full}: {reviewer}, your review is requested on #{number} {title}"),
                link: link.clone(),
                data: serde_json::json!({ "pr": number, "author": actor, "reviewers": [&reviewer] }),
            };
            crate::notify::emit_to(&state, repo_id, requested, &[reviewer]).await;
        }
    });
}

/// Called after a push's events are stored (by `crate::git` and by a merge): every open pull
/// request whose source branch moved gets a new revision (approvals go stale per the
/// repository's setting) and a `pr_revision` event. Failures are logged: the push stands.
pub async fn after_push(
    state: &AppState,
    repo: &RepoRow,
    pusher: Option<&str>,
    events: &[PushEventRow],
) {
    for event in events {
        let Some(branch) = event.ref_name.strip_prefix("refs/heads/") else {
            continue;
        };
        if event.new_sha == ZERO_SHA {
            continue;
        }
        if let Err(error) = revise(state, repo, branch, &event.new_sha, pusher).await {
            tracing::warn!(
                repo = %format!("{}/{}", repo.owner, repo.name),
                branch,
                error = %error,
                "could not record a pull request revision"
            );
        }
    }
    // Issues (issue 16): `Fixes #N` in commits pushed to the default branch.
    crate::issues::after_push(state, repo, pusher, events).await;
    // Prebuilds (issue 19): branches that prebuild queue one.
    crate::envs::prebuild::after_push(state, repo, events).await;
}

async fn revise(
    state: &AppState,
    repo: &RepoRow,
    branch: &str,
    new_head: &str,
    pusher: Option<&str>,
) -> Result<(), crate::error::ApiError> {
    let pulls = state.store().open_pulls_from(repo.id, branch).await?;
    if pulls.is_empty() {
        return Ok(());
    }
    let settings = state.store().pull_settings(repo.id).await?;
    let path = crate::repos::repo_dir(state, repo);
    for pull in pulls {
        if pull.head_sha == new_head {
            continue;
        }
        let (_, base) =
            diff::branch_heads(path.clone(), branch.into(), pull.destination.clone()).await?;
        let base = base.unwrap_or_else(|| pull.base_sha.clone());
        if let Some((_, event)) = state
            .store()
            .add_revision(&pull, new_head, &base, settings.stale_approvals, pusher)
            .await?
        {
            published(state, repo, pull.number, event);
        }
    }
    Ok(())
}

/// Start-up reconciliation: every open pull request whose source branch on disk is not at its
/// recorded head gets a revision (no pusher), as if the push had been seen.
pub async fn reconcile(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let mut revised = 0;
    let pulls = state.store().all_open_pulls().await?;
    if pulls.is_empty() {
        return Ok(0);
    }
    let repos: std::collections::HashMap<i64, RepoRow> = state
        .store()
        .list_repos(0, true)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    for pull in pulls {
        let Some(repo) = repos.get(&pull.repo_id) else {
            continue;
        };
        let path = crate::repos::repo_dir(state, repo);
        let heads = diff::branch_heads(path, pull.source.clone(), pull.destination.clone()).await;
        let Ok((Some(head), base)) = heads else {
            continue;
        };
        if head == pull.head_sha {
            continue;
        }
        let settings = state.store().pull_settings(repo.id).await?;
        let base = base.unwrap_or_else(|| pull.base_sha.clone());
        if let Some((_, event)) = state
            .store()
            .add_revision(&pull, &head, &base, settings.stale_approvals, None)
            .await?
        {
            revised += 1;
            published(state, repo, pull.number, event);
        }
    }
    if revised > 0 {
        tracing::warn!(
            revised,
            "recorded pull request revisions of pushes seen at start-up"
        );
    }
    Ok(revised)
}
