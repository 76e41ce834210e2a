//! The state machine: checked transitions, agent reports applied to the store,
//! reconciliation with the engine at start-up.

use crate::extract::Json;
use cove_api::agent::{AgentReply, EnvCommand, EnvReport};
use cove_api::{EnvState, Environment};

use std::time::Duration;

use super::*;
use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

/// Whether a delete moved the row to `Deleting`: deletion is allowed from every state, so a
/// state change that lands between the caller's read and this write (an agent's report of
/// `running`, say) is not a conflict: read again and retry. `Ok(false)`: already deleting.
pub(super) async fn mark_deleting(state: &AppState, row: &EnvRow) -> Result<bool, ApiError> {
    let mut seen = row.state;
    for _ in 0..20 {
        if seen == EnvState::Deleting {
            return Ok(false);
        }
        if state
            .store()
            .transition_env(&row.id, &[seen], EnvState::Deleting, None)
            .await?
        {
            return Ok(true);
        }
        match state.store().env(&row.id).await? {
            Some(now) => seen = now.state,
            None => {
                return Err(ApiError::NotFound(format!("environment {}", row.name)));
            }
        }
    }
    Err(ApiError::Conflict(format!(
        "environment {} keeps changing state; try again",
        row.name
    )))
}

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
    let agent = state.envs().agent_for(row)?;
    // conditional on the state the caller saw: a concurrent change wins, this one is refused
    if !state
        .store()
        .transition_env(&row.id, &[row.state], to, None)
        .await?
    {
        return Err(ApiError::Conflict(format!(
            "environment {} changed state meanwhile; look at it again",
            row.name
        )));
    }
    state
        .store()
        .add_env_event(&row.id, "state", to.as_str())
        .await?;
    if let reply @ AgentReply::Error { .. } = agent.call(cmd).await {
        let message = reply_error(reply);
        state
            .store()
            .transition_env(&row.id, &[to], row.state, Some(&message))
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

/// Applies a report of agent `agent` (`None`: the embedded agent) about one of its own
/// environments; reports about environments placed elsewhere are ignored (an agent cannot
/// move another's, and the old agent's clean-up after `cove env move` moves nothing).
pub async fn apply_report_of(
    state: &AppState,
    agent: Option<i64>,
    report: EnvReport,
) -> Result<(), ApiError> {
    let env_id = match &report {
        EnvReport::Progress { env_id, .. }
        | EnvReport::CommandOutput { env_id, .. }
        | EnvReport::State { env_id, .. } => env_id.clone(),
    };
    match state.store().env(&env_id).await? {
        Some(row) if row.agent_id == agent => apply_report(state, report).await,
        Some(_) => {
            tracing::info!(?agent, env = %env_id, "ignored a report about an environment that is not on this agent");
            Ok(())
        }
        None => Ok(()),
    }
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
            if event == "dotfiles" {
                // the owner's dotfiles: a failure is a warning, the environment goes on
                let message = match (exit_code, command.as_str()) {
                    (0, "none") => format!("dotfiles cloned into ~/.dotfiles\n{output}"),
                    (0, script) => format!("dotfiles: ~/.dotfiles/{script} succeeded\n{output}"),
                    (_, step) => format!(
                        "warning: dotfiles not installed: {step} failed with exit code {exit_code}\n{output}"
                    ),
                };
                store.add_env_event(&env_id, "dotfiles", &message).await?;
                return Ok(());
            }
            store
                .add_env_event(
                    &env_id,
                    match event.as_str() {
                        "postStart" => "post_start",
                        // a devfile project's clone (agent/src/environment.rs clone_projects)
                        "project" => "project",
                        _ => "pre_stop",
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
                forget_deleted(state, &row).await?;
                return Ok(());
            }
            // an agent report moves the environment only from the states that asked for it,
            // so a late or stale report cannot revive a stopped, failed or deleting one
            let from = report_sources(new);
            if !store
                .transition_env(&env_id, from, new, reason.as_deref())
                .await?
            {
                tracing::info!(
                    env = %env_id,
                    state = row.state.as_str(),
                    report = new.as_str(),
                    "ignored an agent report that does not fit the environment's state"
                );
                return Ok(());
            }
            state.metrics().env_reported(&env_id, new);
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

/// The states an agent report may move an environment from.
fn report_sources(to: EnvState) -> &'static [EnvState] {
    match to {
        EnvState::Running => &[EnvState::Creating, EnvState::Starting],
        EnvState::Stopped => &[EnvState::Stopping],
        EnvState::Failed => &[
            EnvState::Creating,
            EnvState::Starting,
            EnvState::Stopping,
            EnvState::Running,
            EnvState::Deleting,
        ],
        _ => &[],
    }
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

/// Why an environment found in `creating` at start-up is failed.
pub const INTERRUPTED_CREATE: &str = "the server stopped while the environment was being created, so its clone or postStart may not have finished: delete it and create it again";

/// Match stored environments with what the engine runs (at start-up, before requests
/// are served). Running ones stay running; ones caught in `creating` are failed (their
/// clone or postStart may not have finished; never running); a delete under way is sent
/// again; vanished ones are marked failed; the sweeps after interrupted creates go on;
/// other unknown ones are reported as orphans and left alone.
pub async fn reconcile(state: &AppState) -> Result<(), ApiError> {
    let rows = state.store().list_envs().await?;
    let swept = resume_sweeps(state, &rows).await?;
    // environments on standalone agents: unreachable until their agent's link is up (it is
    // reconciled then, `crate::agents::link::reconcile_agent`)
    for row in rows.iter().filter(|r| r.agent_id.is_some()) {
        if state.envs().agent_for(row).is_err() {
            crate::agents::link::mark_one_unreachable(state, row, "the server started").await?;
        }
    }
    let Some(agent) = state.envs().agent.clone() else {
        return Ok(());
    };
    let agent = EnvAgent::Embedded(Box::new(agent));
    let AgentReply::Pods { pods } = agent.call(EnvCommand::List).await else {
        return Ok(());
    };
    let embedded: Vec<EnvRow> = rows
        .iter()
        .filter(|r| r.agent_id.is_none())
        .cloned()
        .collect();
    reconcile_rows(state, &agent, &embedded, &pods, true).await?;
    // the engine may be shared with a standalone agent: its environments are no orphans
    let orphans: Vec<String> = pods
        .iter()
        .filter(|p| !rows.iter().any(|r| r.id == p.env_id) && !swept.contains(&p.env_id))
        .map(|p| p.env_id.clone())
        .collect();
    for o in &orphans {
        tracing::warn!(env = %o, "orphan environment on the Docker engine: no such environment in the store; leaving it alone");
    }
    *state.envs().orphans.lock().await = orphans;
    Ok(())
}

/// Matches `rows` (the environments of one agent) with the `pods` it reports. `startup`: the
/// server just started, so an environment caught in `creating` is failed; otherwise (an
/// agent's link came back) environments with an operation under way are left to its reports,
/// and `agent_unreachable` ones return to the state their containers are in.
pub(crate) async fn reconcile_rows(
    state: &AppState,
    agent: &EnvAgent,
    rows: &[EnvRow],
    pods: &[cove_api::agent::PodReport],
    startup: bool,
) -> Result<(), ApiError> {
    for row in rows {
        let pod = pods.iter().find(|p| p.env_id == row.id);
        let (new, reason) = match (row.state, pod) {
            (EnvState::Creating | EnvState::Starting | EnvState::Stopping, _) if !startup => {
                continue
            }
            // the agent that was creating it died with the server: its clone or postStart
            // may not have finished, so it is never taken for running
            (EnvState::Creating, _) => (EnvState::Failed, Some(INTERRUPTED_CREATE.to_string())),
            // a delete that was under way: ask again
            (EnvState::Deleting, Some(_)) => {
                if let reply @ AgentReply::Error { .. } = agent
                    .call(EnvCommand::Delete {
                        env_id: row.id.clone(),
                    })
                    .await
                {
                    tracing::warn!(env = %row.id, error = %reply_error(reply), "resuming a delete failed");
                }
                continue;
            }
            (EnvState::Running | EnvState::Starting | EnvState::AgentUnreachable, Some(p))
                if p.running =>
            {
                (EnvState::Running, None)
            }
            (EnvState::Stopping | EnvState::Stopped | EnvState::AgentUnreachable, Some(p))
                if !p.running =>
            {
                (EnvState::Stopped, None)
            }
            (EnvState::Stopping, Some(_)) => (EnvState::Running, None),
            (s, Some(_)) if s == EnvState::Failed || s == EnvState::Stopped => continue,
            (EnvState::Running | EnvState::Starting, Some(_)) => (
                EnvState::Stopped,
                Some("containers were stopped while the server was down".to_string()),
            ),
            (EnvState::Deleting, None) => {
                forget_deleted(state, row).await?;
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
            if !state
                .store()
                .transition_env(&row.id, &[row.state], new, reason.as_deref())
                .await?
            {
                continue; // changed meanwhile (a request or report won)
            }
            let msg = match &reason {
                Some(r) => format!("reconciled: {}: {r}", new.as_str()),
                None => format!("reconciled: {}", new.as_str()),
            };
            state.store().add_env_event(&row.id, "state", &msg).await?;
            if reason.as_deref() == Some(INTERRUPTED_CREATE) {
                state.store().add_env_sweep(&row.id, row.agent_id).await?;
            }
            if matches!(row.state, EnvState::Creating | EnvState::AgentUnreachable) {
                drop_clone_token(state, row).await?;
            }
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
    Ok(())
}

/// When an environment the previous server process was creating is swept again after its
/// delete, counted from the delete.
const LATE_SWEEPS: [Duration; 7] = [
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(40),
    Duration::from_secs(60),
    Duration::from_secs(120),
];

/// The agent removed `row`'s environment: its row goes, and if a killed server was creating
/// it, the sweeps start ([`sweep_late`]; noted before the row goes, so a server killed in
/// between still sweeps).
async fn forget_deleted(state: &AppState, row: &EnvRow) -> Result<(), ApiError> {
    let deleted_ms = now_ms();
    if state.store().env_sweep_deleted(&row.id, deleted_ms).await? {
        sweep_late(state, row.id.clone(), row.agent_id, deleted_ms);
    }
    state.store().delete_env_if_deleting(&row.id).await?;
    Ok(())
}

/// Sends the delete of `env_id` (deleted at `deleted_ms`, its row gone) again a few times
/// over two minutes, then forgets it. The server that was creating it was killed with Docker
/// requests under way, and the engine finishes a request whose caller died: a container whose
/// image fills a new volume, say, may appear after this process listed and removed the
/// environment's objects. A delete of an environment with nothing left costs two listings, a
/// firewall rule listing and a network lookup; its report is ignored (no row). The schedule
/// is kept in the store (`env_sweeps`): a server started while one is under way resumes it
/// ([`resume_sweeps`]), sweeping once at once for the times it missed.
fn sweep_late(state: &AppState, env_id: String, agent_id: Option<i64>, deleted_ms: i64) {
    let state = state.clone();
    tokio::spawn(async move {
        let since = Duration::from_millis(u64::try_from(now_ms() - deleted_ms).unwrap_or(0));
        let now = tokio::time::Instant::now();
        let missed = LATE_SWEEPS.iter().any(|at| *at <= since);
        let waits = std::iter::once(Duration::ZERO).filter(|_| missed).chain(
            LATE_SWEEPS
                .iter()
                .filter(|at| **at > since)
                .map(|at| *at - since),
        );
        for wait in waits {
            tokio::time::sleep_until(now + wait).await;
            // the agent may be away now (a standalone agent's link): the next time asks again
            let Some(agent) = state.envs().agent_by(agent_id) else {
                continue;
            };
            if let reply @ AgentReply::Error { .. } = agent
                .call(EnvCommand::Delete {
                    env_id: env_id.clone(),
                })
                .await
            {
                tracing::warn!(env = %env_id, error = %reply_error(reply), "sweeping an interrupted create again failed");
            }
        }
        if let Err(e) = state.store().end_env_sweep(&env_id).await {
            tracing::warn!(env = %env_id, error = %e, "forgetting the sweeps of an interrupted create failed");
        }
    });
}

/// At start-up: the sweeps a previous server process left under way go on; an environment
/// remembered as interrupted whose row is gone (deleted, the server killed before it noted
/// so) is swept from now.
async fn resume_sweeps(state: &AppState, rows: &[EnvRow]) -> Result<Vec<String>, ApiError> {
    let mut swept = Vec::new();
    for sweep in state.store().env_sweeps().await? {
        let deleted_ms = match sweep.deleted_ms {
            Some(at) => at,
            None if rows.iter().any(|r| r.id == sweep.env_id) => continue,
            None => {
                let at = now_ms();
                state.store().env_sweep_deleted(&sweep.env_id, at).await?;
                at
            }
        };
        swept.push(sweep.env_id.clone());
        sweep_late(state, sweep.env_id, sweep.agent_id, deleted_ms);
    }
    Ok(swept)
}

/// How long deleting a repository waits for its environments to be removed.
pub const REPO_ENVS_DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Removes every environment of repository `repo_id` — containers and volumes through the
/// agent, then the rows — and waits until they are gone. Used before a repository is
/// deleted, so that nothing it owned is left running on the engine. An environment the
/// agent cannot remove is a 409 and the repository stays.
pub async fn delete_repo_envs(state: &AppState, repo_id: i64) -> Result<(), ApiError> {
    let rows: Vec<EnvRow> = state
        .store()
        .list_envs()
        .await?
        .into_iter()
        .filter(|r| r.repo_id == repo_id)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    for row in &rows {
        let agent = state.envs().agent_for(row)?;
        mark_deleting(state, row).await?;
        state
            .store()
            .add_env_event(
                &row.id,
                "state",
                "deleting: its repository is being deleted",
            )
            .await?;
        if let reply @ AgentReply::Error { .. } = agent
            .call(EnvCommand::Delete {
                env_id: row.id.clone(),
            })
            .await
        {
            let message = reply_error(reply);
            state
                .store()
                .transition_env(
                    &row.id,
                    &[EnvState::Deleting],
                    EnvState::Failed,
                    Some(&message),
                )
                .await?;
            return Err(ApiError::Conflict(format!(
                "environment {} could not be deleted: {message}",
                row.name
            )));
        }
    }
    // the agent reports each delete; applying the report removes the row
    let deadline = tokio::time::Instant::now() + REPO_ENVS_DELETE_TIMEOUT;
    loop {
        let mut pending = Vec::new();
        for row in &rows {
            if let Some(now) = state.store().env(&row.id).await? {
                if now.state == EnvState::Failed {
                    return Err(ApiError::Conflict(format!(
                        "environment {} could not be deleted: {}",
                        now.name,
                        now.reason.unwrap_or_default()
                    )));
                }
                pending.push(now.name);
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::Conflict(format!(
                "environments {} are still being deleted; try again",
                pending.join(", ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
