//! REST handlers of deployment environments (`/api/v1/repos/{owner}/{name}/deploy/…`); their
//! routes and authorization are in `routes.rs`: readers see, owners manage environments,
//! protection rules and variables, only administrators set account connections.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    DeployConnection, DeployConnectionRequest, DeployEnvRequest, DeployEnvironment,
    DeployProtection, DeployVariable, DeployVariableRequest, Deployment, Run,
};

use super::rules;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{
    self, DeployConnectionRow, DeployEnvRow, DeployVariableRow, DeploymentRow, RepoRow,
};
use crate::AppState;

/// Most deployments one history answer lists.
pub const HISTORY_LIMIT: i64 = 200;

fn param<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, ApiError> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| ApiError::BadRequest(format!("missing path parameter {key}")))
}

/// The environment `{environment}` of the route's repository, or 404.
pub async fn load_env(
    state: &AppState,
    repo: &RepoRow,
    params: &BTreeMap<String, String>,
) -> Result<DeployEnvRow, ApiError> {
    let name = param(params, "environment")?;
    state
        .store()
        .deploy_env(repo.id, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("deployment environment {name}")))
}

/// The stored protection rule of an environment.
pub fn protection_of(env: &DeployEnvRow) -> Result<DeployProtection, ApiError> {
    serde_json::from_str(&env.protection)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored protection rule: {e}")))
}

/// A deployment as the API shows it.
pub fn deployment_dto(d: &DeploymentRow) -> Deployment {
    let state = if d.refused.is_some() {
        "refused".to_string()
    } else {
        d.job_state.clone()
    };
    Deployment {
        id: d.id,
        environment: d.env_name.clone(),
        run_id: d.run_id,
        run_number: d.run_number,
        action: d.action.clone(),
        branch: d.branch.clone(),
        commit_sha: d.commit_sha.clone(),
        actor: d.actor.clone(),
        state,
        reason: d.refused.clone().or_else(|| d.job_error.clone()),
        rollback_of: d.rollback_of,
        created_at_ms: d.created_at_ms,
        finished_at_ms: d.finished_at_ms,
    }
}

/// The whole environment: rule, connections, variables (secret values never), what is
/// deployed there now.
pub async fn env_dto(state: &AppState, env: &DeployEnvRow) -> Result<DeployEnvironment, ApiError> {
    let connections = state
        .store()
        .deploy_connections(env.id)
        .await?
        .into_iter()
        .map(|c| DeployConnection {
            roles: serde_json::from_str(&c.roles).unwrap_or_default(),
            name: c.name,
            account_id: c.account_id,
            region: c.region,
            endpoints: c.endpoints,
        })
        .collect();
    let variables = state
        .store()
        .deploy_variables(env.id)
        .await?
        .into_iter()
        .map(|v| DeployVariable {
            value: (!v.secret).then_some(v.value),
            name: v.name,
            secret: v.secret,
        })
        .collect();
    let current = state
        .store()
        .current_deployment(env.id)
        .await?
        .as_ref()
        .map(deployment_dto);
    Ok(DeployEnvironment {
        name: env.name.clone(),
        description: env.description.clone(),
        protection: protection_of(env)?,
        connections,
        variables,
        current,
        created_at_ms: env.created_at_ms,
        updated_at_ms: env.updated_at_ms,
    })
}

fn check_request(req: &DeployEnvRequest) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if req.description.len() > rules::MAX_DESCRIPTION {
        problems.push(format!(
            "description: at most {} bytes",
            rules::MAX_DESCRIPTION
        ));
    }
    if let Err(e) = rules::check_protection(&req.protection) {
        problems.push(e);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(problems.join("; ")))
    }
}

fn protection_json(p: &DeployProtection) -> Result<String, ApiError> {
    serde_json::to_string(p).map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))
}

/// `GET /api/v1/repos/{owner}/{name}/deploy/environments`.
pub async fn list_envs(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Vec<DeployEnvironment>>, ApiError> {
    let mut out = Vec::new();
    for env in state.store().deploy_envs(repo.id).await? {
        out.push(env_dto(&state, &env).await?);
    }
    Ok(Json(out))
}

/// `POST /api/v1/repos/{owner}/{name}/deploy/environments`.
pub async fn create_env(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Json(req): Json<DeployEnvRequest>,
) -> Result<(StatusCode, Json<DeployEnvironment>), ApiError> {
    let name = req.name.clone().unwrap_or_default();
    let mut problems = Vec::new();
    if !rules::valid_name(&name) {
        problems.push(format!(
            "name {name:?}: letters, digits, '.', '_', '-', at most 100"
        ));
    }
    if let Err(ApiError::Unprocessable(more)) = check_request(&req) {
        problems.push(more);
    }
    if !problems.is_empty() {
        return Err(ApiError::Unprocessable(problems.join("; ")));
    }
    let now = store::now_ms();
    let row = DeployEnvRow {
        id: store::next_id(),
        repo_id: repo.id,
        name,
        description: req.description.clone(),
        protection: protection_json(&req.protection)?,
        created_at_ms: now,
        updated_at_ms: now,
    };
    state.store().create_deploy_env(&row).await?;
    Ok((StatusCode::CREATED, Json(env_dto(&state, &row).await?)))
}

/// `GET /api/v1/repos/{owner}/{name}/deploy/environments/{environment}`.
pub async fn get_env(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<DeployEnvironment>, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    Ok(Json(env_dto(&state, &env).await?))
}

/// `PUT /api/v1/repos/{owner}/{name}/deploy/environments/{environment}`.
pub async fn update_env(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<DeployEnvRequest>,
) -> Result<Json<DeployEnvironment>, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    if req.name.as_deref().is_some_and(|n| n != env.name) {
        return Err(ApiError::Unprocessable(
            "name: an environment cannot be renamed (create another one)".into(),
        ));
    }
    check_request(&req)?;
    let json = protection_json(&req.protection)?;
    let waiting = if req.protection.required_approvals == 0 {
        state.store().waiting_deploy_jobs(env.id).await?
    } else {
        Vec::new()
    };
    state
        .store()
        .update_deploy_env(env.id, &req.description, &json, store::now_ms())
        .await?;
    super::end_waiting_gates(
        &state,
        &waiting,
        &format!(
            "deploy ended: environment `{}` stopped requiring approvals while this action waited for one; retry the run to deploy under the new rule",
            env.name
        ),
    )
    .await?;
    let env = load_env(&state, &repo, &params).await?;
    Ok(Json(env_dto(&state, &env).await?))
}

