//! The repository handlers: create, list, show, delete, branches, commits, files, push
//! events and members. Their routes and authorization are in the one route table
//! (`crate::routes`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{CreateRepoRequest, Member, PushEvent, Repo, SetMemberRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::envs;
use crate::error::ApiError;
use crate::extract::{self, Json, Path, Query};
use crate::git;
use crate::names::validate_name;
use crate::store::{PushEventRow, RepoRow};
use crate::AppState;

pub(crate) fn repo_dto(state: &AppState, row: &RepoRow) -> Repo {
    Repo {
        owner: row.owner.clone(),
        name: row.name.clone(),
        full_name: format!("{}/{}", row.owner, row.name),
        visibility: row.visibility,
        default_branch: row.default_branch.clone(),
        clone_url: format!("{}/git/{}/{}.git", state.public_url(), row.owner, row.name),
        created_at: row.created_at,
    }
}

/// The wire form of a stored push event.
pub fn push_event_dto(full_name: &str, row: PushEventRow) -> PushEvent {
    PushEvent {
        id: row.id,
        repo: full_name.to_string(),
        ref_name: row.ref_name,
        old_sha: row.old_sha,
        new_sha: row.new_sha,
        pusher: row.pusher,
        created_at_ms: row.created_at_ms,
    }
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

pub async fn list_repos(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<Repo>>, ApiError> {
    let repos = state
        .store()
        .list_repos(principal.user.id, principal.user.is_admin)
        .await?;
    Ok(Json(repos.iter().map(|r| repo_dto(&state, r)).collect()))
}

pub async fn create_repo(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateRepoRequest>,
) -> Result<(StatusCode, Json<Repo>), ApiError> {
    validate_name("repository name", &req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let owner_name = req
        .owner
        .clone()
        .unwrap_or_else(|| principal.user.username.clone());
    validate_name("owner", &owner_name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let owner = if owner_name == principal.user.username {
        principal.user.clone()
    } else if principal.user.is_admin {
        state
            .store()
            .user_by_name(&owner_name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {owner_name}")))?
    } else {
        return Err(ApiError::Forbidden(
            "only administrators may create repositories for another user".into(),
        ));
    };
    let row = state
        .store()
        .create_repo(&owner, &req.name, req.visibility, "main")
        .await?;
    let path = git::repo_path(state.data_dir(), &row.owner, &row.name);
    if let Err(err) = git::init_bare(&path, &row.default_branch).await {
        let _ = state.store().delete_repo(row.id).await;
        return Err(err.into());
    }
    tracing::info!(repo = %format!("{}/{}", row.owner, row.name), by = %principal.user.username, "repository created");
    crate::audit::note_repo(&row.owner, &row.name);
    Ok((StatusCode::CREATED, Json(repo_dto(&state, &row))))
}

pub async fn get_repo(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Json<Repo> {
    Json(repo_dto(&state, &repo))
}

pub async fn delete_repo(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    let _guard = crate::cluster::lock_repo(&state, repo.id).await?;
    // environments first (containers and volumes on the engine), then the rows
    envs::delete_repo_envs(&state, repo.id).await?;
    // runs, jobs and logs go with the row (foreign keys cascade); their artifact files here
    let runs = state.store().run_ids_of_repo(repo.id).await?;
    state.store().delete_repo(repo.id).await?;
    crate::retention::remove_run_files(&state, &runs).await;
    let path = git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    git::remove_repo(state.data_dir(), &path, repo.id).await?;
    tracing::info!(repo = %format!("{}/{}", repo.owner, repo.name), by = %principal.user.username, "repository deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn repo_dir(state: &AppState, repo: &RepoRow) -> std::path::PathBuf {
    git::repo_path(state.data_dir(), &repo.owner, &repo.name)
}

pub async fn list_branches(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<cove_api::Branch>>, ApiError> {
    Ok(Json(git::branches(repo_dir(&state, &repo)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommitsQuery {
    /// Branch (default: the repository's default branch).
    branch: Option<String>,
    /// How many commits, newest first: 1 or more (default 50; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

pub async fn list_commits(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<CommitsQuery>,
) -> Result<Json<Vec<cove_api::Commit>>, ApiError> {
    let branch = query.branch.unwrap_or_else(|| repo.default_branch.clone());
    let limit = extract::limit(query.limit, 50, 1000)? as usize;
    let rev = format!("refs/heads/{branch}");
    // git2 panics on interior NUL bytes, so they are refused first.
    if !rev.contains('\0') && git2::Reference::is_valid_name(&rev) {
        Ok(Json(
            git::commits(repo_dir(&state, &repo), rev, limit).await?,
        ))
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid branch name {branch:?}"
        )))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Branch, tag or commit (default: the default branch).
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    rev: Option<String>,
}

pub async fn read_file(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(query): Query<FileQuery>,
) -> Result<Json<cove_api::FileContent>, ApiError> {
    let file = params.get("path").cloned().unwrap_or_default();
    let rev = query.rev.unwrap_or_else(|| repo.default_branch.clone());
    Ok(Json(
        git::read_file(repo_dir(&state, &repo), rev, file).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many, newest first: 1 or more (default 100; above 1000 answers 1000).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

pub async fn list_events(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(query): Query<LimitQuery>,
) -> Result<Json<Vec<PushEvent>>, ApiError> {
    let limit = extract::limit(query.limit, 100, 1000)?;
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let rows = state.store().list_push_events(repo.id, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| push_event_dto(&full_name, r))
            .collect(),
    ))
}

pub async fn list_members(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<Member>>, ApiError> {
    let members = state.store().list_members(repo.id).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|(username, role)| Member { username, role })
            .collect(),
    ))
}

async fn member_user(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<crate::store::UserRow, ApiError> {
    let username = params.get("username").cloned().unwrap_or_default();
    validate_name("username", &username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username}")))
}

pub async fn set_member(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<SetMemberRequest>,
) -> Result<Json<Member>, ApiError> {
    let user = member_user(&state, &params).await?;
    state.store().set_member(repo.id, user.id, req.role).await?;
    Ok(Json(Member {
        username: user.username,
        role: req.role,
    }))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let user = member_user(&state, &params).await?;
    if state.store().remove_member(repo.id, user.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("member {}", user.username)))
    }
}
