//! Registered agents (issue 6): one-time registration tokens, registration, listing and
//! revocation. Routes and their authorization are in [`crate::routes::api_routes`]; which
//! kind of caller may call what is decided in [`crate::auth`].
//!
//! Revoking an agent expires the leases it holds at once, so the reaper handles its running
//! jobs like a lost agent's on its next pass (`agent_lost`, or a retry when configured)
//! instead of waiting for the lease to run out; the agent's next call gets 401.
//!
//! Labels, capacity and pools (issue 20): an agent reports labels and capacity on
//! registration and with its status reports (`POST /api/v1/agent/status`); a registration
//! token may name an agent pool the new agent joins ([`pools`]); which agent may run which
//! job is [`placement`] (pure) over [`eligibility`] (the store's view). docs/agents.md.

pub mod eligibility;
pub mod env_placement;
pub mod link;
pub mod placement;
pub mod pools;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;

use crate::extract::{Json, Path};
use cove_api::{
    AgentCapacity, AgentInfo, AgentStatus, CreateRegistrationTokenRequest, RegisterAgentRequest,
    RegisteredAgent, RegistrationToken, AGENT_TOKEN_PREFIX, REGISTRATION_TOKEN_PREFIX,
};

use crate::auth::{self, AgentPrincipal, Principal, RegistrationGrant};
use crate::error::ApiError;
use crate::store::now_secs;
use crate::AppState;

/// Lifetime of a registration token when none is asked for.
pub const DEFAULT_REGISTRATION_TTL: Duration = Duration::from_secs(3600);
/// Longest lifetime of a registration token.
pub const MAX_REGISTRATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most registration tokens outstanding (unused and unexpired) at once; the next is a 429.
pub const MAX_OUTSTANDING_REGISTRATION_TOKENS: i64 = 100;

/// `POST /api/v1/agents/registration-tokens` (administrators).
pub async fn create_registration_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Option<Json<CreateRegistrationTokenRequest>>,
) -> Result<(StatusCode, Json<RegistrationToken>), ApiError> {
    let req = body.map(|Json(r)| r).unwrap_or_default();
    let ttl = match req.ttl_secs {
        None => DEFAULT_REGISTRATION_TTL.as_secs(),
        Some(0) => return Err(ApiError::BadRequest("ttl_secs must be positive".into())),
        Some(s) if s > MAX_REGISTRATION_TTL.as_secs() => {
            return Err(ApiError::BadRequest(format!(
                "ttl_secs is at most {} (a week)",
                MAX_REGISTRATION_TTL.as_secs()
            )))
        }
        Some(s) => s,
    };
    let pool_id = match req.pool.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(ApiError::BadRequest("pool must not be empty".into())),
        Some(name) => Some(state.store().agent_pool_id(name).await?.ok_or_else(|| {
            ApiError::NotFound(format!(
                "agent pool {name} (create it with `cove agent pool create`)"
            ))
        })?),
    };
    let now = now_secs();
    let expires_at = now + i64::try_from(ttl).unwrap_or(i64::MAX / 2);
    let token = auth::generate_token_with(REGISTRATION_TOKEN_PREFIX);
    let row = state
        .store()
        .create_registration_token(
            &auth::hash_token(&token),
            principal.user.id,
            now,
            expires_at,
            MAX_OUTSTANDING_REGISTRATION_TOKENS,
            pool_id,
        )
        .await?
        .ok_or_else(|| {
            ApiError::TooMany(format!(
                "{MAX_OUTSTANDING_REGISTRATION_TOKENS} registration tokens are outstanding \
                 (unused and unexpired); register agents with them or let them expire first"
            ))
        })?;
    tracing::info!(
        registration_token = row.id,
        by = %principal.user.username,
        expires_at,
        pool = req.pool.as_deref().unwrap_or("-"),
        "agent registration token created"
    );
    Ok((
        StatusCode::CREATED,
        Json(RegistrationToken { token, expires_at }),
    ))
}

fn valid_agent_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

/// `POST /api/v1/agents/register`, authenticated by a registration token (consumed here:
/// the agent row and the token's `used_at` are written in one transaction, or nothing is).
pub async fn register(
    State(state): State<AppState>,
    Extension(grant): Extension<RegistrationGrant>,
    Json(req): Json<RegisterAgentRequest>,
) -> Result<(StatusCode, Json<RegisteredAgent>), ApiError> {
    let name = req.name.trim();
    if !valid_agent_name(name) {
        return Err(ApiError::BadRequest(
            "agent name must be 1-100 printable characters".into(),
        ));
    }
    placement::validate_labels(&req.labels).map_err(ApiError::BadRequest)?;
    let token = auth::generate_token_with(AGENT_TOKEN_PREFIX);
    let agent = state
        .store()
        .register_agent(
            &grant.token_hash,
            name,
            &auth::hash_token(&token),
            now_secs(),
            &req.labels,
            &req.capacity.unwrap_or_default(),
        )
        .await?
        .map_err(auth::registration_refused)?;
    tracing::info!(
        agent = agent.id,
        name = %agent.name,
        version = req.version.as_deref().unwrap_or("?"),
        pool = agent.pool_id,
        labels = %placement::labels_text(&agent.labels),
        "agent registered"
    );
    Ok((
        StatusCode::CREATED,
        Json(RegisteredAgent {
            agent_id: agent.id,
            token,
        }),
    ))
}

