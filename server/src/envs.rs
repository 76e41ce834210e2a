//! Dev environments: the REST handlers, the state machine the server keeps
//! in the store, and the loops that watch environments (agent reports,
//! devfile changes, idle stop, reconciliation at start-up).
//!
//! The server never touches Docker: it sends [`EnvCommand`]s to an agent
//! (the embedded one by default) and applies the [`EnvReport`]s it gets back.

use std::sync::Arc;
use std::time::Duration;

use crate::extract::{Json, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use cove_agent::worker::AgentHandle;
use cove_api::agent::{AgentReply, EnvCommand, EnvReport, EnvSource, PublishedPort};
use cove_api::{
    CreateEnvironmentRequest, EnvEndpoint, EnvEvent, EnvState, Environment, ExecRequest,
    ExecResult, InvalidDevfile, Scope,
};
use devfiles::{EnvironmentPlan, LoadOptions, PlanOptions, Resolver};
use serde::Deserialize;
use tokio::sync::{mpsc, Mutex};

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::store::{now_ms, now_secs, EnvRow, RepoRow};
use crate::AppState;

/// Default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30 * 60;
/// How long the clone credential handed to the agent lives.
const CLONE_TOKEN_SECS: i64 = 10 * 60;

/// The server's side of environments.
pub struct Envs {
    agent: Option<AgentHandle>,
    /// Environments found on the engine with no row in the store.
    orphans: Mutex<Vec<String>>,
}

impl Envs {
    pub fn new(agent: Option<AgentHandle>) -> Self {
        Envs {
            agent,
            orphans: Mutex::new(Vec::new()),
        }
    }

    fn agent(&self) -> Result<&AgentHandle, ApiError> {
        self.agent.as_ref().ok_or_else(|| {
            ApiError::Unavailable("no agent is connected: start cove-server where a Docker engine answers (DOCKER_HOST)".into())
        })
    }

    pub fn has_agent(&self) -> bool {
        self.agent.is_some()
    }
}

// ---------------------------------------------------------------------------------------
// Devfiles from the repository
// ---------------------------------------------------------------------------------------

/// Reads parents from the repository at the same commit.
struct GitResolver {
    repo: std::path::PathBuf,
    rev: String,
}

fn read_blob(repo: &std::path::Path, rev: &str, path: &str) -> Option<String> {
    let repo = git2::Repository::open_bare(repo).ok()?;
    let commit = repo.revparse_single(rev).ok()?.peel_to_commit().ok()?;
    let entry = commit
        .tree()
        .ok()?
        .get_path(std::path::Path::new(path))
        .ok()?;
    let blob = entry.to_object(&repo).ok()?.into_blob().ok()?;
    String::from_utf8(blob.content().to_vec()).ok()
}

fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

impl Resolver for GitResolver {
    fn read(&self, from_file: &str, uri: &str) -> Result<(String, String), String> {
        if uri.contains("://") {
            return Err(
                "parents from URLs are not fetched; commit the parent into the repository".into(),
            );
        }
        let dir = from_file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let joined = normalize(&format!("{dir}/{uri}"))
            .ok_or_else(|| format!("{uri} leaves the repository"))?;
        read_blob(&self.repo, &self.rev, &joined)
            .map(|t| (joined.clone(), t))
            .ok_or_else(|| format!("{joined} does not exist at {}", self.rev))
    }
}

/// The devfile of `rev`: the requested path, else the first of the usual
/// names, else Cove's default. Returns (path, text) with path `None` for the
/// default devfile.
fn devfile_at(
    repo: &std::path::Path,
    rev: &str,
    requested: Option<&str>,
) -> Result<(Option<String>, String), ApiError> {
    if let Some(p) = requested {
        let p = normalize(p)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ApiError::BadRequest(format!("invalid devfile path {p:?}")))?;
        return read_blob(repo, rev, &p)
            .map(|t| (Some(p.clone()), t))
            .ok_or_else(|| ApiError::BadRequest(format!("devfile {p} does not exist on {rev}")));
    }
    for name in devfiles::DEVFILE_NAMES {
        if let Some(t) = read_blob(repo, rev, name) {
            return Ok((Some(name.to_string()), t));
        }
    }
    Ok((None, devfiles::DEFAULT_DEVFILE.to_string()))
}

