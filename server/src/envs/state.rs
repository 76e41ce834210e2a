//! The state machine: checked transitions, agent reports applied to the store,
//! reconciliation with the engine at start-up.

use axum::Json;
use cove_api::agent::{AgentReply, EnvCommand, EnvReport};
use cove_api::{EnvState, Environment};

use super::*;
use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

pub(super) async fn transition(
    state: &AppState,
    row: &EnvRow,
    allowed: &[EnvState],
    to: EnvState,
    cmd: EnvCommand,
) -> Result<Json<Environment>, ApiError> {
    if !allowed.contains(&row.state) {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; this needs it to be {}",
            row.name,
            row.state.as_str(),
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        )));
    }
    let agent = state.envs().agent()?;
    state.store().set_env_state(&row.id, to, None).await?;
    state
        .store()
        .add_env_event(&row.id, "state", to.as_str())
        .await?;
    if let reply @ AgentReply::Error { .. } = agent.call(cmd).await {
        let message = reply_error(reply);
        state
            .store()
            .set_env_state(&row.id, row.state, Some(&message))
            .await?;
        return Err(ApiError::Conflict(message));
    }
    let row = state
        .store()
        .env(&row.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("environment".into()))?;
    Ok(Json(env_dto(state, &row).await?))
}

/// Apply one agent report to the store.
pub async fn apply_report(state: &AppState, report: EnvReport) -> Result<(), ApiError> {
    let store = state.store();
    match report {
        EnvReport::Progress { env_id, step } => {
            store.add_env_event(&env_id, "progress", &step).await?
        }
        EnvReport::CommandOutput {
            env_id,
            event,
            command,
            exit_code,
            output,
        } => {
            let status = if exit_code == 0 {
                "succeeded".to_string()
            } else {
                format!("failed with exit code {exit_code}")
            };
            store
                .add_env_event(
                    &env_id,
                    if event == "postStart" {
                        "post_start"
                    } else {
                        "pre_stop"
                    },
                    &format!("{event} command {command} {status}\n{output}"),
                )
                .await?;
        }
        EnvReport::State {
            env_id,
            state: new,
            reason,
            endpoints,
        } => {
            let Some(row) = store.env(&env_id).await? else {
                return Ok(());
            };
            if new == EnvState::Deleting && reason.as_deref() == Some("deleted") {
                store.delete_env(&env_id).await?;
                return Ok(());
            }
            store.set_env_state(&env_id, new, reason.as_deref()).await?;
            if new == EnvState::Running {
                store
                    .set_env_endpoints(
                        &env_id,
                        &serde_json::to_string(&endpoints).map_err(ApiError::internal)?,
                    )
                    .await?;
                store.touch_env(&env_id, now_ms()).await?;
            }
            let msg = match &reason {
                Some(r) => format!("{}: {r}", new.as_str()),
                None => new.as_str().to_string(),
            };
            store
                .add_env_event(
                    &env_id,
                    if new == EnvState::Failed {
                        "error"
                    } else {
                        "state"
                    },
                    &msg,
                )
                .await?;
            if matches!(new, EnvState::Running | EnvState::Failed)
                && row.state == EnvState::Creating
            {
                drop_clone_token(state, &row).await?;
            }
        }
    }
    Ok(())
}

pub(super) async fn drop_clone_token(state: &AppState, row: &EnvRow) -> Result<(), ApiError> {
    let name = clone_token_name(&row.id);
    for t in state.store().list_tokens(row.owner_id).await? {
        if t.name == name {
            state.store().delete_token(row.owner_id, t.id).await?;
        }
    }
    Ok(())
}

/// Match stored environments with what the engine runs. Running ones stay
/// running; vanished ones are marked failed; unknown ones are reported as
/// orphans. Nothing is deleted.
pub async fn reconcile(state: &AppState) -> Result<(), ApiError> {
    let Some(agent) = state.envs().agent.clone() else {
        return Ok(());
    };
    let AgentReply::Pods { pods } = agent.call(EnvCommand::List).await else {
        return Ok(());
    };
    let rows = state.store().list_envs().await?;
    for row in &rows {
        let pod = pods.iter().find(|p| p.env_id == row.id);
        let (new, reason) = match (row.state, pod) {
            (EnvState::Running | EnvState::Starting | EnvState::Creating, Some(p)) if p.running => {
                (EnvState::Running, None)
            }
            (EnvState::Stopping | EnvState::Stopped, Some(p)) if !p.running => {
                (EnvState::Stopped, None)
            }
            (EnvState::Stopping, Some(_)) => (EnvState::Running, None),
            (s, Some(_)) if s == EnvState::Failed || s == EnvState::Stopped => continue,
            (EnvState::Running | EnvState::Starting | EnvState::Creating, Some(_)) => (
                EnvState::Stopped,
                Some("containers were stopped while the server was down".to_string()),
            ),
            (EnvState::Deleting, None) => {
                state.store().delete_env(&row.id).await?;
                continue;
            }
            (EnvState::Stopped | EnvState::Failed, None) => continue,
            (_, None) => (
                EnvState::Failed,
                Some("its containers are gone from the Docker engine".to_string()),
            ),
            _ => continue,
        };
        if new != row.state || reason.is_some() {
            state
                .store()
                .set_env_state(&row.id, new, reason.as_deref())
                .await?;
            state
                .store()
                .add_env_event(&row.id, "state", &format!("reconciled: {}", new.as_str()))
                .await?;
        }
        if let (EnvState::Running, Some(p)) = (new, pod) {
            state
                .store()
                .set_env_endpoints(
                    &row.id,
                    &serde_json::to_string(&p.endpoints).map_err(ApiError::internal)?,
                )
                .await?;
        }
    }
    let orphans: Vec<String> = pods
        .iter()
        .filter(|p| !rows.iter().any(|r| r.id == p.env_id))
        .map(|p| p.env_id.clone())
        .collect();
    for o in &orphans {
        tracing::warn!(env = %o, "orphan environment on the Docker engine: no such environment in the store; leaving it alone");
    }
    *state.envs().orphans.lock().await = orphans;
    Ok(())
}
