//! HTTP handlers of the workflow engine (routes and their authorization are in
//! [`crate::routes::api_routes`]). Run routes live under `/api/v1/runs/{run}`; the
//! authorization middleware checks the role on the run's repository ([`repo_of_run`]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::extract::{Json, Path, Query};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cove_api::{
    AgentIdentity, CommitStatus, FinishRequest, HeartbeatRequest, HeartbeatResponse, Job, JobLease,
    LeaseRequest, LogBatch, Run, RunState, SecretInfo, SetSecretRequest, StartRunRequest,
    WorkflowError,
};
use futures_util::StreamExt;
use serde::Deserialize;

use super::log_follow::Followed;
use super::secrets::valid_secret_name;
use super::RunsError;
use crate::auth::AgentPrincipal;
use crate::error::ApiError;
use crate::live_auth::Grant;
use crate::store::{JobRow, RepoRow, RunRow};
use crate::AppState;

/// Longest long-poll an agent may ask for.
const MAX_LEASE_WAIT: Duration = Duration::from_secs(60);

/// `(owner, name)` of the repository a run belongs to (for the authorization middleware).
pub async fn repo_of_run(state: &AppState, run: &str) -> Result<(String, String), ApiError> {
    let not_found = || ApiError::NotFound(format!("run {run}"));
    let id: i64 = run.parse().map_err(|_| not_found())?;
    let run = state.store().run(id).await?.ok_or_else(not_found)?;
    let repo = state
        .store()
        .repo_by_id(run.repo_id)
        .await?
        .ok_or_else(not_found)?;
    Ok((repo.owner, repo.name))
}

fn job_dto(j: JobRow, agent_id: Option<i64>) -> Job {
    Job {
        agent_id,
        agent: None,
        waiting: None,
        labels: j.labels.clone(),
        id: j.id,
        action: j.action,
        state: j.state,
        attempt: j.attempt,
        depends_on: j.depends_on,
        started_at_ms: j.started_at_ms,
        finished_at_ms: j.finished_at_ms,
        error: j.error,
        variables: serde_json::from_str(&j.variables_json).unwrap_or_default(),
        artifacts: serde_json::from_str(&j.artifacts_json).unwrap_or_default(),
        approval: None,
        deployment: None,
        ignore_failure: j.on_failure == crate::store::JobFailure::Ignore,
    }
}

/// The wire form of a run with its jobs.
pub async fn run_dto(state: &AppState, repo: &RepoRow, run: RunRow) -> Result<Run, ApiError> {
    let jobs = state.store().jobs_of_run(run.id).await?;
    let mut approvals = super::approval::approvals_of_run(state, &run, &jobs).await?;
    let mut deployments = crate::deploy::of_run(state, run.id, &approvals).await?;
    let agents: BTreeMap<i64, i64> = state
        .store()
        .job_agents_of_run(run.id)
        .await?
        .into_iter()
        .collect();
    // Names of the agents that ran (or run) the jobs; `embedded` for leased jobs without one.
    let mut agent_names: BTreeMap<i64, String> = BTreeMap::new();
    for id in agents.values() {
        if !agent_names.contains_key(id) {
            if let Some(a) = state.store().agent(*id).await? {
                agent_names.insert(*id, a.name);
            }
        }
    }
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let mut waiting =
        crate::agents::eligibility::waiting_reasons(state, &full_name, repo.id, &repo.owner, &jobs)
            .await?;
    Ok(Run {
        id: run.id,
        number: run.number,
        repo: format!("{}/{}", repo.owner, repo.name),
        workflow: run.workflow,
        workflow_file: run.workflow_file,
        run_mode: run.run_mode,
        branch: run.branch,
        commit: run.commit_sha,
        trigger: run.trigger_kind,
        pr_number: run.pr_number,
        state: run.state,
        created_at_ms: run.created_at_ms,
        finished_at_ms: run.finished_at_ms,
        jobs: jobs
            .into_iter()
            .map(|j| {
                let agent = agents.get(&j.id).copied();
                let approval = approvals.remove(&j.id);
                let deployment = deployments.remove(&j.id);
                let agent_name = match agent {
                    Some(id) => agent_names.get(&id).cloned(),
                    None if j.attempt > 0 && approval.is_none() => {
                        Some(crate::agents::eligibility::EMBEDDED_NAME.to_string())
                    }
                    None => None,
                };
                let waiting = waiting.remove(&j.id).filter(|_| approval.is_none());
                Job {
                    approval,
                    deployment,
                    agent: agent_name,
                    waiting,
                    ..job_dto(j, agent)
                }
            })
            .collect(),
    })
}