fn invalid_devfile(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(InvalidDevfile {
            error: "invalid_devfile".into(),
            message,
        }),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// DTOs
// ---------------------------------------------------------------------------------------

async fn env_dto(state: &AppState, row: &EnvRow) -> Result<Environment, ApiError> {
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
    Ok(Environment {
        id: row.id.clone(),
        name: row.name.clone(),
        repo,
        branch: row.branch.clone(),
        state: row.state,
        reason: row.reason.clone(),
        restart_required: row.restart_required,
        devfile_changes: row.devfile_changes.clone(),
        devfile_path: row.devfile_path.clone(),
        components: plan.containers.iter().map(|c| c.name.clone()).collect(),
        endpoints,
        idle_timeout_secs: row.idle_timeout_secs.max(0) as u64,
        last_activity_ms: row.last_activity_ms,
        created_at: row.created_at,
        owner: state.store().username(row.owner_id).await?,
    })
}

fn plan_of(row: &EnvRow) -> Result<EnvironmentPlan, ApiError> {
    serde_json::from_str(&row.plan_json).map_err(ApiError::internal)
}

fn main_component(plan: &EnvironmentPlan) -> Result<String, ApiError> {
    plan.main_container()
        .map(|c| c.name.clone())
        .ok_or_else(|| ApiError::Conflict("the environment has no container".into()))
}

// ---------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------

fn random_hex(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

/// (devfile path in the repository, its text, the plan)
type LoadedDevfile = (Option<String>, String, EnvironmentPlan);

/// `POST /api/v1/repos/{owner}/{name}/environments`
pub async fn create_env(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(repo): Extension<RepoRow>,
    Json(req): Json<CreateEnvironmentRequest>,
) -> Result<Response, ApiError> {
    let agent = state.envs().agent()?.clone();
    let base = req
        .from
        .clone()
        .or_else(|| req.branch.clone())
        .unwrap_or_else(|| repo.default_branch.clone());
    for b in [Some(&base), req.new_branch.as_ref()].into_iter().flatten() {
        if b.is_empty()
            || b.starts_with('-')
            || b.contains("..")
            || b.contains(char::is_whitespace)
            || b.contains(['~', '^', ':', '\\', '?', '*', '['])
        {
            return Err(ApiError::BadRequest(format!("invalid branch name {b:?}")));
        }
    }
    let branch = req.new_branch.clone().unwrap_or_else(|| base.clone());
    let repo_path = crate::git::repo_path(state.data_dir(), &repo.owner, &repo.name);
    let (rp, rev) = (repo_path.clone(), base.clone());
    let requested = req.devfile_path.clone();
    let repo_name = repo.name.clone();
    let loaded =
        tokio::task::spawn_blocking(move || -> Result<Result<LoadedDevfile, String>, ApiError> {
            let (path, text) = devfile_at(&rp, &rev, requested.as_deref())?;
            let display = path.clone().unwrap_or_else(|| "<default devfile>".into());
            let resolver = GitResolver {
                repo: rp.clone(),
                rev: rev.clone(),
            };
            Ok(
                devfiles::load_str(&display, &text, &resolver, &LoadOptions::default())
                    .map(|l| {
                        (
                            path,
                            text,
                            l.plan(&PlanOptions {
                                repo: Some(repo_name),
                            })
                            .0,
                        )
                    })
                    .map_err(|r| r.to_string()),
            )
        })
        .await
        .map_err(ApiError::internal)??;
    let (devfile_path, devfile_text, plan) = match loaded {
        Ok(x) => x,
        Err(message) => return Ok(invalid_devfile(message)),
    };
    let mut plan = plan;
    let (memory, cpu) = match req.size.as_deref().unwrap_or("medium") {
        "small" => (2u64 << 30, 1000u64),
        "medium" => (4 << 30, 2000),
        "large" => (8 << 30, 4000),
        other => {
            return Err(ApiError::BadRequest(format!(
                "size {other:?}: use small, medium or large"
            )))
        }
    };
    for c in &mut plan.containers {
        c.memory_limit_bytes.get_or_insert(memory);
        c.cpu_limit_millis.get_or_insert(cpu);
    }
    if plan.containers.is_empty() {
        return Ok(invalid_devfile(format!(
            "{}:1:1: error: the devfile has no container component to run",
            devfile_path.unwrap_or_default()
        )));
    }
    let name = match &req.name {
        Some(n) if devfiles::is_identifier(n) && n.len() <= 63 => n.clone(),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "environment name {n:?}: use lower-case letters, digits and '-'"
            )))
        }
        None => format!(
            "{}-{}",
            if devfiles::is_identifier(&repo.name.to_lowercase()) {
                repo.name.to_lowercase()
            } else {
                "env".into()
            },
            random_hex(4)
        ),
    };
    let row = EnvRow {
        id: format!("e{}", random_hex(11)),
        name,
        repo_id: repo.id,
        owner_id: principal.user.id,
        branch: branch.clone(),
        devfile_path,
        state: EnvState::Creating,
        reason: None,
        plan_json: serde_json::to_string(&plan).map_err(ApiError::internal)?,
        devfile_text: Some(devfile_text),
        restart_required: false,
        devfile_changes: None,
        endpoints_json: "[]".into(),
        idle_timeout_secs: req.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS) as i64,
        last_activity_ms: now_ms(),
        created_at: now_secs(),
    };
    state.store().create_env(&row).await?;
    state
        .store()
        .add_env_event(&row.id, "state", "creating")
        .await?;
    // a short-lived, read-only credential for the clone; removed once the environment is up
    let token = auth::generate_token();
    state
        .store()
        .create_token(
            principal.user.id,
            &clone_token_name(&row.id),
            &auth::hash_token(&token),
            &[Scope::Read],
            Some(now_secs() + CLONE_TOKEN_SECS),
        )
        .await?;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{token}", principal.user.username));
    let source = EnvSource {
        clone_url: format!(
            "{}/git/{}/{}.git",
            state.public_url(),
            repo.owner,
            repo.name
        ),
        repo: repo.name.clone(),
        branch: base,
        new_branch: req.new_branch.clone(),
        auth_header: Some(format!("Authorization: Basic {basic}")),
        git_user_name: principal.user.username.clone(),
        git_user_email: format!("{}@users.noreply.cove", principal.user.username),
    };
    match agent
        .call(EnvCommand::Create {
            env_id: row.id.clone(),
            plan,
            source: Some(source),
        })
        .await
    {
        AgentReply::Accepted => {}
        other => {
            let message = reply_error(other);
            state
                .store()
                .set_env_state(&row.id, EnvState::Failed, Some(&message))
                .await?;
        }
    }
    let row = state
        .store()
        .env(&row.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("environment".into()))?;
    Ok((StatusCode::CREATED, Json(env_dto(&state, &row).await?)).into_response())
}

