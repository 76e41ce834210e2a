//! An agent's environments when its link drops (`agent_unreachable`) and when it is back
//! (reconciled from the agent's report, as at server start-up).

use cove_api::agent::{AgentReply, EnvCommand};
use cove_api::EnvState;

use super::{EnvAgent, LinkHandle};
use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// Marks one environment `agent_unreachable` (unless it is failed, being deleted or already
/// so), saying why.
pub async fn mark_one_unreachable(
    state: &AppState,
    row: &EnvRow,
    why: &str,
) -> Result<(), ApiError> {
    if matches!(
        row.state,
        EnvState::Failed | EnvState::Deleting | EnvState::AgentUnreachable
    ) {
        return Ok(());
    }
    let reason = format!(
        "its agent is unreachable ({why}); it was {} and comes back when the agent reconnects",
        row.state.as_str()
    );
    if state
        .store()
        .transition_env(
            &row.id,
            &[row.state],
            EnvState::AgentUnreachable,
            Some(&reason),
        )
        .await?
    {
        state
            .store()
            .add_env_event(&row.id, "state", &format!("agent_unreachable: {reason}"))
            .await?;
    }
    Ok(())
}

/// Agent `agent_id`'s link dropped: its environments show `agent_unreachable`.
pub async fn mark_unreachable(state: &AppState, agent_id: i64, name: &str) -> Result<(), ApiError> {
    let why = format!("agent {name}'s link is down");
    for row in state.store().list_envs().await? {
        if row.agent_id == Some(agent_id) {
            mark_one_unreachable(state, &row, &why).await?;
        }
    }
    Ok(())
}

/// The agent's link is up: its environments are matched with what it reports.
pub async fn reconcile_agent(state: &AppState, link: &LinkHandle) -> Result<(), ApiError> {
    let agent = EnvAgent::Remote(link.clone());
    let pods = match agent.call(EnvCommand::List).await {
        AgentReply::Pods { pods } => pods,
        other => {
            return Err(ApiError::Conflict(crate::envs::reply_error_text(other)));
        }
    };
    let rows: Vec<EnvRow> = state
        .store()
        .list_envs()
        .await?
        .into_iter()
        .filter(|r| r.agent_id == Some(link.agent_id()))
        .collect();
    crate::envs::reconcile_rows(state, &agent, &rows, &pods, false).await?;
    tracing::info!(agent = %link.name(), environments = rows.len(), "agent's environments reconciled");
    Ok(())
}