fn param(params: &BTreeMap<String, String>, key: &str) -> Result<String, ApiError> {
    params
        .get(key)
        .cloned()
        .ok_or_else(|| ApiError::BadRequest(format!("missing path parameter {key}")))
}

pub(super) async fn load_run(
    state: &AppState,
    repo: &RepoRow,
    params: &BTreeMap<String, String>,
) -> Result<RunRow, ApiError> {
    let raw = param(params, "run")?;
    let not_found = || ApiError::NotFound(format!("run {raw}"));
    let id: i64 = raw.parse().map_err(|_| not_found())?;
    let run = state.store().run(id).await?.ok_or_else(not_found)?;
    if run.repo_id != repo.id {
        return Err(not_found());
    }
    Ok(run)
}

/// The job named by `{job}`: its id or its action name.
async fn load_job(
    state: &AppState,
    run: &RunRow,
    params: &BTreeMap<String, String>,
) -> Result<JobRow, ApiError> {
    let raw = param(params, "job")?;
    state
        .store()
        .jobs_of_run(run.id)
        .await?
        .into_iter()
        .find(|j| j.id.to_string() == raw || j.action == raw)
        .ok_or_else(|| ApiError::NotFound(format!("job {raw} of run {}", run.id)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRunsQuery {
    /// Only runs of this branch.
    branch: Option<String>,
    /// How many, newest first: 1 or more (default 50; above 500 answers 500).
    #[param(minimum = 1)]
    limit: Option<i64>,
}

pub async fn list_runs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Query(q): Query<ListRunsQuery>,
) -> Result<Json<Vec<Run>>, ApiError> {
    let limit = crate::extract::limit(q.limit, 50, 500)?;
    let mut out = Vec::new();
    for run in state
        .store()
        .list_runs(repo.id, q.branch.as_deref(), limit)
        .await?
    {
        out.push(run_dto(&state, &repo, run).await?);
    }
    Ok(Json(out))
}

pub async fn start_run(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<crate::auth::Principal>,
    Json(req): Json<StartRunRequest>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let branch = req.branch.unwrap_or_else(|| repo.default_branch.clone());
    if branch.is_empty() || branch.starts_with('-') || branch.contains("..") {
        return Err(ApiError::BadRequest(format!("bad branch name {branch:?}")));
    }
    let run = super::start_manual(
        &state,
        &repo,
        &req.workflow,
        &branch,
        Some(&principal.user.username),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(run_dto(&state, &repo, run).await?),
    ))
}

pub async fn get_run(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Run>, ApiError> {
    let run = load_run(&state, &repo, &params).await?;
    Ok(Json(run_dto(&state, &repo, run).await?))
}

pub async fn get_run_by_number(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Run>, ApiError> {
    let raw = params.get("number").map(String::as_str).unwrap_or("");
    let not_found = || ApiError::NotFound(format!("run #{raw}"));
    let number: i64 = raw
        .trim_start_matches('#')
        .parse()
        .map_err(|_| not_found())?;
    let run = state
        .store()
        .run_by_number(repo.id, number)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(run_dto(&state, &repo, run).await?))
}

pub async fn cancel_run(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Run>, ApiError> {
    let run = load_run(&state, &repo, &params).await?;
    super::cancel_run(&state, run.id).await?;
    let run = load_run(&state, &repo, &params).await?;
    Ok(Json(run_dto(&state, &repo, run).await?))
}

pub async fn retry_run(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Run>, ApiError> {
    let run = load_run(&state, &repo, &params).await?;
    super::retry_run(&state, run.id).await?;
    let run = load_run(&state, &repo, &params).await?;
    Ok(Json(run_dto(&state, &repo, run).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
    after: Option<u64>,
    /// `text` (default) or `json`.
    format: Option<String>,
}

/// `GET /api/v1/runs/{run}/jobs/{job}/logs`: the lines after `after`; `format=json` gives
/// `[JobLogLine]`; `follow=true` streams plain text (chunked) until the job has ended.
pub async fn job_logs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(grant): Extension<Grant>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let run = load_run(&state, &repo, &params).await?;
    let job = load_job(&state, &run, &params).await?;
    if !q.follow {
        let lines = state.store().job_logs(job.id, q.after, 100_000).await?;
        if q.format.as_deref() == Some("json") {
            return Ok(Json(lines).into_response());
        }
        let mut text = String::new();
        for l in lines {
            text.push_str(&l.text);
            text.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let stream = super::log_follow::follow(state.clone(), job.id, q.after, 1000).filter_map(
        |item| async move {
            match item {
                Followed::Lines(lines) => {
                    let mut chunk = String::new();
                    for l in &lines {
                        chunk.push_str(&l.text);
                        chunk.push('\n');
                    }
                    Some(Ok(Bytes::from(chunk)))
                }
                Followed::End(_) => None,
                Followed::Error(e) => Some(Err(std::io::Error::other(e))),
            }
        },
    );
    // ends with a last line saying why once the caller's authorization no longer holds
    let stream =
        crate::live_auth::until_revoked(Box::pin(stream), grant.revoked(state.clone()), |reason| {
            Ok(Bytes::from(format!("[cove: log stream ended: {reason}]\n")))
        });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn download_artifact(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let run = load_run(&state, &repo, &params).await?;
    let job = load_job(&state, &run, &params).await?;
    let name = param(&params, "artifact")?;
    let names: Vec<String> = serde_json::from_str(&job.artifacts_json).unwrap_or_default();
    if !names.contains(&name) {
        return Err(ApiError::NotFound(format!("artifact {name}")));
    }
    let path = super::artifact_path(&state, run.id, job.id, &name);
    let bytes = file_body(&path).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.tar\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub async fn workflow_errors(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<WorkflowError>>, ApiError> {
    let rows = state.store().list_workflow_errors(repo.id, 100).await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| WorkflowError {
                id: e.id,
                file: e.file,
                branch: e.branch,
                commit: e.commit_sha,
                message: e.message,
                created_at_ms: e.created_at_ms,
            })
            .collect(),
    ))
}

pub async fn commit_status(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<CommitStatus>, ApiError> {
    let sha = param(&params, "sha")?;
    let mut runs = Vec::new();
    for run in state.store().runs_for_commit(repo.id, &sha).await? {
        runs.push(run_dto(&state, &repo, run).await?);
    }
    let rank = |s: RunState| match s {
        RunState::Succeeded => 0,
        RunState::Superseded => 1,
        RunState::Cancelled => 2,
        RunState::Failed => 3,
        RunState::Queued => 4,
        RunState::Running => 5,
    };
    let state_name = runs
        .iter()
        .map(|r| r.state)
        .max_by_key(|s| rank(*s))
        .map_or("none", |s| s.as_str())
        .to_string();
    Ok(Json(CommitStatus {
        commit: sha,
        state: state_name,
        runs,
    }))
}

// ---- secrets

fn secret_info(row: crate::store::SecretRow) -> SecretInfo {
    SecretInfo {
        name: row.name,
        created_at: row.created_at,
        updated_at: row.updated_at,
        all_branches: row.all_branches,
    }
}

pub async fn list_secrets(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    let rows = state.store().list_secrets(repo.id).await?;
    Ok(Json(rows.into_iter().map(secret_info).collect()))
}

pub async fn set_secret(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<SetSecretRequest>,
) -> Result<Json<SecretInfo>, ApiError> {
    let name = param(&params, "secret")?;
    if !valid_secret_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "secret name {name:?}: letters, digits and `_`, not starting with a digit, at most 64"
        )));
    }
    if req.value.is_empty() || req.value.len() > 64 * 1024 {
        return Err(ApiError::BadRequest(
            "a secret value must be 1 byte to 64 KiB".into(),
        ));
    }
    let sealed = state
        .runs()
        .key()
        .seal(repo.id, &name, &req.value)
        .map_err(|e| ApiError::internal(RunsError::from(e)))?;
    let now = crate::store::now_secs();
    state
        .store()
        .put_secret(repo.id, &name, &sealed, req.all_branches, now)
        .await?;
    let info = state
        .store()
        .list_secrets(repo.id)
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map(secret_info)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("secret vanished")))?;
    tracing::info!(repo = %format!("{}/{}", repo.owner, repo.name), secret = %info.name, all_branches = info.all_branches, "secret set");
    Ok(Json(info))
}

pub async fn delete_secret(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let name = param(&params, "secret")?;
    if state.store().delete_secret(repo.id, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("secret {name}")))
    }
}

