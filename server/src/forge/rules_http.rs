//! `GET/PUT /api/v1/repos/{owner}/{name}/branch-rules`: a repository's ordered branch rules
//! (reading: readers; replacing the whole list: owners — routes.rs).

use axum::extract::State;
use axum::Extension;
use cove_api::BranchRules;

use crate::error::ApiError;
use crate::extract::Json;
use crate::store::RepoRow;
use crate::AppState;

/// `GET …/branch-rules`.
pub async fn get_rules(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<BranchRules>, ApiError> {
    let rules = state.store().branch_rules(repo.id).await?;
    Ok(Json(BranchRules { rules }))
}

/// `PUT …/branch-rules`: replaces the list (an empty list removes every rule). A list that
/// does not validate is a 400 that names the rule and field, and changes nothing.
pub async fn set_rules(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(body): Json<BranchRules>,
) -> Result<Json<BranchRules>, ApiError> {
    super::rules::validate(&body.rules).map_err(ApiError::BadRequest)?;
    state.store().set_branch_rules(repo.id, &body.rules).await?;
    tracing::info!(
        repo = %format!("{}/{}", repo.owner, repo.name),
        rules = body.rules.len(),
        "branch rules replaced"
    );
    Ok(Json(body))
}
