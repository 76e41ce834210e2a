//! REST handlers for environments (except creation and terminals) and the DTO they answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::extract::{Json, Query};
use cove_api::agent::{AgentReply, EnvCommand, PublishedPort};
use cove_api::{EnvEndpoint, EnvEvent, EnvState, Environment, ExecRequest, ExecResult};
use devfiles::EnvironmentPlan;
use serde::Deserialize;

use super::*;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::{now_ms, EnvRow};
use crate::AppState;

pub(crate) async fn env_dto(state: &AppState, row: &EnvRow) -> Result<Environment, ApiError> {
    let repo = state
        .store()
        .repo_by_id(row.repo_id)
        .await?
        .map(|r| format!("{}/{}", r.owner, r.name))
        .unwrap_or_default();
    let plan: EnvironmentPlan = serde_json::from_str(&row.plan_json).map_err(ApiError::internal)?;
    let published: Vec<PublishedPort> =
        serde_json::from_str(&row.endpoints_json).unwrap_or_default();
    let mut endpoints = Vec::new();
    for c in &plan.containers {
        for e in &c.endpoints {
            let exposure = serde_json::to_value(e.exposure)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let protocol = serde_json::to_value(e.protocol)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if e.exposure == devfiles::Exposure::None {
                // `exposure: none` endpoints are not even listed
                continue;
            }
            if e.exposure == devfiles::Exposure::Public {
                // reachable through the server's endpoint proxy (docs/ports.md)
                endpoints.push(EnvEndpoint {
                    name: e.name.clone(),
                    port: e.port,
                    exposure,
                    protocol,
                    url: Some(crate::ports::proxy::endpoint_url(
                        state.public_url(),
                        &row.id,
                        &e.name,
                        e.path.as_deref(),
                    )),
                });
                continue;
            }
            let url = published
                .iter()
                .find(|p| p.port == e.port)
                .filter(|_| row.state == EnvState::Running)
                .map(|p| {
                    let scheme = if matches!(protocol.as_str(), "tcp" | "udp") {
                        "tcp"
                    } else {
                        protocol.as_str()
                    };
                    format!(
                        "{scheme}://{}:{}{}",
                        p.host_ip,
                        p.host_port,
                        e.path.clone().unwrap_or_default()
                    )
                });
            endpoints.push(EnvEndpoint {
                name: e.name.clone(),
                port: e.port,
                exposure,
                protocol,
                url,
            });
        }
    }
    let editor = state.store().env_editor(&row.id).await?;
    let (agent, backend) = match row.agent_id {
        None => (
            crate::agents::eligibility::EMBEDDED_NAME.to_string(),
            Some(cove_agent::backend::BackendKind::Docker.label().to_string()),
        ),
        Some(id) => match state.store().agent(id).await? {
            Some(a) => {
                let backend = a.labels.get(cove_agent::labels::BACKEND).cloned();
                (a.name, backend)
            }
            None => (format!("#{id} (removed)"), None),
        },
    };
    // stored as `NAME: rule`
    let placement = row
        .placement
        .as_deref()
        .map(|p| p.split_once(": ").map_or(p, |(_, why)| why).to_string());
    let prebuilt_from = state.store().env_prebuilt_from(&row.id).await?;
    Ok(Environment {
        prebuilt_from,
        id: row.id.clone(),
        name: row.name.clone(),
        repo,
        branch: row.branch.clone(),
        state: row.state,
        reason: row.reason.clone(),
        restart_required: row.restart_required,
        outdated: is_outdated(state, row).await,
        devfile_changes: row.devfile_changes.clone(),
        devfile_path: row.devfile_path.clone(),
        components: plan.containers.iter().map(|c| c.name.clone()).collect(),
        endpoints,
        idle_timeout_secs: row.idle_timeout_secs.max(0) as u64,
        last_activity_ms: row.last_activity_ms,
        created_at: row.created_at,
        owner: state.store().username(row.owner_id).await?,
        editor,
        editor_url: (editor == cove_api::Editor::Vscode)
            .then(|| crate::ports::proxy::editor_url(state.public_url(), &row.id)),
        agent: Some(agent),
        placement,
        backend,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    pub repo: Option<String>,
}

/// The environments of repositories `principal` can read (of one repository with `repo`).
pub(super) async fn visible_envs(
    state: &AppState,
    principal: &Principal,
    repo: Option<&str>,
) -> Result<Vec<Environment>, ApiError> {
    let mut out = Vec::new();
    let readable: std::collections::HashSet<i64> = state
        .store()
        .list_repos(principal.user.id, principal.user.is_admin)
        .await?
        .iter()
        .map(|r| r.id)
        .collect();
    for row in state.store().list_envs().await? {
        if !readable.contains(&row.repo_id) || row.pooled.is_some() {
            continue;
        }
        let dto = env_dto(state, &row).await?;
        if repo.is_some_and(|r| r != dto.repo) {
            continue;
        }
        out.push(dto);
    }
    Ok(out)
}

/// `GET /api/v1/environments`: the environments of repositories the caller can read.
pub async fn list_envs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Environment>>, ApiError> {
    Ok(Json(
        visible_envs(&state, &principal, q.repo.as_deref()).await?,
    ))
}

/// `GET /api/v1/environments/stream` (server-sent events): the list of
/// `GET /api/v1/environments` as event `environments`, sent again whenever any state,
/// reason, restart-required flag or endpoint changes (checked every second).
pub async fn stream_envs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(grant): Extension<crate::live_auth::Grant>,
    Query(q): Query<ListQuery>,
) -> Response {
    crate::sse::snapshots(state, grant, "environments", move |state| {
        let principal = principal.clone();
        let repo = q.repo.clone();
        async move {
            let envs = visible_envs(&state, &principal, repo.as_deref()).await?;
            Ok((
                serde_json::to_value(envs).map_err(ApiError::internal)?,
                false,
            ))
        }
    })
}

/// `GET /api/v1/environments/{env}`
pub async fn show_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(env_dto(&state, &row).await?))
}