fn clone_token_name(env_id: &str) -> String {
    format!("env-clone-{env_id}")
}

fn reply_error(reply: AgentReply) -> String {
    match reply {
        AgentReply::Error { message } => message,
        other => format!("unexpected agent reply {other:?}"),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    pub repo: Option<String>,
}

/// The environments of repositories `principal` can read (of one repository with `repo`).
async fn visible_envs(
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
        if !readable.contains(&row.repo_id) {
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
    Query(q): Query<ListQuery>,
) -> Response {
    crate::sse::snapshots(state, "environments", move |state| {
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

async fn transition(
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

/// `POST /api/v1/environments/{env}/start`
pub async fn start_env(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
) -> Result<Json<Environment>, ApiError> {
    let plan = plan_of(&row)?;
    state.store().touch_env(&row.id, now_ms()).await?;
    transition(
        &state,
        &row,
        &[EnvState::Stopped, EnvState::Failed],
        EnvState::Starting,
        EnvCommand::Start {
            env_id: row.id.clone(),
            plan,
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
    let agent = state.envs().agent()?.clone();
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
    let (plan, devfile) = match agent
        .call(EnvCommand::ReadFile {
            env_id: row.id.clone(),
            component: component.clone(),
            path: path.clone(),
        })
        .await
    {
        AgentReply::File { content: None } if row.devfile_path.is_none() => (old.clone(), None),
        _ => match agent
            .call(EnvCommand::PlanWorkspace {
                env_id: row.id.clone(),
                component,
                path,
                repo: repo.name.clone(),
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
    let plan_json = serde_json::to_string(&plan).map_err(ApiError::internal)?;
    state
        .store()
        .set_env_plan(
            &row.id,
            &plan_json,
            devfile.as_deref().or(row.devfile_text.as_deref()),
        )
        .await?;
    state.store().touch_env(&row.id, now_ms()).await?;
    let json = transition(
        &state,
        &row,
        &[EnvState::Running],
        EnvState::Starting,
        EnvCommand::Restart {
            env_id: row.id.clone(),
            old_plan: old,
            plan,
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
    let agent = state.envs().agent()?;
    state
        .store()
        .set_env_state(&row.id, EnvState::Deleting, None)
        .await?;
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
                .set_env_state(&row.id, EnvState::Failed, Some(&message))
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
        .agent()?
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
        .agent()?
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

// ---------------------------------------------------------------------------------------
// Background work
// ---------------------------------------------------------------------------------------

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

async fn drop_clone_token(state: &AppState, row: &EnvRow) -> Result<(), ApiError> {
    let name = clone_token_name(&row.id);
    for t in state.store().list_tokens(row.owner_id).await? {
        if t.name == name {
            state.store().delete_token(row.owner_id, t.id).await?;
        }
    }
    Ok(())
}

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

/// Intervals of the background loops.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    pub devfile_check: Duration,
    pub idle_check: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            devfile_check: Duration::from_secs(2),
            idle_check: Duration::from_secs(30),
        }
    }
}

/// Start the loops: agent reports, devfile watcher, idle reaper; reconcile once first.
pub fn spawn_background(
    state: AppState,
    mut reports: mpsc::UnboundedReceiver<EnvReport>,
    intervals: Intervals,
) {
    let s = state.clone();
    tokio::spawn(async move {
        while let Some(r) = reports.recv().await {
            if let Err(e) = apply_report(&s, r).await {
                tracing::error!(error = %e, "applying an agent report failed");
            }
        }
    });
    let s = Arc::new(state);
    tokio::spawn(async move {
        if let Err(e) = reconcile(&s).await {
            tracing::error!(error = %e, "reconciliation failed");
        }
        let mut devfile = tokio::time::interval(intervals.devfile_check);
        let mut idle = tokio::time::interval(intervals.idle_check);
        loop {
            tokio::select! {
                _ = devfile.tick() => {
                    if let Err(e) = check_devfiles(&s).await {
                        tracing::warn!(error = %e, "devfile check failed");
                    }
                }
                _ = idle.tick() => {
                    if let Err(e) = reap_idle(&s, now_ms()).await {
                        tracing::warn!(error = %e, "idle check failed");
                    }
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Terminals
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub cols: Option<u16>,
    #[serde(default)]
    pub rows: Option<u16>,
    /// A command to run instead of a login shell (JSON array of strings).
    #[serde(default)]
    pub cmd: Option<String>,
}

/// Control messages on a terminal WebSocket (text frames); binary frames are
/// the terminal's bytes in both directions.
#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalControl {
    Resize { cols: u16, rows: u16 },
    Exit { code: i64 },
}

/// True when a browser's `Origin` is this server (or absent, for non-browser clients).
pub fn origin_allowed(headers: &axum::http::HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let strip = |u: &str| {
        u.split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/').to_string())
            .unwrap_or_default()
    };
    let o = strip(origin);
    !o.is_empty() && (o == host || o == strip(public_url))
}

/// `GET /api/v1/environments/{env}/terminal` (WebSocket): an interactive
/// terminal in the main container (or `component`), starting in
/// PROJECT_SOURCE. A foreign `Origin` is refused.
pub async fn terminal(
    State(state): State<AppState>,
    Extension(row): Extension<EnvRow>,
    Query(q): Query<TerminalQuery>,
    headers: axum::http::HeaderMap,
    ws: crate::extract::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if !origin_allowed(&headers, state.public_url()) {
        return Err(ApiError::Forbidden(
            "cross-origin terminal connections are refused".into(),
        ));
    }
    if row.state != EnvState::Running {
        return Err(ApiError::Conflict(format!(
            "environment {} is {}; start it first",
            row.name,
            row.state.as_str()
        )));
    }
    let plan = plan_of(&row)?;
    let component = match q.component {
        Some(c) if plan.container(&c).is_some() => c,
        Some(c) => return Err(ApiError::NotFound(format!("component {c}"))),
        None => main_component(&plan)?,
    };
    let cmd: Vec<String> = match &q.cmd {
        Some(json) => serde_json::from_str(json).map_err(|_| ApiError::BadRequest("cmd must be a JSON array of strings".into()))?,
        None => vec![
            "/bin/sh".into(),
            "-c".into(),
            "cd \"${PROJECT_SOURCE:-${PROJECTS_ROOT:-/}}\" 2>/dev/null; if command -v bash >/dev/null; then exec bash -l; else exec sh -l; fi".into(),
        ],
    };
    let agent = state.envs().agent()?.clone();
    let term = agent
        .open_terminal(
            &row.id,
            &component,
            cmd,
            q.cols.unwrap_or(80),
            q.rows.unwrap_or(24),
        )
        .await
        .map_err(ApiError::Conflict)?;
    state.store().touch_env(&row.id, now_ms()).await?;
    let env_id = row.id.clone();
    Ok(ws.on_upgrade(move |socket| pump_terminal(state, env_id, socket, term)))
}

async fn pump_terminal(
    state: AppState,
    env_id: String,
    socket: axum::extract::ws::WebSocket,
    term: cove_agent::worker::Terminal,
) {
    use axum::extract::ws::Message;
    use cove_api::agent::{TermInput, TermOutput};
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut stream) = socket.split();
    let cove_agent::worker::Terminal { input, mut output } = term;
    let to_client = tokio::spawn(async move {
        while let Some(out) = output.recv().await {
            let msg = match out {
                TermOutput::Data { bytes } => Message::Binary(bytes.into()),
                TermOutput::Exit { code } => {
                    let text =
                        serde_json::to_string(&TerminalControl::Exit { code }).unwrap_or_default();
                    let _ = sink.send(Message::Text(text.into())).await;
                    let _ = sink.close().await;
                    return;
                }
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut last_touch = now_ms();
    while let Some(Ok(msg)) = stream.next().await {
        let input_msg = match msg {
            Message::Binary(b) => TermInput::Data { bytes: b.to_vec() },
            Message::Text(t) => match serde_json::from_str::<TerminalControl>(&t) {
                Ok(TerminalControl::Resize { cols, rows }) => TermInput::Resize { cols, rows },
                _ => TermInput::Data {
                    bytes: t.as_bytes().to_vec(),
                },
            },
            Message::Close(_) => break,
            _ => continue,
        };
        if input.send(input_msg).await.is_err() {
            break;
        }
        // terminal input is activity (for the idle stop); record it at most every few seconds
        let now = now_ms();
        if now - last_touch > 5_000 {
            last_touch = now;
            let _ = state.store().touch_env(&env_id, now).await;
        }
    }
    drop(input);
    let _ = to_client.await;
}
