//! `/api/v1/repos/{owner}/{name}/mirror…` (repository owners; the routes and their
//! authorization are in `routes.rs`): show, set and remove a repository's mirror
//! configuration, and fetch now. Secrets are sealed at rest and never answered, except a
//! webhook secret Cove generated, once, in the answer to the `PUT` that generated it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{Mirror, MirrorRefUpdate, MirrorSync, SetMirror, MIRROR_FORGES};
use rand::RngCore;

use super::{SECRET_NAME, TOKEN_NAME};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Json;
use crate::store::{self, MirrorRow, RepoRow};
use crate::AppState;

/// Longest upstream URL.
const MAX_URL: usize = 2048;
/// Webhook secret length bounds.
const SECRET_LEN: std::ops::RangeInclusive<usize> = 8..=256;
/// Longest fetch token.
const MAX_TOKEN: usize = 4096;

fn default_username(forge: &str) -> &'static str {
    match forge {
        "github" => "x-access-token",
        _ => "oauth2",
    }
}

fn dto(state: &AppState, repo: &RepoRow, m: &MirrorRow, secret: Option<String>) -> Mirror {
    Mirror {
        url: m.url.clone(),
        forge: m.forge.clone(),
        webhook_url: format!(
            "{}/api/v1/repos/{}/{}/mirror/webhook",
            state.public_url(),
            repo.owner,
            repo.name
        ),
        has_token: m.token_sealed.is_some(),
        username: m.username.clone(),
        created_by: m.created_by.clone(),
        created_at_ms: m.created_at_ms,
        last_sync_at_ms: m.last_sync_at_ms,
        last_sync_result: m.last_sync_result.clone(),
        webhook_secret: secret,
    }
}

fn not_a_mirror(repo: &RepoRow) -> ApiError {
    ApiError::NotFound(format!(
        "mirror configuration of {}/{} (it is not a mirror)",
        repo.owner, repo.name
    ))
}

/// A value that goes into an HTTP header: printable, no line breaks.
fn header_safe(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

/// `GET …/mirror`.
pub async fn get_mirror(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<Mirror>, ApiError> {
    let m = state
        .store()
        .mirror(repo.id)
        .await?
        .ok_or_else(|| not_a_mirror(&repo))?;
    Ok(Json(dto(&state, &repo, &m, None)))
}

/// `PUT …/mirror`: make the repository a mirror of `url` (or change its configuration).
pub async fn set_mirror(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<SetMirror>,
) -> Result<Json<Mirror>, ApiError> {
    if !MIRROR_FORGES.contains(&req.forge.as_str()) {
        return Err(ApiError::Unprocessable(format!(
            "forge must be one of {}, not {:?}",
            MIRROR_FORGES.join(", "),
            req.forge.chars().take(40).collect::<String>()
        )));
    }
    if req.url.len() > MAX_URL {
        return Err(ApiError::Unprocessable(format!(
            "the URL is {} bytes; at most {MAX_URL}",
            req.url.len()
        )));
    }
    super::check_upstream(&state, &req.url)
        .await
        .map_err(ApiError::Unprocessable)?;
    if let Some(secret) = &req.webhook_secret {
        if !SECRET_LEN.contains(&secret.chars().count()) || !header_safe(secret) {
            return Err(ApiError::Unprocessable(format!(
                "webhook_secret must be {} to {} printable characters",
                SECRET_LEN.start(),
                SECRET_LEN.end()
            )));
        }
    }
    if let Some(token) = &req.token {
        if token.len() > MAX_TOKEN || !header_safe(token) {
            return Err(ApiError::Unprocessable(format!(
                "token must be at most {MAX_TOKEN} printable characters"
            )));
        }
    }
    if let Some(user) = &req.username {
        if user.is_empty() || user.len() > 256 || user.contains(':') || !header_safe(user) {
            return Err(ApiError::Unprocessable(
                "username must be 1 to 256 printable characters without `:`".into(),
            ));
        }
    }
    let key = state.runs().key();
    let seal = |name: &str, value: &str| {
        key.seal(repo.id, name, value)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot seal a secret: {e}")))
    };
    let existing = state.store().mirror(repo.id).await?;
    let mut generated = None;
    let secret_sealed = match (&req.webhook_secret, &existing) {
        (Some(secret), _) => seal(SECRET_NAME, secret)?,
        (None, Some(m)) => m.secret_sealed.clone(),
        (None, None) => {
            let mut bytes = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut bytes);
            let secret = hex::encode(bytes);
            let sealed = seal(SECRET_NAME, &secret)?;
            generated = Some(secret);
            sealed
        }
    };
    let token_sealed = match (&req.token, &existing) {
        (Some(t), _) if t.is_empty() => None,
        (Some(t), _) => Some(seal(TOKEN_NAME, t)?),
        (None, Some(m)) => m.token_sealed.clone(),
        (None, None) => None,
    };
    let username = match (&req.username, &existing) {
        (Some(u), _) => u.clone(),
        (None, Some(m)) if m.forge == req.forge => m.username.clone(),
        _ => default_username(&req.forge).to_string(),
    };
    let row = MirrorRow {
        repo_id: repo.id,
        url: req.url.clone(),
        forge: req.forge.clone(),
        secret_sealed,
        token_sealed,
        username,
        created_by: existing
            .as_ref()
            .map_or_else(|| principal.user.username.clone(), |m| m.created_by.clone()),
        created_at_ms: existing
            .as_ref()
            .map_or_else(store::now_ms, |m| m.created_at_ms),
        last_sync_at_ms: existing.as_ref().and_then(|m| m.last_sync_at_ms),
        last_sync_result: existing.as_ref().and_then(|m| m.last_sync_result.clone()),
    };
    state.store().set_mirror(&row).await?;
    crate::audit::note_detail(format!("mirror of {} ({})", row.url, row.forge));
    tracing::info!(repo = %format!("{}/{}", repo.owner, repo.name), url = %row.url, forge = %row.forge, "mirror configured");
    Ok(Json(dto(&state, &repo, &row, generated)))
}

/// `DELETE …/mirror`: the repository becomes an ordinary one (its refs stay).
pub async fn delete_mirror(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<StatusCode, ApiError> {
    if state.store().delete_mirror(repo.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_a_mirror(&repo))
    }
}

/// `POST …/mirror/sync`: fetch from the upstream now and answer the refs that moved (each
/// stored as a push event, so PUSH workflows run).
pub async fn sync_mirror(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
) -> Result<Json<MirrorSync>, ApiError> {
    let stored = super::sync(&state, &repo).await?;
    Ok(Json(MirrorSync {
        updated: stored
            .into_iter()
            .map(|e| MirrorRefUpdate {
                ref_name: e.ref_name,
                old_sha: e.old_sha,
                new_sha: e.new_sha,
            })
            .collect(),
    }))
}
