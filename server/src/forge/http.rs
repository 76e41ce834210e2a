//! The pull-request handlers. Their routes and the role each needs (readers read; writers
//! open, comment, review and merge) are in the one route table (`crate::routes`); the
//! handlers add what a role cannot say: only the author or a repository owner edits or
//! closes a pull request, only a comment's author edits it, its author or an administrator
//! deletes it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    CreatePullRequest, MergeMethod, MergeRequest, Mergeability, PullCheck, PullCommit, PullDiff,
    PullEvent, PullRequest, PullRevision, PullSettings, PullState, ReviewerStatus, Role,
    UpdatePullRequest,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::merge::{self, MergeJob};
use super::{diff, event_dto, published};
use super::{MAX_BODY_BYTES, MAX_DESCRIPTION_BYTES, MAX_REVIEWERS, MAX_TITLE_BYTES};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::extract::{self, Json, Path, Query};
use crate::store::{NewPull, PullRow, RepoRow, ReviewRow, UserRow};
use crate::AppState;

pub use super::reviews::{
    create_comment, create_review, delete_comment, edit_comment, list_comments, list_reviews,
};

pub(crate) type Params = Path<BTreeMap<String, String>>;

fn pull_dto(repo: &RepoRow, pull: &PullRow, reviews: &[ReviewRow]) -> PullRequest {
    let verdicts = merge::standing_verdicts(reviews);
    PullRequest {
        number: pull.number,
        repo: format!("{}/{}", repo.owner, repo.name),
        source: pull.source.clone(),
        destination: pull.destination.clone(),
        title: pull.title.clone(),
        description: pull.description.clone(),
        author: pull.author.clone(),
        state: pull.state,
        head_sha: pull.head_sha.clone(),
        base_sha: pull.base_sha.clone(),
        merge_sha: pull.merge_sha.clone(),
        revision: pull.revision,
        reviewers: pull
            .reviewers
            .iter()
            .map(|r| ReviewerStatus {
                username: r.clone(),
                verdict: verdicts.get(r).copied(),
            })
            .collect(),
        created_at_ms: pull.created_at_ms,
        updated_at_ms: pull.updated_at_ms,
    }
}

pub(crate) fn param_i64(params: &BTreeMap<String, String>, key: &str) -> Result<i64, ApiError> {
    let text = params.get(key).map(String::as_str).unwrap_or_default();
    text.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{key} must be a positive number: {text:?}")))
}

pub(crate) async fn load_pull(
    state: &AppState,
    repo: &RepoRow,
    params: &BTreeMap<String, String>,
) -> Result<PullRow, ApiError> {
    let number = param_i64(params, "number")?;
    state
        .store()
        .pull(repo.id, number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("pull request #{number}")))
}

fn check_branch(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || !git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
    {
        return Err(ApiError::BadRequest(format!(
            "{what} is not a valid branch name: {name:?}"
        )));
    }
    Ok(())
}