/// `POST /api/v1/environments/{env}/start`
pub async fn start_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Json<Environment>, ApiError> {
    let plan = plan_of(&row)?;
    if matches!(row.state, EnvState::Stopped | EnvState::Failed) {
        crate::agents::env_placement::check_room_to_start(&state, row.agent_id).await?;
    }
    state.store().touch_env(&row.id, now_ms()).await?;
    state
        .metrics()
        .env_op_begun(&row.id, crate::metrics::EnvOp::Start);
    transition(
        &state,
        &row,
        &[EnvState::Stopped, EnvState::Failed],
        EnvState::Starting,
        EnvCommand::Start {
            env_id: row.id.clone(),
            plan,
            editor: state.store().env_editor(&row.id).await?,
        },
    )
    .await
}

/// `POST /api/v1/environments/{env}/stop`
pub async fn stop_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Json<Environment>, ApiError> {
    let plan = plan_of(&row)?;
    transition(
        &state,
        &row,
        &[EnvState::Running, EnvState::Failed],
        EnvState::Stopping,
        EnvCommand::Stop {
            env_id: row.id.clone(),
            plan,
        },
    )
    .await
}

/// `POST /api/v1/environments/{env}/restart`: re-plan from the devfile in the workspace,
/// recreate containers, keep volumes. An invalid devfile is refused (422) and nothing changes.
pub async fn restart_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Response, ApiError> {
    if row.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; restart needs it running (use start)",
            row.name,
            row.state.as_str()
        )));
    }
    let agent = state.envs().agent_for(&row)?;
    let old = plan_of(&row)?;
    let repo = state
        .store()
        .repo_by_id(row.repo_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("repository".into()))?;
    let component = main_component(&old)?;
    let root = old
        .main_container()
        .and_then(|c| c.source_mapping.clone())
        .unwrap_or_else(|| "/projects".into());
    let rel = row
        .devfile_path
        .clone()
        .unwrap_or_else(|| "devfile.yaml".into());
    let path = format!("{}/{}/{rel}", root.trim_end_matches('/'), repo.name);
    let read = agent
        .call(EnvCommand::ReadFile {
            env_id: row.id.clone(),
            component: component.clone(),
            path: path.clone(),
        })
        .await;
    // a `parent.id` parent comes from a devfile registry, fetched here
    let registry_parent = match &read {
        AgentReply::File {
            content: Some(text),
        } => super::registry::prefetch(text, &state.limits().environments).await,
        _ => None,
    };
    let (plan, devfile) = match read {
        AgentReply::File { content: None } if row.devfile_path.is_none() => (old.clone(), None),
        _ => match agent
            .call(EnvCommand::PlanWorkspace {
                env_id: row.id.clone(),
                component,
                path: path.clone(),
                repo: repo.name.clone(),
                registry_parent,
            })
            .await
        {
            AgentReply::Plan { plan, devfile } => (*plan, Some(devfile)),
            AgentReply::Error { message } => return Ok(invalid_devfile(message)),
            other => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "unexpected agent reply {other:?}"
                )))
            }
        },
    };
    let mut plan = plan;
    keep_limits(&mut plan, &old);
    let (max_cpu, max_mem) = state.envs().max_limits(&state.limits().environments);
    if let Some(why) = cove_agent::pod::over_limit(&plan, max_cpu, max_mem) {
        return Ok(invalid_devfile(format!(
            "{path}:1:1: error: {why}\n  help: ask for less, or have an administrator raise `[environments] max_cpus`/`max_memory`"
        )));
    }
    let plan_json = serde_json::to_string(&plan).map_err(ApiError::internal)?;
    state
        .store()
        .set_env_plan(
            &row.id,
            &plan_json,
            devfile.as_deref().or(row.devfile_text.as_deref()),
        )
        .await?;
    if let Some(text) = &devfile {
        super::outdated::restarted_with(&state, &row, text).await;
    }
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

