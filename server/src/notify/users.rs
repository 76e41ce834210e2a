//! Users' email addresses and their email delivery logs: `PUT /api/v1/user/email` (the
//! caller's own), `PUT /api/v1/users/{username}/email` (administrators),
//! `GET /api/v1/user/deliveries` (the caller's own email notifications, newest first). The
//! routes and their authorization are in `routes.rs`.

use axum::extract::State;
use axum::Extension;
use cove_api::{NotifyDelivery, SetEmailRequest, User};

use super::email::parse_address;
use super::http::delivery_dto;
use crate::auth::{user_scopes, Principal};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::UserRow;
use crate::AppState;

/// Deliveries listed per request.
const LIST_LIMIT: i64 = 200;

async fn set_email(
    state: &AppState,
    by: &Principal,
    user: UserRow,
    req: SetEmailRequest,
) -> Result<Json<User>, ApiError> {
    let email = match req.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            parse_address(text)
                .map_err(ApiError::Unprocessable)?
                .to_string(),
        ),
    };
    if !state
        .store()
        .set_user_email(user.id, email.as_deref())
        .await?
    {
        return Err(ApiError::NotFound(format!("user {}", user.username)));
    }
    tracing::info!(user = %user.username, by = %by.user.username, set = email.is_some(), "email address changed");
    let scopes = user_scopes(&user);
    Ok(Json(crate::auth::http::user_dto(
        UserRow { email, ..user },
        scopes,
    )))
}

/// `PUT /api/v1/user/email`: the caller sets (or, with null, removes) their own address.
pub async fn set_own_email(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<SetEmailRequest>,
) -> Result<Json<User>, ApiError> {
    let user = principal.user.clone();
    set_email(&state, &principal, user, req).await
}

/// `PUT /api/v1/users/{username}/email` (administrators): sets a user's address.
pub async fn set_user_email(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(username): Path<String>,
    Json(req): Json<SetEmailRequest>,
) -> Result<Json<User>, ApiError> {
    let user = state
        .store()
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username}")))?;
    set_email(&state, &principal, user, req).await
}

/// `GET /api/v1/user/deliveries`: the caller's email notifications (approvals, reviews,
/// idle stops), newest first, with each one's status, attempts and last error.
pub async fn own_deliveries(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<NotifyDelivery>>, ApiError> {
    let rows = state
        .store()
        .deliveries_of_user(principal.user.id, LIST_LIMIT)
        .await?;
    Ok(Json(rows.iter().map(delivery_dto).collect()))
}
