//! The devfile watcher: compares the devfile in each running workspace with the applied one.

use cove_api::agent::{AgentReply, EnvCommand};
use cove_api::EnvState;

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::error::ApiError;
use crate::store::EnvRow;
use crate::AppState;

/// A short summary of what changed between two devfile texts (linear in their size).
pub fn devfile_diff(old: &str, new: &str) -> String {
    let old_set: std::collections::HashSet<&str> = old.lines().collect();
    let new_set: std::collections::HashSet<&str> = new.lines().collect();
    let removed = old.lines().filter(|l| !new_set.contains(l));
    let added = new.lines().filter(|l| !old_set.contains(l));
    let mut out: Vec<String> = removed
        .map(|l| format!("- {l}"))
        .chain(added.map(|l| format!("+ {l}")))
        .take(41)
        .collect();
    if out.len() > 40 {
        let more = old.lines().filter(|l| !new_set.contains(l)).count()
            + new.lines().filter(|l| !old_set.contains(l)).count()
            - 40;
        out.truncate(40);
        out.push(format!("… and {more} more changed lines"));
    }
    out.join("\n")
}

/// Longest one environment's devfile check may take before it is abandoned
/// (the agent's own file-read bound is shorter).
pub const DEVFILE_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Environments whose devfile check is under way.
#[derive(Default)]
pub(super) struct InFlight(std::sync::Mutex<HashSet<String>>);

impl InFlight {
    /// Marks `id` busy; false when it already was.
    fn start(&self, id: &str) -> bool {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string())
    }

    fn done(&self, id: &str) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(id);
    }
}

/// One pass of the devfile watcher: compares the devfile in each running workspace with
/// the applied one, each environment in its own task with a timeout, so that one slow or
/// hostile workspace (a devfile that is `/dev/zero`) delays nobody else. An environment
/// whose previous check is still running is skipped; a failing one is logged.
pub async fn check_devfiles(state: &AppState) -> Result<(), ApiError> {
    for row in state.store().list_envs().await? {
        if row.state != EnvState::Running {
            continue;
        }
        let Ok(agent) = state.envs().agent_for(&row) else {
            continue;
        };
        if !state.envs().watching.start(&row.id) {
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let id = row.id.clone();
            match tokio::time::timeout(DEVFILE_CHECK_TIMEOUT, check_devfile(&state, &agent, row))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(env = %id, error = %e, "devfile check failed"),
                Err(_) => tracing::warn!(env = %id, "devfile check timed out"),
            }
            state.envs().watching.done(&id);
        });
    }
    Ok(())
}

/// Compare the devfile in one running workspace with the applied one.
async fn check_devfile(state: &AppState, agent: &EnvAgent, row: EnvRow) -> Result<(), ApiError> {
    let Ok(plan) = plan_of(&row) else {
        return Ok(());
    };
    let Some(main) = plan.main_container() else {
        return Ok(());
    };
    let Some(root) = &main.source_mapping else {
        return Ok(());
    };
    let Some(repo) = state.store().repo_by_id(row.repo_id).await? else {
        return Ok(());
    };
    let rel = row
        .devfile_path
        .clone()
        .unwrap_or_else(|| "devfile.yaml".into());
    let path = format!("{}/{}/{rel}", root.trim_end_matches('/'), repo.name);
    let content = match agent
        .call(EnvCommand::ReadFile {
            env_id: row.id.clone(),
            component: main.name.clone(),
            path,
        })
        .await
    {
        AgentReply::File { content } => content,
        AgentReply::Error { message } => {
            tracing::debug!(env = %row.id, %message, "workspace devfile unreadable");
            return Ok(());
        }
        _ => return Ok(()),
    };
    let applied = if row.devfile_path.is_some() {
        row.devfile_text.clone()
    } else {
        None
    };
    let mut changed = match (&applied, &content) {
        (Some(a), Some(c)) => a != c,
        (None, Some(_)) => true, // a devfile appeared in a default environment
        (Some(_), None) => true, // the devfile was removed
        (None, None) => false,
    };
    if changed {
        // after `update`, a workspace devfile that is still the replaced one is behind the
        // branch (the user has not pulled yet), not edited
        if let (Some(c), Some(behind)) =
            (&content, state.store().env_devfile_behind(&row.id).await?)
        {
            changed = super::outdated::blob_id(c) != behind;
        }
    }
    if changed {
        let diff = devfile_diff(
            applied.as_deref().unwrap_or(""),
            content.as_deref().unwrap_or(""),
        );
        if !row.restart_required || row.devfile_changes.as_deref() != Some(diff.as_str()) {
            state
                .store()
                .set_env_restart_required(&row.id, row.devfile_text.as_deref(), true, Some(&diff))
                .await?;
        }
    } else if row.restart_required {
        state
            .store()
            .set_env_restart_required(&row.id, row.devfile_text.as_deref(), false, None)
            .await?;
    }
    Ok(())
}