/// `DELETE /api/v1/environments/{env}`
pub async fn delete_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<StatusCode, ApiError> {
    let agent = state.envs().agent_for(&row)?;
    if !state::mark_deleting(&state, &row).await? {
        // already being deleted (a second click, a retried request): the same answer
        return Ok(StatusCode::ACCEPTED);
    }
    match agent
        .call(EnvCommand::Delete {
            env_id: row.id.clone(),
        })
        .await
    {
        AgentReply::Accepted => Ok(StatusCode::ACCEPTED),
        other => {
            let message = reply_error(other);
            state
                .store()
                .transition_env(
                    &row.id,
                    &[EnvState::Deleting],
                    EnvState::Failed,
                    Some(&message),
                )
                .await?;
            Err(ApiError::Conflict(message))
        }
    }
}

/// `POST /api/v1/environments/{env}/exec`
pub async fn exec_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
    Json(req): Json<ExecRequest>,
) -> Result<Json<ExecResult>, ApiError> {
    if row.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; start it first",
            row.name,
            row.state.as_str()
        )));
    }
    if req.command.is_empty() {
        return Err(ApiError::BadRequest("command is empty".into()));
    }
    let plan = plan_of(&row)?;
    let component = match req.component {
        Some(c) if plan.container(&c).is_some() => c,
        Some(c) => return Err(ApiError::NotFound(format!("component {c}"))),
        None => main_component(&plan)?,
    };
    state.store().touch_env(&row.id, now_ms()).await?;
    let reply = state
        .envs()
        .agent_for(&row)?
        .call(EnvCommand::Exec {
            env_id: row.id.clone(),
            component,
            command: req.command,
        })
        .await;
    state.store().touch_env(&row.id, now_ms()).await?;
    match reply {
        AgentReply::Exec { result } => Ok(Json(result)),
        other => Err(ApiError::Conflict(reply_error(other))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub tail: Option<u32>,
}

/// `GET /api/v1/environments/{env}/logs`
pub async fn env_logs(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
    Query(q): Query<LogsQuery>,
) -> Result<String, ApiError> {
    let plan = plan_of(&row)?;
    let component = match q.component {
        Some(c) if plan.container(&c).is_some() => c,
        Some(c) => return Err(ApiError::NotFound(format!("component {c}"))),
        None => main_component(&plan)?,
    };
    match state
        .envs()
        .agent_for(&row)?
        .call(EnvCommand::Logs {
            env_id: row.id.clone(),
            component,
            tail: q.tail.unwrap_or(200),
        })
        .await
    {
        AgentReply::Logs { text } => Ok(text),
        other => Err(ApiError::Conflict(reply_error(other))),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    #[serde(default)]
    pub after: Option<i64>,
}

/// `GET /api/v1/environments/{env}/events`
pub async fn env_events(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<EnvEvent>>, ApiError> {
    let events = state
        .store()
        .env_events(&row.id, q.after.unwrap_or(0))
        .await?;
    Ok(Json(
        events
            .into_iter()
            .map(|(id, at_ms, kind, message)| EnvEvent {
                id,
                at_ms,
                kind,
                message,
            })
            .collect(),
    ))
}

/// `GET /api/v1/environments/orphans` (admins): environments found on the engine that the
/// store does not know. Cove never deletes them by itself.
pub async fn orphans(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.envs().orphans.lock().await.clone())
}
