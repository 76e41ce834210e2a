//! The idle reaper: stops environments idle past their timeout.

use cove_api::agent::EnvCommand;
use cove_api::EnvState;

use std::time::Duration;

use super::*;
use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// Longest one environment's idle stop may take before the pass moves on.
pub const IDLE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Stop running environments idle for longer than their timeout at `now_ms`.
/// Returns the ids it stopped. Time is a parameter so tests need not sleep.
/// Each environment is stopped in its own task with a timeout: one that fails or
/// hangs is logged and the others are still stopped.
pub async fn reap_idle(state: &AppState, now: i64) -> Result<Vec<String>, ApiError> {
    let mut tasks = Vec::new();
    for row in state.store().list_envs().await? {
        if row.state != EnvState::Running || row.idle_timeout_secs <= 0 {
            continue;
        }
        if now - row.last_activity_ms > row.idle_timeout_secs * 1000 {
            let state = state.clone();
            let id = row.id.clone();
            let task = tokio::spawn(async move {
                tokio::time::timeout(IDLE_STOP_TIMEOUT, stop_idle(&state, row)).await
            });
            tasks.push((id, task));
        }
    }
    let mut stopped = Vec::new();
    for (id, task) in tasks {
        match task.await {
            Ok(Ok(Ok(()))) => stopped.push(id),
            Ok(Ok(Err(e))) => tracing::warn!(env = %id, error = %e, "idle stop failed"),
            Ok(Err(_)) => tracing::warn!(env = %id, "idle stop timed out"),
            Err(e) => tracing::error!(env = %id, error = %e, "idle stop task failed"),
        }
    }
    Ok(stopped)
}

async fn stop_idle(state: &AppState, row: EnvRow) -> Result<(), ApiError> {
    let plan = plan_of(&row)?;
    state
        .store()
        .add_env_event(
            &row.id,
            "state",
            &format!("idle for more than {} s: stopping", row.idle_timeout_secs),
        )
        .await?;
    let _stopping = transition(
        state,
        &row,
        &[EnvState::Running],
        EnvState::Stopping,
        EnvCommand::Stop {
            env_id: row.id.clone(),
            plan,
        },
    )
    .await?;
    crate::notify::env_stopped_idle(state, &row).await;
    Ok(())
}
