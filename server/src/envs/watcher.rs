//! The devfile watcher: compares the devfile in each running workspace with the applied one.

use cove_api::agent::{AgentReply, EnvCommand};
use cove_api::EnvState;

use super::*;
use crate::error::ApiError;
use crate::AppState;

/// A short summary of what changed between two devfile texts.
pub fn devfile_diff(old: &str, new: &str) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let mut out = Vec::new();
    for l in &old_lines {
        if !new_lines.contains(l) {
            out.push(format!("- {l}"));
        }
    }
    for l in &new_lines {
        if !old_lines.contains(l) {
            out.push(format!("+ {l}"));
        }
    }
    if out.len() > 40 {
        let more = out.len() - 40;
        out.truncate(40);
        out.push(format!("… and {more} more changed lines"));
    }
    out.join("\n")
}

/// Compare the devfile in each running workspace with the applied one.
pub async fn check_devfiles(state: &AppState) -> Result<(), ApiError> {
    let Some(agent) = state.envs().agent.clone() else {
        return Ok(());
    };
    for row in state.store().list_envs().await? {
        if row.state != EnvState::Running {
            continue;
        }
        let Ok(plan) = plan_of(&row) else { continue };
        let Some(main) = plan.main_container() else {
            continue;
        };
        let Some(root) = &main.source_mapping else {
            continue;
        };
        let Some(repo) = state.store().repo_by_id(row.repo_id).await? else {
            continue;
        };
        let rel = row
            .devfile_path
            .clone()
            .unwrap_or_else(|| "devfile.yaml".into());
        let path = format!("{}/{}/{rel}", root.trim_end_matches('/'), repo.name);
        let AgentReply::File { content } = agent
            .call(EnvCommand::ReadFile {
                env_id: row.id.clone(),
                component: main.name.clone(),
                path,
            })
            .await
        else {
            continue;
        };
        let applied = if row.devfile_path.is_some() {
            row.devfile_text.clone()
        } else {
            None
        };
        let changed = match (&applied, &content) {
            (Some(a), Some(c)) => a != c,
            (None, Some(_)) => true, // a devfile appeared in a default environment
            (Some(_), None) => true, // the devfile was removed
            (None, None) => false,
        };
        if changed {
            let diff = devfile_diff(
                applied.as_deref().unwrap_or(""),
                content.as_deref().unwrap_or(""),
            );
            if !row.restart_required || row.devfile_changes.as_deref() != Some(diff.as_str()) {
                state
                    .store()
                    .set_env_restart_required(&row.id, true, Some(&diff))
                    .await?;
            }
        } else if row.restart_required {
            state
                .store()
                .set_env_restart_required(&row.id, false, None)
                .await?;
        }
    }
    Ok(())
}
