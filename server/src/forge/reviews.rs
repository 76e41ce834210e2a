//! The comment and review handlers of pull requests (routes in `crate::routes`): comments on
//! the PR, on a line of its diff, replies; edits by their author, deletion by their author or
//! an administrator; reviews (approve / request_changes / comment) on the current revision.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    CreateComment, CreateReview, EditComment, PullComment, PullReview, PullState, ReviewVerdict,
};
use std::collections::BTreeMap;

use super::http::{check_text, load_pull, param_i64, Params};
use super::{published, MAX_BODY_BYTES};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{next_id, now_ms, CommentRow, PullRow, RepoRow, ReviewRow};
use crate::AppState;
fn comment_dto(row: CommentRow) -> PullComment {
    PullComment {
        id: row.id,
        parent_id: row.parent_id,
        author: row.author,
        body: row.body,
        path: row.path,
        side: row.side,
        line: row.line,
        commit: row.commit,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

fn review_dto(row: ReviewRow) -> PullReview {
    PullReview {
        id: row.id,
        reviewer: row.reviewer,
        verdict: row.verdict,
        body: row.body,
        revision: row.revision,
        stale: row.stale,
        created_at_ms: row.created_at_ms,
    }
}

pub async fn list_comments(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullComment>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let rows = state.store().comments(pull.id).await?;
    Ok(Json(rows.into_iter().map(comment_dto).collect()))
}

pub async fn create_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<CreateComment>,
) -> Result<(StatusCode, Json<PullComment>), ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    check_text("body", &req.body, MAX_BODY_BYTES, true)?;
    let now = now_ms();
    let mut row = CommentRow {
        id: next_id(),
        pr_id: pull.id,
        parent_id: None,
        author_id: principal.user.id,
        author: principal.user.username.clone(),
        body: req.body.clone(),
        path: None,
        side: None,
        line: None,
        commit: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    if let Some(parent_id) = req.parent_id {
        let parent = state
            .store()
            .comment(pull.id, parent_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("comment {parent_id}")))?;
        // A reply joins its parent's thread (replies to replies join the root).
        row.parent_id = Some(parent.parent_id.unwrap_or(parent.id));
        row.path = parent.path;
        row.side = parent.side;
        row.line = parent.line;
        row.commit = parent.commit;
    } else if let Some(path) = &req.path {
        check_text("path", path, 4096, true)?;
        let line = req.line.filter(|l| *l > 0).ok_or_else(|| {
            ApiError::BadRequest("a line comment needs a line (1 or more)".into())
        })?;
        let side = req.side.clone().unwrap_or_else(|| "new".into());
        if side != "old" && side != "new" {
            return Err(ApiError::BadRequest(format!(
                "side must be old or new (got {side:?})"
            )));
        }
        let commit = req.commit.clone().unwrap_or_else(|| pull.head_sha.clone());
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::BadRequest(format!(
                "commit must be a 40-character commit id (got {commit:?})"
            )));
        }
        row.path = Some(path.clone());
        row.side = Some(side);
        row.line = Some(line);
        row.commit = Some(commit);
    } else if req.line.is_some() || req.side.is_some() || req.commit.is_some() {
        return Err(ApiError::BadRequest(
            "line, side and commit go with a path".into(),
        ));
    }
    let event = state.store().insert_comment(&pull, &row).await?;
    published(&state, &repo, pull.number, event);
    Ok((StatusCode::CREATED, Json(comment_dto(row))))
}

async fn load_comment(
    state: &AppState,
    pull: &PullRow,
    params: &BTreeMap<String, String>,
) -> Result<CommentRow, ApiError> {
    let id = param_i64(params, "comment")?;
    state
        .store()
        .comment(pull.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("comment {id}")))
}

pub async fn edit_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<EditComment>,
) -> Result<Json<PullComment>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let mut comment = load_comment(&state, &pull, &params).await?;
    if comment.author_id != principal.user.id {
        return Err(ApiError::Forbidden(
            "only a comment's author may edit it".into(),
        ));
    }
    check_text("body", &req.body, MAX_BODY_BYTES, true)?;
    state.store().edit_comment(comment.id, &req.body).await?;
    comment.body = req.body;
    comment.updated_at_ms = now_ms();
    Ok(Json(comment_dto(comment)))
}

pub async fn delete_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let comment = load_comment(&state, &pull, &params).await?;
    if comment.author_id != principal.user.id && !principal.user.is_admin {
        return Err(ApiError::Forbidden(
            "only a comment's author or an administrator may delete it".into(),
        ));
    }
    state.store().delete_comment(pull.id, comment.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_reviews(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<PullReview>>, ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    let rows = state.store().reviews(pull.id).await?;
    Ok(Json(rows.into_iter().map(review_dto).collect()))
}

pub async fn create_review(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<CreateReview>,
) -> Result<(StatusCode, Json<PullReview>), ApiError> {
    let pull = load_pull(&state, &repo, &params).await?;
    check_text("body", &req.body, MAX_BODY_BYTES, false)?;
    if pull.state != PullState::Open {
        return Err(ApiError::Conflict(format!(
            "pull request #{} is {}",
            pull.number,
            pull.state.as_str()
        )));
    }
    if req.verdict != ReviewVerdict::Comment && pull.author_id == principal.user.id {
        return Err(ApiError::Forbidden(
            "the author cannot approve or request changes on their own pull request".into(),
        ));
    }
    let row = ReviewRow {
        id: next_id(),
        pr_id: pull.id,
        reviewer_id: principal.user.id,
        reviewer: principal.user.username.clone(),
        verdict: req.verdict,
        body: req.body,
        revision: pull.revision,
        stale: false,
        created_at_ms: now_ms(),
    };
    let event = state.store().insert_review(&pull, &row).await?;
    published(&state, &repo, pull.number, event);
    Ok((StatusCode::CREATED, Json(review_dto(row))))
}