// ---- agent protocol

/// `GET /api/v1/agent/self`: who the agent token belongs to (the agent checks its stored
/// token with this at start).
pub async fn agent_self(Extension(agent): Extension<AgentPrincipal>) -> Json<AgentIdentity> {
    Json(AgentIdentity {
        agent_id: agent.id,
        name: agent.name,
    })
}

pub async fn agent_lease(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Json(req): Json<LeaseRequest>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_millis(req.wait_ms).min(MAX_LEASE_WAIT);
    let lease = super::lease_for(&state, wait, Some(agent.id)).await?;
    // Revoked during the long poll: the lease just taken expires at once (the reaper handles
    // it like a lost agent's) and the agent learns it was revoked.
    if lease.is_some() && state.store().agent_revoked(agent.id).await? != Some(false) {
        let now_ms = state.runs().clock().now_ms();
        state
            .store()
            .revoke_agent(agent.id, crate::store::now_secs(), now_ms)
            .await?;
        return Err(ApiError::UnauthorizedBecause(
            crate::auth::AGENT_TOKEN_REFUSED.into(),
        ));
    }
    match lease {
        Some(lease) => Ok(Json::<JobLease>(lease).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

fn job_param(params: &BTreeMap<String, String>) -> Result<i64, ApiError> {
    let raw = param(params, "job")?;
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("job {raw}")))
}

/// The `{job}` of an agent route, which must be leased to the calling agent (409 otherwise,
/// like a stale attempt: the agent stops the job and drops its result).
async fn agent_job(
    state: &AppState,
    agent: &AgentPrincipal,
    params: &BTreeMap<String, String>,
) -> Result<i64, ApiError> {
    let job = job_param(params)?;
    if state.store().job_agent(job).await? != Some(agent.id) {
        return Err(ApiError::Conflict(format!(
            "job {job} is not leased to this agent"
        )));
    }
    Ok(job)
}

pub async fn agent_heartbeat(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    Ok(Json(super::heartbeat(&state, job, req.attempt).await?))
}

pub async fn agent_logs(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(batch): Json<LogBatch>,
) -> Result<StatusCode, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    super::append_logs(&state, job, &batch).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn agent_finish(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(report): Json<FinishRequest>,
) -> Result<StatusCode, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    super::finish(&state, job, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    #[serde(default)]
    attempt: u32,
}

fn tar_response(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-tar")], body).into_response()
}

/// A file's bytes as a streamed body (never whole in memory).
async fn file_body(path: &std::path::Path) -> Result<Body, ApiError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(ApiError::internal)?;
    Ok(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
}

pub async fn agent_source(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    let stream = super::source_tar(&state, job, q.attempt).await?;
    Ok(tar_response(Body::from_stream(stream)))
}

pub async fn agent_input(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<AttemptQuery>,
) -> Result<Response, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    let name = param(&params, "artifact")?;
    let path = super::input_path(&state, job, q.attempt, &name).await?;
    Ok(tar_response(file_body(&path).await?))
}

