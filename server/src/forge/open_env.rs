//! "Open in environment" on a pull request (`POST …/pulls/{number}/environment`): an
//! environment owned by the caller on the pull request's source branch, so a reviewer can run
//! the change before approving. The caller's own live environment on that branch is reused
//! (started when stopped); otherwise one is created through the very code path of
//! `POST …/environments` (`crate::envs::create`). Who may call it is the route table's
//! business: the role that creates environments (writers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cove_api::{CreateEnvironmentRequest, EnvState, OpenPullEnvironment, PullState};

use super::diff;
use super::http::{load_pull, Params};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{EnvRow, RepoRow};
use crate::AppState;

/// Which of the caller's environments on the branch is reused, best first: one that runs or
/// is on its way up, then a stopped one (started). Failed and deleting ones are not reused.
fn preference(state: EnvState) -> Option<u8> {
    match state {
        EnvState::Running => Some(0),
        EnvState::Starting => Some(1),
        EnvState::Creating => Some(2),
        EnvState::Stopped => Some(3),
        EnvState::Stopping => Some(4),
        EnvState::Failed | EnvState::Deleting | EnvState::AgentUnreachable => None,
    }
}

/// The environment to reuse among `envs` (the caller's on the branch, oldest first): the
/// most preferred state, the newest of those.
fn pick(envs: Vec<EnvRow>) -> Option<EnvRow> {
    envs.into_iter()
        .filter_map(|e| preference(e.state).map(|p| (p, std::cmp::Reverse(e.created_at), e)))
        .min_by_key(|(p, newest, _)| (*p, *newest))
        .map(|(_, _, e)| e)
}

/// `POST /api/v1/repos/{owner}/{name}/pulls/{number}/environment`: 201 with the new
/// environment, or 200 with the caller's reused one; 409 when the pull request is not open
/// or its source branch is gone.
pub async fn open_in_environment(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Params,
    body: Option<Json<OpenPullEnvironment>>,
) -> Result<Response, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let pull = load_pull(&state, &repo, &params).await?;
    if pull.state != PullState::Open {
        return Err(ApiError::Conflict(format!(
            "pull request #{} is {}: only an open pull request opens in an environment",
            pull.number,
            pull.state.as_str()
        )));
    }
    let path = crate::repos::repo_dir(&state, &repo);
    let (head, _) = diff::branch_heads(path, pull.source.clone(), pull.destination.clone()).await?;
    if head.is_none() {
        return Err(ApiError::Conflict(format!(
            "the source branch {} of pull request #{} no longer exists",
            pull.source, pull.number
        )));
    }
    let mine = state
        .store()
        .user_branch_envs(repo.id, principal.user.id, &pull.source)
        .await?;
    if let Some(env) = pick(mine) {
        if env.state == EnvState::Stopping {
            return Err(ApiError::Conflict(format!(
                "your environment {} on {} is stopping; open it again once it has stopped",
                env.name, pull.source
            )));
        }
        let dto = if env.state == EnvState::Stopped {
            crate::envs::start_env(State(state.clone()), Extension(env))
                .await?
                .0
        } else {
            crate::envs::env_dto(&state, &env).await?
        };
        return Ok((StatusCode::OK, Json(dto)).into_response());
    }
    crate::envs::create(
        &state,
        &principal,
        &repo,
        CreateEnvironmentRequest {
            branch: Some(pull.source.clone()),
            devfile_path: req.devfile_path,
            size: req.size,
            ..CreateEnvironmentRequest::default()
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, state: EnvState, created_at: i64) -> EnvRow {
        EnvRow {
            id: id.into(),
            name: id.into(),
            repo_id: 1,
            owner_id: 1,
            branch: "feature".into(),
            devfile_path: None,
            state,
            reason: None,
            plan_json: "{}".into(),
            devfile_text: None,
            restart_required: false,
            devfile_changes: None,
            endpoints_json: "[]".into(),
            idle_timeout_secs: 0,
            last_activity_ms: 0,
            created_at,
            agent_id: None,
            placement: None,
            pooled: None,
        }
    }

    #[test]
    fn a_running_environment_is_preferred_then_the_newest() {
        let picked = pick(vec![
            env("stopped", EnvState::Stopped, 3),
            env("old", EnvState::Running, 1),
            env("new", EnvState::Running, 2),
            env("failed", EnvState::Failed, 4),
        ]);
        assert_eq!(picked.map(|e| e.id).as_deref(), Some("new"));
        let picked = pick(vec![
            env("stopped", EnvState::Stopped, 1),
            env("deleting", EnvState::Deleting, 2),
        ]);
        assert_eq!(picked.map(|e| e.id).as_deref(), Some("stopped"));
        assert!(pick(vec![
            env("f", EnvState::Failed, 1),
            env("d", EnvState::Deleting, 2)
        ])
        .is_none());
    }
}
