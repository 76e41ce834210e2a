//! HTTP handlers of accounts and tokens: who am I, users (create, list, disable/enable,
//! password set by an administrator), the caller's own password, and API tokens (default
//! expiry, `never` for administrators). Their routes and authorization are in `routes.rs`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use cove_api::{
    ChangePasswordRequest, CreateTokenRequest, CreateUserRequest, CreatedToken, SetPasswordRequest,
    TokenInfo, User,
};

use super::password::check_new_password;
use super::{generate_token, hash_token, user_scopes, ClientAddr, Principal};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::names::validate_name;
use crate::store::{now_secs, TokenRow, UserRow};
use crate::AppState;

/// Longest token lifetime accepted: ten years.
pub const MAX_TOKEN_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// The wire form of a stored token (`project`: the name of the project it is scoped to).
pub fn token_dto(row: TokenRow, project: Option<String>) -> TokenInfo {
    TokenInfo {
        id: row.id,
        name: row.name,
        scopes: row.scopes,
        created_at: row.created_at,
        expires_at: row.expires_at,
        project,
    }
}

/// [`token_dto`] with the project's name looked up.
async fn token_info(state: &AppState, row: TokenRow) -> Result<TokenInfo, ApiError> {
    let project = match row.project_id {
        Some(id) => state.store().project_by_id(id).await?.map(|p| p.name),
        None => None,
    };
    Ok(token_dto(row, project))
}

pub(crate) fn user_dto(user: UserRow, scopes: Vec<cove_api::Scope>) -> User {
    User {
        username: user.username,
        is_admin: user.is_admin,
        scopes,
        disabled: user.disabled,
        email: user.email,
    }
}

/// `GET /api/v1/user`.
pub async fn whoami(Extension(principal): Extension<Principal>) -> Json<User> {
    Json(user_dto(principal.user.clone(), principal.scopes.clone()))
}

/// `GET /api/v1/users` (administrators).
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<User>>, ApiError> {
    let users = state.store().list_users().await?;
    Ok(Json(
        users.into_iter().map(|u| user_dto(u, Vec::new())).collect(),
    ))
}

/// `POST /api/v1/users` (administrators). Names are unique without regard to case.
pub async fn create_user(
    State(state): State<AppState>,
    Json(req): Json<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    validate_name("username", &req.username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    check_new_password(&req.password)?;
    let hash = state.logins().hash_new_password(req.password).await?;
    let user = state
        .store()
        .create_user(&req.username, Some(&hash), req.is_admin)
        .await?;
    tracing::info!(username = %user.username, is_admin = user.is_admin, "user created");
    let scopes = user_scopes(&user);
    Ok((StatusCode::CREATED, Json(user_dto(user, scopes))))
}

async fn user_named(state: &AppState, username: &str) -> Result<UserRow, ApiError> {
    validate_name("username", username).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store()
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username}")))
}

async fn set_disabled(
    state: &AppState,
    principal: &Principal,
    username: &str,
    disabled: bool,
) -> Result<Json<User>, ApiError> {
    let mut user = user_named(state, username).await?;
    if disabled && user.id == principal.user.id {
        return Err(ApiError::BadRequest(
            "you cannot disable your own account; ask another administrator".into(),
        ));
    }
    state.store().set_user_disabled(user.id, disabled).await?;
    user.disabled = disabled;
    tracing::info!(username = %user.username, by = %principal.user.username, disabled, "account disabled flag changed");
    Ok(Json(user_dto(user, Vec::new())))
}

/// `POST /api/v1/users/{username}/disable` (administrators): every token, session and the
/// password of the user stop working at once; its sessions are deleted.
pub async fn disable_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &principal, &username, true).await
}

/// `POST /api/v1/users/{username}/enable` (administrators): the user's unexpired tokens and
/// its password work again.
pub async fn enable_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &principal, &username, false).await
}

