//! The board: its columns in order with their cards (`GET …/board`), and the columns
//! themselves (`PUT …/board/columns`, owners). Moving a card is `POST …/issues/{n}/move`.

use axum::extract::State;
use axum::Extension;
use cove_api::{Board, BoardColumn, RepoAccess, Role, SetColumns};

use super::{done_column, issue_dto, MAX_COLUMNS, MAX_COLUMN_BYTES};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Json;
use crate::store::{ColumnRow, RepoRow, StoreError};
use crate::AppState;

async fn board_of(
    state: &AppState,
    repo: &RepoRow,
    columns: Vec<ColumnRow>,
) -> Result<Board, ApiError> {
    let issues = state.store().board_issues(repo.id).await?;
    let done = done_column(&columns);
    let out = columns
        .into_iter()
        .map(|c| {
            let cards: Vec<_> = issues
                .iter()
                .filter(|i| i.column_id == c.id)
                .map(|i| issue_dto(repo, i, done))
                .collect();
            BoardColumn {
                name: c.name,
                limit: c.limit,
                count: cards.len() as u64,
                issues: cards,
            }
        })
        .collect();
    Ok(Board {
        repo: format!("{}/{}", repo.owner, repo.name),
        columns: out,
    })
}

pub async fn get_board(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Board>, ApiError> {
    let columns = state.store().board_columns(repo.id).await?;
    Ok(Json(board_of(&state, &repo, columns).await?))
}

pub async fn set_columns(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(req): Json<SetColumns>,
) -> Result<Json<Board>, ApiError> {
    if req.columns.is_empty() || req.columns.len() > MAX_COLUMNS {
        return Err(ApiError::BadRequest(format!(
            "a board has 1 to {MAX_COLUMNS} columns"
        )));
    }
    let mut columns: Vec<(String, Option<u32>)> = Vec::new();
    for spec in &req.columns {
        let name = spec.name.trim();
        if name.is_empty() || name.len() > MAX_COLUMN_BYTES || name.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(format!(
                "column name {name:?}: 1 to {MAX_COLUMN_BYTES} bytes, no control character"
            )));
        }
        if columns.iter().any(|(n, _)| n == name) {
            return Err(ApiError::BadRequest(format!(
                "column {name:?} appears twice"
            )));
        }
        if spec.limit == Some(0) {
            return Err(ApiError::BadRequest(format!(
                "column {name:?}: a limit is 1 or more (leave it out for none)"
            )));
        }
        columns.push((name.to_string(), spec.limit));
    }
    let stored = match state.store().set_board_columns(repo.id, &columns).await {
        Ok(c) => c,
        Err(StoreError::Conflict(message)) => return Err(ApiError::Conflict(message)),
        Err(e) => return Err(e.into()),
    };
    Ok(Json(board_of(&state, &repo, stored).await?))
}

/// The caller's role on the repository (its route needs the reader role, so there is one).
pub async fn access(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<RepoAccess>, ApiError> {
    let role = crate::auth::role_of_user(state.store(), &principal.user, &repo)
        .await?
        .unwrap_or(Role::Reader);
    let project = state.store().project_of_repo(repo.id).await?;
    Ok(Json(RepoAccess {
        role,
        can_write: role >= Role::Writer,
        estimate_kind: project
            .as_ref()
            .map(|p| p.estimate_kind)
            .unwrap_or_default(),
        project: project.map(|p| p.name),
    }))
}