pub(crate) fn check_text(
    what: &str,
    text: &str,
    max: usize,
    required: bool,
) -> Result<(), ApiError> {
    if required && text.trim().is_empty() {
        return Err(ApiError::BadRequest(format!("{what} must not be empty")));
    }
    if text.len() > max {
        return Err(ApiError::BadRequest(format!(
            "{what} is {} bytes; at most {max} are accepted",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(ApiError::BadRequest(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Reviewers must exist and be able to read the repository.
async fn check_reviewers(
    state: &AppState,
    repo: &RepoRow,
    author: &str,
    names: &[String],
) -> Result<Vec<String>, ApiError> {
    if names.len() > MAX_REVIEWERS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_REVIEWERS} required reviewers"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let user = state
            .store()
            .user_by_name(name)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("reviewer {name:?} is not a user")))?;
        if user.username == author {
            return Err(ApiError::BadRequest(
                "the author cannot be a required reviewer of their own pull request".into(),
            ));
        }
        if auth::role_of_user(state.store(), &user, repo)
            .await?
            .is_none()
        {
            return Err(ApiError::BadRequest(format!(
                "reviewer {name} cannot read {}/{}",
                repo.owner, repo.name
            )));
        }
        if !out.contains(&user.username) {
            out.push(user.username);
        }
    }
    Ok(out)
}

/// The caller is the author or holds the owner role (administrators do).
async fn author_or_owner(
    state: &AppState,
    repo: &RepoRow,
    pull: &PullRow,
    user: &UserRow,
) -> Result<(), ApiError> {
    if pull.author_id == user.id
        || auth::role_of_user(state.store(), user, repo).await? == Some(Role::Owner)
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only the pull request's author or a repository owner may do this".into(),
        ))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `open` (default), `merged`, `closed` or `all`.
    state: Option<String>,
    /// How many, newest first (default 100; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

pub async fn list_pulls(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<PullRequest>>, ApiError> {
    let limit = extract::limit(query.limit, 100, 1000)?;
    let filter = match query.state.as_deref() {
        None | Some("open") => Some(PullState::Open),
        Some("all") => None,
        Some(s) => Some(PullState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "state must be open, merged, closed or all (got {s:?})"
            ))
        })?),
    };
    let pulls = state.store().list_pulls(repo.id, filter, limit).await?;
    let mut out = Vec::with_capacity(pulls.len());
    for pull in &pulls {
        let reviews = state.store().reviews(pull.id).await?;
        out.push(pull_dto(&repo, pull, &reviews));
    }
    Ok(Json(out))
}

pub async fn create_pull(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreatePullRequest>,
) -> Result<(StatusCode, Json<PullRequest>), ApiError> {
    let destination = req
        .destination
        .clone()
        .unwrap_or_else(|| repo.default_branch.clone());
    check_branch("source", &req.source)?;
    check_branch("destination", &destination)?;
    check_text("title", &req.title, MAX_TITLE_BYTES, true)?;
    check_text(
        "description",
        &req.description,
        MAX_DESCRIPTION_BYTES,
        false,
    )?;
    if req.source == destination {
        return Err(ApiError::BadRequest(
            "source and destination are the same branch".into(),
        ));
    }
    let reviewers =
        check_reviewers(&state, &repo, &principal.user.username, &req.reviewers).await?;
    let path = crate::repos::repo_dir(&state, &repo);
    let (head, base) = diff::branch_heads(path, req.source.clone(), destination.clone()).await?;
    let head = head.ok_or_else(|| ApiError::NotFound(format!("branch {}", req.source)))?;
    let base = base.ok_or_else(|| ApiError::NotFound(format!("branch {destination}")))?;
    let open = state.store().open_pulls_from(repo.id, &req.source).await?;
    if let Some(existing) = open.iter().find(|p| p.destination == destination) {
        return Err(ApiError::Conflict(format!(
            "pull request #{} already proposes {} for {destination}",
            existing.number, req.source
        )));
    }
    let (pull, event) = state
        .store()
        .insert_pull(&NewPull {
            repo_id: repo.id,
            source: &req.source,
            destination: &destination,
            title: req.title.trim(),
            description: &req.description,
            author_id: principal.user.id,
            author: &principal.user.username,
            head_sha: &head,
            base_sha: &base,
            reviewers: &reviewers,
        })
        .await?;
    published(&state, &repo, pull.number, event);
    Ok((StatusCode::CREATED, Json(pull_dto(&repo, &pull, &[]))))
}

pub async fn get_pull(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<PullRequest>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let reviews = state.store().reviews(pull.id).await?;
    Ok(Json(pull_dto(&repo, &pull, &reviews)))
}

pub async fn update_pull(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<UpdatePullRequest>,
) -> Result<Json<PullRequest>, ApiError> {
    let mut pull = load_pull(&state, &repo, &params).await?;
    author_or_owner(&state, &repo, &pull, &principal.user).await?;
    if let Some(title) = &req.title {
        check_text("title", title, MAX_TITLE_BYTES, true)?;
        pull.title = title.trim().to_string();
    }
    if let Some(description) = &req.description {
        check_text("description", description, MAX_DESCRIPTION_BYTES, false)?;
        pull.description = description.clone();
    }
    if let Some(reviewers) = &req.reviewers {
        pull.reviewers = check_reviewers(&state, &repo, &pull.author, reviewers).await?;
    }
    state.store().update_pull(&pull).await?;
    let reviews = state.store().reviews(pull.id).await?;
    Ok(Json(pull_dto(&repo, &pull, &reviews)))
}

