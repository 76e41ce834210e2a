//! Projects and members (issue 16, docs/issues.md "Projects and members").
//!
//! A project groups repositories (each in at most one project). Its members hold a project
//! role — administrator, contributor, reviewer, reader — from which their role on each of the
//! project's repositories derives (`ProjectRole::repo_role`: administrator → owner,
//! contributor → writer, reviewer and reader → reader) unless a per-repository role is set
//! for them, which wins (`Store::member_role`, read by `auth::authorize_repo` on every
//! request and by every long-lived stream's re-check in `crate::live_auth`, so a removal takes
//! effect within one re-check period). Reviewers may also review pull requests (routes marked
//! `reviewers` in the route table, [`authorize_reviewer`]). Users join by invitation
//! (`POST …/members`), which they accept; members leave or are removed with
//! `DELETE …/members/{user}`. A token may be scoped to one project (`auth::check_token_project`).
//!
//! `http.rs`: the handlers; `board.rs`: the project board; the routes and their project roles
//! are in the one route table (`crate::routes`), checked by [`authorize`].

pub mod board;
pub mod http;

use cove_api::{ProjectRole, Role, Scope};

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::names::validate_name;
use crate::store::{ProjectRow, RepoRow};
use crate::AppState;

/// Longest project description.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// The caller's role in `project`: members' own; Cove's administrators act as project
/// administrators.
pub async fn role_in(
    state: &AppState,
    principal: &Principal,
    project: &ProjectRow,
) -> Result<Option<ProjectRole>, ApiError> {
    let role = state
        .store()
        .project_role(project.id, principal.user.id)
        .await?;
    Ok(if principal.user.is_admin {
        Some(ProjectRole::Administrator)
    } else {
        role
    })
}

/// Loads the project `name`; 404 for a name that is not one.
pub async fn load(state: &AppState, name: &str) -> Result<ProjectRow, ApiError> {
    let not_found = || ApiError::NotFound(format!("project {name}"));
    if validate_name("project", name).is_err() {
        return Err(not_found());
    }
    state.store().project(name).await?.ok_or_else(not_found)
}

/// The route rule of a `{project}` route: a credential scoped to another project is 403; with
/// `need`, the caller must hold at least that project role (non-members 404, lower roles 403).
pub async fn authorize(
    state: &AppState,
    need: Option<ProjectRole>,
    principal: &Principal,
    name: &str,
) -> Result<ProjectRow, ApiError> {
    let project = load(state, name).await?;
    if principal.project_id.is_some_and(|id| id != project.id) {
        return Err(ApiError::Forbidden(
            "this token is scoped to another project".into(),
        ));
    }
    auth::check_token_project(state.store(), principal, None).await?;
    let Some(need) = need else {
        return Ok(project);
    };
    match role_in(state, principal, &project).await? {
        None => Err(ApiError::NotFound(format!("project {name}"))),
        Some(have) if have < need => Err(ApiError::Forbidden(format!(
            "this needs the {} role in project {}",
            need.as_str(),
            project.name
        ))),
        Some(_) => Ok(project),
    }
}

/// A review route the caller's repository role does not open (`why`): it does when the caller
/// reads the repository and is a reviewer of its project.
pub async fn authorize_reviewer(
    state: &AppState,
    principal: &Principal,
    scope: Scope,
    owner: &str,
    name: &str,
    why: String,
) -> Result<RepoRow, ApiError> {
    let repo = auth::authorize_repo(
        state.store(),
        Some(principal),
        owner,
        name,
        scope,
        Role::Reader,
    )
    .await?;
    if auth::project_reviewer(state.store(), &principal.user, &repo).await? {
        Ok(repo)
    } else {
        Err(ApiError::Forbidden(why))
    }
}
