//! HTTP handlers of SSH keys: a user lists, adds and removes their own keys
//! (`/api/v1/user/ssh-keys`); administrators list and remove anyone's (`/api/v1/ssh-keys`).
//! Their routes and authorization are in `routes.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{AddSshKeyRequest, SshKeyInfo};

use super::keys::{key_name, parse_public_key};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{next_id, now_secs, SshKeyRow};
use crate::AppState;

/// Most keys one user may register.
pub const MAX_SSH_KEYS_PER_USER: usize = 100;

fn dto(row: SshKeyRow) -> SshKeyInfo {
    SshKeyInfo {
        id: row.id,
        username: row.username,
        name: row.name,
        algorithm: row.algorithm,
        fingerprint: row.fingerprint,
        public_key: row.public_key,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
    }
}

fn key_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest("SSH key id must be a number".into()))
}

/// `GET /api/v1/user/ssh-keys`: the caller's keys.
pub async fn list_own_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<SshKeyInfo>>, ApiError> {
    let rows = state.store().ssh_keys(Some(principal.user.id)).await?;
    Ok(Json(rows.into_iter().map(dto).collect()))
}

/// `POST /api/v1/user/ssh-keys`: register a public key for the caller.
pub async fn add_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<AddSshKeyRequest>,
) -> Result<(StatusCode, Json<SshKeyInfo>), ApiError> {
    let parsed = parse_public_key(&req.public_key).map_err(ApiError::BadRequest)?;
    let name = key_name(req.name.as_deref(), &parsed).map_err(ApiError::BadRequest)?;
    let existing = state.store().ssh_keys(Some(principal.user.id)).await?;
    if existing.len() >= MAX_SSH_KEYS_PER_USER {
        return Err(ApiError::Conflict(format!(
            "a user may register at most {MAX_SSH_KEYS_PER_USER} SSH keys; remove one first"
        )));
    }
    if let Some(mine) = existing
        .iter()
        .find(|k| k.fingerprint == parsed.fingerprint)
    {
        return Err(ApiError::Conflict(format!(
            "this key ({}) is already registered as {:?}",
            mine.fingerprint, mine.name
        )));
    }
    let row = SshKeyRow {
        id: next_id(),
        user_id: principal.user.id,
        username: principal.user.username.clone(),
        name,
        algorithm: parsed.algorithm,
        fingerprint: parsed.fingerprint,
        public_key: parsed.openssh,
        created_at: now_secs(),
        last_used_at: None,
    };
    state.store().add_ssh_key(&row).await.map_err(|e| match e {
        // another user has it: say so without naming them
        crate::store::StoreError::Conflict(_) => ApiError::Conflict(
            "this key is registered by another user; generate a key of your own".into(),
        ),
        other => other.into(),
    })?;
    tracing::info!(username = %principal.user.username, fingerprint = %row.fingerprint, "SSH key added");
    Ok((StatusCode::CREATED, Json(dto(row))))
}

/// `DELETE /api/v1/user/ssh-keys/{id}`: remove one of the caller's keys.
pub async fn delete_own_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = key_id(&id)?;
    if state
        .store()
        .delete_ssh_key(id, Some(principal.user.id))
        .await?
    {
        tracing::info!(username = %principal.user.username, key_id = id, "SSH key removed");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("SSH key {id}")))
    }
}

/// `GET /api/v1/ssh/host-key`: the SSH endpoint's public host key (503 when SSH is off).
pub async fn host_key(
    State(state): State<AppState>,
) -> Result<Json<cove_api::SshHostKey>, ApiError> {
    let ssh = state.ssh().ok_or_else(|| {
        ApiError::Unavailable(
            "SSH is not enabled on this server: set [ssh] listen in its configuration".into(),
        )
    })?;
    Ok(Json(ssh.host_key.clone()))
}

/// `GET /api/v1/ssh-keys` (administrators): every user's keys.
pub async fn list_all_keys(
    State(state): State<AppState>,
) -> Result<Json<Vec<SshKeyInfo>>, ApiError> {
    let rows = state.store().ssh_keys(None).await?;
    Ok(Json(rows.into_iter().map(dto).collect()))
}

/// `DELETE /api/v1/ssh-keys/{id}` (administrators): remove anyone's key.
pub async fn delete_any_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = key_id(&id)?;
    if state.store().delete_ssh_key(id, None).await? {
        tracing::info!(admin = %principal.user.username, key_id = id, "SSH key removed by an administrator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("SSH key {id}")))
    }
}