pub async fn close_pull(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<Json<PullRequest>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    author_or_owner(&state, &repo, &pull, &principal.user).await?;
    if pull.state != PullState::Open {
        return Err(ApiError::Conflict(format!(
            "pull request #{} is {}",
            pull.number,
            pull.state.as_str()
        )));
    }
    let event = state
        .store()
        .end_pull(&pull, PullState::Closed, None, &principal.user.username)
        .await?
        .ok_or_else(|| ApiError::Conflict("the pull request changed; try again".into()))?;
    published(&state, &repo, pull.number, event);
    let pull = load_pull(&state, &repo, &params).await?;
    let reviews = state.store().reviews(pull.id).await?;
    Ok(Json(pull_dto(&repo, &pull, &reviews)))
}

/// The destination's commit to diff against: the stored base once merged or closed (the
/// destination then contains the change), the destination's head while open.
async fn diff_base(state: &AppState, repo: &RepoRow, pull: &PullRow) -> Result<String, ApiError> {
    if pull.state != PullState::Open {
        return Ok(pull.base_sha.clone());
    }
    let path = crate::repos::repo_dir(state, repo);
    let (_, dest) = diff::branch_heads(path, pull.source.clone(), pull.destination.clone()).await?;
    Ok(dest.unwrap_or_else(|| pull.base_sha.clone()))
}

pub async fn pull_diff(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<PullDiff>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let base = diff_base(&state, &repo, &pull).await?;
    let path = crate::repos::repo_dir(&state, &repo);
    Ok(Json(diff::pull_diff(path, base, pull.head_sha).await?))
}

pub async fn pull_commits(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullCommit>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let base = diff_base(&state, &repo, &pull).await?;
    let path = crate::repos::repo_dir(&state, &repo);
    Ok(Json(diff::pull_commits(path, base, pull.head_sha).await?))
}

pub async fn pull_revisions(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullRevision>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    Ok(Json(state.store().pull_revisions(pull.id).await?))
}

/// The checks of the pull request: the latest run of each workflow on its head commit.
pub async fn pull_checks(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullCheck>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let runs = crate::runs::pulls::checks(&state, repo.id, &pull.head_sha).await?;
    Ok(Json(
        runs.into_iter()
            .map(|run| PullCheck {
                name: run.workflow,
                state: run.state,
                run_number: run.number,
                run_id: run.id,
                trigger: run.trigger_kind,
                commit: run.commit_sha,
                created_at_ms: run.created_at_ms,
            })
            .collect(),
    ))
}

pub async fn list_events(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullEvent>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let rows = state.store().pull_events(pull.id).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| event_dto(&repo, pull.number, r))
            .collect(),
    ))
}

/// Every reason the caller could not merge now (requirements, then a conflict check).
async fn reasons_for(
    state: &AppState,
    repo: &RepoRow,
    pull: &PullRow,
    user: &UserRow,
) -> Result<Vec<String>, ApiError> {
    let mut reasons = merge::requirements(state, repo, pull, user).await?;
    if pull.state == PullState::Open {
        let path = crate::repos::repo_dir(state, repo);
        let (head, dest) =
            diff::branch_heads(path.clone(), pull.source.clone(), pull.destination.clone()).await?;
        match (head, dest) {
            (Some(head), Some(dest)) => {
                if merge::conflicts(path, dest, head).await? {
                    reasons.push("the source conflicts with the destination".into());
                }
            }
            (None, _) => reasons.push(format!("the source branch {} is gone", pull.source)),
            (_, None) => reasons.push(format!(
                "the destination branch {} is gone",
                pull.destination
            )),
        }
    }
    Ok(reasons)
}

pub async fn mergeability(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<Json<Mergeability>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let reasons = reasons_for(&state, &repo, &pull, &principal.user).await?;
    Ok(Json(Mergeability {
        mergeable: reasons.is_empty(),
        reasons,
    }))
}