/// `PUT /api/v1/users/{username}/password` (administrators): sets a user's password; its
/// browser sessions end.
pub async fn set_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
    Json(req): Json<SetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let user = user_named(&state, &username).await?;
    check_new_password(&req.new_password)?;
    let hash = state.logins().hash_new_password(req.new_password).await?;
    state.store().set_password_hash(user.id, &hash).await?;
    tracing::info!(username = %user.username, by = %principal.user.username, "password set by an administrator");
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/user/password`: the caller changes its own password, proving the current one
/// (checked and throttled like a login). Every browser session of the user ends, this one too.
pub async fn change_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(ClientAddr(client)): Extension<ClientAddr>,
    Json(req): Json<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    check_new_password(&req.new_password)?;
    let username = principal.user.username.clone();
    let user = match state
        .logins()
        .check_password(state.store(), client, &username, &req.current_password)
        .await
    {
        Ok(user) => user,
        Err(ApiError::Unauthorized) => {
            return Err(ApiError::Forbidden(
                "the current password is wrong (or the account has none: ask an administrator)"
                    .into(),
            ))
        }
        Err(other) => return Err(other),
    };
    let hash = state.logins().hash_new_password(req.new_password).await?;
    state.store().set_password_hash(user.id, &hash).await?;
    tracing::info!(username = %user.username, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/tokens`.
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let tokens = state.store().list_tokens(principal.user.id).await?;
    let mut out = Vec::with_capacity(tokens.len());
    for row in tokens {
        out.push(token_info(&state, row).await?);
    }
    Ok(Json(out))
}

/// When a new token expires: its own lifetime, else the server default; `never` only for
/// administrators (or when the server sets no default).
fn token_expiry(
    state: &AppState,
    principal: &Principal,
    req: &CreateTokenRequest,
) -> Result<Option<i64>, ApiError> {
    match (req.expires_in_seconds, req.never_expires) {
        (Some(_), true) => Err(ApiError::BadRequest(
            "give either expires_in_seconds or never_expires, not both".into(),
        )),
        (None, true) if principal.user.is_admin => Ok(None),
        (None, true) => Err(ApiError::Forbidden(
            "only administrators may create tokens that never expire".into(),
        )),
        (Some(0), false) => Err(ApiError::BadRequest(
            "expires_in_seconds must be positive".into(),
        )),
        (Some(s), false) if s > MAX_TOKEN_SECONDS => Err(ApiError::BadRequest(
            "expires_in_seconds is at most ten years".into(),
        )),
        (Some(s), false) => Ok(Some(now_secs() + s as i64)),
        (None, false) => Ok(state
            .logins()
            .settings()
            .token_expiry
            .map(|d| now_secs() + d.as_secs() as i64)),
    }
}

/// `POST /api/v1/tokens`: a token (shown once) with at most the scopes of the credential
/// creating it; it expires after the server default (90 days) unless it says otherwise.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "token name must be 1-100 printable characters".into(),
        ));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::BadRequest(
            "a token needs at least one scope".into(),
        ));
    }
    let mut scopes = req.scopes.clone();
    scopes.sort();
    scopes.dedup();
    if let Some(missing) = scopes.iter().find(|s| !principal.has_scope(**s)) {
        return Err(ApiError::Forbidden(format!(
            "cannot grant scope {} that the current credential lacks",
            missing.as_str()
        )));
    }
    let expires_at = token_expiry(&state, &principal, &req)?;
    // a token scoped to a project: the caller must be a member of it
    let project = match &req.project {
        None => None,
        Some(name) => {
            let project = crate::projects::load(&state, name).await?;
            if state
                .store()
                .project_role(project.id, principal.user.id)
                .await?
                .is_none()
            {
                return Err(ApiError::NotFound(format!("project {name}")));
            }
            Some(project)
        }
    };
    let token = generate_token();
    let row = state
        .store()
        .create_token_in(
            principal.user.id,
            name,
            &hash_token(&token),
            &scopes,
            expires_at,
            project.as_ref().map(|p| p.id),
        )
        .await?;
    tracing::info!(username = %principal.user.username, token_id = row.id, "token created");
    crate::audit::note_detail(format!("token {} {:?}", row.id, row.name));
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: token_dto(row, project.map(|p| p.name)),
        }),
    ))
}

/// `DELETE /api/v1/tokens/{id}`.
pub async fn delete_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest("token id must be a number".into()))?;
    if state.store().delete_token(principal.user.id, id).await? {
        tracing::info!(username = %principal.user.username, token_id = id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("token {id}")))
    }
}
