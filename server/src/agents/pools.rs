//! Agent pools (issue 20, docs/agents.md): administrators create a pool naming the
//! repositories (and owners, all of whose repositories) its agents may serve, then
//! registration tokens for it (`POST /api/v1/agents/registration-tokens` with `pool`). Routes
//! and their authorization (administrators only) are in [`crate::routes::api_routes`].

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{AgentPool, CreateAgentPoolRequest};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::now_secs;
use crate::AppState;

/// Most repositories plus owners one pool may list.
pub const MAX_POOL_ENTRIES: usize = 1000;

/// `POST /api/v1/agent-pools`.
pub async fn create_pool(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateAgentPoolRequest>,
) -> Result<(StatusCode, Json<AgentPool>), ApiError> {
    let name = req.name.trim();
    if !workflows::fleet::valid_label_value(name) {
        return Err(ApiError::BadRequest(format!(
            "pool name {name:?}: 1-63 letters, digits, `.`, `_`, `-` (it is the agents' `pool` \
             label and the `Compute.Fleet` name that selects them)"
        )));
    }
    if req.repos.is_empty() && req.owners.is_empty() {
        return Err(ApiError::BadRequest(
            "a pool serves at least one repository (--repo OWNER/NAME) or owner (--owner NAME)"
                .into(),
        ));
    }
    if req.repos.len() + req.owners.len() > MAX_POOL_ENTRIES {
        return Err(ApiError::BadRequest(format!(
            "a pool lists at most {MAX_POOL_ENTRIES} repositories and owners"
        )));
    }
    let mut repo_ids = BTreeSet::new();
    for full in &req.repos {
        let Some((owner, repo)) = full.trim().split_once('/') else {
            return Err(ApiError::BadRequest(format!(
                "repository {full:?}: expected OWNER/NAME"
            )));
        };
        let row = state
            .store()
            .repo(owner, repo)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("repository {owner}/{repo}")))?;
        repo_ids.insert(row.id);
    }
    let owners: BTreeSet<String> = req.owners.iter().map(|o| o.trim().to_string()).collect();
    if let Some(bad) = owners
        .iter()
        .find(|o| o.is_empty() || o.len() > 100 || o.chars().any(|c| c.is_control() || c == '/'))
    {
        return Err(ApiError::BadRequest(format!(
            "owner {bad:?}: a user or organisation name"
        )));
    }
    let id = state
        .store()
        .create_agent_pool(name, &repo_ids, &owners, principal.user.id, now_secs())
        .await?;
    tracing::info!(pool = id, name, by = %principal.user.username, "agent pool created");
    let pool = list(&state)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("agent pool {name}")))?;
    Ok((StatusCode::CREATED, Json(pool)))
}

async fn list(state: &AppState) -> Result<Vec<AgentPool>, ApiError> {
    let mut members: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for a in state.store().list_agents().await? {
        if let (Some(pool), None) = (a.pool_id, a.revoked_at) {
            members.entry(pool).or_default().push(a.name);
        }
    }
    Ok(state
        .store()
        .agent_pools()
        .await?
        .into_iter()
        .map(|p| AgentPool {
            agents: members.remove(&p.id).unwrap_or_default(),
            id: p.id,
            name: p.name,
            repos: p.repo_names,
            owners: p.owners.into_iter().collect(),
            created_at: p.created_at,
        })
        .collect())
}

/// `GET /api/v1/agent-pools`.
pub async fn list_pools(State(state): State<AppState>) -> Result<Json<Vec<AgentPool>>, ApiError> {
    Ok(Json(list(&state).await?))
}

/// `DELETE /api/v1/agent-pools/{pool}` (by name): refused (409) while an unrevoked agent or an
/// outstanding registration token belongs to it.
pub async fn delete_pool(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let name = params.get("pool").cloned().unwrap_or_default();
    let not_found = || ApiError::NotFound(format!("agent pool {name}"));
    let id = state
        .store()
        .agent_pool_id(&name)
        .await?
        .ok_or_else(not_found)?;
    match state.store().delete_agent_pool(id, now_secs()).await? {
        None => Err(not_found()),
        Some(false) => Err(ApiError::Conflict(format!(
            "agent pool {name} still has agents or outstanding registration tokens: revoke \
             them (cove agent revoke) or let the tokens expire first"
        ))),
        Some(true) => {
            tracing::info!(pool = id, name = %name, by = %principal.user.username, "agent pool deleted");
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
