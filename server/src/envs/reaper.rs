//! The idle reaper: stops environments idle past their timeout.

use cove_api::agent::EnvCommand;
use cove_api::EnvState;

use super::*;
use crate::error::ApiError;
use crate::AppState;

/// Stop running environments idle for longer than their timeout at `now_ms`.
/// Returns the ids it stopped. Time is a parameter so tests need not sleep.
pub async fn reap_idle(state: &AppState, now: i64) -> Result<Vec<String>, ApiError> {
    let mut stopped = Vec::new();
    for row in state.store().list_envs().await? {
        if row.state != EnvState::Running || row.idle_timeout_secs <= 0 {
            continue;
        }
        if now - row.last_activity_ms > row.idle_timeout_secs * 1000 {
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
            stopped.push(row.id.clone());
        }
    }
    Ok(stopped)
}
