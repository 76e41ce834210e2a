//! `GET /api/v1/projects/{project}/board`: the boards of the project's repositories merged
//! into one. Issue numbers and card order stay per repository (each card says its `repo`);
//! columns are merged by name in the order they first appear, repositories by name. Cards are
//! moved on their repository (`POST /repos/{owner}/{name}/issues/{n}/move`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Extension;
use cove_api::{BoardColumn, ProjectBoard};

use super::load;
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::issues::{done_column, issue_dto};
use crate::AppState;

pub async fn project_board(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<ProjectBoard>, ApiError> {
    let name = params
        .get("project")
        .map(String::as_str)
        .unwrap_or_default();
    let project = load(&state, name).await?;
    let mut columns: Vec<BoardColumn> = Vec::new();
    for repo in state.store().project_repos(project.id).await? {
        // a per-repository role may be lower, never none, but check like every read does
        if auth::role_of_user(state.store(), &principal.user, &repo)
            .await?
            .is_none()
        {
            continue;
        }
        let repo_columns = state.store().board_columns(repo.id).await?;
        let done = done_column(&repo_columns);
        let issues = state.store().board_issues(repo.id).await?;
        for column in &repo_columns {
            let at = match columns.iter().position(|c| c.name == column.name) {
                Some(at) => at,
                None => {
                    columns.push(BoardColumn {
                        name: column.name.clone(),
                        limit: None,
                        count: 0,
                        issues: Vec::new(),
                    });
                    columns.len() - 1
                }
            };
            let merged = &mut columns[at];
            merged.issues.extend(
                issues
                    .iter()
                    .filter(|i| i.column_id == column.id)
                    .map(|i| issue_dto(&repo, i, done)),
            );
            merged.count = merged.issues.len() as u64;
        }
    }
    Ok(Json(ProjectBoard {
        project: project.name,
        columns,
    }))
}
