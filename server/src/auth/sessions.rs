//! Browser sessions: the `cove_session` cookie, its CSRF token, sliding renewal, and
//! [`authenticate_request`], which admits the cookie beside the `Authorization` header.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, Method};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{
    account_disabled, authenticate_caller, hash_token, user_scopes, AuthMethod, Caller, Principal,
    SessionAuth,
};
use crate::error::ApiError;
use crate::store::{now_secs, SessionRow, Store, UserRow};
use crate::AppState;

/// Name of the web UI's session cookie.
pub const SESSION_COOKIE: &str = "cove_session";
/// Header that must carry the session's CSRF token on cookie-carrying changes.
pub const CSRF_HEADER: &str = "x-cove-csrf";
/// A browser session ends this long after its last use (it renews while used).
pub const SESSION_TTL_SECS: i64 = 12 * 3600;
/// A session is renewed at most this often (seconds), so reads do not write every time.
pub const SESSION_RENEW_GRANULARITY_SECS: i64 = 5 * 60;
/// However much it is used, a session ends this long after the login.
pub const SESSION_MAX_SECS: i64 = 7 * 24 * 3600;

/// The CSRF token of the session whose cookie value is `secret`: a keyed derivation, so the
/// server recomputes it from the cookie instead of storing it, and the page (which cannot read
/// the HttpOnly cookie) learns it from `GET /api/v1/session`.
pub fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cove-csrf\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// A session just created: the secret goes into the cookie, never into a log.
pub struct NewSession {
    pub secret: String,
    pub auth: SessionAuth,
}

/// Starts a browser session for a caller who logged in with user name and password.
/// Tokens and existing sessions cannot mint sessions: the UI login is a password login.
pub async fn start_session(store: &Store, principal: &Principal) -> Result<NewSession, ApiError> {
    if principal.method != AuthMethod::Password {
        return Err(ApiError::BadRequest(
            "log in with user name and password (HTTP Basic) to start a session".into(),
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let expires_at = now_secs() + SESSION_TTL_SECS;
    let row = store
        .create_session(principal.user.id, &hash_token(&secret), expires_at)
        .await?;
    // Opportunistic cleanup; a failure only leaves dead rows behind.
    let _ = store.delete_expired_sessions(now_secs()).await;
    Ok(NewSession {
        auth: SessionAuth {
            id: row.id,
            expires_at,
            csrf_token: csrf_token(&secret),
            renewed_cookie: None,
        },
        secret,
    })
}

/// Ends the caller's browser session (logout).
pub async fn end_session(store: &Store, principal: &Principal) -> Result<(), ApiError> {
    let Some(session) = &principal.session else {
        return Err(ApiError::BadRequest(
            "this request was not authenticated by a session cookie".into(),
        ));
    };
    store.delete_session(session.id).await?;
    Ok(())
}

/// The `Set-Cookie` value that stores a session (`secure` when the server is served over https).
pub fn session_cookie(secret: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The live session of the cookie: `None` when it is unknown or expired.
async fn live_session(
    store: &Store,
    secret: &str,
) -> Result<Option<(SessionRow, UserRow)>, ApiError> {
    Ok(store
        .session_by_hash(&hash_token(secret))
        .await?
        .filter(|(row, _)| row.expires_at > now_secs()))
}

fn check_csrf(headers: &HeaderMap, secret: &str) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(sent, csrf_token(secret).as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "missing or wrong X-Cove-CSRF header for a request carrying the session cookie".into(),
        ))
    }
}

/// Authenticates a REST request: the `Authorization` header as in [`authenticate_caller`],
/// else the session cookie (always a user). A request other than GET/HEAD/OPTIONS that carries
/// a live session cookie must carry the session's CSRF token in `X-Cove-CSRF` (403 otherwise),
/// whatever `Authorization` header it also has: a browser can attach cached credentials to a
/// cross-site request, but never the CSRF header. Callers without the cookie (the CLI, git,
/// scripts) never need it. A session used within [`SESSION_TTL_SECS`] stays alive, up to
/// [`SESSION_MAX_SECS`] after the login.
pub async fn authenticate_request(
    state: &AppState,
    client: IpAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<Caller>, ApiError> {
    let store = state.store();
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let secret = session_secret(headers);
    if headers.contains_key(header::AUTHORIZATION) {
        if let (false, Some(secret)) = (safe, &secret) {
            if live_session(store, secret).await?.is_some() {
                check_csrf(headers, secret)?;
            }
        }
        return authenticate_caller(state, client, headers).await;
    }
    let Some(secret) = secret else {
        return Ok(None);
    };
    let Some((row, user)) = live_session(store, &secret).await? else {
        return Err(ApiError::Unauthorized);
    };
    if user.disabled {
        return Err(account_disabled());
    }
    if !safe {
        check_csrf(headers, &secret)?;
    }
    let now = now_secs();
    let renewed = (now + SESSION_TTL_SECS).min(row.created_at + SESSION_MAX_SECS);
    let (expires_at, renewed_cookie) = if renewed - row.expires_at >= SESSION_RENEW_GRANULARITY_SECS
    {
        store.renew_session(row.id, renewed).await?;
        let secure = state.public_url().starts_with("https://");
        (
            renewed,
            Some(session_cookie(&secret, renewed - now, secure)),
        )
    } else {
        (row.expires_at, None)
    };
    let scopes = user_scopes(&user);
    Ok(Some(Caller::User(Principal {
        user,
        scopes,
        token_id: None,
        project_id: None,
        method: AuthMethod::Session,
        session: Some(SessionAuth {
            id: row.id,
            expires_at,
            csrf_token: csrf_token(&secret),
            renewed_cookie,
        }),
    })))
}