/// Streams the upload to disk (see [`super::store_artifact`]); over 1 GiB is 413.
pub async fn agent_upload_artifact(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<AttemptQuery>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let job = agent_job(&state, &agent, &params).await?;
    let name = param(&params, "artifact")?;
    super::store_artifact(&state, job, q.attempt, &name, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Live updates (server-sent events) for the web UI
// ---------------------------------------------------------------------------------------

/// `GET /api/v1/repos/{owner}/{name}/runs/stream` (SSE): the list of `…/runs` (same
/// `branch`/`limit` filters) as event `runs`, sent again whenever it changes.
pub async fn stream_runs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(grant): Extension<Grant>,
    Query(q): Query<ListRunsQuery>,
) -> Result<Response, ApiError> {
    let limit = crate::extract::limit(q.limit, 50, 500)?;
    Ok(crate::sse::snapshots(state, grant, "runs", move |state| {
        let repo = repo.clone();
        let branch = q.branch.clone();
        async move {
            let mut out = Vec::new();
            for run in state
                .store()
                .list_runs(repo.id, branch.as_deref(), limit)
                .await?
            {
                out.push(run_dto(&state, &repo, run).await?);
            }
            Ok((
                serde_json::to_value(out).map_err(ApiError::internal)?,
                false,
            ))
        }
    }))
}

/// `GET /api/v1/runs/{run}/stream` (SSE): the run with its jobs (the DAG: `depends_on`, states)
/// as event `run` whenever anything changes; after the run has ended, one last `run` event,
/// then `end`.
pub async fn stream_run(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(grant): Extension<Grant>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let run_id = load_run(&state, &repo, &params).await?.id;
    Ok(crate::sse::snapshots(state, grant, "run", move |state| {
        let repo = repo.clone();
        async move {
            let run = state
                .store()
                .run(run_id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("run {run_id}")))?;
            let run = run_dto(&state, &repo, run).await?;
            let ended = !matches!(run.state, RunState::Queued | RunState::Running);
            Ok((
                serde_json::to_value(run).map_err(ApiError::internal)?,
                ended,
            ))
        }
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogStreamQuery {
    after: Option<u64>,
}

/// `GET /api/v1/runs/{run}/jobs/{job}/logs/stream` (SSE): the job's log lines as they are
/// stored, in batches: event `lines`, data `[JobLogLine]`, id = the last line's `seq`. A
/// reconnecting `EventSource` sends `Last-Event-ID` and continues after it (`?after=` does the
/// same for the first connection). When the job has ended and every line was sent: event
/// `end` with `{"state": …}`.
pub async fn stream_job_logs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(grant): Extension<Grant>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<LogStreamQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::Event;
    let run = load_run(&state, &repo, &params).await?;
    let job = load_job(&state, &run, &params).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let stream =
        super::log_follow::follow(state.clone(), job.id, resume.or(q.after), 500).map(|item| {
            let ev = match item {
                Followed::Lines(lines) => {
                    let last = lines.last().map(|l| l.seq).unwrap_or_default();
                    let data = serde_json::to_string(&lines).unwrap_or_else(|_| "[]".into());
                    Event::default()
                        .event("lines")
                        .id(last.to_string())
                        .data(data)
                }
                Followed::End(state) => {
                    let state = state.map(|s| s.as_str().to_string()).unwrap_or_default();
                    let data = serde_json::json!({ "state": state }).to_string();
                    Event::default().event("end").data(data)
                }
                Followed::Error(e) => Event::default().event("error").data(e),
            };
            Ok::<_, std::convert::Infallible>(ev)
        });
    Ok(crate::sse::response(&state, grant, stream.boxed()))
}