/// `POST /api/v1/agent/status` (the agent's own token): its labels and capacity now.
pub async fn agent_status(
    State(state): State<AppState>,
    Extension(agent): Extension<AgentPrincipal>,
    Json(status): Json<AgentStatus>,
) -> Result<StatusCode, ApiError> {
    placement::validate_labels(&status.labels).map_err(ApiError::BadRequest)?;
    state
        .store()
        .set_agent_status(agent.id, &status.labels, &status.capacity, now_secs())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/agents` (administrators): registered agents with their pool, labels (as
/// placement sees them), capacity, backend and what they run; then the embedded agent when
/// the server has one.
pub async fn list_agents(State(state): State<AppState>) -> Result<Json<Vec<AgentInfo>>, ApiError> {
    let mut jobs: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut embedded_jobs = Vec::new();
    for (agent, job) in state.store().running_jobs_by_agent().await? {
        jobs.entry(agent).or_default().push(job);
    }
    for job in state.store().running_embedded_jobs().await? {
        embedded_jobs.push(job);
    }
    // environments by the agent they are placed on (`None`: embedded), those not stopped
    let mut envs_of: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
    for e in state.store().list_envs().await? {
        if !matches!(
            e.state,
            cove_api::EnvState::Stopped | cove_api::EnvState::Failed
        ) {
            envs_of.entry(e.agent_id).or_default().push(e.id);
        }
    }
    let pools = state.store().agent_pools().await?;
    let pool_names: std::collections::BTreeSet<String> =
        pools.iter().map(|p| p.name.clone()).collect();
    let agents = state.store().list_agents().await?;
    let mut out: Vec<AgentInfo> = agents
        .into_iter()
        .map(|a| {
            let pool = a.pool_id.map(|id| {
                pools
                    .iter()
                    .find(|p| p.id == id)
                    .map_or_else(|| format!("#{id} (deleted)"), |p| p.name.clone())
            });
            let labels = placement::effective_labels(&a.labels, pool.as_deref(), &pool_names);
            AgentInfo {
                current_jobs: jobs.remove(&a.id).unwrap_or_default(),
                id: a.id,
                name: a.name,
                created_at: a.created_at,
                last_seen_at: a.last_seen_at,
                revoked: a.revoked_at.is_some(),
                backend: labels.get("backend").cloned().unwrap_or_default(),
                pool,
                labels,
                capacity: AgentCapacity {
                    // the server's count: the agent does not know what was placed on it
                    running_environments: u32::try_from(
                        envs_of.get(&Some(a.id)).map_or(0, Vec::len),
                    )
                    .unwrap_or(0),
                    ..a.capacity
                },
                current_environments: envs_of.remove(&Some(a.id)).unwrap_or_default(),
                embedded: false,
            }
        })
        .collect();
    if state.runs().config().embedded_slots > 0 || state.envs().has_agent() {
        let envs: Vec<String> = envs_of.remove(&None).unwrap_or_default();
        let labels = eligibility::embedded_labels();
        out.push(AgentInfo {
            id: 0,
            name: eligibility::EMBEDDED_NAME.to_string(),
            created_at: 0,
            last_seen_at: Some(now_secs()),
            revoked: false,
            backend: labels.get("backend").cloned().unwrap_or_default(),
            pool: None,
            labels,
            capacity: AgentCapacity {
                cpus: u32::try_from(std::thread::available_parallelism().map_or(0, |n| n.get()))
                    .unwrap_or(0),
                memory_bytes: 0,
                max_jobs: u32::try_from(state.runs().config().embedded_slots).unwrap_or(0),
                running_jobs: u32::try_from(embedded_jobs.len()).unwrap_or(0),
                running_environments: u32::try_from(envs.len()).unwrap_or(0),
                max_environments: state
                    .limits()
                    .environments
                    .max_running
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            },
            current_jobs: embedded_jobs,
            current_environments: envs,
            embedded: true,
        });
    }
    Ok(Json(out))
}

/// `DELETE /api/v1/agents/{agent}` (administrators): revokes the agent's token and expires
/// its leases now (the reaper ends or retries those jobs like a lost agent's).
pub async fn revoke_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let raw = params.get("agent").cloned().unwrap_or_default();
    let id: i64 = raw
        .parse()
        .map_err(|_| ApiError::NotFound(format!("agent {raw}")))?;
    let now_ms = state.runs().clock().now_ms();
    match state.store().revoke_agent(id, now_secs(), now_ms).await? {
        None => Err(ApiError::NotFound(format!("agent {id}"))),
        Some(newly) => {
            if newly {
                tracing::info!(agent = id, by = %principal.user.username, "agent revoked");
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}
