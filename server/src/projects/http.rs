//! The project handlers: create, list, show, settings, repositories, members, invitations.
//! Their routes and the project role each needs are in the one route table
//! (`crate::routes`); the checks that depend on the target (self or administrator, owning the
//! repository attached) are here.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    AttachRepo, CreateProject, InviteMember, Project, ProjectMember, ProjectRole, Role, Scope,
    SetMemberRole, UpdateProject,
};

use super::{load, role_in, MAX_DESCRIPTION_BYTES};
use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::forge::http::check_text;
use crate::names::validate_name;
use crate::store::{MemberRefusal, ProjectMemberRow, ProjectRow, UserRow};
use crate::AppState;

type Params = Path<BTreeMap<String, String>>;

fn param<'a>(params: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    params.get(key).map(String::as_str).unwrap_or_default()
}

async fn project_dto(
    state: &AppState,
    principal: &Principal,
    project: ProjectRow,
) -> Result<Project, ApiError> {
    let repos = state.store().project_repos(project.id).await?;
    let role = state
        .store()
        .project_role(project.id, principal.user.id)
        .await?;
    let invited_as = if role.is_none() {
        state
            .store()
            .project_members(project.id)
            .await?
            .into_iter()
            .find(|m| m.pending && m.user_id == principal.user.id)
            .map(|m| m.role)
    } else {
        None
    };
    Ok(Project {
        name: project.name,
        description: project.description,
        estimate_kind: project.estimate_kind,
        repos: repos
            .into_iter()
            .map(|r| format!("{}/{}", r.owner, r.name))
            .collect(),
        role,
        invited_as,
        created_at_ms: project.created_at_ms,
    })
}

fn member_dto(row: ProjectMemberRow) -> ProjectMember {
    ProjectMember {
        user: row.username,
        role: row.role,
        pending: row.pending,
        invited_by: row.invited_by,
        since_ms: row.since_ms,
    }
}

fn refusal(refusal: MemberRefusal, user: &str, project: &ProjectRow) -> ApiError {
    match refusal {
        MemberRefusal::NotMember => ApiError::NotFound(format!(
            "{user} is neither a member of nor invited to project {}",
            project.name
        )),
        MemberRefusal::LastAdministrator => ApiError::Conflict(format!(
            "{user} is the last administrator of project {}; make someone else an \
             administrator first",
            project.name
        )),
    }
}