pub async fn merge_pull(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<MergeRequest>,
) -> Result<Json<PullRequest>, ApiError> {
    let settings = state.store().pull_settings(repo.id).await?;
    if !settings.allowed_merge_methods.contains(&req.method) {
        return Err(ApiError::Conflict(format!(
            "cannot merge: this repository does not allow {} (allowed: {})",
            req.method.as_str(),
            settings
                .allowed_merge_methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(message) = &req.message {
        check_text("message", message, MAX_BODY_BYTES, true)?;
    }
    // Serialized with pushes: the pull request and the refs are read and changed under the
    // repository's lock.
    let _guard = crate::cluster::lock_repo(&state, repo.id).await?;
    let pull = load_pull(&state, &repo, &params).await?;
    let reasons = merge::requirements(&state, &repo, &pull, &principal.user).await?;
    if !reasons.is_empty() {
        return Err(ApiError::Conflict(format!(
            "cannot merge: {}",
            reasons.join("; ")
        )));
    }
    let user = &principal.user;
    let email = |name: &str| format!("{name}@cove.invalid");
    let message = req.message.clone().unwrap_or_else(|| match req.method {
        MergeMethod::Squash => format!("{} (#{})\n\n{}", pull.title, pull.number, pull.description),
        _ => format!(
            "Merge pull request #{} from {}\n\n{}",
            pull.number, pull.source, pull.title
        ),
    });
    let author = if req.method == MergeMethod::Squash {
        (pull.author.clone(), email(&pull.author))
    } else {
        (user.username.clone(), email(&user.username))
    };
    let merged = merge::merge(MergeJob {
        path: crate::repos::repo_dir(&state, &repo),
        method: req.method,
        source: pull.source.clone(),
        destination: pull.destination.clone(),
        head: pull.head_sha.clone(),
        message,
        author,
        committer: (user.username.clone(), email(&user.username)),
        delete_source: req.delete_source,
    })
    .await?;
    let merge_sha = merged.update.new_sha.clone();
    let mut updates = vec![merged.update];
    updates.extend(merged.deleted_source);
    // The merge is a push to the destination: recorded like `crate::git` records one, with
    // the merger as pusher, so the destination's PUSH workflows start from it.
    let stored = state
        .store()
        .insert_push_events(&repo, Some(user), &updates)
        .await?;
    let ended = state
        .store()
        .end_pull(&pull, PullState::Merged, Some(&merge_sha), &user.username)
        .await?;
    if let Some(event) = ended {
        published(&state, &repo, pull.number, event);
    }
    super::after_push(&state, &repo, Some(&user.username), &stored).await;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    for event in stored {
        tracing::info!(
            repo = %full_name,
            r#ref = %event.ref_name,
            old = %event.old_sha,
            new = %event.new_sha,
            pusher = event.pusher.as_deref().unwrap_or_default(),
            "push event stored (pull request merge)"
        );
        state.publish(crate::repos::push_event_dto(&full_name, event));
    }
    crate::audit::push(&state, &repo, &user.username, &updates, "ok").await;
    let pull = load_pull(&state, &repo, &params).await?;
    let reviews = state.store().reviews(pull.id).await?;
    Ok(Json(pull_dto(&repo, &pull, &reviews)))
}

pub async fn get_settings(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<PullSettings>, ApiError> {
    Ok(Json(state.store().pull_settings(repo.id).await?))
}

pub async fn set_settings(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(req): Json<PullSettings>,
) -> Result<Json<PullSettings>, ApiError> {
    if req.allowed_merge_methods.is_empty() {
        return Err(ApiError::BadRequest(
            "allowed_merge_methods must name at least one method".into(),
        ));
    }
    let mut methods = Vec::new();
    for m in req.allowed_merge_methods {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let settings = PullSettings {
        allowed_merge_methods: methods,
        stale_approvals: req.stale_approvals,
    };
    state.store().set_pull_settings(repo.id, &settings).await?;
    Ok(Json(settings))
}
