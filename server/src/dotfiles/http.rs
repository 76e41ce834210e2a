//! `GET/PUT /api/v1/user/settings`: the caller's personal settings (the dotfiles repository).
//! Routes and their authorization are in `routes.rs`.

use axum::extract::State;
use axum::Extension;
use cove_api::UserSettings;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Json;
use crate::AppState;

/// `GET /api/v1/user/settings`
pub async fn get_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<UserSettings>, ApiError> {
    Ok(Json(UserSettings {
        dotfiles: state.store().user_dotfiles(principal.user.id).await?,
        editor: Some(state.store().user_editor(principal.user.id).await?),
    }))
}

/// `PUT /api/v1/user/settings`: replaces the caller's settings (null clears the dotfiles
/// repository; an absent `editor` keeps the current one). A dotfiles value that is neither an http(s) URL without credentials nor a
/// Cove repository the caller can read is a 422 and changes nothing.
pub async fn put_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(req): Json<UserSettings>,
) -> Result<Json<UserSettings>, ApiError> {
    let dotfiles = match req.dotfiles.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let parsed = super::parse(text).map_err(ApiError::Unprocessable)?;
            super::check_readable(&state, &principal, &parsed)
                .await
                .map_err(ApiError::Unprocessable)?;
            Some(match parsed {
                super::Dotfiles::Url(url) => url,
                super::Dotfiles::Repo { owner, name } => format!("{owner}/{name}"),
            })
        }
    };
    if !state
        .store()
        .set_user_dotfiles(principal.user.id, dotfiles.as_deref())
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "user {}",
            principal.user.username
        )));
    }
    if let Some(editor) = req.editor {
        state
            .store()
            .set_user_editor(principal.user.id, editor)
            .await?;
    }
    tracing::info!(user = %principal.user.username, set = dotfiles.is_some(), "dotfiles setting changed");
    Ok(Json(UserSettings {
        dotfiles,
        editor: Some(state.store().user_editor(principal.user.id).await?),
    }))
}