async fn user_named(state: &AppState, name: &str) -> Result<UserRow, ApiError> {
    validate_name("user", name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store()
        .user_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {name}")))
}

/// `POST /api/v1/projects`: the caller becomes the project's administrator.
pub async fn create_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    validate_name("project name", &req.name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_text(
        "description",
        &req.description,
        MAX_DESCRIPTION_BYTES,
        false,
    )?;
    let project = state
        .store()
        .create_project(
            &req.name,
            &req.description,
            req.estimate_kind.unwrap_or_default(),
            principal.user.id,
        )
        .await?;
    tracing::info!(project = %project.name, by = %principal.user.username, "project created");
    Ok((
        StatusCode::CREATED,
        Json(project_dto(&state, &principal, project).await?),
    ))
}

/// `GET /api/v1/projects`: the caller's projects and pending invitations (administrators:
/// every project).
pub async fn list_projects(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<Project>>, ApiError> {
    let rows = state
        .store()
        .list_projects(principal.user.id, principal.user.is_admin)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (project, role, invited_as) in rows {
        let repos = state.store().project_repos(project.id).await?;
        out.push(Project {
            name: project.name,
            description: project.description,
            estimate_kind: project.estimate_kind,
            repos: repos
                .into_iter()
                .map(|r| format!("{}/{}", r.owner, r.name))
                .collect(),
            role,
            invited_as,
            created_at_ms: project.created_at_ms,
        });
    }
    Ok(Json(out))
}

/// `GET /api/v1/projects/{project}` (readers).
pub async fn get_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<Json<Project>, ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    Ok(Json(project_dto(&state, &principal, project).await?))
}

/// `PATCH /api/v1/projects/{project}` (administrators): description, estimate kind.
pub async fn update_project(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<UpdateProject>,
) -> Result<Json<Project>, ApiError> {
    let mut project = load(&state, param(&params, "project")).await?;
    if let Some(description) = req.description {
        check_text("description", &description, MAX_DESCRIPTION_BYTES, false)?;
        project.description = description;
    }
    if let Some(kind) = req.estimate_kind {
        project.estimate_kind = kind;
    }
    state
        .store()
        .update_project(project.id, &project.description, project.estimate_kind)
        .await?;
    Ok(Json(project_dto(&state, &principal, project).await?))
}

/// `POST /api/v1/projects/{project}/repos` (administrators who also own the repository).
pub async fn attach_repo(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<AttachRepo>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    let (owner, name) = req
        .repo
        .split_once('/')
        .ok_or_else(|| ApiError::BadRequest("repo must be OWNER/NAME".into()))?;
    let repo = auth::authorize_repo(
        state.store(),
        Some(&principal),
        owner,
        name,
        Scope::Write,
        Role::Owner,
    )
    .await?;
    state.store().attach_repo(project.id, &repo).await?;
    tracing::info!(project = %project.name, repo = %req.repo, "repository attached to a project");
    Ok((
        StatusCode::CREATED,
        Json(project_dto(&state, &principal, project).await?),
    ))
}

/// `DELETE /api/v1/projects/{project}/repos/{owner}/{name}` (administrators): the project's
/// roles no longer apply to it.
pub async fn detach_repo(
    State(state): State<AppState>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    let (owner, name) = (param(&params, "owner"), param(&params, "name"));
    let not_found = || ApiError::NotFound(format!("repository {owner}/{name} in project"));
    let repo = state
        .store()
        .repo(owner, name)
        .await?
        .ok_or_else(not_found)?;
    if state.store().detach_repo(project.id, repo.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

/// `GET /api/v1/projects/{project}/members` (readers): members, then pending invitations.
pub async fn list_members(
    State(state): State<AppState>,
    Path(params): Params,
) -> Result<Json<Vec<ProjectMember>>, ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    let rows = state.store().project_members(project.id).await?;
    Ok(Json(rows.into_iter().map(member_dto).collect()))
}

/// `POST /api/v1/projects/{project}/members` (administrators): invite a user by name; they
/// become a member when they accept (`POST …/invitations/accept`).
pub async fn invite_member(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
    Json(req): Json<InviteMember>,
) -> Result<(StatusCode, Json<ProjectMember>), ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    let user = user_named(&state, &req.user).await?;
    if user.disabled {
        return Err(ApiError::BadRequest(format!(
            "user {} is disabled",
            user.username
        )));
    }
    state
        .store()
        .invite_to_project(project.id, user.id, req.role, &principal.user.username)
        .await?;
    tracing::info!(project = %project.name, user = %user.username, role = req.role.as_str(),
        by = %principal.user.username, "project invitation");
    let member = state
        .store()
        .project_members(project.id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user.id)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the invitation vanished")))?;
    Ok((StatusCode::CREATED, Json(member_dto(member))))
}

/// `POST /api/v1/projects/{project}/invitations/accept`: the caller's pending invitation.
pub async fn accept_invitation(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<Json<Project>, ApiError> {
    let name = param(&params, "project");
    let project = load(&state, name).await?;
    match state
        .store()
        .accept_invitation(project.id, principal.user.id)
        .await?
    {
        Some(role) => {
            tracing::info!(project = %project.name, user = %principal.user.username,
                role = role.as_str(), "project invitation accepted");
            Ok(Json(project_dto(&state, &principal, project).await?))
        }
        // a stranger learns nothing about whether the project exists
        None => Err(ApiError::NotFound(format!("project {name}"))),
    }
}

/// `PUT /api/v1/projects/{project}/members/{user}` (administrators): a member's (or a
/// pending invitation's) role. The last administrator keeps the role (409).
pub async fn set_member_role(
    State(state): State<AppState>,
    Path(params): Params,
    Json(req): Json<SetMemberRole>,
) -> Result<Json<ProjectMember>, ApiError> {
    let project = load(&state, param(&params, "project")).await?;
    let user = user_named(&state, param(&params, "user")).await?;
    state
        .store()
        .set_project_role(project.id, user.id, req.role)
        .await?
        .map_err(|r| refusal(r, &user.username, &project))?;
    let member = state
        .store()
        .project_members(project.id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user.id)
        .ok_or_else(|| refusal(MemberRefusal::NotMember, &user.username, &project))?;
    Ok(Json(member_dto(member)))
}

/// `DELETE /api/v1/projects/{project}/members/{user}`: an administrator removes a member or
/// withdraws an invitation; any member may remove themselves (leave) or decline their
/// invitation. The last administrator stays (409). Access through the project ends at once
/// for new requests, and open streams end at their next re-check (`crate::live_auth`).
pub async fn remove_member(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Params,
) -> Result<StatusCode, ApiError> {
    let name = param(&params, "project");
    let project = load(&state, name).await?;
    let caller_role = role_in(&state, &principal, &project).await?;
    let user = user_named(&state, param(&params, "user")).await?;
    let myself = user.id == principal.user.id;
    if !myself && caller_role.is_none() {
        return Err(ApiError::NotFound(format!("project {name}")));
    }
    if !myself && caller_role != Some(ProjectRole::Administrator) {
        return Err(ApiError::Forbidden(format!(
            "only an administrator of project {} may remove another member",
            project.name
        )));
    }
    state
        .store()
        .remove_project_member(project.id, user.id)
        .await?
        .map_err(|r| match r {
            // leaving a project one is not in: as if it did not exist
            MemberRefusal::NotMember if myself && caller_role.is_none() => {
                ApiError::NotFound(format!("project {name}"))
            }
            r => refusal(r, &user.username, &project),
        })?;
    tracing::info!(project = %project.name, user = %user.username,
        by = %principal.user.username, "project member removed");
    Ok(StatusCode::NO_CONTENT)
}