/// `DELETE /api/v1/repos/{owner}/{name}/deploy/environments/{environment}`.
pub async fn delete_env(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let waiting = state.store().waiting_deploy_jobs(env.id).await?;
    state.store().delete_deploy_env(env.id).await?;
    super::end_waiting_gates(
        &state,
        &waiting,
        &format!(
            "deploy ended: deployment environment `{}` was deleted while this action waited for approval",
            env.name
        ),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/deploy/environments/{environment}/connections/{connection}` (administrators).
pub async fn put_connection(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<DeployConnectionRequest>,
) -> Result<Json<DeployEnvironment>, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let name = param(&params, "connection")?;
    rules::check_connection(&state.runs().config().packages, name, &req)
        .map_err(ApiError::Unprocessable)?;
    let roles = serde_json::to_string(&req.roles)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    state
        .store()
        .put_deploy_connection(&DeployConnectionRow {
            env_id: env.id,
            name: name.to_string(),
            account_id: req.account_id,
            region: req.region,
            roles,
            endpoints: req.endpoints,
        })
        .await?;
    Ok(Json(env_dto(&state, &env).await?))
}

/// `DELETE …/deploy/environments/{environment}/connections/{connection}` (administrators).
pub async fn delete_connection(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let name = param(&params, "connection")?;
    if state.store().delete_deploy_connection(env.id, name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "connection {name} of environment {}",
            env.name
        )))
    }
}

/// What a secret of an environment is sealed to: the repository and `deploy/<env>/<name>`, so
/// a sealed value copied to another environment or name does not open.
pub fn sealed_name(env: &str, name: &str) -> String {
    format!("deploy/{env}/{name}")
}

/// `PUT …/deploy/environments/{environment}/variables/{variable}`.
pub async fn put_variable(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<DeployVariableRequest>,
) -> Result<Json<DeployVariable>, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let name = param(&params, "variable")?;
    if !crate::runs::secrets::valid_secret_name(name) {
        return Err(ApiError::Unprocessable(format!(
            "variable {name:?}: letters, digits and '_', not starting with a digit, at most 64"
        )));
    }
    if req.value.len() > rules::MAX_VALUE_BYTES {
        return Err(ApiError::Unprocessable(format!(
            "the value is {} bytes; at most {}",
            req.value.len(),
            rules::MAX_VALUE_BYTES
        )));
    }
    let value = if req.secret {
        state
            .runs()
            .key()
            .seal(repo.id, &sealed_name(&env.name, name), &req.value)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?
    } else {
        req.value.clone()
    };
    state
        .store()
        .put_deploy_variable(
            env.id,
            &DeployVariableRow {
                name: name.to_string(),
                value,
                secret: req.secret,
            },
            store::now_ms(),
        )
        .await?;
    Ok(Json(DeployVariable {
        name: name.to_string(),
        secret: req.secret,
        value: (!req.secret).then_some(req.value),
    }))
}

/// `DELETE …/deploy/environments/{environment}/variables/{variable}`.
pub async fn delete_variable(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let name = param(&params, "variable")?;
    if state.store().delete_deploy_variable(env.id, name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "variable {name} of environment {}",
            env.name
        )))
    }
}

/// `GET …/deploy/environments/{environment}/deployments`: newest first.
pub async fn list_deployments(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    Ok(Json(
        state
            .store()
            .deployments(env.id, HISTORY_LIMIT)
            .await?
            .iter()
            .map(deployment_dto)
            .collect(),
    ))
}

/// `POST …/deploy/environments/{environment}/rollback`: a new run of the earlier run's
/// workflow at its commit, in which only that environment's deploy actions (and what they
/// depend on) run, under the environment's protections as they are now.
pub async fn rollback(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
    Json(req): Json<cove_api::RollbackRequest>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let env = load_env(&state, &repo, &params).await?;
    let run = super::rollback(&state, &repo, &env, req.run, &principal.user.username).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::runs::http::run_dto(&state, &repo, run).await?),
    ))
}
