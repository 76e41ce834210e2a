//! Comments on issues: any writer comments; only a comment's author edits it; its author or
//! an administrator deletes it. `@user` mentions notify (an edit: only the new ones).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{IssueComment, IssueCommentBody};

use super::http::{load_issue, Params};
use super::MAX_BODY_BYTES;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::forge::http::{check_text, param_i64};
use crate::store::{next_id, now_ms, IssueCommentRow, IssueRow, RepoRow};
use crate::AppState;

fn comment_dto(row: IssueCommentRow) -> IssueComment {
    IssueComment {
        id: row.id,
        author: row.author,
        body: row.body,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
    }
}

async fn load_comment(
    state: &AppState,
    issue: &IssueRow,
    params: &BTreeMap<String, String>,
) -> Result<IssueCommentRow, ApiError> {
    let id = param_i64(params, "comment")?;
    state
        .store()
        .issue_comment(issue.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("comment {id}")))
}

pub async fn list_comments(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
) -> Result<Json<Vec<IssueComment>>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let rows = state.store().issue_comments(issue.id).await?;
    Ok(Json(rows.into_iter().map(comment_dto).collect()))
}

pub async fn create_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<IssueCommentBody>,
) -> Result<(StatusCode, Json<IssueComment>), ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    check_text("body", &req.body, MAX_BODY_BYTES, true)?;
    let now = now_ms();
    let row = IssueCommentRow {
        id: next_id(),
        issue_id: issue.id,
        author_id: principal.user.id,
        author: principal.user.username.clone(),
        body: req.body,
        created_at_ms: now,
        updated_at_ms: now,
    };
    state.store().insert_issue_comment(&row).await?;
    super::notify_mentions(
        &state,
        &repo,
        &issue,
        &principal.user.username,
        "",
        &row.body,
        &format!("comment:{}", row.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(comment_dto(row))))
}

pub async fn edit_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<IssueCommentBody>,
) -> Result<Json<IssueComment>, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let mut comment = load_comment(&state, &issue, &params).await?;
    if comment.author_id != principal.user.id {
        return Err(ApiError::Forbidden(
            "only a comment's author may edit it".into(),
        ));
    }
    check_text("body", &req.body, MAX_BODY_BYTES, true)?;
    state
        .store()
        .edit_issue_comment(comment.id, &req.body)
        .await?;
    let before = std::mem::replace(&mut comment.body, req.body);
    comment.updated_at_ms = now_ms();
    super::notify_mentions(
        &state,
        &repo,
        &issue,
        &principal.user.username,
        &before,
        &comment.body,
        &format!("comment:{}", comment.id),
    )
    .await;
    Ok(Json(comment_dto(comment)))
}

pub async fn delete_comment(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    let issue = load_issue(&state, &repo, &params).await?;
    let comment = load_comment(&state, &issue, &params).await?;
    if comment.author_id != principal.user.id && !principal.user.is_admin {
        return Err(ApiError::Forbidden(
            "only a comment's author or an administrator may delete it".into(),
        ));
    }
    state
        .store()
        .delete_issue_comment(issue.id, comment.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
