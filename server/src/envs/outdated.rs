//! Outdated environments (issue 18): an environment is *outdated* when the devfile of its
//! branch in the repository moved on after it was created (or last updated) — someone pushed
//! a devfile change. That differs from `restart_required` (`watcher.rs`): the devfile in the
//! environment's own workspace was edited and differs from the applied one.
//!
//! The environment keeps the git blob id of the branch devfile it runs
//! (`environments.devfile_upstream`); the DTO compares it with the branch's devfile now.
//! `POST /api/v1/environments/{env}/update` restarts the environment onto the branch's current
//! devfile (validated and planned as at create; containers recreated, volumes and the
//! workspace kept — the restart path of `restart_env`). The devfile it replaced is kept
//! (`devfile_behind`): a workspace devfile still equal to it is behind the branch, not edited,
//! and the watcher does not call that "restart required".

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cove_api::agent::EnvCommand;
use cove_api::EnvState;

use super::*;
use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

/// The git blob id of a devfile text (what `git hash-object` prints).
pub(crate) fn blob_id(text: &str) -> String {
    git2::Oid::hash_object(git2::ObjectType::Blob, text.as_bytes())
        .map(|o| o.to_string())
        .unwrap_or_default()
}

/// The blob id of the devfile on the environment's branch now; `None` when the branch does not
/// exist in the repository (a new branch not pushed yet) or cannot be read.
async fn branch_devfile_blob(state: &AppState, row: &EnvRow) -> Option<String> {
    let repo = state.store().repo_by_id(row.repo_id).await.ok()??;
    let path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (branch, requested) = (row.branch.clone(), row.devfile_path.clone());
    tokio::task::spawn_blocking(move || {
        let git = git2::Repository::open_bare(&path).ok()?;
        git.find_reference(&format!("refs/heads/{branch}")).ok()?;
        devfile_at(&path, &branch, requested.as_deref())
            .ok()
            .map(|(_, text)| blob_id(&text))
    })
    .await
    .ok()?
}

/// Whether the branch's devfile differs from the one the environment was created or last
/// updated from. Environments from before this was recorded are never outdated.
pub(crate) async fn is_outdated(state: &AppState, row: &EnvRow) -> bool {
    if row.state == EnvState::Deleting {
        return false;
    }
    let Ok(Some(applied)) = state.store().env_devfile_upstream(&row.id).await else {
        return false;
    };
    branch_devfile_blob(state, row)
        .await
        .is_some_and(|now| now != applied)
}

/// After a restart from the workspace devfile: when that devfile is the branch's current one,
/// the environment is no longer outdated.
pub(super) async fn restarted_with(state: &AppState, row: &EnvRow, devfile: &str) {
    let applied = blob_id(devfile);
    if branch_devfile_blob(state, row).await.as_deref() == Some(applied.as_str()) {
        let _ = state
            .store()
            .set_env_devfile_upstream(&row.id, Some(&applied))
            .await;
    }
}

/// `POST /api/v1/environments/{env}/update`: restart onto the branch's current devfile. An
/// invalid devfile is a 422 and the running environment is untouched.
pub async fn update_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Response, ApiError> {
    if row.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; update needs it running (use start)",
            row.name,
            row.state.as_str()
        )));
    }
    let repo = state
        .store()
        .repo_by_id(row.repo_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("repository".into()))?;
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let exists = {
        let (p, b) = (repo_path.clone(), row.branch.clone());
        tokio::task::spawn_blocking(move || {
            git2::Repository::open_bare(&p)
                .and_then(|g| g.find_reference(&format!("refs/heads/{b}")).map(|_| ()))
                .is_ok()
        })
        .await
        .map_err(ApiError::internal)?
    };
    if !exists {
        return Err(ApiError::Conflict(format!(
            "branch {} is not in the repository yet; push it first",
            row.branch
        )));
    }
    let loaded = load_devfile(
        &state,
        repo_path,
        row.branch.clone(),
        row.devfile_path.clone(),
        repo.name.clone(),
    )
    .await?;
    let (path, text, mut plan, _pool) = match loaded {
        Ok(x) => x,
        Err(message) => return Ok(invalid_devfile(message)),
    };
    let old = plan_of(&row)?;
    keep_limits(&mut plan, &old);
    let (max_cpu, max_mem) = state.envs().max_limits(&state.limits().environments);
    if let Some(why) = cove_agent::pod::over_limit(&plan, max_cpu, max_mem) {
        return Ok(invalid_devfile(format!(
            "{}:1:1: error: {why}\n  help: ask for less, or have an administrator raise `[environments] max_cpus`/`max_memory`",
            path.as_deref().unwrap_or("<default devfile>")
        )));
    }
    if plan.containers.is_empty() {
        return Ok(invalid_devfile(format!(
            "{}:1:1: error: the devfile has no container component to run",
            path.unwrap_or_default()
        )));
    }
    let plan_json = serde_json::to_string(&plan).map_err(ApiError::internal)?;
    // the workspace keeps the devfile it had: while it is unchanged it is behind, not edited
    let behind = row.devfile_text.as_deref().map(blob_id);
    state
        .store()
        .set_env_devfile_behind(&row.id, behind.as_deref())
        .await?;
    state
        .store()
        .set_env_plan(&row.id, &plan_json, Some(&text))
        .await?;
    state
        .store()
        .set_env_devfile_upstream(&row.id, Some(&blob_id(&text)))
        .await?;
    state
        .store()
        .add_env_event(
            &row.id,
            "progress",
            &format!("updating to the devfile of branch {}", row.branch),
        )
        .await?;
    state.store().touch_env(&row.id, now_ms()).await?;
    state
        .metrics()
        .env_op_begun(&row.id, crate::metrics::EnvOp::Restart);
    let json = transition(
        &state,
        &row,
        &[EnvState::Running],
        EnvState::Starting,
        EnvCommand::Restart {
            env_id: row.id.clone(),
            old_plan: old,
            plan,
            editor: state.store().env_editor(&row.id).await?,
        },
    )
    .await?;
    Ok(json.into_response())
}
