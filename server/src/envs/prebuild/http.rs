//! `…/repos/{owner}/{name}/prebuilds` handlers (routes and their roles in `routes.rs`):
//! readers list prebuilds and read their logs, writers trigger one, owners choose the
//! branches that prebuild.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::agent::PrebuiltImage;
use cove_api::{Prebuild, PrebuildLog, PrebuildSettings, TriggerPrebuild};

use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{PrebuildRow, RepoRow};
use crate::AppState;

/// Most prebuilds listed.
const LIST_LIMIT: i64 = 100;
/// Most branches that prebuild in one repository.
const MAX_BRANCHES: usize = 20;

fn dto(row: &PrebuildRow, pooled: &[crate::store::EnvRow]) -> Prebuild {
    let of_this = pooled.iter().filter(|e| e.pooled == Some(row.id));
    let ready = of_this
        .clone()
        .filter(|e| e.state == cove_api::EnvState::Running)
        .count();
    let creating = of_this
        .filter(|e| e.state == cove_api::EnvState::Creating)
        .count();
    let images: Vec<PrebuiltImage> = serde_json::from_str(&row.images_json).unwrap_or_default();
    Prebuild {
        id: row.id,
        branch: row.branch.clone(),
        sha: row.sha.clone(),
        state: row.state,
        reason: row.reason.clone(),
        images: images.into_iter().map(|i| i.image).collect(),
        created_at_ms: row.created_at_ms,
        finished_at_ms: row.finished_at_ms,
        pool_ready: ready as u32,
        pool_creating: creating as u32,
    }
}

/// `GET /api/v1/repos/{owner}/{name}/prebuilds`: newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<Prebuild>>, ApiError> {
    let rows = state.store().prebuilds(repo.id, LIST_LIMIT).await?;
    let pooled = state.store().pooled_envs().await?;
    Ok(Json(rows.iter().map(|r| dto(r, &pooled)).collect()))
}

/// `GET /api/v1/repos/{owner}/{name}/prebuilds/{prebuild}/logs`.
pub async fn logs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<PrebuildLog>, ApiError> {
    let id: i64 = params
        .get("prebuild")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ApiError::NotFound("prebuild".into()))?;
    let row = state
        .store()
        .prebuild(id)
        .await?
        .filter(|r| r.repo_id == repo.id)
        .ok_or_else(|| ApiError::NotFound("prebuild".into()))?;
    let log = state.store().prebuild_log(id).await?.unwrap_or_default();
    Ok(Json(PrebuildLog {
        id,
        state: row.state,
        log,
    }))
}

/// `POST /api/v1/repos/{owner}/{name}/prebuilds`: prebuild a branch's head now (writers),
/// even when its devfile has no build command (the clone alone is then prebuilt).
pub async fn trigger(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(body): Json<TriggerPrebuild>,
) -> Result<(StatusCode, Json<Prebuild>), ApiError> {
    if !state.envs().has_agent() {
        return Err(ApiError::Unavailable(
            "no agent is connected: prebuilds run on an agent with a Docker engine".into(),
        ));
    }
    let branch = body.branch.unwrap_or_else(|| repo.default_branch.clone());
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let b = branch.clone();
    let sha = tokio::task::spawn_blocking(move || {
        let git = git2::Repository::open_bare(&repo_path).ok()?;
        let r = git.find_reference(&format!("refs/heads/{b}")).ok()?;
        let sha = r.peel_to_commit().ok()?.id().to_string();
        Some(sha)
    })
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::NotFound(format!("branch {branch}")))?;
    let id = super::queue(&state, &repo, &branch, &sha, true)
        .await?
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "the devfile of {branch} is not valid: `cove devfile validate` says why"
            ))
        })?;
    let row = state
        .store()
        .prebuild(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("prebuild".into()))?;
    Ok((StatusCode::ACCEPTED, Json(dto(&row, &[]))))
}

/// `GET /api/v1/repos/{owner}/{name}/prebuilds/settings`.
pub async fn get_settings(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<PrebuildSettings>, ApiError> {
    Ok(Json(state.store().prebuild_settings(repo.id).await?))
}

/// `PUT /api/v1/repos/{owner}/{name}/prebuilds/settings` (owners).
pub async fn set_settings(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(body): Json<PrebuildSettings>,
) -> Result<Json<PrebuildSettings>, ApiError> {
    if body.branches.len() > MAX_BRANCHES {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BRANCHES} branches prebuild"
        )));
    }
    for b in &body.branches {
        if b.is_empty()
            || b.len() > 255
            || b.starts_with('-')
            || b.contains("..")
            || b.contains(char::is_whitespace)
            || b.contains(['~', '^', ':', '\\', '?', '*', '['])
        {
            return Err(ApiError::BadRequest(format!("invalid branch name {b:?}")));
        }
    }
    if !(1..=20).contains(&body.keep) {
        return Err(ApiError::BadRequest("keep: 1 to 20".into()));
    }
    if body.warm > super::super::pool::MAX_WARM {
        return Err(ApiError::BadRequest(format!(
            "warm: 0 to {}",
            super::super::pool::MAX_WARM
        )));
    }
    state.store().set_prebuild_settings(repo.id, &body).await?;
    super::super::pool::wake();
    Ok(Json(body))
}
